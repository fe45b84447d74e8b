//! Whether the mount is still there: the daemon watches
//! `/proc/self/mountinfo` so that a lazy `umount -l` of a mount with open
//! (or blocked) descriptors, which the kernel does not tell the daemon
//! about until the last descriptor closes, still stops it.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Undoes the octal escapes (`\040` for a space, ...) of a mountinfo field.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// Whether the text of a mountinfo file lists a FUSE mount at `mountpoint`.
pub fn lists_fuse_mount(mountinfo: &str, mountpoint: &Path) -> bool {
    let want = mountpoint.as_os_str().as_bytes();
    mountinfo.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            return false;
        };
        fields.get(4).is_some_and(|p| unescape(p) == want)
            && fields.get(sep + 1).is_some_and(|t| t.starts_with("fuse"))
    })
}

/// Whether this process's mount namespace still has a FUSE mount at
/// `mountpoint` (a canonical path). If mountinfo cannot be read, it says yes.
pub fn still_mounted(mountpoint: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map_or(true, |text| lists_fuse_mount(&text, mountpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
45 22 0:40 / /tmp/my\\040ipc rw,nosuid,nodev,relatime shared:30 - fuse.ipcfs ipcfs rw,user_id=0,group_id=0,default_permissions
46 22 0:41 / /tmp/other rw,relatime shared:31 - tmpfs tmpfs rw
";

    #[test]
    fn finds_the_mount_by_its_escaped_path() {
        assert!(lists_fuse_mount(INFO, Path::new("/tmp/my ipc")));
        assert!(!lists_fuse_mount(INFO, Path::new("/tmp/my\\040ipc")));
        assert!(!lists_fuse_mount(INFO, Path::new("/tmp/other")), "not FUSE");
        assert!(!lists_fuse_mount(INFO, Path::new("/tmp/gone")));
        assert_eq!(unescape("a\\134b\\011"), b"a\\b\t");
        assert_eq!(unescape("trailing\\04"), b"trailing\\04");
    }

    #[test]
    fn root_is_mounted_here_but_not_as_fuse() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!lists_fuse_mount(&text, Path::new("/")));
    }
}
