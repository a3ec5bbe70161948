//! The AWS-compatible API with the real `aws` CLI (installed from PyPI into
//! `target/awscli` by scripts/test.sh): the seeds' `aws ecs` / `aws ecr` flows unchanged,
//! SigV4 failures, read-only keys and bad input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `aws` CLI: `$SLIPWAY_AWS_CLI`, `target/awscli/bin/aws`, or `aws` on the PATH. Without
/// one the test is skipped, unless `SLIPWAY_REQUIRE_DOCKER=1` (then it is a failure).
pub(crate) fn aws_cli() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SLIPWAY_AWS_CLI").map(PathBuf::from),
        Some(repo_root().join("target/awscli/bin/aws")),
        Some(PathBuf::from("aws")),
    ];
    for c in candidates.into_iter().flatten() {
        if Command::new(&c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Some(c);
        }
    }
    if std::env::var("SLIPWAY_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
        panic!(
            "the aws CLI is not installed and SLIPWAY_REQUIRE_DOCKER=1; run `python3 -m venv target/awscli && target/awscli/bin/pip install awscli` (scripts/test.sh does)"
        );
    }
    eprintln!("skipping: no aws CLI (scripts/test.sh installs it into target/awscli)");
    None
}

/// An access key of a server and the CLI that uses it.
pub(crate) struct Aws<'a> {
    s: &'a Server,
    cli: PathBuf,
    id: String,
    secret: String,
}

impl<'a> Aws<'a> {
    pub(crate) fn new(s: &'a Server, cli: &std::path::Path, extra: &[&str]) -> Aws<'a> {
        let mut args = vec!["--json", "access-key", "create"];
        args.extend_from_slice(extra);
        let k = s.cli(&args).ok().json();
        Aws {
            s,
            cli: cli.to_path_buf(),
            id: k["AccessKeyId"].as_str().unwrap().to_owned(),
            secret: k["SecretAccessKey"].as_str().unwrap().to_owned(),
        }
    }

    /// The environment of a CI job pointed at Slipway: keys, region and the
    /// service-specific endpoint variables (no `--endpoint-url` needed).
    fn env(&self) -> Vec<(String, String)> {
        let bin = self.cli.parent().map(|p| p.display().to_string());
        let path = match bin {
            Some(b) if !b.is_empty() => {
                format!("{b}:{}", std::env::var("PATH").unwrap_or_default())
            }
            _ => std::env::var("PATH").unwrap_or_default(),
        };
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL_ECS".into(), self.s.url.clone()),
            ("AWS_ENDPOINT_URL_ECR".into(), self.s.url.clone()),
            ("AWS_ENDPOINT_URL_STS".into(), self.s.url.clone()),
            (
                "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2".into(),
                self.s.url.clone(),
            ),
            (
                "AWS_CONFIG_FILE".into(),
                self.s.dir.path().join("aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                self.s
                    .dir
                    .path()
                    .join("aws-credentials")
                    .display()
                    .to_string(),
            ),
            ("HOME".into(), self.s.dir.path().display().to_string()),
            (
                "DOCKER_CONFIG".into(),
                self.s
                    .dir
                    .path()
                    .join("docker-config")
                    .display()
                    .to_string(),
            ),
            ("PATH".into(), path),
        ]
    }

    /// `aws ARGS` with `--endpoint-url` (as the seeds' readers would add it).
    pub(crate) fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.cli);
        cmd.args(["--endpoint-url", &self.s.url, "--output", "json"])
            .args(args)
            .current_dir(self.s.dir.path())
            .envs(self.env());
        let o = cmd.output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        self.run(args).ok().json()
    }

    /// A bash script in the test directory with the CI environment (AWS_ENDPOINT_URL_*).
    pub(crate) fn sh(&self, script: &str) -> Out {
        let mut child = Command::new("bash")
            .args(["-euo", "pipefail", "-s"])
            .current_dir(self.s.dir.path())
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// A raw signed request (tests/it/aws_sign.py): returns (status, body).
    pub(crate) fn raw(
        &self,
        secret: &str,
        target: &str,
        body: &str,
        extra: &[&str],
    ) -> (u16, String) {
        let script = repo_root().join("crates/slipway/tests/it/aws_sign.py");
        let o = Command::new("python3")
            .arg(script)
            .args([&self.s.url, &self.id, secret, target, body])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "aws_sign.py: {o:?}");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (status, body) = out.split_once('\n').unwrap();
        (status.parse().unwrap(), body.to_owned())
    }
}

pub(crate) const ECS: &str = "AmazonEC2ContainerServiceV20141113";

/// Versions answered by the running containers of the server.
fn versions(s: &Server) -> Vec<String> {
    let mut v: Vec<String> = s
        .containers()
        .iter()
        .filter(|c| c.running)
        .filter_map(|c| probe(&c.ip, 8080, "/"))
        .map(|(_, body)| {
            serde_json::from_str::<Value>(&body).unwrap()["version"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    v.sort();
    v
}

pub(crate) fn container_defs(name: &str, image: &str) -> String {
    json!([{
        "name": name,
        "image": image,
        "essential": true,
        "memory": 32,
        "cpu": 10,
        "portMappings": [{"containerPort": 8080, "hostPort": 80}]
    }])
    .to_string()
}

/// Waits with the CLI's own waiter.
#[track_caller]
pub(crate) fn wait_stable(aws: &Aws<'_>, cluster: &str, service: &str) {
    aws.run(&[
        "ecs",
        "wait",
        "services-stable",
        "--cluster",
        cluster,
        "--services",
        service,
    ])
    .ok();
}

#[test]
fn seed_001_deploy_sh_register_update_and_wait_for_stale_deployments() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &["--name", "circleci"]);

    // Setup per project: cluster, task definition, service.
    let c = aws.json(&[
        "ecs",
        "create-cluster",
        "--cluster-name",
        "sample-webapp-cluster",
    ]);
    assert_eq!(c["cluster"]["status"], "ACTIVE");
    let td = aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "sample-webapp-task-family",
        "--container-definitions",
        &container_defs("go-sample-webapp", "slipway-hello:v1"),
    ]);
    let td1 = td["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        td1,
        "arn:aws:ecs:us-east-1:000000000000:task-definition/sample-webapp-task-family:1"
    );
    let created = aws.json(&[
        "ecs",
        "create-service",
        "--cluster",
        "sample-webapp-cluster",
        "--service-name",
        "sample-webapp-service",
        "--task-definition",
        "sample-webapp-task-family",
        "--desired-count",
        "2",
    ]);
    assert_eq!(created["service"]["deployments"][0]["status"], "PRIMARY");
    assert_eq!(created["service"]["taskDefinition"], td1.as_str());
    wait_stable(&aws, "sample-webapp-cluster", "sample-webapp-service");
    assert_eq!(versions(&s), vec!["v1", "v1"]);

    // deploy.sh from the seed, with only the image changed to a local one.
    let script = r#"
