//! Command-line options: `ipcfs [OPTIONS] MOUNTPOINT`, and the fstab form
//! `ipcfs none MOUNTPOINT -o OPTIONS` in which every ipcfs option can also
//! be given inside `-o`.

use std::path::PathBuf;

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

    /// Mount options, comma-separated: FUSE options, and the options above
    /// as allow_other, default_policy=, capacity=, max_message_size=,
    /// max_memory=, user_share=, threads=.
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
}

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

impl Settings {
    pub fn from_cli(cli: Cli, hard_max: usize) -> Result<Settings, String> {
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(std::iter::once("ipcfs").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Settings::from_cli(cli, 1_044_480)
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
