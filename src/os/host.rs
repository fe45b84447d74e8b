//! This machine's host name: the default `--node` of a broker mount.

use std::io;

/// The host name (gethostname(2)), as text.
pub fn host_name() -> io::Result<String> {
    // HOST_NAME_MAX is 64 on Linux; a little more room and a terminator.
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..len].to_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the host name is not UTF-8"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_kernel() {
        let name = super::host_name().unwrap();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(name, kernel.trim_end());
    }
}
