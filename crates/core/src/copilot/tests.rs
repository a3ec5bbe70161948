use super::*;
use crate::model::ServiceKind;

fn file(path: &str, text: &str) -> WorkspaceFile {
    WorkspaceFile {
        path: path.into(),
        text: text.into(),
    }
}

/// A workspace of `shop` with these service manifests (by directory) and environments.
fn ws(services: &[(&str, &str)], envs: &[(&str, &str)]) -> Vec<WorkspaceFile> {
    let mut v = vec![file(WORKSPACE_FILE, "application: shop\n")];
    for (dir, text) in services {
        v.push(file(&format!("copilot/{dir}/manifest.yml"), text));
    }
    for (env, text) in envs {
        v.push(file(
            &format!("copilot/environments/{env}/manifest.yml"),
            text,
        ));
    }
    v
}

fn one(text: &str) -> Result<Translation, CopilotError> {
    translate(&ws(&[("api", text)], &[]))
}

const WEB: &str = "name: api\ntype: Load Balanced Web Service\nimage:\n  build: api/Dockerfile\n  port: 8080\nhttp:\n  path: '/'\n";

fn warning_keys(t: &Translation) -> Vec<(String, u64, u64, String)> {
    t.warnings
        .iter()
        .map(|w| (w.file.clone(), w.line, w.column, w.key.clone()))
        .collect()
}

fn err(r: Result<Translation, CopilotError>) -> String {
    r.expect_err("an error").to_string()
}

/// The example of the repository, as `slipway deploy` reads it.
fn example() -> Vec<WorkspaceFile> {
    macro_rules! ex {
        ($p:literal) => {
            file(
                $p,
                include_str!(concat!("../../../../examples/copilot-shop/", $p)),
            )
        };
    }
    vec![
        ex!("copilot/.workspace"),
        ex!("copilot/api/manifest.yml"),
        ex!("copilot/users/manifest.yml"),
        ex!("copilot/products/manifest.yml"),
        ex!("copilot/environments/test/manifest.yml"),
    ]
}

#[test]
fn the_example_translates_to_the_shop() {
    let t = translate(&example()).unwrap();
    assert_eq!(t.app, "app");
    assert_eq!(t.environments, ["test"]);
    let m = &t.manifest;
    assert_eq!(
        m.services.keys().collect::<Vec<_>>(),
        ["api", "products", "users"]
    );
    let specs = m.compile("default").unwrap();
    let api = specs.iter().find(|s| s.key.name == "api").unwrap();
    assert_eq!(api.kind, ServiceKind::LoadBalancedWebService);
    let route = api.container.http_route.as_ref().unwrap();
    assert_eq!(route.path, "/");
    assert_eq!(api.container.http_health.as_ref().unwrap().path, "/");
    assert_eq!(api.container.cpu, Some(256));
    assert_eq!(api.container.memory, Some(512));
    assert_eq!(api.desired_count, Some(1));
    let b = m.build_of("users").unwrap();
    assert_eq!(
        (b.context.as_str(), b.dockerfile.as_str()),
        ("users", "Dockerfile")
    );
    assert_eq!(b.platform.as_deref(), Some("linux/amd64"));
    let users = specs.iter().find(|s| s.key.name == "users").unwrap();
    assert_eq!(users.kind, ServiceKind::BackendService);
    assert!(users.container.http_route.is_none());
    // environments.test.count
    let test = m.compile("test").unwrap();
    let api = test.iter().find(|s| s.key.name == "api").unwrap();
    assert_eq!(api.desired_count, Some(2));
    // exec and network.connect in each service, observability in the environment.
    assert_eq!(
        warning_keys(&t),
        [
            ("copilot/api/manifest.yml".into(), 28, 1, "exec".into()),
            (
                "copilot/api/manifest.yml".into(),
                30,
                3,
                "network.connect".into()
            ),
            (
                "copilot/environments/test/manifest.yml".into(),
                21,
                3,
                "observability.container_insights".into()
            ),
            ("copilot/products/manifest.yml".into(), 22, 1, "exec".into()),
            (
                "copilot/products/manifest.yml".into(),
                24,
                3,
                "network.connect".into()
            ),
            ("copilot/users/manifest.yml".into(), 22, 1, "exec".into()),
            (
                "copilot/users/manifest.yml".into(),
                24,
                3,
                "network.connect".into()
            ),
        ]
    );
    // The written slipway.yml parses to the same manifest and lists the warnings.
    let again = crate::manifest::parse(&t.yaml).unwrap();
    assert_eq!(again.compile("test").unwrap(), test);
    assert!(
        t.yaml.contains("copilot/api/manifest.yml:28:1 exec:"),
        "{}",
        t.yaml
    );
}