JQ="jq --raw-output --exit-status"
deploy_cluster() {
    family="sample-webapp-task-family"
    make_task_def
    register_definition
    if [[ $(aws ecs update-service --cluster sample-webapp-cluster --service sample-webapp-service --task-definition $revision | \
                   $JQ '.service.taskDefinition') != $revision ]]; then
        echo "Error updating service."
        return 1
    fi
    for attempt in {1..30}; do
        if stale=$(aws ecs describe-services --cluster sample-webapp-cluster --services sample-webapp-service | \
                       $JQ ".services[0].deployments | .[] | select(.taskDefinition != \"$revision\") | .taskDefinition"); then
            echo "Waiting for stale deployments:"
            echo "$stale"
            sleep 5
        else
            echo "Deployed!"
            return 0
        fi
    done
    echo "Service update took too long."
    return 1
}
make_task_def(){
	task_template='[
		{
			"name": "go-sample-webapp",
			"image": "slipway-hello:%s",
			"essential": true,
			"memory": 200,
			"cpu": 10,
			"portMappings": [
				{
					"containerPort": 8080,
					"hostPort": 80
				}
			]
		}
	]'
	task_def=$(printf "$task_template" $CIRCLE_SHA1)
}
register_definition() {
    if revision=$(aws ecs register-task-definition --container-definitions "$task_def" --family $family | $JQ '.taskDefinition.taskDefinitionArn'); then
        echo "Revision: $revision"
    else
        echo "Failed to register task definition"
        return 1
    fi
}
aws configure set default.region us-east-1
aws configure set default.output json
CIRCLE_SHA1=v2
deploy_cluster
"#;
    let out = aws.sh(script);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout
            .contains("Revision: arn:aws:ecs:us-east-1:000000000000:task-definition/sample-webapp-task-family:2"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("Deployed!"), "{out:#?}");
    // The stale deployment is gone and every task runs v2.
    let d = aws.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        "sample-webapp-cluster",
        "--services",
        "sample-webapp-service",
    ]);
    let svc = &d["services"][0];
    assert_eq!(svc["deployments"].as_array().unwrap().len(), 1, "{svc}");
    assert_eq!(svc["deployments"][0]["rolloutState"], "COMPLETED", "{svc}");
    wait_for(Duration::from_secs(60), "two v2 tasks", || {
        (versions(&s) == vec!["v2", "v2"]).then_some(())
    });

    // One model: the service is Slipway's, and a manifest deploy is visible through ECS.
    let status = s.cli(&["--json", "status"]).ok().json();
    let ours = status
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service"]["name"] == "sample-webapp-service")
        .unwrap_or_else(|| panic!("not in slipway status: {status}"));
    assert_eq!(ours["service"]["app"], "sample-webapp-cluster");
    assert_eq!(ours["image"], "slipway-hello:v2");
    assert_eq!(ours["last_deployment"]["state"], "SUCCEEDED");

    let app = app_name("native");
    s.manifest(&format!(
        "app: {app}\nservices:\n  api:\n    type: Backend Service\n    image:\n      location: slipway-hello:v1\n      port: 8080\n    count: 1\n    memory: 32\n"
    ));
    s.cli(&["deploy"]).ok();
    let listed = aws.json(&["ecs", "list-services", "--cluster", &app]);
    assert_eq!(
        listed["serviceArns"],
        json!([format!(
            "arn:aws:ecs:us-east-1:000000000000:service/{app}/api"
        )])
    );
    let native = aws.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        &app,
        "--services",
        "api",
    ]);
    let family = format!("{app}-default-api");
    assert_eq!(
        native["services"][0]["taskDefinition"],
        format!("arn:aws:ecs:us-east-1:000000000000:task-definition/{family}:1")
    );
    let ntd = aws.json(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        &family,
    ]);
    assert_eq!(
        ntd["taskDefinition"]["containerDefinitions"][0]["image"],
        "slipway-hello:v1"
    );
    let clusters = aws.json(&["ecs", "list-clusters"]);
    let arns = clusters["clusterArns"].as_array().unwrap();
    for name in ["default", "sample-webapp-cluster", app.as_str()] {
        assert!(
            arns.contains(&json!(format!(
                "arn:aws:ecs:us-east-1:000000000000:cluster/{name}"
            ))),
            "{name} not in {clusters}"
        );
    }
}

