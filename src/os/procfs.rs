//! Reading `/proc`: small files read with one `read(2)`, and the fields of
//! `stat` and `status`. Used where the kernel offers no event: who a thread
//! belongs to, who may signal whom, and which signal a caller got.

use std::fs;
use std::io::{self, Read};

/// Field `n` (numbered from 1, as in proc(5)) of `/proc/<pid>/stat`, for
/// `n` >= 3.
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // The command name (field 2) may hold spaces and parentheses: the fields
    // after it start behind the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(n.checked_sub(3)?)
}

/// Start time and state letter from the text of `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> Option<(u64, char)> {
    let state = stat_field(stat, 3)?.chars().next()?;
    let start = stat_field(stat, 22)?.parse().ok()?;
    Some((start, state))
}

/// The value of a `Key:` line of `/proc/<pid>/status`.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Reads a small `/proc` file with as few system calls as it takes (open,
/// one read, close); `None` if it cannot be read, for whatever reason.
pub fn read(path: String) -> Option<String> {
    read_checked(path).ok().flatten()
}

/// Whether an error says nothing of the process asked about, only that
/// the daemon or the system lacks a descriptor or memory to ask.
pub fn lacks_resource(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

/// Like [`read`], but a lack of descriptors or memory (see
/// [`lacks_resource`]) is an error, not "no such file": a process is never
/// taken for gone because its `/proc` file could not be opened.
pub fn read_checked(path: String) -> io::Result<Option<String>> {
    match read_file(path) {
        Err(e) if lacks_resource(&e) => Err(e),
        r => Ok(r.ok()),
    }
}

fn read_file(path: String) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..])?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let stat =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_stat(stat), Some((987654, 'S')));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(stat_field(stat, 4), Some("1"));
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tcat\nTgid:\t77\nUid:\t0\t0\t0\t0\n";
        assert_eq!(status_field(s, "Tgid"), Some("77"));
        assert_eq!(status_field(s, "Pid"), None);
        assert!(read(format!("/proc/{}/status", std::process::id())).is_some());
    }
}