#[test]
fn the_warning_line_names_file_line_column_and_key() {
    let t = translate(&example()).unwrap();
    assert_eq!(
        t.warnings[0].to_string(),
        "copilot/api/manifest.yml:28:1: warning: exec: ECS Exec is not needed: `slipway exec` opens a shell in any task"
    );
}

#[test]
fn an_unknown_type_is_an_error_at_its_value() {
    let e = err(one("name: api\ntype: Load Balanced Web Servic\n"));
    assert!(
        e.starts_with("copilot/api/manifest.yml:2:7: type: unknown Copilot service type \"Load Balanced Web Servic\""),
        "{e}"
    );
    assert!(e.contains("Backend Service"), "{e}");
    let e = err(one("name: api\ntype: Request-Driven Web Service\n"));
    assert!(
        e.starts_with("copilot/api/manifest.yml:2:7:") && e.contains("App Runner"),
        "{e}"
    );
    let e = err(one("name: api\nimage: {location: x}\n"));
    assert!(
        e.starts_with("copilot/api/manifest.yml:1:1: type: missing"),
        "{e}"
    );
}

#[test]
fn sidecars_logging_and_image_depends_on_are_translated() {
    let t = one(
        "name: api\ntype: Load Balanced Web Service\nimage:\n  build: api/Dockerfile\n  port: 8080\n  depends_on:\n    datadog: healthy\nhttp:\n  path: '/'\nsidecars:\n  datadog:\n    image: datadog/agent:7\n    port: 8126/tcp\n    essential: true\n    variables:\n      DD_APM_ENABLED: 'true'\n    secrets:\n      DD_API_KEY: /dd/api-key\n    healthcheck:\n      command: ['CMD', 'agent', 'health']\n    credentialsParameter: arn:aws:secretsmanager:x\nlogging:\n  image: fluent-bit:2\n  destination:\n    Name: cloudwatch\n  enable_metadata: false\n  retention: 14\n"
    )
    .unwrap();
    let svc = &t.manifest.services["api"];
    let dd = &svc.sidecars["datadog"];
    assert_eq!(dd.image.value, "datadog/agent:7");
    assert_eq!(dd.port.map(|p| p.0), Some(8126));
    assert_eq!(dd.variables["DD_APM_ENABLED"], "true");
    assert_eq!(dd.secrets["DD_API_KEY"].value.name(), "dd/api-key");
    let l = svc.logging.as_ref().unwrap();
    assert_eq!(l.image.as_ref().unwrap().value, "fluent-bit:2");
    assert_eq!(l.destination["Name"], "cloudwatch");
    assert_eq!(l.enable_metadata, Some(false));
    let deps = svc.image.value.depends_on.as_ref().unwrap();
    assert_eq!(deps.value["datadog"], "healthy");
    let keys: Vec<String> = t.warnings.iter().map(|w| w.key.clone()).collect();
    assert_eq!(
        keys,
        vec![
            "sidecars.datadog.credentialsParameter".to_owned(),
            "logging.retention".to_owned()
        ]
    );
    // An environment's override of them is not applied, and says so.
    let t = one(&format!(
        "{WEB}environments:\n  prod:\n    sidecars:\n      x: {{image: y}}\n"
    ))
    .unwrap();
    assert_eq!(t.warnings[0].key, "environments.prod.sidecars");
    assert_eq!((t.warnings[0].line, t.warnings[0].column), (10, 5));
}

#[test]
fn image_build_forms_location_and_port() {
    let t = one("name: api\ntype: Backend Service\nimage:\n  build:\n    context: ./api\n    dockerfile: ./api/Dockerfile.prod\n    args: {V: '1'}\n    target: run\n    cache_from: [x]\n  port: 9000\n").unwrap();
    let b = t.manifest.build_of("api").unwrap();
    assert_eq!(b.context, "./api");
    assert_eq!(b.dockerfile, "Dockerfile.prod");
    assert_eq!(b.args["V"], "1");
    assert_eq!(b.target.as_deref(), Some("run"));
    assert_eq!(warning_keys(&t)[0].3, "image.build.cache_from");
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.container.port, Some(9000));

    let t = one("name: api\ntype: Worker Service\nimage:\n  location: registry.example/api:1\n")
        .unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.kind, ServiceKind::WorkerService);
    assert_eq!(spec.container.image, "registry.example/api:1");
}