#[test]
fn seed_004_pipeline_then_a_broken_image_fails_and_rolls_back() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &[]);
    aws.json(&["ecs", "create-cluster", "--cluster-name", "backend"]);
    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "hyeon9mak-task-dev",
        "--container-definitions",
        &container_defs("hyeon9mak-container", "slipway-hello:v1"),
    ]);
    aws.json(&[
        "ecs",
        "create-service",
        "--cluster",
        "backend",
        "--service-name",
        "hyeon9mak-service-dev",
        "--task-definition",
        "hyeon9mak-task-dev",
        "--desired-count",
        "1",
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=true},maximumPercent=200,minimumHealthyPercent=100",
    ]);
    wait_stable(&aws, "backend", "hyeon9mak-service-dev");

    // The workflow's steps: download the task definition, fill in the new image (what
    // amazon-ecs-render-task-definition does), register it without the read-only fields
    // (what amazon-ecs-deploy-task-definition does), update the service, wait.
    let pipeline = |image: &str| -> (String, String) {
        let out = aws.sh(&format!(
            r#"
aws ecs describe-task-definition \
  --task-definition hyeon9mak-task-dev \
  --query taskDefinition \
  > task-definition.json
jq --arg img '{image}' '(.containerDefinitions[] | select(.name == "hyeon9mak-container") | .image) = $img
  | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities, .registeredAt, .registeredBy, .deregisteredAt)' \
  task-definition.json > rendered.json
arn=$(aws ecs register-task-definition --cli-input-json file://rendered.json | jq -r .taskDefinition.taskDefinitionArn)
dep=$(aws ecs update-service --cluster backend --service hyeon9mak-service-dev --task-definition "$arn" \
  | jq -r '.service.deployments[] | select(.status == "PRIMARY") | .id')
echo "$arn $dep"
"#
        ));
        assert_eq!(out.code, 0, "{out:#?}");
        let (arn, dep) = out.stdout.trim().split_once(' ').unwrap();
        (arn.to_owned(), dep.to_owned())
    };
    let (arn2, dep2) = pipeline("slipway-hello:v2");
    assert!(
        arn2.ends_with("task-definition/hyeon9mak-task-dev:2"),
        "{arn2}"
    );
    assert!(dep2.starts_with("ecs-svc/"), "{dep2}");
    wait_stable(&aws, "backend", "hyeon9mak-service-dev");
    let svc = aws.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        "backend",
        "--services",
        "hyeon9mak-service-dev",
    ])["services"][0]
        .clone();
    assert_eq!(svc["taskDefinition"], arn2.as_str());
    assert_eq!(svc["deployments"][0]["id"], dep2.as_str());
    assert_eq!(svc["runningCount"], 1);
    wait_for(
        Duration::from_secs(30),
        "the deployment to complete",
        || {
            let svc = aws.json(&[
                "ecs",
                "describe-services",
                "--cluster",
                "backend",
                "--services",
                "hyeon9mak-service-dev",
            ])["services"][0]
                .clone();
            (svc["deployments"][0]["rolloutState"] == "COMPLETED").then_some(())
        },
    );
    assert_eq!(versions(&s), vec!["v2"]);
    // The round trip kept everything but the image and the revision.
    let td2 = aws.json(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        &arn2,
    ]);
    let c = &td2["taskDefinition"]["containerDefinitions"][0];
    assert_eq!(c["name"], "hyeon9mak-container");
    assert_eq!(c["memory"], 32);
    assert_eq!(c["portMappings"][0]["containerPort"], 8080);

    // A broken image: the deployment fails, the circuit breaker rolls back to revision 2.
    let (arn3, dep3) = pipeline("slipway-hello:exit");
    assert!(arn3.ends_with(":3"), "{arn3}");
    let failed = wait_for(Duration::from_secs(180), "the deployment to fail", || {
        let svc = aws.json(&[
            "ecs",
            "describe-services",
            "--cluster",
            "backend",
            "--services",
            "hyeon9mak-service-dev",
        ])["services"][0]
            .clone();
        svc["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == dep3.as_str() && d["rolloutState"] == "FAILED")
            .cloned()
    });
    assert_eq!(failed["taskDefinition"], arn3.as_str());
    assert!(
        failed["rolloutStateReason"]
            .as_str()
            .unwrap()
            .contains("circuit breaker"),
        "{failed}"
    );
    assert!(failed["failedTasks"].as_u64().unwrap() >= 3, "{failed}");
    // As on AWS, the waiter succeeds after a rollback...
    wait_stable(&aws, "backend", "hyeon9mak-service-dev");
    let svc = aws.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        "backend",
        "--services",
        "hyeon9mak-service-dev",
    ])["services"][0]
        .clone();
    // ...and the failed deployment is gone: the service is back on the previous revision.
    let deps = svc["deployments"].as_array().unwrap();
    assert_eq!(deps.len(), 1, "{svc}");
    assert_ne!(deps[0]["id"], dep3.as_str());
    assert_eq!(deps[0]["taskDefinition"], arn2.as_str());
    assert_eq!(svc["taskDefinition"], arn2.as_str());
    assert_eq!(svc["runningCount"], svc["desiredCount"]);
    let events: Vec<&str> = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|m| m.contains("failed (circuit breaker") && m.contains("rolling back")),
        "{events:#?}"
    );
    assert_eq!(versions(&s), vec!["v2"]);

    // ECS's newer deployment APIs show the same history: the broken deployment was rolled
    // back, with the breaker triggered and the revision it went back to.
    let listed = aws.json(&[
        "ecs",
        "list-service-deployments",
        "--cluster",
        "backend",
        "--service",
        "hyeon9mak-service-dev",
    ]);
    let briefs = listed["serviceDeployments"].as_array().unwrap();
    let dep3_id = dep3.trim_start_matches("ecs-svc/");
    let broken = briefs
        .iter()
        .find(|b| {
            b["serviceDeploymentArn"]
                .as_str()
                .unwrap()
                .ends_with(dep3_id)
        })
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(broken["status"], "ROLLBACK_SUCCESSFUL", "{broken}");
    assert_eq!(
        broken["serviceArn"],
        "arn:aws:ecs:us-east-1:000000000000:service/backend/hyeon9mak-service-dev"
    );
    let rolled = aws.json(&[
        "ecs",
        "list-service-deployments",
        "--cluster",
        "backend",
        "--service",
        "hyeon9mak-service-dev",
        "--status",
        "ROLLBACK_SUCCESSFUL",
    ]);
    assert!(
        rolled["serviceDeployments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["status"] == "ROLLBACK_SUCCESSFUL"),
        "{rolled}"
    );
    let arn = broken["serviceDeploymentArn"].as_str().unwrap();
    let described = aws.json(&[
        "ecs",
        "describe-service-deployments",
        "--service-deployment-arns",
        arn,
        "arn:aws:ecs:us-east-1:000000000000:service-deployment/backend/hyeon9mak-service-dev/nope",
    ]);
    let d = &described["serviceDeployments"][0];
    assert_eq!(d["status"], "ROLLBACK_SUCCESSFUL", "{d}");
    assert_eq!(d["deploymentCircuitBreaker"]["status"], "TRIGGERED", "{d}");
    assert!(
        d["deploymentCircuitBreaker"]["failureCount"]
            .as_u64()
            .unwrap()
            >= 3,
        "{d}"
    );
    assert!(d["rollback"]["serviceRevisionArn"].is_string(), "{d}");
    assert_eq!(described["failures"][0]["reason"], "MISSING", "{described}");
}

