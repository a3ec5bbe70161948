//! The built-in registry with real clients: `docker login/push/pull`, cross-repository
//! mounts, pull-only credentials, immutable repositories, an upload resumed across a server
//! restart, a streamed upload that pauses before its last bytes, `docker manifest` indexes, and `skopeo copy --all` to and from Debian's
//! docker-registry (distribution 2.8.2).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::*;

/// `host:port` of the server's registry.
fn host(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

fn docker_config(s: &Server) -> PathBuf {
    let d = s.dir.path().join("docker-config");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `docker` with the test's own client config (credentials never touch the user's).
fn docker_cmd(s: &Server, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .env("DOCKER_CONFIG", docker_config(s))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run docker");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn docker_login(s: &Server, user: &str, password: &str) {
    docker_cmd(
        s,
        &["login", &host(s), "-u", user, "--password-stdin"],
        Some(password),
    )
    .ok();
}

/// A registry password from `slipway registry password`.
fn password(s: &Server, pull_only: bool) -> String {
    let mut args = vec!["registry", "password"];
    if pull_only {
        args.push("--pull-only");
    }
    let out = s.cli(&args).ok();
    let pw = out.stdout.trim().to_owned();
    assert_eq!(out.stdout.lines().count(), 1, "prints only the password");
    assert!(!pw.is_empty());
    pw
}

/// Removes the local image references a test created, however it ends.
struct Refs(Vec<String>);

impl Refs {
    fn tag(&mut self, s: &Server, from: &str, to: &str) {
        docker_cmd(s, &["tag", from, to], None).ok();
        self.0.push(to.to_owned());
    }
}

impl Drop for Refs {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = Command::new("docker").arg("rmi").args(&self.0).output();
        }
    }
}

/// The digest `docker push` reports.
fn pushed_digest(out: &Out) -> String {
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest in {out:?}"));
    line.split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap()
        .to_owned()
}

#[test]
fn docker_login_push_pull_and_mount() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let h = host(&s);
    let mut refs = Refs(Vec::new());
    docker_login(&s, "slipway", &password(&s, false));

    let team = format!("{h}/team/hello:v1");
    refs.tag(&s, "slipway-hello:v1", &team);
    let push = docker_cmd(&s, &["push", &team], None).ok();
    let digest = pushed_digest(&push);

    docker_cmd(&s, &["rmi", &team], None).ok();
    let pull = docker_cmd(&s, &["pull", &team], None).ok();
    assert!(pull.stdout.contains(&digest), "{pull:?}");
    let inspect = docker_cmd(&s, &["image", "inspect", "-f", "{{.Id}}", &team], None).ok();
    let original = docker_cmd(
        &s,
        &["image", "inspect", "-f", "{{.Id}}", "slipway-hello:v1"],
        None,
    )
    .ok();
    assert_eq!(
        inspect.stdout, original.stdout,
        "the pulled image is the pushed one"
    );

    // The same image into a second repository: its layer is mounted, not uploaded.
    let other = format!("{h}/other/hello:v1");
    refs.tag(&s, "slipway-hello:v1", &other);
    let push2 = docker_cmd(&s, &["push", &other], None).ok();
    assert!(
        push2.stdout.contains("Mounted from team/hello"),
        "{push2:?}"
    );
    assert_eq!(pushed_digest(&push2), digest);

    let repos = s.cli(&["--json", "repo", "ls"]).ok().json();
    let names: Vec<&str> = repos
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other/hello", "team/hello"]);
    let images = s
        .cli(&["--json", "repo", "images", "team/hello"])
        .ok()
        .json();
    let img = &images.as_array().unwrap()[0];
    assert_eq!(img["digest"], digest.as_str());
    assert_eq!(img["tags"], serde_json::json!(["v1"]));
    assert_eq!(img["platforms"], serde_json::json!(["linux/amd64"]));
    assert!(img["size"].as_i64().unwrap() > 100_000, "{img}");
    let table = s.cli(&["repo", "images", "team/hello"]).ok();
    assert!(
        table.stdout.contains("linux/amd64") && table.stdout.contains("v1"),
        "{table:?}"
    );
}

