//! What a deploy would change: the current service (its desired count, settings and the
//! container of its current task definition revision) against the spec a deploy would apply.
//!
//! [`diff_service`] is pure. Both sides are flattened into `path → value` pairs (nested
//! objects become dotted paths: `variables.GREETING`, `deployment.circuit_breaker.enable`;
//! lists stay whole) and compared, so a field added to the model later is diffed without
//! changes here. Secret values never appear: anything under `secrets` shows only its name
//! (in the path) and, when the model carries one, its version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{ContainerSpec, DeploymentConfig, ServiceKey, ServiceKind, ServiceSpec};

/// What is deployed now.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub kind: ServiceKind,
    pub desired_count: u32,
    pub config: &'a DeploymentConfig,
    /// The container of the service's current revision.
    pub container: &'a ContainerSpec,
    pub placement: &'a crate::placement::Placement,
}

/// One changed field. `old` is `None` for an addition, `new` is `None` for a removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// How a service would be affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffStatus {
    /// The service does not exist yet.
    New,
    Changed,
    Unchanged,
}

/// The diff of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDiff {
    pub service: ServiceKey,
    pub status: DiffStatus,
    /// Whether the deploy would start a new deployment (a container or placement change, or
    /// a new service); count and settings changes apply without one.
    pub new_deployment: bool,
    pub changes: Vec<Change>,
}

/// Marker shown instead of a secret's value.
pub const REDACTED: &str = "(secret)";

/// Compares what runs with what a deploy would apply.
pub fn diff_service(current: Option<Current<'_>>, next: &ServiceSpec) -> ServiceDiff {
    let new = flatten_service(
        next.kind,
        next.count_for(current.map(|c| c.desired_count)),
        &next.deployment,
        &next.container,
        &next.placement,
    );
    let Some(cur) = current else {
        let mut changes: Vec<Change> = new
            .into_iter()
            .map(|(path, v)| Change {
                path,
                old: None,
                new: Some(v),
            })
            .collect();
        changes.sort_by(|a, b| order(&a.path).cmp(&order(&b.path)));
        return ServiceDiff {
            service: next.key.clone(),
            status: DiffStatus::New,
            new_deployment: true,
            changes,
        };
    };
    let old = flatten_service(
        cur.kind,
        cur.desired_count,
        cur.config,
        cur.container,
        cur.placement,
    );
    let mut changes = Vec::new();
    for (path, o) in &old {
        match new.get(path) {
            Some(n) if n == o => {}
            n => changes.push(Change {
                path: path.clone(),
                old: Some(o.clone()),
                new: n.cloned(),
            }),
        }
    }
    for (path, n) in &new {
        if !old.contains_key(path) {
            changes.push(Change {
                path: path.clone(),
                old: None,
                new: Some(n.clone()),
            });
        }
    }
    changes.sort_by(|a, b| order(&a.path).cmp(&order(&b.path)));
    let new_deployment = cur.container != &next.container || cur.placement != &next.placement;
    ServiceDiff {
        service: next.key.clone(),
        status: if changes.is_empty() && !new_deployment {
            DiffStatus::Unchanged
        } else {
            DiffStatus::Changed
        },
        new_deployment,
        changes,
    }
}

/// Sort key: the most telling fields first, then alphabetical.
fn order(path: &str) -> (u8, &str) {
    let rank = match path.split('.').next().unwrap_or(path) {
        "image" => 0,
        "image_digest" => 1,
        "count" => 2,
        "variables" => 3,
        "secrets" => 4,
        _ => 5,
    };
    (rank, path)
}

fn flatten_service(
    kind: ServiceKind,
    count: u32,
    config: &DeploymentConfig,
    container: &ContainerSpec,
    placement: &crate::placement::Placement,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    out.insert("type".to_owned(), Value::String(kind.as_str().to_owned()));
    out.insert("count".to_owned(), Value::from(count));
    if !placement.is_empty()
        && let Ok(v) = serde_json::to_value(placement)
    {
        // Strategies and constraints stay whole lists (their order matters).
        flatten("placement", &v, &mut out);
    }
    if let Ok(v) = serde_json::to_value(config) {
        flatten("deployment", &v, &mut out);
    }
    if let Ok(Value::Object(fields)) = serde_json::to_value(container) {
        for (k, v) in fields {
            let name = match k.as_str() {
                "environment" => "variables",
                "http_route" => "http",
                "http_health" => "http.healthcheck",
                other => other,
            };
            if name == "secrets" {
                flatten_secrets(&v, &mut out);
            } else {
                flatten(name, &v, &mut out);
            }
        }
    }
    out
}

