//! Pipelines' triggers (#18 item 3): the built-in git remote (`/git/APP.git`, the real `git`
//! client over smart HTTP with the API's tokens) and push webhooks (`POST /hooks/APP`), both
//! recording push events listed by `GET /api/v1/apps/APP/pushes`.

use std::path::Path;
use std::process::{Command, Output};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::support::{Server, api_call, app_name, docker};

const ZERO: &str = "0000000000000000000000000000000000000000";

fn token(s: &Server, name: &str, role: &str) -> String {
    let v = s
        .cli(&["--json", "token", "create", name, "--role", role])
        .ok()
        .json();
    v["token"].as_str().unwrap().to_owned()
}

/// `git` with no user configuration, no prompts and a fixed author.
fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap()
}

#[track_caller]
fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn pushes(s: &Server, app: &str) -> Vec<Value> {
    let (st, body) = api_call(s, "GET", &format!("/apps/{app}/pushes"), None, &[]);
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The remote's URL with `token` as the password of any user.
fn url_with(s: &Server, app: &str, token: &str) -> String {
    let host = s.url.trim_start_matches("http://");
    format!("http://git:{token}@{host}/git/{app}.git")
}

fn paths(v: &Value) -> Vec<&str> {
    v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect()
}

/// A repository with two commits pushed with a deployer's token: one push event with the
/// right sha and both commits' paths; a clone gets that sha; a bad token, no token and a
/// reader's token are refused and record nothing; a second push records the diff.
#[test]
fn git_push_records_push_events_and_clones_back() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("git");
    let deployer = token(&s, "ci", "deployer");
    let reader = token(&s, "viewer", "reader");
    let work = s.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git_ok(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git_ok(&work, &["add", "-A"]);
    git_ok(&work, &["commit", "-qm", "one"]);
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("src/main.rs"), "fn main() {}\n").unwrap();
    git_ok(&work, &["add", "-A"]);
    git_ok(&work, &["commit", "-qm", "two"]);
    let head = git_ok(&work, &["rev-parse", "HEAD"]);
    let plain = format!("{}/git/{app}.git", s.url);

    // Refused: no token, a bad token, a reader's token. Nothing recorded, no repository.
    for url in [
        plain.clone(),
        url_with(&s, &app, "slw_not-a-token"),
        url_with(&s, &app, &reader),
    ] {
        let out = git(&work, &["push", &url, "main"]);
        assert!(!out.status.success(), "{url}");
    }
    let out = git(&work, &["push", &url_with(&s, &app, &reader), "main"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pushes(&s, &app).is_empty());
    assert!(!s.data_dir().join(format!("git/{app}.git")).exists());

    // The deployer pushes with a bearer header.
    let header = format!("http.extraHeader=Authorization: Bearer {deployer}");
    git_ok(&work, &["-c", &header, "push", "-q", &plain, "main"]);
    let listed = pushes(&s, &app);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let p = &listed[0];
    assert_eq!(p["ref"], "refs/heads/main");
    assert_eq!(p["before"], ZERO);
    assert_eq!(p["after"], head.as_str());
    assert_eq!(p["source"], "git");
    assert_eq!(p["pusher"], "ci");
    assert_eq!(paths(p), vec!["README.md", "src/main.rs"]);

    // A reader clones (credentials in the URL: git sends them after the 401).
    let clone = s.dir.path().join("clone");
    git_ok(
        s.dir.path(),
        &[
            "clone",
            "-q",
            &url_with(&s, &app, &reader),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(git_ok(&clone, &["rev-parse", "HEAD"]), head);

    // A second push: one more event, with the diff's paths; a reader still cannot push.
    std::fs::write(work.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    git_ok(&work, &["add", "-A"]);
    git_ok(&work, &["commit", "-qm", "three"]);
    let next = git_ok(&work, &["rev-parse", "HEAD"]);
    let out = git(&work, &["push", &url_with(&s, &app, &reader), "main"]);
    assert!(!out.status.success());
    assert_eq!(pushes(&s, &app).len(), 1);
    git_ok(
        &work,
        &["push", "-q", &url_with(&s, &app, &deployer), "main"],
    );
    let listed = pushes(&s, &app);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["before"], head.as_str());
    assert_eq!(listed[0]["after"], next.as_str());
    assert_eq!(paths(&listed[0]), vec!["src/lib.rs"]);
    // The clone fetches the new commit.
    git_ok(&clone, &["pull", "-q", "--ff-only"]);
    assert_eq!(git_ok(&clone, &["rev-parse", "HEAD"]), next);

    // A deployer scoped to another app cannot push here; one scoped to this app can, and
    // a pack beyond git's post buffer (sent chunked, without Content-Length) goes through.
    let other = s
        .cli(&[
            "--json",
            "token",
            "create",
            "other-ci",
            "--role",
            "deployer",
            "--app",
            "elsewhere",
        ])
        .ok()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = s
        .cli(&[
            "--json", "token", "create", "own-ci", "--role", "deployer", "--app", &app,
        ])
        .ok()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(work.join("big.bin"), big).unwrap();
    git_ok(&work, &["add", "-A"]);
    git_ok(&work, &["commit", "-qm", "four"]);
    let out = git(&work, &["push", &url_with(&s, &app, &other), "main"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pushes(&s, &app).len(), 2);
    git_ok(&work, &["push", "-q", &url_with(&s, &app, &mine), "main"]);
    let listed = pushes(&s, &app);
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["pusher"], "own-ci");
    assert_eq!(
        listed[0]["after"],
        git_ok(&work, &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(paths(&listed[0]), vec!["big.bin"]);

    // Pushes are audited, refusals too.
    let (st, body) = api_call(&s, "GET", "/audit", None, &[]);
    assert_eq!(st, 200, "{body}");
    let audit: Vec<Value> = serde_json::from_str(&body).unwrap();
    let git_entries = |who: &str, outcome: &str| {
        audit
            .iter()
            .filter(|e| e["face"] == "git" && e["identity"] == who && e["outcome"] == outcome)
            .count()
    };
    assert!(git_entries("ci", "ok") >= 1, "{audit:?}");
    assert!(git_entries("viewer", "refused") >= 1, "{audit:?}");
    assert!(git_entries("other-ci", "refused") >= 1, "{audit:?}");
}

/// A POST to `/hooks/{app}` with headers: `(status, body)`.
fn hook(s: &Server, app: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = s.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "POST /hooks/{app} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    conn.read_to_string(&mut buf).unwrap();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn sign(secret: &str, body: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// GitHub-style deliveries: a valid signature records a push event (clone URL, ref,
/// before/after, the commits' paths); a bad or missing signature → 401 and nothing; the same
/// delivery id twice → one event; `ping` → 200; GitLab's token works too.
#[test]
fn webhooks_are_verified_and_recorded_once() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("hook");
    let secret = "webhook-s3cret";
    let body = json!({
        "ref": "refs/heads/main",
        "before": ZERO,
        "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "repository": {"clone_url": "https://git.example.com/o/r.git"},
        "pusher": {"name": "octocat"},
        "commits": [{"added": ["src/a.rs"], "modified": ["README.md"], "removed": []}]
    })
    .to_string();

    // No secret set yet: refused.
    let signed = sign(secret, &body);
    let gh = |delivery: &'static str, sig: &str| -> Vec<(&'static str, String)> {
        vec![
            ("X-GitHub-Event", "push".to_owned()),
            ("X-GitHub-Delivery", delivery.to_owned()),
            ("X-Hub-Signature-256", sig.to_owned()),
        ]
    };
    let send = |h: &[(&str, String)], b: &str| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hook(&s, &app, &h, b)
    };
    let (st, _) = send(&gh("d-1", &signed), &body);
    assert_eq!(st, 401);

    let (st, b) = api_call(
        &s,
        "PUT",
        &format!("/secrets/{app}/webhook"),
        Some(&json!({"value": secret})),
        &[],
    );
    assert_eq!(st, 200, "{b}");

    // Bad, missing, for another body: 401, nothing recorded.
    let (st, _) = send(&gh("d-1", &sign("wrong", &body)), &body);
    assert_eq!(st, 401);
    let (st, _) = send(&[("X-GitHub-Event", "push".to_owned())], &body);
    assert_eq!(st, 401);
    let (st, _) = send(&gh("d-1", &signed), &body.replace("octocat", "mallory"));
    assert_eq!(st, 401);
    assert!(pushes(&s, &app).is_empty());

    // A ping.
    let ping = r#"{"zen":"Keep it logically awesome."}"#;
    let (st, v) = send(
        &[
            ("X-GitHub-Event", "ping".to_owned()),
            ("X-Hub-Signature-256", sign(secret, ping)),
        ],
        ping,
    );
    assert_eq!(st, 200, "{v}");

    // Valid: recorded; the same delivery again: answered, not recorded twice.
    let (st, v) = send(&gh("d-1", &signed), &body);
    assert_eq!((st, &v["recorded"]), (200, &json!(true)), "{v}");
    let (st, v) = send(&gh("d-1", &signed), &body);
    assert_eq!((st, &v["recorded"]), (200, &json!(false)), "{v}");
    let listed = pushes(&s, &app);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let p = &listed[0];
    assert_eq!(p["source"], "github");
    assert_eq!(p["delivery"], "d-1");
    assert_eq!(p["ref"], "refs/heads/main");
    assert_eq!(p["before"], ZERO);
    assert_eq!(p["after"], "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(p["repository"], "https://git.example.com/o/r.git");
    assert_eq!(p["pusher"], "octocat");
    assert_eq!(paths(p), vec!["README.md", "src/a.rs"]);

    // GitLab: the token itself.
    let gl = body.replace("refs/heads/main", "refs/tags/v1.4.0-prod");
    let (st, _) = send(
        &[
            ("X-Gitlab-Event", "Tag Push Hook".to_owned()),
            ("X-Gitlab-Event-UUID", "gl-1".to_owned()),
            ("X-Gitlab-Token", "nope".to_owned()),
        ],
        &gl,
    );
    assert_eq!(st, 401);
    let (st, v) = send(
        &[
            ("X-Gitlab-Event", "Tag Push Hook".to_owned()),
            ("X-Gitlab-Event-UUID", "gl-1".to_owned()),
            ("X-Gitlab-Token", secret.to_owned()),
        ],
        &gl,
    );
    assert_eq!((st, &v["recorded"]), (200, &json!(true)), "{v}");
    let listed = pushes(&s, &app);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["ref"], "refs/tags/v1.4.0-prod");
    assert_eq!(listed[0]["source"], "gitlab");
}
