//! Use cases on services after they exist: scale, rollback, restart, delete (a service or a
//! whole app), and the ECS model's create, update and delete.

use serde::{Deserialize, Serialize};
use slipway_core::elb::TargetGroupBinding;
use slipway_core::model::{
    CircuitBreaker, ContainerSpec, DeploymentConfig, PullPolicy, RolloutState, ServiceKey,
    ServiceKind, TaskDefinition, validate_name,
};
use slipway_core::placement::Placement;
use slipway_store::{Batch, Outcome, RevisionChoice, ServiceRecord, now_ms};

use crate::deploy::{change_service, image_error};
use crate::retry::{Attempt, retry};
use crate::{App, AppError, ErrorKind, Result};

/// What rollback, restart, scale and delete did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResult {
    pub service: ServiceKey,
    pub deployment_id: Option<String>,
    pub message: String,
    /// The service record's version after the change.
    #[serde(default)]
    pub version: u64,
}

/// What deleting an app (or one of its environments) did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteAppResult {
    pub app: String,
    pub env: Option<String>,
    /// Services now being deleted (their tasks stop, then they are forgotten).
    pub services: Vec<ServiceKey>,
    /// Docker networks removed (those of environments with no service left).
    pub networks: Vec<String>,
    pub message: String,
}

/// A change of a service's deployment configuration through the ECS API: only the fields
/// given change.
#[derive(Debug, Clone, Default)]
pub struct ConfigPatch {
    pub maximum_percent: Option<u32>,
    pub minimum_healthy_percent: Option<u32>,
    /// `deploymentCircuitBreaker`: (enable, rollback).
    pub circuit_breaker: Option<(bool, bool)>,
    pub health_check_grace_period_ms: Option<u64>,
    /// `strategy` and its canary/linear settings, `bakeTimeInMinutes`: the whole
    /// progressive plan, resolved by the caller from the service's current one.
    pub progressive: Option<slipway_core::rollout::Progressive>,
}

impl ConfigPatch {
    /// `c` with the patch applied; refuses a configuration that lets no rollout progress.
    pub fn apply(&self, mut c: DeploymentConfig) -> Result<DeploymentConfig> {
        if let Some(m) = self.maximum_percent {
            c.maximum_percent = m;
        }
        if let Some(m) = self.minimum_healthy_percent {
            c.minimum_healthy_percent = m;
        }
        if let Some((enable, rollback)) = self.circuit_breaker {
            c.circuit_breaker = CircuitBreaker {
                enable,
                rollback,
                threshold: c.circuit_breaker.threshold,
            };
        }
        if let Some(g) = self.health_check_grace_period_ms {
            c.health_check_grace_period_ms = g;
        }
        if let Some(p) = self.progressive {
            // As in a manifest: the default deployment timeout is stretched by the bake
            // times; a timeout that is not the stretched default was chosen, and is kept.
            c.set_progressive(p);
        }
        if c.minimum_healthy_percent == 100 && c.maximum_percent == 100 {
            return Err(AppError::invalid(
                "minimumHealthyPercent 100 with maximumPercent 100 allows no deployment to progress",
            ));
        }
        Ok(c)
    }
}

/// Refuses a progressive plan the service cannot run: weights and analysis need ingress
/// routes on the container, and the bakes must fit in the deployment timeout.
fn check_progressive(c: &DeploymentConfig, container: &ContainerSpec) -> Result<()> {
    if c.progressive.is_plain() {
        return Ok(());
    }
    c.progressive
        .validate(c.timeout_ms, container.http_route.is_some())
        .map_err(|m| AppError::invalid(format!("deploymentConfiguration: {m}")))
}

