//! The repository's scripts as a user runs them: `scripts/build-example.sh` and
//! `scripts/quickstart.sh` put and find cargo's output where `CARGO_TARGET_DIR` says.

use std::process::Command;

use crate::support::{docker, probe, repo_root};

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

/// `scripts/quickstart.sh down` with the same settings, however the test ends.
struct QuickstartDown<'a> {
    env: &'a [(&'a str, String)],
    cwd: &'a std::path::Path,
}

impl Drop for QuickstartDown<'_> {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/quickstart.sh"))
            .arg("down")
            .current_dir(self.cwd)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
    }
}

/// With `CARGO_TARGET_DIR` set, the quickstart runs the server it built there (not a missing
/// or stale `target/debug/slipway`), deploys the example and says how to reach it.
#[test]
fn quickstart_honours_cargo_target_dir() {
    if !docker() {
        return;
    }
    // This test binary's target directory (…/debug/deps/it-HASH): cargo finds the build
    // fresh there.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_owned();
    let cwd = tempfile::tempdir().unwrap();
    let state = cwd.path().join("state");
    let env = [
        ("CARGO_TARGET_DIR", target.display().to_string()),
        ("SLIPWAY_QUICKSTART_STATE", state.display().to_string()),
        ("SLIPWAY_QUICKSTART_ADDR", "127.0.0.1:0".to_owned()),
        ("SLIPWAY_QUICKSTART_INGRESS", "127.0.0.1:0".to_owned()),
    ];
    let _down = QuickstartDown {
        env: &env,
        cwd: cwd.path(),
    };
    let out = Command::new(repo_root().join("scripts/quickstart.sh"))
        .current_dir(cwd.path())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("SLIPWAY_SERVER")
        .env_remove("SLIPWAY_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{stderr}"
    );
    let bin = target.join("debug/slipway");
    assert!(
        stdout.contains(&format!("{} status web", bin.display())),
        "the quickstart names the binary it built: {stdout}"
    );
    let ingress = std::fs::read_to_string(state.join("data/ingress/ingress.addr")).unwrap();
    let (code, body) = probe(
        "127.0.0.1",
        ingress.trim().rsplit(':').next().unwrap().parse().unwrap(),
        "/",
    )
    .expect("the example answers through the ingress");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"app\":\"hello\""), "{body}");
}