#[test]
fn seed_002_ecr_login_push_and_force_new_deployment() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &[]);
    let host = s.url.trim_start_matches("http://").to_owned();
    let repo = format!("regli/{}", app_name("refcard"));
    let image = format!("{host}/{repo}:latest");
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _cleanup = Cleanup(image.clone());

    let r = aws.json(&["ecr", "create-repository", "--repository-name", &repo]);
    assert_eq!(r["repository"]["repositoryUri"], format!("{host}/{repo}"));
    assert_eq!(r["repository"]["imageTagMutability"], "MUTABLE");
    let dup = aws.run(&["ecr", "create-repository", "--repository-name", &repo]);
    assert_ne!(dup.code, 0, "{dup:#?}");
    assert!(
        dup.stderr.contains("RepositoryAlreadyExistsException"),
        "{dup:#?}"
    );

    // The seed's commands, with the registry host instead of *.dkr.ecr.*.amazonaws.com.
    let push = |tag_from: &str| {
        let out = aws.sh(&format!(
            "aws ecr get-login-password --region us-east-1 | docker login --username AWS --password-stdin {host}\n\
             docker tag slipway-hello:{tag_from} {image}\n\
             docker push {image}\n"
        ));
        assert_eq!(out.code, 0, "{out:#?}");
        assert!(out.stdout.contains("Login Succeeded"), "{out:#?}");
    };
    push("v1");
    let imgs = aws.json(&["ecr", "describe-images", "--repository-name", &repo]);
    assert_eq!(imgs["imageDetails"][0]["imageTags"], json!(["latest"]));
    let d1 = imgs["imageDetails"][0]["imageDigest"]
        .as_str()
        .unwrap()
        .to_owned();

    aws.json(&["ecs", "create-cluster", "--cluster-name", "refcard"]);
    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "refcard",
        "--container-definitions",
        &container_defs("refcard", &image),
    ]);
    aws.json(&[
        "ecs",
        "create-service",
        "--cluster",
        "refcard",
        "--service-name",
        "refcard",
        "--task-definition",
        "refcard",
        "--desired-count",
        "1",
    ]);
    wait_stable(&aws, "refcard", "refcard");
    assert_eq!(versions(&s), vec!["v1"]);

    // A new image under the same tag, then a forced new deployment.
    push("v2");
    let updated = aws.json(&[
        "ecs",
        "update-service",
        "--cluster",
        "refcard",
        "--service",
        "refcard",
        "--force-new-deployment",
    ]);
    let deps = updated["service"]["deployments"].as_array().unwrap();
    assert_eq!(deps[0]["status"], "PRIMARY");
    assert_eq!(deps[0]["rolloutState"], "IN_PROGRESS");
    assert_eq!(deps.len(), 2, "{updated}");
    wait_stable(&aws, "refcard", "refcard");
    wait_for(Duration::from_secs(60), "the new image to answer", || {
        (versions(&s) == vec!["v2"]).then_some(())
    });
    let tasks = aws.json(&[
        "ecs",
        "list-tasks",
        "--cluster",
        "refcard",
        "--service-name",
        "refcard",
    ]);
    let arns: Vec<&str> = tasks["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(arns.len(), 1);
    let described = aws.json(&[
        "ecs",
        "describe-tasks",
        "--cluster",
        "refcard",
        "--tasks",
        arns[0],
    ]);
    assert_eq!(described["tasks"][0]["lastStatus"], "RUNNING");
    assert_eq!(
        described["tasks"][0]["containers"][0]["image"],
        image.as_str()
    );

    // The repository now holds the new image under `latest` and the old one untagged.
    let imgs = aws.json(&["ecr", "describe-images", "--repository-name", &repo]);
    let details = imgs["imageDetails"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{imgs}");
    let untagged = aws.json(&[
        "ecr",
        "list-images",
        "--repository-name",
        &repo,
        "--filter",
        "tagStatus=UNTAGGED",
    ]);
    assert_eq!(untagged["imageIds"], json!([{ "imageDigest": d1 }]));
    let got = aws.json(&[
        "ecr",
        "batch-get-image",
        "--repository-name",
        &repo,
        "--image-ids",
        "imageTag=latest",
    ]);
    let manifest: Value =
        serde_json::from_str(got["images"][0]["imageManifest"].as_str().unwrap()).unwrap();
    assert!(manifest["layers"].is_array() || manifest["manifests"].is_array());
    let del = aws.json(&[
        "ecr",
        "batch-delete-image",
        "--repository-name",
        &repo,
        "--image-ids",
        &format!("imageDigest={d1}"),
        "imageTag=nope",
    ]);
    assert_eq!(del["imageIds"], json!([{ "imageDigest": d1 }]));
    assert_eq!(del["failures"][0]["failureCode"], "ImageNotFound");
    let not_empty = aws.run(&["ecr", "delete-repository", "--repository-name", &repo]);
    assert!(
        not_empty.stderr.contains("RepositoryNotEmptyException"),
        "{not_empty:#?}"
    );
    let imm = aws.json(&[
        "ecr",
        "put-image-tag-mutability",
        "--repository-name",
        &repo,
        "--image-tag-mutability",
        "IMMUTABLE",
    ]);
    assert_eq!(imm["imageTagMutability"], "IMMUTABLE");
    // The same repository through the native CLI.
    let native = s.cli(&["--json", "repo", "ls"]).ok().json();
    let mine = native
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == repo.as_str())
        .unwrap();
    assert_eq!(mine["immutable"], true);
    assert_eq!(mine["manifests"], 1);
}

/// The registry's lifecycle policies through `aws ecr`: set, read, preview (nothing
/// deleted), a bad policy refused with the stored one unchanged, delete.
#[test]
fn ecr_lifecycle_policy_put_get_preview_and_delete() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &[]);
    let host = s.url.trim_start_matches("http://").to_owned();
    let repo = format!("life/{}", app_name("ecrlife"));
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for i in &self.0 {
                let _ = Command::new("docker").args(["rmi", "-f", i]).output();
            }
        }
    }
    let tags = ["v1", "v2", "v3"];
    let _cleanup = Cleanup(tags.iter().map(|t| format!("{host}/{repo}:{t}")).collect());
    aws.json(&["ecr", "create-repository", "--repository-name", &repo]);
    // Three images pushed one after the other: v3 is the newest.
    let mut script = format!(
        "aws ecr get-login-password --region us-east-1 | docker login --username AWS --password-stdin {host}\n"
    );
    for t in tags {
        script.push_str(&format!(
            "docker tag slipway-hello:{t} {host}/{repo}:{t}\ndocker push {host}/{repo}:{t}\n"
        ));
    }
    let out = aws.sh(&script);
    assert_eq!(out.code, 0, "{out:#?}");
    let digest_of = |tag: &str| -> String {
        let d = aws.json(&[
            "ecr",
            "describe-images",
            "--repository-name",
            &repo,
            "--image-ids",
            &format!("imageTag={tag}"),
        ]);
        d["imageDetails"][0]["imageDigest"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let digests: Vec<String> = tags.iter().map(|t| digest_of(t)).collect();

    let policy = r#"{"rules":[{"rulePriority":1,"description":"keep the newest","selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    let put = aws.json(&[
        "ecr",
        "put-lifecycle-policy",
        "--repository-name",
        &repo,
        "--lifecycle-policy-text",
        policy,
    ]);
    assert_eq!(put["repositoryName"], repo.as_str());
    assert_eq!(put["lifecyclePolicyText"], policy);
    let got = aws.json(&["ecr", "get-lifecycle-policy", "--repository-name", &repo]);
    assert_eq!(got["lifecyclePolicyText"], policy, "{got}");
    assert!(got["lastEvaluatedAt"].is_number(), "{got}");

    let started = aws.json(&[
        "ecr",
        "start-lifecycle-policy-preview",
        "--repository-name",
        &repo,
    ]);
    assert_eq!(started["status"], "COMPLETE", "{started}");
    assert_eq!(started["lifecyclePolicyText"], policy);
    let preview = aws.json(&[
        "ecr",
        "get-lifecycle-policy-preview",
        "--repository-name",
        &repo,
    ]);
    assert_eq!(preview["status"], "COMPLETE", "{preview}");
    assert_eq!(
        preview["summary"]["expiringImageTotalCount"], 2,
        "{preview}"
    );
    let results = preview["previewResults"].as_array().unwrap();
    let listed: Vec<(&str, &Value)> = results
        .iter()
        .map(|r| (r["imageDigest"].as_str().unwrap(), &r["imageTags"]))
        .collect();
    assert_eq!(
        listed,
        [
            (digests[0].as_str(), &json!(["v1"])),
            (digests[1].as_str(), &json!(["v2"]))
        ],
        "{preview}"
    );
    for r in results {
        assert_eq!(r["action"]["type"], "EXPIRE", "{preview}");
        assert_eq!(r["appliedRulePriority"], 1, "{preview}");
    }
    // A preview deletes nothing.
    let imgs = aws.json(&["ecr", "describe-images", "--repository-name", &repo]);
    assert_eq!(imgs["imageDetails"].as_array().unwrap().len(), 3, "{imgs}");

    // A bad policy: the parser's message, the stored one unchanged.
    let bad = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    let refused = aws.run(&[
        "ecr",
        "put-lifecycle-policy",
        "--repository-name",
        &repo,
        "--lifecycle-policy-text",
        bad,
    ]);
    assert_ne!(refused.code, 0, "{refused:#?}");
    assert!(
        refused.stderr.contains("InvalidParameterException")
            && refused.stderr.contains("tagPrefixList or tagPatternList"),
        "{refused:#?}"
    );
    let got = aws.json(&["ecr", "get-lifecycle-policy", "--repository-name", &repo]);
    assert_eq!(got["lifecyclePolicyText"], policy, "{got}");

    let deleted = aws.json(&["ecr", "delete-lifecycle-policy", "--repository-name", &repo]);
    assert_eq!(deleted["lifecyclePolicyText"], policy, "{deleted}");
    let gone = aws.run(&["ecr", "get-lifecycle-policy", "--repository-name", &repo]);
    assert_ne!(gone.code, 0, "{gone:#?}");
    assert!(
        gone.stderr.contains("LifecyclePolicyNotFoundException"),
        "{gone:#?}"
    );
}