/// An ECS `UpdateService`.
#[derive(Debug, Clone, Default)]
pub struct EcsServiceChange {
    /// The task definition to run from now on.
    pub task_definition: Option<TaskDefinition>,
    pub desired_count: Option<u32>,
    pub config: ConfigPatch,
    /// `forceNewDeployment`: re-pull the image and start a deployment even if nothing changed.
    pub force: bool,
    /// New placement rules (for the tasks placed from now on).
    pub placement: Option<Placement>,
    /// ECS `loadBalancers[]`: the target group the service is attached to from now on
    /// (`None`: unchanged; empty: detached). A change starts a deployment.
    pub load_balancers: Option<Vec<TargetGroupBinding>>,
    /// The host ports the task definition maps (a target group may send to one).
    pub host_ports: Vec<u16>,
}

/// ECS `CreateService`'s `loadBalancers[]` and the host ports of its task definition.
#[derive(Debug, Clone, Default)]
pub struct LoadBalancing {
    pub load_balancers: Vec<TargetGroupBinding>,
    pub host_ports: Vec<u16>,
}

fn check_placement(p: &Placement) -> Result<()> {
    slipway_core::placement::validate(p).map_err(|m| AppError::invalid(format!("placement: {m}")))
}

/// Largest desired count.
pub const MAX_COUNT: u32 = 1000;

impl App {
    /// Sets the desired count (no new deployment). With `expect`, only if the service is
    /// still at that version.
    pub async fn scale(
        &self,
        key: &ServiceKey,
        count: u32,
        expect: Option<u64>,
    ) -> Result<ActionResult> {
        if count > MAX_COUNT {
            return Err(AppError::invalid(format!(
                "count must be between 0 and {MAX_COUNT}, got {count}"
            )));
        }
        let _turn = self.queue(std::slice::from_ref(key)).await;
        retry(|| async {
            let svc = self.service(key).await?;
            self.expect_version(&svc, expect).await?;
            let before = svc.desired_count;
            if before == count {
                // Nothing to change: no write, no event.
                return Ok(ActionResult {
                    service: key.clone(),
                    deployment_id: None,
                    message: format!("desired count {count} (unchanged)"),
                    version: svc.version,
                });
            }
            let mut after = svc.clone();
            after.desired_count = count;
            let batch = change_service(Batch::new(), &svc, after, now_ms());
            let out = self.commit_expecting(batch, key, expect).await?;
            Ok(ActionResult {
                service: key.clone(),
                deployment_id: None,
                message: format!("desired count {before} → {count}"),
                version: out[0].version(),
            })
        })
        .await
    }

