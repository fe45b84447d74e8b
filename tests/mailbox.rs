//! Mailboxes: ipcfs(7) THE TREE, SENDING, RECEIVING, MAILBOXES (lifecycle and
//! permissions), STATUS FILES, ERRORS. Every blocking step has a deadline.

mod common;

use common::*;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// The default maximum message size: (fs.fuse.max_pages_limit - 1) pages, at
/// least 64 KiB (1,044,480 bytes on a kernel whose limit is 256).
fn default_max() -> usize {
    let pages: usize = fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(256);
    ((pages - 1) * 4096).max(64 * 1024)
}

fn mkbox(m: &Mount, name: &str) -> PathBuf {
    let p = m.p(name);
    fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    p
}

/// Send `data` as one write(2) on `dir/send`; asserts the whole buffer was taken.
fn send(dir: &Path, data: &[u8]) {
    let path = dir.join("send");
    let data = data.to_vec();
    let what = format!("send {} bytes to {}", data.len(), path.display());
    within(T, &what.clone(), move || {
        let mut f =
            open_with(&path, false, true, 0).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        let n = f
            .write(&data)
            .unwrap_or_else(|e| panic!("{what}: write: {e}"));
        assert_eq!(n, data.len(), "{what}: short write");
    })
}

/// Try one write(2) of `data` on a fresh open of `dir/send`.
fn try_send(dir: &Path, data: Vec<u8>) -> std::io::Result<usize> {
    let path = dir.join("send");
    within(T, "try_send", move || {
        let mut f = open_with(&path, false, true, 0)?;
        f.write(&data)
    })
}

/// Receive one message: open `dir/recv`, read to end of file, close.
fn recv(dir: &Path) -> Vec<u8> {
    let path = dir.join("recv");
    within(T, &format!("receive from {}", path.display()), move || {
        fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    })
}

/// Non-blocking receive: Err(EAGAIN) when the queue is empty.
fn try_recv_nb(dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = dir.join("recv");
    within(T, "non-blocking receive", move || {
        let mut f = open_with(&path, true, false, libc::O_NONBLOCK)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    })
}

fn st(dir: &Path, key: &str) -> String {
    status_get(&dir.join("status"), key)
}

/// A buffer of `len` bytes starting `offset` bytes into a page, filled with a
/// pattern that depends on `seed`. Returns (storage, start index).
fn page_offset_buffer(len: usize, offset: usize, seed: u8) -> (Vec<u8>, usize) {
    let mut v = vec![0u8; len + 8192];
    let base = v.as_ptr() as usize;
    let start = (4096 - base % 4096) % 4096 + offset;
    for (i, b) in v[start..start + len].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add((i >> 12) as u8) ^ seed;
    }
    assert_eq!((v[start..].as_ptr() as usize) % 4096, offset);
    (v, start)
}

