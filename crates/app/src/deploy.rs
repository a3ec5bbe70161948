//! Deploy and diff: checking and resolving service specs (validation, route conflicts,
//! images pinned to digests, secrets pinned to versions), and the one way a rollout starts
//! ([`App::start_deployment`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_core::diff::{Current, DiffStatus, ServiceDiff, diff_service};
use slipway_core::model::{
    DeploymentConfig, HttpRoute, RolloutState, SecretRef, ServiceKey, ServiceKind, ServiceSpec,
};
use slipway_runtime::RuntimeError;
use slipway_store::{Batch, NewDeployment, RevisionChoice, ServiceRecord, Write, now_ms};

use crate::retry::{Attempt, retry};
use crate::{App, AppError, Result};

/// What a deploy did to one service; spelt as the CLI prints outcomes (`UNCHANGED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DeployOutcome {
    /// A new deployment started.
    #[serde(alias = "deploying")]
    Deploying,
    /// Only the desired count or deployment settings changed: no new deployment.
    #[serde(alias = "scaled")]
    Scaled,
    /// Nothing changed.
    #[serde(alias = "unchanged")]
    Unchanged,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResult {
    pub service: ServiceKey,
    pub outcome: DeployOutcome,
    pub deployment_id: Option<String>,
    pub revision: u32,
    pub image_digest: Option<String>,
    /// The service record's version after the deploy.
    #[serde(default)]
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffResult {
    #[serde(flatten)]
    pub diff: ServiceDiff,
    /// Why a deploy would start a deployment although nothing differs, and the like.
    pub note: Option<String>,
}

/// What is deployed now for a service: its record, current revision's task definition and
/// newest deployment.
struct Deployed {
    record: Option<ServiceRecord>,
    container: Option<slipway_core::model::TaskDefinition>,
    latest: Option<slipway_core::model::Deployment>,
}

impl App {
    async fn current(&self, key: &ServiceKey) -> Result<Deployed> {
        let store = self.store();
        let record = store.get_service(key).await?;
        let container = match &record {
            Some(svc) => {
                store
                    .get_task_definition(&key.family(), svc.revision)
                    .await?
            }
            None => None,
        };
        let latest = store.list_deployments(key, 1).await?.into_iter().next();
        Ok(Deployed {
            record,
            container,
            latest,
        })
    }

    /// Deploys several services as one intent: every service that changed gets its new
    /// deployment (or its new count and settings) in one transaction, or none does.
    /// `force` starts a new deployment even when nothing changed. With `expect`, a service
    /// must still be at the version named for it.
    pub async fn deploy(
        &self,
        services: &[ServiceSpec],
        force: bool,
        expect: &BTreeMap<String, u64>,
    ) -> Result<Vec<DeployResult>> {
        let resolve_from = now_ms();
        let specs = self.checked_specs(services).await?;
        let resolved_at = now_ms();
        let keys: Vec<ServiceKey> = specs.iter().map(|s| s.key.clone()).collect();
        let _turn = self.queue(&keys).await;
        let results = retry(|| self.deploy_once(&specs, force, expect)).await?;
        self.trace_resolve(&specs, &results, resolve_from, resolved_at);
        Ok(results)
    }

    /// The `resolve` span (checks, image pinned to a digest, secrets to versions) of each
    /// deployment started, in the deployment's trace (see `slipway_otel::deployment_trace`).
    /// It ends before the deployment record is written, so it starts before its root.
    fn trace_resolve(&self, specs: &[ServiceSpec], results: &[DeployResult], from: i64, to: i64) {
        let Some(traces) = self.inner.traces.get().filter(|t| t.enabled()) else {
            return;
        };
        for (spec, r) in specs.iter().zip(results) {
            let (DeployOutcome::Deploying, Some(id)) = (&r.outcome, &r.deployment_id) else {
                continue;
            };
            let (trace, root) = slipway_otel::deployment_trace(id);
            let mut span = slipway_otel::Span::between_ms(
                trace,
                slipway_otel::SpanId::from_name(&format!("{id}/resolve")),
                Some(root),
                "resolve",
                from,
                to,
            )
            .attr("slipway.service", spec.key.to_string())
            .attr("slipway.deployment", id.as_str())
            .attr("slipway.revision", r.revision)
            .attr("container.image.name", spec.container.image.as_str());
            if let Some(d) = &spec.container.image_digest {
                span = span.attr("container.image.digest", d.as_str());
            }
            traces.export(span);
        }
    }

    async fn deploy_once(
        &self,
        specs: &[ServiceSpec],
        force: bool,
        expect: &BTreeMap<String, u64>,
    ) -> Result<Vec<DeployResult>, Attempt> {
        let now = now_ms();
        let mut batch = Batch::new();
        // Per spec: its result, and the index of its deploy write (when it starts one).
        let mut results: Vec<(DeployResult, Option<usize>, Option<usize>)> = Vec::new();
        for spec in specs {
            let cur = self.current(&spec.key).await?;
            if let Some(svc) = &cur.record {
                self.expect_version(svc, expect.get(&spec.key.name).copied())
                    .await?;
            } else if expect.get(&spec.key.name).is_some_and(|v| *v != 0) {
                return Err(AppError::not_found(format!("service {}", spec.key)).into());
            }
            let count = spec.count_for(cur.record.as_ref().map(|s| s.desired_count));
            let same_container = cur
                .container
                .as_ref()
                .is_some_and(|td| td.container == spec.container);
            let healthy_history = cur
                .latest
                .as_ref()
                .is_some_and(|d| d.state != RolloutState::Failed);
            let result = |outcome, deployment_id, revision, version| DeployResult {
                service: spec.key.clone(),
                outcome,
                deployment_id,
                revision,
                image_digest: spec.container.image_digest.clone(),
                version,
            };
            if let Some(svc) = cur
                .record
                .as_ref()
                // New placement rules place every task anew: a deployment.
                .filter(|s| {
                    same_container
                        && !s.deleting
                        && !force
                        && healthy_history
                        && s.placement == spec.placement
                })
            {
                let latest = cur.latest.as_ref().map(|d| d.id.clone());
                if svc.desired_count == count
                    && svc.config == spec.deployment
                    && svc.kind == spec.kind
                {
                    results.push((
                        result(DeployOutcome::Unchanged, latest, svc.revision, svc.version),
                        None,
                        None,
                    ));
                    batch = batch.notify(&spec.key);
                    continue;
                }
                let mut updated = svc.clone();
                updated.desired_count = count;
                updated.config = spec.deployment;
                updated.kind = spec.kind;
                let at = batch.writes.len();
                batch = change_service(batch, svc, updated, now);
                results.push((
                    result(DeployOutcome::Scaled, latest, svc.revision, 0),
                    None,
                    Some(at),
                ));
                continue;
            }
            let revision = match &cur.container {
                Some(td) if same_container => RevisionChoice::Existing(td.revision),
                _ => RevisionChoice::Register {
                    container: Box::new(spec.container.clone()),
                    source: None,
                    ecs: None,
                },
            };
            let at = batch.writes.len();
            batch = self.start_deployment(
                batch,
                &spec.key,
                cur.record.as_ref(),
                spec.kind,
                count,
                spec.deployment,
                spec.placement.clone(),
                revision,
                format!(
                    "(service {}) deployment {{id}} started: revision {{revision}}.",
                    spec.key.name
                ),
            );
            results.push((result(DeployOutcome::Deploying, None, 0, 0), Some(at), None));
        }
        let out = self.store().commit(batch).await?;
        Ok(results
            .into_iter()
            .map(|(mut r, deploy_at, service_at)| {
                if let Some(slipway_store::Outcome::Deployed {
                    deployment,
                    service_version,
                    ..
                }) = deploy_at.and_then(|i| out.get(i))
                {
                    r.deployment_id = Some(deployment.id.clone());
                    r.revision = deployment.revision;
                    r.version = *service_version;
                }
                if let Some(o) = service_at.and_then(|i| out.get(i)) {
                    r.version = o.version();
                }
                r
            })
            .collect())
    }

    /// Adds to `batch` the start of a rollout of `key`: the deployment (registering its
    /// revision when asked), the service's new revision, count and settings, its event and
    /// the controller's wake-up. `event` may name `{id}` and `{revision}`. The one way every
    /// verb (deploy, rollback, restart, ECS create/update) starts a rollout.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_deployment(
        &self,
        batch: Batch,
        key: &ServiceKey,
        current: Option<&ServiceRecord>,
        kind: ServiceKind,
        desired_count: u32,
        config: DeploymentConfig,
        placement: slipway_core::placement::Placement,
        revision: RevisionChoice,
        event: String,
    ) -> Batch {
        let id = format!("d-{}", slipway_store::random_id(6));
        let event = event.replace("{id}", &id);
        batch
            .write(Write::Deploy(NewDeployment {
                id,
                key: key.clone(),
                kind,
                desired_count,
                config,
                placement,
                revision,
                rollback_of: None,
                now: now_ms(),
                service_version: current.map_or(0, |s| s.version),
                event: Some(event),
            }))
            .notify(key)
    }

    /// Checks the specs of a deploy (or diff) request completely and resolves them:
    /// validation, route conflicts, images and secrets. Nothing is changed, so bad input
    /// changes nothing.
    pub(crate) async fn checked_specs(&self, services: &[ServiceSpec]) -> Result<Vec<ServiceSpec>> {
        if services.is_empty() {
            return Err(AppError::invalid("no service in the request"));
        }
        for s in services {
            s.validate().map_err(AppError::invalid)?;
        }
        self.check_routes(services).await?;
        let mut specs = services.to_vec();
        for s in &mut specs {
            self.resolve_spec(s).await?;
        }
        Ok(specs)
    }

    /// Pins what a spec names to what it will run: the image to a digest (refusing one
    /// built for another platform) and each secret to a version.
    async fn resolve_spec(&self, s: &mut ServiceSpec) -> Result<()> {
        // A client that pushed the image names its digest: deploy exactly that.
        let wanted = match s.container.image_digest.take() {
            Some(d) if d.starts_with("sha256:") && !s.container.image.contains('@') => {
                format!("{}@{d}", slipway_runtime::split_tag(&s.container.image).0)
            }
            _ => s.container.image.clone(),
        };
        let info = self
            .engine()
            .resolve_image(&wanted, s.container.pull)
            .await
            .map_err(|e| image_error(&s.key.name, e))?;
        s.container.image_digest = Some(info.pinned());
        for sc in &mut s.container.sidecars {
            let wanted = sc.container.image.clone();
            let info = self
                .engine()
                .resolve_image(&wanted, sc.container.pull)
                .await
                .map_err(|e| image_error(&format!("{} (container {})", s.key.name, sc.name), e))?;
            sc.container.image_digest = Some(info.pinned());
            self.pin_secrets(&s.key.name, &mut sc.container.secrets)
                .await?;
        }
        self.pin_secrets(&s.key.name, &mut s.container.secrets)
            .await
    }

    /// Pins each secret reference to a version: the current one unless the request names
    /// one. A missing secret refuses the deploy.
    pub(crate) async fn pin_secrets(
        &self,
        service: &str,
        secrets: &mut BTreeMap<String, SecretRef>,
    ) -> Result<()> {
        for (var, r) in secrets.iter_mut() {
            slipway_core::manifest::check_secret_name(&r.name)
                .map_err(|m| AppError::invalid(format!("service {service}: secrets.{var}: {m}")))?;
            let found = match r.version {
                Some(v) => self
                    .store()
                    .get_secret(&r.name, Some(v))
                    .await?
                    .map(|(v, _)| v),
                None => self.store().current_secret_version(&r.name).await?,
            };
            let Some(version) = found else {
                return Err(AppError::unprocessable(
                    "SECRET_NOT_FOUND",
                    format!(
                        "service {service}: secret {:?} (variable {var}) does not exist; set it with `slipway secret set {}`",
                        r.name, r.name
                    ),
                ));
            };
            r.version = Some(version);
        }
        Ok(())
    }

    /// Refuses a deploy whose ingress routes (host + path) are already claimed by another
    /// service, or that would take requests from another app's shorter route on the same
    /// hosts (`/users` under another app's `/`) without `http.allow_shadowing`.
    async fn check_routes(&self, specs: &[ServiceSpec]) -> Result<()> {
        let asked: Vec<(ServiceKey, HttpRoute)> = specs
            .iter()
            .filter_map(|s| Some((s.key.clone(), s.container.http_route.clone()?)))
            .collect();
        self.check_route_claims(&asked).await
    }

    /// [`Self::check_routes`] of the routes services would have (the services of a deploy,
    /// or one attached to a target group through ECS).
    pub(crate) async fn check_route_claims(&self, specs: &[(ServiceKey, HttpRoute)]) -> Result<()> {
        // What other services hold now, then each asked route in turn (a route asked
        // earlier in the request holds against a later one).
        let mut held: Vec<(ServiceKey, String, String)> = Vec::new();
        for svc in self.store().list_services(None).await? {
            if svc.deleting || specs.iter().any(|(k, _)| *k == svc.key) {
                continue;
            }
            if let Some(td) = self
                .store()
                .get_task_definition(&svc.key.family(), svc.revision)
                .await?
                && let Some(r) = &td.container.http_route
            {
                for (host, path) in route_claims(r) {
                    held.push((svc.key.clone(), host, path));
                }
            }
        }
        for (key, r) in specs {
            for (host, path) in route_claims(r) {
                let on = if host.is_empty() {
                    "any host".to_owned()
                } else {
                    host.clone()
                };
                for (holder, h, p) in &held {
                    if *h != host || holder == key {
                        continue;
                    }
                    if *p == path {
                        return Err(AppError::conflict(
                            "ROUTE_CONFLICT",
                            format!(
                                "route {path} on {on} is already used by service {holder}; choose another http.path or http.alias for {}",
                                key
                            ),
                        ));
                    }
                    if holder.app != key.app && !r.allow_shadowing && is_under(&path, p) {
                        return Err(AppError::conflict(
                            "ROUTE_SHADOWS",
                            format!(
                                "route {path} on {on} of service {} would take requests from route {p} of service {holder} (app {}); choose another http.path or http.alias for {}, or set http.allow_shadowing: true to take them",
                                key, holder.app, key.name
                            ),
                        ));
                    }
                }
                held.push((key.clone(), host, path));
            }
        }
        Ok(())
    }

    /// What a deploy with the same specs would change. Validates and resolves images
    /// exactly as a deploy does, and writes nothing.
    pub async fn diff(&self, services: &[ServiceSpec]) -> Result<Vec<DiffResult>> {
        let specs = self.checked_specs(services).await?;
        let mut results = Vec::new();
        for spec in specs {
            let cur = self.current(&spec.key).await?;
            let record = cur.record.filter(|s| !s.deleting);
            let mut d = match (&record, &cur.container) {
                (Some(svc), Some(td)) => diff_service(
                    Some(Current {
                        kind: svc.kind,
                        desired_count: svc.desired_count,
                        config: &svc.config,
                        container: &td.container,
                        placement: &svc.placement,
                    }),
                    &spec,
                ),
                _ => diff_service(None, &spec),
            };
            let mut note = None;
            if d.status != DiffStatus::New
                && !d.new_deployment
                && let Some(l) = cur.latest.filter(|l| l.state == RolloutState::Failed)
            {
                d.new_deployment = true;
                d.status = DiffStatus::Changed;
                note = Some(format!(
                    "the last deployment ({}) failed, so a deploy starts a new one",
                    l.id
                ));
            }
            results.push(DiffResult { diff: d, note });
        }
        Ok(results)
    }
}

