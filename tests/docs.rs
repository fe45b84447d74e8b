//! The man pages render without warnings (`groff -man -ww`).

use std::path::Path;
use std::process::Command;

fn check(page: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(page);
    assert!(path.exists(), "{} is missing", path.display());
    let out = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&path)
        .output()
        .expect("groff must be installed (package groff-base) to check the man pages");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "groff -man -ww {}:\n{stderr}",
        path.display()
    );
}

#[test]
fn ipcfs_1_renders_cleanly() {
    check("ipcfs.1");
}

#[test]
fn ipcfs_7_renders_cleanly() {
    check("ipcfs.7");
}
