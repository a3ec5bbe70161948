//! Seed 004's GitHub Actions workflow, as written in the seed.

use serde_json::json;
use slipway_workflow::expr::EvalContext;
use slipway_workflow::filter::{PushEvent, matches};
use slipway_workflow::model::StepAction;
use slipway_workflow::parse_workflow;

const SEED: &str = include_str!("data/seed004.yml");

/// The one change the acceptance allows: `actions/setup-java` (a download) becomes a local
/// step.
fn with_local_java() -> String {
    SEED.replace(
        "        uses: actions/setup-java@v2\n        with:\n          distribution: 'temurin'\n          java-version: 11\n          cache: 'gradle' # https://github.com/actions/setup-java#caching-packages-dependencies\n",
        "        run: java -version\n",
    )
}

#[test]
fn as_written_only_setup_java_is_refused_with_its_place() {
    let err = parse_workflow("seed004.yml", SEED).unwrap_err();
    let line = SEED
        .lines()
        .position(|l| l.contains("actions/setup-java@v2"))
        .unwrap() as u64
        + 1;
    assert_eq!(err.place.line, line, "{err}");
    assert_eq!(err.place.column, 15, "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "seed004.yml:{line}:15: `jobs.deploy.steps[3].uses`"
        )),
        "{text}"
    );
    assert!(
        text.contains("`actions/setup-java` is not a built-in action"),
        "{text}"
    );
}

#[test]
fn with_local_java_it_parses_with_its_jobs_steps_and_uses() {
    let wf = parse_workflow("seed004.yml", &with_local_java()).unwrap();
    assert_eq!(wf.name.as_deref(), Some("Deploy hyeon9mak assignment"));
    assert_eq!(wf.jobs.len(), 1);
    let job = &wf.jobs[0];
    assert_eq!(job.id, "deploy");
    assert_eq!(job.runs_on[0].as_literal().unwrap(), "ubuntu-latest");
    let env: Vec<&str> = job.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        env,
        [
            "AWS_REGION",
            "ECS_CLUSTER_NAME",
            "ECR_REPOSITORY_NAME",
            "ECS_CONTAINER_NAME",
            "ECS_SERVICE_NAME",
            "TASK_DEFINITION_NAME"
        ]
    );
    let uses: Vec<Option<String>> = job
        .steps
        .iter()
        .map(|s| s.uses().map(|a| a.to_string()))
        .collect();
    let want = [
        Some("actions/checkout@v2"),
        Some("aws-actions/configure-aws-credentials@v1"),
        Some("aws-actions/amazon-ecr-login@v1"),
        None, // java -version (was actions/setup-java)
        None, // ./gradlew clean build
        None, // wget dd-java-agent
        None, // docker build/push + ::set-output
        None, // aws ecs describe-task-definition
        Some("aws-actions/amazon-ecs-render-task-definition@v1"),
        Some("aws-actions/amazon-ecs-deploy-task-definition@v1"),
    ];
    assert_eq!(uses, want.map(|w| w.map(str::to_owned)));
    let ids: Vec<Option<&str>> = job.steps.iter().map(|s| s.id.as_deref()).collect();
    assert_eq!(ids[2], Some("login-ecr"));
    assert_eq!(ids[6], Some("build-image"));
    assert_eq!(ids[8], Some("task-def"));
    assert_eq!(job.steps[0].display_name(), "Checkout");

    // The push step's env reads the ECR login's output; its script uses ::set-output.
    let build = &job.steps[6];
    let cx = EvalContext::new()
        .with(
            "steps",
            json!({"login-ecr": {"outputs": {"registry": "127.0.0.1:5000"}}}),
        )
        .with("github", json!({"sha": "abc123"}));
    let env: Vec<(String, String)> = build
        .env
        .iter()
        .map(|(k, t)| (k.clone(), t.eval(&cx).unwrap()))
        .collect();
    assert_eq!(env[0], ("ECR_REGISTRY".into(), "127.0.0.1:5000".into()));
    assert_eq!(env[1], ("SERVICE_TAG".into(), ".".into()));
    assert_eq!(env[2], ("IMAGE_TAG".into(), "abc123".into()));
    let StepAction::Run { script, .. } = &build.action else {
        panic!("run step")
    };
    assert!(
        script
            .as_literal()
            .unwrap()
            .contains("::set-output name=image::")
    );

    // The deploy step's inputs, numbers and booleans as the strings actions receive.
    let StepAction::Uses { with, .. } = &job.steps[9].action else {
        panic!("uses step")
    };
    let cx = EvalContext::new()
        .with(
            "steps",
            json!({"task-def": {"outputs": {"task-definition": "/tmp/td.json"}}}),
        )
        .with(
            "env",
            json!({"ECS_SERVICE_NAME": "svc", "ECS_CLUSTER_NAME": "backend"}),
        );
    let with: Vec<(String, String)> = with
        .iter()
        .map(|(k, t)| (k.clone(), t.eval(&cx).unwrap()))
        .collect();
    assert_eq!(
        with,
        [
            ("task-definition".into(), "/tmp/td.json".into()),
            ("service".into(), "svc".into()),
            ("cluster".into(), "backend".into()),
            ("wait-for-service-stability".into(), "true".into()),
        ]
    );

    // Runs on pushes to master only.
    let push = |r: &str| PushEvent {
        ref_: r.into(),
        changed_paths: None,
    };
    assert!(matches(&wf, &push("refs/heads/master")));
    assert!(!matches(&wf, &push("refs/heads/main")));
    assert!(!matches(&wf, &push("refs/tags/v1")));
}
