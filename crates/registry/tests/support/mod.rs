//! What the registry's HTTP tests share: the server's identities as they see them and a
//! stand-in for the server's gate in front of the registry's native routes.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use slipway_core::access::Identity;
use slipway_registry::{AuditEvent, Identities, Registry, Rights};

pub const ADMIN: &str = "admin-secret";

/// The server's identities as these tests see them: the admin token `ADMIN` (refused as a
/// password), the identity `admin`, and the audit events kept.
#[derive(Default)]
pub struct FixedIds(pub std::sync::Mutex<Vec<AuditEvent>>);

#[async_trait::async_trait]
impl Identities for FixedIds {
    async fn is_admin_token(&self, secret: &str) -> bool {
        secret == ADMIN
    }

    async fn identity(&self, name: &str) -> Option<Identity> {
        (name == "admin").then(|| Identity::admin("admin"))
    }

    async fn audit(&self, e: AuditEvent) {
        self.0.lock().unwrap().push(e);
    }
}

/// Stands in for the server's gate in front of the registry's native routes: the admin
/// token's bearer is the identity `admin`.
async fn gate(mut req: Request<Body>, next: axum::middleware::Next) -> axum::response::Response {
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {ADMIN}"));
    if !ok {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    req.extensions_mut().insert(Identity::admin("admin"));
    next.run(req).await
}

pub fn routers(reg: &Registry) -> Router {
    reg.router()
        .merge(reg.admin_router().layer(axum::middleware::from_fn(gate)))
}

/// A push password of the identity `admin`.
pub fn admin_password(reg: &Registry) -> String {
    reg.issue_password(Rights::Push, "admin").0
}
