use super::*;

const GOOD: &str = "\
app: shop
services:
  api:
    type: Load Balanced Web Service
    image:
      location: slipway-hello:v1
      port: 8080
    http:
      path: /
      healthcheck: /healthz
    count: 3
    cpu: 256
    memory: 64
    variables:
      LOG_LEVEL: info
  worker:
    type: worker
    image:
      location: slipway-hello:v1
environments:
  prod:
    services:
      api:
        count: 4
        variables:
          LOG_LEVEL: warn
";

fn err(text: &str) -> ManifestError {
    parse(text)
        .and_then(|m| m.compile(DEFAULT_ENV).map(|_| m))
        .unwrap_err()
}

#[test]
fn compiles_defaults_and_overrides() {
    let m = parse(GOOD).unwrap();
    let specs = m.compile(DEFAULT_ENV).unwrap();
    let api = specs.iter().find(|s| s.key.name == "api").unwrap();
    assert_eq!(api.desired_count, Some(3));
    assert_eq!(api.container.port, Some(8080));
    assert_eq!(api.container.cpu, Some(256));
    assert_eq!(api.deployment.minimum_healthy_percent, 100);
    assert_eq!(api.deployment.maximum_percent, 200);
    assert!(api.deployment.circuit_breaker.enable && api.deployment.circuit_breaker.rollback);
    assert_eq!(api.container.http_health.as_ref().unwrap().path, "/healthz");
    let worker = specs.iter().find(|s| s.key.name == "worker").unwrap();
    assert_eq!(worker.kind, ServiceKind::WorkerService);
    assert_eq!(worker.desired_count, None);

    let prod = m.compile("prod").unwrap();
    let api = prod.iter().find(|s| s.key.name == "api").unwrap();
    assert_eq!(api.desired_count, Some(4));
    assert_eq!(api.container.environment["LOG_LEVEL"], "warn");
    assert_eq!(api.key.env, "prod");
}

#[test]
fn undeclared_environment_is_refused() {
    let m = parse(GOOD).unwrap();
    let e = m.compile("prdo").unwrap_err();
    assert!(e.message.contains("not declared"), "{e}");
    assert!(e.message.contains("prod"), "{e}");
}

#[test]
fn unknown_field_is_placed() {
    let e = err(
        "app: shop\nservices:\n  api:\n    type: backend\n    image: {location: x:1}\n    cout: 3\n",
    );
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("cout"), "{e}");
}

#[test]
fn negative_count_is_placed() {
    let e = err(
        "app: shop\nservices:\n  api:\n    type: backend\n    image: {location: x:1}\n    count: -1\n",
    );
    assert_eq!((e.line, e.column), (Some(6), Some(12)), "{e}");
    assert!(
        e.message.contains("count must be between 0 and 1000"),
        "{e}"
    );
}

#[test]
fn port_out_of_range_is_placed() {
    let e = err(
        "app: shop\nservices:\n  api:\n    type: web\n    image:\n      location: x:1\n      port: 70000\n",
    );
    assert_eq!(e.line, Some(7), "{e}");
    assert!(
        e.message.contains("port must be between 1 and 65535"),
        "{e}"
    );
}