/// One raw write(2) of `buf` on `dir/send`.
fn raw_write(dir: &Path, buf: &[u8]) -> std::io::Result<usize> {
    let f = open_with(&dir.join("send"), false, true, 0)?;
    // SAFETY: buf is a valid readable slice for its length; fd is open.
    let n = unsafe { libc::write(f.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

// ---------------------------------------------------------------- §3 send

#[test]
fn framing_200_messages_in_order() {
    let m = Mount::new();
    let b = mkbox(&m, "box");
    for i in 0..200 {
        send(&b, format!("message {i}\n").as_bytes());
    }
    assert_eq!(st(&b, "messages"), "200");
    // Each receive returns exactly one message, in send order.
    for i in 0..200 {
        assert_eq!(
            String::from_utf8(recv(&b)).unwrap(),
            format!("message {i}\n"),
            "message {i} out of order or merged"
        );
    }
    assert_eq!(st(&b, "messages"), "0");
    assert_errno(
        try_recv_nb(&b),
        libc::EAGAIN,
        "receive after draining the queue",
    );
}

#[test]
fn binary_64k_message_keeps_every_byte_value() {
    let m = Mount::new();
    let b = mkbox(&m, "bin");
    let data: Vec<u8> = (0..65536u32).map(|i| (i ^ (i >> 8)) as u8).collect();
    for v in 0..=255u8 {
        assert!(data.contains(&v), "pattern lacks byte {v}");
    }
    assert!(data.contains(&0));
    send(&b, &data);
    assert_eq!(st(&b, "messages"), "1");
    assert_eq!(st(&b, "bytes"), "65536");
    let got = recv(&b);
    assert_eq!(got.len(), data.len(), "length of the binary message");
    assert!(got == data, "binary message corrupted");
}

#[test]
fn write_of_8mib_gets_emsgsize_and_queue_stays_empty() {
    let m = Mount::new();
    let b = mkbox(&m, "big");
    let data = vec![b'x'; 8 << 20];
    assert_errno(try_send(&b, data), libc::EMSGSIZE, "8 MiB write");
    let s = status_map(&b.join("status"));
    assert_eq!(s["messages"], "0", "status after rejected write: {s:?}");
    assert_eq!(s["bytes"], "0", "status after rejected write: {s:?}");
    assert_errno(
        try_recv_nb(&b),
        libc::EAGAIN,
        "receive after rejected write",
    );
    // The mailbox still works normally afterwards (no half-assembled message left).
    send(&b, b"after");
    assert_eq!(recv(&b), b"after");
}

/// Kernel facts (measured on kernel 6.18, fuser 0.18): the kernel
/// caps one FUSE WRITE at fs.fuse.max_pages_limit (256) pages, and chunk
/// boundaries follow the page alignment of the caller's buffer, so a buffer 48
/// bytes into a page covers one page more than its length suggests. 255 pages
/// (1,044,480 bytes) is the largest write that always arrives in ONE request,
/// whatever the alignment; this test checks that such writes from offsets 0,
/// 48 and 4095 each arrive intact as exactly one message.
#[test]
fn max_size_write_at_any_page_offset_is_one_message() {
    let m = Mount::new();
    let b = mkbox(&m, "max");
    let max = default_max();
    let offsets = [48usize, 0, 4095];
    let mut sent = Vec::new();
    for (k, &off) in offsets.iter().enumerate() {
        let (storage, start) = page_offset_buffer(max, off, k as u8);
        let buf = &storage[start..start + max];
        let n = raw_write(&b, buf)
            .unwrap_or_else(|e| panic!("{max}-byte write at page offset {off}: {e}"));
        assert_eq!(n, max, "short write at page offset {off}");
        sent.push(buf.to_vec());
    }
    assert_eq!(st(&b, "messages"), offsets.len().to_string());
    for (k, want) in sent.iter().enumerate() {
        let got = recv(&b);
        assert_eq!(
            got.len(),
            want.len(),
            "length of message {k} (page offset {})",
            offsets[k]
        );
        assert!(
            &got == want,
            "content of message {k} (page offset {})",
            offsets[k]
        );
    }
    assert_eq!(st(&b, "messages"), "0");
}

#[test]
fn write_one_byte_over_max_gets_emsgsize() {
    let m = Mount::new();
    let b = mkbox(&m, "over");
    let max = default_max();
    // At page offset 4095 the write spans 257 pages, so the kernel splits it into
    // two FUSE requests; the daemon must still reject it as a whole.
    for off in [0usize, 48, 4095] {
        let (storage, start) = page_offset_buffer(max + 1, off, 7);
        assert_errno(
            raw_write(&b, &storage[start..start + max + 1]),
            libc::EMSGSIZE,
            &format!("{}-byte write at page offset {off}", max + 1),
        );
    }
    assert_eq!(st(&b, "messages"), "0");
    assert_eq!(st(&b, "bytes"), "0");
}

#[test]
fn lowered_max_message_size_option() {
    let m = Mount::with_args(&["--max-message-size", "1000"]);
    assert_eq!(
        fs::read_to_string(m.p("policy")).unwrap(),
        "arbitrary capacity=1024 max-message-size=1000\n"
    );
    let b = mkbox(&m, "small");
    assert_eq!(st(&b, "max-message-size"), "1000");
    assert_eq!(
        fs::metadata(b.join("send")).unwrap().blksize(),
        kernel_blksize(1000),
        "st_blksize follows the lowered maximum (512 = 1000 rounded down to a power of two)"
    );
    assert_errno(
        try_send(&b, vec![b'a'; 1001]),
        libc::EMSGSIZE,
        "1001-byte write",
    );
    assert_eq!(st(&b, "messages"), "0");
    assert_eq!(try_send(&b, vec![b'b'; 1000]).unwrap(), 1000);
    assert_eq!(recv(&b), vec![b'b'; 1000]);
}

/// The st_blksize a FUSE file shows for a daemon-reported blksize of `max`: the
/// kernel keeps only ilog2 of it (fuse_change_attributes_common stores
/// `cached_i_blkbits = ilog2(attr->blksize)`, and getattr reports
/// `1 << blkbits`), so 1,044,480 shows as 524,288 and 1000 as 512. The daemon
/// reports the maximum message size; what programs see is the largest power of
/// two not above it, which still never makes a stdio buffer exceed the maximum.
fn kernel_blksize(max: u64) -> u64 {
    1 << max.ilog2()
}

#[test]
fn send_and_recv_report_st_blksize_of_max_message_size() {
    let m = Mount::new();
    let b = mkbox(&m, "blk");
    let want = kernel_blksize(default_max() as u64);
    if default_max() == 1_044_480 {
        assert_eq!(want, 524_288);
    }
    for f in ["send", "recv"] {
        let md = fs::metadata(b.join(f)).unwrap();
        assert_eq!(
            md.blksize(),
            want,
            "{f} st_blksize (max message size, rounded down to a power of two by the kernel)"
        );
        // send is as large as the largest message, so that the kernel lets
        // writes to it run side by side (FOPEN_PARALLEL_DIRECT_WRITES).
        let size = if f == "send" { default_max() as u64 } else { 0 };
        assert_eq!(md.len(), size, "{f} st_size");
        assert!(md.file_type().is_file(), "{f} is S_IFREG");
    }
}

/// glibc's stdio (2.36 here) sizes a FILE buffer from st_blksize only when it is
/// below BUFSIZ (8192): so a C stdio program's output up to 8 KiB is one
/// message, but not more, whatever st_blksize says. Programs that honour
/// st_blksize (Python's io, coreutils `cat`) send larger outputs whole.
#[test]
fn stdio_program_output_arrives_as_one_message() {
    let m = Mount::new();
    let b = mkbox(&m, "stdio");
    // 6,393 bytes: more than one 4 KiB block, less than BUFSIZ.
    let want = m.sh("seq 1 1500", T).stdout;
    assert_eq!(want.len(), 6393);
    let out = m.sh("seq 1 1500 > \"$M/stdio/send\"", T);
    assert!(out.status.success(), "seq > send: {}", show(&out));
    assert_eq!(
        st(&b, "messages"),
        "1",
        "seq 1 1500 output should be one message"
    );
    assert!(recv(&b) == want, "seq output differs");
    // ls -l (stdio) with a short listing.
    let out = m.sh(
        "ls -l /usr/bin/bash /usr/bin/cat /usr/bin/ls > \"$M/stdio/send\"",
        T,
    );
    assert!(out.status.success(), "ls -l > send: {}", show(&out));
    assert_eq!(
        st(&b, "messages"),
        "1",
        "ls -l output should be one message"
    );
    let want = m
        .sh("ls -l /usr/bin/bash /usr/bin/cat /usr/bin/ls", T)
        .stdout;
    assert!(recv(&b) == want, "ls -l output differs");
    // cat of a 108,894-byte file: one message.
    let out = m.sh(
        "f=$(mktemp) && seq 1 20000 > \"$f\" && cat \"$f\" > \"$M/stdio/send\"; rc=$?; rm -f \"$f\"; exit $rc",
        T,
    );
    assert!(out.status.success(), "cat file > send: {}", show(&out));
    assert_eq!(
        st(&b, "messages"),
        "1",
        "cat file > send should be one message"
    );
    let got = recv(&b);
    assert_eq!(got.len(), 108_894);
    assert!(got == m.sh("seq 1 20000", T).stdout);
}

/// Python sizes its stdout buffer from st_blksize, so `python3 job.py > box/send`
/// sends up to st_blksize bytes of output as one message.
#[test]
fn python_output_arrives_as_one_message() {
    let m = Mount::new();
    let b = mkbox(&m, "py");
    let out = m.sh(
        "python3 -c 'import sys; sys.stdout.write(\"y\" * 200000)' > \"$M/py/send\"",
        T,
    );
    assert!(out.status.success(), "python3 > send: {}", show(&out));
    assert_eq!(
        st(&b, "messages"),
        "1",
        "200,000 bytes of python output should be one message"
    );
    assert_eq!(recv(&b), vec![b'y'; 200_000]);
}

/// The contract's literal example (`seq 1 20000 > box/send` as one message) cannot
/// hold with glibc 2.36: glibc ignores an st_blksize above BUFSIZ, so stdio
/// writes the 108,894 bytes in 8 KiB pieces, each one message (documented in
/// ipcfs(7)). What must hold: nothing is lost or reordered, and no piece is
/// larger than glibc's buffer.
#[test]
fn large_stdio_output_arrives_in_bufsiz_pieces_with_nothing_lost() {
    let m = Mount::new();
    let b = mkbox(&m, "seq");
    let out = m.sh("seq 1 20000 > \"$M/seq/send\"", T);
    assert!(out.status.success(), "{}", show(&out));
    let n: usize = st(&b, "messages").parse().unwrap();
    assert!(n > 1, "glibc's 8 KiB stdio buffer splits 108,894 bytes");
    let mut all = Vec::new();
    for _ in 0..n {
        let piece = recv(&b);
        assert!(piece.len() <= 8192, "piece of {} bytes", piece.len());
        all.extend(piece);
    }
    assert_eq!(all, m.sh("seq 1 20000", T).stdout);
}

#[test]
fn echo_sends_text_with_newline() {
    let m = Mount::new();
    let b = mkbox(&m, "echo");
    let out = m.sh("echo hi > echo/send", T);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(recv(&b), b"hi\n");
}

// ---------------------------------------------------------------- §4 receive

#[test]
fn three_blocked_cats_get_one_message_each() {
    let m = Mount::new();
    let b = mkbox(&m, "fan");
    let cats: Vec<Bg> = (0..3)
        .map(|_| m.spawn_sh("exec cat \"$M/fan/recv\""))
        .collect();
    wait_status(&b.join("status"), "receivers-waiting", "3");
    for i in 0..3 {
        send(&b, format!("m{i}\n").as_bytes());
    }
    let mut got: Vec<String> = cats
        .into_iter()
        .map(|c| {
            let o = c.wait_timeout(T);
            assert!(o.status.success(), "cat: {}", show(&o));
            String::from_utf8(o.stdout).unwrap()
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec!["m0\n", "m1\n", "m2\n"],
        "each cat gets exactly one message"
    );
    assert_eq!(st(&b, "messages"), "0");
    assert_eq!(st(&b, "receivers-waiting"), "0");
}

#[test]
fn hundred_parked_readers_each_get_one_message() {
    let m = Mount::new();
    let b = mkbox(&m, "many");
    let readers = m.spawn_sh(
        r#"for i in $(seq 1 100); do cat "$M/many/recv" > /dev/null & done
           wait"#,
    );
    wait_status(&b.join("status"), "receivers-waiting", "100");
    for i in 0..100 {
        send(&b, format!("{i}").as_bytes());
    }
    let o = readers.wait_timeout(Duration::from_secs(30));
    assert!(o.status.success(), "{}", show(&o));
    let s = status_map(&b.join("status"));
    assert_eq!(s["messages"], "0", "{s:?}");
    assert_eq!(s["received"], "100", "{s:?}");
    assert_eq!(s["receivers-waiting"], "0", "{s:?}");
}

#[test]
fn longest_waiting_receiver_is_served_first() {
    let m = Mount::new();
    let b = mkbox(&m, "fifo");
    let mut cats = Vec::new();
    for i in 1..=3 {
        cats.push(m.spawn_sh("exec cat \"$M/fifo/recv\""));
        wait_status(&b.join("status"), "receivers-waiting", &i.to_string());
    }
    for (i, c) in cats.into_iter().enumerate() {
        send(&b, format!("to-{i}").as_bytes());
        let o = c.wait_timeout(T);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("to-{i}"),
            "receiver {i} (waiting longest) should get message {i}: {}",
            show(&o)
        );
    }
}

#[test]
fn concurrent_senders_and_receivers_deliver_every_message_exactly_once() {
    let m = Mount::new();
    let b = mkbox(&m, "load");
    let receivers: Vec<Bg> = (0..3)
        .map(|_| {
            m.spawn_sh(
                r#"while :; do
                     msg=$(cat "$M/load/recv") || { echo "cat failed" >&2; exit 1; }
                     [ "$msg" = STOP ] && exit 0
                     printf '%s\n' "$msg"
                   done"#,
            )
        })
        .collect();
    let senders: Vec<Bg> = (0..4)
        .map(|s| {
            m.spawn_sh(&format!(
                r#"for i in $(seq 1 400); do echo "s{s}-$i" > "$M/load/send" || exit 1; done"#
            ))
        })
        .collect();
    for s in senders {
        let o = s.wait_timeout(Duration::from_secs(120));
        assert!(o.status.success(), "sender: {}", show(&o));
    }
    // All 1600 messages are queued before the STOPs; each receiver takes one STOP.
    for _ in 0..3 {
        send(&b, b"STOP\n");
    }
    let mut all: Vec<String> = Vec::new();
    let mut per = Vec::new();
    for r in receivers {
        let o = r.wait_timeout(Duration::from_secs(120));
        assert!(o.status.success(), "receiver: {}", show(&o));
        let lines: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        per.push(lines.len());
        all.extend(lines);
    }
    assert_eq!(
        all.len(),
        1600,
        "messages received in total (per receiver {per:?})"
    );
    let mut want: Vec<String> = (0..4)
        .flat_map(|s| (1..=400).map(move |i| format!("s{s}-{i}")))
        .collect();
    want.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert!(sorted == want, "some message lost or duplicated");
    let s = status_map(&b.join("status"));
    assert_eq!(s["messages"], "0", "{s:?}");
    assert_eq!(s["sent"], "1603", "{s:?}");
    assert_eq!(s["received"], "1603", "{s:?}");
}

#[test]
fn partial_reads_then_eof_then_next_message() {
    let m = Mount::new();
    let b = mkbox(&m, "part");
    let first = b"0123456789abcdefghijklmnopqrstuvwxyz"; // 36 bytes
    send(&b, first);
    send(&b, b"second message");
    let path = b.join("recv");
    let status = b.join("status");
    within(T, "partial reads", move || {
        let mut f = File::open(&path).unwrap();
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let mut buf = [0u8; 10];
        loop {
            let n = f.read(&mut buf).unwrap();
            sizes.push(n);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if sizes.len() == 1 {
                // The first read took the message off the queue.
                assert_eq!(status_get(&status, "messages"), "1");
            }
            assert!(sizes.len() < 10, "message never ended: {sizes:?}");
        }
        assert_eq!(sizes, vec![10, 10, 10, 6, 0]);
        assert_eq!(&got[..], &first[..]);
        // A read after end-of-file receives the next message, on the same fd.
        let mut buf = [0u8; 100];
        let n = f.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"second message");
        assert_eq!(
            f.read(&mut buf).unwrap(),
            0,
            "end of file after the second message"
        );
    });
    assert_eq!(st(&b, "truncated"), "0");
}

#[test]
fn closing_mid_message_drops_the_rest_and_counts_truncated() {
    let m = Mount::new();
    let b = mkbox(&m, "trunc");
    send(&b, b"hello world, this message is long");
    send(&b, b"next");
    let path = b.join("recv");
    let head = within(T, "read 5 bytes", move || {
        let mut f = File::open(&path).unwrap();
        let mut buf = [0u8; 5];
        let n = f.read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    assert_eq!(head, b"hello");
    wait_status(&b.join("status"), "truncated", "1");
    assert_eq!(
        recv(&b),
        b"next",
        "the rest of the first message is dropped"
    );
}

#[test]
fn nonblocking_read_on_empty_gives_eagain() {
    let m = Mount::new();
    let b = mkbox(&m, "nb");
    let path = b.join("recv");
    let mut f = open_with(&path, true, false, libc::O_NONBLOCK).unwrap();
    let mut buf = [0u8; 64];
    assert_errno(
        f.read(&mut buf),
        libc::EAGAIN,
        "O_NONBLOCK read on empty recv",
    );
    send(&b, b"now");
    let n = f.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"now");
    assert_eq!(f.read(&mut buf).unwrap(), 0);
    assert_errno(
        f.read(&mut buf),
        libc::EAGAIN,
        "O_NONBLOCK read after EOF on empty recv",
    );
}

#[test]
fn lseek_gives_espipe() {
    let m = Mount::new();
    let b = mkbox(&m, "seek");
    let mut r = File::open(b.join("recv")).unwrap();
    assert_errno(r.seek(SeekFrom::Start(0)), libc::ESPIPE, "lseek on recv");
    let mut w = open_with(&b.join("send"), false, true, 0).unwrap();
    assert_errno(w.seek(SeekFrom::Start(0)), libc::ESPIPE, "lseek on send");
    assert_errno(
        w.seek(SeekFrom::End(0)),
        libc::ESPIPE,
        "lseek SEEK_END on send",
    );
}

/// Status and policy files are snapshots that seek like a /proc file:
/// `head` seeks back to just after the lines it printed, and a program may
/// read a snapshot again from the start.
#[test]
fn status_and_policy_snapshots_seek() {
    let m = Mount::new();
    let b = mkbox(&m, "snap");
    let o = m.sh(
        "head -2 \"$M/snap/status\" && head -1 \"$M/snap/policy\" && head -1 \"$M/policy\" \
         && head -1 \"$M/proc/status\"",
        T,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(o.stderr, b"", "{}", show(&o));
    assert_eq!(out_str(&o).lines().count(), 5, "{}", show(&o));
    assert!(out_str(&o).starts_with("policy: arbitrary\ncapacity: "));
    let o = m.sh(
        "python3 -c 'import sys\nfor p in sys.argv[1:]:\n f = open(p)\n a = f.read()\n f.seek(0)\n b = f.read()\n assert a and a == b, (p, a, b)\n f.seek(3)\n assert f.read() == a[3:]\nprint(\"same\")' \
         \"$M/snap/status\" \"$M/snap/policy\" \"$M/policy\" \"$M/proc/status\"",
        T,
    );
    assert_eq!(out_str(&o), "same\n", "{}", show(&o));
    // Message files stay streams.
    let mut r = File::open(b.join("recv")).unwrap();
    assert_errno(r.seek(SeekFrom::Start(0)), libc::ESPIPE, "lseek on recv");
}

#[test]
fn timeout_sigint_ends_blocked_cat_quickly_and_message_is_not_lost() {
    let m = Mount::new();
    let b = mkbox(&m, "int");
    let start = Instant::now();
    let o = m.sh(
        "timeout -s INT 1 cat \"$M/int/recv\"; echo \"rc=$?\"",
        Duration::from_secs(10),
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "timeout -s INT 1 cat took {took:?} (must end within 0.5 s of the signal): {}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("rc=124"),
        "timeout should report the command timed out: {}",
        show(&o)
    );
    wait_status(&b.join("status"), "receivers-waiting", "0");
    send(&b, b"after the interrupt");
    assert_eq!(
        st(&b, "messages"),
        "1",
        "the interrupted reader must not consume the next message"
    );
    assert_eq!(recv(&b), b"after the interrupt");
}

#[test]
fn sigkill_of_blocked_cat_takes_effect_quickly() {
    let m = Mount::new();
    let b = mkbox(&m, "kill");
    let cat = m.spawn_sh("exec cat \"$M/kill/recv\"");
    wait_status(&b.join("status"), "receivers-waiting", "1");
    let start = Instant::now();
    cat.signal(libc::SIGKILL);
    let o = cat.wait_timeout(Duration::from_millis(1500));
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "SIGKILL took {:?}",
        start.elapsed()
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(libc::SIGKILL)
    );
    wait_status(&b.join("status"), "receivers-waiting", "0");
    send(&b, b"for the next one");
    assert_eq!(st(&b, "messages"), "1");
    assert_eq!(recv(&b), b"for the next one");
}

#[test]
fn handled_signal_ends_blocked_read_with_eintr() {
    let m = Mount::new();
    let b = mkbox(&m, "eintr");
    // perl's sysread is one read(2); with a handler installed, an interrupted read
    // returns undef with $! = EINTR instead of killing the process.
    let reader = m.spawn_sh(
        r#"exec perl -e '
            $SIG{USR1} = sub {};
            open(my $f, "<", $ARGV[0]) or die "open: $!";
            my $r = sysread($f, my $buf, 100);
            if (defined $r) { print "read $r\n" } else { print "errno ", $!+0, "\n" }
        ' "$M/eintr/recv""#,
    );
    wait_status(&b.join("status"), "receivers-waiting", "1");
    let start = Instant::now();
    reader.signal(libc::SIGUSR1);
    let o = reader.wait_timeout(Duration::from_secs(3));
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "EINTR took {:?}",
        start.elapsed()
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("errno {}", libc::EINTR),
        "{}",
        show(&o)
    );
    send(&b, b"kept");
    assert_eq!(recv(&b), b"kept");
}

// ---------------------------------------------------------------- poll

#[test]
fn poll_on_empty_recv_times_out_then_fires_after_send() {
    let m = Mount::new();
    let b = mkbox(&m, "poll");
    let f = File::open(b.join("recv")).unwrap();
    let fd = f.as_raw_fd();
    let (n, rev) = within(T, "poll with 200 ms timeout", move || {
        poll1(&fd, libc::POLLIN, 200)
    });
    assert_eq!(
        (n, rev & libc::POLLIN),
        (0, 0),
        "poll on empty recv must time out"
    );
    // Now poll while another thread sends: the poll must wake up.
    let bb = b.clone();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300)); // let the poll start waiting first
        send(&bb, b"wake");
    });
    let start = Instant::now();
    let (n, rev) = within(T, "poll waiting for a send", move || {
        poll1(&fd, libc::POLLIN, 5000)
    });
    let took = start.elapsed();
    sender.join().unwrap();
    assert_eq!(n, 1, "poll should fire after the send (took {took:?})");
    assert!(rev & libc::POLLIN != 0, "revents {rev:#x}");
    assert!(
        took < Duration::from_secs(3),
        "poll woke only after {took:?}"
    );
    let mut f = f;
    let mut buf = [0u8; 16];
    let n = f.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"wake");
    // After the message and its end of file are consumed, the fd is not readable.
    assert_eq!(f.read(&mut buf).unwrap(), 0);
    let (n, _) = within(T, "poll after draining", move || {
        poll1(&fd, libc::POLLIN, 100)
    });
    assert_eq!(n, 0, "recv must not be readable once drained");
}