#[test]
fn pull_only_credentials_cannot_push() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let h = host(&s);
    let mut refs = Refs(Vec::new());
    // The admin token is not a registry password: refused, with the command that gives one.
    let refused = docker_cmd(
        &s,
        &["login", &h, "-u", "admin", "--password-stdin"],
        Some(&s.token),
    );
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("slipway registry password"),
        "{refused:?}"
    );
    docker_login(&s, "ci", &password(&s, false));
    let v1 = format!("{h}/team/app:v1");
    refs.tag(&s, "slipway-hello:v1", &v1);
    docker_cmd(&s, &["push", &v1], None).ok();

    docker_login(&s, "ci", &password(&s, true));
    let v2 = format!("{h}/team/app:v2");
    refs.tag(&s, "slipway-hello:v2", &v2);
    let denied = docker_cmd(&s, &["push", &v2], None);
    assert_ne!(denied.code, 0, "{denied:?}");
    assert!(denied.stderr.contains("denied"), "{denied:?}");
    docker_cmd(&s, &["rmi", &v1], None).ok();
    docker_cmd(&s, &["pull", &v1], None).ok();
    let tags = s.cli(&["--json", "repo", "images", "team/app"]).ok().json();
    assert_eq!(
        tags.as_array().unwrap().len(),
        1,
        "nothing was pushed: {tags}"
    );

    // A wrong password does not log in.
    let bad = docker_cmd(
        &s,
        &["login", &h, "-u", "x", "--password-stdin"],
        Some("not-a-password"),
    );
    assert_ne!(bad.code, 0, "{bad:?}");
}

#[test]
fn repo_verbs_and_immutable_tags() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let h = host(&s);
    let mut refs = Refs(Vec::new());
    let created = s
        .cli(&["repo", "create", "team/locked", "--immutable"])
        .ok();
    assert!(created.stdout.contains("immutable"), "{created:?}");
    let dup = s.cli(&["repo", "create", "team/locked"]);
    assert_ne!(dup.code, 0);
    assert!(
        dup.stderr.starts_with("error: ") && dup.stderr.contains("already exists"),
        "{dup:?}"
    );
    let bad = s.cli(&["repo", "create", "Team/../x"]);
    assert_ne!(bad.code, 0);
    assert_eq!(bad.stderr.lines().count(), 1, "{bad:?}");

    docker_login(&s, "slipway", &password(&s, false));
    let tag = format!("{h}/team/locked:v1");
    refs.tag(&s, "slipway-hello:v1", &tag);
    docker_cmd(&s, &["push", &tag], None).ok();
    // The same image again is fine; another image under the same tag is refused.
    docker_cmd(&s, &["push", &tag], None).ok();
    refs.tag(&s, "slipway-hello:v2", &tag);
    let moved = docker_cmd(&s, &["push", &tag], None);
    assert_ne!(moved.code, 0, "{moved:?}");
    assert!(moved.stderr.contains("immutable"), "{moved:?}");
    let images = s
        .cli(&["--json", "repo", "images", "team/locked"])
        .ok()
        .json();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");

    let refused = s.cli(&["repo", "delete", "team/locked"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("--force"), "{refused:?}");
    s.cli(&["repo", "delete", "team/locked", "--force"]).ok();
    let ls = s.cli(&["--json", "repo", "ls"]).ok().json();
    assert_eq!(ls, serde_json::json!([]));
    let ls = s.cli(&["repo", "ls"]).ok();
    assert!(ls.stdout.contains("no repositories"), "{ls:?}");
    let gone = s.cli(&["repo", "images", "team/locked"]);
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("not found"), "{gone:?}");
}

/// curl against the registry with an admin registry password; returns
/// (status, headers, body).
fn curl(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&Path>,
) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("h");
    let out_body = dir.path().join("b");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-X",
        method,
        "-u",
        &format!("ci:{}", s.registry_password()),
    ])
    .arg("-D")
    .arg(&hdr)
    .arg("-o")
    .arg(&out_body);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.arg("--data-binary").arg(format!("@{}", b.display()));
    }
    cmd.arg(format!("{}{path}", s.url));
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let headers = std::fs::read_to_string(&hdr).unwrap();
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        headers,
        std::fs::read(&out_body).unwrap_or_default(),
    )
}

