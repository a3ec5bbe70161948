//! One check cycle over every watched compose service: check the registry digest, and on a
//! new one pull, recreate the service through compose with the digest pinned, wait for it to
//! be healthy (bounded), roll back on failure, prune old images, record state, notify.
//! Every service is handled on its own: one broken service never stops the others.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use slipway_runtime::{DockerRuntime, PullAuth};
use tracing::{debug, error, info, warn};

use crate::auth::{Credentials, DockerConfig};
use crate::compose::{ComposeCmd, HealthDecl, Model, Project, ServiceDef, override_yaml};
use crate::decide::{self, Check, Observed, Outcome, Verdict};
use crate::reference::ImageRef;
use crate::registry::{CheckError, RegistryClient};
use crate::state::{Deployed, ServiceState, State, StateStore};
use crate::webhook;

/// How the watcher behaves.
#[derive(Debug, Clone)]
pub struct Config {
    pub projects: Vec<Project>,
    /// Services watched by name in every project, besides the labelled ones.
    pub services: Vec<String>,
    /// Services watched by name in one project (from a watch list file).
    pub project_services: HashMap<String, Vec<String>>,
    pub health_timeout: Duration,
    /// Without a health check: how long a new container must stay up.
    pub settle: Duration,
    /// Previous images kept for rollback.
    pub keep: usize,
    pub webhook: Option<String>,
    pub compose: ComposeCmd,
}

/// What happened to one service in a cycle.
#[derive(Debug, Clone)]
pub struct ServiceReport {
    pub project: String,
    pub service: String,
    pub image: String,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub old_digest: Option<String>,
    pub new_digest: Option<String>,
}

/// What a cycle did.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    pub services: Vec<ServiceReport>,
    /// Problems outside any one service (a broken compose file, a state file).
    pub errors: Vec<String>,
    pub registry_requests: u64,
    pub images_checked: usize,
}

impl CycleReport {
    pub fn exit_code(&self) -> u8 {
        let o: Vec<Outcome> = self.services.iter().map(|s| s.outcome).collect();
        decide::exit_code(&o, self.errors.len())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The watcher: engine, registry client, state.
pub struct Watcher {
    cfg: Config,
    docker: DockerRuntime,
    registry: RegistryClient,
    store: StateStore,
    /// For webhooks (an error when the system's CA roots cannot be loaded).
    http: Result<reqwest::Client, String>,
    /// Compose models by project, re-read only when a file changes.
    models: std::sync::Mutex<HashMap<String, (Vec<Fingerprint>, Model)>>,
}

/// What identifies a version of a file: path, size, modification time.
type Fingerprint = (std::path::PathBuf, u64, Option<std::time::SystemTime>);

fn fingerprint(project: &Project) -> Vec<Fingerprint> {
    project
        .files
        .iter()
        .cloned()
        .chain(std::iter::once(project.dir.join(".env")))
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            let len = m.as_ref().map_or(0, std::fs::Metadata::len);
            let mtime = m.and_then(|m| m.modified().ok());
            (p, len, mtime)
        })
        .collect()
}

/// A failure while updating, with the text for logs and the webhook.
struct Fail(String);

