//! Who may do what (ipcfs(7) Permissions, Memory): users root, the mailbox's owner, a
//! member of its group and another user, on an `--allow-other` mount,
//! against every operation, for a private (0755) and a group (0775)
//! mailbox. Each cell runs as that user in a fresh shell.

mod common;
use common::*;

use std::os::unix::process::CommandExt;
use std::process::Command;
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
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .env("M", m.path())
        .current_dir("/")
        .uid(uid)
        .gid(gid);
    // std drops root's supplementary groups when it sets the uid.
    Bg::spawn(cmd, script).wait_timeout(T).status.success()
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
    let o = {
        let (uid, gid) = Who::Other.ids();
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(
                r#"n=0; while head -c 65536 /dev/zero > "$M/flood/send" 2>/dev/null; do n=$((n+1)); [ $n -ge 200 ] && break; done; echo $n"#,
            )
            .env("M", m.path())
            .current_dir("/")
            .uid(uid)
            .gid(gid);
        Bg::spawn(cmd, "flood").wait_timeout(T)
    };
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
