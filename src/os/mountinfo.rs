//! Which mount is the daemon's own, and whether it is still there.
//!
//! The daemon watches `/proc/self/mountinfo` so that a lazy `umount -l` of a
//! mount with open (or blocked) descriptors, which the kernel does not tell
//! the daemon about until the last descriptor closes, still stops it. It
//! recognises its mount by mount id and device number, not by path: another
//! mount may come to sit at the same path (a new ipcfs after a lazy unmount,
//! a tmpfs mounted on top), and the daemon must neither keep serving because
//! of it nor unmount it (ipcfs(1), SIGNALS).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The fstype and source under which ipcfs mounts: as root fuser mounts
/// type `fuse` with the fsname as source; through `fusermount3` the type is
/// `fuse.<subtype>`. Both are `ipcfs` unless `-o fsname=`/`-o subtype=`
/// say otherwise.
pub const NAME: &str = "ipcfs";

/// One line of a mountinfo file (proc_pid_mountinfo(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Field 1: the mount id.
    pub id: u64,
    /// Field 2: the id of the mount this one sits on.
    pub parent: u64,
    /// Field 3: the device number (major, minor) of the filesystem.
    pub dev: (u32, u32),
    /// Field 5, unescaped: where it is mounted (relative to our root).
    pub mount_point: Vec<u8>,
    /// The first field after ` - `: `fuse`, `fuse.ipcfs`, `tmpfs`...
    pub fstype: String,
    /// The second field after ` - `, unescaped: for ipcfs its fsname.
    pub source: Vec<u8>,
}

/// What identifies one mount for as long as it exists: its mount id and its
/// device number. Either alone may be handed to a later mount once this one
/// is freed; both together name it while the daemon holds its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountKey {
    pub id: u64,
    pub dev: (u32, u32),
}

impl Entry {
    pub fn key(&self) -> MountKey {
        MountKey {
            id: self.id,
            dev: self.dev,
        }
    }

    pub fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype.starts_with("fuse.")
    }

    /// Whether this is a FUSE mount named `name` (fsname or subtype), as
    /// ipcfs mounts are (see [`NAME`]).
    pub fn is_fuse_named(&self, name: &str) -> bool {
        self.is_fuse()
            && (self.source == name.as_bytes() || self.fstype.strip_prefix("fuse.") == Some(name))
    }

    /// The mount point as a path.
    pub fn path(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(&self.mount_point))
    }
}

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

/// One mountinfo line, or None if it does not have the expected fields.
fn parse_line(line: &str) -> Option<Entry> {
    let fields: Vec<&str> = line.split(' ').collect();
    // Optional fields (shared:N ...) come between field 6 and the " - ".
    let sep = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let (major, minor) = fields.get(2)?.split_once(':')?;
    Some(Entry {
        id: fields.first()?.parse().ok()?,
        parent: fields.get(1)?.parse().ok()?,
        dev: (major.parse().ok()?, minor.parse().ok()?),
        mount_point: unescape(fields.get(4)?),
        fstype: fields.get(sep + 1)?.to_string(),
        source: unescape(fields.get(sep + 2)?),
    })
}

/// The entries of a mountinfo text, in its order (lines that do not parse
/// are left out).
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines().filter_map(parse_line).collect()
}

/// This process's mount table, from `/proc/self/mountinfo`.
pub fn read() -> std::io::Result<Vec<Entry>> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| parse(&t))
}

/// The mount a path walk to `mountpoint` ends on: of the mounts listed
/// there, the one no other mount there sits on. A mount stacked on another
/// at the same path has that one as its parent, which is sturdier than the
/// order of the lines (a mount can be slid beneath another).
pub fn topmost_at<'a>(entries: &'a [Entry], mountpoint: &Path) -> Option<&'a Entry> {
    let want = mountpoint.as_os_str().as_bytes();
    let here: Vec<&Entry> = entries.iter().filter(|e| e.mount_point == want).collect();
    here.iter()
        .rev()
        .find(|e| !here.iter().any(|o| o.parent == e.id && o.id != e.id))
        .or(here.last())
        .copied()
}