impl Watcher {
    pub fn new(
        cfg: Config,
        docker: DockerRuntime,
        registry: RegistryClient,
        store: StateStore,
    ) -> Watcher {
        Watcher {
            cfg,
            docker,
            registry,
            store,
            http: crate::tls::https_client(Duration::from_secs(10)).map_err(|e| e.to_string()),
            models: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// One pass over every project and watched service.
    pub async fn cycle(&self) -> CycleReport {
        let mut report = CycleReport::default();
        let requests_before = self.registry.requests();
        let mut state = match self.store.load() {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "cannot read the watch state; starting from empty state");
                State::default()
            }
        };
        let docker_config = DockerConfig::load_default().map_err(|e| e.to_string());
        let mut digests: HashMap<String, Result<String, CheckError>> = HashMap::new();
        for project in &self.cfg.projects {
            let fp = fingerprint(project);
            let cached = self
                .models
                .lock()
                .unwrap()
                .get(&project.name)
                .filter(|(f, _)| *f == fp)
                .map(|(_, m)| m.clone());
            let model = match cached {
                Some(m) => Ok(m),
                None => self.cfg.compose.model(project).await,
            };
            let model = match model {
                Ok(m) => {
                    self.models
                        .lock()
                        .unwrap()
                        .insert(project.name.clone(), (fp, m.clone()));
                    m
                }
                Err(e) => {
                    let msg = format!(
                        "compose project {} ({}): {e}; nothing changed",
                        project.name,
                        project.dir.display()
                    );
                    error!(project = %project.name, "{msg}");
                    report.errors.push(msg);
                    continue;
                }
            };
            let watched: Vec<&ServiceDef> = model
                .services
                .iter()
                .filter(|s| {
                    s.watched_by_label()
                        || self.cfg.services.contains(&s.name)
                        || self
                            .cfg
                            .project_services
                            .get(&project.name)
                            .is_some_and(|l| l.contains(&s.name))
                })
                .collect();
            if watched.is_empty() {
                warn!(project = %project.name, "compose project {} has no watched service: add the label slipway.watch=true to a service (or pass --service NAME)", project.name);
            }
            for svc in watched {
                let r = self
                    .service(
                        project,
                        &model,
                        svc,
                        &mut state,
                        &docker_config,
                        &mut digests,
                    )
                    .await;
                let key = State::key(&project.name, &svc.name);
                let entry = state.services.entry(key).or_default();
                entry.project.clone_from(&project.name);
                entry.service.clone_from(&svc.name);
                entry.image.clone_from(&r.image);
                entry.last_check_ms = Some(now_ms());
                entry.last_outcome = Some(r.outcome);
                entry.last_reason.clone_from(&r.reason);
                report.services.push(r);
            }
            if let Err(e) = self.store.save(&state) {
                error!(error = %e, "cannot save the watch state");
                report.errors.push(e.to_string());
            }
        }
        report.images_checked = digests.len();
        report.registry_requests = self.registry.requests() - requests_before;
        report
    }

