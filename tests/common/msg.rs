//! Message and policy I/O from the test process itself: sending and
//! receiving (blocking with a deadline, or non-blocking), reading one whole
//! message, poll(2) on one descriptor, and the `policy` file.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use super::{open_with, within};

/// Deadline of `send` and `recv`.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(10);

/// Send one message (one write(2), which must take it whole) to the send
/// file `path` (`send`, `packets`, `proc/<pid>/send`), blocking at most
/// `timeout`; panics naming the path on failure.
pub fn send_within(timeout: Duration, path: &Path, msg: &[u8]) {
    let path = path.to_path_buf();
    let msg = msg.to_vec();
    let what = format!("send {} bytes to {}", msg.len(), path.display());
    within(timeout, &what.clone(), move || {
        let mut f =
            open_with(&path, false, true, 0).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        let n = f
            .write(&msg)
            .unwrap_or_else(|e| panic!("{what}: write: {e}"));
        assert_eq!(n, msg.len(), "{what}: short write");
    })
}

/// Receive one whole message from the receive file `path` (reading until
/// the 0 that ends it), blocking at most `timeout`; panics naming the path
/// on failure.
pub fn recv_within(timeout: Duration, path: &Path) -> Vec<u8> {
    let path = path.to_path_buf();
    within(
        timeout,
        &format!("receive from {}", path.display()),
        move || {
            let mut f =
                File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            read_message(&mut f).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        },
    )
}

/// Send `msg` to the mailbox `dir` (one write(2) on `dir/send`), within 10 s.
pub fn send(dir: &Path, msg: &[u8]) {
    send_within(MESSAGE_DEADLINE, &dir.join("send"), msg)
}

/// Receive one message from the mailbox `dir` (`dir/recv`), within 10 s.
pub fn recv(dir: &Path) -> Vec<u8> {
    recv_within(MESSAGE_DEADLINE, &dir.join("recv"))
}

/// Send one message (one write) from this process, never blocking.
pub fn send_nb(path: &Path, msg: &[u8]) -> io::Result<()> {
    let mut f = open_with(path, false, true, libc::O_NONBLOCK)?;
    let n = f.write(msg)?;
    assert_eq!(n, msg.len(), "short write on {}", path.display());
    Ok(())
}

/// Receive one whole message from this process, never blocking.
pub fn recv_nb(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_with(path, true, false, libc::O_NONBLOCK)?;
    read_message(&mut f)
}

/// Read one message from an open recv descriptor (or the receipts stream):
/// reads until the 0 that ends it.
pub fn read_message(f: &mut File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 17];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// poll(2) one descriptor (a `File` or a raw fd) for `events`, waiting at most
/// `timeout_ms`. Returns (poll's result, revents); panics if poll fails.
pub fn poll1(f: &impl AsRawFd, events: i16, timeout_ms: i32) -> (i32, i16) {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    assert!(n >= 0, "poll: {}", io::Error::last_os_error());
    (n, p.revents)
}

/// One write(2) of `text` to a policy file opened write-only (no O_TRUNC).
pub fn write_policy(path: &Path, text: impl AsRef<[u8]>) -> io::Result<usize> {
    let mut f = open_with(path, false, true, 0)?;
    f.write(text.as_ref())
}

/// Like `write_policy`, but panics if the open or the write fails or if the
/// write is short.
pub fn set_policy(path: &Path, text: &str) {
    let n = write_policy(path, text)
        .unwrap_or_else(|e| panic!("write {text:?} to {}: {e}", path.display()));
    assert_eq!(n, text.len());
}

/// The whole text of a policy file, or panic.
pub fn read_policy(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A `batch` write: each message as a 4-byte little-endian length and its
/// bytes.
pub fn frames(msgs: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        out.extend_from_slice(&(m.len() as u32).to_le_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// The messages of a `batch` read (panics on a truncated frame).
pub fn unframe(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        assert!(data.len() >= 4, "a truncated frame header: {data:?}");
        let len = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
        assert!(data.len() >= 4 + len, "a truncated frame: {data:?}");
        out.push(data[4..4 + len].to_vec());
        data = &data[4 + len..];
    }
    out
}
