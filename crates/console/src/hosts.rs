//! The hosts page: every host of the cluster with its state, connection, resources and live
//! tasks; drain and activate (admins), each behind a confirmation, as the native
//! operations `POST /hosts/{id}/drain` and `POST /hosts/{id}/activate`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use slipway_core::access::{Denied, Face, Identity};
use slipway_core::placement::HostState;

use crate::Console;
use crate::actions::{Call, perform};
use crate::pages::{error_page, layout, time};
use crate::session::{posted, require};

/// `drain` or `activate`.
fn operation(action: &str) -> Option<String> {
    matches!(action, "drain" | "activate").then(|| format!("POST /hosts/{{id}}/{action}"))
}

fn permitted(who: &Identity, action: &str) -> Result<(), Denied> {
    let op = operation(action).unwrap_or_default();
    who.check(Face::Native, &op).map(|_| ())
}

fn state_str(s: HostState) -> &'static str {
    match s {
        HostState::Active => "ACTIVE",
        HostState::Draining => "DRAINING",
        HostState::Lost => "LOST",
    }
}

/// `GET /ui/hosts`
pub(crate) async fn page(State(c): State<Console>, headers: HeaderMap) -> Response {
    let v = match require(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let hosts = match c.app.host_statuses().await {
        Ok(h) => h,
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.message),
    };
    let may = |a: &str| permitted(&v.identity, a).is_ok();
    let body = html! {
        h1 { "Hosts" }
        table.hosts {
            thead { tr {
                th scope="col" { "Host" } th scope="col" { "State" } th scope="col" { "Connected" }
                th scope="col" { "Address" } th scope="col" { "Platform" }
                th scope="col" { "CPU (units used / total)" } th scope="col" { "Memory (MiB used / total)" }
                th scope="col" { "Tasks" } th scope="col" { "Last seen" } th scope="col" { "Actions" }
            } }
            tbody {
                @for h in &hosts {
                    @let broken = h.state == HostState::Lost || !h.connected;
                    tr.broken[broken] data-host=(h.id) data-state=(state_str(h.state)) {
                        th scope="row" { (h.name) @if h.local { " (this server)" } br; code { (h.id) } }
                        td { (state_str(h.state)) @if let Some(r) = &h.reason { ": " (r) } }
                        td { @if h.connected { "yes" } @else { strong.broken { "no" } } }
                        td.nowrap { (h.address) }
                        td { (h.platform) }
                        td.num { (h.cpu_used) " / " (h.cpu) }
                        td.num { (h.memory_used) " / " (h.memory) }
                        td.num { (h.tasks) }
                        td { time datetime=(time(h.last_seen)) { (time(h.last_seen)) } }
                        td {
                            @if h.state == HostState::Active && may("drain") {
                                a.button href=(format!("/ui/hosts/{}/drain", h.id)) { "Drain…" }
                            }
                            @if h.state == HostState::Draining && may("activate") {
                                a.button href=(format!("/ui/hosts/{}/activate", h.id)) { "Activate…" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Hosts", Some(&v), body).into_response()
}

/// `GET /ui/hosts/{id}/{action}`: the confirmation.
pub(crate) async fn confirm(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let v = match require(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if operation(&action).is_none() {
        return error_page(Some(&v), StatusCode::NOT_FOUND, "No such action.");
    }
    if let Err(d) = permitted(&v.identity, &action) {
        return error_page(Some(&v), StatusCode::FORBIDDEN, &d.to_string());
    }
    let what = if action == "drain" {
        "Drain it: it takes no new task, and its tasks are replaced on the other hosts with their services' rolling rules."
    } else {
        "Activate it: it takes new tasks again."
    };
    let body = html! {
        p.crumbs { a href="/ui/hosts" { "Hosts" } }
        h1 { (action) " host " code { (id) } "?" }
        form.confirm method="post" action=(format!("/ui/hosts/{id}/{action}")) {
            input type="hidden" name="csrf" value=(v.csrf);
            p { (what) }
            p {
                button type="submit" { "Yes, " (action) }
                " " a href="/ui/hosts" { "Cancel" }
            }
        }
    };
    layout(&format!("{action} {id}"), Some(&v), body).into_response()
}

/// `POST /ui/hosts/{id}/{action}`
pub(crate) async fn act(
    State(c): State<Console>,
    addr: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (v, _) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(op) = operation(&action) else {
        return error_page(Some(&v), StatusCode::NOT_FOUND, "No such action.");
    };
    let app = c.app.clone();
    let run = async {
        if action == "drain" {
            app.drain_host(&id).await.map(|_| ())
        } else {
            app.activate_host(&id).await.map(|_| ())
        }
    };
    let call = Call {
        viewer: &v,
        source: addr.map_or_else(|| "unknown".to_owned(), |a| a.0.0.to_string()),
        op,
        target: format!("/api/v1/hosts/{id}/{action}"),
    };
    let allowed = permitted(&v.identity, &action);
    perform(&c, call, allowed, run, "/ui/hosts").await
}