#[test]
fn http_path_alias_and_full_healthcheck() {
    let t = one("name: api\ntype: Load Balanced Web Service\nimage: {location: x, port: 8080}\nhttp:\n  path: api\n  alias: [a.example.com, {name: b.example.com, hosted_zone: Z1}]\n  deregistration_delay: 5s\n  healthcheck:\n    path: /healthz\n    success_codes: 200\n    healthy_threshold: 3\n    unhealthy_threshold: 4\n    interval: 5s\n    timeout: 2s\n    grace_period: 30s\n").unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    let route = spec.container.http_route.as_ref().unwrap();
    assert_eq!(route.path, "/api");
    assert_eq!(route.aliases, ["a.example.com", "b.example.com"]);
    let h = spec.container.http_health.as_ref().unwrap();
    assert_eq!(h.path, "/healthz");
    assert_eq!(h.success_codes, [(200, 200)]);
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (3, 4));
    assert_eq!((h.interval_ms, h.timeout_ms), (5000, 2000));
    assert_eq!(spec.deployment.health_check_grace_period_ms, 30_000);
    assert_eq!(
        warning_keys(&t),
        [(
            "copilot/api/manifest.yml".into(),
            6,
            48,
            "http.alias.hosted_zone".into()
        )]
    );
}

#[test]
fn a_web_service_without_path_or_healthcheck_gets_copilots_defaults() {
    let t = one("name: api\ntype: Load Balanced Web Service\nimage: {location: x, port: 8080}\n")
        .unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.container.http_route.as_ref().unwrap().path, "/");
    assert_eq!(spec.container.http_health.as_ref().unwrap().path, "/");
    assert!(
        t.yaml.contains("Copilot's load balancer checks `/`"),
        "{}",
        t.yaml
    );
    // A string health check.
    let t = one("name: api\ntype: Load Balanced Web Service\nimage: {location: x, port: 8080}\nhttp:\n  path: /\n  healthcheck: /ping\n").unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.container.http_health.as_ref().unwrap().path, "/ping");
}

#[test]
fn http_false_runs_a_backend_with_a_warning() {
    let t = one("name: api\ntype: Load Balanced Web Service\nimage: {location: x, port: 8080}\nhttp: false\n").unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.kind, ServiceKind::BackendService);
    assert_eq!(warning_keys(&t)[0].1, 4);
}

#[test]
fn a_backend_path_is_a_warning() {
    let t = one("name: api\ntype: Backend Service\nimage: {location: x, port: 8080}\nhttp:\n  path: /api\n  healthcheck: /healthz\n").unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert!(spec.container.http_route.is_none());
    assert_eq!(
        spec.container.http_health.as_ref().unwrap().path,
        "/healthz"
    );
    assert_eq!(
        warning_keys(&t),
        [("copilot/api/manifest.yml".into(), 5, 3, "http.path".into())]
    );
}

#[test]
fn autoscaling_is_accepted_and_reported_as_not_applied() {
    let t = one(&format!(
        "{WEB}count:\n  range: 2-10\n  cpu_percentage: 70\n  memory_percentage: 80\n  requests: 1000\n  response_time: 2s\n"
    ))
    .unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.desired_count, Some(2));
    let keys: Vec<(u64, u64, String)> = t
        .warnings
        .iter()
        .map(|w| (w.line, w.column, w.key.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            (9, 3, "count.range".into()),
            (10, 3, "count.cpu_percentage".into()),
            (11, 3, "count.memory_percentage".into()),
            (12, 3, "count.requests".into()),
            (13, 3, "count.response_time".into()),
        ]
    );
    assert!(
        t.warnings[1].message.contains("not applied"),
        "{:?}",
        t.warnings
    );
    assert!(
        t.warnings[1].message.contains("2 task(s)"),
        "{:?}",
        t.warnings
    );
    // The range's map form.
    let t = one(&format!("{WEB}count:\n  range: {{min: 3, max: 5}}\n")).unwrap();
    assert_eq!(
        t.manifest.compile("default").unwrap()[0].desired_count,
        Some(3)
    );
    // A plain number.
    let t = one(&format!("{WEB}count: 4\n")).unwrap();
    assert_eq!(
        t.manifest.compile("default").unwrap()[0].desired_count,
        Some(4)
    );
    assert!(t.warnings.is_empty());
}