#[test]
fn sigv4_failures_revoked_and_read_only_keys() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &["--name", "deployer"]);
    let id = aws.json(&["sts", "get-caller-identity"]);
    assert_eq!(id["Account"], "000000000000");
    assert_eq!(id["Arn"], "arn:aws:iam::000000000000:user/deployer");

    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "web",
        "--container-definitions",
        &container_defs("web", "slipway-hello:v1"),
    ]);
    aws.json(&[
        "ecs",
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "web:1",
        "--desired-count",
        "1",
    ]);
    wait_stable(&aws, "default", "web");

    let body = r#"{"cluster":"default","service":"web","desiredCount":3}"#;
    let target = format!("{ECS}.UpdateService");
    let check = |(status, text): (u16, String), kind: &str| {
        assert_eq!(status, 403, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["__type"], kind, "{text}");
        assert!(!v["message"].as_str().unwrap().is_empty());
        v
    };
    // Tampered body: signed one body, sent another.
    check(
        aws.raw(
            &aws.secret,
            &target,
            body,
            &[
                "--send",
                r#"{"cluster":"default","service":"web","desiredCount":9}"#,
            ],
        ),
        "InvalidSignatureException",
    );
    // Wrong secret.
    check(
        aws.raw("not-the-secret", &target, body, &[]),
        "InvalidSignatureException",
    );
    // Stale X-Amz-Date (20 minutes old).
    let stale = check(
        aws.raw(&aws.secret, &target, body, &["--date-offset", "-1200"]),
        "InvalidSignatureException",
    );
    assert!(
        stale["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired"),
        "{stale}"
    );
    // Signed for another service.
    check(
        aws.raw(&aws.secret, &target, body, &["--service", "s3"]),
        "InvalidSignatureException",
    );
    // The same request, correctly signed, goes through (so the failures above were about
    // the signature only).
    let (status, text) = aws.raw(&aws.secret, &target, body, &[]);
    assert_eq!(status, 200, "{text}");
    let svc = aws.json(&["ecs", "describe-services", "--services", "web"]);
    assert_eq!(svc["services"][0]["desiredCount"], 3);

    // Read-only key: can describe, cannot mutate.
    let ro = Aws::new(&s, &cli, &["--read-only", "--name", "auditor"]);
    let seen = ro.json(&["ecs", "describe-services", "--services", "web"]);
    assert_eq!(seen["services"][0]["serviceName"], "web");
    let denied = ro.run(&[
        "ecs",
        "update-service",
        "--service",
        "web",
        "--desired-count",
        "1",
    ]);
    assert_ne!(denied.code, 0);
    assert!(
        denied.stderr.contains("AccessDeniedException"),
        "{denied:#?}"
    );
    let denied = ro.run(&["ecr", "create-repository", "--repository-name", "nope"]);
    assert!(
        denied.stderr.contains("AccessDeniedException"),
        "{denied:#?}"
    );
    let svc = aws.json(&["ecs", "describe-services", "--services", "web"]);
    assert_eq!(svc["services"][0]["desiredCount"], 3, "unchanged");

    // Revoked key.
    let keys = s.cli(&["--json", "access-key", "ls"]).ok().json();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(keys.to_string().contains("auditor"));
    assert!(
        !keys.to_string().contains(&aws.secret),
        "ls never shows secrets"
    );
    s.cli(&["access-key", "revoke", &aws.id]).ok();
    let revoked = aws.run(&["ecs", "list-services"]);
    assert_ne!(revoked.code, 0, "{revoked:#?}");
    assert!(
        revoked.stderr.contains("UnrecognizedClientException"),
        "{revoked:#?}"
    );
    let (status, text) = aws.raw(&aws.secret, &target, body, &[]);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("UnrecognizedClientException"));
    let sts = aws.run(&["sts", "get-caller-identity"]);
    assert!(sts.stderr.contains("InvalidClientTokenId"), "{sts:#?}");
    // No signature at all.
    let o = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            &format!("X-Amz-Target: {ECS}.ListServices"),
            "-H",
            "Content-Type: application/x-amz-json-1.1",
            "-d",
            "{}",
            "-w",
            "\n%{http_code}",
            &s.url,
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.ends_with("\n403"), "{out}");
    assert!(out.contains("MissingAuthenticationTokenException"), "{out}");
}

