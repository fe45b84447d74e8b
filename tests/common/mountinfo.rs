//! Mounts as /proc/self/mountinfo lists them: which FUSE mounts sit at a
//! path, and whether one given mount is still there.

use std::path::Path;

/// Decode the octal escapes (`\040` etc.) used in /proc/self/mountinfo.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits.iter().fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One mount, for as long as it exists: its mount id and its device number
/// (`major:minor` as one number, as mountinfo field 3 reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountKey {
    pub id: u64,
    pub dev: u64,
}

/// One line of /proc/self/mountinfo: (key, mount point, fstype, source).
fn mountinfo_entries() -> Vec<(MountKey, String, String, String)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let (major, minor) = fields.get(2)?.split_once(':')?;
            let key = MountKey {
                id: fields.first()?.parse().ok()?,
                dev: (major.parse::<u64>().ok()? << 32) | minor.parse::<u64>().ok()?,
            };
            Some((
                key,
                unescape_mountinfo(fields.get(4)?),
                fields.get(sep + 1)?.to_string(),
                unescape_mountinfo(fields.get(sep + 2)?),
            ))
        })
        .collect()
}

/// The FUSE mounts (fstype `fuse` or `fuse.*`) listed at `path`, in the
/// order of /proc/self/mountinfo.
pub fn fuse_mounts_at(path: &Path) -> Vec<MountKey> {
    let want = path.to_string_lossy();
    mountinfo_entries()
        .into_iter()
        .filter(|(_, mp, fstype, _)| {
            *mp == want && (fstype == "fuse" || fstype.starts_with("fuse."))
        })
        .map(|(key, ..)| key)
        .collect()
}

/// Whether /proc/self/mountinfo lists `path` as a mount of fstype `fuse` or
/// `fuse.*` (any one: see [`Mount::is_mounted`] for a daemon's own).
pub fn is_fuse_mounted(path: &Path) -> bool {
    !fuse_mounts_at(path).is_empty()
}

/// Whether the mount `key` is listed at `path`.
pub fn mount_listed_at(key: MountKey, path: &Path) -> bool {
    let want = path.to_string_lossy();
    mountinfo_entries()
        .iter()
        .any(|(k, mp, ..)| *k == key && *mp == want)
}

/// Whether a mount of `fstype` from `source` is listed at `path`.
pub fn mounted_at(path: &Path, fstype: &str, source: &str) -> bool {
    let want = path.to_string_lossy();
    mountinfo_entries()
        .iter()
        .any(|(_, mp, t, src)| *mp == want && t == fstype && src == source)
}
