//! Mailboxes as directories (ipcfs(7) THE TREE, MAILBOXES): mkdir makes a
//! mailbox with its files, mailboxes nest, rmdir removes one with its queue
//! and ends its parked callers with EIDRM, and what the tree refuses (plain
//! files, reserved and over-long names) fails with the errno ERRORS gives.
//!
//! Every blocking step has a deadline.

mod common;

use common::*;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[test]
fn mkdir_creates_mailbox_files_and_nesting_works() {
    let m = Mount::new();
    let o = m.sh("mkdir -p a/b/c", T);
    assert!(o.status.success(), "mkdir -p: {}", show(&o));
    for d in ["a", "a/b", "a/b/c"] {
        let mut names: Vec<String> = fs::read_dir(m.p(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut want = vec!["batch", "packets", "policy", "recv", "send", "status"];
        if d != "a/b/c" {
            want.push(if d == "a" { "b" } else { "c" });
        }
        want.sort();
        assert_eq!(names, want, "listing of {d}");
        assert!(fs::metadata(m.p(d)).unwrap().is_dir());
    }
    let mut root: Vec<String> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    root.sort();
    assert_eq!(root, vec!["a", "policy", "proc"]);
    // Nested mailboxes are independent.
    send(&m.p("a/b"), b"to b");
    send(&m.p("a/b/c"), b"to c");
    assert_eq!(recv(&m.p("a/b/c")), b"to c");
    assert_eq!(recv(&m.p("a/b")), b"to b");
    assert_errno(
        recv_nb(&m.p("a").join("recv")),
        libc::EAGAIN,
        "parent mailbox is separate",
    );
    // rmdir from the leaves up.
    for d in ["a/b/c", "a/b", "a"] {
        fs::remove_dir(m.p(d)).unwrap_or_else(|e| panic!("rmdir {d}: {e}"));
    }
    assert_errno(fs::metadata(m.p("a")), libc::ENOENT, "stat after rmdir");
}

#[test]
fn mkdir_existing_mailbox_is_eexist() {
    let m = Mount::new();
    m.mailbox("dup", "");
    assert_errno(
        fs::create_dir(m.p("dup")),
        libc::EEXIST,
        "mkdir of an existing mailbox",
    );
}

#[test]
fn rmdir_with_child_mailbox_is_enotempty() {
    let m = Mount::new();
    let o = m.sh("mkdir -p parent/child", T);
    assert!(o.status.success(), "{}", show(&o));
    assert_errno(
        fs::remove_dir(m.p("parent")),
        libc::ENOTEMPTY,
        "rmdir of a mailbox with a child",
    );
    assert!(m.p("parent/child").is_dir(), "nothing removed");
    fs::remove_dir(m.p("parent/child")).unwrap();
    fs::remove_dir(m.p("parent")).unwrap();
}

#[test]
fn rmdir_with_queued_messages_succeeds() {
    let m = Mount::new();
    let b = m.mailbox("full", "");
    for i in 0..3 {
        send(&b, format!("pending {i}").as_bytes());
    }
    fs::remove_dir(&b).expect("rmdir of a mailbox with queued messages");
    assert!(!b.exists());
    // A new mailbox of the same name starts empty.
    m.mailbox("full", "");
    assert_eq!(status_of(&b, "messages"), "0");
    assert_errno(
        recv_nb(&b.join("recv")),
        libc::EAGAIN,
        "recreated mailbox is empty",
    );
}

#[test]
fn blocked_reader_gets_eidrm_on_rmdir() {
    let m = Mount::new();
    let b = m.mailbox("gone", "");
    let path = b.join("recv");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = File::open(&path).and_then(|mut f| {
            let mut buf = [0u8; 16];
            f.read(&mut buf)
        });
        let _ = tx.send(r);
    });
    wait_status(&b.join("status"), "receivers-waiting", "1");
    fs::remove_dir(&b).expect("rmdir with a blocked reader");
    let r = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("blocked reader still blocked 3 s after rmdir");
    assert_errno(r, libc::EIDRM, "blocked read when the mailbox is removed");
}

#[test]
fn blocked_cat_fails_on_rmdir() {
    let m = Mount::new();
    let b = m.mailbox("gone2", "");
    let cat = m.spawn_sh("cat \"$M/gone2/recv\"");
    wait_status(&b.join("status"), "receivers-waiting", "1");
    fs::remove_dir(&b).unwrap();
    let o = cat.wait_timeout(Duration::from_secs(3));
    assert!(!o.status.success(), "cat should fail: {}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Identifier removed"),
        "cat should report EIDRM: {}",
        show(&o)
    );
}

