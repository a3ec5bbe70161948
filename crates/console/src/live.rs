//! Live pages: server-sent events from the store's change feed ([`Store::changes`]), no
//! polling. A page names what it follows (`/ui/live?service=app/env/name`, or nothing for
//! every service); the stream sends
//! - `service-event` (with the event's id as the SSE id) for each new event of the service,
//!   so a client that reconnects with `Last-Event-ID` is sent what it missed;
//! - `change` when the service's records changed, at most every [`THROTTLE`]: the page
//!   fetches itself again and replaces its `<main>` (`static/console.js`).
//!
//! A stream ends when its session does (logout, expiry, a revoked token). Each open stream
//! is one receiver of the change feed and one small future: no task, no timer per client
//! while nothing changes (the keep-alive comment aside).
//!
//! [`Store::changes`]: slipway_store::Store::changes

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use slipway_core::model::ServiceKey;
use tokio::sync::broadcast::error::RecvError;

use crate::Console;
use crate::session::viewer;

/// The least time between two `change` events of one stream.
pub(crate) const THROTTLE: Duration = Duration::from_millis(250);

/// `GET /ui/live?service=app/env/name`
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct LiveQuery {
    service: Option<String>,
}

struct Follow {
    c: Console,
    headers: HeaderMap,
    key: Option<ServiceKey>,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<[ServiceKey]>>,
    /// The newest event id sent (or that the client had).
    last_event: i64,
    /// Events to send before waiting again.
    queue: std::collections::VecDeque<Event>,
    started: bool,
    last_change: Option<tokio::time::Instant>,
}

pub(crate) fn parse_key(s: &str) -> Option<ServiceKey> {
    let mut parts = s.split('/');
    let (app, env, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    crate::pages::key_of((app.to_owned(), env.to_owned(), name.to_owned()))
}

/// `GET /ui/live`
pub(crate) async fn live(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
) -> Response {
    if viewer(&c, &headers).await.is_none() {
        return (StatusCode::UNAUTHORIZED, "log in first\n").into_response();
    }
    let key = match q.service.as_deref().map(parse_key) {
        None => None,
        Some(Some(k)) => Some(k),
        Some(None) => return (StatusCode::NOT_FOUND, "no such service\n").into_response(),
    };
    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    // Subscribe before reading, so nothing committed in between is missed.
    let rx = c.app.store().changes();
    let last_event = match (last_event, &key) {
        (Some(id), _) => id,
        // A new stream starts after the newest event the page already shows.
        (None, Some(k)) => match c.app.store().list_events(k, 1).await {
            Ok(e) => e.first().map_or(0, |e| e.id),
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        },
        (None, None) => 0,
    };
    let follow = Follow {
        c,
        headers,
        key,
        rx,
        last_event,
        queue: Default::default(),
        started: false,
        last_change: None,
    };
    Sse::new(events(follow))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn events(follow: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(e) = f.queue.pop_front() {
                return Some((Ok(e), f));
            }
            if f.started {
                // Wait for a change of what this stream follows.
                loop {
                    match f.rx.recv().await {
                        Ok(keys) => {
                            if f.key.as_ref().is_none_or(|k| keys.contains(k)) {
                                break;
                            }
                        }
                        // Lost some: look again.
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return None,
                    }
                }
                if let Some(at) = f.last_change {
                    tokio::time::sleep_until(at + THROTTLE).await;
                }
                // What arrived meanwhile is covered by this one look.
                while f.rx.try_recv().is_ok() {}
            }
            f.started = true;
            // The session may have ended since the stream began.
            viewer(&f.c, &f.headers).await?;
            if let Some(k) = &f.key {
                let mut new = match f.c.app.store().list_events(k, 100).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "console live: cannot read events");
                        Vec::new()
                    }
                };
                new.retain(|e| e.id > f.last_event);
                new.sort_by_key(|e| e.id);
                for e in new {
                    f.last_event = e.id;
                    let data = serde_json::json!({
                        "id": e.id,
                        "at": crate::pages::time(e.created_at),
                        "message": e.message,
                    });
                    f.queue.push_back(
                        Event::default()
                            .event("service-event")
                            .id(e.id.to_string())
                            .data(data.to_string()),
                    );
                }
            }
            f.last_change = Some(tokio::time::Instant::now());
            f.queue
                .push_back(Event::default().event("change").data("{}"));
        }
    })
}