#[test]
fn bad_input_gets_aws_errors_and_changes_nothing() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &[]);
    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "web",
        "--container-definitions",
        &container_defs("web", "slipway-hello:v1"),
    ]);
    aws.json(&[
        "ecs",
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "web",
        "--desired-count",
        "1",
    ]);
    wait_stable(&aws, "default", "web");
    let snapshot = |aws: &Aws<'_>| {
        let svc =
            aws.json(&["ecs", "describe-services", "--services", "web"])["services"][0].clone();
        (
            svc["desiredCount"].clone(),
            svc["taskDefinition"].clone(),
            svc["deployments"].as_array().unwrap().len(),
            aws.json(&["ecs", "list-task-definitions"]),
            aws.json(&["ecs", "list-services"]),
        )
    };
    let before = snapshot(&aws);

    let expect = |target: &str, body: &str, status: u16, kind: &str| {
        let (st, text) = aws.raw(&aws.secret, target, body, &[]);
        assert_eq!(st, status, "{target} {body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["__type"], kind, "{target} {body}: {text}");
        assert!(v["message"].is_string(), "{text}");
    };
    expect(
        &format!("{ECS}.LaunchRockets"),
        "{}",
        400,
        "UnknownOperationException",
    );
    expect(
        "NotAService.ListServices",
        "{}",
        400,
        "UnknownOperationException",
    );
    expect(
        &format!("{ECS}.UpdateService"),
        "{not json",
        400,
        "SerializationException",
    );
    expect(
        &format!("{ECS}.UpdateService"),
        "[1,2]",
        400,
        "SerializationException",
    );
    expect(
        &format!("{ECS}.UpdateService"),
        r#"{"service":"web","desiredCount":"three"}"#,
        400,
        "SerializationException",
    );
    expect(
        &format!("{ECS}.UpdateService"),
        r#"{"service":"web","forceNewDeployment":"yes"}"#,
        400,
        "SerializationException",
    );
    expect(
        &format!("{ECS}.RegisterTaskDefinition"),
        r#"{"family":"web","containerDefinitions":{"name":"web"}}"#,
        400,
        "SerializationException",
    );
    expect(
        &format!("{ECS}.UpdateService"),
        r#"{"service":"web","desiredCount":-1}"#,
        400,
        "InvalidParameterException",
    );
    let eleven: Vec<String> = (0..11).map(|i| format!("s{i}")).collect();
    expect(
        &format!("{ECS}.DescribeServices"),
        &json!({ "services": eleven }).to_string(),
        400,
        "InvalidParameterException",
    );
    expect(
        &format!("{ECS}.RegisterTaskDefinition"),
        r#"{"family":"bad family!","containerDefinitions":[{"name":"a","image":"b"}]}"#,
        400,
        "ClientException",
    );
    expect(
        &format!("{ECS}.UpdateService"),
        r#"{"service":"web","taskDefinition":"web:99"}"#,
        400,
        "ClientException",
    );
    expect(
        &format!("{ECS}.UpdateService"),
        r#"{"cluster":"nope","service":"web","desiredCount":2}"#,
        400,
        "ClusterNotFoundException",
    );
    expect(
        &format!("{ECS}.UpdateService"),
        r#"{"service":"ghost","desiredCount":2}"#,
        400,
        "ServiceNotFoundException",
    );
    let (st, text) = aws.raw(
        &aws.secret,
        "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
        r#"{"repositoryNames":["ghost"]}"#,
        &["--service", "ecr"],
    );
    assert_eq!(st, 400, "{text}");
    assert!(
        text.contains(r#""__type":"RepositoryNotFoundException""#),
        "{text}"
    );

    // The CLI's view of the same errors.
    let cli_err = aws.run(&[
        "ecs",
        "describe-services",
        "--cluster",
        "nope",
        "--services",
        "web",
    ]);
    assert!(
        cli_err
            .stderr
            .contains("An error occurred (ClusterNotFoundException)"),
        "{cli_err:#?}"
    );
    let td_err = aws.run(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        "ghost:1",
    ]);
    assert!(td_err.stderr.contains("(ClientException)"), "{td_err:#?}");

    // The waiter on a missing service fails at once with MISSING.
    let missing = aws.run(&["ecs", "wait", "services-stable", "--services", "nope"]);
    assert_eq!(missing.code, 255, "{missing:#?}");
    assert!(missing.stderr.contains("MISSING"), "{missing:#?}");
    let partial = aws.json(&["ecs", "describe-services", "--services", "web", "nope"]);
    assert_eq!(partial["services"].as_array().unwrap().len(), 1);
    assert_eq!(
        partial["failures"],
        json!([{ "arn": "arn:aws:ecs:us-east-1:000000000000:service/default/nope", "reason": "MISSING" }])
    );

    assert_eq!(snapshot(&aws), before, "bad input changed nothing");
}

/// `describe-tasks` of one task of cluster `cluster`.
#[track_caller]
fn describe_task(aws: &Aws<'_>, cluster: &str, arn: &str) -> Value {
    let d = aws.json(&[
        "ecs",
        "describe-tasks",
        "--cluster",
        cluster,
        "--tasks",
        arn,
    ]);
    assert_eq!(d["failures"], json!([]), "{d}");
    d["tasks"][0].clone()
}

/// Waits (bounded) until the task's lastStatus is `status`.
#[track_caller]
fn wait_task(aws: &Aws<'_>, cluster: &str, arn: &str, status: &str) -> Value {
    wait_for(Duration::from_secs(60), &format!("task {status}"), || {
        let t = describe_task(aws, cluster, arn);
        (t["lastStatus"] == status).then_some(t)
    })
}

