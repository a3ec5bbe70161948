//! Start order on a first deploy (`depends_on`): the first tasks of a service wait until
//! every service it depends on (deployed in the same app environment) has a healthy task.
//! Only the service's first rollout waits; later deploys, restarts and replacements never
//! do, so a dependency's trouble never stops a running service from healing.

use slipway_core::model::{Deployment, RolloutState, ServiceKey, TaskHealth, TaskStatus};
use slipway_store::ServiceRecord;

use crate::{Controller, ControllerError};

/// How long a waiting service sleeps before it looks at its dependencies again.
pub(crate) const DEPENDS_RECHECK_MS: i64 = 500;

impl Controller {
    /// The dependency the first rollout of `svc` still waits for, if any.
    pub(crate) async fn unready_dependency(
        &self,
        svc: &ServiceRecord,
        deployments: &[Deployment],
    ) -> Result<Option<String>, ControllerError> {
        // The first rollout: the service's only deployment, still in progress.
        let [d] = deployments else {
            return Ok(None);
        };
        if d.state != RolloutState::InProgress || d.rollback_of.is_some() {
            return Ok(None);
        }
        let store = &self.inner.store;
        let key = &svc.key;
        let Some(td) = store.get_task_definition(&key.family(), d.revision).await? else {
            return Ok(None);
        };
        for dep in &td.container.depends_on {
            let dk = ServiceKey::new(&key.app, &key.env, dep);
            // A dependency that is not deployed here (or going away) is nothing to wait for.
            let Some(rec) = store.get_service(&dk).await? else {
                continue;
            };
            if rec.deleting || rec.desired_count == 0 {
                continue;
            }
            let ready = store.list_tasks(&dk, false).await?.iter().any(|t| {
                t.desired_running
                    && t.last_status == TaskStatus::Running
                    && t.health == TaskHealth::Healthy
            });
            if !ready {
                return Ok(Some(dep.clone()));
            }
        }
        Ok(None)
    }

    /// Records (once per wait) that `key` waits for `dep`; forgets a finished wait.
    pub(crate) async fn note_waiting(
        &self,
        key: &ServiceKey,
        dep: Option<&str>,
        now: i64,
    ) -> Result<(), ControllerError> {
        let new = {
            let mut l = self.local();
            match dep {
                Some(_) => l.waiting.insert(key.clone()),
                None => {
                    l.waiting.remove(key);
                    false
                }
            }
        };
        if let (true, Some(dep)) = (new, dep) {
            self.event(
                key,
                now,
                format!(
                    "(service {}) waits for service {dep} to have a healthy task before starting its first tasks (depends_on).",
                    key.name
                ),
            )
            .await?;
        }
        Ok(())
    }
}
