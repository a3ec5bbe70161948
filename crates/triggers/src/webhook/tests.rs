use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

const SECRET: &[u8] = b"It's a Secret to Everybody";
const BODY: &[u8] = b"Hello, World!";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn sig() -> String {
    hex::encode(hmac_sha256(SECRET, BODY))
}

/// GitHub's documented example: the secret, payload and signature from "Validating webhook
/// deliveries".
#[test]
fn hmac_matches_githubs_documented_example() {
    assert_eq!(
        sig(),
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn github_signatures_good_bad_missing_and_wrong_length() {
    let good = headers(&[
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "d-1"),
        ("X-Hub-Signature-256", &format!("sha256={}", sig())),
    ]);
    let d = identify(&good, BODY).unwrap();
    assert_eq!(d.provider, Provider::GitHub);
    assert_eq!(d.event, Event::Push);
    assert_eq!(d.id, "d-1");
    assert_eq!(verify(&d, SECRET, BODY), Ok(()));
    // Another body, another secret.
    assert_eq!(
        verify(&d, SECRET, b"Hello, World?"),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify(&d, b"another", BODY),
        Err(WebhookError::BadSignature)
    );
    // Missing.
    let d = identify(&headers(&[("X-GitHub-Event", "push")]), BODY).unwrap();
    assert_eq!(
        verify(&d, SECRET, BODY),
        Err(WebhookError::Unsigned("X-Hub-Signature-256"))
    );
    // Without `sha256=`, not hex, too short, too long: bad, never a panic.
    for v in [
        sig(),
        format!("sha256={}", "zz".repeat(32)),
        format!("sha256={}", &sig()[..62]),
        format!("sha256={}00", sig()),
        "sha256=".to_owned(),
        format!("sha1={}", sig()),
    ] {
        let d = identify(
            &headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &v)]),
            BODY,
        )
        .unwrap();
        assert_eq!(
            verify(&d, SECRET, BODY),
            Err(WebhookError::BadSignature),
            "{v}"
        );
    }
}

/// Every byte counts, the first as the last (one comparison over the whole MAC, not a
/// prefix match that stops early).
#[test]
fn a_signature_differing_in_any_one_byte_is_refused() {
    let good = hmac_sha256(SECRET, BODY);
    for i in 0..good.len() {
        let mut bad = good;
        bad[i] ^= 0x01;
        let d = Delivery {
            provider: Provider::GitHub,
            event: Event::Push,
            id: "x".into(),
            signature: Signature::Hmac(bad.to_vec()),
        };
        assert_eq!(verify(&d, SECRET, BODY), Err(WebhookError::BadSignature));
    }
    assert!(ct_equal(&good, &good));
    assert!(!ct_equal(&good, &good[..31]));
}

