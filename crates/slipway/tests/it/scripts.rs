//! The repository's scripts as a user runs them: `scripts/build-example.sh` and
//! `scripts/quickstart.sh` put and find cargo's output where `CARGO_TARGET_DIR` says.

use std::process::Command;

use crate::support::{docker, repo_root};

/// With a (relative) `CARGO_TARGET_DIR` outside the repository, build-example.sh builds the
/// example binaries there and packages them, instead of failing on `cp: cannot stat
/// 'target/…/hello'`.
#[test]
fn build_example_honours_cargo_target_dir() {
    if !docker() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(repo_root().join("scripts/build-example.sh"))
        .current_dir(cwd.path())
        .env("CARGO_TARGET_DIR", "elsewhere")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build-example.sh failed: {stderr}");
    assert!(!stderr.contains("cannot stat"), "{stderr}");
    let built = cwd
        .path()
        .join("elsewhere/x86_64-unknown-linux-gnu/release");
    assert!(built.join("hello").is_file(), "no hello under {built:?}");
    assert!(built.join("shop-server").is_file());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("built slipway-hello:v1"), "{stdout}");
    assert!(stdout.contains("built slipway-shop-base:v1"), "{stdout}");
}
