//! Runs every shell scenario `scripts/t-*.sh`, each on a fresh mount, as
//! `M=<mountpoint> bash scripts/t-foo.sh`, and asserts exit status 0.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

fn scripts() -> Vec<PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("t-") && name.ends_with(".sh")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn shell_scenarios() {
    let list = scripts();
    assert!(!list.is_empty(), "no scripts/t-*.sh found");
    let mut failed = Vec::new();
    for script in &list {
        let m = Mount::new();
        let o = m.sh(
            &format!("bash '{}'", script.display()),
            Duration::from_secs(120),
        );
        let name = script.file_name().unwrap().to_string_lossy().into_owned();
        if o.status.success() {
            println!("{name}: ok\n{}", String::from_utf8_lossy(&o.stdout));
        } else {
            eprintln!("==== {name} FAILED ====\n{}", show(&o));
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "failed shell scenarios: {failed:?}");
}
