//! Command-line options: `ipcfs [OPTIONS] MOUNTPOINT`, and the fstab form
//! `ipcfs none MOUNTPOINT -o OPTIONS` in which every ipcfs option can also
//! be given inside `-o`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fuser::MountOption;

use crate::hub::policy::{self, Policy, Rule};

const ABOUT: &str = "Message passing between processes, as files (a FUSE filesystem).";

const LONG_ABOUT: &str = "\
Message passing between processes, as files (a FUSE filesystem).

Mounts ipcfs at MOUNTPOINT (created if missing) and serves it in the
foreground until Ctrl-C, SIGTERM, SIGHUP or an external umount.

  MOUNTPOINT/policy          default receiver rule for new mailboxes
  MOUNTPOINT/NAME/           a mailbox: mkdir creates it, rmdir destroys it
  MOUNTPOINT/NAME/send       one write(2) sends one message
  MOUNTPOINT/NAME/recv       one read receives one message, then end of file
  MOUNTPOINT/NAME/policy     arbitrary | pair | exclusive | broadcast, capacity=N
  MOUNTPOINT/NAME/status     counters
  MOUNTPOINT/proc/PID/send   direct link to process PID (recv: from PID)

Example:  mkdir /tmp/ipc/jobs; echo hi > /tmp/ipc/jobs/send; cat /tmp/ipc/jobs/recv

Across hosts: every mount given the same --broker (a Redis server) shares
its mailboxes, e.g. ipcfs --broker redis://redis-host:6379 --node a /tmp/ipc
See ipcfs(1) and ipcfs(7).";

#[derive(Parser, Debug)]
#[command(name = "ipcfs", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// Where to mount; in the fstab form `none MOUNTPOINT`, the first is ignored.
    #[arg(value_name = "MOUNTPOINT", num_args = 1..=2, required = true)]
    pub paths: Vec<PathBuf>,

    /// Let other users use the mount (FUSE allow_other).
    #[arg(long)]
    pub allow_other: bool,

    /// Initial root policy, e.g. "exclusive" or "pair capacity=4".
    #[arg(long, value_name = "POLICY")]
    pub default_policy: Option<String>,

    /// Default capacity of mailboxes and links, in messages.
    #[arg(long, value_name = "N|unlimited")]
    pub capacity: Option<String>,

    /// Largest message (bytes; K, M suffixes); may only lower the default.
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<String>,

    /// Bound on what the daemon holds: messages, mailboxes, links, open
    /// descriptors, blocked calls (K, M, G suffixes) [default: 256M].
    #[arg(long, value_name = "BYTES")]
    pub max_memory: Option<String>,

    /// The most of --max-memory one user other than root and the mounting
    /// user may hold (K, M, G suffixes) [default: a quarter of it].
    #[arg(long, value_name = "BYTES")]
    pub user_share: Option<String>,

    /// FUSE event-loop threads [default: 2].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Keep the mailboxes in this Redis server, shared with every mount
    /// given the same URL: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], or
    /// rediss:// for TLS [default: $IPCFS_BROKER_URL, which keeps a password
    /// out of ps; without either, mailboxes live in this daemon].
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,

    /// This mount's name on the broker, in receipts ("PID NODE"): 1-64 of
    /// A-Z a-z 0-9 . _ - [default: the host name]. Needs a broker.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// Seconds after which a daemon cut off from the broker loses its holds
    /// and in-flight messages to the others (fractions allowed, at least
    /// 0.2) [default: 10]. Needs a broker.
    #[arg(long, value_name = "SECONDS")]
    pub lease: Option<String>,

    /// Mount options, comma-separated: FUSE options, and the options above
    /// as allow_other, default_policy=, capacity=, max_message_size=,
    /// max_memory=, user_share=, threads=, broker=, node=, lease=.
    #[arg(short = 'o', value_name = "OPTS")]
    pub options: Vec<String>,
}

/// What the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mountpoint: PathBuf,
    pub allow_other: bool,
    pub default_policy: Policy,
    pub hard_max_message: usize,
    pub max_memory: usize,
    /// The most one user held to a share may hold.
    pub user_share: usize,
    pub threads: usize,
    pub mount_options: Vec<MountOption>,
    /// Where the mailboxes live when not in this daemon (`--broker`).
    pub broker: Option<BrokerSettings>,
}

