//! Mounts on a broker (ipcfs(7), ACROSS HOSTS): several daemons on one
//! [`Redis`] stand for several hosts, each with its own `--node` name; and
//! mounts that must be refused (the daemon exits with an error and mounts
//! nothing), run with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    Bg, Launch, Mount, Redis, count, default_signals, fuse_mounts_at, is_fuse_mounted, out_str,
    show, wait_until,
};

impl Mount {
    /// A mount on `redis` as node `node`: `--allow-other --broker URL --node
    /// NODE` and then `extra` (e.g. `&["--lease", "1"]`).
    pub fn on_broker(redis: &Redis, node: &str, extra: &[&str]) -> Mount {
        Mount::on_broker_url(&redis.url(), node, extra)
    }

    /// Like [`Mount::on_broker`], with the broker given as a URL.
    pub fn on_broker_url(url: &str, node: &str, extra: &[&str]) -> Mount {
        let mut args = vec!["--broker", url, "--node", node];
        args.extend_from_slice(extra);
        Mount::with_args(&args)
    }

    /// A mount with `env` in the daemon's environment (e.g.
    /// `IPCFS_BROKER_URL`, `RUST_LOG`) and `args` as in `with_args`.
    pub fn with_env(env: &[(&str, &str)], args: &[&str]) -> Mount {
        let launch = Launch {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Launch::default()
        };
        Mount::with_launch(&launch, args)
    }
}

/// How a daemon that was expected not to mount ended.
#[derive(Debug)]
pub struct Refused {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Unmounts (lazily) whatever FUSE mount sits at a path when dropped: a
/// daemon that mounted although it should not have leaves none behind.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        for _ in 0..8 {
            if !is_fuse_mounted(&self.0) {
                break;
            }
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `ipcfs --allow-other ARGS MOUNTPOINT` (with `env` added to its
/// environment) on a fresh mountpoint and expects it to refuse: it must exit
/// within `timeout` having mounted nothing. Panics, with its output, if it
/// mounts, or if it is still running at the deadline (it is then killed).
/// The caller checks the exit status and the message.
pub fn mount_refused(env: &[(&str, &str)], args: &[&str], timeout: Duration) -> Refused {
    let dir = tempfile::Builder::new()
        .prefix("ipcfs-refused.")
        .tempdir()
        .expect("create temporary mountpoint");
    let path = dir.path().canonicalize().expect("canonicalize mountpoint");
    let _unmount = Unmount(path.clone());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcfs"));
    cmd.env_remove("IPCFS_BROKER_URL")
        .envs(env.iter().copied())
        .arg("--allow-other")
        .args(args)
        .arg(&path);
    let what = format!("ipcfs {args:?} (expected to refuse)");
    let mut bg = Bg::spawn(cmd, &what);
    let deadline = Instant::now() + timeout;
    loop {
        if bg.try_wait().is_some() {
            break;
        }
        if !fuse_mounts_at(&path).is_empty() {
            bg.kill();
            let o = bg.wait_timeout(Duration::from_secs(5));
            panic!(
                "{what} mounted {} instead of refusing; its output:\n{}",
                path.display(),
                super::show(&o)
            );
        }
        if Instant::now() > deadline {
            // wait_timeout kills it and panics with its output.
            bg.wait_timeout(Duration::ZERO);
            unreachable!();
        }
        thread::sleep(Duration::from_millis(5));
    }
    let o = bg.wait_timeout(Duration::from_secs(5));
    assert!(
        fuse_mounts_at(&path).is_empty(),
        "{what} exited but left a mount at {}: {}",
        path.display(),
        super::show(&o)
    );
    Refused {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Make the mailbox `name` on `on` (as [`Mount::mailbox`] does, with
/// `policy`), and wait until each of `others` shows it with the same
/// `policy` file: the tree reaches other mounts as events, and tests that
/// are not about how soon use the mailbox on every mount at once after this.
pub fn shared_mailbox(on: &Mount, others: &[&Mount], name: &str, policy: &str) -> PathBuf {
    let dir = on.mailbox(name, policy);
    let want = std::fs::read_to_string(dir.join("policy"))
        .unwrap_or_else(|e| panic!("read {}/policy: {e}", dir.display()));
    for m in others {
        let theirs = m.p(name).join("policy");
        wait_until(
            Duration::from_secs(10),
            &format!("{} reads {want:?}", theirs.display()),
            || std::fs::read_to_string(&theirs).is_ok_and(|t| t == want),
        );
    }
    dir
}

/// A direct link between a shell and its child on the mount `m` carries a
/// message (proc/ is local to each daemon).
pub fn assert_proc_link_works(m: &Mount, when: &str) {
    let o = m.sh(
        r#"set -e
        cat "$M/proc/$$/recv" & c=$!
        echo over-the-link > "$M/proc/$c/send"
        wait $c"#,
        Duration::from_secs(10),
    );
    assert!(o.status.success(), "proc/ link {when}: {}", show(&o));
    assert_eq!(out_str(&o), "over-the-link\n", "proc/ link {when}");
}

/// `echo late > box/send` on mount `m`, blocked on the full shared mailbox
/// `bx` (seen from any mount), with the default signal actions: returned
/// once the broker lists it as a waiting sender.
pub fn blocked_writer(m: &Mount, bx: &Path) -> Bg {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("echo late > {}", m.p("box/send").display()));
    default_signals(&mut cmd);
    let w = Bg::spawn(cmd, "echo late > box/send");
    wait_until(
        Duration::from_secs(10),
        "the blocked writer waits on the broker",
        || count(bx, "senders-waiting") == 1,
    );
    w
}
