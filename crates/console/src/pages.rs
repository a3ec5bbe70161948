//! The console's pages: the layout, the overview, a service, a deployment, and error pages.
//! Every value is written through maud, which escapes it.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_query::OverviewQuery;
use slipway_core::model::{Deployment, RolloutState, ServiceKey, Task, TaskHealth, TaskStatus};
use slipway_store::ServiceView;

use crate::Console;
use crate::actions::{self, Action};
use crate::session::{Viewer, require};

pub(crate) const CSRF_REFUSED: &str = "This form did not come from your console session (its CSRF token is missing or wrong): reload the page and try again.";

/// Services on one overview page.
pub(crate) const PAGE_SIZE: usize = 200;

/// The frame of every page.
pub(crate) fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    layout_live(title, viewer, None, body)
}

/// The frame of a page that follows `live` (the address of its event stream).
pub(crate) fn layout_live(
    title: &str,
    viewer: Option<&Viewer>,
    live: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Slipway" }
                link rel="stylesheet" href="/ui/static/console.css";
                @if live.is_some() { script src="/ui/static/console.js" defer {} }
            }
            body data-live=[live] {
                header {
                    nav aria-label="Main" {
                        a.brand href="/ui/" { "Slipway" }
                        @if viewer.is_some() {
                            a href="/ui/" { "Overview" }
                            a href="/ui/hosts" { "Hosts" }
                            @if viewer.is_some_and(|v| v.registry) { a href="/ui/registry" { "Registry" } }
                        }
                    }
                    @if let Some(v) = viewer {
                        form.whoami method="post" action="/ui/logout" {
                            span { (v.identity.name) " (" (v.identity.role.as_str()) ")" }
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error page with its status.
pub(crate) fn error_page(viewer: Option<&Viewer>, status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        p.error role="alert" { (message) }
        p { a href="/ui/" { "Back to the overview" } }
    };
    (status, layout("Error", viewer, body)).into_response()
}

/// A unix-ms time as UTC (to the second).
pub(crate) fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A duration in ms, in words (`1.2s`, `3m 4s`).
pub(crate) fn span(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn state_class(s: RolloutState) -> &'static str {
    match s {
        RolloutState::InProgress => "state progress",
        RolloutState::Succeeded => "state ok",
        RolloutState::Failed | RolloutState::RolledBack => "state past-failure",
    }
}

/// A service is broken now, not in the past: fewer healthy tasks than wanted while no
/// deployment is under way. A failed or rolled-back deployment whose service is back to its
/// count is history, drawn without alarm.
pub(crate) fn broken_now(
    desired: u32,
    healthy: u32,
    deleting: bool,
    last: Option<&Deployment>,
) -> bool {
    !deleting && healthy < desired && !last.is_some_and(|d| d.state == RolloutState::InProgress)
}

mod serde_query {
    /// `GET /ui/?app=&q=&page=`
    #[derive(Debug, Default, serde::Deserialize)]
    pub struct OverviewQuery {
        pub app: Option<String>,
        pub q: Option<String>,
        pub page: Option<usize>,
    }
}

/// `GET /ui/`: apps × environments, their services' state, current first.
pub(crate) async fn overview(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let v = match require(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let store = c.app.store();
    let mut services = match store
        .list_services(q.app.as_deref().filter(|a| !a.is_empty()))
        .await
    {
        Ok(s) => s,
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    services.retain(|s| s.key.to_string().to_lowercase().contains(&needle));
    services.sort_by(|a, b| a.key.cmp(&b.key));
    let total = services.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let shown = &services[(page - 1) * PAGE_SIZE..(page * PAGE_SIZE).min(total)];
    // One view query per app environment on the page.
    let mut by_env: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for s in shown {
        by_env
            .entry((s.key.app.clone(), s.key.env.clone()))
            .or_default()
            .push(s.key.name.clone());
    }
    let mut envs: Vec<((String, String), Vec<ServiceView>)> = Vec::new();
    for ((app, env), names) in by_env {
        match store.service_views(&app, &env, &names, 1, 0).await {
            Ok(views) => envs.push(((app, env), views)),
            Err(e) => {
                return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            }
        }
    }
    let broken: usize = envs
        .iter()
        .flat_map(|(_, vs)| vs)
        .filter(|s| {
            broken_now(
                s.record.desired_count,
                s.healthy(),
                s.record.deleting,
                s.deployments.first(),
            )
        })
        .count();
    let link = |p: usize| {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        if let Some(a) = q.app.as_deref().filter(|a| !a.is_empty()) {
            qs.append_pair("app", a);
        }
        if !needle.is_empty() {
            qs.append_pair("q", &needle);
        }
        qs.append_pair("page", &p.to_string());
        format!("/ui/?{}", qs.finish())
    };
    let body = html! {
        h1 { "Overview" }
        form.filter method="get" action="/ui/" role="search" {
            label for="q" { "Filter services" }
            input #q type="search" name="q" value=(needle) placeholder="app/env/service";
            @if let Some(a) = q.app.as_deref().filter(|a| !a.is_empty()) {
                input type="hidden" name="app" value=(a);
            }
            button type="submit" { "Filter" }
        }
        p.summary {
            (total) " services"
            @if broken > 0 { ", " strong.broken { (broken) " broken now" } } @else { ", none broken now" }
        }
        @if total == 0 {
            p { "No service matches. Deploy one with " code { "slipway deploy" } "." }
        }
        @for ((app, env), views) in &envs {
            section.env aria-labelledby=(format!("env-{app}-{env}")) {
                h2 id=(format!("env-{app}-{env}")) { (app) " / " (env) }
                table.services {
                    thead { tr {
                        th scope="col" { "Service" } th scope="col" { "Kind" }
                        th scope="col" { "Desired" } th scope="col" { "Running" } th scope="col" { "Healthy" }
                        th scope="col" { "Revision" } th scope="col" { "Last deployment" }
                    } }
                    tbody {
                        @for s in views {
                            @let last = s.deployments.first();
                            @let bad = broken_now(s.record.desired_count, s.healthy(), s.record.deleting, last);
                            tr.broken[bad] data-service=(s.record.key.to_string()) {
                                th scope="row" {
                                    a href=(service_href(&s.record.key)) { (s.record.key.name) }
                                    @if bad { " " span.badge.broken { "broken now" } }
                                    @if s.record.deleting { " " span.badge { "deleting" } }
                                }
                                td { (s.record.kind.as_str()) }
                                td.num { (s.record.desired_count) }
                                td.num { (s.running()) }
                                td.num.healthy { (s.healthy()) }
                                td.num { (s.record.revision) }
                                td {
                                    @if let Some(d) = last {
                                        a href=(format!("/ui/deployments/{}", d.id)) class=(state_class(d.state)) { (d.state.as_str()) }
                                        " " time datetime=(time(d.updated_at)) { (time(d.updated_at)) }
                                    } @else { "none" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pages aria-label="Pages" {
                @if page > 1 { a rel="prev" href=(link(page - 1)) { "Previous" } }
                span { "Page " (page) " of " (pages) }
                @if page < pages { a rel="next" href=(link(page + 1)) { "Next" } }
            }
        }
    };
    layout_live("Overview", Some(&v), Some("/ui/live"), body).into_response()
}

pub(crate) fn service_href(k: &ServiceKey) -> String {
    format!("/ui/services/{}/{}/{}", k.app, k.env, k.name)
}

/// The key of a service page's path (`None`: not a valid name, so no such service).
pub(crate) fn key_of((app, env, name): (String, String, String)) -> Option<ServiceKey> {
    [&app, &env, &name]
        .iter()
        .all(|p| slipway_core::model::validate_name(p).is_ok())
        .then(|| ServiceKey::new(app, env, name))
}

/// The viewer of a service's page and the service's key; else the login page's address or
/// a 404 page.
pub(crate) async fn service_viewer(
    c: &Console,
    headers: &HeaderMap,
    path: (String, String, String),
) -> Result<(Viewer, ServiceKey), Response> {
    let v = require(c, headers).await?;
    match key_of(path) {
        Some(k) => Ok((v, k)),
        None => Err(error_page(
            Some(&v),
            StatusCode::NOT_FOUND,
            "No such service.",
        )),
    }
}

/// `GET /ui/services/{app}/{env}/{name}`
pub(crate) async fn service(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(path): Path<(String, String, String)>,
) -> Response {
    let (v, key) = match service_viewer(&c, &headers, path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let store = c.app.store();
    let loaded = async {
        let Some(svc) = store.get_service(&key).await? else {
            return Ok(None);
        };
        let deployments = store.list_deployments(&key, 10).await?;
        let tasks = store.list_tasks(&key, true).await?;
        let events = store.list_events(&key, 20).await?;
        let mut revisions: Vec<(String, u32)> =
            tasks.iter().map(|t| (key.family(), t.revision)).collect();
        revisions.push((key.family(), svc.revision));
        revisions.sort();
        revisions.dedup();
        let defs = store.get_task_definitions(&revisions).await?;
        Ok::<_, slipway_store::StoreError>(Some((svc, deployments, tasks, events, defs)))
    };
    let (svc, deployments, tasks, events, defs) = match loaded.await {
        Ok(Some(x)) => x,
        Ok(None) => return error_page(Some(&v), StatusCode::NOT_FOUND, "No such service."),
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let digest_of = |rev: u32| {
        defs.iter()
            .find(|d| d.revision == rev)
            .map(|d| {
                d.container
                    .image_digest
                    .clone()
                    .unwrap_or_else(|| d.container.image.clone())
            })
            .unwrap_or_default()
    };
    let image = defs
        .iter()
        .find(|d| d.revision == svc.revision)
        .map(|d| d.container.image.clone());
    // Current state first; stopped tasks (newest first) on demand.
    let (live, mut stopped): (Vec<&Task>, Vec<&Task>) = tasks
        .iter()
        .partition(|t| t.last_status != TaskStatus::Stopped);
    stopped.sort_by_key(|t| std::cmp::Reverse(t.stopped_at.unwrap_or(t.created_at)));
    let healthy = live
        .iter()
        .filter(|t| t.desired_running && t.health == TaskHealth::Healthy)
        .count() as u32;
    let running = live
        .iter()
        .filter(|t| t.desired_running && t.last_status == TaskStatus::Running)
        .count() as u32;
    let bad = broken_now(
        svc.desired_count,
        healthy,
        svc.deleting,
        deployments.first(),
    );
    let allowed: Vec<Action> = Action::ALL
        .into_iter()
        .filter(|a| actions::permitted(&v.identity, *a, &key).is_ok())
        .collect();
    let title = key.to_string();
    let body = html! {
        p.crumbs { a href="/ui/" { "Overview" } " › " (key.app) " / " (key.env) }
        h1 { (key.name) @if bad { " " span.badge.broken { "broken now" } } }
        dl.facts {
            dt { "Kind" } dd { (svc.kind.as_str()) }
            dt { "Tasks" } dd.counts data-desired=(svc.desired_count) data-running=(running) data-healthy=(healthy) {
                (healthy) " healthy, " (running) " running, of " (svc.desired_count) " desired"
            }
            dt { "Revision" } dd { (svc.revision) }
            dt { "Image" } dd { code { (image.unwrap_or_default()) } }
            dt { "Logs" } dd { a href=(format!("{}/logs", service_href(&key))) { "Logs of its tasks" } }
        }
        @if !allowed.is_empty() {
            section.actions aria-label="Actions" {
                h2 { "Actions" }
                ul {
                    @for a in &allowed {
                        li { a.button href=(format!("{}/{}", service_href(&key), a.as_str())) { (a.title()) } }
                    }
                }
            }
        }
        section aria-labelledby="tasks" {
            h2 #tasks { "Tasks" }
            (task_table(&live, &digest_of))
            @if live.is_empty() { p { "No task runs now." } }
        }
        @if !stopped.is_empty() {
            details.history {
                summary { "Stopped tasks (" (stopped.len()) ")" }
                (task_table(&stopped, &digest_of))
            }
        }
        section aria-labelledby="deployments" {
            h2 #deployments { "Deployments" }
            table.deployments {
                thead { tr {
                    th scope="col" { "Deployment" } th scope="col" { "Revision" } th scope="col" { "State" }
                    th scope="col" { "Started" } th scope="col" { "Took" } th scope="col" { "Reason" }
                } }
                tbody {
                    @for d in &deployments {
                        tr data-deployment=(d.id) data-state=(d.state.as_str()) {
                            th scope="row" { a href=(format!("/ui/deployments/{}", d.id)) { code { (short(&d.id)) } } }
                            td.num { (d.revision) }
                            td class=(state_class(d.state)) { (d.state.as_str()) }
                            td { time datetime=(time(d.created_at)) { (time(d.created_at)) } }
                            td { @if let Some(f) = d.timeline.finished_at { (span(f - d.created_at)) } @else { "running" } }
                            td { (d.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="events" {
            h2 #events { "Events" }
            ol.events reversed {
                @for e in &events {
                    li data-event-id=(e.id) { time datetime=(time(e.created_at)) { (time(e.created_at)) } " " (e.message) }
                }
            }
        }
    };
    let live = format!("/ui/live?service={}", key);
    layout_live(&title, Some(&v), Some(&live), body).into_response()
}

fn task_table(tasks: &[&Task], digest_of: &dyn Fn(u32) -> String) -> Markup {
    html! {
        table.tasks {
            thead { tr {
                th scope="col" { "Task" } th scope="col" { "Status" } th scope="col" { "Health" }
                th scope="col" { "Host" } th scope="col" { "Address" } th scope="col" { "Revision" }
                th scope="col" { "Image" } th scope="col" { "Stopped because" }
            } }
            tbody {
                @for t in tasks {
                    tr data-task=(t.id) data-status=(t.last_status.as_str()) data-health=(t.health.as_str()) data-revision=(t.revision) {
                        th scope="row" {
                            code { (short(&t.id)) }
                            // A task of several containers: each with its state.
                            @if !t.containers.is_empty() {
                                ul.containers {
                                    @for c in &t.containers {
                                        li data-container=(c.name) {
                                            (c.name) " " (c.last_status)
                                            @if c.health != "UNKNOWN" { " " (c.health) }
                                            @if let Some(code) = c.exit_code { " (exit " (code) ")" }
                                        }
                                    }
                                }
                            }
                        }
                        td { (t.last_status.as_str()) }
                        td class=(health_class(t)) { (t.health.as_str()) }
                        td.nowrap { (t.host.as_deref().unwrap_or("-")) }
                        td.nowrap { (t.address.as_deref().unwrap_or("-")) }
                        td.num { (t.revision) }
                        td { code { (short_digest(&digest_of(t.revision))) } }
                        td { (t.stopped_reason.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

fn health_class(t: &Task) -> &'static str {
    match t.health {
        TaskHealth::Healthy => "healthy",
        TaskHealth::Unhealthy if t.last_status != TaskStatus::Stopped => "unhealthy",
        _ => "",
    }
}

/// The first 12 characters of an id.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `sha256:` and 12 hex digits, or the reference as it is.
fn short_digest(d: &str) -> &str {
    match d.find("sha256:") {
        Some(i) => d.get(..i + 7 + 12).unwrap_or(d),
        None => d,
    }
}

/// `GET /ui/deployments/{id}`: the deployment and its timeline as a picture.
pub(crate) async fn deployment(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let v = match require(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let store = c.app.store();
    let d = match store.get_deployment(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => return error_page(Some(&v), StatusCode::NOT_FOUND, "No such deployment."),
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let tasks = match store.list_tasks(&d.service, true).await {
        Ok(t) => t,
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let now = slipway_store::now_ms();
    let series = slipway_core::timeline::series(&d, &tasks, now);
    let mine: Vec<&Task> = tasks.iter().filter(|t| t.deployment_id == d.id).collect();
    let title = format!("Deployment {}", short(&d.id));
    let body = html! {
        p.crumbs {
            a href="/ui/" { "Overview" } " › "
            a href=(service_href(&d.service)) { (d.service.to_string()) }
        }
        h1 { "Deployment " code { (short(&d.id)) } }
        dl.facts {
            dt { "State" } dd.rollout-state class=(state_class(d.state)) data-state=(d.state.as_str()) { (d.state.as_str()) }
            @if let Some(r) = &d.reason { dt { "Reason" } dd.reason { (r) } }
            dt { "Revision" } dd { (d.revision) }
            dt { "Desired" } dd { (d.desired_count) }
            dt { "Started" } dd { time datetime=(time(d.created_at)) { (time(d.created_at)) } }
            @if let Some(f) = d.timeline.finished_at { dt { "Took" } dd { (span(f - d.created_at)) } }
            @if let Some(by) = &d.rolled_back_by {
                dt { "Rolled back by" } dd { a href=(format!("/ui/deployments/{by}")) { code { (short(by)) } } }
            }
            @if let Some(of) = &d.rollback_of {
                dt { "Rolls back" } dd { a href=(format!("/ui/deployments/{of}")) { code { (short(of)) } } }
            }
        }
        section aria-labelledby="timeline" {
            h2 #timeline { "Timeline" }
            (crate::svg::timeline(&series))
            table.marks {
                caption { "Marks (milliseconds after the deployment started)" }
                thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "After" } th scope="col" { "What" } } }
                tbody {
                    @for (i, m) in series.marks.iter().enumerate() {
                        tr data-field=(m.field) data-at=(m.at) {
                            td.num { (i + 1) }
                            td { time datetime=(time(m.at)) { (time(m.at)) } }
                            td.num { (m.at - d.created_at) }
                            td { (m.label) }
                        }
                    }
                }
            }
            @if let Some((from, to)) = series.overlap {
                p.overlap data-from=(from) data-to=(to) {
                    "Both versions answered for " strong { (span(to - from)) } "."
                }
            } @else {
                p.overlap { "The two versions never answered at the same time." }
            }
        }
        section aria-labelledby="dtasks" {
            h2 #dtasks { "Its tasks" }
            ul.tasks {
                @for t in &mine {
                    li data-task=(t.id) {
                        code { (short(&t.id)) } " " (t.last_status.as_str()) ", " (t.health.as_str())
                        @if let Some(r) = &t.stopped_reason { ": " (r) }
                    }
                }
            }
        }
    };
    let live = format!("/ui/live?service={}", d.service);
    layout_live(&title, Some(&v), Some(&live), body).into_response()
}