/// One `epoll_wait` with EPOLLIN|EPOLLET, waiting at most `ms`: the number
/// of events.
fn epoll_wait1(ep: i32, ms: i32) -> i32 {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: one event buffer on the stack.
    let n = unsafe { libc::epoll_wait(ep, &mut ev, 1, ms) };
    assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
    n
}

/// Edge-triggered epoll: each message that arrives is an edge, also when it
/// arrives while the end of file of the one before is still unread (the
/// descriptor keeps watching its mailbox while it holds a message).
#[test]
fn edge_triggered_epoll_wakes_for_each_message() {
    let m = Mount::new();
    let b = mkbox(&m, "et");
    let mut r = open_with(&b.join("recv"), true, false, libc::O_NONBLOCK).unwrap();
    // SAFETY: epoll_create1 and epoll_ctl on descriptors we own.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 1,
    };
    assert_eq!(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, r.as_raw_fd(), &mut ev) },
        0
    );
    let wait = move |what: &str| within(T, what, move || epoll_wait1(ep, 5000));
    let mut buf = [0u8; 64];
    send(&b, b"m1");
    assert_eq!(wait("epoll for m1"), 1, "m1 is an edge");
    assert_eq!(r.read(&mut buf).unwrap(), 2, "m1, its end of file unread");
    send(&b, b"m2");
    assert_eq!(wait("epoll for m2"), 1, "m2 is an edge");
    assert_eq!(r.read(&mut buf).unwrap(), 0, "m1's end of file");
    assert_eq!(r.read(&mut buf).unwrap(), 2, "m2");
    assert_eq!(r.read(&mut buf).unwrap(), 0, "m2's end of file");
    assert_errno(r.read(&mut buf), libc::EAGAIN, "nothing queued");
    send(&b, b"m3");
    assert_eq!(wait("epoll for m3"), 1, "m3 is an edge");
    assert_eq!(r.read(&mut buf).unwrap(), 2, "m3");
    // SAFETY: our own epoll descriptor.
    unsafe { libc::close(ep) };
}

