//! The console in process: a real application layer on an in-memory SQLite store (no
//! engine, no controller: tasks and deployment progress are written as the controller writes
//! them), requests through the router. The real server with a browser is
//! `crates/slipway/tests/it/console.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use slipway_app::App;
use slipway_app::testing::FixedImages;
use slipway_core::access::Role;
use slipway_core::model::{
    DeploymentConfig, RolloutState, ServiceKey, ServiceKind, ServiceSpec, Task, TaskHealth,
    TaskStatus,
};
use slipway_store::secrets::SecretBox;
use slipway_store::{Batch, Store, Write};
use tower::ServiceExt;

use super::*;

struct T {
    router: Router,
    app: App,
    admin: String,
    reader: String,
}

fn spec(name: &str, image: &str) -> ServiceSpec {
    let mut container = slipway_store::testing::container(image);
    container.port = Some(8080);
    ServiceSpec {
        key: ServiceKey::new("shop", "prod", name),
        kind: ServiceKind::BackendService,
        desired_count: Some(2),
        container,
        deployment: DeploymentConfig::default(),
        placement: Default::default(),
    }
}

impl T {
    async fn new() -> T {
        let app = App::new(
            Store::memory().await.unwrap(),
            Arc::new(FixedImages),
            SecretBox::from_key(&[7u8; 32]).unwrap(),
            "test",
        );
        let admin = app
            .create_identity("ops", Role::Admin, vec![], vec![])
            .await
            .unwrap()
            .token;
        let reader = app
            .create_identity("viewer", Role::Reader, vec![], vec![])
            .await
            .unwrap()
            .token;
        let console = Console::new(
            app.clone(),
            false,
            Arc::new(slipway_api::RateLimiter::new(0)),
        );
        T {
            router: router(console),
            app,
            admin,
            reader,
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn get(
        &self,
        path: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut b = Request::get(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    /// Logs in with `token`: the session cookie (`name=value`).
    async fn login(&self, token: &str) -> String {
        let (status, headers, page) = self.get("/ui/login", None).await;
        assert_eq!(status, StatusCode::OK);
        let nonce = between(&page, "name=\"login_csrf\" value=\"", "\"");
        let login_cookie = set_cookie(&headers, "slipway_login");
        let (status, headers, _) = self
            .post(
                "/ui/login",
                Some(&login_cookie),
                &[("login_csrf", &nonce), ("token", token)],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        set_cookie(&headers, "slipway_session")
    }

    async fn deploy(&self, name: &str, image: &str) -> String {
        let r = self
            .app
            .deploy(&[spec(name, image)], false, &BTreeMap::new())
            .await
            .unwrap();
        r[0].deployment_id.clone().unwrap()
    }
}

/// The service's desired count in the store.
async fn desired(t: &T, key: &ServiceKey) -> u32 {
    t.app
        .store()
        .get_service(key)
        .await
        .unwrap()
        .unwrap()
        .desired_count
}

fn between(s: &str, from: &str, to: &str) -> String {
    let i = s
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} not in {s}"))
        + from.len();
    s[i..][..s[i..].find(to).unwrap()].to_owned()
}

/// `name=value` of a `Set-Cookie` header, checked for the console's cookie attributes.
fn set_cookie(headers: &axum::http::HeaderMap, name: &str) -> String {
    let line = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {headers:?}"));
    for attr in ["HttpOnly", "SameSite=Strict"] {
        assert!(line.contains(attr), "{line}");
    }
    line.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn pages_need_a_session_and_a_valid_token_opens_one() {
    let t = T::new().await;
    let (status, headers, _) = t.get("/ui/", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/login");
    // A wrong token opens nothing.
    let (_, headers, page) = t.get("/ui/login", None).await;
    let nonce = between(&page, "name=\"login_csrf\" value=\"", "\"");
    let lc = set_cookie(&headers, "slipway_login");
    let (status, headers, page) = t
        .post(
            "/ui/login",
            Some(&lc),
            &[("login_csrf", &nonce), ("token", "not-a-token")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not valid"), "{page}");
    assert!(
        headers
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|v| !v.to_str().unwrap().starts_with("slipway_session="))
    );
    // A login form posted without its cookie (from another site) is refused.
    let (status, _, _) = t
        .post(
            "/ui/login",
            None,
            &[("login_csrf", &nonce), ("token", &t.admin)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let cookie = t.login(&t.admin).await;
    let (status, headers, page) = t.get("/ui/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("ops (admin)"), "{page}");
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP);
    assert!(!CSP.contains("unsafe-inline") && CSP.contains("default-src 'none'"));
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    // Logging out ends the session, with its CSRF token only.
    let csrf = between(&page, "name=\"csrf\" value=\"", "\"");
    let (status, _, _) = t
        .post("/ui/logout", Some(&cookie), &[("csrf", "wrong")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = t
        .post("/ui/logout", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = t.get("/ui/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the session is gone");
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions() {
    let t = T::new().await;
    let cookie = t.login(&t.reader).await;
    assert_eq!(t.get("/ui/", Some(&cookie)).await.0, StatusCode::OK);
    t.app.revoke_identity("viewer").await.unwrap();
    let (status, headers, _) = t.get("/ui/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/login");
}

#[tokio::test]
async fn outside_values_are_escaped() {
    let t = T::new().await;
    let id = t.deploy("web", "shop/web:v1").await;
    let key = ServiceKey::new("shop", "prod", "web");
    t.app
        .store()
        .commit(Batch::new().write(Write::Event {
            key: key.clone(),
            at: slipway_store::now_ms(),
            message: "<script>alert(1)</script> & \"quotes\"".into(),
        }))
        .await
        .unwrap();
    let cookie = t.login(&t.admin).await;
    let (status, _, page) = t.get("/ui/services/shop/prod/web", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"),
        "{page}"
    );
    assert!(page.contains(&id[..12]));
}

#[tokio::test]
async fn a_task_of_several_containers_shows_each_of_them() {
    let t = T::new().await;
    t.deploy("web", "shop/web:v1").await;
    let key = ServiceKey::new("shop", "prod", "web");
    let d = t.app.store().active_deployments(&key).await.unwrap()[0].clone();
    let mut task = Task::provisioning(
        "multi1234567".into(),
        key.clone(),
        d.id.clone(),
        d.revision,
        0,
    );
    task.last_status = TaskStatus::Running;
    let st = |name: &str, health: &str| slipway_core::model::ContainerStatus {
        name: name.into(),
        id: None,
        essential: true,
        last_status: "RUNNING".into(),
        health: health.into(),
        exit_code: None,
    };
    task.containers = vec![st("web", "UNKNOWN"), st("agent", "HEALTHY")];
    t.app
        .store()
        .commit(Batch::new().write(Write::Task(task)))
        .await
        .unwrap();
    let cookie = t.login(&t.admin).await;
    let (status, _, page) = t.get("/ui/services/shop/prod/web", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"<li data-container="agent">agent RUNNING HEALTHY</li>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<li data-container="web">web RUNNING</li>"#),
        "{page}"
    );
}

/// Marks the newest deployment of `key` with `state` and writes `healthy` healthy tasks
/// of it (as the controller would).
async fn progress(t: &T, key: &ServiceKey, deployment: &str, state: RolloutState, healthy: u32) {
    let store = t.app.store();
    let mut d = store.get_deployment(deployment).await.unwrap().unwrap();
    d.state = state;
    if state.is_terminal() {
        d.timeline.finished_at = Some(d.created_at + 5_000);
    }
    d.timeline.first_healthy_at = (healthy > 0).then_some(d.created_at + 1_000);
    let mut b = Batch::new().write(Write::Deployment(d.clone()));
    for i in 0..healthy {
        let mut task = Task::provisioning(
            format!("{deployment}-t{i}"),
            key.clone(),
            d.id.clone(),
            d.revision,
            d.created_at,
        );
        task.last_status = TaskStatus::Running;
        task.health = TaskHealth::Healthy;
        task.healthy_at = Some(d.created_at + 1_000 + i64::from(i) * 500);
        b = b.write(Write::Task(task));
    }
    store.commit(b).await.unwrap();
}

#[tokio::test]
async fn only_what_is_broken_now_is_marked_broken() {
    let t = T::new().await;
    let key = |n: &str| ServiceKey::new("shop", "prod", n);
    // Healthy at its count after a failed deployment: history, not alarm.
    let d = t.deploy("recovered", "shop/r:v1").await;
    progress(&t, &key("recovered"), &d, RolloutState::Failed, 2).await;
    // A deployment under way: not broken.
    let _ = t.deploy("deploying", "shop/d:v1").await;
    // Ended, and short of its count: broken now.
    let d = t.deploy("down", "shop/x:v1").await;
    progress(&t, &key("down"), &d, RolloutState::Succeeded, 1).await;
    let cookie = t.login(&t.reader).await;
    let (_, _, page) = t.get("/ui/", Some(&cookie)).await;
    let row = |n: &str| between(&page, &format!("data-service=\"shop/prod/{n}\""), "</tr>");
    let tag = |n: &str| {
        let i = page
            .find(&format!("data-service=\"shop/prod/{n}\""))
            .unwrap();
        page[..i].rsplit("<tr").next().unwrap().to_owned()
    };
    assert!(!row("recovered").contains("broken now") && !tag("recovered").contains("broken"));
    assert!(!row("deploying").contains("broken now"));
    assert!(
        row("down").contains("broken now") && tag("down").contains("broken"),
        "{}",
        row("down")
    );
    assert!(page.contains("1 broken now"), "{page}");
}

#[tokio::test]
async fn a_reader_sees_no_actions_and_a_forged_post_is_refused() {
    let t = T::new().await;
    t.deploy("web", "shop/web:v1").await;
    let key = ServiceKey::new("shop", "prod", "web");
    let reader = t.login(&t.reader).await;
    let (_, _, page) = t.get("/ui/services/shop/prod/web", Some(&reader)).await;
    assert!(
        !page.contains("/scale\"") && !page.contains("Actions"),
        "{page}"
    );
    let csrf = between(&page, "name=\"csrf\" value=\"", "\"");
    // With its own valid CSRF token: still refused by the permission table, and audited.
    let (status, _, _) = t
        .post(
            "/ui/services/shop/prod/web/scale",
            Some(&reader),
            &[("csrf", &csrf), ("count", "5")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(desired(&t, &key).await, 2);
    let audit = t.app.store().list_audit(0, 0, None, 100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.identity == "viewer" && e.face == "console" && e.outcome == "refused"),
        "{audit:?}"
    );
    // No session at all: refused.
    let (status, _, _) = t
        .post("/ui/services/shop/prod/web/scale", None, &[("count", "5")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn scale_asks_first_needs_the_csrf_token_and_is_audited() {
    let t = T::new().await;
    t.deploy("web", "shop/web:v1").await;
    let key = ServiceKey::new("shop", "prod", "web");
    let admin = t.login(&t.admin).await;
    let (_, _, page) = t.get("/ui/services/shop/prod/web", Some(&admin)).await;
    assert!(
        page.contains("/ui/services/shop/prod/web/scale\""),
        "{page}"
    );
    let (status, _, confirm) = t
        .get("/ui/services/shop/prod/web/scale", Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        confirm.contains("Scale shop/prod/web from 2 tasks to:"),
        "{confirm}"
    );
    let csrf = between(&confirm, "name=\"csrf\" value=\"", "\"");
    let version = between(&confirm, "name=\"version\" value=\"", "\"");
    // Without the CSRF token: refused, nothing changed.
    let (status, _, _) = t
        .post(
            "/ui/services/shop/prod/web/scale",
            Some(&admin),
            &[("count", "3"), ("version", &version)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(desired(&t, &key).await, 2);
    let (status, headers, _) = t
        .post(
            "/ui/services/shop/prod/web/scale",
            Some(&admin),
            &[("csrf", &csrf), ("count", "3"), ("version", &version)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/services/shop/prod/web");
    assert_eq!(desired(&t, &key).await, 3);
    let audit = t.app.store().list_audit(0, 0, None, 100).await.unwrap();
    assert!(
        audit.iter().any(|e| e.identity == "ops"
            && e.face == "console"
            && e.operation == "POST /services/{app}/{env}/{name}/scale"
            && e.outcome == "ok"),
        "{audit:?}"
    );
    // The same confirmation again: the version it showed is gone, so nothing is overridden.
    let (status, _, page) = t
        .post(
            "/ui/services/shop/prod/web/scale",
            Some(&admin),
            &[("csrf", &csrf), ("count", "1"), ("version", &version)],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{page}");
    assert_eq!(desired(&t, &key).await, 3);
}

#[tokio::test]
async fn a_deployment_page_draws_its_timeline_with_the_records_numbers() {
    let t = T::new().await;
    let key = ServiceKey::new("shop", "prod", "web");
    let d1 = t.deploy("web", "shop/web:v1").await;
    progress(&t, &key, &d1, RolloutState::Succeeded, 2).await;
    let d2 = t.deploy("web", "shop/web:v2").await;
    progress(&t, &key, &d2, RolloutState::Succeeded, 2).await;
    let mut d = t.app.store().get_deployment(&d2).await.unwrap().unwrap();
    // The old version's tasks were healthy well before the new deployment started.
    let mut b = Batch::new();
    for mut task in t.app.store().list_tasks(&key, true).await.unwrap() {
        if task.deployment_id == d1 {
            task.healthy_at = Some(d.created_at - 60_000);
            b = b.write(Write::Task(task));
        }
    }
    t.app.store().commit(b).await.unwrap();
    d.timeline.old_deregistered_at = Some(d.created_at + 3_000);
    d.timeline.old_gone_at = Some(d.created_at + 4_000);
    t.app
        .store()
        .commit(Batch::new().write(Write::Deployment(d.clone())))
        .await
        .unwrap();
    let cookie = t.login(&t.reader).await;
    let (status, _, page) = t.get(&format!("/ui/deployments/{d2}"), Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<svg"), "{page}");
    // The overlap window is the record's: first healthy to old deregistered.
    let from = d.timeline.first_healthy_at.unwrap();
    let to = d.timeline.old_deregistered_at.unwrap();
    assert!(
        page.contains(&format!("data-from=\"{from}\" data-to=\"{to}\"")),
        "{page}"
    );
    for (field, at) in [
        ("first_healthy_at", from),
        ("old_deregistered_at", to),
        ("old_gone_at", d.created_at + 4_000),
        ("finished_at", d.timeline.finished_at.unwrap()),
    ] {
        assert!(
            page.contains(&format!("data-field=\"{field}\" data-at=\"{at}\"")),
            "{field} {page}"
        );
    }
    // New version: 0, then 1, then 2 healthy; the old one: 2 (its tasks never stopped here).
    let new_points = between(&page, "class=\"new\" d=\"", "</path>");
    assert!(
        new_points.contains(&format!(
            "data-points=\"{}:0 {}:1 {}:2\"",
            d.created_at,
            from,
            from + 500
        )),
        "{new_points}"
    );
    let old_points = between(&page, "class=\"old\" d=\"", "</path>");
    assert!(
        old_points.contains(&format!("data-points=\"{}:2\"", d.created_at)),
        "{old_points}"
    );
}

#[tokio::test]
async fn the_overview_pages_and_filters_on_the_server() {
    let t = T::new().await;
    let specs: Vec<ServiceSpec> = (0..(PAGE + 5))
        .map(|i| spec(&format!("s{i:03}"), "shop/s:v1"))
        .collect();
    t.app.deploy(&specs, false, &BTreeMap::new()).await.unwrap();
    let cookie = t.login(&t.reader).await;
    let (_, _, page) = t.get("/ui/", Some(&cookie)).await;
    assert_eq!(page.matches("data-service=").count(), PAGE);
    assert!(page.contains("Page 1 of 2"), "{page}");
    let (_, _, page) = t.get("/ui/?page=2", Some(&cookie)).await;
    assert_eq!(page.matches("data-service=").count(), 5);
    let (_, _, page) = t.get("/ui/?q=s00", Some(&cookie)).await;
    assert_eq!(page.matches("data-service=").count(), 10, "s000..s009");
}

const PAGE: usize = crate::pages::PAGE_SIZE;

#[tokio::test]
async fn two_hundred_services_render_from_the_stores_views_within_the_size_budget() {
    let f = crate::fixture::build(200).await;
    let cookie = crate::fixture::login(&f).await;
    let req = Request::get("/ui/")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let started = std::time::Instant::now();
    let resp = f.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    let page = String::from_utf8_lossy(&body);
    // Measured for the log; the time budget is bench/console.sh's to judge.
    eprintln!(
        "overview of 200 services x 5 tasks: {:.2} ms, {} bytes",
        started.elapsed().as_secs_f64() * 1000.0,
        body.len()
    );
    assert_eq!(page.matches("data-service=").count(), 200, "one page");
    assert!(body.len() <= 150 * 1024, "{} bytes", body.len());
    assert_eq!(
        page.matches("<td class=\"num healthy\">5</td>").count(),
        200,
        "every service shows its 5 healthy tasks"
    );
}

/// Reads a live stream until `until` holds for the text so far (or panics after 10 s).
async fn read_stream(body: Body, until: impl Fn(&str) -> bool) -> String {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !until(&text) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("stream so far: {text}"))
            .expect("the stream goes on")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

async fn event(t: &T, key: &ServiceKey, message: &str) -> i64 {
    t.app
        .store()
        .commit(Batch::new().write(Write::Event {
            key: key.clone(),
            at: slipway_store::now_ms(),
            message: message.into(),
        }))
        .await
        .unwrap();
    t.app.store().list_events(key, 1).await.unwrap()[0].id
}

#[tokio::test]
async fn the_live_stream_sends_new_events_and_replays_what_a_reconnecting_client_missed() {
    let t = T::new().await;
    t.deploy("web", "shop/web:v1").await;
    let key = ServiceKey::new("shop", "prod", "web");
    let cookie = t.login(&t.reader).await;
    let live = |last: Option<i64>| {
        let mut b = Request::get("/ui/live?service=shop/prod/web").header(header::COOKIE, &cookie);
        if let Some(id) = last {
            b = b.header("last-event-id", id.to_string());
        }
        t.router.clone().oneshot(b.body(Body::empty()).unwrap())
    };
    // Without a session: no stream.
    let resp = t
        .router
        .clone()
        .oneshot(Request::get("/ui/live").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = live(None).await.unwrap();
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let body = resp.into_body();
    let first = event(&t, &key, "one <b>").await;
    let text = read_stream(body, |s| {
        s.contains(&format!("id: {first}")) && s.contains("event: change")
    })
    .await;
    assert!(text.contains("event: change"), "{text}");
    assert!(text.contains("event: service-event"), "{text}");
    assert!(
        text.contains("one <b>"),
        "JSON data, escaped by the page's script: {text}"
    );

    // A client that saw `first` and came back after three more events gets exactly those.
    let ids = [
        event(&t, &key, "two").await,
        event(&t, &key, "three").await,
        event(&t, &key, "four").await,
    ];
    let body = live(Some(first)).await.unwrap().into_body();
    let text = read_stream(body, |s| s.contains("event: change")).await;
    let got: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(got, ids, "{text}");
    // Another service's change is not this stream's business; this one's is.
    let body = live(Some(ids[2])).await.unwrap().into_body();
    let other = ServiceKey::new("shop", "prod", "other");
    let t2 = &t;
    let (text, _) = tokio::join!(
        read_stream(body, |s| s
            .find("five")
            .is_some_and(|i| s[i..].contains("event: change"))),
        async {
            event(t2, &other, "elsewhere").await;
            event(t2, &key, "five").await;
        }
    );
    assert!(
        !text.contains("elsewhere") && text.contains("five"),
        "{text}"
    );
}

#[tokio::test]
async fn rollback_and_restart_from_the_console_start_their_deployments() {
    let t = T::new().await;
    let key = ServiceKey::new("shop", "prod", "web");
    let d1 = t.deploy("web", "shop/web:v1").await;
    progress(&t, &key, &d1, RolloutState::Succeeded, 2).await;
    let d2 = t.deploy("web", "shop/web:v2").await;
    progress(&t, &key, &d2, RolloutState::Succeeded, 2).await;
    let admin = t.login(&t.admin).await;
    let confirm_then_post = |action: &'static str| {
        let (t, admin) = (&t, admin.clone());
        async move {
            let path = format!("/ui/services/shop/prod/web/{action}");
            let (status, _, page) = t.get(&path, Some(&admin)).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let csrf = between(&page, "name=\"csrf\" value=\"", "\"");
            let version = between(&page, "name=\"version\" value=\"", "\"");
            let (status, _, page) = t
                .post(
                    &path,
                    Some(&admin),
                    &[("csrf", &csrf), ("version", &version)],
                )
                .await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{action}: {page}");
        }
    };
    confirm_then_post("rollback").await;
    let svc = t.app.store().get_service(&key).await.unwrap().unwrap();
    assert_eq!(svc.revision, 1, "back on the first revision");
    let newest = t
        .app
        .store()
        .list_deployments(&key, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (newest.revision, newest.state),
        (1, RolloutState::InProgress)
    );
    progress(&t, &key, &newest.id, RolloutState::Succeeded, 2).await;
    confirm_then_post("restart").await;
    let restarted = t
        .app
        .store()
        .list_deployments(&key, 1)
        .await
        .unwrap()
        .remove(0);
    assert_ne!(restarted.id, newest.id, "a new deployment");
    assert_eq!(restarted.revision, 1, "of the same revision");
    // An action that does not exist is not a page.
    let (status, _, _) = t
        .get("/ui/services/shop/prod/web/explode", Some(&admin))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hosts_show_their_state_and_an_admin_drains_one_after_confirming() {
    let t = T::new().await;
    t.app
        .register_local_host(slipway_app::HostHello {
            host: "h-local".into(),
            engine: "engine-1".into(),
            name: "box<1>".into(),
            cpu: 2048,
            memory: 4096,
            platform: "linux/amd64".into(),
            attributes: Default::default(),
            address: "127.0.0.1".into(),
        })
        .await
        .unwrap();
    let reader = t.login(&t.reader).await;
    let (status, _, page) = t.get("/ui/hosts", Some(&reader)).await;
    assert_eq!(status, StatusCode::OK);
    let id = between(&page, "data-host=\"", "\"");
    assert!(
        page.contains(&format!("data-host=\"{id}\" data-state=\"ACTIVE\"")),
        "{page}"
    );
    assert!(page.contains("box&lt;1&gt;"), "{page}");
    assert!(!page.contains("Drain…"), "a reader gets no action: {page}");
    let admin = t.login(&t.admin).await;
    let (_, _, page) = t.get("/ui/hosts", Some(&admin)).await;
    assert!(page.contains(&format!("/ui/hosts/{id}/drain")), "{page}");
    let (status, _, confirm) = t.get(&format!("/ui/hosts/{id}/drain"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = between(&confirm, "name=\"csrf\" value=\"", "\"");
    let (status, _, _) = t
        .post(&format!("/ui/hosts/{id}/drain"), Some(&admin), &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no drain");
    let (status, headers, _) = t
        .post(
            &format!("/ui/hosts/{id}/drain"),
            Some(&admin),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/hosts");
    let (_, _, page) = t.get("/ui/hosts", Some(&reader)).await;
    assert!(
        page.contains(&format!("data-host=\"{id}\" data-state=\"DRAINING\"")),
        "{page}"
    );
    let audit = t.app.store().list_audit(0, 0, None, 100).await.unwrap();
    assert!(
        audit.iter().any(|e| e.face == "console"
            && e.operation == "POST /hosts/{id}/drain"
            && e.outcome == "ok"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn behind_tls_the_session_cookie_is_secure() {
    let t = T::new().await;
    let tls = router(Console::new(
        t.app.clone(),
        true,
        Arc::new(slipway_api::RateLimiter::new(0)),
    ));
    let resp = tls
        .clone()
        .oneshot(Request::get("/ui/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let login = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(login.ends_with("; Secure"), "{login}");
    let nonce = login
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("login_csrf", &nonce)
        .append_pair("token", &t.admin)
        .finish();
    let resp = tls
        .oneshot(
            Request::post("/ui/login")
                .header(header::COOKIE, format!("slipway_login={nonce}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("slipway_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(session.contains(attr), "{session}");
    }
    // Without TLS (the other tests' console), no Secure flag: the browser would drop it.
    let (_, headers, _) = t.get("/ui/login", None).await;
    assert!(
        !headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
}
