//! The man pages render without warnings (`groff -man -ww`), and ipcfs(1)
//! documents every option `ipcfs --help` lists.

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

#[test]
fn ipcfs_1_documents_every_option_of_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcfs"))
        .arg("--help")
        .output()
        .expect("run ipcfs --help");
    assert!(out.status.success(), "ipcfs --help: {out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    let options: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', ',']).next())
        .collect();
    assert!(
        options.contains(&"broker") && options.contains(&"max-memory"),
        "no options found in --help:\n{help}"
    );
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("man")
            .join("ipcfs.1"),
    )
    .expect("read man/ipcfs.1");
    for opt in options {
        // In roff a dash is written \-.
        let roff = format!("\\-\\-{}", opt.replace('-', "\\-"));
        assert!(
            page.contains(&roff),
            "ipcfs(1) does not document --{opt} (looked for {roff})"
        );
    }
    assert!(
        page.contains("IPCFS_BROKER_URL"),
        "ipcfs(1) lacks IPCFS_BROKER_URL"
    );
}