/// Flattens `v` under `prefix`, naming fields as the manifest does: a `…_ms` number is the
/// manifest's duration (`stop_timeout: "30s"`), `aliases` its `alias`.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Null => {}
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let (name, v) = match (k.strip_suffix("_ms"), v.as_u64()) {
                    (Some(name), Some(ms)) => (name, Value::String(duration(ms))),
                    _ if k == "aliases" => ("alias", v.clone()),
                    _ => (k.as_str(), v.clone()),
                };
                flatten(&format!("{prefix}.{name}"), &v, out);
            }
        }
        Value::Object(_) => {}
        other => {
            let (name, v) = match (prefix.strip_suffix("_ms"), other.as_u64()) {
                (Some(name), Some(ms)) => (name, Value::String(duration(ms))),
                _ => (prefix, other.clone()),
            };
            out.insert(name.to_owned(), v);
        }
    }
}

/// A duration in milliseconds as the manifest writes it: `30s`, `5m`, `1500ms`.
fn duration(ms: u64) -> String {
    if ms >= 60_000 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `secrets.NAME` keeps its version (a number, or a `version` field) and how it is delivered
/// (`delivery`: `env` or `file`, nothing else) and hides the rest.
fn flatten_secrets(v: &Value, out: &mut BTreeMap<String, Value>) {
    let Value::Object(m) = v else {
        if !v.is_null() {
            out.insert("secrets".to_owned(), Value::String(REDACTED.to_owned()));
        }
        return;
    };
    for (name, s) in m {
        let path = format!("secrets.{name}");
        let shown = match s {
            Value::Number(_) => s.clone(),
            Value::Object(o) => {
                let delivery = o
                    .get("delivery")
                    .and_then(Value::as_str)
                    .filter(|d| matches!(*d, "env" | "file"));
                match (o.get("version").filter(|v| !v.is_null()), delivery) {
                    (Some(ver), None) => serde_json::json!({ "version": ver }),
                    (Some(ver), Some(d)) => serde_json::json!({ "version": ver, "delivery": d }),
                    (None, Some(d)) => serde_json::json!({ "delivery": d }),
                    (None, None) => Value::String(REDACTED.to_owned()),
                }
            }
            _ => Value::String(REDACTED.to_owned()),
        };
        out.insert(path, shown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built from JSON so fields added to the model later take their defaults.
    fn container(image: &str) -> ContainerSpec {
        serde_json::from_value(serde_json::json!({
            "image": image,
            "image_digest": format!("sha256:{image}"),
            "pull": "missing",
            "port": 8080,
            "command": null,
            "environment": {"GREETING": "hello"},
            "cpu": null,
            "memory": 32,
            "healthcheck": null,
            "http_health": null,
            "stop_timeout_ms": 30000,
            "http_route": null
        }))
        .unwrap()
    }

    fn spec(count: u32, c: ContainerSpec) -> ServiceSpec {
        ServiceSpec {
            key: ServiceKey::new("shop", "default", "web"),
            kind: ServiceKind::BackendService,
            desired_count: Some(count),
            container: c,
            deployment: DeploymentConfig::default(),
            placement: Default::default(),
        }
    }

    fn cur<'a>(s: &'a ServiceSpec) -> Current<'a> {
        Current {
            kind: s.kind,
            desired_count: s.count_for(None),
            config: &s.deployment,
            container: &s.container,
            placement: &s.placement,
        }
    }

    #[test]
    fn a_placement_change_is_shown_and_deploys() {
        let a = spec(2, container("hello:v1"));
        let mut b = a.clone();
        b.placement.constraints = vec![crate::placement::Constraint::DistinctInstance];
        let d = diff_service(Some(cur(&a)), &b);
        assert!(d.new_deployment);
        assert_eq!(d.status, DiffStatus::Changed);
        assert_eq!(paths(&d), vec!["placement.constraints"]);
    }

    fn paths(d: &ServiceDiff) -> Vec<&str> {
        d.changes.iter().map(|c| c.path.as_str()).collect()
    }

    #[test]
    fn identical_specs_are_unchanged() {
        let a = spec(2, container("hello:v1"));
        let d = diff_service(Some(cur(&a)), &a.clone());
        assert_eq!(d.status, DiffStatus::Unchanged);
        assert!(!d.new_deployment);
        assert!(d.changes.is_empty(), "{:?}", d.changes);
    }

    #[test]
    fn count_change_needs_no_deployment() {
        let a = spec(2, container("hello:v1"));
        let b = spec(4, container("hello:v1"));
        let d = diff_service(Some(cur(&a)), &b);
        assert_eq!(d.status, DiffStatus::Changed);
        assert!(!d.new_deployment);
        assert_eq!(
            d.changes,
            vec![Change {
                path: "count".into(),
                old: Some(2.into()),
                new: Some(4.into())
            }]
        );
    }

    #[test]
    fn variables_and_image_changes_are_named_by_path() {
        let a = spec(2, container("hello:v1"));
        let mut c = container("hello:v2");
        c.environment.insert("GREETING".into(), "hi".into());
        c.environment.insert("NEW".into(), "1".into());
        c.memory = None;
        let b = spec(2, c);
        let d = diff_service(Some(cur(&a)), &b);
        assert!(d.new_deployment);
        assert_eq!(
            paths(&d),
            vec![
                "image",
                "image_digest",
                "variables.GREETING",
                "variables.NEW",
                "memory"
            ]
        );
        let g = &d.changes[2];
        assert_eq!(g.old, Some(Value::from("hello")));
        assert_eq!(g.new, Some(Value::from("hi")));
        assert_eq!(d.changes[3].old, None);
        assert_eq!(d.changes[4].new, None, "removed memory limit");
    }

    #[test]
    fn a_digest_change_alone_is_a_new_deployment() {
        let a = spec(1, container("hello:v1"));
        let mut c = container("hello:v1");
        c.image_digest = Some("sha256:moved".into());
        let d = diff_service(Some(cur(&a)), &spec(1, c));
        assert!(d.new_deployment);
        assert_eq!(paths(&d), vec!["image_digest"]);
    }

    #[test]
    fn nested_settings_are_flattened() {
        let a = spec(1, container("hello:v1"));
        let mut b = spec(1, container("hello:v1"));
        b.deployment.circuit_breaker.rollback = false;
        let d = diff_service(Some(cur(&a)), &b);
        assert_eq!(paths(&d), vec!["deployment.circuit_breaker.rollback"]);
        assert!(!d.new_deployment);
    }

    #[test]
    fn a_new_service_lists_every_field_as_added() {
        let b = spec(3, container("hello:v1"));
        let d = diff_service(None, &b);
        assert_eq!(d.status, DiffStatus::New);
        assert!(d.new_deployment);
        assert!(d.changes.iter().all(|c| c.old.is_none()));
        assert_eq!(d.changes[0].path, "image");
        assert!(paths(&d).contains(&"count"));
        assert!(paths(&d).contains(&"variables.GREETING"));
    }

    #[test]
    fn secret_values_are_never_shown() {
        let mut out = BTreeMap::new();
        flatten_secrets(
            &serde_json::json!({
                "DB_PASSWORD": {"name": "shop/db", "version": 3, "value": "hunter2"},
                "API_KEY": "plain-value",
                "TOKEN": 7,
                "TLS": {"name": "shop/tls", "version": 2, "delivery": "file"},
                "ODD": {"name": "shop/odd", "version": 1, "delivery": "hunter2"}
            }),
            &mut out,
        );
        let text = serde_json::to_string(&out).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("plain-value"),
            "{text}"
        );
        assert_eq!(
            out["secrets.DB_PASSWORD"],
            serde_json::json!({"version": 3})
        );
        assert_eq!(out["secrets.API_KEY"], Value::from(REDACTED));
        assert_eq!(out["secrets.TOKEN"], Value::from(7));
        assert_eq!(
            out["secrets.TLS"],
            serde_json::json!({"version": 2, "delivery": "file"})
        );
        assert_eq!(out["secrets.ODD"], serde_json::json!({"version": 1}));
    }
}