#[test]
fn poll_on_recv_is_readable_when_message_queued_and_send_is_writable() {
    let m = Mount::new();
    let b = mkbox(&m, "pq");
    send(&b, b"queued");
    let r = File::open(b.join("recv")).unwrap();
    let rfd = r.as_raw_fd();
    let (n, rev) = within(T, "poll recv", move || poll1(&rfd, libc::POLLIN, 1000));
    assert_eq!(n, 1);
    assert!(rev & libc::POLLIN != 0);
    let w = open_with(&b.join("send"), false, true, 0).unwrap();
    let wfd = w.as_raw_fd();
    let (n, rev) = within(T, "poll send", move || poll1(&wfd, libc::POLLOUT, 1000));
    assert_eq!(n, 1);
    assert!(
        rev & libc::POLLOUT != 0,
        "send should be writable: {rev:#x}"
    );
}

// ---------------------------------------------------------------- §2, §8 tree and lifecycle

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
        try_recv_nb(&m.p("a")),
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
    mkbox(&m, "dup");
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
    let b = mkbox(&m, "full");
    for i in 0..3 {
        send(&b, format!("pending {i}").as_bytes());
    }
    fs::remove_dir(&b).expect("rmdir of a mailbox with queued messages");
    assert!(!b.exists());
    // A new mailbox of the same name starts empty.
    mkbox(&m, "full");
    assert_eq!(st(&b, "messages"), "0");
    assert_errno(try_recv_nb(&b), libc::EAGAIN, "recreated mailbox is empty");
}