#[test]
fn cpu_memory_variables_command_and_entrypoint() {
    let t = one(&format!(
        "{WEB}cpu: 512\nmemory: 1024\nvariables:\n  LOG_LEVEL: info\n  PORT: 8080\n  DEBUG: true\n  FROM_STACK:\n    from_cfn: stack-Output\ncommand: serve --fast\nentrypoint: [/bin/app]\n"
    ))
    .unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.container.cpu, Some(512));
    assert_eq!(spec.container.memory, Some(1024));
    let env = &spec.container.environment;
    assert_eq!(env["LOG_LEVEL"], "info");
    assert_eq!(env["PORT"], "8080");
    assert_eq!(env["DEBUG"], "true");
    assert!(!env.contains_key("FROM_STACK"));
    assert_eq!(
        spec.container.command,
        Some(vec!["serve".to_owned(), "--fast".to_owned()])
    );
    assert_eq!(spec.container.entrypoint, Some(vec!["/bin/app".to_owned()]));
    assert_eq!(
        warning_keys(&t),
        [(
            "copilot/api/manifest.yml".into(),
            14,
            3,
            "variables.FROM_STACK".into()
        )]
    );
}

#[test]
fn secrets_map_ssm_and_secrets_manager_names() {
    let t = one(&format!(
        "{WEB}secrets:\n  DB: /copilot/${{COPILOT_APPLICATION_NAME}}/${{COPILOT_ENVIRONMENT_NAME}}/secrets/db\n  TOKEN: GITHUB_TOKEN\n  ARN: arn:aws:ssm:eu-west-1:123456789012:parameter/shop/api-key\n  SM:\n    secretsmanager: 'shop/creds:password::'\n  SMARN:\n    secretsmanager: arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop/other-AbCdEf\nenvironments:\n  test:\n    count: 1\n"
    ))
    .unwrap();
    let names = |env: &str| -> BTreeMap<String, String> {
        t.manifest.compile(env).unwrap()[0]
            .container
            .secrets
            .iter()
            .map(|(k, r)| (k.clone(), r.name.clone()))
            .collect()
    };
    let d = names("default");
    assert_eq!(d["DB"], "copilot/shop/default/secrets/db");
    assert_eq!(d["TOKEN"], "GITHUB_TOKEN");
    assert_eq!(d["ARN"], "shop/api-key");
    assert_eq!(d["SM"], "shop/creds");
    assert_eq!(d["SMARN"], "shop/other");
    // ${COPILOT_ENVIRONMENT_NAME} names each environment's parameter.
    assert_eq!(names("test")["DB"], "copilot/shop/test/secrets/db");
    assert_eq!(
        warning_keys(&t),
        [(
            "copilot/api/manifest.yml".into(),
            13,
            21,
            "secrets.SM.secretsmanager".into()
        )]
    );
    assert_eq!(secret_name("/a/b"), "a/b");
}

#[test]
fn environment_overrides_merge_like_copilot() {
    let t = translate(&ws(
        &[(
            "api",
            &format!(
                "{WEB}count: 1\nvariables: {{A: base, B: base}}\nenvironments:\n  prod:\n    count: 3\n    cpu: 1024\n    memory: 2048\n    variables: {{B: prod}}\n    http:\n      alias: shop.example.com\n      path: /other\n    image:\n      location: registry.example/api:prod\n    deployment:\n      rolling: recreate\n    network:\n      vpc:\n        placement: private\n"
            ),
        )],
        &[("prod", "name: prod\ntype: Environment\n")],
    ))
    .unwrap();
    assert_eq!(t.environments, ["prod"]);
    let spec = &t.manifest.compile("prod").unwrap()[0];
    assert_eq!(spec.desired_count, Some(3));
    assert_eq!(spec.container.cpu, Some(1024));
    assert_eq!(spec.container.memory, Some(2048));
    assert_eq!(spec.container.environment["A"], "base");
    assert_eq!(spec.container.environment["B"], "prod");
    assert_eq!(
        spec.container.http_route.as_ref().unwrap().aliases,
        ["shop.example.com"]
    );
    assert_eq!(spec.container.image, "registry.example/api:prod");
    assert_eq!(spec.deployment.minimum_healthy_percent, 0);
    let base = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(base.desired_count, Some(1));
    assert_eq!(
        warning_keys(&t),
        [
            (
                "copilot/api/manifest.yml".into(),
                18,
                7,
                "environments.prod.http.path".into()
            ),
            (
                "copilot/api/manifest.yml".into(),
                25,
                9,
                "environments.prod.network.vpc.placement".into()
            ),
        ]
    );
}

