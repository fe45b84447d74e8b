//! Hostile input on a real mount: odd and reserved mailbox names, renames
//! onto them, lookups under `proc/` of names that are not pids, and policy
//! texts that ipcfs(7) refuses (POLICY FILE FORMAT). Every refusal is a clean
//! errno, a refused write changes nothing, and the daemon survives. The
//! grammar itself is checked without a mount, against random texts, beside
//! the parser (src/hub/policy_tests.rs).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::harness::{Rng, daemon_answers, seed};

fn os_path(parent: &Path, name: &[u8]) -> PathBuf {
    parent.join(std::ffi::OsStr::from_bytes(name))
}

/// mkdir `name` in `parent`: refused with `want`, or (None) accepted, listed
/// with its exact bytes, usable, and removable.
fn try_name(parent: &Path, name: &[u8], want: Option<i32>) -> bool {
    let p = os_path(parent, name);
    let shown = String::from_utf8_lossy(&name[..name.len().min(40)]).into_owned();
    match (fs::create_dir(&p), want) {
        (Ok(()), None) => {
            let listed = fs::read_dir(parent)
                .unwrap()
                .any(|e| e.unwrap().file_name().into_vec() == name);
            assert!(listed, "{shown:?} is listed in {}", parent.display());
            assert!(p.join("send").is_file(), "{shown:?}/send");
            send_nb(&p.join("send"), name).unwrap_or_else(|e| panic!("send to {shown:?}: {e}"));
            assert_eq!(recv_nb(&p.join("recv")).unwrap(), name, "{shown:?}");
            let s = stat(&p);
            assert_eq!(num(&s, "received"), 1, "{shown:?}: {s:?}");
            assert!(read_policy(&p.join("policy")).ends_with('\n'));
            fs::remove_dir(&p).unwrap_or_else(|e| panic!("rmdir {shown:?}: {e}"));
            assert_errno(fs::symlink_metadata(&p), libc::ENOENT, "a removed mailbox");
            true
        }
        (Err(e), Some(w)) => {
            assert_eq!(
                errno(&e),
                w,
                "mkdir {shown:?} (len {}) in {}: expected {} got {e}",
                name.len(),
                parent.display(),
                errname(w)
            );
            false
        }
        (Ok(()), Some(w)) => panic!(
            "mkdir {shown:?} (len {}) in {} succeeded; expected {}",
            name.len(),
            parent.display(),
            errname(w)
        ),
        (Err(e), None) => panic!(
            "mkdir {shown:?} (len {}) in {} failed: {e}",
            name.len(),
            parent.display()
        ),
    }
}

/// The policy as a policy file shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pol {
    rule: &'static str,
    capacity: Option<u64>,
    size: u64,
}

const RULES: [&str; 4] = ["arbitrary", "pair", "exclusive", "broadcast"];

impl Pol {
    fn shown(&self) -> String {
        let cap = self
            .capacity
            .map_or("unlimited".to_string(), |c| c.to_string());
        format!(
            "{} capacity={cap} max-message-size={}\n",
            self.rule, self.size
        )
    }

    /// Parse what a policy file shows; panics if it is not the documented line.
    fn parse_shown(text: &str) -> Pol {
        let p = (|| {
            let w: Vec<&str> = text.strip_suffix('\n')?.split(' ').collect();
            let [rule, cap, size] = w[..] else {
                return None;
            };
            Some(Pol {
                rule: RULES.into_iter().find(|r| *r == rule)?,
                capacity: match cap.strip_prefix("capacity=")? {
                    "unlimited" => None,
                    n => Some(n.parse().ok()?),
                },
                size: size.strip_prefix("max-message-size=")?.parse().ok()?,
            })
        })()
        .unwrap_or_else(|| panic!("a policy file shows {text:?}"));
        assert_eq!(p.shown(), text, "a policy file shows the canonical form");
        p
    }
}