fn header(headers: &str, name: &str) -> String {
    headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in {headers}"))
}

/// Finishes the upload at `loc` (final PUT with the digest of `data`, no body) and checks
/// that the blob reads back as `data`.
fn finish_and_read_back(s: &Server, repo: &str, loc: &str, data: &[u8]) {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    let (st, h, _) = curl(s, "PUT", &format!("{loc}?digest={digest}"), &[], None);
    assert_eq!(st, 201, "{h}");
    let (st, _, body) = curl(s, "GET", &format!("/v2/{repo}/blobs/{digest}"), &[], None);
    assert_eq!(st, 200);
    assert!(
        body == data,
        "the blob read back differs from what was uploaded"
    );
}

#[test]
fn upload_resumes_after_server_restart() {
    if !docker() {
        return;
    }
    let mut s = Server::start();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (a, b) = data.split_at(120_000);
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();

    let (st, h, _) = curl(&s, "POST", "/v2/team/big/blobs/uploads/", &[], None);
    assert_eq!(st, 202, "{h}");
    let loc = header(&h, "location");
    let ct = "Content-Type: application/octet-stream";
    let (st, h, _) = curl(
        &s,
        "PATCH",
        &loc,
        &[ct, &format!("Content-Range: 0-{}", a.len() - 1)],
        Some(&pa),
    );
    assert_eq!(st, 202, "{h}");
    assert_eq!(header(&h, "range"), format!("0-{}", a.len() - 1));

    s.kill9();
    s.restart();

    let (st, h, _) = curl(&s, "GET", &loc, &[], None);
    assert_eq!(st, 204, "{h}");
    assert_eq!(header(&h, "range"), format!("0-{}", a.len() - 1));
    let end = data.len() - 1;
    let (st, h, _) = curl(
        &s,
        "PATCH",
        &loc,
        &[ct, &format!("Content-Range: {}-{end}", a.len())],
        Some(&pb),
    );
    assert_eq!(st, 202, "{h}");
    finish_and_read_back(&s, "team/big", &loc, &data);
}

/// A streamed (chunked) PATCH as `docker push` sends it, with a pause before its last few
/// bytes: the server raises its receive low-water mark for a large body, and must still read
/// a tail far smaller than the mark while the client sends nothing more.
#[test]
fn a_streamed_upload_pausing_before_its_last_bytes_completes() {
    use base64::Engine as _;
    use std::io::{BufRead, BufReader};
    if !docker() {
        return;
    }
    let s = Server::start();
    let data: Vec<u8> = (0..(3 << 20) + 100u32).map(|i| (i % 253) as u8).collect();
    let (bulk, tail) = data.split_at(3 << 20);
    let (st, h, _) = curl(&s, "POST", "/v2/team/streamed/blobs/uploads/", &[], None);
    assert_eq!(st, 202, "{h}");
    let loc = header(&h, "location");

    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("ci:{}", s.registry_password()));
    let mut conn = std::net::TcpStream::connect(host(&s)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        host(&s)
    )
    .unwrap();
    let mut chunk = |bytes: &[u8]| {
        write!(conn, "{:x}\r\n", bytes.len()).unwrap();
        conn.write_all(bytes).unwrap();
        conn.write_all(b"\r\n").unwrap();
    };
    for piece in bulk.chunks(32 << 10) {
        chunk(piece);
    }
    // Long enough for the server to read everything sent and wait for more.
    std::thread::sleep(Duration::from_millis(200));
    chunk(tail);
    conn.write_all(b"0\r\n\r\n").unwrap();

    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .expect("the server answers the PATCH (within the read timeout)");
    assert!(status.starts_with("HTTP/1.1 202"), "{status}");
    let mut range = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    assert_eq!(
        range.as_deref(),
        Some(format!("0-{}", data.len() - 1).as_str())
    );

    finish_and_read_back(&s, "team/streamed", &loc, &data);
}

/// Whether a Debian tool is installed; without it the test is skipped, unless
/// `SLIPWAY_REQUIRE_DOCKER=1`, where that is a failure (`.ci/run` installs them).
fn tool(name: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("SLIPWAY_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
            panic!(
                "{name} is not installed: apt-get install skopeo docker-registry (.ci/run does)"
            );
        }
        eprintln!("skipping: {name} is not installed");
    }
    ok
}