#[test]
fn progressive_delivery_settings() {
    let web = |deployment: &str| {
        format!(
            "app: a\nservices:\n  s:\n    type: web\n    image: {{location: x:1, port: 80}}\n    http: {{path: /}}\n    deployment: {deployment}\n"
        )
    };
    let m = parse(&web("{strategy: canary}")).unwrap();
    let s = &m.compile("default").unwrap()[0];
    let p = s.deployment.progressive;
    assert_eq!(
        p.strategy,
        crate::rollout::Strategy::Canary {
            percent: 5,
            bake_ms: 600_000
        }
    );
    assert!(p.analysis.is_some() && p.sticky);
    assert_eq!(
        s.deployment.timeout_ms,
        20 * 60 * 1000,
        "10 minutes beyond the bake"
    );
    let m = parse(&web(
            "{strategy: linear, linear: {step_percent: 25, bake: 10s}, bake: 5s, sticky: false, analysis: {interval: 2s, max_error_rate: 2%, max_p99: 300ms, min_requests: 50, failures: 2}}",
        ))
        .unwrap();
    let p = m.compile("default").unwrap()[0].deployment.progressive;
    let a = p.analysis.unwrap();
    assert_eq!(
        (
            a.interval_ms,
            a.max_error_rate_bp,
            a.max_p99_ms,
            a.min_requests,
            a.failures
        ),
        (2000, Some(200), Some(300), 50, 2)
    );
    assert_eq!(p.bake_ms, 5000);
    assert!(!p.sticky);
    // Rolling without a bake: nothing progressive.
    let m = parse(&web("{rolling: default}")).unwrap();
    assert!(
        m.compile("default").unwrap()[0]
            .deployment
            .progressive
            .is_plain()
    );
    // Bad input, each refused with the reason.
    let e = err(&web("{strategy: canary, canary: {percent: 0}}"));
    assert!(
        e.message.contains("percent must be between 1 and 100"),
        "{e}"
    );
    assert_eq!(e.line, Some(7), "{e}");
    let e = err(&web("{strategy: canary, canary: {percent: 101}}"));
    assert!(
        e.message.contains("percent must be between 1 and 100"),
        "{e}"
    );
    let e = err(&web("{strategy: canary, canary: {bake: 10m}, timeout: 5m}"));
    assert!(
        e.message
            .contains("not shorter than the deployment timeout"),
        "{e}"
    );
    let e = err(&web("{strategy: pink}"));
    assert!(e.message.contains("pink"), "{e}");
    let worker = "app: a\nservices:\n  s:\n    type: backend\n    image: {location: x:1}\n    deployment: {strategy: canary}\n";
    let e = err(worker);
    assert!(e.message.contains("needs ingress routes"), "{e}");
    let worker = "app: a\nservices:\n  s:\n    type: backend\n    image: {location: x:1}\n    deployment: {analysis: {interval: 5s}}\n";
    let e = err(worker);
    assert!(e.message.contains("no http routes"), "{e}");
}

