//! Where a new task runs: the hosts that are up and ACTIVE, what they have left, how many
//! tasks of the service they run, and the service's placement (`slipway_core::placement`
//! decides). A task that fits nowhere waits, PENDING, with the reason.

use std::collections::HashMap;

use slipway_core::model::{ContainerSpec, ServiceKey, Task};
use slipway_core::placement::{self, HostView, Need, Placement, Unplaced};

use crate::{Controller, ControllerError};

/// What a task reserves on its host.
pub(crate) fn need_of(c: &ContainerSpec) -> Need {
    Need {
        cpu: u64::from(c.cpu.unwrap_or(0)),
        memory: u64::from(c.memory.unwrap_or(0)),
    }
}

/// The hosts as placement sees them for one service; placing tasks updates them.
pub(crate) struct Board {
    hosts: Vec<HostView>,
}

impl Board {
    /// Picks a host for a task of `need`, and reserves it there.
    pub fn place(&mut self, need: Need, p: &Placement) -> Result<String, Unplaced> {
        let id = placement::place(&self.hosts, need, p, rand::random())?;
        if let Some(h) = self.hosts.iter_mut().find(|h| h.id == id) {
            h.cpu_used += need.cpu;
            h.memory_used += need.memory;
            h.service_tasks += 1;
        }
        Ok(id)
    }
}

impl Controller {
    /// The board for placing tasks of `key`: every known host that is up (its state and
    /// attributes from its record), with the resources its live tasks reserve.
    pub(crate) async fn board(&self, key: &ServiceKey) -> Result<Board, ControllerError> {
        let store = &self.inner.store;
        let up = self.inner.hosts.up();
        let local = self.inner.hosts.local_id().map(str::to_owned);
        let tasks: Vec<Task> = store.live_tasks().await?;
        // What each live task reserves: its revision's container (or its own, standalone).
        let ids: Vec<(String, u32)> = tasks
            .iter()
            .filter(|t| t.standalone.is_none())
            .map(|t| (t.service.family(), t.revision))
            .collect();
        let defs: HashMap<(String, u32), ContainerSpec> = store
            .get_task_definitions(&ids)
            .await?
            .into_iter()
            .map(|td| ((td.family, td.revision), td.container))
            .collect();
        let mut used: HashMap<String, (u64, u64, u32)> = HashMap::new();
        for t in &tasks {
            let Some(host) = t.host.clone().or_else(|| local.clone()) else {
                continue;
            };
            let need = match &t.standalone {
                Some(s) => need_of(&s.container),
                None => defs
                    .get(&(t.service.family(), t.revision))
                    .map(need_of)
                    .unwrap_or_default(),
            };
            let e = used.entry(host).or_default();
            e.0 += need.cpu;
            e.1 += need.memory;
            if &t.service == key {
                e.2 += 1;
            }
        }
        let hosts = store
            .list_hosts()
            .await?
            .into_iter()
            .filter(|h| up.contains(&h.id))
            .map(|h| {
                let (cpu_used, memory_used, service_tasks) =
                    used.get(&h.id).copied().unwrap_or_default();
                HostView {
                    id: h.id,
                    state: h.state,
                    attributes: h.attributes,
                    cpu: h.cpu,
                    memory: h.memory,
                    cpu_used,
                    memory_used,
                    service_tasks,
                }
            })
            .collect();
        Ok(Board { hosts })
    }
}