#[test]
fn environment_manifests_declare_environments_and_warn_about_aws_keys() {
    let t = translate(&ws(
        &[("api", WEB)],
        &[
            (
                "prod",
                "name: prod\ntype: Environment\nnetwork:\n  vpc:\n    id: vpc-123\n    subnets:\n      public: [{id: subnet-1}]\nhttp:\n  public:\n    certificates: [arn:aws:acm:cert]\ncdn: true\n",
            ),
            ("test", "name: test\ntype: Environment\n"),
        ],
    ))
    .unwrap();
    assert_eq!(t.environments, ["prod", "test"]);
    assert!(t.manifest.compile("test").is_ok());
    let f = "copilot/environments/prod/manifest.yml".to_owned();
    assert_eq!(
        warning_keys(&t),
        [
            (f.clone(), 5, 5, "network.vpc.id".into()),
            (f.clone(), 7, 7, "network.vpc.subnets.public".into()),
            (f.clone(), 10, 5, "http.public.certificates".into()),
            (f.clone(), 11, 1, "cdn".into()),
        ]
    );
    let e = err(translate(&ws(
        &[("api", WEB)],
        &[("prod", "name: prod\ntype: Service\n")],
    )));
    assert!(
        e.starts_with("copilot/environments/prod/manifest.yml:2:7: type:"),
        "{e}"
    );
}

#[test]
fn aws_only_service_keys_warn_once_per_key() {
    let t = one(&format!(
        "{WEB}exec: true\nnetwork:\n  vpc:\n    placement: private\n    security_groups: [sg-1, sg-2]\n  connect: true\npublish:\n  topics:\n    - name: orders\ntaskdef_overrides:\n  - path: ContainerDefinitions[0].Ulimits\n    value: 1\nobservability:\n  tracing: awsxray\nplatform: windows/x86_64\nstorage:\n  readonly_fs: true\n  volumes:\n    data:\n      path: /data\n      read_only: false\n      efs: true\nnlb:\n  port: 443/tcp\nfoo: bar\n"
    ))
    .unwrap();
    let keys: Vec<(u64, u64, String)> = t
        .warnings
        .iter()
        .map(|w| (w.line, w.column, w.key.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            (8, 1, "exec".into()),
            (11, 5, "network.vpc.placement".into()),
            (12, 5, "network.vpc.security_groups".into()),
            (13, 3, "network.connect".into()),
            (15, 3, "publish.topics".into()),
            (17, 1, "taskdef_overrides".into()),
            (21, 3, "observability.tracing".into()),
            (22, 1, "platform".into()),
            (24, 3, "storage.readonly_fs".into()),
            (29, 7, "storage.volumes.data.efs".into()),
            (31, 3, "nlb.port".into()),
            (32, 1, "foo".into()),
        ]
    );
    // The volume itself is kept, as a named volume.
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.container.volumes[0].name, "data");
    assert_eq!(spec.container.volumes[0].path, "/data");
    // exec: false means nothing.
    let t = one(&format!("{WEB}exec: false\n")).unwrap();
    assert!(t.warnings.is_empty());
}

#[test]
fn scheduled_jobs_and_platforms() {
    let t = one("name: nightly\ntype: Scheduled Job\nimage: {location: x}\non:\n  schedule: '@daily'\nretries: 2\ntimeout: 1h\nplatform: {osfamily: linux, architecture: arm64}\n").unwrap();
    let spec = &t.manifest.compile("default").unwrap()[0];
    assert_eq!(spec.kind, ServiceKind::ScheduledJob);
    assert_eq!(spec.container.job.as_ref().unwrap().retries, 2);
    assert!(t.yaml.contains("platform: linux/arm64"), "{}", t.yaml);
}

#[test]
fn errors_of_the_translated_manifest_point_into_the_copilot_file() {
    // A value of the wrong type, found by slipway.yml's parser.
    let e = err(one(
        "name: api\ntype: Backend Service\nimage:\n  location: x\n  port: 80800\n",
    ));
    assert!(
        e.starts_with("copilot/api/manifest.yml:5:9: port must be between 1 and 65535"),
        "{e}"
    );
    // A check of the manifest's validation.
    let e = err(one(
        "name: api\ntype: Load Balanced Web Service\nimage:\n  location: x\n",
    ));
    assert!(
        e.starts_with("copilot/api/manifest.yml:4:") && e.contains("image.port"),
        "{e}"
    );
    let e = err(one(
        "name: api\ntype: Backend Service\nimage: {build: x, location: y}\n",
    ));
    assert!(
        e.starts_with("copilot/api/manifest.yml:3:") && e.contains("not both"),
        "{e}"
    );
    // YAML syntax.
    let e = err(one("name: api\ntype: [\n"));
    assert!(e.starts_with("copilot/api/manifest.yml:"), "{e}");
    // A bad service name.
    let e = err(one(
        "name: Api\ntype: Backend Service\nimage: {location: x}\n",
    ));
    assert!(e.starts_with("copilot/api/manifest.yml:1:7: name:"), "{e}");
}