    /// Commits `batch`; a lost race is the caller's conflict when it named the version it
    /// expected, else a retry.
    pub(crate) async fn commit_expecting(
        &self,
        batch: Batch,
        key: &ServiceKey,
        expect: Option<u64>,
    ) -> Result<Vec<Outcome>, Attempt> {
        match self.store().commit(batch).await {
            Ok(out) => Ok(out),
            Err(e) if e.is_conflict() => match expect {
                Some(v) => Err(Attempt::Failed(self.lost_expected(key, v).await)),
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a deployment back to `to` (default: the newest successful revision other than
    /// the current one).
    pub async fn rollback(
        &self,
        key: &ServiceKey,
        to: Option<u32>,
        expect: Option<u64>,
    ) -> Result<ActionResult> {
        let _turn = self.queue(std::slice::from_ref(key)).await;
        retry(|| async {
            let svc = self.service(key).await?;
            self.expect_version(&svc, expect).await?;
            let revision = match to {
                Some(r) => {
                    if self
                        .store()
                        .get_task_definition(&key.family(), r)
                        .await?
                        .is_none()
                    {
                        return Err(AppError::not_found(format!(
                            "revision {}:{r}",
                            key.family()
                        ))
                        .into());
                    }
                    r
                }
                None => {
                    let deps = self.store().list_deployments(key, 50).await?;
                    deps.iter()
                        .find(|d| d.state == RolloutState::Succeeded && d.revision != svc.revision)
                        .map(|d| d.revision)
                        .ok_or_else(|| {
                            AppError::conflict(
                                "NO_PREVIOUS_REVISION",
                                format!("service {key} has no earlier successful revision to roll back to; name one with --to"),
                            )
                        })?
                }
            };
            let batch = self.start_deployment(
                Batch::new(),
                key,
                Some(&svc),
                svc.kind,
                svc.desired_count,
                svc.config,
                svc.placement.clone(),
                RevisionChoice::Existing(revision),
                format!(
                    "(service {}) rollback to revision {revision} started: deployment {{id}}.",
                    key.name
                ),
            );
            let out = self.commit_expecting(batch, key, expect).await?;
            Ok(deployed(key, &out, format!("rolling back to revision {revision}")))
        })
        .await
    }

    /// Replaces every task: re-resolves a mutable tag (a moved tag gives a new revision
    /// pinned to the new image) and re-reads secrets (their current versions), as ECS's
    /// forced new deployment does.
    pub async fn restart(&self, key: &ServiceKey, expect: Option<u64>) -> Result<ActionResult> {
        let _turn = self.queue(std::slice::from_ref(key)).await;
        retry(|| async {
            let svc = self.service(key).await?;
            self.expect_version(&svc, expect).await?;
            let td = self
                .store()
                .get_task_definition(&key.family(), svc.revision)
                .await?
                .ok_or_else(|| {
                    AppError::internal("task definition of the current revision is missing")
                })?;
            let info = self
                .engine()
                .resolve_image(&td.container.image, td.container.pull)
                .await
                .map_err(|e| image_error(&key.name, e))?;
            let pinned = info.pinned();
            let mut secrets = td.container.secrets.clone();
            for r in secrets.values_mut() {
                r.version = None;
            }
            self.pin_secrets(&key.name, &mut secrets).await?;
            let revision = if td.container.image_digest.as_deref() == Some(pinned.as_str())
                && td.container.secrets == secrets
            {
                RevisionChoice::Existing(td.revision)
            } else {
                let mut c = td.container.clone();
                c.image_digest = Some(pinned);
                c.secrets = secrets;
                RevisionChoice::Register {
                    container: Box::new(c),
                    source: td.source.clone(),
                    ecs: td.ecs.clone(),
                }
            };
            let batch = self.start_deployment(
                Batch::new(),
                key,
                Some(&svc),
                svc.kind,
                svc.desired_count,
                svc.config,
                svc.placement.clone(),
                revision,
                format!(
                    "(service {}) forced new deployment {{id}} (revision {{revision}}).",
                    key.name
                ),
            );
            let out = self.commit_expecting(batch, key, expect).await?;
            let d = deployed(key, &out, String::new());
            Ok(ActionResult {
                message: format!("restarting with revision {}", deployed_revision(&out)),
                ..d
            })
        })
        .await
    }

    /// Marks a service deleted: the controller stops its tasks, then forgets it.
    /// `active_only` refuses a service already being deleted (ECS's `DeleteService`);
    /// without `force` a service scaled above 0 is refused (ECS's rule).
    pub async fn delete_service(
        &self,
        key: &ServiceKey,
        expect: Option<u64>,
        active_only: bool,
        force: bool,
    ) -> Result<(ActionResult, ServiceRecord)> {
        let _turn = self.queue(std::slice::from_ref(key)).await;
        retry(|| async {
            let svc = self.service(key).await?;
            self.expect_version(&svc, expect).await?;
            if svc.deleting {
                if active_only {
                    return Err(AppError::conflict(
                        "SERVICE_NOT_ACTIVE",
                        "Service was not ACTIVE.",
                    )
                    .into());
                }
                return Ok((deleting(key, svc.version), svc));
            }
            if !force && svc.desired_count > 0 {
                return Err(AppError::invalid(
                    "The service cannot be stopped while it is scaled above 0.",
                )
                .into());
            }
            let mut after = svc.clone();
            after.deleting = true;
            let batch = change_service(Batch::new(), &svc, after.clone(), now_ms());
            let out = self.commit_expecting(batch, key, expect).await?;
            after.version = out[0].version();
            Ok((deleting(key, after.version), after))
        })
        .await
    }

    /// Deletes every service of an app (or of one environment) in one transaction, stops
    /// its standalone tasks, and removes the networks of environments with nothing left.
    /// Deleting what does not exist is not an error.
    pub async fn delete_app(&self, app: &str, env: Option<&str>) -> Result<DeleteAppResult> {
        if let Some(e) = env {
            validate_name(e).map_err(|e| AppError::invalid(format!("environment: {e}")))?;
        }
        self.services_of(app, env).await?;
        let keys = retry(|| async {
            let services = self.services_of(app, env).await?;
            let now = now_ms();
            let mut batch = Batch::new();
            for svc in &services {
                batch = batch.notify(&svc.key);
                if svc.deleting {
                    continue;
                }
                let mut after = svc.clone();
                after.deleting = true;
                batch = change_service(batch, svc, after, now);
            }
            self.store().commit(batch).await?;
            Ok(services.into_iter().map(|s| s.key).collect::<Vec<_>>())
        })
        .await?;
        // Standalone tasks (ECS RunTask) of the app are stopped too.
        for t in self.store().live_standalone_tasks().await? {
            if t.service.app == app && env.is_none_or(|e| e == t.service.env) {
                self.stop_task(&t.id, "The app was deleted").await?;
            }
        }
        let mut networks = Vec::new();
        if keys.is_empty() {
            // Nothing left to stop: remove the environment's network(s) if any remain.
            networks = self
                .engine()
                .remove_app_networks(self.cluster(), app, env)
                .await
                .map_err(|e| {
                    AppError::conflict(
                        "NETWORK_IN_USE",
                        format!("cannot remove the networks of app {app}: {e}; stop what still uses them (docker network inspect)"),
                    )
                })?;
        }
        let message = if keys.is_empty() && networks.is_empty() {
            "nothing to delete".to_owned()
        } else if keys.is_empty() {
            format!("removed {} network(s)", networks.len())
        } else {
            format!("deleting {} service(s)", keys.len())
        };
        Ok(DeleteAppResult {
            app: app.to_owned(),
            env: env.map(str::to_owned),
            services: keys,
            networks,
            message,
        })
    }

    /// ECS `CreateService`: a new service running `td`.
    pub async fn create_ecs_service(
        &self,
        key: &ServiceKey,
        td: &TaskDefinition,
        desired_count: u32,
        config: &ConfigPatch,
        placement: &Placement,
        lb: &LoadBalancing,
    ) -> Result<ServiceRecord> {
        if td.deregistered_at.is_some() {
            return Err(inactive(td));
        }
        check_placement(placement)?;
        let config = config.apply(DeploymentConfig::default())?;
        let attached = self
            .attach_target_groups(
                key,
                td.container.clone(),
                &lb.host_ports,
                Some(&lb.load_balancers),
                None,
            )
            .await?;
        check_progressive(&config, &attached)?;
        let container = self.pin_image(attached, false).await;
        let _turn = self.queue(std::slice::from_ref(key)).await;
        retry(|| async {
            if self.store().get_service(key).await?.is_some() {
                return Err(AppError::invalid("Creation of service was not idempotent.").into());
            }
            let batch = self
                .deploy_task_definition(
                    key,
                    None,
                    td,
                    &container,
                    (desired_count, config, placement.clone()),
                )
                .await?;
            self.store().commit(batch).await?;
            Ok(self.service(key).await?)
        })
        .await
    }

    /// ECS `UpdateService`: a new task definition or `force` starts a deployment; a count
    /// or configuration change alone applies without one.
    pub async fn update_ecs_service(
        &self,
        key: &ServiceKey,
        change: &EcsServiceChange,
    ) -> Result<ServiceRecord> {
        if let Some(td) = &change.task_definition
            && td.deregistered_at.is_some()
        {
            return Err(inactive(td));
        }
        if let Some(p) = &change.placement {
            check_placement(p)?;
        }
        let _turn = self.queue(std::slice::from_ref(key)).await;
        retry(|| async {
            let svc = self.service(key).await?;
            if svc.deleting {
                return Err(
                    AppError::conflict("SERVICE_NOT_ACTIVE", "Service was not ACTIVE.").into(),
                );
            }
            let config = change.config.apply(svc.config)?;
            let current_source = self.source_of(key, svc.revision).await?;
            let changes_td = change
                .task_definition
                .as_ref()
                .is_some_and(|t| t.source.clone().unwrap_or_else(|| t.id()) != current_source);
            let running = self
                .store()
                .get_task_definition(&key.family(), svc.revision)
                .await?
                .map(|t| t.container);
            let current_binding = running
                .as_ref()
                .and_then(|c| c.http_route.as_ref())
                .and_then(|r| r.target_group.clone());
            // A new attachment starts a deployment (its tasks take the group's route and
            // health check).
            let changes_lb = change
                .load_balancers
                .as_ref()
                .is_some_and(|l| l.first() != current_binding.as_ref());
            if !config.progressive.is_plain() {
                let next = match &change.task_definition {
                    Some(t) if changes_td || changes_lb => Some(
                        self.attach_target_groups(
                            key,
                            t.container.clone(),
                            &change.host_ports,
                            change.load_balancers.as_deref(),
                            running.as_ref(),
                        )
                        .await?,
                    ),
                    _ => running.clone(),
                };
                if let Some(c) = next {
                    check_progressive(&config, &c)?;
                }
            }
            let desired = change.desired_count.unwrap_or(svc.desired_count);
            let placement = change
                .placement
                .clone()
                .unwrap_or_else(|| svc.placement.clone());
            // New placement rules place every task anew: a deployment (as on ECS).
            let batch = if changes_td || changes_lb || change.force || placement != svc.placement {
                let td = match &change.task_definition {
                    Some(t) => t.clone(),
                    None => self.find_source(&current_source).await?,
                };
                // The attachment is kept (and its route recomputed from the rules of now)
                // unless the request changes it.
                let attached = self
                    .attach_target_groups(
                        key,
                        td.container.clone(),
                        &change.host_ports,
                        change.load_balancers.as_deref(),
                        running.as_ref(),
                    )
                    .await?;
                let container = self.pin_image(attached, change.force).await;
                self.deploy_task_definition(
                    key,
                    Some(&svc),
                    &td,
                    &container,
                    (desired, config, placement),
                )
                .await?
            } else if desired != svc.desired_count || config != svc.config {
                let mut updated = svc.clone();
                updated.desired_count = desired;
                updated.config = config;
                change_service(Batch::new(), &svc, updated, now_ms())
            } else {
                Batch::new()
            };
            self.store().commit(batch).await?;
            Ok(self.service(key).await?)
        })
        .await
    }

    /// The services of an app (or of one of its environments), by key.
    pub(crate) async fn services_of(
        &self,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<ServiceRecord>> {
        validate_name(app).map_err(|e| AppError::invalid(format!("app: {e}")))?;
        Ok(self
            .store()
            .list_services(Some(app))
            .await?
            .into_iter()
            .filter(|s| env.is_none_or(|e| e == s.key.env))
            .collect())
    }

    /// The ECS task definition (`family:revision`) a service revision runs.
    pub async fn source_of(&self, key: &ServiceKey, revision: u32) -> Result<String> {
        Ok(
            match self
                .store()
                .get_task_definition(&key.family(), revision)
                .await?
            {
                Some(td) => td.source.clone().unwrap_or_else(|| td.id()),
                None => format!("{}:{revision}", key.family()),
            },
        )
    }

    async fn find_source(&self, source: &str) -> Result<TaskDefinition> {
        let (family, revision) = source
            .rsplit_once(':')
            .and_then(|(f, r)| Some((f, r.parse::<u32>().ok()?)))
            .ok_or_else(|| AppError::not_found(format!("task definition {source}")))?;
        self.store()
            .get_task_definition(family, revision)
            .await?
            .ok_or_else(|| AppError::not_found(format!("task definition {source}")))
    }

    /// The batch that starts a deployment of `td` for a service through the ECS model (with
    /// the service's desired count, configuration and placement from then on): a
    /// service runs a pinned copy of another family's task definition in its own family,
    /// registered only when no existing revision runs the same container.
    async fn deploy_task_definition(
        &self,
        key: &ServiceKey,
        current: Option<&ServiceRecord>,
        td: &TaskDefinition,
        container: &ContainerSpec,
        (desired_count, config, placement): (u32, DeploymentConfig, Placement),
    ) -> Result<Batch> {
        let source = td.source.clone().unwrap_or_else(|| td.id());
        let current_td = match current {
            Some(s) => {
                self.store()
                    .get_task_definition(&key.family(), s.revision)
                    .await?
            }
            None => None,
        };
        let revision = match current_td.filter(|c| {
            &c.container == container && c.source.clone().unwrap_or_else(|| c.id()) == source
        }) {
            Some(c) => RevisionChoice::Existing(c.revision),
            None if td.family == key.family() && &td.container == container => {
                RevisionChoice::Existing(td.revision)
            }
            None => RevisionChoice::Register {
                container: Box::new(container.clone()),
                source: Some(source.clone()),
                ecs: td.ecs.clone(),
            },
        };
        Ok(self.start_deployment(
            Batch::new(),
            key,
            current,
            current.map_or(ServiceKind::BackendService, |s| s.kind),
            desired_count,
            config,
            placement,
            revision,
            format!(
                "(service {}) deployment ecs-svc/{{id}} started: task definition {source} (revision {{revision}}).",
                key.name
            ),
        ))
    }

    /// Pins the image of `c` to what the engine resolves now (`repull`: pull a tag that
    /// names a registry first). An image that cannot be resolved stays unpinned: its tasks
    /// fail to start and the deployment fails visibly, as on ECS.
    pub(crate) async fn pin_image(&self, mut c: ContainerSpec, repull: bool) -> ContainerSpec {
        self.pin_one(&mut c, repull).await;
        for s in &mut c.sidecars {
            Box::pin(self.pin_one(&mut s.container, repull)).await;
        }
        c
    }

    async fn pin_one(&self, c: &mut ContainerSpec, repull: bool) {
        let mut info = None;
        if repull && slipway_runtime::registry_host(&c.image).is_some() {
            match self
                .engine()
                .resolve_image(&c.image, PullPolicy::Always)
                .await
            {
                Ok(i) => info = Some(i),
                Err(e) => {
                    tracing::info!(image = %c.image, error = %e, "pull failed; using the local image")
                }
            }
        }
        if info.is_none() {
            match self
                .engine()
                .resolve_image(&c.image, PullPolicy::Missing)
                .await
            {
                Ok(i) => info = Some(i),
                Err(e) => tracing::warn!(image = %c.image, error = %e, "image not available"),
            }
        }
        c.image_digest = info.map(|i| i.pinned());
    }
}

pub(crate) fn inactive(td: &TaskDefinition) -> AppError {
    AppError::new(
        ErrorKind::Invalid,
        "TASK_DEFINITION_INACTIVE",
        format!("TaskDefinition {} is inactive", td.id()),
    )
}

fn deleting(key: &ServiceKey, version: u64) -> ActionResult {
    ActionResult {
        service: key.clone(),
        deployment_id: None,
        message: "deleting".into(),
        version,
    }
}

fn deployed_revision(out: &[Outcome]) -> u32 {
    match out.first() {
        Some(Outcome::Deployed { deployment, .. }) => deployment.revision,
        _ => 0,
    }
}

fn deployed(key: &ServiceKey, out: &[Outcome], message: String) -> ActionResult {
    match out.first() {
        Some(Outcome::Deployed {
            deployment,
            service_version,
            ..
        }) => ActionResult {
            service: key.clone(),
            deployment_id: Some(deployment.id.clone()),
            message,
            version: *service_version,
        },
        _ => ActionResult {
            service: key.clone(),
            deployment_id: None,
            message,
            version: 0,
        },
    }
}
