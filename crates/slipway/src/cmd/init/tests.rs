use super::*;

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = d.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    d
}

fn plan(app: &str, dir: &Path) -> Vec<Planned> {
    let (found, _) = find_dockerfiles(dir).unwrap();
    let named = name_services(app, &found);
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    let root = named
        .iter()
        .find(|(_, f)| is_root(&f.path))
        .map(|(n, _)| n.as_str());
    let kinds = default_kinds(&names, root);
    named
        .iter()
        .zip(kinds)
        .map(|((name, f), kind)| Planned {
            name: name.clone(),
            kind,
            port: f.port.unwrap_or(DEFAULT_PORT),
            build: build_field(&f.path),
            healthcheck: None,
        })
        .collect()
}

/// The rendered manifest parses, compiles, and says what was planned.
fn check(app: &str, planned: &[Planned]) -> manifest::Manifest {
    let text = render(app, planned);
    let m = manifest::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let specs = m.compile(DEFAULT_ENV).unwrap();
    assert_eq!(specs.len(), planned.len());
    for p in planned {
        let s = specs.iter().find(|s| s.key.name == p.name).unwrap();
        assert_eq!(s.kind, p.kind, "{}", p.name);
        assert_eq!(s.container.port, Some(p.port), "{}", p.name);
        assert_eq!(s.desired_count, Some(1));
        assert!(m.build_of(&p.name).is_some());
    }
    m
}

#[test]
fn names_are_normalised() {
    assert_eq!(normalise_name("My_Shop App", "app"), "my-shop-app");
    assert_eq!(normalise_name("--Users--", "svc"), "users");
    assert_eq!(normalise_name("2fa", "svc"), "svc-2fa");
    assert_eq!(normalise_name("日本", "app"), "app");
    let long = normalise_name(&"a-".repeat(40), "x");
    assert!(long.len() <= 40 && validate_name(&long).is_ok(), "{long}");
    for raw in ["Payments.API", "x", "___", "9", "Ünïcode-svc", "a--b"] {
        let n = normalise_name(raw, "svc");
        assert!(validate_name(&n).is_ok(), "{raw} -> {n}");
    }
}

#[test]
fn dockerfile_names() {
    for yes in [
        "Dockerfile",
        "dockerfile",
        "Dockerfile.prod",
        "api.Dockerfile",
    ] {
        assert!(is_dockerfile(yes), "{yes}");
    }
    for no in [
        "Dockerfile.dockerignore",
        ".dockerignore",
        "docker-compose.yml",
        ".Dockerfile",
        "README.md",
    ] {
        assert!(!is_dockerfile(no), "{no}");
    }
}

#[test]
fn finds_dockerfiles_within_depth_and_skips_noise() {
    let d = tree(&[
        ("api/Dockerfile", "FROM scratch\nEXPOSE 3000\n"),
        ("api/Dockerfile.dev", "FROM scratch\n"),
        ("services/users/Dockerfile", "FROM scratch\n"),
        ("a/b/c/Dockerfile", "FROM scratch\n"),
        ("a/b/c/d/Dockerfile", "FROM scratch\n"),
        ("node_modules/x/Dockerfile", "FROM scratch\n"),
        ("target/Dockerfile", "FROM scratch\n"),
        (".git/Dockerfile", "FROM scratch\n"),
        (".devcontainer/Dockerfile", "FROM scratch\n"),
        ("tools/worker.Dockerfile", "FROM scratch\n"),
        ("only/Dockerfile.dev", "FROM scratch\n"),
        ("only/Dockerfile.prod", "FROM scratch\n"),
    ]);
    let (found, skipped) = find_dockerfiles(d.path()).unwrap();
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "a/b/c/Dockerfile",
            "api/Dockerfile",
            "only/Dockerfile.prod",
            "services/users/Dockerfile",
            "tools/worker.Dockerfile"
        ]
    );
    assert_eq!(skipped, ["api/Dockerfile.dev", "only/Dockerfile.dev"]);
    assert_eq!(found[1].port, Some(3000));
    let named = name_services("shop", &found);
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["c", "api", "only", "users", "worker"]);
}

