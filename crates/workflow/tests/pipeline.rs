//! The seed-001 pipeline in `examples/pipeline/.github/workflows/ci.yml`: which jobs run
//! for a feature branch, master and the deploy tags, by planning a run in which every job
//! that runs succeeds (or the named ones fail).

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use slipway_workflow::expr::EvalContext;
use slipway_workflow::filter::{PushEvent, matches};
use slipway_workflow::plan::{self, Outcome};
use slipway_workflow::{Workflow, parse_workflow};

const CI: &str = include_str!("../../../examples/pipeline/.github/workflows/ci.yml");

fn workflow() -> Workflow {
    parse_workflow("ci.yml", CI).unwrap_or_else(|e| panic!("{e}"))
}

/// Plans a push of `ref_` wave by wave; jobs in `failing` fail when they run. Returns the
/// jobs that ran, in order, or `None` when the push does not start the workflow.
fn run(ref_: &str, failing: &[&str]) -> Option<Vec<String>> {
    let wf = workflow();
    let event = PushEvent {
        ref_: ref_.into(),
        changed_paths: Some(vec!["main.go".into()]),
    };
    if !matches(&wf, &event) {
        return None;
    }
    let (ref_type, ref_name) = match ref_.strip_prefix("refs/tags/") {
        Some(t) => ("tag", t),
        None => ("branch", ref_.trim_start_matches("refs/heads/")),
    };
    let github = json!({"ref": ref_, "ref_type": ref_type, "ref_name": ref_name,
                        "sha": "abc", "event_name": "push"});
    let mut results: HashMap<String, Outcome> = HashMap::new();
    let mut with_outputs: HashMap<String, (Outcome, BTreeMap<String, String>)> = HashMap::new();
    let mut ran = Vec::new();
    for wave in plan::waves(&wf) {
        for id in wave {
            let job = wf.job(&id).unwrap();
            let cx = EvalContext::new()
                .with("github", github.clone())
                .with("needs", plan::needs_context(job, &with_outputs));
            let outcome = if plan::should_run(&wf, &id, &results, false, &cx).unwrap() {
                ran.push(id.clone());
                if failing.contains(&id.as_str()) {
                    Outcome::Failure
                } else {
                    Outcome::Success
                }
            } else {
                Outcome::Skipped
            };
            let mut outputs = BTreeMap::new();
            if outcome == Outcome::Success {
                let steps = json!({"deploy": {"outputs": {"url": format!("http://{id}.local/")}},
                                   "push": {"outputs": {"image": "reg/hello:abc"}}});
                outputs = plan::job_outputs(job, &cx.clone().with("steps", steps)).unwrap();
            }
            results.insert(id.clone(), outcome);
            with_outputs.insert(id, (outcome, outputs));
        }
    }
    Some(ran)
}

#[test]
fn feature_branch_runs_only_the_tests() {
    assert_eq!(run("refs/heads/feature/login", &[]).unwrap(), ["test"]);
}

#[test]
fn master_tests_builds_deploys_to_test_and_runs_integration() {
    assert_eq!(
        run("refs/heads/master", &[]).unwrap(),
        ["test", "build", "deploy-test", "integration"]
    );
}

#[test]
fn staging_and_prod_tags_deploy_to_their_environment() {
    assert_eq!(
        run("refs/tags/v1.4.0-staging", &[]).unwrap(),
        ["test", "build", "deploy-staging", "integration"]
    );
    assert_eq!(
        run("refs/tags/v1.4.0-prod", &[]).unwrap(),
        ["test", "build", "deploy-prod", "integration"]
    );
    assert_eq!(
        run("refs/tags/v1.4.0-dev", &[]).unwrap(),
        ["test", "build", "deploy-dev", "integration"]
    );
    // Other tags do not start the workflow.
    assert_eq!(run("refs/tags/v1.4.0", &[]), None);
}

#[test]
fn a_failure_skips_what_depends_on_it() {
    assert_eq!(run("refs/heads/master", &["test"]).unwrap(), ["test"]);
    assert_eq!(
        run("refs/tags/v1.4.0-prod", &["deploy-prod"]).unwrap(),
        ["test", "build", "deploy-prod"]
    );
}

#[test]
fn the_plan_and_the_deploy_environments() {
    let wf = workflow();
    assert_eq!(
        plan::waves(&wf),
        [
            vec!["test"],
            vec!["build"],
            vec!["deploy-test", "deploy-dev", "deploy-staging", "deploy-prod"],
            vec!["integration"],
        ]
    );
    let envs: Vec<String> = wf
        .jobs
        .iter()
        .filter_map(|j| j.environment.as_ref())
        .map(|e| e.name.as_literal().unwrap())
        .collect();
    assert_eq!(envs, ["test", "dev", "staging", "prod"]);
    let c = wf.concurrency.as_ref().unwrap();
    let cx = EvalContext::new().with("github", json!({"ref": "refs/heads/master"}));
    assert_eq!(c.group.eval(&cx).unwrap(), "ci-refs/heads/master");
    assert!(c.cancel_in_progress.eval(&cx).unwrap());
    assert!(slipway_workflow::filter::dispatchable(&wf));
}

#[test]
fn integration_reads_the_url_of_the_deploy_that_ran() {
    let wf = workflow();
    let job = wf.job("integration").unwrap();
    let mut results = HashMap::new();
    for (id, outcome) in [
        ("deploy-test", Outcome::Skipped),
        ("deploy-dev", Outcome::Skipped),
        ("deploy-staging", Outcome::Success),
        ("deploy-prod", Outcome::Skipped),
    ] {
        let mut out = BTreeMap::new();
        if outcome == Outcome::Success {
            out.insert("url".to_owned(), "http://staging.local/".to_owned());
        }
        results.insert(id.to_owned(), (outcome, out));
    }
    let cx = EvalContext::new().with("needs", plan::needs_context(job, &results));
    let (_, base_url) = &job.env[0];
    assert_eq!(base_url.eval(&cx).unwrap(), "http://staging.local/");
}