/// The (host, path) pairs a route claims: one per alias (`""` for any host) and path, the
/// host lower-cased and the path without a trailing `/`.
fn route_claims(route: &HttpRoute) -> Vec<(String, String)> {
    let hosts: Vec<String> = if route.aliases.is_empty() {
        vec![String::new()]
    } else {
        route
            .aliases
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect()
    };
    let mut out = Vec::new();
    for p in route.paths() {
        let path = if p.len() > 1 {
            p.trim_end_matches('/').to_owned()
        } else {
            p.clone()
        };
        for h in &hosts {
            out.push((h.clone(), path.clone()));
        }
    }
    out
}

/// Whether `path` lies strictly under `prefix` on a segment boundary (the ingress' longest
/// prefix match would give it `path`'s requests).
fn is_under(path: &str, prefix: &str) -> bool {
    path != prefix
        && (prefix == "/"
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// An image that cannot be used, as the caller should read it.
pub(crate) fn image_error(service: &str, e: RuntimeError) -> AppError {
    match e {
        RuntimeError::PlatformMismatch { .. } => {
            AppError::unprocessable("PLATFORM_MISMATCH", format!("service {service}: {e}"))
        }
        e => AppError::unprocessable(
            "IMAGE_UNAVAILABLE",
            format!(
                "service {service}: {e}; build or load the image on this host, or check its name and tag"
            ),
        ),
    }
}

/// Adds to `batch` a change of a service's record without a new deployment (its count, its
/// settings, its deletion), the events that say what changed, and the controller's wake-up:
/// the one way a service's desired state changes in place.
pub(crate) fn change_service(
    batch: Batch,
    before: &ServiceRecord,
    mut after: ServiceRecord,
    now: i64,
) -> Batch {
    after.updated_at = now;
    let key = after.key.clone();
    let mut b = batch.write(Write::Service(after.clone()));
    if before.desired_count != after.desired_count {
        b = b.event(
            &key,
            now,
            format!(
                "(service {}) desired count changed from {} to {}.",
                key.name, before.desired_count, after.desired_count
            ),
        );
    }
    if after.deleting && !before.deleting {
        b = b.event(
            &key,
            now,
            format!("(service {}) is being deleted.", key.name),
        );
    }
    b.notify(&key)
}

#[cfg(test)]
mod tests {
    use super::is_under;

    #[test]
    fn under_is_a_longer_prefix_on_a_segment_boundary() {
        assert!(is_under("/users", "/"));
        assert!(is_under("/users/admin", "/users"));
        assert!(!is_under("/users", "/users"));
        assert!(!is_under("/usersx", "/users"));
        assert!(!is_under("/", "/users"));
        assert!(!is_under("/", "/"));
    }
}