/// A broker mount: the Redis server that holds the mailboxes, this
/// daemon's name there, and its lease (ipcfs(7), ACROSS HOSTS).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSettings {
    /// As given, password included: only ever shown through `redact`.
    pub url: String,
    pub node: String,
    pub lease: Duration,
}

/// Where the broker URL comes from when `--broker` is not given: the
/// environment keeps a password out of `ps`.
pub const BROKER_URL_ENV: &str = "IPCFS_BROKER_URL";
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// Below this, renewing every lease/3 is a busy loop and a scheduling
/// hiccup costs a daemon its holds.
pub const MIN_LEASE: Duration = Duration::from_millis(200);
const MAX_NODE_LEN: usize = 64;

pub const DEFAULT_CAPACITY: usize = 1024;
pub const DEFAULT_MAX_MEMORY: usize = 256 << 20;
const MIN_MAX_MESSAGE: usize = 64 << 10;

/// Pages fuser asks the kernel to allow per request (its 16 MiB max_write).
const FUSER_MAX_PAGES: usize = 4096;

/// The largest message that always arrives in one FUSE request, whatever
/// the alignment of the caller's buffer: one page less than the pages a
/// request may carry (`fs.fuse.max_pages_limit`, 256 by default, and at
/// most what fuser asks for).
pub fn hard_max_message() -> usize {
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(256);
    let pages = limit.min(FUSER_MAX_PAGES);
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    (pages.saturating_sub(1) * page).max(MIN_MAX_MESSAGE)
}

/// Checks a node name: 1-64 bytes of `[A-Za-z0-9._-]` (it is part of
/// Redis key names and of receipts `PID NODE`, so no spaces or separators).
pub fn check_node(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NODE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: a node name is 1 to {MAX_NODE_LEN} characters among A-Z a-z 0-9 . _ -"
        ))
    }
}