#[test]
fn root_dockerfile_is_the_app_and_clashes_are_numbered() {
    let found = [
        Found {
            path: "Dockerfile".into(),
            port: None,
        },
        Found {
            path: "shop/Dockerfile".into(),
            port: None,
        },
        Found {
            path: "x/shop/Dockerfile".into(),
            port: None,
        },
    ];
    let names: Vec<String> = name_services("shop", &found)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["shop", "shop-2", "shop-3"]);
}

#[test]
fn exposed_ports() {
    assert_eq!(exposed_port("FROM x\nexpose 3000/tcp 9090\n"), Some(3000));
    assert_eq!(exposed_port("FROM x\nEXPOSE \\\n  5000\n"), Some(5000));
    assert_eq!(exposed_port("ARG PORT=7000\nEXPOSE $PORT\n"), Some(7000));
    assert_eq!(
        exposed_port("ENV PORT 7001\nEXPOSE ${PORT}/tcp\n"),
        Some(7001)
    );
    assert_eq!(exposed_port("EXPOSE ${PORT:-4000}\n"), Some(4000));
    assert_eq!(exposed_port("EXPOSE 8000-8010\n"), Some(8000));
    assert_eq!(exposed_port("# EXPOSE 1\nFROM x\n"), None);
    assert_eq!(exposed_port("EXPOSE $UNKNOWN\n"), None);
    assert_eq!(exposed_port("FROM x\nCMD [\"run\"]\n"), None);
}

#[test]
fn defaults_pick_one_web_service() {
    use ServiceKind::*;
    assert_eq!(default_kinds(&["users"], None), [LoadBalancedWebService]);
    assert_eq!(
        default_kinds(&["api", "products", "users"], None),
        [LoadBalancedWebService, BackendService, BackendService]
    );
    assert_eq!(
        default_kinds(&["app", "gateway", "x"], None),
        [BackendService, LoadBalancedWebService, BackendService]
    );
    assert_eq!(
        default_kinds(&["jobs", "shop"], Some("shop")),
        [BackendService, LoadBalancedWebService]
    );
    assert_eq!(
        default_kinds(&["jobs", "mail"], None),
        [LoadBalancedWebService, BackendService]
    );
}

#[test]
fn written_manifest_parses_and_compiles() {
    let d = tree(&[
        ("api/Dockerfile", "FROM scratch\nEXPOSE 3000\n"),
        ("users/Dockerfile", "FROM scratch\n"),
        ("products/Dockerfile.prod", "FROM scratch\nEXPOSE 9000\n"),
        ("Dockerfile", "FROM scratch\n"),
    ]);
    let planned = plan("shop", d.path());
    let m = check("shop", &planned);
    let api = m.build_of("api").unwrap();
    assert_eq!(
        (api.context.as_str(), api.dockerfile.as_str()),
        ("./api", "Dockerfile")
    );
    let p = m.build_of("products").unwrap();
    assert_eq!(
        (p.context.as_str(), p.dockerfile.as_str()),
        ("./products", "Dockerfile.prod")
    );
    assert_eq!(m.build_of("shop").unwrap().context, ".");
    let specs = m.compile(DEFAULT_ENV).unwrap();
    let api = specs.iter().find(|s| s.key.name == "api").unwrap();
    assert_eq!(api.container.port, Some(3000));
    assert_eq!(api.container.http_route.as_ref().unwrap().path, "/");
    // No health-check path was found: none is written (not `/`).
    assert!(api.container.http_health.is_none());
    let users = specs.iter().find(|s| s.key.name == "users").unwrap();
    assert_eq!(users.kind, ServiceKind::BackendService);
    assert_eq!(users.container.port, Some(DEFAULT_PORT));

    // With one, web and backend services are probed there.
    let mut with = planned.clone();
    for p in &mut with {
        p.healthcheck = Some(HEALTH_PATH.to_owned());
    }
    let specs = check("shop", &with).compile(DEFAULT_ENV).unwrap();
    for name in ["api", "users"] {
        let s = specs.iter().find(|s| s.key.name == name).unwrap();
        assert_eq!(s.container.http_health.as_ref().unwrap().path, HEALTH_PATH);
    }
    assert!(
        specs
            .iter()
            .find(|s| s.key.name == "users")
            .unwrap()
            .container
            .http_route
            .is_none()
    );

    // Several web services each get their own path; odd paths are quoted.
    let mut planned = planned;
    for p in &mut planned {
        p.kind = match p.name.as_str() {
            "users" => ServiceKind::WorkerService,
            _ => ServiceKind::LoadBalancedWebService,
        };
        if p.name == "products" {
            p.build = "./we ird: dir #1".into();
        }
    }
    let m = check("shop", &planned);
    let specs = m.compile(DEFAULT_ENV).unwrap();
    for (name, path) in [
        ("api", "/api"),
        ("shop", "/shop"),
        ("products", "/products"),
    ] {
        let s = specs.iter().find(|s| s.key.name == name).unwrap();
        assert_eq!(s.container.http_route.as_ref().unwrap().path, path);
    }
    let users = specs.iter().find(|s| s.key.name == "users").unwrap();
    assert!(users.container.http_route.is_none());
    assert_eq!(m.build_of("products").unwrap().context, "./we ird: dir #1");
}