fn skopeo(args: &[&str]) -> Out {
    let o = Command::new("skopeo").args(args).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn sha256_hex(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

#[test]
fn multi_platform_index_and_skopeo_round_trip() {
    if !docker() || !tool("skopeo") || !tool("docker-registry") {
        return;
    }
    let s = Server::start();
    let h = host(&s);
    let mut refs = Refs(Vec::new());
    let pw = password(&s, false);
    docker_login(&s, "slipway", &pw);
    let creds = format!("slipway:{pw}");

    // A two-platform index made by `docker manifest` and read back unchanged.
    let (amd, arm, multi) = (
        format!("{h}/team/multi:amd64"),
        format!("{h}/team/multi:arm64"),
        format!("{h}/team/multi:v1"),
    );
    refs.tag(&s, "slipway-hello:v1", &amd);
    refs.tag(&s, "slipway-hello:v2", &arm);
    docker_cmd(&s, &["push", &amd], None).ok();
    docker_cmd(&s, &["push", &arm], None).ok();
    docker_cmd(
        &s,
        &["manifest", "create", "--insecure", &multi, &amd, &arm],
        None,
    )
    .ok();
    docker_cmd(
        &s,
        &[
            "manifest",
            "annotate",
            "--arch",
            "arm64",
            "--variant",
            "v8",
            &multi,
            &arm,
        ],
        None,
    )
    .ok();
    let pushed = docker_cmd(&s, &["manifest", "push", "--insecure", &multi], None).ok();
    let index_digest = pushed.stdout.trim().to_owned();
    assert!(index_digest.starts_with("sha256:"), "{pushed:?}");
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--raw",
        &format!("docker://{multi}"),
    ])
    .ok();
    assert_eq!(
        sha256_hex(raw.stdout.as_bytes()),
        index_digest,
        "served byte-for-byte"
    );
    let index: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let images = s
        .cli(&["--json", "repo", "images", "team/multi"])
        .ok()
        .json();
    let listed = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["digest"] == index_digest.as_str())
        .unwrap_or_else(|| panic!("index not listed: {images}"));
    assert_eq!(
        listed["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );

    // skopeo copy --all: Slipway → docker-registry 2.8.2 → Slipway, digests identical.
    let reference = RefRegistry::start();
    let there = format!("docker://{}/mirror/multi:v1", reference.host);
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("docker://{multi}"),
        &there,
    ])
    .ok();
    let raw_there = skopeo(&["inspect", "--tls-verify=false", "--raw", &there]).ok();
    assert_eq!(sha256_hex(raw_there.stdout.as_bytes()), index_digest);
    let back = format!("docker://{h}/copied/multi:v1");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &there,
        &back,
    ])
    .ok();
    let raw_back = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--raw",
        &back,
    ])
    .ok();
    assert_eq!(raw_back.stdout, raw.stdout);
    // Every child came along.
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        let child = skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            "--raw",
            &format!("docker://{h}/copied/multi@{d}"),
        ])
        .ok();
        assert_eq!(sha256_hex(child.stdout.as_bytes()), d);
    }
    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{h}/copied/multi"),
    ])
    .ok();
    let tags: Value = serde_json::from_str(&tags.stdout).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));
}

