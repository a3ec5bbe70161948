//! A service's logs page: the last lines of its tasks (or of one task, stopped ones
//! included: their kept output), filtered by a search on the server, and followed live over
//! server-sent events (`event: log`, one line each, added to the page as text).
//!
//! Lines come from the application layer's log streams (the engine's, on whichever host
//! runs the task); every line is escaped on the page (maud) and added as a text node by the
//! script, never as HTML.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::html;
use slipway_app::LogsQuery;
use slipway_core::model::TaskStatus;

use crate::Console;
use crate::pages::{error_page, layout_live, service_href, service_viewer};
use crate::session::viewer;

/// Lines shown when the page loads (per task, then the newest of them all).
pub(crate) const TAIL: u32 = 200;
/// How long the page waits for the engine's tails.
const TAIL_WAIT: Duration = Duration::from_secs(5);

/// `?task=ID&q=TEXT`
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct LogsForm {
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    q: Option<String>,
}

impl LogsForm {
    fn task(&self) -> Option<String> {
        self.task.clone().filter(|t| !t.is_empty())
    }

    fn needle(&self) -> String {
        self.q.as_deref().unwrap_or("").trim().to_lowercase()
    }

    fn query(&self, follow: bool) -> LogsQuery {
        LogsQuery {
            follow,
            since: None,
            tail: Some(if follow { 0 } else { TAIL }),
            task: self.task(),
            previous: false,
            container: None,
        }
    }
}

/// The line matches the search (case-insensitive; an empty search matches everything).
pub(crate) fn matches(line: &str, needle: &str) -> bool {
    needle.is_empty() || line.to_lowercase().contains(needle)
}

/// `GET /ui/services/{app}/{env}/{name}/logs`
pub(crate) async fn page(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(path): Path<(String, String, String)>,
    Query(f): Query<LogsForm>,
) -> Response {
    let (v, key) = match service_viewer(&c, &headers, path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tasks = match c.app.store().list_tasks(&key, true).await {
        Ok(t) => t,
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let streams = match c.app.service_logs(&key, &f.query(false)).await {
        Ok(s) => s,
        Err(e) => return error_page(Some(&v), StatusCode::NOT_FOUND, &e.message),
    };
    let needle = f.needle();
    let mut lines: Vec<String> = Vec::new();
    let mut merged = futures_util::stream::select_all(streams);
    let _ = tokio::time::timeout(TAIL_WAIT, async {
        while let Some(chunk) = merged.next().await {
            if let Ok(text) = chunk {
                lines.extend(
                    text.lines()
                        .filter(|l| matches(l, &needle))
                        .map(str::to_owned),
                );
            }
        }
    })
    .await;
    let keep = lines.len().saturating_sub(TAIL as usize);
    lines.drain(..keep);
    let mut live = form_urlencoded::Serializer::new(String::new());
    live.append_pair("service", &key.to_string());
    if let Some(t) = f.task() {
        live.append_pair("task", &t);
    }
    if !needle.is_empty() {
        live.append_pair("q", &needle);
    }
    let live = format!("/ui/live/logs?{}", live.finish());
    let chosen = f.task();
    let body = html! {
        p.crumbs { a href="/ui/" { "Overview" } " › " a href=(service_href(&key)) { (key.to_string()) } }
        h1 { "Logs of " (key.name) }
        form.filter method="get" role="search" {
            label for="task" { "Task" }
            select #task name="task" {
                option value="" selected[chosen.is_none()] { "every running task" }
                @for t in &tasks {
                    option value=(t.id) selected[chosen.as_deref() == Some(t.id.as_str())] {
                        (t.id) " (" (t.last_status.as_str()) ")"
                    }
                }
            }
            label for="q" { "Search" }
            input #q type="search" name="q" value=(needle);
            button type="submit" { "Show" }
        }
        p.hint {
            "The last " (TAIL) " lines"
            @if chosen.as_ref().is_some_and(|id| tasks.iter().any(|t| &t.id == id && t.last_status == TaskStatus::Stopped)) {
                " this stopped task left"
            }
            "; new lines appear below as they are written (with script on)."
        }
        pre.logs aria-live="polite" data-lines=(lines.len()) {
            @for l in &lines { (l) "\n" }
        }
    };
    layout_live(&format!("Logs of {key}"), Some(&v), Some(&live), body).into_response()
}

/// `GET /ui/live/logs?service=app/env/name[&task=ID][&q=TEXT]`: new lines as they come.
pub(crate) async fn follow(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<FollowQuery>,
) -> Response {
    if viewer(&c, &headers).await.is_none() {
        return (StatusCode::UNAUTHORIZED, "log in first\n").into_response();
    }
    let Some(key) = crate::live::parse_key(&q.service) else {
        return (StatusCode::NOT_FOUND, "no such service\n").into_response();
    };
    let form = LogsForm {
        task: q.task.clone(),
        q: q.q.clone(),
    };
    let needle = form.needle();
    let streams = match c.app.service_logs(&key, &form.query(true)).await {
        Ok(s) => s,
        Err(e) => return (StatusCode::NOT_FOUND, e.message).into_response(),
    };
    let lines = futures_util::stream::select_all(streams)
        .filter_map(|chunk| async move { chunk.ok() })
        .flat_map(|text| {
            futures_util::stream::iter(text.lines().map(str::to_owned).collect::<Vec<_>>())
        })
        .filter(move |l| std::future::ready(matches(l, &needle)))
        .map(|l| {
            Ok::<_, Infallible>(
                Event::default()
                    .event("log")
                    .data(serde_json::Value::String(l).to_string()),
            )
        });
    Sse::new(lines)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct FollowQuery {
    service: String,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    q: Option<String>,
}
