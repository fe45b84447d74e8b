//! Status files (ipcfs(7) STATUS FILES): parsing their `key: value` lines,
//! one value, one number, and waiting for a value; the default largest
//! message.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::wait_until;

/// Deadline for `wait_status` to see the value it waits for.
const STATUS_DEADLINE: Duration = Duration::from_secs(10);

/// Parse a `status` file's `key: value` lines. Panics if the file cannot be read.
pub fn status_map(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read status file {}: {e}", path.display()));
    parse_status(&text)
}

/// Parse `key: value` lines (lines without `": "` are ignored).
pub fn parse_status(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// One value of a status file, or panic naming it.
pub fn status_get(path: &Path, key: &str) -> String {
    let m = status_map(path);
    m.get(key)
        .unwrap_or_else(|| panic!("status {} has no key {key:?}: {m:?}", path.display()))
        .clone()
}

/// A numeric value of a parsed status map, or panic naming the key.
pub fn num(map: &HashMap<String, String>, key: &str) -> u64 {
    map.get(key)
        .unwrap_or_else(|| panic!("status has no key {key:?}: {map:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("status key {key:?} is not a number ({e}): {map:?}"))
}

/// The parsed `status` file of the mailbox (or `proc/<pid>`) directory `dir`.
pub fn stat(dir: &Path) -> HashMap<String, String> {
    status_map(&dir.join("status"))
}

/// One value of the `status` file of the directory `dir`, or panic naming it.
pub fn status_of(dir: &Path, key: &str) -> String {
    status_get(&dir.join("status"), key)
}

/// A numeric value of the `status` file of the directory `dir`.
pub fn count(dir: &Path, key: &str) -> u64 {
    num(&stat(dir), key)
}

/// The default largest message: (fs.fuse.max_pages_limit - 1) pages, at
/// least 64 KiB (1,044,480 bytes on a kernel whose limit is 256).
pub fn default_max() -> usize {
    let pages: usize = std::fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(256);
    ((pages - 1) * 4096).max(64 * 1024)
}

/// Wait (up to 10 s) until the status file `path` shows `key: want`.
pub fn wait_status(path: &Path, key: &str, want: &str) {
    wait_until(
        STATUS_DEADLINE,
        &format!("{} shows `{key}: {want}`", path.display()),
        || status_map(path).get(key).map(String::as_str) == Some(want),
    );
}

/// Waits until mailbox `dir` shows `n` receivers waiting (on a broker mount
/// from any mount: the counters are shared).
pub fn wait_receivers_waiting(dir: &Path, n: u64, timeout: Duration) {
    wait_until(
        timeout,
        &format!("{} shows {n} receivers waiting", dir.display()),
        || count(dir, "receivers-waiting") == n,
    );
}