#[test]
fn blocked_reader_gets_eidrm_on_rmdir() {
    let m = Mount::new();
    let b = mkbox(&m, "gone");
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
    let b = mkbox(&m, "gone2");
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
    let b = mkbox(&m, "old");
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
    let b = mkbox(&m, "box");
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
    let b = mkbox(&m, "box");
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
    mkbox(&m, "box");
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

// ---------------------------------------------------------------- §8 permissions

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
    assert_eq!(st(&b, "messages"), "0");
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

// ---------------------------------------------------------------- §9 status, policy

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
    let b = mkbox(&m, "st");
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
    let b = mkbox(&m, "cnt");
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
        st(&b, "receivers"),
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
    let b = mkbox(&m, "snap");
    let mut f = File::open(b.join("status")).unwrap();
    send(&b, b"one");
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    assert_eq!(
        parse_status(&text)["messages"],
        "0",
        "snapshot taken at open"
    );
    assert_eq!(st(&b, "messages"), "1", "reopening refreshes");
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
    let b = mkbox(&m, "pol");
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

/// Two threads blocked reading one `recv` descriptor share its place in the
/// message: one gets the start, the other the rest, and nothing is lost.
#[test]
fn two_threads_reading_one_descriptor_share_the_message() {
    let m = Mount::new();
    let b = mkbox(&m, "shared");
    let f = std::sync::Arc::new(open_with(&b.join("recv"), true, false, 0).unwrap());
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let f = std::sync::Arc::clone(&f);
            std::thread::spawn(move || {
                let mut buf = [0u8; 3];
                let n = (&*f).read(&mut buf).unwrap();
                buf[..n].to_vec()
            })
        })
        .collect();
    wait_until(T, "both reads are parked", || {
        status_map(&m.p("proc/status"))
            .get("parked")
            .map(String::as_str)
            == Some("2")
    });
    send(&b, b"abcdef");
    let mut got: Vec<Vec<u8>> = readers
        .into_iter()
        .map(|r| within(T, "shared read", move || r.join().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, vec![b"abc".to_vec(), b"def".to_vec()]);
    assert_eq!(st(&b, "truncated"), "0");
}

