//! The daemon (ipcfs(1)): foreground serving, signals, external unmount, options.

mod common;

use common::*;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Signal the daemon while a `cat` is blocked on a mailbox: the daemon must exit 0,
/// unmount, and the reader must get an error (ENOTCONN), not hang.
fn signal_with_blocked_reader(sig: i32) {
    let mut m = Mount::new();
    m.mailbox("box", "");
    let reader = m.spawn_sh("cat \"$M/box/recv\"");
    wait_status(&m.p("box/status"), "receivers-waiting", "1");
    let start = Instant::now();
    m.signal_daemon(sig);
    let st = m.wait_daemon_exit(Duration::from_secs(5));
    assert_eq!(
        st.code(),
        Some(0),
        "daemon exit after signal {sig}: {}",
        describe(&st)
    );
    let o = reader.wait_timeout(Duration::from_secs(5));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "blocked reader freed only after {:?}",
        start.elapsed()
    );
    assert!(
        !o.status.success(),
        "blocked reader must get an error: {}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Transport endpoint is not connected"),
        "blocked reader should fail with ENOTCONN: {}",
        show(&o)
    );
    wait_until(T, "the mount is gone after the daemon exits", || {
        !m.is_mounted()
    });
}

#[test]
fn sigterm_with_blocked_reader_exits_0_and_frees_reader() {
    signal_with_blocked_reader(libc::SIGTERM);
}

#[test]
fn sigint_with_blocked_reader_exits_0_and_frees_reader() {
    signal_with_blocked_reader(libc::SIGINT);
}

#[test]
fn sighup_with_blocked_reader_exits_0_and_frees_reader() {
    signal_with_blocked_reader(libc::SIGHUP);
}

#[test]
fn blocked_reader_in_thread_gets_enotconn_on_sigterm() {
    let mut m = Mount::new();
    m.mailbox("box", "");
    let path = m.p("box/recv");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let r = fs::File::open(&path).and_then(|mut f| f.read(&mut [0u8; 16]));
        let _ = tx.send(r);
    });
    wait_status(&m.p("box/status"), "receivers-waiting", "1");
    m.signal_daemon(libc::SIGTERM);
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("reader still blocked 5 s after SIGTERM");
    assert_errno(r, libc::ENOTCONN, "blocked read when the daemon stops");
    let st = m.wait_daemon_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{}", describe(&st));
}

#[test]
fn sigterm_when_idle_exits_0_and_unmounts() {
    let mut m = Mount::new();
    m.mailbox("box", "");
    m.signal_daemon(libc::SIGTERM);
    let st = m.wait_daemon_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{}", describe(&st));
    wait_until(T, "the mount is gone", || !m.is_mounted());
}

/// Runs `umount ARGS MOUNTPOINT` from outside and asserts the daemon then
/// exits with status 0 within 5 s.
fn unmount_externally(m: &mut Mount, args: &[&str]) {
    let o = Command::new("umount")
        .args(args)
        .arg(m.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "umount {args:?}: {}", show(&o));
    let st = m.wait_daemon_exit(Duration::from_secs(5));
    assert_eq!(
        st.code(),
        Some(0),
        "daemon exit after umount {args:?}: {}",
        describe(&st)
    );
}

#[test]
fn external_lazy_umount_makes_daemon_exit_0() {
    let mut m = Mount::new();
    m.mailbox("box", "");
    unmount_externally(&mut m, &["-l"]);
}

/// A lazy unmount while a reader is blocked on the mount: the kernel keeps
/// the connection until that descriptor closes, so the daemon must notice by
/// itself, free the reader with an error and exit 0.
#[test]
fn external_lazy_umount_with_a_blocked_reader_frees_it_and_exits_0() {
    let mut m = Mount::new();
    m.mailbox("box", "");
    let reader = m.spawn_sh("cat \"$M/box/recv\"");
    wait_status(&m.p("box/status"), "receivers-waiting", "1");
    unmount_externally(&mut m, &["-l"]);
    let o = reader.wait_timeout(Duration::from_secs(5));
    assert!(
        !o.status.success(),
        "the blocked reader gets an error: {}",
        show(&o)
    );
}

#[test]
fn external_umount_makes_daemon_exit_0() {
    let mut m = Mount::new();
    m.mailbox("box", "");
    unmount_externally(&mut m, &[]);
}

#[test]
fn daemon_stays_in_foreground_until_stopped() {
    let mut m = Mount::new();
    // Mount::new waited for the mount; the process we started must still be the server.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        m.daemon_exited().is_none(),
        "the daemon must run in the foreground"
    );
    m.mailbox("box", "");
    assert!(m.is_mounted());
}

