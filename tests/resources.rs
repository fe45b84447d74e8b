//! The daemon's descriptors (ipcfs(7) Memory, ERRORS): a process whose exit
//! it watches holds a pidfd, charged to the opener's share of --max-memory,
//! so that no user can take the descriptors everyone needs; and when none is
//! left, callers get EMFILE and no live process is taken for gone.

mod common;

use common::*;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A mailbox everyone may use, with receiver rule `rule`.
fn public_box(m: &Mount, name: &str, rule: &str) {
    let b = m.mailbox(name, &format!("{rule}\n"));
    fs::set_permissions(&b, fs::Permissions::from_mode(0o1777)).unwrap();
}

/// `n` processes of nobody's that each open `path` for reading and sleep,
/// holding it: those that could, and the errors of those that could not.
fn flood(path: &Path, n: usize) -> (Vec<Held>, Vec<io::Error>) {
    let (mut held, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..n {
        match hold(&[(path, libc::O_RDONLY)], Some(NOBODY)) {
            Ok(h) => held.push(h),
            Err(e) => refused.push(e),
        }
    }
    (held, refused)
}

fn errnos(errors: &[io::Error]) -> Vec<i32> {
    let mut all: Vec<i32> = errors.iter().map(errno).collect();
    all.dedup();
    all
}

/// Opens of `status` and `policy` of an exclusive mailbox bind nobody, so
/// the daemon watches nobody for them: it holds no descriptor more.
#[test]
fn status_and_policy_opens_hold_no_descriptor() {
    let m = Mount::new();
    public_box(&m, "pub", "exclusive");
    let before = m.daemon_fds();
    let mut held = Vec::new();
    for _ in 0..120 {
        let files = [
            (m.p("pub/status"), libc::O_RDONLY),
            (m.p("pub/policy"), libc::O_RDONLY),
        ];
        let files: Vec<(&Path, i32)> = files.iter().map(|(p, f)| (p.as_path(), *f)).collect();
        held.push(hold(&files, Some(NOBODY)).expect("nobody opens status and policy"));
    }
    let after = m.daemon_fds();
    assert!(
        after <= before + 4,
        "120 live processes that opened status and policy: the daemon went from {before} to {after} descriptors"
    );
}

/// A flood of nobody's processes that each open a direct link's `recv`
/// (each watched, a pidfd each) runs into nobody's share (ENOBUFS) long
/// before the daemon runs out of descriptors; root's operations still work.
#[test]
fn a_flood_of_watched_processes_gets_enobufs_and_root_still_works() {
    // 128 descriptors: 62 to spare for watches, nobody's quarter about 15.
    let m = Mount::with_nofile(128, &[]);
    m.mailbox("x", "");
    public_box(&m, "ex2", "exclusive");
    let peer = sleeper();
    let (held, refused) = flood(&m.p(&format!("proc/{}/recv", peer.pid())), 150);
    assert!(
        !refused.is_empty() && errnos(&refused) == [libc::ENOBUFS],
        "{} opened; the others must get ENOBUFS, got {:?}",
        held.len(),
        errnos(&refused)
    );
    assert!(
        (5..=20).contains(&held.len()),
        "nobody's quarter is about 15 watches, {} opened",
        held.len()
    );
    let fds = m.daemon_fds();
    assert!(fds < 100, "the daemon holds {fds} of its 128 descriptors");
    assert!(
        m.daemon_log().contains("ENOBUFS"),
        "the refusals are logged at warn:\n{}",
        m.daemon_log()
    );
    // Root: the daemon's status, a send, and an exclusive mailbox's recv.
    fs::read_to_string(m.p("proc/status")).expect("root reads proc/status");
    fs::write(m.p("x/send"), "hello\n").expect("root sends to x");
    let r = fs::File::open(m.p("ex2/recv")).expect("root opens ex2/recv");
    drop(r);
    drop(held);
}

/// When the daemon has no descriptor left (its limit lowered under it),
/// callers get EMFILE (not ESRCH, not ENOENT), it is logged at warn, and an
/// exclusive mailbox's live holder keeps its hold.
#[test]
fn out_of_descriptors_callers_get_emfile_and_holders_keep_their_hold() {
    let m = Mount::with_nofile(4096, &[]);
    public_box(&m, "ex", "exclusive");
    let holder = hold(&[(&m.p("ex/recv"), libc::O_RDONLY)], None).expect("root holds ex/recv");
    let peer = sleeper();
    // Room for 20 descriptors more: far fewer than nobody's share allows.
    let limit = m.daemon_fds() as u64 + 20;
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit on our own child, with a valid struct.
    let rc = unsafe {
        libc::prlimit(
            m.daemon_pid() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", io::Error::last_os_error());
    let (held, refused) = flood(&m.p(&format!("proc/{}/recv", peer.pid())), 40);
    assert!(
        !held.is_empty() && !refused.is_empty() && errnos(&refused) == [libc::EMFILE],
        "{} opened; the others must get EMFILE, got {:?}",
        held.len(),
        errnos(&refused)
    );
    // Out of descriptors, the daemon cannot tell whether a process lives:
    // it says so, rather than that there is no such process.
    assert_errno(
        fs::metadata(m.p(&format!("proc/{}", holder.pid()))),
        libc::EMFILE,
        "stat of proc/<holder> with no descriptor left",
    );
    assert_errno(
        in_child(&m.p("ex/recv"), libc::O_RDONLY, false, None),
        libc::EMFILE,
        "another process's open of ex/recv with no descriptor left",
    );
    let log = m.daemon_log();
    assert!(
        log.contains("WARN") && log.contains("Too many open files"),
        "the lack of descriptors is logged at warn:\n{log}"
    );
    // The flood ends: its watches go, and with them the daemon's pidfds.
    drop(held);
    wait_until(T, "the daemon's descriptors are freed", || {
        (m.daemon_fds() as u64) < limit - 10
    });
    assert_errno(
        in_child(&m.p("ex/recv"), libc::O_RDONLY, false, None),
        libc::EBUSY,
        "ex/recv while its live holder keeps it open",
    );
    drop(holder);
}
