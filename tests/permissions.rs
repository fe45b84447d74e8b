//! Who may do what (ipcfs(7) Permissions, Memory): users root, the mailbox's owner, a
//! member of its group and another user, on an `--allow-other` mount,
//! against every operation, for a private (0755) and a group (0775)
//! mailbox. Each cell runs as that user in a fresh shell. Then the modes
//! and owners of a mailbox's files: mkdir's mode, chmod and chown of the
//! mailbox and of its files, and that the kernel enforces them.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const OWNER: u32 = 1001;
const GROUP: u32 = 1001;
const MEMBER: u32 = 1002;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Root,
    Owner,
    Member,
    Other,
}

impl Who {
    fn ids(self) -> (u32, u32) {
        match self {
            Who::Root => (0, 0),
            Who::Owner => (OWNER, GROUP),
            Who::Member => (MEMBER, GROUP),
            Who::Other => (NOBODY, NOBODY),
        }
    }
}

/// Runs `script` (bash, `$M` the mountpoint) as `who`; true if it exits 0.
fn may(m: &Mount, who: Who, script: &str) -> bool {
    let (uid, gid) = who.ids();
    m.sh_as(uid, gid, script, T).status.success()
}

/// A mailbox `name` of mode `mode`, made by the owner.
fn owners_box(m: &Mount, name: &str, mode: u32) {
    assert!(
        may(m, Who::Owner, &format!("mkdir -m {mode:o} \"$M/{name}\"")),
        "the owner makes {name}"
    );
}

const ALL: [Who; 4] = [Who::Root, Who::Owner, Who::Member, Who::Other];