#[test]
fn creates_a_missing_mountpoint() {
    let parent = tempfile::tempdir().unwrap();
    let mp = parent.path().canonicalize().unwrap().join("not-yet");
    assert!(!mp.exists());
    let argv = vec![mp.to_string_lossy().into_owned()];
    let m = Mount::spawn_raw(&argv, mp.clone(), None);
    assert!(mp.is_dir());
    m.mailbox("box", "");
    assert!(m.p("box/send").exists());
    drop(m);
    drop(parent);
}

#[test]
fn fstab_form_none_mountpoint_dash_o() {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap();
    let argv: Vec<String> = vec![
        "none".into(),
        mp.to_string_lossy().into_owned(),
        "-o".into(),
        "allow_other".into(),
    ];
    let m = Mount::spawn_raw(&argv, mp, Some(dir));
    m.mailbox("box", "");
    let o = m.sh("echo fstab > box/send && cat box/recv", T);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(o.stdout, b"fstab\n");
    // allow_other given through -o reaches the kernel: nobody can list the root.
    let o = m.sh_as_nobody("ls \"$M\"", T);
    assert!(o.status.success(), "allow_other via -o: {}", show(&o));
}

#[test]
fn without_allow_other_other_users_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap();
    let argv = vec![mp.to_string_lossy().into_owned()];
    let m = Mount::spawn_raw(&argv, mp, Some(dir));
    let o = m.sh_as_nobody("ls \"$M\"", T);
    assert!(
        !o.status.success(),
        "nobody must not reach a mount without allow_other: {}",
        show(&o)
    );
}

#[test]
fn help_explains_the_tree() {
    let o = Command::new(env!("CARGO_BIN_EXE_ipcfs"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success(), "--help: {}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for word in [
        "send",
        "recv",
        "policy",
        "status",
        "--allow-other",
        "--max-message-size",
        "--capacity",
    ] {
        assert!(
            text.contains(word),
            "--help should mention {word:?}:\n{text}"
        );
    }
}

#[test]
fn missing_mountpoint_argument_fails() {
    let o = Command::new(env!("CARGO_BIN_EXE_ipcfs")).output().unwrap();
    assert!(
        !o.status.success(),
        "ipcfs without a mountpoint must fail: {}",
        show(&o)
    );
}

#[test]
fn mounting_on_a_regular_file_fails_naming_it() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ipcfs"))
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&f.path().display().to_string()) && err.contains("not a directory"),
        "the error names the path and the cause: {err}"
    );
}

#[test]
fn bad_option_values_are_usage_errors() {
    for args in [
        &["--capacity", "lots", "/tmp/x"][..],
        &["--max-message-size", "8M", "/tmp/x"],
        &["--default-policy", "bogus", "/tmp/x"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_ipcfs"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
        assert!(String::from_utf8_lossy(&o.stderr).starts_with("ipcfs: "));
    }
}

#[test]
fn options_set_the_default_policy() {
    let m = Mount::with_args(&[
        "--default-policy",
        "exclusive",
        "--capacity",
        "5",
        "--max-message-size",
        "4096",
        "--max-memory",
        "1M",
    ]);
    assert_eq!(
        fs::read_to_string(m.p("policy")).unwrap(),
        "exclusive capacity=5 max-message-size=4096\n"
    );
    m.mailbox("box", "");
    let s = status_map(&m.p("box/status"));
    assert_eq!(s["policy"], "exclusive", "{s:?}");
    assert_eq!(s["capacity"], "5", "{s:?}");
    assert_eq!(s["max-message-size"], "4096", "{s:?}");
    assert_eq!(s["memory-limit"], "1048576", "{s:?}");
}

#[test]
fn capacity_unlimited_option() {
    let m = Mount::with_args(&["--capacity", "unlimited"]);
    let text = fs::read_to_string(m.p("policy")).unwrap();
    assert!(
        text.starts_with("arbitrary capacity=unlimited "),
        "{text:?}"
    );
}

/// `umount -l` of a busy mount, then at once a new ipcfs on the same path:
/// the old daemon watches its own mount, not the path, so it still exits
/// and frees its blocked reader; the new mount keeps serving.
#[test]
fn a_new_mount_on_the_path_does_not_keep_a_lazily_unmounted_daemon() {
    let mut old = Mount::new();
    old.mailbox("box", "");
    let reader = old.spawn_sh("cat \"$M/box/recv\"");
    wait_status(&old.p("box/status"), "receivers-waiting", "1");
    let o = Command::new("umount")
        .arg("-l")
        .arg(old.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "umount -l: {}", show(&o));
    let path = old.path().to_path_buf();
    let argv = vec!["--allow-other".into(), path.to_string_lossy().into_owned()];
    let new = Mount::spawn_raw(&argv, path, None);

    let st = old.wait_daemon_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "old daemon: {}", describe(&st));
    let o = reader.wait_timeout(Duration::from_secs(5));
    assert!(
        !o.status.success(),
        "the old mount's blocked reader gets an error: {}",
        show(&o)
    );
    assert!(!old.is_mounted(), "the old mount is gone");
    assert!(new.is_mounted(), "the old daemon left the new mount alone");
    let o = new.sh("mkdir b && echo fresh > b/send && cat b/recv", T);
    assert!(o.status.success(), "the new mount serves: {}", show(&o));
    assert_eq!(o.stdout, b"fresh\n");
}

