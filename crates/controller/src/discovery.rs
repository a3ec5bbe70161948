//! Keeps every host's service discovery in step (`slipway_agent::discovery`): the
//! services of the cluster with a port, their virtual addresses and where their healthy
//! tasks answer, and where every task is published (for the hosts' isolation rules), sent
//! to every host when it changes. Only on a cluster of several hosts: on
//! one, Docker's DNS on the app networks finds every task.

use slipway_agent::discovery::{ServiceEntry, ServiceMap, assign_vips};
use slipway_core::model::{TaskHealth, TaskStatus};

use crate::{Controller, ControllerError};

impl Controller {
    /// The map the store describes (`None`: the cluster has no agent host).
    pub(crate) async fn service_map(&self) -> Result<Option<ServiceMap>, ControllerError> {
        let store = &self.inner.store;
        if !store
            .list_hosts()
            .await?
            .iter()
            .any(|h| h.key_hash.is_some())
        {
            return Ok(None);
        }
        let mut services = store.list_services(None).await?;
        // Oldest first: a service keeps its address when newer ones come and go.
        services.sort_by(|a, b| {
            (a.created_at, a.key.to_string()).cmp(&(b.created_at, b.key.to_string()))
        });
        let keys: Vec<_> = services.iter().map(|s| s.key.clone()).collect();
        let vips = assign_vips(&keys);
        let local = self.inner.hosts.local_id();
        let mut entries = Vec::new();
        // Every published task, whatever its health: no other app environment may reach it.
        let mut published = Vec::new();
        for svc in &services {
            for t in store.list_tasks(&svc.key, false).await? {
                if t.last_status != TaskStatus::Stopped
                    && let Some(addr) = t.published.as_deref().and_then(|p| p.parse().ok())
                {
                    published.push(addr);
                }
            }
        }
        published.sort();
        published.dedup();
        for svc in services.iter().filter(|s| !s.deleting) {
            let Some(td) = store
                .get_task_definition(&svc.key.family(), svc.revision)
                .await?
            else {
                continue;
            };
            let Some(port) = td.container.port else {
                continue;
            };
            let mut endpoints = Vec::new();
            for t in store.list_tasks(&svc.key, false).await? {
                let routable = t.desired_running
                    && t.health == TaskHealth::Healthy
                    && t.last_status == TaskStatus::Running;
                if !routable {
                    continue;
                }
                // Published on its host's address (reachable from every host); a task of the
                // server's own host that is not published, at its container address.
                let addr: Option<std::net::SocketAddr> = match (&t.published, &t.address) {
                    (Some(p), _) => p.parse().ok(),
                    (None, Some(ip)) if t.host.is_none() || t.host.as_deref() == local => {
                        format!("{ip}:{port}").parse().ok()
                    }
                    _ => None,
                };
                endpoints.extend(addr);
            }
            endpoints.sort();
            entries.push(ServiceEntry {
                key: svc.key.clone(),
                vip: vips[&svc.key],
                port,
                endpoints,
            });
        }
        Ok(Some(ServiceMap {
            cluster: self.inner.cluster.clone(),
            services: entries,
            published,
        }))
    }

    /// Sends the map to every host when it changed (always when `force`: a host may have
    /// just connected).
    pub(crate) async fn sync_discovery(&self, force: bool) {
        let map = match self.service_map().await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot compute the service map");
                return;
            }
        };
        if !force && self.local().services_pushed.as_ref() == Some(&map) {
            return;
        }
        self.inner.hosts.push_services(&map).await;
        self.local().services_pushed = Some(map);
    }
}
