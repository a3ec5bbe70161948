//! The README's examples against a real server: the GitHub Actions workflow's way of finding
//! the task definition to render (issue #23 item 9).

use crate::aws::{Aws, aws_cli};
use crate::support::*;

/// The shell lines of the README's GitHub Actions example that pick the task definition,
/// and the container name it renders the new image into.
fn readme_task_definition_lines() -> (String, String) {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("A GitHub Actions workflow with the official actions")
        .expect("the README's GitHub Actions example");
    let block = &readme[start..];
    let block = &block[..block.find("\n```\n").expect("the end of its yaml")];
    let lines: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("td=") || l.starts_with("aws ecs describe-task-definition"))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "the README's task-definition lines: {lines:?}"
    );
    let container = block
        .lines()
        .find_map(|l| l.trim().strip_prefix("container-name:"))
        .expect("the README's container-name")
        .split('#')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    (lines.join("\n"), container)
}

/// After a good deploy and a bad one that was rolled back, the README's lines render from
/// the revision that last deployed successfully, of the family Slipway gives the service.
#[test]
fn readme_github_actions_finds_the_last_successful_task_definition() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    // The README's names: app shop (cluster shop), service web.
    s.manifest(&web_manifest("shop", "slipway-hello:v1", 1, ""));
    s.cli(&["deploy"]).ok();
    let out = s.cli(&[
        "deploy",
        "--image",
        "web=slipway-hello:exit",
        "--timeout",
        "120s",
    ]);
    assert!(out.stdout.contains("ROLLED_BACK"), "{out:?}");

    let aws = Aws::new(&s, &cli, &[]);
    let (lines, container) = readme_task_definition_lines();
    let out = aws.sh(&lines);
    assert_eq!(out.code, 0, "{out:?}");
    let td: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.dir.path().join("task-definition.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(td["family"], "shop-default-web", "{td}");
    assert_eq!(td["revision"], 1, "the last successful revision: {td}");
    // The render step's container-name names the service's container.
    assert_eq!(
        td["containerDefinitions"][0]["name"].as_str(),
        Some(container.as_str()),
        "{td}"
    );
    // The family's newest revision is the failed one: not what the workflow must start from.
    let newest = aws.json(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        "shop-default-web",
    ]);
    assert_eq!(newest["taskDefinition"]["revision"], 2, "{newest}");
}