/// A second ipcfs on a path where one serves is refused (and mounts
/// nothing); the first keeps serving.
#[test]
fn a_second_ipcfs_on_a_served_path_is_refused() {
    let mut m = Mount::new();
    m.mailbox("box", "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcfs"));
    cmd.arg("--allow-other").arg(m.path());
    let o = Bg::spawn(cmd, "a second ipcfs on the same path").wait_timeout(T);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "ipcfs: cannot mount on {}: an ipcfs is already mounted there",
            m.path().display()
        )),
        "the error names the path and the cause: {err}"
    );
    assert_eq!(fuse_mounts_at(m.path()).len(), 1, "nothing was stacked");
    assert!(m.daemon_exited().is_none(), "the first daemon still runs");
    let o = m.sh("echo still > box/send && cat box/recv", T);
    assert!(o.status.success(), "the first mount serves: {}", show(&o));
    assert_eq!(o.stdout, b"still\n");
}

/// A tmpfs a test mounted (source `COVER_SOURCE`), unmounted when dropped.
struct Cover(std::path::PathBuf);

const COVER_SOURCE: &str = "ipcfs-test-cover";

impl Cover {
    fn mount(path: &std::path::Path) -> Cover {
        let o = Command::new("mount")
            .args(["-t", "tmpfs", COVER_SOURCE])
            .arg(path)
            .output()
            .expect("run mount(8)");
        assert!(o.status.success(), "mount -t tmpfs: {}", show(&o));
        assert!(mounted_at(path, "tmpfs", COVER_SOURCE));
        Cover(path.to_path_buf())
    }
}

impl Drop for Cover {
    fn drop(&mut self) {
        // Only while it is there: else `umount` would take whatever is on top.
        if mounted_at(&self.0, "tmpfs", COVER_SOURCE) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Another filesystem mounted on top of the ipcfs mount: on SIGTERM the
/// daemon unmounts only its own mount, which it cannot without taking the
/// one on top along, so it leaves both, warns and exits 0.
#[test]
fn sigterm_leaves_a_mount_on_top_of_ours_alone() {
    let mut m = Mount::new();
    m.mailbox("box", "");
    let _cover = Cover::mount(m.path());
    m.signal_daemon(libc::SIGTERM);
    let st = m.wait_daemon_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{}", describe(&st));
    assert!(
        mounted_at(m.path(), "tmpfs", COVER_SOURCE),
        "the tmpfs on top stays mounted; daemon log:\n{}",
        m.daemon_log()
    );
    let log = m.daemon_log();
    assert!(
        log.contains("WARN") && log.contains("is covered by another mount"),
        "the daemon warns that its mount is covered: {log}"
    );
}

/// SIGTERM right after an external `umount -l` of a busy mount: the mount
/// is gone already, which is no error; the daemon exits 0 and logs none.
#[test]
fn sigterm_just_after_an_external_lazy_umount_logs_no_error() {
    let mut m = Mount::new();
    m.mailbox("box", "");
    // Keeps the detached mount, and so the connection, alive.
    let holder = m.spawn_sh("exec sleep 60");
    wait_until(T, "the holder runs in the mount", || {
        fs::read_link(format!("/proc/{}/cwd", holder.pid())).is_ok_and(|p| p == m.path())
    });
    let o = Command::new("umount")
        .arg("-l")
        .arg(m.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "umount -l: {}", show(&o));
    m.signal_daemon(libc::SIGTERM);
    let st = m.wait_daemon_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{}", describe(&st));
    let log = m.daemon_log();
    assert!(!log.contains("ERROR"), "no error logged: {log}");
    drop(holder);
}

/// An ipcfs mounted on a tmpfs, unmounted from outside: the session ends,
/// and its teardown must not unmount the path once more (that took the
/// tmpfs below).
#[test]
fn an_external_umount_leaves_the_filesystem_below_alone() {
    let dir = tempfile::Builder::new()
        .prefix("ipcfs-test.")
        .tempdir()
        .unwrap();
    let path = dir.path().canonicalize().unwrap();
    let _below = Cover::mount(&path);
    let argv = vec![path.to_string_lossy().into_owned()];
    let mut m = Mount::spawn_raw(&argv, path.clone(), None);
    m.mailbox("box", "");
    unmount_externally(&mut m, &[]);
    assert!(
        mounted_at(&path, "tmpfs", COVER_SOURCE),
        "the tmpfs below stays mounted; daemon log:\n{}",
        m.daemon_log()
    );
    assert!(!m.is_mounted());
}
