//! Keeps the ingress in step with the tasks: computes the routing configuration from the
//! store (routable = running, healthy and still wanted; draining = being stopped; each
//! target labelled with its deployment, and weights by label during a progressive rollout,
//! see [`crate::rollout::weights`]) and pushes it, and drains a task before it is stopped.

use std::time::Duration;

use slipway_core::model::{TaskHealth, TaskStatus};
use slipway_ingress::{RouteConfig, RoutingConfig, ServiceConfig, TargetConfig, VersionWeight};

use crate::{Controller, ControllerError};

/// A host unheard this long (its agent answers a ping every second) takes no new requests:
/// well before it is lost, and retried elsewhere are the requests still waiting on it.
pub(crate) const SUSPECT_AFTER: Duration = Duration::from_secs(3);

impl Controller {
    /// The routing configuration the store describes.
    pub(crate) async fn routing_config(&self) -> Result<RoutingConfig, ControllerError> {
        let store = &self.inner.store;
        let mut services = Vec::new();
        // Hosts whose agents went silent: their tasks take no new requests meanwhile.
        let suspect = self.inner.hosts.silent_hosts(SUSPECT_AFTER);
        for svc in store.list_services(None).await? {
            let Some(td) = store
                .get_task_definition(&svc.key.family(), svc.revision)
                .await?
            else {
                continue;
            };
            let Some(route) = td.container.http_route.clone() else {
                continue;
            };
            // (target, routable): a task that is routable, or draining.
            let mut candidates: Vec<(TargetConfig, bool)> = Vec::new();
            // Routable tasks as (deployment, revision), for the weights.
            let mut versions: Vec<(String, u32)> = Vec::new();
            let local = self.inner.hosts.local_id();
            for t in store.list_tasks(&svc.key, false).await? {
                let routable = t.desired_running
                    && t.health == TaskHealth::Healthy
                    && t.last_status == TaskStatus::Running;
                let draining = !t.desired_running && t.last_status != TaskStatus::Stopped;
                if !(routable || draining) {
                    continue;
                }
                // A task of this server's host is reached at its container address; one of
                // another host where its port is published on that host.
                let remote = t.host.is_some() && t.host.as_deref() != local;
                let addr = if remote {
                    t.published.as_deref().and_then(|p| p.parse().ok())
                } else {
                    let port = if t.revision == td.revision {
                        td.container.port
                    } else {
                        store
                            .get_task_definition(&svc.key.family(), t.revision)
                            .await?
                            .and_then(|d| d.container.port)
                    };
                    match (&t.address, port) {
                        (Some(ip), Some(port)) => format!("{ip}:{port}").parse().ok(),
                        _ => None,
                    }
                };
                let Some(addr) = addr else { continue };
                let unreachable = remote && t.host.as_ref().is_some_and(|h| suspect.contains(h));
                if routable && !unreachable {
                    versions.push((t.deployment_id.clone(), t.revision));
                }
                candidates.push((
                    TargetConfig {
                        id: t.id.clone(),
                        addr,
                        draining: draining || unreachable,
                        unreachable,
                        // Requests are weighted and measured by the task's deployment.
                        version: Some(t.deployment_id.clone()),
                    },
                    routable,
                ));
            }
            // Fail open: a service whose every target is on hosts out of touch keeps them
            // (the tasks may well be serving; only their agents went silent).
            if candidates.iter().all(|(t, _)| t.draining) {
                for (t, routable) in &mut candidates {
                    if t.unreachable {
                        t.unreachable = false;
                        t.draining = !*routable;
                    }
                }
            }
            let mut targets: Vec<TargetConfig> = candidates.into_iter().map(|(t, _)| t).collect();
            targets.sort_by(|a, b| a.id.cmp(&b.id));
            // A service being deleted answers no more requests at once (404, not 503 while
            // its tasks drain); its targets stay listed so in-flight requests finish.
            let hosts: Vec<Option<String>> = if svc.deleting {
                Vec::new()
            } else if route.aliases.is_empty() {
                vec![None]
            } else {
                route.aliases.iter().cloned().map(Some).collect()
            };
            let routes = hosts
                .into_iter()
                .flat_map(|host| {
                    route.paths().map(move |path| RouteConfig {
                        host: host.clone(),
                        path: path.clone(),
                        strip_prefix: route.strip_prefix,
                    })
                })
                .collect();
            let deployments = store.active_deployments(&svc.key).await?;
            let (weights, sticky) = crate::rollout::weights(&deployments, &versions);
            services.push(ServiceConfig {
                name: svc.key.to_string(),
                routes,
                targets,
                weights: weights
                    .into_iter()
                    .map(|(version, weight)| VersionWeight { version, weight })
                    .collect(),
                sticky,
            });
        }
        Ok(RoutingConfig { services })
    }

    /// Pushes the routing configuration to the ingress when it changed (always when `force`).
    pub(crate) async fn sync_ingress(&self, force: bool) {
        let Some(ingress) = &self.inner.ingress else {
            return;
        };
        let _guard = self.inner.ingress_lock.lock().await;
        let cfg = match self.routing_config().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot compute the routing configuration");
                return;
            }
        };
        if !force && self.local().pushed.as_ref() == Some(&cfg) {
            return;
        }
        let pushed_from = crate::now_ms();
        match ingress.push(&cfg).await {
            Ok(()) => {
                let before = self.local().pushed.replace(cfg.clone());
                self.trace_registered(before.as_ref(), &cfg, pushed_from)
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot update the ingress; will retry");
                self.local().pushed = None;
            }
        }
    }

    /// Deregisters a task from the ingress and waits until its in-flight requests are done
    /// (or `delay` passes). Returns how long it waited.
    pub(crate) async fn drain(&self, task_id: &str, delay: Duration) -> Option<Duration> {
        let ingress = self.inner.ingress.as_ref()?;
        self.sync_ingress(false).await;
        match ingress.drain(task_id, delay).await {
            Ok(r) => {
                if !r.drained {
                    tracing::warn!(
                        task = task_id,
                        in_flight = r.in_flight,
                        "deregistration delay passed with requests in flight"
                    );
                }
                Some(Duration::from_millis(r.waited_ms))
            }
            Err(e) => {
                tracing::warn!(task = task_id, error = %e, "cannot drain through the ingress; stopping anyway");
                None
            }
        }
    }
}
