//! Use cases on tasks: run standalone tasks (ECS `RunTask`), stop a task, run a command in
//! one (`exec`), and read their logs.

use std::collections::HashSet;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use slipway_core::model::{
    ContainerSpec, ServiceKey, Standalone, StopCode, Task, TaskDefinition, TaskHealth, TaskStatus,
};
use slipway_store::{Batch, Write, now_ms, random_id};

use crate::engine::LogStream;
use crate::retry::retry;
use crate::{App, AppError, EXEC_MAX_OUTPUT, EXEC_TIMEOUT, ErrorKind, Result};

/// ECS `RunTask`: `count` copies of one task definition revision, outside any service.
#[derive(Debug, Clone)]
pub struct RunTasks {
    /// The standalone key of the app environment ([`ServiceKey::standalone`]).
    pub key: ServiceKey,
    /// The task definition revision run (an inactive one is refused).
    pub td: TaskDefinition,
    /// The container, overrides applied (its image is pinned here).
    pub container: ContainerSpec,
    pub container_name: String,
    pub started_by: Option<String>,
    pub group: String,
    /// `overrides` as given (a JSON object), echoed when the task is described.
    pub overrides: Option<String>,
    pub count: usize,
    /// Where the tasks may run.
    pub placement: slipway_core::placement::Placement,
    /// ECS `StartTask`: one task on each of these hosts (placement is not consulted).
    pub hosts: Vec<String>,
}

/// What `exec` ran and saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecResult {
    pub task: String,
    /// The command's exit code (`None` if the engine did not report one).
    pub exit_code: Option<i64>,
    /// Standard output and standard error, interleaved.
    pub output: String,
    /// The output was longer than the cap and was cut.
    pub truncated: bool,
}

/// Which log lines to read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    pub follow: bool,
    /// Only lines newer than this many seconds.
    pub since: Option<i64>,
    pub tail: Option<u32>,
    /// Only this task (of the service), also after it stopped: then its kept last output.
    #[serde(default)]
    pub task: Option<String>,
    /// Only the task the newest replacement replaced: the service's most recently stopped
    /// task, with its kept last output.
    #[serde(default)]
    pub previous: bool,
    /// Only this container of a task of several (a sidecar, the log router); the main
    /// container when not set.
    #[serde(default)]
    pub container: Option<String>,
}

impl App {
    /// The host a task runs on (tasks recorded before hosts existed ran on the server's).
    fn host_of(&self, t: &Task) -> String {
        t.host
            .clone()
            .or_else(|| self.engine().local_host())
            .unwrap_or_default()
    }

    /// Records standalone tasks (PROVISIONING) in one transaction; the controller starts
    /// them. Returns the records.
    pub async fn run_tasks(&self, req: RunTasks) -> Result<Vec<Task>> {
        if req.td.deregistered_at.is_some() {
            return Err(crate::services::inactive(&req.td));
        }
        slipway_core::placement::validate(&req.placement)
            .map_err(|m| AppError::invalid(format!("placement: {m}")))?;
        for h in &req.hosts {
            if self.store().get_host(h).await?.is_none() {
                return Err(AppError::not_found(format!(
                    "host {h} (`slipway host ls` lists them)"
                )));
            }
        }
        // What the revision runs: its source when it is a service's pinned copy.
        let task_definition = req.td.source.clone().unwrap_or_else(|| req.td.id());
        let container = self.pin_image(req.container.clone(), false).await;
        let now = now_ms();
        let count = if req.hosts.is_empty() {
            req.count
        } else {
            req.hosts.len()
        };
        let tasks: Vec<Task> = (0..count)
            .map(|i| Task {
                host: req.hosts.get(i).cloned(),
                standalone: Some(Box::new(Standalone {
                    task_definition: task_definition.clone(),
                    container: container.clone(),
                    container_name: req.container_name.clone(),
                    started_by: req.started_by.clone(),
                    group: req.group.clone(),
                    overrides: req.overrides.clone(),
                    placement: req.placement.clone(),
                })),
                ..Task::provisioning(
                    random_id(16),
                    req.key.clone(),
                    "standalone".into(),
                    req.td.revision,
                    now,
                )
            })
            .collect();
        let mut batch = Batch::new().notify(&req.key);
        for t in &tasks {
            batch.push(Write::Task(t.clone()));
        }
        let out = self.store().commit(batch).await?;
        Ok(tasks
            .into_iter()
            .zip(out)
            .map(|(mut t, o)| {
                t.version = o.version();
                t
            })
            .collect())
    }