#[test]
fn the_workspace_names_the_app() {
    let e = err(translate(&[file("copilot/api/manifest.yml", WEB)]));
    assert!(e.starts_with("copilot/.workspace: not found"), "{e}");
    let e = err(translate(&[
        file(WORKSPACE_FILE, "app: x\n"),
        file("copilot/api/manifest.yml", WEB),
    ]));
    assert!(
        e.starts_with("copilot/.workspace:1:1: application: missing"),
        "{e}"
    );
    let e = err(translate(&[
        file(WORKSPACE_FILE, "application: My_App\n"),
        file("copilot/api/manifest.yml", WEB),
    ]));
    assert!(
        e.starts_with("copilot/.workspace:1:14: application:"),
        "{e}"
    );
    let e = err(translate(&[file(WORKSPACE_FILE, "application: x\n")]));
    assert!(e.contains("no service"), "{e}");
    // Addons and pipelines are reported.
    let mut files = ws(&[("api", WEB)], &[]);
    files.push(file("copilot/api/addons/table.yml", "Resources: {}\n"));
    files.push(file("copilot/pipelines/main/manifest.yml", "name: main\n"));
    let t = translate(&files).unwrap();
    assert_eq!(
        t.warnings
            .iter()
            .map(|w| w.key.as_str())
            .collect::<Vec<_>>(),
        ["addons", "pipelines"]
    );
}

#[test]
fn two_manifests_naming_one_service_are_an_error() {
    let e = err(translate(&ws(&[("api", WEB), ("web", WEB)], &[])));
    assert!(
        e.starts_with("copilot/web/manifest.yml:1:7: name: the service \"api\""),
        "{e}"
    );
}

#[test]
fn unplaced_errors_of_the_manifest_are_placed_by_their_field() {
    // slipway.yml's check of variable names has no line of its own: the field names it.
    let e = err(one(&format!("{WEB}variables:\n  1BAD: x\n")));
    assert!(
        e.starts_with("copilot/api/manifest.yml:8:1: services.api.variables:"),
        "{e}"
    );
    // A secret reference error found later (by the CLI), rendered at the reference.
    let t = one(&format!("{WEB}secrets:\n  DB: /shop/db\n")).unwrap();
    let e = t
        .manifest
        .secret_error("default", "api", "DB", "secret \"shop/db\" does not exist");
    assert_eq!(
        t.render(&e),
        "copilot/api/manifest.yml:9:7: services.api.secrets.DB: secret \"shop/db\" does not exist"
    );
}

#[test]
fn warnings_of_an_environment_override_name_the_environment() {
    let t = one(&format!(
        "{WEB}environments:\n  prod:\n    count:\n      range: 2-4\n    variables:\n      X:\n        from_cfn: out\n    deployment:\n      rollback_alarms: [a]\n"
    ))
    .unwrap();
    assert_eq!(
        t.warnings
            .iter()
            .map(|w| w.key.as_str())
            .collect::<Vec<_>>(),
        [
            "environments.prod.count.range",
            "environments.prod.variables.X",
            "environments.prod.deployment.rollback_alarms"
        ]
    );
    assert_eq!(
        t.manifest.compile("prod").unwrap()[0].desired_count,
        Some(2)
    );
}

#[test]
fn an_environment_name_slipway_refuses_is_placed_where_it_is_declared() {
    let e = err(one(&format!("{WEB}environments:\n  Prod:\n    count: 2\n")));
    assert!(
        e.starts_with("copilot/api/manifest.yml:9:3: environment \"Prod\":"),
        "{e}"
    );
}

#[test]
fn an_environment_override_of_only_ignored_keys_still_translates() {
    let t = one(&format!("{WEB}environments:\n  prod:\n    exec: true\n")).unwrap();
    assert_eq!(t.warnings[0].key, "environments.prod.exec");
    assert!(t.yaml.contains("      api: {}"), "{}", t.yaml);
}