#[test]
fn run_task_stop_task_and_standalone_tasks_in_list_and_describe() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let mut s = Server::start();
    let aws = Aws::new(&s, &cli, &["--name", "runner"]);
    aws.json(&["ecs", "create-cluster", "--cluster-name", "jobs"]);
    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "job",
        "--container-definitions",
        &container_defs("worker", "slipway-hello:v1"),
    ]);

    // A task whose container exits with a code (the environment override makes the example
    // app exit at once): STOPPED with its exit code, never replaced.
    let overrides = json!({"containerOverrides": [{
        "name": "worker",
        "environment": [{"name": "HELLO_EXIT_AT_START", "value": "7"}]
    }]})
    .to_string();
    let run = aws.json(&[
        "ecs",
        "run-task",
        "--cluster",
        "jobs",
        "--task-definition",
        "job:1",
        "--started-by",
        "ci-42",
        "--overrides",
        &overrides,
    ]);
    assert_eq!(run["failures"], json!([]), "{run}");
    let t = &run["tasks"][0];
    let exiting = t["taskArn"].as_str().unwrap().to_owned();
    assert!(
        exiting.starts_with("arn:aws:ecs:us-east-1:000000000000:task/jobs/"),
        "{exiting}"
    );
    assert_eq!(t["desiredStatus"], "RUNNING");
    assert_eq!(t["group"], "family:job");
    assert_eq!(t["startedBy"], "ci-42");
    assert_eq!(
        t["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/job:1"
    );
    assert_eq!(
        t["overrides"]["containerOverrides"][0]["environment"][0]["value"],
        "7"
    );
    assert_eq!(t["containers"][0]["name"], "worker");
    let stopped = wait_task(&aws, "jobs", &exiting, "STOPPED");
    assert_eq!(stopped["desiredStatus"], "STOPPED", "{stopped}");
    assert_eq!(stopped["stopCode"], "EssentialContainerExited", "{stopped}");
    assert_eq!(
        stopped["stoppedReason"], "Essential container in task exited",
        "{stopped}"
    );
    assert_eq!(stopped["containers"][0]["exitCode"], 7, "{stopped}");
    assert!(stopped["stoppedAt"].is_number(), "{stopped}");
    // Not replaced: nothing runs, and the stopped task is listed as such.
    let running = aws.json(&["ecs", "list-tasks", "--cluster", "jobs"]);
    assert_eq!(running["taskArns"], json!([]), "{running}");
    let done = aws.json(&[
        "ecs",
        "list-tasks",
        "--cluster",
        "jobs",
        "--desired-status",
        "STOPPED",
    ]);
    assert_eq!(done["taskArns"], json!([exiting]), "{done}");
    assert!(s.containers().is_empty(), "the exited container is removed");

    // Long-running tasks (count 2, a group and a command override): listed while running.
    let run = aws.json(&[
        "ecs",
        "run-task",
        "--cluster",
        "jobs",
        "--task-definition",
        "arn:aws:ecs:us-east-1:000000000000:task-definition/job:1",
        "--count",
        "2",
        "--group",
        "nightly",
        "--overrides",
        r#"{"containerOverrides":[{"name":"worker","command":["/hello"]}]}"#,
    ]);
    let arns: Vec<String> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(arns.len(), 2, "{run}");
    assert_eq!(run["tasks"][1]["group"], "nightly");
    for a in &arns {
        let t = wait_task(&aws, "jobs", a, "RUNNING");
        assert_eq!(t["desiredStatus"], "RUNNING");
        assert!(t["startedAt"].is_number(), "{t}");
    }
    let mut listed: Vec<String> = serde_json::from_value(
        aws.json(&["ecs", "list-tasks", "--cluster", "jobs"])["taskArns"].clone(),
    )
    .unwrap();
    listed.sort();
    let mut want = arns.clone();
    want.sort();
    assert_eq!(listed, want);
    let by_family = aws.json(&["ecs", "list-tasks", "--cluster", "jobs", "--family", "job"]);
    assert_eq!(by_family["taskArns"].as_array().unwrap().len(), 2);
    let by_starter = aws.json(&[
        "ecs",
        "list-tasks",
        "--cluster",
        "jobs",
        "--started-by",
        "ci-42",
        "--desired-status",
        "STOPPED",
    ]);
    assert_eq!(by_starter["taskArns"], json!([exiting]));
    let c = aws.json(&["ecs", "describe-clusters", "--clusters", "jobs"]);
    assert_eq!(c["clusters"][0]["runningTasksCount"], 2, "{c}");
    // `slipway ps` shows the standalone tasks of the app environment (cluster `jobs` is app
    // `jobs`, environment `default`); with --all, the exited one with its exit code.
    let ps = s.cli(&["ps", "--app", "jobs"]).ok().stdout;
    for a in &arns {
        let id = a.rsplit('/').next().unwrap();
        assert!(ps.contains(id) && ps.contains("(standalone)"), "{ps}");
    }
    let all = s
        .cli(&["--json", "ps", "--app", "jobs", "--all"])
        .ok()
        .json();
    let exited = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| exiting.ends_with(t["id"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(exited["exit_code"], 7, "{exited}");
    assert_eq!(exited["standalone"]["task_definition"], "job:1", "{exited}");
    assert_eq!(
        s.containers().iter().filter(|c| c.running).count(),
        2,
        "one container per task"
    );

    // StopTask: desired STOPPED at once, then STOPPED with UserInitiated and the reason.
    let stop = aws.json(&[
        "ecs",
        "stop-task",
        "--cluster",
        "jobs",
        "--task",
        &arns[0],
        "--reason",
        "no longer needed",
    ]);
    assert_eq!(stop["task"]["desiredStatus"], "STOPPED", "{stop}");
    assert_eq!(stop["task"]["stopCode"], "UserInitiated", "{stop}");
    let t = wait_task(&aws, "jobs", &arns[0], "STOPPED");
    assert_eq!(t["stopCode"], "UserInitiated", "{t}");
    assert_eq!(t["stoppedReason"], "no longer needed", "{t}");
    assert!(t["containers"][0]["exitCode"].is_number(), "{t}");
    let running = aws.json(&["ecs", "list-tasks", "--cluster", "jobs"]);
    assert_eq!(running["taskArns"], json!([arns[1].clone()]), "{running}");

    // The other task survives a server restart and is still stopped by StopTask afterwards;
    // the CLI's own waiter sees it stop.
    let (id, secret) = (aws.id.clone(), aws.secret.clone());
    drop(aws);
    s.restart();
    let aws = Aws {
        s: &s,
        cli: cli.clone(),
        id,
        secret,
    };
    let t = describe_task(&aws, "jobs", &arns[1]);
    assert_eq!(t["lastStatus"], "RUNNING", "{t}");
    aws.json(&["ecs", "stop-task", "--cluster", "jobs", "--task", &arns[1]]);
    aws.run(&[
        "ecs",
        "wait",
        "tasks-stopped",
        "--cluster",
        "jobs",
        "--tasks",
        &arns[1],
    ])
    .ok();
    let t = describe_task(&aws, "jobs", &arns[1]);
    assert_eq!(t["stopCode"], "UserInitiated", "{t}");
    assert_eq!(t["stoppedReason"], "Task stopped by user", "{t}");
    wait_for(Duration::from_secs(30), "containers removed", || {
        s.containers().is_empty().then_some(())
    });

    // Failures in AWS shape: a missing task definition, a missing cluster, an unknown task,
    // a bad count, an override for a container the task definition does not have.
    let e = aws.run(&[
        "ecs",
        "run-task",
        "--cluster",
        "jobs",
        "--task-definition",
        "nope:3",
    ]);
    assert_ne!(e.code, 0);
    assert!(
        e.stderr.contains("(ClientException)") && e.stderr.contains("TaskDefinition not found."),
        "{}",
        e.stderr
    );
    let e = aws.run(&[
        "ecs",
        "run-task",
        "--cluster",
        "nowhere",
        "--task-definition",
        "job:1",
    ]);
    assert!(
        e.stderr.contains("(ClusterNotFoundException)"),
        "{}",
        e.stderr
    );
    let e = aws.run(&[
        "ecs",
        "stop-task",
        "--cluster",
        "jobs",
        "--task",
        "0123456789abcdef",
    ]);
    assert!(
        e.stderr.contains("(InvalidParameterException)")
            && e.stderr.contains("The referenced task was not found."),
        "{}",
        e.stderr
    );
    let e = aws.run(&[
        "ecs",
        "run-task",
        "--cluster",
        "jobs",
        "--task-definition",
        "job:1",
        "--count",
        "11",
    ]);
    assert!(
        e.stderr.contains("(InvalidParameterException)"),
        "{}",
        e.stderr
    );
    let e = aws.run(&[
        "ecs",
        "run-task",
        "--cluster",
        "jobs",
        "--task-definition",
        "job:1",
        "--overrides",
        r#"{"containerOverrides":[{"name":"other","command":["x"]}]}"#,
    ]);
    assert!(
        e.stderr.contains("(InvalidParameterException)"),
        "{}",
        e.stderr
    );
    let failed = aws.json(&[
        "ecs",
        "describe-tasks",
        "--cluster",
        "jobs",
        "--tasks",
        "0123456789abcdef",
    ]);
    assert_eq!(failed["failures"][0]["reason"], "MISSING");
    assert_eq!(
        aws.json(&["ecs", "list-tasks", "--cluster", "jobs"])["taskArns"],
        json!([]),
        "no failed request started a task"
    );
}

/// `aws ecs update-service --deployment-configuration` with the 2025 strategy members on a
/// web service that has an ingress route: the strategy is echoed, the deployment shows its
/// step in `rolloutStateReason`, `statusReason` and `lifecycleStage`, and bad values and a
/// service without routes are refused with InvalidParameterException.
#[test]
fn ecs_canary_strategy_shows_its_progress() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &[]);
    let app = app_name("canary");
    // ECS services get ingress routes from a manifest, or from a target group
    // (loadBalancers, see it/elb.rs).
    s.manifest(&format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: slipway-hello:v1\n      port: 8080\n    http:\n      path: /\n      healthcheck: {{path: /healthz, interval: 1s, healthy_threshold: 1}}\n      deregistration_delay: 1s\n    count: 2\n    memory: 32\n    stop_timeout: 2s\n"
    ));
    s.cli(&["deploy"]).ok();
    wait_stable(&aws, &app, "web");

    let describe = |aws: &Aws<'_>| -> Value {
        aws.json(&[
            "ecs",
            "describe-services",
            "--cluster",
            &app,
            "--services",
            "web",
        ])["services"][0]
            .clone()
    };

    // Bad values are refused, naming the field, and change nothing.
    for (conf, field) in [
        (
            r#"{"strategy":"CANARY","canaryConfiguration":{"canaryPercent":2.5}}"#,
            "canaryPercent",
        ),
        (
            r#"{"strategy":"CANARY","canaryConfiguration":{"canaryPercent":0}}"#,
            "canaryPercent",
        ),
        (
            r#"{"strategy":"LINEAR","linearConfiguration":{"stepPercent":101}}"#,
            "stepPercent",
        ),
    ] {
        let out = aws.run(&[
            "ecs",
            "update-service",
            "--cluster",
            &app,
            "--service",
            "web",
            "--deployment-configuration",
            conf,
        ]);
        assert_ne!(out.code, 0, "{conf}: {out:#?}");
        assert!(
            out.stderr.contains("InvalidParameterException") && out.stderr.contains(field),
            "{conf}: {out:#?}"
        );
    }
    let svc = describe(&aws);
    assert_eq!(
        svc["deploymentConfiguration"]["strategy"], "ROLLING",
        "{svc}"
    );
    assert_eq!(svc["deployments"].as_array().unwrap().len(), 1, "{svc}");

    // A canary of 20 % with no step bake; a new deployment of the same revision.
    let updated = aws.json(&[
        "ecs",
        "update-service",
        "--cluster",
        &app,
        "--service",
        "web",
        "--force-new-deployment",
        "--deployment-configuration",
        r#"{"strategy":"CANARY","canaryConfiguration":{"canaryPercent":20,"canaryBakeTimeInMinutes":0},"bakeTimeInMinutes":0,"maximumPercent":200,"minimumHealthyPercent":100}"#,
    ]);
    let dc = &updated["service"]["deploymentConfiguration"];
    assert_eq!(dc["strategy"], "CANARY", "{dc}");
    assert_eq!(dc["bakeTimeInMinutes"], 0, "{dc}");
    assert_eq!(dc["canaryConfiguration"]["canaryPercent"], 20.0, "{dc}");
    assert_eq!(
        dc["canaryConfiguration"]["canaryBakeTimeInMinutes"], 0,
        "{dc}"
    );

    // Its new tasks start without traffic, then it takes 20 % and waits for analysis.
    let svc = wait_for(Duration::from_secs(120), "the canary at 20 %", || {
        let svc = describe(&aws);
        let reason = svc["deployments"][0]["rolloutStateReason"]
            .as_str()?
            .to_owned();
        reason
            .starts_with("CANARY: 20% of production traffic to the new revision")
            .then_some(svc)
    });
    let deployments = svc["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2, "old tasks take the other 80 %: {svc}");
    assert_eq!(deployments[0]["status"], "PRIMARY");
    assert_eq!(deployments[0]["rolloutState"], "IN_PROGRESS");
    assert_eq!(deployments[1]["status"], "ACTIVE");
    assert!(
        deployments[1]["runningCount"].as_u64().unwrap() >= 1,
        "{svc}"
    );

    let listed = aws.json(&[
        "ecs",
        "list-service-deployments",
        "--cluster",
        &app,
        "--service",
        "web",
    ]);
    let brief = &listed["serviceDeployments"][0];
    assert_eq!(brief["status"], "IN_PROGRESS", "{listed}");
    assert!(
        brief["statusReason"]
            .as_str()
            .unwrap()
            .starts_with("CANARY: 20% of production traffic"),
        "{listed}"
    );
    let arn = brief["serviceDeploymentArn"].as_str().unwrap().to_owned();
    let sd = |aws: &Aws<'_>| -> Value {
        aws.json(&[
            "ecs",
            "describe-service-deployments",
            "--service-deployment-arns",
            &arn,
        ])["serviceDeployments"][0]
            .clone()
    };
    let d = sd(&aws);
    assert_eq!(d["lifecycleStage"], "PRODUCTION_TRAFFIC_SHIFT", "{d}");
    assert_eq!(d["deploymentConfiguration"]["strategy"], "CANARY", "{d}");
    assert_eq!(
        d["deploymentConfiguration"]["canaryConfiguration"]["canaryPercent"], 20.0,
        "{d}"
    );

    // Promoted, it takes every request and completes.
    s.cli(&["promote", "web", "--app", &app]).ok();
    wait_stable(&aws, &app, "web");
    let svc = describe(&aws);
    assert_eq!(svc["deployments"].as_array().unwrap().len(), 1, "{svc}");
    assert_eq!(svc["deployments"][0]["rolloutState"], "COMPLETED", "{svc}");
    let d = sd(&aws);
    assert_eq!(d["status"], "SUCCESSFUL", "{d}");
    assert_eq!(d["lifecycleStage"], "CLEAN_UP", "{d}");

    // An ECS service without loadBalancers has no ingress route: a progressive strategy
    // is refused and no service is created.
    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "plain",
        "--container-definitions",
        &container_defs("plain", "slipway-hello:v1"),
    ]);
    let out = aws.run(&[
        "ecs",
        "create-service",
        "--service-name",
        "plain",
        "--task-definition",
        "plain",
        "--deployment-configuration",
        r#"{"strategy":"CANARY"}"#,
    ]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("InvalidParameterException")
            && out.stderr.contains("needs ingress routes"),
        "{out:#?}"
    );
    let services = aws.json(&["ecs", "list-services"]);
    assert_eq!(services["serviceArns"], json!([]), "{services}");
}