/// Hostile mailbox names, proc lookups and renames: every refusal is a clean
/// errno, every accepted name round-trips, and the daemon survives.
pub(crate) fn hostile_names() {
    let _ = seed("hostile names");
    let mut m = Mount::new();
    let root = m.path().to_path_buf();
    let bx = m.mailbox("box", "");
    let euro = "€";
    let mut names: Vec<(Vec<u8>, Option<i32>)> = [
        &b"a\nb"[..],
        b"\n",
        b"\n\n",
        b"two words",
        b" ",
        b"\t",
        b" lead",
        b"trail ",
        b"-",
        b"--help",
        b"-rf",
        b"...",
        b".. ",
        b" ..",
        b"..\n",
        b"....",
        b".hidden",
        b"\xff\xfe",
        b"a\x80b",
        b"\xc0\xaf",
        b"\x01\x02\x1b[31m\x7f",
        b"\\",
        b"*?[]",
        b"$(reboot)",
        b"'\"`",
        b"%s%n",
        "日本語".as_bytes(),
        "\u{202e}txt.exe".as_bytes(),
        b"self",
        b"status",
        b"0",
        b"1",
    ]
    .iter()
    .map(|n| (n.to_vec(), None))
    .collect();
    names.push((vec![b'x'; 255], None));
    names.push((euro.repeat(85).into_bytes(), None));
    names.push((vec![b'x'; 256], Some(libc::ENAMETOOLONG)));
    names.push((euro.repeat(86).into_bytes(), Some(libc::ENAMETOOLONG)));
    names.push((vec![b'y'; 1000], Some(libc::ENAMETOOLONG)));
    names.push((vec![b'z'; 5000], Some(libc::ENAMETOOLONG)));
    names.push((b".".to_vec(), Some(libc::EEXIST)));
    names.push((b"..".to_vec(), Some(libc::EEXIST)));
    names.push((b"box".to_vec(), Some(libc::EEXIST)));
    let (mut ok, mut refused) = (0u32, 0u32);
    for (parent, reserved) in [
        (root.clone(), &["proc", "policy"][..]),
        (
            bx.clone(),
            &["send", "recv", "packets", "batch", "policy", "status"][..],
        ),
    ] {
        for (name, want) in &names {
            let want = if reserved.iter().any(|r| r.as_bytes() == &name[..]) {
                Some(libc::EEXIST)
            } else if name == b"box" && parent == bx {
                None
            } else {
                *want
            };
            if try_name(&parent, name, want) {
                ok += 1;
            } else {
                refused += 1;
            }
        }
        for r in reserved {
            try_name(&parent, r.as_bytes(), Some(libc::EEXIST));
            refused += 1;
        }
    }
    // `proc` is reserved at the root only; nesting works under odd names.
    assert!(try_name(&bx, b"proc", None));
    let odd = os_path(&root, b"odd\nparent \xff");
    fs::create_dir(&odd).unwrap();
    let kid = os_path(&odd, b"kid\tname");
    fs::create_dir(&kid).unwrap();
    assert_errno(
        fs::remove_dir(&odd),
        libc::ENOTEMPTY,
        "rmdir of an odd parent",
    );
    send_nb(&kid.join("send"), b"nested").unwrap();
    assert_eq!(recv_nb(&kid.join("recv")).unwrap(), b"nested");
    // Renames onto hostile or reserved names.
    let renames: Vec<(PathBuf, Option<Vec<i32>>)> = vec![
        (os_path(&root, b"re\nnamed"), None),
        (
            root.join("proc"),
            Some(vec![
                libc::EEXIST,
                libc::ENOTEMPTY,
                libc::EBUSY,
                libc::EPERM,
            ]),
        ),
        (
            root.join("policy"),
            Some(vec![libc::EEXIST, libc::ENOTDIR, libc::EPERM]),
        ),
        (
            bx.join("send"),
            Some(vec![libc::EEXIST, libc::ENOTDIR, libc::EPERM]),
        ),
        (os_path(&root, &[b'r'; 256]), Some(vec![libc::ENAMETOOLONG])),
        (kid.join("inside"), Some(vec![libc::EINVAL, libc::ENOENT])),
        (
            root.join("proc/newname"),
            Some(vec![libc::EPERM, libc::EXDEV, libc::ENOENT]),
        ),
    ];
    for (to, want) in &renames {
        let r = fs::rename(&odd, to);
        match (r, want) {
            (Ok(()), None) => {
                fs::rename(to, &odd).unwrap();
                ok += 1;
            }
            (Err(e), Some(w)) => {
                assert!(
                    w.contains(&errno(&e)),
                    "rename to {}: {e} (expected one of {w:?})",
                    to.display()
                );
                refused += 1;
            }
            (r, w) => panic!("rename to {}: {r:?}, expected {w:?}", to.display()),
        }
        assert!(odd.is_dir(), "the renamed mailbox is still there");
    }
    fs::remove_dir(&kid).unwrap();
    fs::remove_dir(&odd).unwrap();
    // mkdir under proc/, and lookups of names that are not pids.
    for n in [&b"newname"[..], b"\xff", b"12345678901234567890"] {
        try_name(&root.join("proc"), n, Some(libc::EPERM));
        refused += 1;
    }
    for n in [
        &b"0"[..],
        b"-1",
        b"+1",
        b"01",
        b" 1",
        b"1 ",
        b"1\n",
        b"4294967296",
        b"99999999999999999999",
        b"\xff",
        b"self2",
        b"..1",
    ] {
        let p = os_path(&root.join("proc"), n);
        assert_errno(
            fs::symlink_metadata(&p),
            libc::ENOENT,
            &format!("lookup of proc/{}", String::from_utf8_lossy(n)),
        );
        refused += 1;
    }
    println!("torture hostile names: {ok} accepted and round-tripped, {refused} refused cleanly");
    daemon_answers(&mut m, "after the hostile names");
}

