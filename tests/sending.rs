//! Sending (ipcfs(7) SENDING, "A note for shell scripts"): one write(2) is
//! one message, whole and byte for byte, up to the largest message size and
//! refused with EMSGSIZE beyond it; what stdio programs, python and echo
//! write arrives as the messages they meant.
//!
//! Every blocking step has a deadline.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// Try one write(2) of `data` on a fresh open of `dir/send`.
fn try_send(dir: &Path, data: Vec<u8>) -> std::io::Result<usize> {
    let path = dir.join("send");
    within(T, "try_send", move || {
        let mut f = open_with(&path, false, true, 0)?;
        f.write(&data)
    })
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

#[test]
fn framing_200_messages_in_order() {
    let m = Mount::new();
    let b = m.mailbox("box", "");
    for i in 0..200 {
        send(&b, format!("message {i}\n").as_bytes());
    }
    assert_eq!(status_of(&b, "messages"), "200");
    // Each receive returns exactly one message, in send order.
    for i in 0..200 {
        assert_eq!(
            String::from_utf8(recv(&b)).unwrap(),
            format!("message {i}\n"),
            "message {i} out of order or merged"
        );
    }
    assert_eq!(status_of(&b, "messages"), "0");
    assert_errno(
        recv_nb(&b.join("recv")),
        libc::EAGAIN,
        "receive after draining the queue",
    );
}

#[test]
fn binary_64k_message_keeps_every_byte_value() {
    let m = Mount::new();
    let b = m.mailbox("bin", "");
    let data: Vec<u8> = (0..65536u32).map(|i| (i ^ (i >> 8)) as u8).collect();
    for v in 0..=255u8 {
        assert!(data.contains(&v), "pattern lacks byte {v}");
    }
    assert!(data.contains(&0));
    send(&b, &data);
    assert_eq!(status_of(&b, "messages"), "1");
    assert_eq!(status_of(&b, "bytes"), "65536");
    let got = recv(&b);
    assert_eq!(got.len(), data.len(), "length of the binary message");
    assert!(got == data, "binary message corrupted");
}

#[test]
fn write_of_8mib_gets_emsgsize_and_queue_stays_empty() {
    let m = Mount::new();
    let b = m.mailbox("big", "");
    let data = vec![b'x'; 8 << 20];
    assert_errno(try_send(&b, data), libc::EMSGSIZE, "8 MiB write");
    let s = status_map(&b.join("status"));
    assert_eq!(s["messages"], "0", "status after rejected write: {s:?}");
    assert_eq!(s["bytes"], "0", "status after rejected write: {s:?}");
    assert_errno(
        recv_nb(&b.join("recv")),
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
    let b = m.mailbox("max", "");
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
    assert_eq!(status_of(&b, "messages"), offsets.len().to_string());
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
    assert_eq!(status_of(&b, "messages"), "0");
}

#[test]
fn write_one_byte_over_max_gets_emsgsize() {
    let m = Mount::new();
    let b = m.mailbox("over", "");
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
    assert_eq!(status_of(&b, "messages"), "0");
    assert_eq!(status_of(&b, "bytes"), "0");
}

#[test]
fn lowered_max_message_size_option() {
    let m = Mount::with_args(&["--max-message-size", "1000"]);
    assert_eq!(
        fs::read_to_string(m.p("policy")).unwrap(),
        "arbitrary capacity=1024 max-message-size=1000\n"
    );
    let b = m.mailbox("small", "");
    assert_eq!(status_of(&b, "max-message-size"), "1000");
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
    assert_eq!(status_of(&b, "messages"), "0");
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
    let b = m.mailbox("blk", "");
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
    let b = m.mailbox("stdio", "");
    // 6,393 bytes: more than one 4 KiB block, less than BUFSIZ.
    let want = m.sh("seq 1 1500", T).stdout;
    assert_eq!(want.len(), 6393);
    let out = m.sh("seq 1 1500 > \"$M/stdio/send\"", T);
    assert!(out.status.success(), "seq > send: {}", show(&out));
    assert_eq!(
        status_of(&b, "messages"),
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
        status_of(&b, "messages"),
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
        status_of(&b, "messages"),
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
    let b = m.mailbox("py", "");
    let out = m.sh(
        "python3 -c 'import sys; sys.stdout.write(\"y\" * 200000)' > \"$M/py/send\"",
        T,
    );
    assert!(out.status.success(), "python3 > send: {}", show(&out));
    assert_eq!(
        status_of(&b, "messages"),
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
    let b = m.mailbox("seq", "");
    let out = m.sh("seq 1 20000 > \"$M/seq/send\"", T);
    assert!(out.status.success(), "{}", show(&out));
    let n: usize = status_of(&b, "messages").parse().unwrap();
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
    let b = m.mailbox("echo", "");
    let out = m.sh("echo hi > echo/send", T);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(recv(&b), b"hi\n");
}