/// Our mount in `entries`, if it is still listed.
pub fn find(entries: &[Entry], key: MountKey) -> Option<&Entry> {
    entries.iter().find(|e| e.key() == key)
}

/// Whether the mount `key` is still listed in this process's mount table.
/// If mountinfo cannot be read, it says yes: the daemon keeps serving.
pub fn still_mounted(key: MountKey) -> bool {
    read().map_or(true, |entries| find(&entries, key).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
45 22 0:40 / /tmp/my\\040ipc rw,nosuid,nodev,relatime shared:30 - fuse ipcfs rw,user_id=0,group_id=0,default_permissions
46 22 0:41 / /tmp/other rw,relatime shared:31 - tmpfs tmpfs rw
47 45 0:42 / /tmp/my\\040ipc rw,nosuid,nodev,relatime - tmpfs none rw
48 22 0:43 / /tmp/user rw,nosuid,nodev,relatime - fuse.ipcfs ipcfs rw,user_id=1000,group_id=1000
49 22 0:44 / /tmp/sshfs rw,nosuid,nodev,relatime - fuse.sshfs host:/ rw,user_id=1000,group_id=1000
";

    #[test]
    fn parses_ids_devices_escaped_paths_and_types() {
        let e = parse(INFO);
        assert_eq!(e.len(), 6);
        assert_eq!(
            e[1],
            Entry {
                id: 45,
                parent: 22,
                dev: (0, 40),
                mount_point: b"/tmp/my ipc".to_vec(),
                fstype: "fuse".into(),
                source: b"ipcfs".to_vec(),
            }
        );
        assert_eq!(e[0].path(), Path::new("/"));
        assert_eq!(e[4].fstype, "fuse.ipcfs");
        assert_eq!(unescape("a\\134b\\011"), b"a\\b\t");
        assert_eq!(unescape("trailing\\04"), b"trailing\\04");
        assert!(parse("garbage\n45 22 0:40 / /x rw\n").is_empty());
    }

    #[test]
    fn knows_an_ipcfs_mounted_directly_or_through_fusermount3() {
        let e = parse(INFO);
        assert!(e[1].is_fuse_named(NAME), "root: type fuse, source ipcfs");
        assert!(e[4].is_fuse_named(NAME), "fusermount3: type fuse.ipcfs");
        assert!(!e[5].is_fuse_named(NAME), "another FUSE filesystem");
        assert!(e[5].is_fuse());
        assert!(!e[2].is_fuse_named(NAME) && !e[2].is_fuse());
    }

    #[test]
    fn the_topmost_mount_is_the_one_nothing_sits_on() {
        let e = parse(INFO);
        let top = topmost_at(&e, Path::new("/tmp/my ipc")).unwrap();
        assert_eq!(top.id, 47, "the tmpfs on top of the ipcfs");
        assert_eq!(topmost_at(&e, Path::new("/tmp/other")).unwrap().id, 46);
        assert!(topmost_at(&e, Path::new("/tmp/my\\040ipc")).is_none());
        assert!(topmost_at(&e, Path::new("/tmp/gone")).is_none());
        // The order of the lines does not matter.
        let mut rev = e.clone();
        rev.reverse();
        assert_eq!(topmost_at(&rev, Path::new("/tmp/my ipc")).unwrap().id, 47);
    }

    #[test]
    fn a_mount_is_found_by_id_and_device_not_by_path() {
        let e = parse(INFO);
        let ours = e[1].key();
        assert_eq!(find(&e, ours).unwrap().path(), Path::new("/tmp/my ipc"));
        // Same id, another device: a later mount that reused the id.
        let reused = MountKey {
            id: 45,
            dev: (0, 99),
        };
        assert!(find(&e, reused).is_none());
        let after_umount = parse(&INFO.replace("45 22 0:40", "50 22 0:45"));
        assert!(find(&after_umount, ours).is_none());
    }

    #[test]
    fn the_real_table_parses_and_root_is_not_fuse() {
        let entries = read().unwrap();
        assert!(!entries.is_empty());
        let root = topmost_at(&entries, Path::new("/")).unwrap();
        assert!(!root.is_fuse());
        assert!(still_mounted(root.key()));
    }
}