/// Policy texts of every kind ipcfs(7) refuses, written to the root's and a
/// mailbox's `policy`: each fails with EINVAL and changes nothing; a valid one
/// then applies, keeping the words it does not give. A policy file is not
/// seekable, `status` and `recv` take no writes, and a new mailbox gets the
/// root's policy.
pub(crate) fn hostile_policy_writes() {
    let mut rng = Rng::new(seed("hostile policy"));
    let mut m = Mount::new();
    let root = m.path().to_path_buf();
    let bx = m.mailbox("box", "");
    let hard_max = Pol::parse_shown(&read_policy(&root.join("policy"))).size;
    let mut bad: Vec<Vec<u8>> = [
        &b" \n"[..],
        b"\t",
        b"\n",
        b"bogus",
        b"Pair",
        b"pair x",
        b"pair\n\n",
        b"pair exclusive",
        b"capacity=1 capacity=2",
        b"max-message-size=1K max-message-size=2K",
        b"capacity=",
        b"capacity=-1",
        b"capacity=+1",
        b"capacity=1K",
        b"capacity=0x10",
        b"capacity=99999999999999999999999",
        b"max-message-size=",
        b"max-message-size=0",
        b"max-message-size=K",
        b"max-message-size=1T",
        b"max-message-size=1KK",
        b"max-message-size=17179869184G",
        b"pair\0",
        b"pair,capacity=1",
        b"\xff\xfe",
        "pair\u{a0}capacity=1".as_bytes(),
    ]
    .iter()
    .map(|t| t.to_vec())
    .collect();
    bad.push(format!("max-message-size={}", hard_max + 1).into_bytes());
    let mut long = vec![b' '; 4097 - "pair".len()];
    long.extend_from_slice(b"pair");
    bad.push(long);
    for target in [root.join("policy"), bx.join("policy")] {
        let set = write_policy(&target, "broadcast capacity=7 max-message-size=4K\n");
        assert!(set.is_ok(), "{}: {set:?}", target.display());
        let before_text = read_policy(&target);
        let before = Pol::parse_shown(&before_text);
        assert_eq!(
            (before.rule, before.capacity, before.size),
            ("broadcast", Some(7), 4096)
        );
        for text in &bad {
            let shown = String::from_utf8_lossy(&text[..text.len().min(60)]).into_owned();
            let r = write_policy(&target, text);
            assert!(
                r.as_ref().is_err_and(|e| errno(e) == libc::EINVAL),
                "{} <- {shown:?} ({} bytes): {r:?}, expected EINVAL",
                target.display(),
                text.len()
            );
            assert_eq!(
                read_policy(&target),
                before_text,
                "{shown:?} changed nothing"
            );
        }
        // Just at the length bound, and words not given keep their value.
        let mut text = vec![b' '; 4096 - "pair\n".len()];
        text.extend_from_slice(b"pair\n");
        assert_eq!(write_policy(&target, &text).unwrap(), 4096);
        let after = Pol::parse_shown(&read_policy(&target));
        assert_eq!(
            (after.rule, after.capacity, after.size),
            ("pair", Some(7), 4096)
        );
    }
    // A policy file seeks like a /proc file, and one write is one whole
    // policy text wherever it lands (pwrite too); status and recv take no
    // writes.
    let f = open_with(&bx.join("policy"), false, true, 0).unwrap();
    let pw = f.write_at(b"pair", 1);
    assert_eq!(pw.ok(), Some(4), "pwrite to a policy file");
    assert!(read_policy(&bx.join("policy")).starts_with("pair "));
    drop(f);
    let mut other = Vec::new();
    for (file, flags) in [
        ("status", libc::O_WRONLY),
        ("recv", libc::O_WRONLY),
        ("status", libc::O_RDWR),
    ] {
        let bytes: Vec<u8> = (0..rng.range(1, 64)).map(|_| rng.next() as u8).collect();
        let r = OpenOptions::new()
            .write(true)
            .read(flags == libc::O_RDWR)
            .open(bx.join(file))
            .and_then(|mut f| f.write(&bytes));
        let e = errno(&r.expect_err(&format!("writing to {file}")));
        assert!(
            [libc::EACCES, libc::EPERM, libc::EBADF, libc::EINVAL].contains(&e),
            "writing to {file}: {}",
            errname(e)
        );
        other.push(format!("{file}: {}", errname(e)));
    }
    assert_eq!(count(&bx, "messages"), 0, "nothing was queued");
    // The root policy is what a new mailbox gets.
    let root_pol = Pol::parse_shown(&read_policy(&root.join("policy")));
    let fresh = m.mailbox("fresh", "");
    assert_eq!(
        Pol::parse_shown(&read_policy(&fresh.join("policy"))),
        root_pol
    );
    daemon_answers(&mut m, "after the hostile policy writes");
    println!(
        "torture hostile policy writes: {} texts refused with EINVAL on each policy file; pwrite: one policy text; writes to {}",
        bad.len(),
        other.join(", ")
    );
}