    /// Asks a task to stop (ECS `StopTask`): desired status STOPPED, stop code
    /// UserInitiated and `reason`. A service task is then replaced by its service, as on
    /// ECS; a standalone task is not. Routed service tasks are drained first
    /// (DEACTIVATING). `None` when there is no such task.
    pub async fn stop_task(&self, id: &str, reason: &str) -> Result<Option<Task>> {
        retry(|| async {
            let Some(mut t) = self.store().get_task(id).await? else {
                return Ok(None);
            };
            if !t.desired_running || t.last_status == TaskStatus::Stopped {
                return Ok(Some(t));
            }
            t.desired_running = false;
            t.stop_code = Some(StopCode::UserInitiated);
            t.stopped_reason = Some(reason.to_owned());
            if t.last_status != TaskStatus::Provisioning {
                t.last_status = if t.standalone.is_none() && t.address.is_some() {
                    TaskStatus::Deactivating
                } else {
                    TaskStatus::Stopping
                };
            }
            let key = t.service.clone();
            let out = self
                .store()
                .commit(Batch::new().write(Write::Task(t.clone())).notify(&key))
                .await?;
            t.version = out[0].version();
            tracing::info!(task = %t.id, service = %t.service, %reason, "task stop requested");
            Ok(Some(t))
        })
        .await
    }

