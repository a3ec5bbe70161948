//! The apps as users see them (`slipway app ls`, `app show`, `env ls`): apps, their
//! environments, each service's state, route and the URLs it answers at through the ingress.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_core::model::{ServiceKind, TaskHealth, TaskStatus};
use slipway_store::ServiceRecord;

use crate::{App, AppError, Result};

/// One app: its environments and services (names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    pub app: String,
    pub environments: Vec<String>,
    pub services: Vec<String>,
}

/// One environment of an app: its services and their tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSummary {
    pub app: String,
    pub env: String,
    pub services: Vec<String>,
    pub desired: u32,
    pub healthy: u32,
}

/// `app show`: every environment of an app with its services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDetail {
    pub app: String,
    pub environments: Vec<EnvDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvDetail {
    pub env: String,
    pub services: Vec<ServiceLine>,
}

/// One service of an environment: its state, route and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLine {
    pub name: String,
    pub kind: ServiceKind,
    pub desired: u32,
    pub running: u32,
    pub healthy: u32,
    pub revision: u32,
    pub image: Option<String>,
    /// The ingress route (`path`, host `aliases`) of a Load Balanced Web Service.
    #[serde(default)]
    pub route: Option<RouteLine>,
    /// Where it answers through the ingress: `URL` or `URL (Host: NAME)` when the route
    /// needs a host name.
    #[serde(default)]
    pub urls: Vec<String>,
    pub deleting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteLine {
    pub path: String,
    pub aliases: Vec<String>,
}

/// The URLs a route answers at through an ingress at `base` (`http://127.0.0.1:8080`).
pub fn route_urls(base: &str, route: &RouteLine) -> Vec<String> {
    let url = format!("{}{}", base.trim_end_matches('/'), route.path);
    if route.aliases.is_empty() {
        return vec![url];
    }
    route
        .aliases
        .iter()
        .map(|a| format!("{url} (Host: {})", a.replace("*.", "anything.")))
        .collect()
}

impl App {
    /// Every app with services, by name.
    pub async fn list_apps(&self) -> Result<Vec<AppSummary>> {
        let mut apps: BTreeMap<String, AppSummary> = BTreeMap::new();
        for s in self.store().list_services(None).await? {
            let a = apps.entry(s.key.app.clone()).or_insert_with(|| AppSummary {
                app: s.key.app.clone(),
                environments: Vec::new(),
                services: Vec::new(),
            });
            if !a.environments.contains(&s.key.env) {
                a.environments.push(s.key.env.clone());
            }
            if !a.services.contains(&s.key.name) {
                a.services.push(s.key.name.clone());
            }
        }
        Ok(apps
            .into_values()
            .map(|mut a| {
                a.environments.sort();
                a.services.sort();
                a
            })
            .collect())
    }

    /// The environments of one app (or of every app).
    pub async fn list_envs(&self, app: Option<&str>) -> Result<Vec<EnvSummary>> {
        let mut envs: BTreeMap<(String, String), EnvSummary> = BTreeMap::new();
        for s in self.store().list_services(app).await? {
            let line = self.service_line(&s, None).await?;
            let e = envs
                .entry((s.key.app.clone(), s.key.env.clone()))
                .or_insert_with(|| EnvSummary {
                    app: s.key.app.clone(),
                    env: s.key.env.clone(),
                    services: Vec::new(),
                    desired: 0,
                    healthy: 0,
                });
            e.services.push(s.key.name.clone());
            e.desired += line.desired;
            e.healthy += line.healthy;
        }
        if let Some(a) = app
            && envs.is_empty()
        {
            return Err(AppError::not_found(format!(
                "app {a:?} (no service deployed)"
            )));
        }
        Ok(envs.into_values().collect())
    }

    /// One app: its environments and services, with the URLs they answer at through the
    /// ingress at `ingress` (when the server runs one).
    pub async fn show_app(&self, app: &str, ingress: Option<&str>) -> Result<AppDetail> {
        let services = self.store().list_services(Some(app)).await?;
        if services.is_empty() {
            return Err(AppError::not_found(format!(
                "app {app:?} (no service deployed)"
            )));
        }
        let mut envs: BTreeMap<String, Vec<ServiceLine>> = BTreeMap::new();
        for s in &services {
            let line = self.service_line(s, ingress).await?;
            envs.entry(s.key.env.clone()).or_default().push(line);
        }
        Ok(AppDetail {
            app: app.to_owned(),
            environments: envs
                .into_iter()
                .map(|(env, services)| EnvDetail { env, services })
                .collect(),
        })
    }

    async fn service_line(&self, s: &ServiceRecord, ingress: Option<&str>) -> Result<ServiceLine> {
        let store = self.store();
        let tasks = store.list_tasks(&s.key, false).await?;
        let live = |t: &&slipway_core::model::Task| t.desired_running;
        let td = store
            .get_task_definition(&s.key.family(), s.revision)
            .await?;
        let route = td
            .as_ref()
            .and_then(|td| td.container.http_route.as_ref())
            .map(|r| RouteLine {
                path: r.path.clone(),
                aliases: r.aliases.clone(),
            });
        Ok(ServiceLine {
            name: s.key.name.clone(),
            kind: s.kind,
            desired: s.desired_count,
            running: tasks
                .iter()
                .filter(live)
                .filter(|t| t.last_status == TaskStatus::Running)
                .count() as u32,
            healthy: tasks
                .iter()
                .filter(live)
                .filter(|t| t.health == TaskHealth::Healthy)
                .count() as u32,
            revision: s.revision,
            image: td.as_ref().map(|td| td.container.image.clone()),
            urls: match (&route, ingress) {
                (Some(r), Some(base)) if !s.deleting => route_urls(base, r),
                _ => Vec::new(),
            },
            route,
            deleting: s.deleting,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_host_a_route_needs() {
        let r = RouteLine {
            path: "/api".into(),
            aliases: vec![],
        };
        assert_eq!(
            route_urls("http://127.0.0.1:8080/", &r),
            vec!["http://127.0.0.1:8080/api"]
        );
        let r = RouteLine {
            path: "/".into(),
            aliases: vec!["shop.test".into(), "*.shop.test".into()],
        };
        assert_eq!(
            route_urls("http://127.0.0.1:8080", &r),
            vec![
                "http://127.0.0.1:8080/ (Host: shop.test)",
                "http://127.0.0.1:8080/ (Host: anything.shop.test)"
            ]
        );
    }
}