#[test]
fn oci_layout_image_from_umoci_keeps_oci_media_types() {
    if !docker() || !tool("skopeo") || !tool("umoci") {
        return;
    }
    let s = Server::start();
    let pw = password(&s, false);
    let creds = format!("slipway:{pw}");
    let dir = tempfile::tempdir().unwrap();
    let lay = dir.path().join("lay");
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "made by umoci\n").unwrap();
    let umoci = |args: &[&str]| {
        let o = Command::new("umoci").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let image = format!("{}:v1", lay.display());
    umoci(&["init", "--layout", lay.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&[
        "insert",
        "--image",
        &image,
        file.to_str().unwrap(),
        "/hello.txt",
    ]);
    let layout_index: Value =
        serde_json::from_slice(&std::fs::read(lay.join("index.json")).unwrap()).unwrap();
    let digest = layout_index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    let target = format!("docker://{}/oci/img:v1", host(&s));
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{image}"),
        &target,
    ])
    .ok();
    let (st, h, body) = curl(
        &s,
        "GET",
        "/v2/oci/img/manifests/v1",
        &["Accept: application/vnd.oci.image.manifest.v1+json"],
        None,
    );
    assert_eq!(st, 200, "{h}");
    assert_eq!(
        header(&h, "content-type"),
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(header(&h, "docker-content-digest"), digest);
    assert_eq!(sha256_hex(&body), digest);

    // Pulled back into a new OCI layout: the same manifest digest.
    let back = dir.path().join("back");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &target,
        &format!("oci:{}:v1", back.display()),
    ])
    .ok();
    let back_index: Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(back_index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        back_index["manifests"][0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

/// A deploy whose image lives in the built-in registry: the engine pulls it with internal
/// credentials (the host never ran `docker login` for the engine), and the revision pins
/// the repo digest.
#[test]
fn deploy_pulls_from_the_built_in_registry_with_internal_credentials() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let h = host(&s);
    let mut refs = Refs(Vec::new());
    docker_login(&s, "slipway", &password(&s, false));
    let name = format!("it/pulled{}", rand::random::<u32>() % 100_000);
    let image = format!("{h}/{name}:v1");
    refs.tag(&s, "slipway-hello:v2", &image);
    let digest = pushed_digest(&docker_cmd(&s, &["push", &image], None).ok());
    // Forget the client's login and the local reference: only the engine's own pull with
    // the server's internal credentials can bring the image back.
    docker_cmd(&s, &["logout", &h], None).ok();
    docker_cmd(&s, &["rmi", &image], None).ok();
    let anonymous = docker_cmd(&s, &["pull", &image], None);
    assert_ne!(
        anonymous.code, 0,
        "anonymous pulls are refused: {anonymous:?}"
    );

    s.manifest(&web_manifest(&app_name("regpull"), &image, 2, ""));
    let out = s.cli(&["deploy"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    let status = s.cli(&["--json", "status", "web"]).ok().json();
    assert_eq!(
        status["summary"]["image_digest"].as_str().unwrap(),
        format!("{h}/{name}@{digest}"),
        "the revision pins the repo digest: {status}"
    );
    let running: Vec<Container> = s.containers().into_iter().filter(|c| c.running).collect();
    assert_eq!(running.len(), 2);
    for c in &running {
        let (code, body) = probe(&c.ip, 8080, "/").expect("the task answers");
        assert_eq!(code, 200);
        assert!(body.contains("v2"), "{body}");
    }
    let repo_digests = docker_cmd(
        &s,
        &["image", "inspect", "-f", "{{json .RepoDigests}}", &image],
        None,
    )
    .ok();
    assert!(
        repo_digests
            .stdout
            .contains(&format!("{h}/{name}@{digest}")),
        "{repo_digests:?}"
    );

    // The lifecycle safety rule: a policy keeping only the newest image would expire the
    // running one; it is kept (and reported), in the preview and in the run alike.
    docker_login(&s, "slipway", &password(&s, false));
    let newer = format!("{h}/{name}:v3");
    refs.tag(&s, "slipway-hello:v3", &newer);
    let newer_digest = pushed_digest(&docker_cmd(&s, &["push", &newer], None).ok());
    let bad = s.manifest(r#"{"rules":[{"rulePriority":3,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#);
    let refused = s.cli(&["repo", "policy", "set", &name, bad.to_str().unwrap()]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("rule with rulePriority 3")
            && refused.stderr.contains("requires countUnit \"days\""),
        "{refused:?}"
    );
    let policy = r#"{"rules":[{"rulePriority":1,"description":"newest only","selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    let file = s.manifest(policy);
    s.cli(&["repo", "policy", "set", &name, file.to_str().unwrap()])
        .ok();
    let got = s.cli(&["repo", "policy", "get", &name]).ok();
    assert_eq!(got.stdout.trim(), policy);
    let preview = s
        .cli(&["--json", "repo", "policy", "preview", &name])
        .ok()
        .json();
    assert_eq!(preview["expired"], serde_json::json!([]), "{preview}");
    assert_eq!(
        preview["protected"],
        serde_json::json!([digest]),
        "{preview}"
    );
    let run = s
        .cli(&["--json", "repo", "policy", "run", &name])
        .ok()
        .json();
    assert_eq!(run["expired"], preview["expired"]);
    assert_eq!(run["protected"], preview["protected"]);
    let images = s.cli(&["--json", "repo", "images", &name]).ok().json();
    let kept: Vec<&str> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert!(kept.contains(&digest.as_str()) && kept.contains(&newer_digest.as_str()));
    let human = s.cli(&["repo", "policy", "preview", &name]).ok();
    assert!(
        human.stdout.contains("in use by a running task"),
        "{human:?}"
    );
    let gc = s
        .cli(&["--json", "registry", "gc", "--dry-run"])
        .ok()
        .json();
    assert_eq!(gc["dry_run"], true);
    assert_eq!(gc["grace_secs"], 3600);
}

/// A veth pair whose host end has a non-loopback address, its peer in a network namespace
/// the test creates; removed on drop.
pub(crate) struct TestNet {
    ns: String,
    host_if: String,
    pub addr: String,
}

impl TestNet {
    pub(crate) fn create() -> Option<TestNet> {
        let n = rand::random::<u16>() % 200 + 20;
        let ns = format!("slwtls{n}");
        let host_if = format!("vslw{n}a");
        let addr = format!("10.213.{n}.1");
        let sh = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let net = TestNet {
            ns: ns.clone(),
            host_if: host_if.clone(),
            addr: addr.clone(),
        };
        let peer = format!("vslw{n}b");
        let ok = sh(&["netns", "add", &ns])
            && sh(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
            ])
            && sh(&["link", "set", &peer, "netns", &ns])
            && sh(&["addr", "add", &format!("{addr}/24"), "dev", &host_if])
            && sh(&["link", "set", &host_if, "up"])
            && sh(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.213.{n}.2/24"),
                "dev",
                &peer,
            ])
            && sh(&["-n", &ns, "link", "set", &peer, "up"]);
        ok.then_some(net)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Removes a directory however the test ends.
pub(crate) struct RemoveDir(pub(crate) PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--tls-auto`: a docker engine that trusts the generated CA (certs.d, no insecure
/// registry setting) logs in, pushes and pulls over TLS at a non-loopback address; plain
/// HTTP is refused there and still served on loopback.
#[test]
fn docker_pushes_and_pulls_over_tls_with_the_private_ca() {
    if !docker() {
        return;
    }
    let Some(net) = TestNet::create() else {
        panic!("cannot create a test network namespace and veth pair (needs root and `ip`)");
    };
    let s = Server::start_with(&["--api-addr", &format!("{}:0", net.addr), "--tls-auto"]);
    assert!(s.url.starts_with("http://127.0.0.1:"), "{}", s.url);
    let port = s.url.rsplit(':').next().unwrap().to_owned();
    let remote = format!("{}:{port}", net.addr);

    let ca = s.cli(&["registry", "ca"]).ok();
    assert!(
        ca.stdout.starts_with("-----BEGIN CERTIFICATE-----"),
        "{ca:?}"
    );
    assert!(
        ca.stderr
            .contains(&format!("/etc/docker/certs.d/{remote}/ca.crt")),
        "{ca:?}"
    );
    let key_mode = std::fs::metadata(s.data_dir().join("ca/ca.key"))
        .unwrap()
        .permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key_mode.mode() & 0o777, 0o600);
    let certs = PathBuf::from(format!("/etc/docker/certs.d/{remote}"));
    std::fs::create_dir_all(&certs).unwrap();
    let _certs = RemoveDir(certs.clone());
    std::fs::write(certs.join("ca.crt"), &ca.stdout).unwrap();
    let ca_file = s.dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca.stdout).unwrap();

    // Plain HTTP from a non-loopback peer is refused; TLS verified by the CA answers.
    let plain = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{remote}/v2/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "400");
    let tls = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca_file)
        .arg(format!("https://{remote}/v2/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&tls.stdout), "401", "{tls:?}");

    let mut refs = Refs(Vec::new());
    let pw = password(&s, false);
    docker_cmd(
        &s,
        &["login", &remote, "-u", "slipway", "--password-stdin"],
        Some(&pw),
    )
    .ok();
    let image = format!("{remote}/tls/hello:v1");
    refs.tag(&s, "slipway-hello:v1", &image);
    let digest = pushed_digest(&docker_cmd(&s, &["push", &image], None).ok());
    docker_cmd(&s, &["rmi", &image], None).ok();
    let pull = docker_cmd(&s, &["pull", &image], None).ok();
    assert!(pull.stdout.contains(&digest), "{pull:?}");
    // The same registry over plain HTTP on loopback.
    let local = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/v2/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&local.stdout), "401");
    let images = s
        .cli(&["--json", "repo", "images", "tls/hello"])
        .ok()
        .json();
    assert_eq!(images[0]["digest"], digest.as_str());
}

/// One keep-alive `GET path` on an HTTPS connection; the status line (errors: handshake
/// refused, connection closed).
fn https_status(c: &mut crate::ingress_tls::Tls, path: &str) -> std::io::Result<String> {
    use std::io::Read;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body)?;
    Ok(head.lines().next().unwrap_or_default().to_owned())
}

/// A new HTTPS connection to the API address trusting only `ca`: the status of `GET /v2/`.
fn https_new(ca: &crate::ingress_tls::Ca, port: u16) -> std::io::Result<String> {
    https_status(
        &mut crate::ingress_tls::connect(ca, "localhost", port),
        "/v2/",
    )
}

/// `--tls-cert/--tls-key`: replacing the files switches new connections to the new pair while
/// an established keep-alive connection goes on; a broken pair keeps the old one serving,
/// with one log line.
#[test]
fn api_tls_certificate_reloads_from_the_files() {
    use crate::ingress_tls::{Ca, write_by_rename};
    if !docker() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (Ca::new(), Ca::new());
    ca1.issue(certs.path(), "api", &["localhost"], "api one");
    let (crt, key) = (certs.path().join("api.crt"), certs.path().join("api.key"));
    let s = Server::start_with(&[
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let unauthorized = "HTTP/1.1 401 Unauthorized";
    let mut old = crate::ingress_tls::connect(&ca1, "localhost", port);
    assert_eq!(https_status(&mut old, "/v2/").unwrap(), unauthorized);
    assert!(
        https_new(&ca2, port).is_err(),
        "a client trusting only CA 2 connected before the reload"
    );

    // A pair from CA 2 replaces the files.
    ca2.issue(certs.path(), "api", &["localhost"], "api two");
    wait_for(
        Duration::from_secs(30),
        "new connections to get the certificate from CA 2",
        || https_new(&ca2, port).ok(),
    );
    assert_eq!(https_new(&ca2, port).unwrap(), unauthorized);
    assert!(
        https_new(&ca1, port).is_err(),
        "a new connection still got the old certificate"
    );
    assert_eq!(
        https_status(&mut old, "/v2/").unwrap(),
        unauthorized,
        "the keep-alive connection from before the reload broke"
    );

    // A broken pair: a certificate from CA 1 with another pair's key.
    let other = tempfile::tempdir().unwrap();
    ca1.issue(other.path(), "x", &["localhost"], "x");
    ca1.issue(other.path(), "y", &["localhost"], "y");
    let kept = "kept the previous TLS certificate";
    assert_eq!(s.log().matches(kept).count(), 0, "{}", s.log());
    write_by_rename(
        &crt,
        &std::fs::read_to_string(other.path().join("x.crt")).unwrap(),
    );
    write_by_rename(
        &key,
        &std::fs::read_to_string(other.path().join("y.key")).unwrap(),
    );
    wait_for(
        Duration::from_secs(30),
        "the server to report the broken pair",
        || s.log().contains(kept).then_some(()),
    );
    // A few more checks of the (unchanged, still broken) files: still one line.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.log().matches(kept).count(), 1, "{}", s.log());
    assert_eq!(https_new(&ca2, port).unwrap(), unauthorized);
    assert!(https_new(&ca1, port).is_err());
    assert_eq!(https_status(&mut old, "/v2/").unwrap(), unauthorized);
}