    /// Runs a command in one running task of a service (`task`, or the oldest healthy one).
    pub async fn exec(
        &self,
        key: &ServiceKey,
        task: Option<&str>,
        cmd: Vec<String>,
    ) -> Result<ExecResult> {
        if cmd.first().is_none_or(|c| c.trim().is_empty()) {
            return Err(AppError::invalid(
                "no command given: pass it after --, e.g. slipway exec web -- /hello check",
            ));
        }
        self.service(key).await?;
        let mut tasks = self.store().list_tasks(key, false).await?;
        tasks.sort_by_key(|t| (t.created_at, t.id.clone()));
        let running = |t: &&Task| t.container_id.is_some() && t.last_status == TaskStatus::Running;
        let task = match task {
            Some(id) => {
                let Some(t) = tasks.iter().find(|t| t.id == id) else {
                    return Err(AppError::not_found(format!(
                        "task {id} of service {key} (list them with slipway ps)"
                    )));
                };
                if !running(&t) {
                    return Err(AppError::conflict(
                        "TASK_NOT_RUNNING",
                        format!(
                            "task {id} of service {key} is {}, not running; pick another with slipway ps",
                            t.last_status.as_str()
                        ),
                    ));
                }
                t
            }
            None => tasks
                .iter()
                .filter(running)
                .find(|t| t.desired_running && t.health == TaskHealth::Healthy)
                .ok_or_else(|| {
                    AppError::conflict(
                        "NO_HEALTHY_TASK",
                        format!(
                            "service {key} has no healthy running task; name one with --task (slipway ps lists them)"
                        ),
                    )
                })?,
        };
        let cid = task.container_id.clone().unwrap_or_default();
        let host = self.host_of(task);
        let out = match tokio::time::timeout(
            EXEC_TIMEOUT,
            self.engine()
                .exec(&host, &cid, cmd.clone(), EXEC_MAX_OUTPUT),
        )
        .await
        {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                return Err(AppError::new(
                    ErrorKind::Upstream,
                    "EXEC_FAILED",
                    format!("cannot run {:?} in task {}: {e}", cmd[0], task.id),
                ));
            }
            Err(_) => {
                return Err(AppError::new(
                    ErrorKind::Timeout,
                    "EXEC_TIMEOUT",
                    format!(
                        "{:?} did not finish within {}s in task {}; it may still be running there",
                        cmd[0],
                        EXEC_TIMEOUT.as_secs(),
                        task.id
                    ),
                ));
            }
        };
        Ok(ExecResult {
            task: task.id.clone(),
            exit_code: out.exit_code,
            output: String::from_utf8_lossy(&out.output).into_owned(),
            truncated: out.truncated,
        })
    }

    /// One stream of log lines per task container of a service, each line prefixed with
    /// the task id.
    ///
    /// With `task` or `previous`, one task: a task that stopped shows the last output kept
    /// when its container was removed (or, while its container still exists, its logs).
    pub async fn service_logs(&self, key: &ServiceKey, q: &LogsQuery) -> Result<Vec<LogStream>> {
        self.service(key).await?;
        let tasks = self.store().list_tasks(key, true).await?;
        if let Some(c) = &q.container
            && !tasks
                .iter()
                .any(|t| t.containers.iter().any(|x| &x.name == c))
        {
            let mut names: Vec<&str> = tasks
                .iter()
                .flat_map(|t| t.containers.iter().map(|x| x.name.as_str()))
                .collect();
            names.sort_unstable();
            names.dedup();
            return Err(AppError::not_found(if names.is_empty() {
                format!(
                    "container {c} of service {key}: its tasks have one container each; leave --container out"
                )
            } else {
                format!(
                    "container {c} of service {key}; its tasks have {}",
                    names.join(", ")
                )
            }));
        }
        let one = match (&q.task, q.previous) {
            (Some(_), true) => {
                return Err(AppError::invalid(
                    "--task and --previous both choose a task: give one of them",
                ));
            }
            (Some(id), false) => {
                Some(tasks.iter().find(|t| &t.id == id).cloned().ok_or_else(|| {
                    AppError::not_found(format!(
                        "task {id} of service {key} (`slipway ps {} --all` lists them)",
                        key.name
                    ))
                })?)
            }
            (None, true) => Some(
                tasks
                    .iter()
                    .filter(|t| t.last_status == TaskStatus::Stopped)
                    .max_by_key(|t| (t.stopped_at.unwrap_or(0), t.created_at))
                    .cloned()
                    .ok_or_else(|| {
                        AppError::not_found(format!(
                            "a stopped task of service {key} (none was replaced yet)"
                        ))
                    })?,
            ),
            (None, false) => None,
        };
        let Some(task) = one else {
            return Ok(self.log_streams(tasks, q, |t| t.id.clone()));
        };
        match task
            .exit
            .as_ref()
            .filter(|_| task.last_status == TaskStatus::Stopped && q.container.is_none())
        {
            // Its container is gone: what was kept of its output.
            Some(exit) => {
                let skip = q
                    .tail
                    .map_or(0, |n| exit.last_output.len().saturating_sub(n as usize));
                let text: String = exit.last_output[skip..]
                    .iter()
                    .map(|l| format!("{} | {l}\n", task.id))
                    .collect();
                Ok(vec![futures_util::stream::iter([Ok(text)]).boxed()])
            }
            None => Ok(self.log_streams(vec![task], q, |t| t.id.clone())),
        }
    }

    /// The logs of every task of every service of an app (or one environment), each line
    /// prefixed with `service/task` (`env/service/task` across environments).
    pub async fn app_logs(
        &self,
        app: &str,
        env: Option<&str>,
        q: &LogsQuery,
    ) -> Result<Vec<LogStream>> {
        let services = self.services_of(app, env).await?;
        if services.is_empty() {
            return Err(AppError::not_found(match env {
                Some(e) => format!("services of app {app} in environment {e}"),
                None => format!("services of app {app}"),
            }));
        }
        let several_envs = services.iter().any(|s| s.key.env != services[0].key.env);
        let mut streams = Vec::new();
        for svc in services {
            let tasks = self.store().list_tasks(&svc.key, true).await?;
            let key = svc.key.clone();
            streams.extend(self.log_streams(tasks, q, move |t| {
                if several_envs {
                    format!("{}/{}/{}", key.env, key.name, t.id)
                } else {
                    format!("{}/{}", key.name, t.id)
                }
            }));
        }
        Ok(streams)
    }

    fn log_streams(
        &self,
        tasks: Vec<Task>,
        q: &LogsQuery,
        label: impl Fn(&Task) -> String,
    ) -> Vec<LogStream> {
        let since = q.since.map(|s| now_ms() / 1000 - s);
        let mut streams = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for t in tasks {
            let cid = match &q.container {
                Some(name) => t
                    .containers
                    .iter()
                    .find(|c| &c.name == name)
                    .and_then(|c| c.id.clone()),
                None => t.container_id.clone(),
            };
            let Some(cid) = cid else {
                continue;
            };
            if !seen.insert(cid.clone()) {
                continue;
            }
            if q.follow && t.last_status == TaskStatus::Stopped {
                continue;
            }
            let prefix = format!("{} | ", label(&t));
            let host = self.host_of(&t);
            let s = self
                .engine()
                .logs(
                    &host,
                    &cid,
                    q.follow && t.last_status != TaskStatus::Stopped,
                    since,
                    q.tail,
                )
                .filter_map(move |line| {
                    let prefix = prefix.clone();
                    async move {
                        match line {
                            Ok(l) => Some(Ok(l
                                .lines()
                                .map(|x| format!("{prefix}{x}\n"))
                                .collect::<String>())),
                            // A task whose container is gone has no more logs: not an error.
                            Err(_) => None,
                        }
                    }
                });
            streams.push(s.boxed());
        }
        streams
    }
}
