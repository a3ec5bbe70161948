//! slipway-build against the real Docker engine: building `FROM scratch` images from a packed
//! context, a failing step named in the error, and pushing to Debian's docker-registry
//! (distribution 2.8.2) on a loopback port, twice, checking the digest against the
//! registry's own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use sha2::{Digest, Sha256};
use slipway_build::{
    BuildError, BuildPlan, BuildProgress, Builder, PushProgress, RegistryCreds, pack,
};

fn require() -> bool {
    std::env::var("SLIPWAY_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

/// True when a Docker engine is reachable. Without one the test is skipped, unless
/// `SLIPWAY_REQUIRE_DOCKER=1` (set by scripts/test.sh and CI), where that is a failure.
fn docker() -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if require() {
            panic!("the Docker engine is not reachable, and SLIPWAY_REQUIRE_DOCKER=1");
        }
        eprintln!(
            "skipping: no Docker engine reachable (set SLIPWAY_REQUIRE_DOCKER=1 to make this a failure)"
        );
    }
    ok
}

fn builder() -> Builder {
    Builder::new(Docker::connect_with_local_defaults().expect("connect to the Docker engine"))
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Removes the images and containers a test created, however it ends.
#[derive(Default)]
struct Cleanup {
    images: Vec<String>,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.containers.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&self.containers)
                .output();
        }
        if !self.images.is_empty() {
            let _ = Command::new("docker")
                .args(["rmi", "-f"])
                .args(&self.images)
                .output();
        }
    }
}

fn write(dir: &Path, rel: &str, body: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn docker_cli(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn builds_a_scratch_image_from_a_packed_context() {
    if !docker() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("users");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nARG GREETING\nLABEL greeting=$GREETING\nCOPY . /app/\nCMD [\"/app/data.txt\"]\n",
    );
    write(&ctx, ".dockerignore", "secret.txt\nlogs\n");
    write(&ctx, "data.txt", "hello from slipway-build\n");
    write(&ctx, "secret.txt", "do not send\n");
    write(&ctx, "logs/today.log", "noise\n");
    let mut plan = BuildPlan::new(&ctx);
    plan.args.insert("GREETING".into(), "hello".into());
    let packed = pack(&plan).unwrap();
    assert_eq!(packed.files, 3, "Dockerfile, .dockerignore and data.txt");

    let image = format!("{}:v1", unique("slipway-build-it"));
    cleanup.images.push(image.clone());
    let mut progress = Vec::new();
    let id = builder()
        .build(&plan, &packed, &image, &mut |p| progress.push(p))
        .await
        .unwrap();
    assert!(id.starts_with("sha256:"), "{id}");

    let steps: Vec<(u32, u32, String)> = progress
        .iter()
        .filter_map(|p| match p {
            BuildProgress::Step { n, total, text } => Some((*n, *total, text.clone())),
            BuildProgress::Output(_) => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            (1, 5, "FROM scratch".to_owned()),
            (2, 5, "ARG GREETING".to_owned()),
            (3, 5, "LABEL greeting=$GREETING".to_owned()),
            (4, 5, "COPY . /app/".to_owned()),
            (5, 5, "CMD [\"/app/data.txt\"]".to_owned()),
        ]
    );
    assert!(
        progress
            .iter()
            .any(|p| matches!(p, BuildProgress::Output(l) if l.contains("Successfully tagged"))),
        "{progress:?}"
    );

    // The tag names the returned image, with the build arg applied.
    let inspected = docker_cli(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}} {{.Config.Labels.greeting}}",
        &image,
    ]);
    assert_eq!(inspected.trim(), format!("{id} hello"));

    // The image holds the sent files and none of the ignored ones.
    let ctr = docker_cli(&["create", &image]).trim().to_owned();
    cleanup.containers.push(ctr.clone());
    let export = Command::new("docker")
        .args(["export", &ctr])
        .output()
        .unwrap();
    assert!(export.status.success());
    let mut archive = tar::Archive::new(&export.stdout[..]);
    let mut files = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        if path == "app/data.txt" {
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            assert_eq!(body, "hello from slipway-build\n");
        }
        if path.starts_with("app/") && e.header().entry_type().is_file() {
            files.push(path);
        }
    }
    files.sort();
    assert_eq!(
        files,
        ["app/.dockerignore", "app/Dockerfile", "app/data.txt"]
    );
}

#[tokio::test]
async fn a_failing_step_is_named_in_the_error() {
    if !docker() {
        return;
    }
    let _cleanup = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("users");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nCOPY data.txt /\nCOPY missing.txt /\n",
    );
    write(&ctx, "data.txt", "x\n");
    let plan = BuildPlan::new(&ctx);
    let packed = pack(&plan).unwrap();
    let image = format!("{}:v1", unique("slipway-build-fail"));
    let mut steps = 0;
    let err = builder()
        .build(&plan, &packed, &image, &mut |p| {
            if matches!(p, BuildProgress::Step { .. }) {
                steps += 1;
            }
        })
        .await
        .unwrap_err();
    assert_eq!(steps, 3);
    let BuildError::Failed {
        dockerfile,
        step,
        message,
    } = &err
    else {
        panic!("not a build failure: {err:?}");
    };
    assert_eq!(dockerfile, &ctx.join("Dockerfile").display().to_string());
    assert_eq!(step.as_deref(), Some("3/3 \"COPY missing.txt /\""));
    assert!(message.contains("missing.txt"), "{message}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: step 3/3 \"COPY missing.txt /\": ",
            ctx.join("Dockerfile").display()
        )),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 1, "{shown}");
    // No image was tagged.
    let o = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