    async fn service(
        &self,
        project: &Project,
        model: &Model,
        svc: &ServiceDef,
        state: &mut State,
        docker_config: &Result<DockerConfig, String>,
        digests: &mut HashMap<String, Result<String, CheckError>>,
    ) -> ServiceReport {
        let image = svc.image.clone().unwrap_or_default();
        let mut rep = ServiceReport {
            project: project.name.clone(),
            service: svc.name.clone(),
            image: image.clone(),
            outcome: Outcome::Error,
            reason: None,
            old_digest: None,
            new_digest: None,
        };
        let (p, s) = (project.name.as_str(), svc.name.as_str());
        let fail = |mut rep: ServiceReport, outcome: Outcome, msg: String| {
            match outcome {
                Outcome::NotRunning | Outcome::KnownBad => {
                    warn!(project = p, service = s, image = %rep.image, outcome = outcome.as_str(), "{p}/{s}: {msg}")
                }
                _ => {
                    error!(project = p, service = s, image = %rep.image, outcome = outcome.as_str(), "{p}/{s}: {msg}")
                }
            }
            rep.outcome = outcome;
            rep.reason = Some(msg);
            rep
        };

        // The image reference must name a tag to follow.
        if svc.image.is_none() {
            return fail(rep, Outcome::Error, "the service has no `image:` (built locally?): there is no registry tag to watch; nothing changed".into());
        }
        let r = match ImageRef::parse(&image) {
            Ok(r) => r,
            Err(e) => return fail(rep, Outcome::Error, format!("{e}; nothing changed")),
        };
        if r.digest.is_some() {
            return fail(
                rep,
                Outcome::Error,
                format!(
                    "image {image} is pinned by digest: there is no tag to watch; nothing changed"
                ),
            );
        }
        if r.tag.is_none() {
            return fail(
                rep,
                Outcome::Error,
                format!(
                    "image {image} has no tag: slipway watch follows a tag, write {image}:latest to follow `latest`; nothing changed"
                ),
            );
        }

        // What runs now.
        let containers = match self.containers(p, s).await {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    rep,
                    Outcome::Error,
                    format!("cannot list its containers: {e}"),
                );
            }
        };
        let Some(current) = containers.iter().find(|c| c.status == "running") else {
            return fail(
                rep,
                Outcome::NotRunning,
                "no running container (start it with docker-compose up -d); not checked".to_owned(),
            );
        };
        let current_id = current.image_id.clone();
        let current_digest = match current.config_image.split_once('@') {
            Some((_, d)) if d.starts_with("sha256:") => Some(d.to_owned()),
            _ => match self.docker.image_details(&current_id).await {
                Ok(Some(i)) => r.digest_in(&i.repo_digests).map(str::to_owned),
                _ => None,
            },
        };
        rep.old_digest.clone_from(&current_digest);
        let key = State::key(p, s);
        {
            let st = state.services.entry(key.clone()).or_default();
            st.running_digest.clone_from(&current_digest);
            st.running_image_id = Some(current_id.clone());
            if st.history.first().map(|h| &h.image_id) != Some(&current_id) {
                st.history.insert(
                    0,
                    Deployed {
                        digest: current_digest.clone(),
                        image_id: current_id.clone(),
                        at_ms: now_ms(),
                    },
                );
            }
        }

        // Credentials and the registry's digest (one request per image and cycle).
        let creds = match docker_config {
            Ok(c) => match c.credentials(&r.auth_key()) {
                Ok(c) => c,
                Err(e) => {
                    return fail(
                        rep,
                        Outcome::Error,
                        format!("cannot get registry credentials: {e}; nothing changed"),
                    );
                }
            },
            Err(e) => {
                return fail(
                    rep,
                    Outcome::Error,
                    format!("cannot read docker credentials: {e}; nothing changed"),
                );
            }
        };
        let remote = match digests.get(&image) {
            Some(d) => d.clone(),
            None => {
                let d = self.registry.head_digest(&r, creds.as_ref()).await;
                digests.insert(image.clone(), d.clone());
                d
            }
        };
        let remote = match remote {
            Ok(d) => d,
            Err(e) => {
                return fail(
                    rep,
                    Outcome::Error,
                    format!("cannot check {image}: {e}; nothing changed"),
                );
            }
        };
        rep.new_digest = Some(remote.clone());
        let failed = state
            .services
            .get(&key)
            .and_then(|s| s.failed_digest.clone());
        match decide::decide(current_digest.as_deref(), &remote, failed.as_deref()) {
            Check::UpToDate => {
                debug!(project = p, service = s, image = %image, digest = %remote, outcome = "up_to_date", "{p}/{s}: up to date");
                rep.outcome = Outcome::UpToDate;
                rep.new_digest = None;
                return rep;
            }
            Check::KnownBad => {
                let first = state.services.get(&key).and_then(|s| s.last_outcome)
                    != Some(Outcome::KnownBad);
                rep.outcome = Outcome::KnownBad;
                rep.reason = Some(format!(
                    "the registry still serves {remote}, which was rolled back; waiting for a new push"
                ));
                if first {
                    warn!(project = p, service = s, image = %image, digest = %remote, outcome = "known_bad", "{p}/{s}: {}", rep.reason.as_deref().unwrap_or_default());
                }
                return rep;
            }
            Check::Update => {}
        }

        // Pull the new digest.
        let pinned = r.with_digest(&remote);
        let auth = creds.as_ref().map(|c| pull_auth(c, &r));
        if let Err(e) = self.docker.pull_image(&pinned, auth.as_ref()).await {
            return fail(
                rep,
                Outcome::Error,
                format!("cannot pull {pinned}: {e}; nothing changed"),
            );
        }
        let new_image = match self.docker.image_details(&pinned).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return fail(
                    rep,
                    Outcome::Error,
                    format!("{pinned} is not in the engine after the pull; nothing changed"),
                );
            }
            Err(e) => {
                return fail(
                    rep,
                    Outcome::Error,
                    format!("cannot inspect {pinned}: {e}; nothing changed"),
                );
            }
        };
        if new_image.id == current_id {
            // The running image simply had no record of this digest.
            let st = state.services.entry(key).or_default();
            st.running_digest = Some(remote.clone());
            if let Some(h) = st.history.first_mut() {
                h.digest = Some(remote.clone());
            }
            debug!(project = p, service = s, image = %image, digest = %remote, "{p}/{s}: up to date (digest recorded)");
            rep.outcome = Outcome::UpToDate;
            return rep;
        }
        let has_check = match svc.health {
            HealthDecl::Defined => true,
            HealthDecl::Disabled => false,
            HealthDecl::Unspecified => new_image.has_healthcheck,
        };
        if !has_check {
            warn!(project = p, service = s, image = %image, "{p}/{s} has no health check: rollback can only react to its container exiting or restarting within {}s; add a healthcheck to the compose service", self.cfg.settle.as_secs());
        }
        info!(project = p, service = s, image = %image, old_digest = current_digest.as_deref().unwrap_or("unknown"), new_digest = %remote, "{p}/{s}: new digest {remote}, updating");

        // Recreate with the new digest pinned, then judge.
        let started = Instant::now();
        let result = match self.recreate(project, model, s, &pinned).await {
            Ok(()) => self.wait_healthy(p, s, &new_image.id, has_check).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
                if let Err(e) = self.docker.tag_image(&new_image.id, &r.name(), &tag).await {
                    warn!(
                        project = p,
                        service = s,
                        "{p}/{s}: cannot move the local tag {}: {e}",
                        r.tagged()
                    );
                }
                let st = state.services.entry(key).or_default();
                st.running_digest = Some(remote.clone());
                st.running_image_id = Some(new_image.id.clone());
                st.last_change_ms = Some(now_ms());
                st.failed_digest = None;
                st.history.retain(|h| h.image_id != new_image.id);
                st.history.insert(
                    0,
                    Deployed {
                        digest: Some(remote.clone()),
                        image_id: new_image.id.clone(),
                        at_ms: now_ms(),
                    },
                );
                let (kept, pruned) = decide::prune_plan(&st.history, self.cfg.keep);
                st.history = kept;
                for old in pruned {
                    self.prune(p, s, &r, &old).await;
                }
                let secs = started.elapsed().as_secs_f64();
                info!(project = p, service = s, image = %image, old_digest = current_digest.as_deref().unwrap_or("unknown"), new_digest = %remote, outcome = "updated", seconds = secs, "{p}/{s}: updated to {remote}, healthy after {secs:.1}s");
                rep.outcome = Outcome::Updated;
                self.notify(&rep).await;
                rep
            }
            Err(Fail(why)) => {
                error!(project = p, service = s, image = %image, new_digest = %remote, "{p}/{s}: {remote} failed: {why}; rolling back");
                let back = match &current_digest {
                    Some(d) => r.with_digest(d),
                    None => current_id.clone(),
                };
                let rb = match self.recreate(project, model, s, &back).await {
                    Ok(()) => self.wait_healthy(p, s, &current_id, has_check).await,
                    Err(e) => Err(e),
                };
                let st = state.services.entry(key).or_default();
                st.failed_digest = Some(remote.clone());
                st.last_change_ms = Some(now_ms());
                match rb {
                    Ok(()) => {
                        rep.outcome = Outcome::RolledBack;
                        rep.reason = Some(format!(
                            "{remote} failed: {why}; rolled back to {}",
                            current_digest.as_deref().unwrap_or(&current_id)
                        ));
                        error!(project = p, service = s, image = %image, old_digest = current_digest.as_deref().unwrap_or("unknown"), new_digest = %remote, outcome = "rolled_back", "{p}/{s}: {}", rep.reason.as_deref().unwrap_or_default());
                    }
                    Err(Fail(rb_why)) => {
                        rep.outcome = Outcome::RollbackFailed;
                        rep.reason = Some(format!(
                            "{remote} failed: {why}; restoring {} failed too: {rb_why}",
                            current_digest.as_deref().unwrap_or(&current_id)
                        ));
                        error!(project = p, service = s, image = %image, outcome = "rollback_failed", "{p}/{s}: {}", rep.reason.as_deref().unwrap_or_default());
                    }
                }
                self.notify(&rep).await;
                rep
            }
        }
    }

    async fn containers(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Vec<slipway_runtime::ContainerDetails>, slipway_runtime::RuntimeError> {
        let ids = self
            .docker
            .containers_with_labels(&[
                format!("com.docker.compose.project={project}"),
                format!("com.docker.compose.service={service}"),
                "com.docker.compose.oneoff=False".to_owned(),
            ])
            .await?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(c) = self.docker.container_details(&id).await? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Writes the project's override with `service` pinned to `image` and runs compose up.
    async fn recreate(
        &self,
        project: &Project,
        model: &Model,
        service: &str,
        image: &str,
    ) -> Result<(), Fail> {
        let path = self.store.override_path(&project.name);
        let pins = BTreeMap::from([(service.to_owned(), image.to_owned())]);
        let text = override_yaml(model.version.as_deref(), &pins);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Fail(format!("cannot write {}: {e}", dir.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Fail(format!("cannot write {}: {e}", path.display())))?;
        self.cfg
            .compose
            .up_service(
                project,
                &path,
                service,
                self.cfg.health_timeout + Duration::from_secs(120),
            )
            .await
            .map_err(|e| Fail(e.to_string()))
    }

    /// Polls the service's containers until they are healthy on `image_id` (bounded).
    async fn wait_healthy(
        &self,
        project: &str,
        service: &str,
        image_id: &str,
        has_check: bool,
    ) -> Result<(), Fail> {
        let started = Instant::now();
        let mut last = String::from("nothing observed");
        while started.elapsed() < self.cfg.health_timeout {
            let obs: Vec<Observed> = match self.containers(project, service).await {
                Ok(list) => list
                    .into_iter()
                    .map(|c| Observed {
                        on_target: c.image_id == image_id,
                        name: c.name,
                        status: c.status,
                        exit_code: c.exit_code,
                        restart_count: c.restart_count,
                        health: c.health,
                        health_output: c.health_output,
                    })
                    .collect(),
                Err(e) => {
                    last = format!("cannot inspect containers: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            match decide::judge(&obs, has_check, started.elapsed(), self.cfg.settle) {
                Verdict::Healthy => return Ok(()),
                Verdict::Failed(why) => return Err(Fail(why)),
                Verdict::Wait(why) => last = why,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(Fail(format!(
            "not healthy within {}s ({last})",
            self.cfg.health_timeout.as_secs()
        )))
    }

    async fn prune(&self, project: &str, service: &str, r: &ImageRef, old: &Deployed) {
        let reference = match &old.digest {
            Some(d) => r.with_digest(d),
            None => old.image_id.clone(),
        };
        match self.docker.remove_image(&reference).await {
            Ok(true) => {
                info!(project, service, image = %reference, "{project}/{service}: pruned {reference}")
            }
            Ok(false) => {
                debug!(project, service, image = %reference, "{project}/{service}: {reference} is gone or still used; not pruned")
            }
            Err(e) => warn!(
                project,
                service, "{project}/{service}: cannot prune {reference}: {e}"
            ),
        }
    }

    async fn notify(&self, rep: &ServiceReport) {
        let Some(url) = &self.cfg.webhook else { return };
        let ev = webhook::Event {
            outcome: rep.outcome.as_str().to_owned(),
            project: rep.project.clone(),
            service: rep.service.clone(),
            image: rep.image.clone(),
            old_digest: rep.old_digest.clone(),
            new_digest: rep.new_digest.clone(),
            reason: rep.reason.clone(),
            time_ms: now_ms(),
        };
        let sent = match &self.http {
            Ok(c) => webhook::send(c, url, &ev).await,
            Err(e) => Err(format!("cannot send the webhook to {url}: {e}")),
        };
        if let Err(e) = sent {
            warn!(project = %rep.project, service = %rep.service, "{e}");
        }
    }
}

fn pull_auth(c: &Credentials, r: &ImageRef) -> PullAuth {
    PullAuth {
        username: c.username.clone(),
        password: c.password.clone(),
        server: r.registry.clone(),
    }
}

/// Everything the `status` view shows for one service.
pub fn status_rows(state: &State) -> Vec<&ServiceState> {
    state.services.values().collect()
}
