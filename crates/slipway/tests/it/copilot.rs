//! AWS Copilot workspaces (issue 22, part 4): examples/copilot-shop (seed 003's layout) deploys
//! with `slipway deploy` as it is, answers `/users` and `/products` through the ingress, and
//! reports the AWS-only keys; `slipway init --from-copilot` writes a slipway.yml that deploys
//! the same; bad workspaces are refused at `file:line:column` with nothing deployed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Server, app_name, docker, repo_root, wait_for};

/// Copies examples/copilot-shop into `dest` with a unique application name; returns it.
fn checkout(dest: &Path) -> String {
    let src = repo_root().join("examples/copilot-shop");
    copy_dir(&src, dest);
    let app = app_name("cpshop");
    std::fs::write(
        dest.join("copilot/.workspace"),
        format!("application: {app}\n"),
    )
    .unwrap();
    app
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// GET through the ingress; waits (bounded) until the ingress answers 200.
fn get(s: &Server, path: &str) -> String {
    let addr = s.ingress();
    wait_for(Duration::from_secs(30), &format!("{path} answers"), || {
        let out = Command::new("curl")
            .args(["-s", "-m", "8", "-w", "\n%{http_code}"])
            .arg(format!("http://{addr}{path}"))
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n')?;
        (code.trim() == "200").then(|| body.to_owned())
    })
}

fn outcomes(v: &Value) -> Vec<(String, String)> {
    let mut o: Vec<(String, String)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["service"]["name"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    o.sort();
    o
}

/// `slipway ARGS` run in `dir` against the server.
fn cli_in(s: &Server, dir: &Path, args: &[&str]) -> crate::support::Out {
    let mut cmd = s.command(args);
    cmd.current_dir(dir);
    let o = cmd.output().unwrap();
    crate::support::Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The AWS-only keys of the example, as the CLI prints them.
const EXAMPLE_WARNINGS: &[&str] = &[
    "copilot/api/manifest.yml:28:1: warning: exec:",
    "copilot/api/manifest.yml:30:3: warning: network.connect:",
    "copilot/users/manifest.yml:22:1: warning: exec:",
    "copilot/users/manifest.yml:24:3: warning: network.connect:",
    "copilot/products/manifest.yml:22:1: warning: exec:",
    "copilot/products/manifest.yml:24:3: warning: network.connect:",
    "copilot/environments/test/manifest.yml:21:3: warning: observability.container_insights:",
];

#[test]
fn copilot_shop_deploys_as_it_is_and_its_init_output_deploys_the_same() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let dir: PathBuf = s.dir.path().join("copilot-shop");
    let app = checkout(&dir);

    // `slipway deploy` where copilot/ is and slipway.yml is not; the seed deploys to `test`.
    let out = cli_in(&s, &dir, &["--json", "deploy", "--env", "test"]).ok();
    let v = out.json();
    assert_eq!(v["succeeded"], true, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        outcomes(&v),
        [
            ("api".to_owned(), "SUCCEEDED".to_owned()),
            ("products".to_owned(), "SUCCEEDED".to_owned()),
            ("users".to_owned(), "SUCCEEDED".to_owned()),
        ],
        "{}",
        out.stdout
    );
    for w in EXAMPLE_WARNINGS {
        assert!(out.stderr.contains(w), "{w} missing in:\n{}", out.stderr);
    }
    // --json carries them too, placed.
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), EXAMPLE_WARNINGS.len(), "{}", out.stdout);
    assert!(
        warnings
            .iter()
            .any(|w| w["file"] == "copilot/api/manifest.yml"
                && w["line"] == 30
                && w["column"] == 3
                && w["key"] == "network.connect")
    );
    assert_eq!(
        out.stderr.matches("built and pushed").count(),
        3,
        "{}",
        out.stderr
    );

    // Seed 003's test: GET /users and /products through the load balancer (the ingress).
    let users: Value = serde_json::from_str(&get(&s, "/users")).unwrap();
    assert_eq!(users[0]["name"], "Ada", "{users}");
    let products: Value = serde_json::from_str(&get(&s, "/products")).unwrap();
    assert!(
        products.as_array().is_some_and(|p| !p.is_empty()),
        "{products}"
    );
    // environments.test.count of copilot/api/manifest.yml applies; cpu and memory too.
    let api = s.api_get(&format!("/services/{app}/test/api"));
    assert_eq!(api["summary"]["desired"], 2, "{api}");
    let users = s.api_get(&format!("/services/{app}/test/users"));
    assert_eq!(users["summary"]["desired"], 1, "{users}");

    // `slipway diff` reads the workspace too: nothing to deploy.
    let diff = cli_in(&s, &dir, &["diff", "--env", "test", "--exit-code"]);
    assert_eq!(
        (diff.code, diff.stdout.trim()),
        (0, "no changes"),
        "{}",
        diff.stderr
    );

    // `slipway init --from-copilot` writes the equivalent slipway.yml ...
    let init = cli_in(&s, &dir, &["init", "--from-copilot"]).ok();
    assert!(init.stdout.contains("wrote"), "{}", init.stdout);
    assert!(
        init.stderr
            .contains("copilot/api/manifest.yml:28:1: warning: exec:"),
        "{}",
        init.stderr
    );
    let yml = std::fs::read_to_string(dir.join("slipway.yml")).unwrap();
    assert!(yml.contains("copilot/api/manifest.yml:28:1 exec:"), "{yml}");
    assert!(yml.contains("Copilot's load balancer checks `/`"), "{yml}");
    // ... and never overwrites one without --force.
    let again = cli_in(&s, &dir, &["init", "--from-copilot"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert!(cli_in(&s, &dir, &["init", "--from-copilot", "--force"]).code == 0);

    // Deployed from slipway.yml now (it exists), it is the same: nothing changes.
    let same = cli_in(&s, &dir, &["--json", "deploy", "--env", "test"]).ok();
    assert_eq!(
        outcomes(&same.json())
            .iter()
            .map(|(_, o)| o.as_str())
            .collect::<Vec<_>>(),
        ["UNCHANGED", "UNCHANGED", "UNCHANGED"],
        "{}\n{}",
        same.stdout,
        same.stderr
    );
    assert!(!same.stderr.contains("warning:"), "{}", same.stderr);
    assert!(get(&s, "/users").contains("Ada"));
}

#[test]
fn copilot_bad_workspaces_are_refused_at_file_line_column_and_deploy_nothing() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let dir = s.dir.path().join("copilot-shop");
    let app = checkout(&dir);
    let users = dir.join("copilot/users/manifest.yml");
    let original = std::fs::read_to_string(&users).unwrap();

    // An unknown service type.
    std::fs::write(
        &users,
        original.replace("type: Backend Service", "type: Backend Servce"),
    )
    .unwrap();
    let out = cli_in(&s, &dir, &["deploy"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains(
            "copilot/users/manifest.yml:7:7: type: unknown Copilot service type \"Backend Servce\""
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains("built and pushed"), "{}", out.stderr);

    // Sidecars that wait for each other: refused, placed in the Copilot file.
    std::fs::write(
        &users,
        format!(
            "{original}sidecars:\n  a:\n    image: slipway-hello:v1\n    depends_on: {{b: start}}\n  b:\n    image: slipway-hello:v1\n    depends_on: {{a: start}}\n"
        ),
    )
    .unwrap();
    let line = original.lines().count() + 3;
    let out = cli_in(&s, &dir, &["deploy", "-f", "."]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains(&format!("copilot/users/manifest.yml:{line}:"))
            && out
                .stderr
                .contains("dependsOn has a cycle among containers a, b"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains("built and pushed"), "{}", out.stderr);

    // A value slipway.yml's checks refuse, placed in the Copilot file.
    std::fs::write(&users, original.replace("port: 8080", "port: 80800")).unwrap();
    let out = cli_in(&s, &dir, &["deploy"]);
    assert!(
        out.stderr
            .contains("copilot/users/manifest.yml:16:9: port must be between 1 and 65535"),
        "{}",
        out.stderr
    );

    // A secret the store does not have: refused at the reference, before anything is built.
    std::fs::write(
        &users,
        format!(
            "{original}secrets:\n  DB_PASSWORD: /copilot/${{COPILOT_APPLICATION_NAME}}/secrets/db\n"
        ),
    )
    .unwrap();
    let line = original.lines().count() + 2;
    let out = cli_in(&s, &dir, &["deploy"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(&format!(
            "copilot/users/manifest.yml:{line}:16: services.users.secrets.DB_PASSWORD: secret \"copilot/{app}/secrets/db\" does not exist"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("built and pushed"), "{}", out.stderr);

    // An environment the workspace does not have.
    std::fs::write(&users, &original).unwrap();
    let out = cli_in(&s, &dir, &["deploy", "--env", "prod"]);
    assert!(
        out.stderr.contains("no environment \"prod\"") && out.stderr.contains("test"),
        "{}",
        out.stderr
    );

    // Nothing was deployed.
    let services = s.api_get("/services");
    assert_eq!(services.as_array().map(Vec::len), Some(0), "{services}");
}