#[test]
fn gitea_and_forgejo_use_their_own_headers_first() {
    // Gitea also sends GitHub's headers; its own win.
    let h = headers(&[
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "gh-id"),
        ("X-Gitea-Event", "push"),
        ("X-Gitea-Delivery", "gitea-id"),
        ("X-Gitea-Signature", &sig()),
    ]);
    let d = identify(&h, BODY).unwrap();
    assert_eq!((d.provider, d.id.as_str()), (Provider::Gitea, "gitea-id"));
    assert_eq!(verify(&d, SECRET, BODY), Ok(()));
    let h = headers(&[
        ("X-Gitea-Event", "push"),
        ("X-Gitea-Signature", &format!("sha256={}", sig())),
    ]);
    assert_eq!(
        verify(&identify(&h, BODY).unwrap(), SECRET, BODY),
        Err(WebhookError::BadSignature)
    );
    let h = headers(&[("X-Gitea-Event", "push")]);
    assert_eq!(
        verify(&identify(&h, BODY).unwrap(), SECRET, BODY),
        Err(WebhookError::Unsigned("X-Gitea-Signature"))
    );

    let h = headers(&[
        ("X-Forgejo-Event", "push"),
        ("X-Forgejo-Delivery", "fj-id"),
        ("X-Forgejo-Signature", &sig()),
        ("X-Gitea-Event", "push"),
    ]);
    let d = identify(&h, BODY).unwrap();
    assert_eq!((d.provider, d.id.as_str()), (Provider::Forgejo, "fj-id"));
    assert_eq!(verify(&d, SECRET, BODY), Ok(()));
    let mut wrong = sig();
    wrong.replace_range(0..2, "00");
    let h = headers(&[("X-Forgejo-Event", "push"), ("X-Forgejo-Signature", &wrong)]);
    assert_eq!(
        verify(&identify(&h, BODY).unwrap(), SECRET, BODY),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn gitlab_tokens_and_delivery_ids() {
    let secret = std::str::from_utf8(SECRET).unwrap();
    let h = headers(&[
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Event-UUID", "ev-1"),
        ("X-Gitlab-Webhook-UUID", "hook-1"),
        ("X-Gitlab-Token", secret),
    ]);
    let d = identify(&h, BODY).unwrap();
    assert_eq!(
        (d.provider, d.event.clone()),
        (Provider::GitLab, Event::Push)
    );
    assert_eq!(d.id, "ev-1");
    assert_eq!(verify(&d, SECRET, BODY), Ok(()));
    // A token of another length, a prefix, nothing.
    for t in ["It's a Secret", "It's a Secret to Everybody!", "x"] {
        let h = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", t)]);
        assert_eq!(
            verify(&identify(&h, BODY).unwrap(), SECRET, BODY),
            Err(WebhookError::BadSignature),
            "{t}"
        );
    }
    let h = headers(&[("X-Gitlab-Event", "Tag Push Hook")]);
    let d = identify(&h, BODY).unwrap();
    assert_eq!(d.event, Event::Push);
    assert_eq!(
        verify(&d, SECRET, BODY),
        Err(WebhookError::Unsigned("X-Gitlab-Token"))
    );
    // The hook's UUID alone names the hook, not the delivery: the body's digest joins it.
    let h = headers(&[
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Webhook-UUID", "hook-1"),
    ]);
    let a = identify(&h, b"one").unwrap().id;
    let b = identify(&h, b"two").unwrap().id;
    assert!(a.starts_with("hook-1:") && a != b);
    assert_eq!(a, identify(&h, b"one").unwrap().id);
}

#[test]
fn events_and_unknown_senders() {
    let d = identify(&headers(&[("X-GitHub-Event", "ping")]), BODY).unwrap();
    assert_eq!(d.event, Event::Ping);
    // No delivery id: the body's digest.
    assert!(d.id.starts_with("body-sha256:"));
    let d = identify(&headers(&[("X-GitHub-Event", "pull_request")]), BODY).unwrap();
    assert_eq!(d.event, Event::Other("pull_request".into()));
    let d = identify(&headers(&[("X-Gitlab-Event", "Merge Request Hook")]), BODY).unwrap();
    assert_eq!(d.event, Event::Other("Merge Request Hook".into()));
    assert_eq!(
        identify(&headers(&[("X-Other", "push")]), BODY),
        Err(WebhookError::UnknownProvider)
    );
    // The Debug form of a token never shows it.
    let d = identify(
        &headers(&[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", "hunter2"),
        ]),
        BODY,
    )
    .unwrap();
    assert!(!format!("{d:?}").contains("hunter2"));
}

const A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const B: &str = "0000000000000000000000000000000000000000";

#[test]
fn github_and_gitea_payloads() {
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "before": B,
        "after": A,
        "repository": {"clone_url": "https://github.com/o/r.git", "full_name": "o/r"},
        "pusher": {"name": "octocat", "email": "o@example.com"},
        "commits": [
            {"added": ["src/a.rs"], "modified": ["README.md"], "removed": []},
            {"added": [], "modified": ["src/a.rs"], "removed": ["old.txt"]}
        ]
    });
    let p = parse_push(body.to_string().as_bytes()).unwrap();
    assert_eq!(p.git_ref, "refs/heads/main");
    assert_eq!((p.before.as_str(), p.after.as_str()), (B, A));
    assert_eq!(p.repository.as_deref(), Some("https://github.com/o/r.git"));
    assert_eq!(p.pusher, "octocat");
    assert_eq!(p.paths, vec!["README.md", "old.txt", "src/a.rs"]);
    assert!(!p.truncated);

    // Gitea: pusher.login, total_commits beyond the listed ones.
    let body = serde_json::json!({
        "ref": "refs/tags/v1.4.0-prod",
        "before": A, "after": A.to_uppercase(),
        "total_commits": 30,
        "repository": {"clone_url": "http://gitea/o/r.git"},
        "pusher": {"login": "gitea-user", "username": "gitea-user"},
        "commits": [{"added": ["x"], "modified": [], "removed": []}]
    });
    let p = parse_push(body.to_string().as_bytes()).unwrap();
    assert_eq!(p.after, A);
    assert_eq!(p.pusher, "gitea-user");
    assert!(p.truncated);
}

#[test]
fn gitlab_payloads() {
    let body = serde_json::json!({
        "object_kind": "push",
        "ref": "refs/heads/feature/x",
        "before": A, "after": A,
        "user_username": "jsmith",
        "project": {"git_http_url": "http://gitlab/o/r.git"},
        "repository": {"git_http_url": "http://gitlab/o/r.git", "name": "r"},
        "total_commits_count": 1,
        "commits": [{"added": ["a"], "modified": ["b"], "removed": ["c"]}]
    });
    let p = parse_push(body.to_string().as_bytes()).unwrap();
    assert_eq!(p.repository.as_deref(), Some("http://gitlab/o/r.git"));
    assert_eq!(p.pusher, "jsmith");
    assert_eq!(p.paths, vec!["a", "b", "c"]);
    assert!(!p.truncated);
}

#[test]
fn malformed_payloads_are_refused() {
    for body in [
        "not json".to_owned(),
        serde_json::json!({"before": A, "after": A}).to_string(),
        serde_json::json!({"ref": "main", "before": A, "after": A}).to_string(),
        serde_json::json!({"ref": "refs/heads/main", "before": "x", "after": A}).to_string(),
        serde_json::json!({"ref": "refs/heads/main", "before": A, "after": "; rm -rf /"})
            .to_string(),
    ] {
        assert!(
            matches!(parse_push(body.as_bytes()), Err(WebhookError::Malformed(_))),
            "{body}"
        );
    }
}

#[test]
fn paths_are_capped() {
    let many: Vec<String> = (0..slipway_store::MAX_PUSH_PATHS + 5)
        .map(|i| format!("f{i:05}"))
        .collect();
    let body = serde_json::json!({
        "ref": "refs/heads/main", "before": A, "after": A,
        "commits": [{"added": many}]
    });
    let p = parse_push(body.to_string().as_bytes()).unwrap();
    assert_eq!(p.paths.len(), slipway_store::MAX_PUSH_PATHS);
    assert!(p.truncated);
    assert_eq!(p.pusher, "unknown");
}
