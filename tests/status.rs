//! Status files and the default policy (ipcfs(7) STATUS FILES, "Mailbox
//! status"; POLICY FILE FORMAT): every documented key, counts that follow
//! messages and receivers, a snapshot taken at open, the default limits of
//! this kernel.
//!
//! Every blocking step has a deadline.

mod common;

use common::*;
use std::fs::{self, File};
use std::io::Read;
use std::time::Duration;

const STATUS_KEYS: [&str; 16] = [
    "policy",
    "capacity",
    "max-message-size",
    "messages",
    "bytes",
    "receivers",
    "receivers-waiting",
    "senders-waiting",
    "sent",
    "received",
    "dropped",
    "truncated",
    "pair",
    "holder",
    "memory-used",
    "memory-limit",
];

#[test]
fn status_lists_every_documented_key() {
    let m = Mount::new();
    let b = m.mailbox("st", "");
    let text = fs::read_to_string(b.join("status")).unwrap();
    for line in text.lines() {
        assert!(
            line.contains(": "),
            "status line not `key: value`: {line:?}"
        );
    }
    let s = parse_status(&text);
    for k in STATUS_KEYS {
        assert!(s.contains_key(k), "status lacks {k:?}:\n{text}");
    }
    assert_eq!(s["policy"], "arbitrary");
    assert_eq!(s["capacity"], "1024");
    assert_eq!(s["max-message-size"], default_max().to_string());
    assert_eq!(s["pair"], "-");
    assert_eq!(s["holder"], "-");
    assert_eq!(s["memory-limit"], "268435456");
    for k in [
        "messages",
        "bytes",
        "receivers",
        "receivers-waiting",
        "senders-waiting",
        "sent",
        "received",
        "dropped",
        "truncated",
    ] {
        assert_eq!(s[k], "0", "{k} of a new mailbox:\n{text}");
    }
}

#[test]
fn status_counts_messages_bytes_and_receivers() {
    let m = Mount::new();
    let b = m.mailbox("cnt", "");
    send(&b, b"abc");
    send(&b, b"defg");
    let s = status_map(&b.join("status"));
    assert_eq!(
        (
            s["messages"].as_str(),
            s["bytes"].as_str(),
            s["sent"].as_str()
        ),
        ("2", "7", "2"),
        "{s:?}"
    );
    assert!(
        s["memory-used"].parse::<u64>().unwrap() >= 7,
        "memory-used {s:?}"
    );
    assert_eq!(recv(&b), b"abc");
    let s = status_map(&b.join("status"));
    assert_eq!(
        (
            s["messages"].as_str(),
            s["bytes"].as_str(),
            s["received"].as_str()
        ),
        ("1", "4", "1"),
        "{s:?}"
    );
    // `receivers` counts processes with recv open.
    let f = File::open(b.join("recv")).unwrap();
    wait_status(&b.join("status"), "receivers", "1");
    let g = File::open(b.join("recv")).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        status_of(&b, "receivers"),
        "1",
        "two descriptors of one process count once"
    );
    drop(f);
    drop(g);
    wait_status(&b.join("status"), "receivers", "0");
}

#[test]
fn status_is_a_snapshot_taken_at_open() {
    let m = Mount::new();
    let b = m.mailbox("snap", "");
    let mut f = File::open(b.join("status")).unwrap();
    send(&b, b"one");
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    assert_eq!(
        parse_status(&text)["messages"],
        "0",
        "snapshot taken at open"
    );
    assert_eq!(status_of(&b, "messages"), "1", "reopening refreshes");
}

#[test]
fn default_policy_reads_arbitrary_with_default_limits() {
    let m = Mount::new();
    let want = format!(
        "arbitrary capacity=1024 max-message-size={}\n",
        default_max()
    );
    assert_eq!(
        fs::read_to_string(m.p("policy")).unwrap(),
        want,
        "root policy"
    );
    let b = m.mailbox("pol", "");
    assert_eq!(
        fs::read_to_string(b.join("policy")).unwrap(),
        want,
        "mailbox policy"
    );
}

#[test]
fn default_max_message_size_on_this_kernel() {
    // On a kernel with fs.fuse.max_pages_limit = 256 the default is 1,044,480.
    if fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
        .map(|s| s.trim() == "256")
        .unwrap_or(false)
    {
        assert_eq!(default_max(), 1_044_480);
        let m = Mount::new();
        assert_eq!(
            fs::read_to_string(m.p("policy")).unwrap(),
            "arbitrary capacity=1024 max-message-size=1044480\n"
        );
    }
}