#[test]
fn io_on_descriptors_opened_before_rmdir_gets_eidrm() {
    let m = Mount::new();
    let b = m.mailbox("old", "");
    send(&b, b"left behind");
    let mut w = open_with(&b.join("send"), false, true, 0).unwrap();
    let mut r = File::open(b.join("recv")).unwrap();
    let mut rnb = open_with(&b.join("recv"), true, false, libc::O_NONBLOCK).unwrap();
    fs::remove_dir(&b).unwrap();
    let res = within(T, "write after rmdir", move || w.write(b"x"));
    assert_errno(res, libc::EIDRM, "write on send opened before rmdir");
    let res = within(T, "read after rmdir", move || {
        let mut buf = [0u8; 16];
        r.read(&mut buf)
    });
    assert_errno(res, libc::EIDRM, "read on recv opened before rmdir");
    let mut buf = [0u8; 16];
    assert_errno(
        rnb.read(&mut buf),
        libc::EIDRM,
        "non-blocking read on recv opened before rmdir",
    );
}

#[test]
fn reserved_names_cannot_be_made_into_mailboxes() {
    let m = Mount::new();
    for name in ["policy", "proc"] {
        assert_errno(
            fs::create_dir(m.p(name)),
            libc::EEXIST,
            &format!("mkdir {name} at the root"),
        );
    }
    let b = m.mailbox("box", "");
    for name in ["send", "recv", "packets", "batch", "policy", "status"] {
        assert_errno(
            fs::create_dir(b.join(name)),
            libc::EEXIST,
            &format!("mkdir box/{name}"),
        );
    }
    // The files are still files.
    assert!(fs::metadata(b.join("send")).unwrap().is_file());
    assert!(fs::metadata(m.p("policy")).unwrap().is_file());
}

#[test]
fn creating_plain_files_fifos_devices_and_symlinks_is_eperm() {
    let m = Mount::new();
    let b = m.mailbox("box", "");
    for p in [m.p("file"), b.join("file")] {
        assert_errno(
            File::create(&p),
            libc::EPERM,
            &format!("create {}", p.display()),
        );
        assert!(!p.exists());
    }
    let c = |p: PathBuf| std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path strings.
    let r = unsafe { libc::mkfifo(c(b.join("fifo")).as_ptr(), 0o644) };
    assert_eq!(r, -1, "mkfifo should fail");
    assert_eq!(
        errno(&std::io::Error::last_os_error()),
        libc::EPERM,
        "mkfifo"
    );
    // SAFETY: as above.
    let r = unsafe {
        libc::mknod(
            c(m.p("null")).as_ptr(),
            libc::S_IFCHR | 0o644,
            libc::makedev(1, 3),
        )
    };
    assert_eq!(r, -1, "mknod should fail");
    assert_eq!(
        errno(&std::io::Error::last_os_error()),
        libc::EPERM,
        "mknod char device"
    );
    assert_errno(
        std::os::unix::fs::symlink("/etc/passwd", b.join("link")),
        libc::EPERM,
        "symlink in a mailbox",
    );
    assert_errno(
        std::os::unix::fs::symlink("box", m.p("link")),
        libc::EPERM,
        "symlink at the root",
    );
    let o = m.sh("echo x > box/newfile", T);
    assert!(
        !o.status.success(),
        "shell redirection to a new name must fail: {}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "{}",
        show(&o)
    );
}

#[test]
fn touch_of_existing_files_succeeds() {
    let m = Mount::new();
    m.mailbox("box", "");
    let o = m.sh("touch box/send && touch box/recv && touch box", T);
    assert!(o.status.success(), "touch: {}", show(&o));
}

#[test]
fn name_longer_than_255_bytes_is_enametoolong() {
    let m = Mount::new();
    let long = "n".repeat(256);
    assert_errno(
        fs::create_dir(m.p(&long)),
        libc::ENAMETOOLONG,
        "mkdir with a 256-byte name",
    );
    let ok = "n".repeat(255);
    fs::create_dir(m.p(&ok)).expect("mkdir with a 255-byte name");
    send(&m.p(&ok), b"long name ok");
    assert_eq!(recv(&m.p(&ok)), b"long name ok");
}
