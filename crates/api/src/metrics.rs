//! `GET /metrics` (the control plane's Prometheus metrics, behind the API's gate: any
//! identity may read them) and the request metrics of the API listener: the native API
//! names each request's operation by its route template ([`tag`]), the other faces name
//! theirs, and one layer over the whole listener ([`count`]) counts every answer.
//!
//! May call the store (reads) and `slipway_metrics`; owns no rule of counting (see
//! `slipway_metrics`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use slipway_metrics::{Face, Operation};

use crate::ApiState;
use crate::types::ApiError;

/// `GET /metrics`: the task gauge refreshed from the store, then every family.
pub(crate) async fn serve(State(state): State<ApiState>) -> Response {
    let metrics = slipway_metrics::global();
    match state.app.store().task_counts().await {
        Ok(counts) => metrics.set_tasks(&counts),
        Err(e) => return ApiError::from(e).into_response(),
    }
    (
        [(header::CONTENT_TYPE, slipway_metrics::CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
}

/// Names the operation of a native or console request (`GET
/// /api/v1/services/{app}/{env}/{name}`, `GET /ui/services/{app}/{env}/{name}`) for
/// [`count`], from its route's template (a `route_layer`: it sees the matched route).
pub async fn tag(req: Request, next: Next) -> Response {
    let face = Face::of(req.method().as_str(), req.uri().path());
    let op = req.extensions().get::<MatchedPath>().map(|p| {
        Operation::new(
            face,
            format!(
                "{} {}",
                slipway_metrics::method_label(req.method().as_str()),
                p.as_str()
            ),
        )
    });
    let mut resp = next.run(req).await;
    if let Some(op) = op
        && resp.extensions().get::<Operation>().is_none()
    {
        resp.extensions_mut().insert(op);
    }
    resp
}

/// Counts every answer of the listener by face, operation and status code, with its time
/// to the response's head. A request no face named (no route matched) counts as
/// `(unmatched)` under the face its path belongs to.
pub async fn count(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let face = Face::of(req.method().as_str(), req.uri().path());
    let resp = next.run(req).await;
    let op = resp
        .extensions()
        .get::<Operation>()
        .cloned()
        .unwrap_or_else(|| Operation::new(face, "(unmatched)"));
    slipway_metrics::global().api_request(&op, resp.status().as_u16(), started.elapsed());
    resp
}