#[test]
fn build_fields() {
    assert_eq!(build_field("Dockerfile"), ".");
    assert_eq!(build_field("api/Dockerfile"), "./api");
    assert_eq!(build_field("api/Dockerfile.prod"), "./api/Dockerfile.prod");
    assert_eq!(build_field("worker.Dockerfile"), "./worker.Dockerfile");
    assert_eq!(build_field("../shared/Dockerfile"), "../shared");
    assert_eq!(build_field("/src/x/Dockerfile"), "/src/x");
    assert!(is_root("Dockerfile") && is_root("Dockerfile.prod"));
    assert!(!is_root("worker.Dockerfile") && !is_root("api/Dockerfile"));
}

#[test]
fn service_flags() {
    let f = parse_service_flag("users=worker").unwrap();
    assert_eq!(
        (f.name.as_str(), f.kind, f.dockerfile),
        ("users", ServiceKind::WorkerService, None)
    );
    let f = parse_service_flag("mail=Backend Service:mail/Dockerfile.prod").unwrap();
    assert_eq!(f.kind, ServiceKind::BackendService);
    assert_eq!(f.dockerfile.as_deref(), Some("mail/Dockerfile.prod"));
    assert!(parse_service_flag("users").is_err());
    assert!(parse_service_flag("users=lambda").is_err());
    assert!(parse_service_flag("users=2").is_err());
    assert!(parse_service_flag("Users=web").is_err());
}

#[test]
fn prompts_take_defaults_and_reask() {
    let input = b"\nweb\nnope\n3\n99999\n8081\n" as &[u8];
    let mut p = Prompt::new(input);
    assert_eq!(p.ask_name("App name", "shop").unwrap(), "shop");
    assert_eq!(
        p.ask_kind(ServiceKind::BackendService).unwrap(),
        ServiceKind::LoadBalancedWebService
    );
    assert_eq!(
        p.ask_kind(ServiceKind::BackendService).unwrap(),
        ServiceKind::WorkerService
    );
    assert_eq!(p.ask_port(8080).unwrap(), 8081);
    let e = p.ask_port(8080).unwrap_err();
    assert!(e.to_string().contains("--yes"), "{e}");
}

#[test]
fn health_check_path_is_asked_with_a_default() {
    let input = b"\n\nhealthz\n/ready\nnone\n" as &[u8];
    let mut p = Prompt::new(input);
    assert_eq!(
        p.ask_healthcheck(Some("/healthz")).unwrap().as_deref(),
        Some("/healthz")
    );
    assert_eq!(p.ask_healthcheck(None).unwrap(), None);
    // "healthz" is no path: asked again.
    assert_eq!(p.ask_healthcheck(None).unwrap().as_deref(), Some("/ready"));
    assert_eq!(p.ask_healthcheck(Some("/healthz")).unwrap(), None);
}