/// Parses a lease in seconds, fractions allowed ("10", "0.5").
pub fn parse_lease(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("--lease {text}: not a number of seconds"))?;
    if !secs.is_finite() || secs < MIN_LEASE.as_secs_f64() || secs > 86_400.0 {
        return Err(format!(
            "--lease {text}: must be between {} and 86400 seconds",
            MIN_LEASE.as_secs_f64()
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Checks the scheme and that a host follows it; the rest (port, user,
/// database) is the Redis client's to judge when it connects.
fn check_broker_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        Some(_) => Err("--broker: the URL names no host (redis://HOST[:PORT])".into()),
        // Not echoed: it may hold a password.
        None => Err("--broker: the URL must start with redis:// or rediss:// \
             (redis://[USER[:PASSWORD]@]HOST[:PORT][/DB])"
            .into()),
    }
}

impl Settings {
    /// The settings of `cli`, the broker URL coming from `$IPCFS_BROKER_URL`
    /// when no `--broker` is given.
    pub fn from_cli(cli: Cli, hard_max: usize) -> Result<Settings, String> {
        let env_url = std::env::var(BROKER_URL_ENV).ok();
        Settings::from_cli_env(cli, hard_max, env_url, host_name_node)
    }

    /// [`Settings::from_cli`] with the environment's URL and the host name
    /// given (so that tests need not change the process's environment).
    pub fn from_cli_env(
        cli: Cli,
        hard_max: usize,
        env_url: Option<String>,
        host_name: fn() -> Result<String, String>,
    ) -> Result<Settings, String> {
        let mut cli = cli;
        let mut mount_options = vec![
            MountOption::FSName("ipcfs".into()),
            MountOption::Subtype("ipcfs".into()),
            MountOption::DefaultPermissions,
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        for opt in cli
            .options
            .iter()
            .flat_map(|o| o.split(','))
            .filter(|o| !o.is_empty())
        {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (opt, None),
            };
            let need = |v: Option<String>| v.ok_or(format!("-o {key} needs a value"));
            match key {
                "allow_other" => cli.allow_other = true,
                "default_policy" => cli.default_policy = Some(need(value)?),
                "capacity" => cli.capacity = Some(need(value)?),
                "max_message_size" => cli.max_message_size = Some(need(value)?),
                "max_memory" => cli.max_memory = Some(need(value)?),
                "user_share" => cli.user_share = Some(need(value)?),
                "broker" => cli.broker = Some(need(value)?),
                "node" => cli.node = Some(need(value)?),
                "lease" => cli.lease = Some(need(value)?),
                "threads" => {
                    let v = need(value)?;
                    cli.threads = Some(
                        v.parse()
                            .map_err(|_| format!("-o threads={v}: not a number"))?,
                    )
                }
                // Always on, or meaningless for this filesystem.
                "default_permissions"
                | "defaults"
                | "auto"
                | "noauto"
                | "user"
                | "users"
                | "nouser"
                | "nofail"
                | "_netdev"
                | "suid"
                | "dev"
                | "exec" => {}
                "rw" => mount_options.push(MountOption::RW),
                "ro" => mount_options.push(MountOption::RO),
                "nosuid" | "nodev" => {}
                "noexec" => mount_options.push(MountOption::NoExec),
                "noatime" => mount_options.push(MountOption::NoAtime),
                "atime" => mount_options.push(MountOption::Atime),
                "sync" => mount_options.push(MountOption::Sync),
                "async" => mount_options.push(MountOption::Async),
                "dirsync" => mount_options.push(MountOption::DirSync),
                "fsname" | "subtype" => {
                    let v = need(value)?;
                    mount_options.retain(|o| {
                        !matches!(
                            (o, key),
                            (MountOption::FSName(_), "fsname")
                                | (MountOption::Subtype(_), "subtype")
                        )
                    });
                    mount_options.push(if key == "fsname" {
                        MountOption::FSName(v)
                    } else {
                        MountOption::Subtype(v)
                    });
                }
                _ => mount_options.push(MountOption::CUSTOM(opt.to_string())),
            }
        }
        let max_message_size = match &cli.max_message_size {
            None => hard_max,
            Some(text) => {
                let n = policy::parse_size(text)
                    .ok_or(format!("--max-message-size {text}: not a size"))?;
                if n == 0 || n > hard_max {
                    return Err(format!(
                        "--max-message-size {text}: must be between 1 and {hard_max} bytes"
                    ));
                }
                n
            }
        };
        let capacity = match &cli.capacity {
            None => Some(DEFAULT_CAPACITY),
            Some(text) => policy::parse_capacity(text)
                .ok_or(format!("--capacity {text}: not a number or 'unlimited'"))?,
        };
        let mut default_policy = Policy {
            rule: Rule::Arbitrary,
            capacity,
            max_message_size,
        };
        if let Some(text) = &cli.default_policy {
            default_policy = policy::parse(text.as_bytes(), &default_policy, hard_max)
                .map_err(|e| format!("--default-policy {text:?}: {e}"))?;
        }
        let max_memory = match &cli.max_memory {
            None => DEFAULT_MAX_MEMORY,
            Some(text) => policy::parse_size(text)
                .filter(|n| *n > 0)
                .ok_or(format!("--max-memory {text}: not a size"))?,
        };
        let user_share = match &cli.user_share {
            None => max_memory / 4,
            Some(text) => policy::parse_size(text)
                .filter(|n| *n > 0)
                .ok_or(format!("--user-share {text}: not a size"))?,
        };
        let threads = cli.threads.unwrap_or(2);
        if threads == 0 || threads > 64 {
            return Err(format!("--threads {threads}: must be between 1 and 64"));
        }
        let url = cli
            .broker
            .clone()
            .or(env_url.filter(|u| !u.trim().is_empty()));
        let broker = match url {
            None => {
                if cli.node.is_some() || cli.lease.is_some() {
                    let what = if cli.node.is_some() {
                        "--node"
                    } else {
                        "--lease"
                    };
                    return Err(format!(
                        "{what} needs a broker: give --broker URL (or set {BROKER_URL_ENV})"
                    ));
                }
                None
            }
            Some(url) => {
                check_broker_url(&url)?;
                let node = match &cli.node {
                    Some(n) => {
                        check_node(n).map_err(|e| format!("--node {e}"))?;
                        n.clone()
                    }
                    None => {
                        let h = host_name()?;
                        check_node(&h).map_err(|e| {
                            format!("the host name {e}; give a node name with --node NAME")
                        })?;
                        h
                    }
                };
                let lease = match &cli.lease {
                    Some(text) => parse_lease(text)?,
                    None => DEFAULT_LEASE,
                };
                Some(BrokerSettings { url, node, lease })
            }
        };
        let mountpoint = cli.paths.last().cloned().ok_or("no MOUNTPOINT")?;
        Ok(Settings {
            mountpoint,
            allow_other: cli.allow_other,
            default_policy,
            hard_max_message: hard_max,
            max_memory,
            user_share,
            threads,
            mount_options,
            broker,
        })
    }
}

fn host_name_node() -> Result<String, String> {
    crate::os::host::host_name()
        .map_err(|e| format!("cannot read the host name for the node name ({e}); give --node NAME"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        settings_env(args, None)
    }

    fn host() -> Result<String, String> {
        Ok("host-1.example".into())
    }

    /// As if `$IPCFS_BROKER_URL` were `env` and the host were called host-1.example.
    fn settings_env(args: &[&str], env: Option<&str>) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(std::iter::once("ipcfs").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Settings::from_cli_env(cli, 1_044_480, env.map(String::from), host)
    }

    fn broker(args: &[&str], env: Option<&str>) -> BrokerSettings {
        settings_env(args, env)
            .unwrap()
            .broker
            .expect("a broker mount")
    }

    #[test]
    fn no_broker_by_default() {
        assert_eq!(settings(&["/m"]).unwrap().broker, None);
        // An empty variable is no URL.
        assert_eq!(settings_env(&["/m"], Some("")).unwrap().broker, None);
    }

    #[test]
    fn broker_options() {
        let b = broker(
            &[
                "--broker",
                "redis://u:pw@h:6390/2",
                "--node",
                "a",
                "--lease",
                "0.5",
                "/m",
            ],
            None,
        );
        assert_eq!(
            b,
            BrokerSettings {
                url: "redis://u:pw@h:6390/2".into(),
                node: "a".into(),
                lease: Duration::from_millis(500),
            }
        );
        // Defaults: the host name, 10 s.
        let b = broker(&["--broker", "rediss://h", "/m"], None);
        assert_eq!(b.node, "host-1.example");
        assert_eq!(b.lease, Duration::from_secs(10));
    }

    #[test]
    fn broker_in_dash_o() {
        let s = settings(&[
            "none",
            "/mnt/ipc",
            "-o",
            "rw,broker=redis://10.0.0.1:6379,node=web_2,lease=3,noatime",
        ])
        .unwrap();
        let b = s.broker.unwrap();
        assert_eq!(b.url, "redis://10.0.0.1:6379");
        assert_eq!(b.node, "web_2");
        assert_eq!(b.lease, Duration::from_secs(3));
        assert!(s.mount_options.contains(&MountOption::NoAtime));
        assert!(
            !s.mount_options
                .iter()
                .any(|o| matches!(o, MountOption::CUSTOM(c) if c.contains("broker")))
        );
    }

    #[test]
    fn broker_url_from_the_environment() {
        let b = broker(&["--node", "b", "/m"], Some("redis://:secret@h:6379"));
        assert_eq!(b.url, "redis://:secret@h:6379");
        assert_eq!(b.node, "b");
        // --broker wins over the environment.
        let b = broker(&["--broker", "redis://x", "/m"], Some("redis://y"));
        assert_eq!(b.url, "redis://x");
    }

    #[test]
    fn broker_refusals() {
        let err = |args: &[&str]| settings(args).unwrap_err();
        assert!(err(&["--node", "a", "/m"]).contains("--node needs a broker"));
        assert!(err(&["--lease", "5", "/m"]).contains("--lease needs a broker"));
        assert!(err(&["-o", "node=a", "/m"]).contains("IPCFS_BROKER_URL"));
        assert!(err(&["--broker", "http://h", "/m"]).contains("redis:// or rediss://"));
        // The refused URL is not echoed: it may hold a password.
        assert!(!err(&["--broker", "http://u:pw@h", "/m"]).contains("pw"));
        assert!(err(&["--broker", "redis://", "/m"]).contains("no host"));
        let url = ["--broker", "redis://h"];
        let with = |more: &[&str]| {
            let mut v = url.to_vec();
            v.extend_from_slice(more);
            v.push("/m");
            settings(&v)
        };
        for bad in ["", "a b", "a/b", "a:b", "é", &"x".repeat(65)] {
            let e = with(&["--node", bad]).unwrap_err();
            assert!(e.contains("a node name is 1 to 64"), "{bad:?}: {e}");
        }
        assert_eq!(
            with(&["--node", &"x".repeat(64)])
                .unwrap()
                .broker
                .unwrap()
                .node
                .len(),
            64
        );
        assert!(with(&["--node", "A-z.0_9"]).is_ok());
        for bad in ["0.1", "0", "-1", "ten", "nan", "inf", "1e9"] {
            let e = with(&[&format!("--lease={bad}")]).unwrap_err();
            assert!(e.starts_with(&format!("--lease {bad}: ")), "{bad}: {e}");
        }
        assert_eq!(
            with(&["--lease", "0.2"]).unwrap().broker.unwrap().lease,
            Duration::from_millis(200)
        );
        // A host name that is not a node name: say so, and what to do.
        let cli = Cli::try_parse_from(["ipcfs", "--broker", "redis://h", "/m"]).unwrap();
        let e = Settings::from_cli_env(cli, 1_044_480, None, || Ok("my host".into())).unwrap_err();
        assert!(e.contains("host name") && e.contains("--node NAME"), "{e}");
    }

    #[test]
    fn help_lists_the_broker_options() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for opt in [
            "--broker <URL>",
            "--node <NAME>",
            "--lease <SECONDS>",
            "IPCFS_BROKER_URL",
        ] {
            assert!(help.contains(opt), "--help lacks {opt}:\n{help}");
        }
    }

    #[test]
    fn defaults() {
        let s = settings(&["/tmp/x"]).unwrap();
        assert_eq!(s.mountpoint, PathBuf::from("/tmp/x"));
        assert_eq!(
            s.default_policy.to_string(),
            "arbitrary capacity=1024 max-message-size=1044480"
        );
        assert_eq!(s.max_memory, 256 << 20);
        assert!(!s.allow_other);
        assert!(s.mount_options.contains(&MountOption::DefaultPermissions));
    }

    #[test]
    fn long_options() {
        let s = settings(&[
            "--allow-other",
            "--capacity",
            "unlimited",
            "--max-message-size",
            "64K",
            "--max-memory",
            "8M",
            "--default-policy",
            "pair",
            "/m",
        ])
        .unwrap();
        assert!(s.allow_other);
        assert_eq!(
            s.default_policy.to_string(),
            "pair capacity=unlimited max-message-size=65536"
        );
        assert_eq!(s.max_memory, 8 << 20);
    }

    #[test]
    fn fstab_form() {
        let s = settings(&[
            "none",
            "/mnt/ipc",
            "-o",
            "rw,allow_other,capacity=4,default_policy=exclusive,max_memory=1M,noatime",
        ])
        .unwrap();
        assert_eq!(s.mountpoint, PathBuf::from("/mnt/ipc"));
        assert!(s.allow_other);
        assert_eq!(s.default_policy.capacity, Some(4));
        assert_eq!(s.default_policy.rule, Rule::Exclusive);
        assert_eq!(s.max_memory, 1 << 20);
        assert!(s.mount_options.contains(&MountOption::NoAtime));
    }

    #[test]
    fn refused() {
        assert!(
            settings(&["--max-message-size", "2M", "/m"])
                .unwrap_err()
                .contains("between 1 and 1044480")
        );
        assert!(settings(&["--capacity", "lots", "/m"]).is_err());
        assert!(
            settings(&["--default-policy", "bogus", "/m"])
                .unwrap_err()
                .contains("bogus")
        );
        assert!(
            settings(&["-o", "capacity", "/m"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(settings(&["--threads", "0", "/m"]).is_err());
        assert!(settings(&[]).is_err());
    }

    #[test]
    fn hard_max_is_one_page_under_the_request_limit() {
        let n = hard_max_message();
        assert!(n >= 64 << 10);
        assert_eq!(n % 4096, 0);
    }
}
