//! Where a new task runs: the hosts that are up and ACTIVE, what they have left, how many
//! tasks of the service they run, and the service's placement (`slipway_core::placement`
//! decides). A task that fits nowhere waits, PENDING, with the reason.

use slipway_core::model::{ContainerSpec, ServiceKey};
use slipway_core::placement::{self, HostView, Need, Placement, Unplaced};

use crate::{Controller, ControllerError};

/// What a task reserves on its host.
pub(crate) fn need_of(c: &ContainerSpec) -> Need {
    Need::of(c)
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
        let up = self.inner.hosts.up();
        let local = self.inner.hosts.local_id();
        let hosts = self.inner.store.host_views(&up, local, key).await?;
        Ok(Board { hosts })
    }
}