#[test]
fn malformed_yaml_is_placed() {
    let e = err("app: shop\nservices:\n  api: [\n");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn bad_type_and_app_name() {
    let e = err("app: shop\nservices:\n  api:\n    type: lambda\n    image: {location: x:1}\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("unknown service type"), "{e}");
    let e = err("app: Shop\nservices:\n  api:\n    type: backend\n    image: {location: x:1}\n");
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn web_service_needs_a_port() {
    let e = err("app: shop\nservices:\n  api:\n    type: web\n    image: {location: x:1}\n");
    assert!(e.message.contains("needs image.port"), "{e}");
}

#[test]
fn deployment_percent_rules() {
    let e = err(
        "app: a\nservices:\n  s:\n    type: backend\n    image: {location: x:1}\n    deployment: {maximum_percent: 50}\n",
    );
    assert!(e.message.contains("at least 100"), "{e}");
    let m = parse("app: a\nservices:\n  s:\n    type: backend\n    image: {location: x:1}\n    deployment: {rolling: recreate}\n").unwrap();
    let s = &m.compile(DEFAULT_ENV).unwrap()[0];
    assert_eq!(
        (
            s.deployment.minimum_healthy_percent,
            s.deployment.maximum_percent
        ),
        (0, 100)
    );
}

#[test]
fn durations_and_success_codes() {
    let m = parse("app: a\nservices:\n  s:\n    type: web\n    image: {location: x:1, port: 80}\n    http:\n      healthcheck: {path: /h, interval: 500ms, success_codes: '200-299,304'}\n").unwrap();
    let hc = m.compile(DEFAULT_ENV).unwrap()[0]
        .container
        .http_health
        .clone()
        .unwrap();
    assert_eq!(hc.interval_ms, 500);
    assert!(hc.accepts(204) && hc.accepts(304) && !hc.accepts(301));
    let e = err(
        "app: a\nservices:\n  s:\n    type: backend\n    image: {location: x:1}\n    stop_timeout: soon\n",
    );
    assert!(e.message.contains("invalid duration"), "{e}");
    assert_eq!(e.line, Some(6));
}

const SHOP: &str = "\
app: shop
services:
  gateway:
    type: web
    image:
      build: ./gateway
      port: 8080
    http:
      path: /
      alias: shop.example.com
    secrets:
      API_KEY: shop/api-key
  users:
    type: backend
    image:
      build: users/Dockerfile.prod
      port: 8080
    platform: linux/amd64
  products:
    type: backend
    image:
      build:
        context: .
        dockerfile: products/Dockerfile
        args: {FLAVOUR: dry}
        target: final
      port: 8080
environments:
  prod:
    services:
      gateway:
        count: 2
        secrets: {API_KEY: shop/prod-api-key, DB: shop/db}
        http: {alias: [shop.com, www.shop.com]}
";

#[test]
fn builds_resolve_short_and_full_forms() {
    let m = parse(SHOP).unwrap();
    let g = m.build_of("gateway").unwrap();
    assert_eq!(
        (g.context.as_str(), g.dockerfile.as_str()),
        ("./gateway", "Dockerfile")
    );
    let u = m.build_of("users").unwrap();
    assert_eq!(
        (u.context.as_str(), u.dockerfile.as_str()),
        ("users", "Dockerfile.prod")
    );
    assert_eq!(u.platform.as_deref(), Some("linux/amd64"));
    let p = m.build_of("products").unwrap();
    assert_eq!(
        (p.context.as_str(), p.dockerfile.as_str()),
        (".", "products/Dockerfile")
    );
    assert_eq!(p.args.get("FLAVOUR").map(String::as_str), Some("dry"));
    assert_eq!(p.target.as_deref(), Some("final"));
    // A built service's image is named at deploy time.
    assert!(
        m.compile(DEFAULT_ENV)
            .unwrap()
            .iter()
            .all(|s| s.container.image.is_empty())
    );
    let m =
        parse("app: a\nservices:\n  s:\n    type: backend\n    image: {location: x:1}\n").unwrap();
    assert!(m.build_of("s").is_none());
    let full = Build::Full(BuildFull {
        context: Some("./api".into()),
        dockerfile: Some("./api/docker/Dockerfile".into()),
        args: BTreeMap::new(),
        target: None,
    });
    assert_eq!(full.resolve(None).dockerfile, "docker/Dockerfile");
}

#[test]
fn secrets_and_aliases_follow_environment_overrides() {
    let m = parse(SHOP).unwrap();
    let base = m.compile(DEFAULT_ENV).unwrap();
    let g = base.iter().find(|s| s.key.name == "gateway").unwrap();
    assert_eq!(
        g.container.secrets["API_KEY"],
        SecretRef::latest("shop/api-key")
    );
    assert_eq!(
        g.container.http_route.as_ref().unwrap().aliases,
        ["shop.example.com"]
    );
    let prod = m.compile("prod").unwrap();
    let g = prod.iter().find(|s| s.key.name == "gateway").unwrap();
    assert_eq!(g.container.secrets["API_KEY"].name, "shop/prod-api-key");
    assert_eq!(g.container.secrets["DB"].name, "shop/db");
    assert_eq!(g.desired_count, Some(2));
    assert_eq!(
        g.container.http_route.as_ref().unwrap().aliases,
        ["shop.com", "www.shop.com"]
    );
    assert!(!g.container.environment.contains_key("API_KEY"));
    let e = m.secret_error("prod", "gateway", "DB", "secret \"shop/db\" does not exist");
    assert_eq!(e.line, Some(33), "{e}");
}

#[test]
fn secrets_are_env_unless_delivered_as_files() {
    let text = "app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\n    variables: {TLS_KEY: not-the-file}\n    secrets:\n      DB: shop/db\n      API: {from: shop/api, as: env}\n      TLS_KEY: {from: shop/tls-key, as: file}\n      PLAIN: {from: shop/plain}\nenvironments:\n  prod:\n    services:\n      s:\n        variables: {DB: from-prod, TLS_KEY: y}\n        secrets: {API: {from: shop/prod-api, as: file}}\n";
    let m = parse(text).unwrap();
    let s = &m.compile(DEFAULT_ENV).unwrap()[0];
    let c = &s.container;
    assert_eq!(c.secrets["DB"], SecretRef::latest("shop/db"));
    assert_eq!(c.secrets["API"], SecretRef::latest("shop/api"));
    assert_eq!(c.secrets["PLAIN"], SecretRef::latest("shop/plain"));
    assert_eq!(
        c.secrets["TLS_KEY"],
        SecretRef::latest("shop/tls-key").delivered(SecretDelivery::File)
    );
    // A file secret is no variable: a variable of the same name stays.
    assert_eq!(c.environment["TLS_KEY"], "not-the-file");
    let p = &m.compile("prod").unwrap()[0].container;
    // An environment's variable replaces an env secret, not a file secret...
    assert!(!p.secrets.contains_key("DB"));
    assert_eq!(p.environment["DB"], "from-prod");
    assert_eq!(p.secrets["TLS_KEY"].delivery, SecretDelivery::File);
    // ...and an environment may turn an env secret into a file.
    assert_eq!(
        p.secrets["API"],
        SecretRef::latest("shop/prod-api").delivered(SecretDelivery::File)
    );
    // The stored form of an env reference is what it was before files existed.
    let json = serde_json::to_value(&c.secrets["DB"]).unwrap();
    assert_eq!(json, serde_json::json!({"name": "shop/db"}));
    let json = serde_json::to_value(&c.secrets["TLS_KEY"]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "shop/tls-key", "delivery": "file"})
    );
    let old: SecretRef = serde_json::from_str(r#"{"name":"x","version":3}"#).unwrap();
    assert_eq!(old.delivery, SecretDelivery::Env);
}

#[test]
fn a_bad_secret_delivery_is_placed_and_says_the_fix() {
    let base =
        "app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\n    secrets:\n";
    let e = err(&format!(
        "{base}      KEY: {{from: shop/key, as: volume}}\n"
    ));
    assert_eq!((e.line, e.column), (Some(7), Some(33)), "{e}");
    assert!(
        e.message.contains("services.s.secrets.KEY")
            && e.message.contains("\"volume\"")
            && e.message.contains("as: file")
            && e.message.contains("/run/secrets/KEY")
            && e.message.contains("as: env"),
        "{e}"
    );
    let e = err(&format!(
        "{base}      KEY:\n        from: shop/key\n        as: File\n"
    ));
    assert_eq!((e.line, e.column), (Some(9), Some(13)), "{e}");
    // Unknown fields, a missing `from` and a bad name in `from` are placed too.
    let e = err(&format!(
        "{base}      KEY: {{from: shop/key, mode: 0400}}\n"
    ));
    assert!(e.message.contains("mode"), "{e}");
    assert_eq!(e.line, Some(7), "{e}");
    let e = err(&format!("{base}      KEY: {{as: file}}\n"));
    assert!(e.message.contains("missing `from`"), "{e}");
    assert_eq!(e.line, Some(7), "{e}");
    let e = err(&format!(
        "{base}      KEY:\n        as: file\n        from: 'bad name'\n"
    ));
    assert!(e.message.contains("not a secret name"), "{e}");
    assert_eq!(e.line, Some(9), "{e}");
    // A volume where the files are mounted.
    let e = err(
        "app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\n    storage: {volumes: {v: {path: /run/secrets/}}}\n    secrets:\n      KEY: {from: shop/key, as: file}\n",
    );
    assert!(e.message.contains("volume v"), "{e}");
    assert_eq!(e.line, Some(8), "{e}");
    parse("app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\n    storage: {volumes: {v: {path: /run}}}\n    secrets:\n      KEY: {from: shop/key, as: file}\n").unwrap();
    // The same in an environment's override.
    let e = err(
        "app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\nenvironments:\n  prod:\n    services:\n      s:\n        secrets: {K: {from: x, as: tmpfs}}\n",
    );
    assert!(e.message.contains("\"tmpfs\""), "{e}");
    assert_eq!(e.line, Some(10), "{e}");
}

#[test]
fn image_and_secret_mistakes_are_placed() {
    let e =
        err("app: a\nservices:\n  s:\n    type: backend\n    image: {location: x:1, build: ./s}\n");
    assert!(e.message.contains("not both"), "{e}");
    assert_eq!(e.line, Some(5));
    let e = err("app: a\nservices:\n  s:\n    type: backend\n    image:\n      port: 80\n");
    assert!(
        e.message.contains("needs location") && e.message.contains("build"),
        "{e}"
    );
    assert_eq!(e.line, Some(6));
    let e = err("app: a\nservices:\n  s:\n    type: backend\n    image: {build: {dockerfil: x}}\n");
    assert_eq!(e.line, Some(5), "{e}");
    let e = err(
        "app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\n    secrets:\n      DB: 'bad name'\n",
    );
    assert!(e.message.contains("not a secret name"), "{e}");
    assert_eq!(e.line, Some(7));
    let e = err(
        "app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\n    variables: {DB: x}\n    secrets: {DB: shop/db}\n",
    );
    assert!(e.message.contains("also set under variables"), "{e}");
    let e = err(
        "app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\n    platform: amd64\n",
    );
    assert!(e.message.contains("os/arch"), "{e}");
    assert_eq!(e.line, Some(6));
    let e = err(
        "app: a\nservices:\n  s:\n    type: backend\n    image: {build: ./s}\nenvironments:\n  prod:\n    services:\n      s: {http: {alias: x.com}}\n",
    );
    assert!(
        e.message.contains("only a Load Balanced Web Service"),
        "{e}"
    );
}
