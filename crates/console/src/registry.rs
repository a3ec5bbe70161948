//! The registry's pages: its repositories, and one repository's images (tags, size,
//! platforms, when pushed), which services run each, and what the repository's lifecycle
//! policy would expire now (a dry run: nothing is deleted).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::Console;
use crate::pages::{error_page, layout, service_href, time};
use crate::session::{Viewer, require};

/// Bytes in words (`12.3 MB`).
pub(crate) fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    match b {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} B"),
    }
}

/// The viewer and the registry; else the login page's address or a 404 page.
async fn registry_viewer(
    c: &Console,
    headers: &HeaderMap,
) -> Result<(Viewer, slipway_registry::Registry), Response> {
    let v = require(c, headers).await?;
    match &c.registry {
        Some(r) => Ok((v, r.clone())),
        None => Err(error_page(
            Some(&v),
            StatusCode::NOT_FOUND,
            "This server runs no registry.",
        )),
    }
}

/// `GET /ui/registry`
pub(crate) async fn page(State(c): State<Console>, headers: HeaderMap) -> Response {
    let (v, reg) = match registry_viewer(&c, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let repos = match reg.repositories().await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let body = html! {
        h1 { "Registry" }
        @if repos.is_empty() {
            p { "No repository yet: " code { "docker push SERVER/REPOSITORY:TAG" } " makes one." }
        } @else {
            table.repos {
                thead { tr {
                    th scope="col" { "Repository" } th scope="col" { "Tags" } th scope="col" { "Manifests" }
                    th scope="col" { "Tags immutable" } th scope="col" { "Created" }
                } }
                tbody {
                    @for r in &repos {
                        tr data-repository=(r.name) {
                            th scope="row" { a href=(format!("/ui/registry/{}", r.name)) { (r.name) } }
                            td.num { (r.tags) }
                            td.num { (r.manifests) }
                            td { @if r.immutable { "yes" } @else { "no" } }
                            td { time datetime=(time(r.created_at)) { (time(r.created_at)) } }
                        }
                    }
                }
            }
        }
    };
    layout("Registry", Some(&v), body).into_response()
}

/// `GET /ui/registry/{*name}`
pub(crate) async fn repository(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (v, reg) = match registry_viewer(&c, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let images = match reg.images(&name).await {
        Ok(Some(i)) => i,
        Ok(None) => return error_page(Some(&v), StatusCode::NOT_FOUND, "No such repository."),
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    // Which services run each image: their current revision's pinned digest.
    let store = c.app.store();
    let mut users: Vec<(slipway_core::model::ServiceKey, String)> = Vec::new();
    if let Ok(services) = store.list_services(None).await {
        let ids: Vec<(String, u32)> = services
            .iter()
            .map(|s| (s.key.family(), s.revision))
            .collect();
        if let Ok(defs) = store.get_task_definitions(&ids).await {
            for s in &services {
                let pinned = defs
                    .iter()
                    .find(|d| d.family == s.key.family() && d.revision == s.revision)
                    .and_then(|d| d.container.image_digest.clone());
                if let Some(p) = pinned {
                    users.push((s.key.clone(), p));
                }
            }
        }
    }
    let used_by = |digest: &str| -> Vec<&slipway_core::model::ServiceKey> {
        users
            .iter()
            .filter(|(_, p)| p.ends_with(digest))
            .map(|(k, _)| k)
            .collect()
    };
    let preview = reg
        .apply_lifecycle(&name, true, slipway_store::now_ms())
        .await
        .ok()
        .flatten();
    let body = html! {
        p.crumbs { a href="/ui/registry" { "Registry" } }
        h1 { (name) }
        table.images {
            thead { tr {
                th scope="col" { "Image" } th scope="col" { "Tags" } th scope="col" { "Size" }
                th scope="col" { "Platforms" } th scope="col" { "Pushed" } th scope="col" { "Run by" }
            } }
            tbody {
                @for i in &images {
                    tr data-digest=(i.digest) {
                        th scope="row" { code { (i.digest.get(..19).unwrap_or(&i.digest)) } }
                        td { (i.tags.join(", ")) }
                        td.num data-bytes=(i.size) { (size(i.size)) }
                        td { (i.platforms.join(", ")) }
                        td { time datetime=(time(i.pushed_at)) { (time(i.pushed_at)) } }
                        td {
                            @for k in used_by(&i.digest) {
                                a href=(service_href(k)) { (k.to_string()) } " "
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="lifecycle" {
            h2 #lifecycle { "Lifecycle policy" }
            @match &preview {
                None => p { "No lifecycle policy: images are kept until deleted." },
                Some(r) if r.expired.is_empty() => p.preview { "Its next run would expire nothing." },
                Some(r) => {
                    p.preview { "Its next run would expire " (r.expired.len()) " images:" }
                    ul {
                        @for e in &r.expired {
                            li data-expires=(e.digest) {
                                code { (e.digest.get(..19).unwrap_or(&e.digest)) }
                                @if !e.tags.is_empty() { " (" (e.tags.join(", ")) ")" }
                                " by rule " (e.rule_priority)
                            }
                        }
                    }
                }
            }
            @if let Some(r) = preview.as_ref().filter(|r| !r.protected.is_empty()) {
                p { (r.protected.len()) " images are kept because a task or a last good release uses them." }
            }
        }
    };
    layout(&name, Some(&v), body).into_response()
}
