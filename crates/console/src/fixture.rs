//! A console on a made-up cluster (feature `fixture`): `services` services in 10-service
//! app environments, each with 5 healthy tasks of a finished deployment that replaced an
//! older one, on an in-memory store. What the render tests and `bench/console.sh` measure.

use std::collections::BTreeMap;
use std::sync::Arc;

use slipway_app::App;
use slipway_app::testing::FixedImages;
use slipway_core::access::Role;
use slipway_core::model::{
    DeploymentConfig, RolloutState, ServiceKey, ServiceKind, ServiceSpec, Task, TaskHealth,
    TaskStatus,
};
use slipway_store::secrets::SecretBox;
use slipway_store::{Batch, Store, Write};

/// The fixture: the console's router, its application layer, a reader's token, and one
/// deployment id to draw.
pub struct Fixture {
    pub router: axum::Router,
    pub app: App,
    pub token: String,
    pub deployment: String,
    pub service: ServiceKey,
}

fn spec(key: ServiceKey, image: &str) -> ServiceSpec {
    let mut container = slipway_store::testing::container(image);
    container.port = Some(8080);
    ServiceSpec {
        key,
        kind: ServiceKind::LoadBalancedWebService,
        desired_count: Some(5),
        container,
        deployment: DeploymentConfig::default(),
        placement: Default::default(),
    }
}

/// Builds the fixture.
pub async fn build(services: usize) -> Fixture {
    let app = App::new(
        Store::memory().await.expect("an in-memory store"),
        Arc::new(FixedImages),
        SecretBox::from_key(&[7u8; 32]).expect("a key"),
        "fixture",
    );
    let token = app
        .create_identity("reader", Role::Reader, vec![], vec![])
        .await
        .expect("an identity")
        .token;
    let keys: Vec<ServiceKey> = (0..services)
        .map(|i| ServiceKey::new(format!("app{:02}", i / 10), "prod", format!("svc{i:03}")))
        .collect();
    let mut last = String::new();
    for image in ["shop/web:v1", "shop/web:v2"] {
        let specs: Vec<ServiceSpec> = keys.iter().map(|k| spec(k.clone(), image)).collect();
        for chunk in specs.chunks(50) {
            let results = app
                .deploy(chunk, false, &BTreeMap::new())
                .await
                .expect("a deploy");
            for r in results {
                let id = r.deployment_id.expect("a deployment");
                finish(&app, &r.service, &id, image.ends_with("v1")).await;
                last = id;
            }
        }
    }
    let console = crate::Console::new(
        app.clone(),
        false,
        Arc::new(slipway_api::RateLimiter::new(0)),
    );
    Fixture {
        router: crate::router(console),
        app,
        token,
        deployment: last,
        service: keys.last().cloned().expect("one service"),
    }
}

/// Ends a deployment as the controller would: 5 healthy tasks, timeline marks; the tasks of
/// the first deployment stop when the second finishes (`superseded` false: this is the first).
async fn finish(app: &App, key: &ServiceKey, id: &str, first: bool) {
    let store = app.store();
    let mut d = store
        .get_deployment(id)
        .await
        .expect("read")
        .expect("a deployment");
    let t0 = d.created_at;
    d.state = RolloutState::Succeeded;
    d.timeline.first_healthy_at = Some(t0 + 900);
    if !first {
        d.timeline.first_old_stopped_at = Some(t0 + 1_000);
        d.timeline.old_deregistered_at = Some(t0 + 3_000);
        d.timeline.old_gone_at = Some(t0 + 3_500);
    }
    d.timeline.finished_at = Some(t0 + 4_000);
    let mut b = Batch::new().write(Write::Deployment(d.clone()));
    if !first {
        for mut t in store.list_tasks(key, false).await.expect("tasks") {
            t.last_status = TaskStatus::Stopped;
            t.desired_running = false;
            t.stopped_at = Some(t0 + 1_000 + 500 * i64::from(t.id.ends_with('0')));
            t.stopped_reason = Some("Replaced by a new deployment".into());
            b = b.write(Write::Task(t));
        }
    }
    for i in 0..5 {
        let mut t = Task::provisioning(
            format!("{id}-{i}"),
            key.clone(),
            id.to_owned(),
            d.revision,
            t0,
        );
        t.last_status = TaskStatus::Running;
        t.health = TaskHealth::Healthy;
        t.started_at = Some(t0 + 300);
        t.healthy_at = Some(t0 + 900 + 400 * i);
        t.host = Some("h-0123456789ab".into());
        t.address = Some(format!("172.20.0.{}", 2 + i));
        b = b.write(Write::Task(t));
    }
    store.commit(b).await.expect("a commit");
}

/// Logs in as the fixture's reader: the session cookie (`name=value`).
pub async fn login(f: &Fixture) -> String {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;
    let page = f
        .router
        .clone()
        .oneshot(
            Request::get("/ui/login")
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("the login page");
    let cookie = |resp: &axum::response::Response, name: &str| {
        resp.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .expect("a cookie")
            .to_owned()
    };
    let login_cookie = cookie(&page, "slipway_login");
    let nonce = login_cookie
        .split_once('=')
        .expect("name=value")
        .1
        .to_owned();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("login_csrf", &nonce)
        .append_pair("token", &f.token)
        .finish();
    let resp = f
        .router
        .clone()
        .oneshot(
            Request::post("/ui/login")
                .header(header::COOKIE, login_cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("a request"),
        )
        .await
        .expect("a login");
    cookie(&resp, "slipway_session")
}
