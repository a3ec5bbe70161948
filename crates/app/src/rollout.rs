//! Manual control of a progressive rollout: promote (every request to the new version now,
//! the rest of the steps and bakes skipped) and abort (no request to the new version from
//! now on, then the rollback). Both change the target deployment's rollout record; the
//! controller carries it out (weights first, then tasks).

use slipway_core::model::{RolloutState, ServiceKey};
use slipway_core::planner;
use slipway_store::{Batch, Write, now_ms};

use crate::retry::retry;
use crate::services::ActionResult;
use crate::{App, AppError, Result};

/// Which manual step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutControl {
    Promote,
    Abort,
}

impl App {
    /// Promotes or aborts the service's rollout in progress.
    pub async fn control_rollout(
        &self,
        key: &ServiceKey,
        what: RolloutControl,
        who: &str,
    ) -> Result<ActionResult> {
        let _turn = self.queue(std::slice::from_ref(key)).await;
        retry(|| async {
            let svc = self.service(key).await?;
            let deps = self.store().active_deployments(key).await?;
            let running = planner::target(&deps)
                .filter(|d| d.state == RolloutState::InProgress)
                .cloned();
            let Some(mut d) = running else {
                return Err(AppError::conflict(
                    "NO_ROLLOUT",
                    format!("service {key} has no deployment in progress"),
                )
                .into());
            };
            let Some(r) = d.rollout.as_mut() else {
                return Err(AppError::conflict(
                    "NO_ROLLOUT",
                    format!(
                        "deployment {} of {key} is a plain rolling update: there is no step to promote or abort; use slipway rollback",
                        d.id
                    ),
                )
                .into());
            };
            if r.failed.is_some() {
                return Err(AppError::conflict(
                    "NO_ROLLOUT",
                    format!("deployment {} of {key} is already being rolled back", d.id),
                )
                .into());
            }
            let now = now_ms();
            let (tick, message) = match what {
                RolloutControl::Promote => (
                    r.promote(now),
                    format!("deployment {} promoted: every request goes to it", d.id),
                ),
                RolloutControl::Abort => {
                    let why = format!("aborted by {who}");
                    (
                        r.cut_off(now, why),
                        format!(
                            "deployment {} aborted: requests go back to the stable version, then it is rolled back",
                            d.id
                        ),
                    )
                }
            };
            d.updated_at = now;
            let mut batch = Batch::new().write(Write::Deployment(d.clone()));
            for e in tick.events {
                batch = batch.event(key, now, format!("(service {}) deployment {}: {e}", key.name, d.id));
            }
            if what == RolloutControl::Abort {
                batch = batch.event(
                    key,
                    now,
                    format!("(service {}) deployment {}: aborted by {who}", key.name, d.id),
                );
            }
            self.store().commit(batch.notify(key)).await?;
            Ok(ActionResult {
                service: key.clone(),
                deployment_id: Some(d.id.clone()),
                message,
                version: svc.version,
            })
        })
        .await
    }
}