/// Debian's docker-registry on a free loopback port, with its own storage; killed on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// None (the test is skipped) when docker-registry is not installed, unless
    /// `SLIPWAY_REQUIRE_DOCKER=1` (scripts/test.sh installs it), where that is a failure.
    fn start() -> Option<Registry> {
        let installed = Command::new("docker-registry")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            if require() {
                panic!(
                    "docker-registry is not installed (apt-get install docker-registry), and SLIPWAY_REQUIRE_DOCKER=1"
                );
            }
            eprintln!("skipping: docker-registry is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        let r = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _, _)) = http_get(&r.addr, "/v2/", &[]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}",
                r.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(r)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lower-cased header names with their values.
type Headers = Vec<(String, String)>;

/// A plain HTTP/1.1 GET; returns (status, headers, body).
fn http_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Headers, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let headers: Headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "chunked responses are not expected from the registry"
    );
    Ok((status, headers, raw[split + 4..].to_vec()))
}

#[tokio::test]
async fn pushes_to_a_registry_and_reports_the_manifest_digest() {
    if !docker() {
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let mut cleanup = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\nCOPY data.bin /\n");
    // Content unique to this run, so the layer is new to the registry's storage.
    write(dir.path(), "data.bin", &unique("payload").repeat(1000));
    let plan = BuildPlan::new(dir.path());
    let packed = pack(&plan).unwrap();
    let repo = format!("{}/slipway-build/it", registry.addr);
    let image = format!("{repo}:v1");
    cleanup.images.push(image.clone());
    let b = builder();
    b.build(&plan, &packed, &image, &mut |_| {}).await.unwrap();

    let creds = RegistryCreds {
        username: "ci".into(),
        password: "unused-by-this-registry".into(),
        server: registry.addr.clone(),
    };
    let mut statuses = Vec::new();
    let first = b
        .push(&repo, "v1", &creds, &mut |p| {
            let PushProgress::Layer { status, .. } = p;
            statuses.push(status);
        })
        .await
        .unwrap();
    assert!(first.layers_pushed >= 1, "{first:?} {statuses:?}");
    assert!(statuses.iter().any(|s| s == "Pushed"), "{statuses:?}");
    let hex = first.digest.strip_prefix("sha256:").unwrap();
    assert_eq!(hex.len(), 64, "{first:?}");

    let again = b.push(&repo, "v1", &creds, &mut |_| {}).await.unwrap();
    assert_eq!(again.layers_pushed, 0, "{again:?}");
    assert_eq!(
        again.layers_existing,
        first.layers_pushed + first.layers_existing
    );
    assert_eq!(again.digest, first.digest);

    // The registry serves that manifest under that digest.
    let (status, headers, body) = http_get(
        &registry.addr,
        "/v2/slipway-build/it/manifests/v1",
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
    )
    .unwrap();
    assert_eq!(status, 200, "{headers:?}");
    let served = headers
        .iter()
        .find(|(k, _)| k == "docker-content-digest")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no Docker-Content-Digest in {headers:?}"));
    assert_eq!(served, first.digest);
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&body))),
        first.digest
    );
}

#[tokio::test]
async fn push_errors_carry_the_engine_message() {
    if !docker() {
        return;
    }
    let creds = RegistryCreds {
        username: "ci".into(),
        password: "x".into(),
        server: "127.0.0.1:1".into(),
    };
    let repo = format!("127.0.0.1:1/{}", unique("slipway-build-absent"));
    let err = builder()
        .push(&repo, "v1", &creds, &mut |_| {})
        .await
        .unwrap_err();
    match &err {
        BuildError::Push(message) => {
            assert!(message.contains("does not exist"), "{message}")
        }
        other => panic!("not a push error: {other:?}"),
    }
}

/// The classic builder's cache ignores the platform: built for arm64 first, the same context
/// built for amd64 would come back as the arm64 image. The builder checks the result's
/// os/arch and builds again without the cache, so each build is of the platform asked.
#[tokio::test]
async fn each_build_is_of_the_platform_asked_despite_the_cache() {
    if !docker() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("plat");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nCOPY data.txt /data.txt\n",
    );
    write(&ctx, "data.txt", &unique("platform"));
    let name = unique("slipway-build-plat");
    let arch = |image: &str| {
        docker_cli(&["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", image])
            .trim()
            .to_owned()
    };
    for platform in ["linux/arm64", "linux/amd64", "linux/arm64"] {
        let mut plan = BuildPlan::new(&ctx);
        plan.platform = Some(platform.into());
        let packed = pack(&plan).unwrap();
        let image = format!("{name}:{}", platform.replace('/', "-"));
        cleanup.images.push(image.clone());
        builder()
            .build(&plan, &packed, &image, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(arch(&image), platform, "{image}");
    }
}