/// The operations, as shell snippets on mailbox `B` (`$B`), each leaving
/// the mailbox as it found it when it succeeds.
fn operations() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "send",
            r#"echo x > "$B/send" && timeout 5 cat "$B/recv" >/dev/null"#,
        ),
        ("receive", r#"timeout 5 cat "$B/recv" >/dev/null"#),
        ("packets write", r#"exec 3>"$B/packets" && echo x >&3"#),
        ("packets read", r#"exec 3<"$B/packets""#),
        (
            "batch write",
            r#"exec 3>"$B/batch" && printf '\001\000\000\000x' >&3"#,
        ),
        ("batch read", r#"exec 3<"$B/batch""#),
        ("read status", r#"cat "$B/status" >/dev/null"#),
        ("write policy", r#"echo arbitrary > "$B/policy""#),
        ("chmod", r#"chmod "$(stat -c %a "$B")" "$B""#),
        ("mkdir inside", r#"mkdir "$B/sub.$$" && rmdir "$B/sub.$$""#),
    ]
}

#[test]
fn permission_matrix() {
    let m = Mount::new();
    owners_box(&m, "private", 0o755);
    owners_box(&m, "group", 0o775);
    // Expected: (mailbox, operation) -> who may.
    let root_and_owner = [true, true, false, false];
    let group = [true, true, true, false];
    let everyone = [true, true, true, true];
    let expect = |boxname: &str, op: &str| -> [bool; 4] {
        match (boxname, op) {
            (_, "read status") => everyone,
            (_, "write policy" | "chmod") => root_and_owner,
            ("private", _) => root_and_owner,
            ("group", _) => group,
            _ => unreachable!(),
        }
    };
    let mut table = vec![format!(
        "| mailbox | operation | {} |",
        ALL.map(|w| format!("{w:?}")).join(" | ")
    )];
    let mut wrong = Vec::new();
    for boxname in ["private", "group"] {
        for (op, script) in operations() {
            let script = format!("B=\"$M/{boxname}\"; {script}");
            let got = ALL.map(|who| {
                // Something to receive, sent by root (who may send anywhere).
                if op == "receive" {
                    send_nb(&m.p(&format!("{boxname}/send")), b"x").unwrap();
                }
                let ok = may(&m, who, &script);
                if op == "receive" && !ok {
                    recv_nb(&m.p(&format!("{boxname}/recv"))).unwrap();
                }
                ok
            });
            let want = expect(boxname, op);
            table.push(format!(
                "| {boxname} | {op} | {} |",
                got.map(|g| if g { "yes" } else { "no" }).join(" | ")
            ));
            if got != want {
                wrong.push(format!("{boxname}/{op}: got {got:?}, want {want:?}"));
            }
        }
    }
    println!("{}", table.join("\n"));
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        table.join("\n")
    );
}

#[test]
fn rmdir_and_direct_sends_follow_ownership_and_the_kill_rule() {
    let m = Mount::new();
    owners_box(&m, "mine", 0o777);
    // The root is sticky (01777): only the owner and root remove a mailbox.
    assert!(!may(&m, Who::Member, r#"rmdir "$M/mine""#));
    assert!(!may(&m, Who::Other, r#"rmdir "$M/mine""#));
    assert!(may(&m, Who::Owner, r#"rmdir "$M/mine""#));
    // Direct sends follow kill(2): to one's own processes, or as root.
    let target = hold(&[], Some(OWNER)).expect("a process of the owner's");
    let send = format!("echo hi > \"$M/proc/{}/send\"", target.pid());
    assert!(may(&m, Who::Root, &send), "root sends to anyone");
    assert!(may(&m, Who::Owner, &send), "same user");
    assert!(!may(&m, Who::Member, &send), "another user, same group");
    assert!(!may(&m, Who::Other, &send), "another user");
}

/// One user cannot take what the others need: with
/// `--max-memory 4M`, a user other than root and the mounting user holds at
/// most a quarter of it (`--user-share`), and root can still make mailboxes
/// and send when that user has flooded its own.
#[test]
fn a_flooding_user_is_held_to_its_share() {
    let m = Mount::with_args(&["--max-memory", "4M"]);
    assert!(may(&m, Who::Other, r#"mkdir -m 700 "$M/flood""#));
    assert!(may(
        &m,
        Who::Other,
        r#"echo capacity=unlimited > "$M/flood/policy""#
    ));
    // 64 KiB messages until the share is used up.
    let (uid, gid) = Who::Other.ids();
    let o = m.sh_as(
        uid,
        gid,
        r#"n=0; while head -c 65536 /dev/zero > "$M/flood/send" 2>/dev/null; do n=$((n+1)); [ $n -ge 200 ] && break; done; echo $n"#,
        T,
    );
    let accepted: usize = out_str(&o).trim().parse().expect("a count");
    println!("nobody's flood: {accepted} messages of 64 KiB accepted");
    assert!(accepted > 0, "{}", show(&o));
    assert!(
        accepted * 65536 <= 1 << 20,
        "{accepted} messages of 64 KiB pass a 1 MiB share"
    );
    // Root is not starved.
    assert!(may(
        &m,
        Who::Root,
        r#"mkdir "$M/roots" && echo mine > "$M/roots/send""#
    ));
    let used = num(&status_map(&m.p("proc/status")), "memory-used");
    assert!(used <= 4 << 20, "memory-used {used}");
}

// ------------------------------------- modes and owners of a mailbox's files

fn umask() -> u32 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with("Umask:"))
        .expect("Umask in /proc/self/status");
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn mkbox_mode(m: &Mount, name: &str, mode: u32) -> PathBuf {
    let p = m.p(name);
    fs::DirBuilder::new().mode(mode).create(&p).unwrap();
    p
}

/// A chmod of a mailbox sets its files' modes anew, as mkdir does: GNU
/// `mkdir -m 1777` (mkdir with the umask, then chmod) shares the mailbox
/// with everyone, and `chmod 700` makes it private; a chmod of one file
/// changes that file only, until the next chmod of the directory.
#[test]
fn chmod_of_a_mailbox_sets_its_files_modes() {
    let m = Mount::new();
    let o = m.sh("umask 022; mkdir -m 1777 \"$M/pub\"", T);
    assert!(o.status.success(), "{}", show(&o));
    let b = m.p("pub");
    assert_eq!(mode(&b), 0o1777);
    assert_eq!(mode(&b.join("send")), 0o666);
    assert_eq!(mode(&b.join("recv")), 0o444);
    let o = m.sh_as_nobody(
        "echo hi > \"$M/pub/send\" && timeout 5 cat \"$M/pub/recv\"",
        T,
    );
    assert_eq!(
        out_str(&o),
        "hi\n",
        "anyone may send and receive\n{}",
        show(&o)
    );
    let c = mkbox_mode(&m, "ch", 0o777);
    let send_mode = mode(&c.join("send"));
    fs::set_permissions(c.join("recv"), fs::Permissions::from_mode(0o404)).unwrap();
    assert_eq!(mode(&c.join("recv")), 0o404, "a file's own chmod");
    assert_eq!(mode(&c.join("send")), send_mode, "the others unchanged");
    fs::set_permissions(&c, fs::Permissions::from_mode(0o700)).unwrap();
    let modes: Vec<u32> = ["send", "recv", "packets", "batch", "policy", "status"]
        .iter()
        .map(|f| mode(&c.join(f)))
        .collect();
    assert_eq!(modes, [0o600, 0o400, 0o600, 0o600, 0o600, 0o400]);
    fs::set_permissions(&c, fs::Permissions::from_mode(0o775)).unwrap();
    let modes: Vec<u32> = ["send", "recv", "packets", "batch", "policy", "status"]
        .iter()
        .map(|f| mode(&c.join(f)))
        .collect();
    assert_eq!(modes, [0o660, 0o440, 0o660, 0o660, 0o644, 0o444]);
}

#[test]
fn file_modes_follow_the_directory_mode() {
    let m = Mount::new();
    let b = mkbox_mode(&m, "modes", 0o775);
    let d = 0o775 & !umask();
    assert_eq!(mode(&b), d, "mailbox mode = mkdir mode with umask applied");
    let w = d & 0o222;
    let r = d & 0o444;
    assert_eq!(
        mode(&b.join("send")),
        w | (w << 1),
        "send = write bits + matching read bits"
    );
    assert_eq!(
        mode(&b.join("recv")),
        w << 1,
        "recv = read bits of the classes that may send"
    );
    for f in ["packets", "batch"] {
        assert_eq!(mode(&b.join(f)), w | (w << 1), "{f} = send's bits");
    }
    assert_eq!(
        mode(&b.join("policy")),
        0o200 | r,
        "policy = owner write + read bits"
    );
    assert_eq!(mode(&b.join("status")), r, "status = read bits");
    let md = fs::metadata(&b).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0), "mailbox owned by the caller");
    let root = fs::metadata(m.path()).unwrap();
    assert_eq!(root.permissions().mode() & 0o7777, 0o1777, "root is 01777");
    assert_eq!(mode(&m.p("policy")), 0o644, "root policy mode");
}

#[test]
fn mailbox_mode_0700_shuts_out_other_users() {
    let m = Mount::new();
    let b = mkbox_mode(&m, "private", 0o700);
    assert_eq!(mode(&b), 0o700);
    let o = m.sh_as_nobody("echo hi > \"$M/private/send\"", T);
    assert!(!o.status.success(), "nobody must not send: {}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        show(&o)
    );
    let o = m.sh_as_nobody("cat \"$M/private/recv\"", T);
    assert!(!o.status.success(), "nobody must not receive: {}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        show(&o)
    );
    assert_eq!(status_of(&b, "messages"), "0");
}

#[test]
fn write_only_mailbox_lets_others_send_but_not_receive() {
    let m = Mount::new();
    // 0733: others may search the directory and write (send), not read (receive).
    let b = mkbox_mode(&m, "drop", 0o755);
    fs::set_permissions(&b, fs::Permissions::from_mode(0o733)).unwrap();
    fs::set_permissions(b.join("send"), fs::Permissions::from_mode(0o622)).unwrap();
    fs::set_permissions(b.join("recv"), fs::Permissions::from_mode(0o440)).unwrap();
    assert_eq!(mode(&b.join("send")), 0o622, "chmod on send is kept");
    let o = m.sh_as_nobody("echo from-nobody > \"$M/drop/send\"", T);
    assert!(o.status.success(), "nobody may send: {}", show(&o));
    let o = m.sh_as_nobody("cat \"$M/drop/recv\"", T);
    assert!(!o.status.success(), "nobody must not receive: {}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        show(&o)
    );
    assert_eq!(
        recv(&b),
        b"from-nobody\n",
        "the message nobody sent is still queued"
    );
}

#[test]
fn chmod_on_send_and_recv_is_enforced() {
    let m = Mount::new();
    let b = mkbox_mode(&m, "ch", 0o755);
    // Default for 0755: send 0600 and recv 0400 (a private mailbox).
    let o = m.sh_as_nobody("echo x > \"$M/ch/send\"", T);
    assert!(
        !o.status.success(),
        "send is owner-only by default: {}",
        show(&o)
    );
    let o = m.sh_as_nobody("cat \"$M/ch/recv\"", T);
    assert!(
        !o.status.success(),
        "recv is owner-only by default: {}",
        show(&o)
    );
    fs::set_permissions(b.join("send"), fs::Permissions::from_mode(0o622)).unwrap();
    let o = m.sh_as_nobody("echo x > \"$M/ch/send\"", T);
    assert!(
        o.status.success(),
        "after chmod 622 send, nobody may send: {}",
        show(&o)
    );
    fs::set_permissions(b.join("recv"), fs::Permissions::from_mode(0o444)).unwrap();
    let o = m.sh_as_nobody("cat \"$M/ch/recv\"", T);
    assert!(
        o.status.success(),
        "after chmod 444 recv, nobody may receive: {}",
        show(&o)
    );
    assert_eq!(o.stdout, b"x\n");
    send(&b, b"y");
    fs::set_permissions(b.join("recv"), fs::Permissions::from_mode(0o440)).unwrap();
    let o = m.sh_as_nobody("cat \"$M/ch/recv\"", T);
    assert!(
        !o.status.success(),
        "after chmod 440 recv, nobody must not receive: {}",
        show(&o)
    );
    assert_eq!(recv(&b), b"y");
}

#[test]
fn chown_is_honoured_and_enforced() {
    let m = Mount::new();
    let b = mkbox_mode(&m, "own", 0o755);
    std::os::unix::fs::chown(b.join("send"), Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(b.join("send"), fs::Permissions::from_mode(0o200)).unwrap();
    std::os::unix::fs::chown(b.join("recv"), Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(b.join("recv"), fs::Permissions::from_mode(0o400)).unwrap();
    let md = fs::metadata(b.join("send")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (NOBODY, NOBODY),
        "chown on send is kept"
    );
    let o = m.sh_as_nobody("echo owned > \"$M/own/send\" && cat \"$M/own/recv\"", T);
    assert!(
        o.status.success(),
        "owner nobody may send and receive: {}",
        show(&o)
    );
    assert_eq!(o.stdout, b"owned\n");
    // chown of the mailbox directory itself.
    std::os::unix::fs::chown(&b, Some(NOBODY), None).unwrap();
    assert_eq!(fs::metadata(&b).unwrap().uid(), NOBODY);
}