// ---------------------------------------------------------------- copying

/// Copy and archive tools (`cp -r`, `cp -a`, `mv` across filesystems, `tar`)
/// open what they copy with `O_NOFOLLOW`: they read empty message files,
/// take no message and never block; a plain `cp` of `recv` reads one
/// message like `cat`.
#[test]
fn copying_a_mailbox_takes_no_message_and_does_not_block() {
    let m = Mount::new();
    let b = mkbox(&m, "box");
    for msg in [&b"m1\n"[..], b"m2\n", b"m3\n"] {
        send(&b, msg);
    }
    let o = m.sh(
        r#"set -u; out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
        timeout 10 cp -r "$M/box" "$out/r"; echo "cp-r=$?"
        timeout 10 cp -a "$M/box" "$out/a"; echo "cp-a=$?"
        echo "recv-size=$(stat -c %s "$out/r/recv") $(stat -c %s "$out/a/recv")"
        timeout 10 tar cf "$out/t.tar" -C "$M" box 2>"$out/tar.err"; echo "tar=$?"
        grep -c 'File shrank' "$out/tar.err"
        timeout 10 mv "$M/box" "$out/mv" 2>/dev/null; echo "mv=$?"
        "#,
        T,
    );
    assert_eq!(
        out_str(&o),
        "cp-r=0\ncp-a=0\nrecv-size=0 0\ntar=1\n3\nmv=1\n",
        "cp exits 0; tar warns that send, packets and batch shrank; mv cannot remove the files\n{}",
        show(&o)
    );
    assert_eq!(
        status_get(&b.join("status"), "messages"),
        "3",
        "nothing taken"
    );
    let o = m.sh(
        r#"out=$(mktemp); timeout 10 cp "$M/box/recv" "$out" && cat "$out"; rm -f "$out""#,
        T,
    );
    assert_eq!(
        out_str(&o),
        "m1\n",
        "cp of recv alone reads one message\n{}",
        show(&o)
    );
    assert_eq!(recv(&b), b"m2\n");
}
