//! The trigger routes in process, on an in-memory store: webhook deliveries (no secret, bad
//! and good signatures, ping, a repeated delivery) and the git remote's gate (no token, a
//! reader's push, a missing repository, an allowed push's ref advertisement through the
//! real `git http-backend`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use slipway_app::App;
use slipway_core::access::Role;
use slipway_store::Store;
use slipway_store::secrets::SecretBox;
use slipway_triggers::{Triggers, router, webhook::hmac_sha256};
use tower::ServiceExt;

async fn setup() -> (App, axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(
        Store::memory().await.unwrap(),
        Arc::new(slipway_app::testing::FixedImages),
        SecretBox::from_key(&[7u8; 32]).unwrap(),
        "test",
    );
    let r = router(Triggers::new(app.clone(), dir.path().join("git")));
    (app, r, dir)
}

async fn send(r: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = r.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn delivery(id: &str, event: &str, sig: Option<String>, body: &str) -> Request<Body> {
    let mut b = Request::post("/hooks/shop")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", id)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(s) = sig {
        b = b.header("X-Hub-Signature-256", s);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

const PUSH: &str = r#"{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","repository":{"clone_url":"https://example.com/o/r.git"},"commits":[{"added":["a"],"modified":[],"removed":[]}]}"#;

#[tokio::test]
async fn webhook_deliveries() {
    let (app, r, _dir) = setup().await;
    let sig = |secret: &[u8], body: &str| {
        Some(format!(
            "sha256={}",
            hex::encode(hmac_sha256(secret, body.as_bytes()))
        ))
    };
    // No secret yet.
    let (st, _, body) = send(&r, delivery("d1", "push", sig(b"s", PUSH), PUSH)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("shop/webhook"), "{body}");
    app.set_secret("shop/webhook", "s", None).await.unwrap();
    // Bad, missing.
    let (st, _, _) = send(&r, delivery("d1", "push", sig(b"t", PUSH), PUSH)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = send(&r, delivery("d1", "push", None, PUSH)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(app.list_pushes("shop", 10).await.unwrap().is_empty());
    // Ping, another event.
    let (st, _, _) = send(&r, delivery("p", "ping", sig(b"s", "{}"), "{}")).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = send(&r, delivery("i", "issues", sig(b"s", "{}"), "{}")).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // Good, then the same delivery again.
    let (st, _, body) = send(&r, delivery("d1", "push", sig(b"s", PUSH), PUSH)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains(r#""recorded":true"#), "{body}");
    let (st, _, body) = send(&r, delivery("d1", "push", sig(b"s", PUSH), PUSH)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains(r#""recorded":false"#), "{body}");
    let listed = app.list_pushes("shop", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].source, "github");
    assert_eq!(listed[0].paths, vec!["a"]);
    // A signed push whose payload is not a push: 400, nothing.
    let bad = r#"{"ref":"main"}"#;
    let (st, _, _) = send(&r, delivery("d2", "push", sig(b"s", bad), bad)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(app.list_pushes("shop", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_git_remotes_gate() {
    let (app, r, dir) = setup().await;
    let reader = app
        .create_identity("viewer", Role::Reader, vec![], vec![])
        .await
        .unwrap()
        .token;
    let deployer = app
        .create_identity("ci", Role::Deployer, vec!["shop".into()], vec![])
        .await
        .unwrap()
        .token;
    let refs = |service: &str, token: Option<&str>| {
        let mut b = Request::get(format!("/git/shop.git/info/refs?service={service}"));
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(Body::empty()).unwrap()
    };
    let (st, h, _) = send(&r, refs("git-receive-pack", None)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(
        h[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let (st, _, _) = send(&r, refs("git-receive-pack", Some("slw_nope"))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, body) = send(&r, refs("git-receive-pack", Some(&reader))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(!dir.path().join("git/shop.git").exists());
    let (st, _, _) = send(&r, refs("git-upload-pack", Some(&reader))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The deployer's advertisement creates the repository; git http-backend answers it.
    let (st, h, body) = send(&r, refs("git-receive-pack", Some(&deployer))).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        h[header::CONTENT_TYPE],
        "application/x-git-receive-pack-advertisement"
    );
    assert!(body.starts_with("001f# service=git-receive-pack"), "{body}");
    assert!(dir.path().join("git/shop.git/HEAD").exists());
    // Now the reader fetches.
    let (st, h, _) = send(&r, refs("git-upload-pack", Some(&reader))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        h[header::CONTENT_TYPE],
        "application/x-git-upload-pack-advertisement"
    );
    // Not a route of the smart protocol.
    let req = Request::get("/git/shop.git/objects/info/packs")
        .header(header::AUTHORIZATION, format!("Bearer {reader}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::NOT_FOUND);
}
