//! Reads. Every record comes back with its version (the column, which is authoritative).

use slipway_core::model::{
    Deployment, STANDALONE_SERVICE, ServiceEvent, ServiceKey, Task, TaskDefinition, TaskHealth,
    TaskStatus,
};
use std::collections::HashMap;

use slipway_core::placement::{HostView, Need};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Store;
use crate::{
    AccessKey, AuditEntry, ClusterRecord, ElbRecord, HostRecord, HostUsage, IdentityRecord,
    PushRecord, Result, SecretInfo, ServiceRecord, ServiceView, StoreError, TaskCount,
};

/// A record whose version lives in its own column.
pub(crate) trait Versioned: serde::de::DeserializeOwned {
    fn set_version(&mut self, v: u64);
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn set_version(&mut self, v: u64) {
                self.version = v;
            }
        }
    )*};
}
versioned!(
    ServiceRecord,
    Deployment,
    Task,
    TaskDefinition,
    AccessKey,
    HostRecord,
    IdentityRecord,
    ElbRecord
);

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T> {
    Ok(serde_json::from_str(body)?)
}

/// A record from a row of `(body, version)` at columns `at`, `at + 1`.
pub(crate) fn record<T: Versioned>(row: &AnyRow, at: usize) -> Result<T> {
    let mut v: T = decode(row.get::<&str, _>(at))?;
    v.set_version(row.get::<i64, _>(at + 1) as u64);
    Ok(v)
}

fn records<T: Versioned>(rows: &[AnyRow]) -> Result<Vec<T>> {
    rows.iter().map(|r| record(r, 0)).collect()
}

/// `$from, $from+1, ...` for `n` parameters.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// `sql` with its first parameters bound: `app`, `env`, then each of `names` (for an
/// `app = $1 AND env = $2 AND name IN ($3, ...)` filter).
fn for_names<'q>(
    sql: String,
    app: &'q str,
    env: &'q str,
    names: impl IntoIterator<Item = &'q str>,
) -> AnyQuery<'q> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(app).bind(env);
    for n in names {
        q = q.bind(n);
    }
    q
}

fn health(s: &str) -> TaskHealth {
    match s {
        "HEALTHY" => TaskHealth::Healthy,
        "UNHEALTHY" => TaskHealth::Unhealthy,
        _ => TaskHealth::Unknown,
    }
}

fn event(r: &AnyRow) -> ServiceEvent {
    ServiceEvent {
        id: r.get(0),
        created_at: r.get(1),
        message: r.get(2),
        version: r.get::<i64, _>(3) as u64,
    }
}

impl Store {
    /// The record `sql` selects (`body, version`) by its one parameter, `id`.
    async fn by_id<T: Versioned>(&self, sql: &'static str, id: &str) -> Result<Option<T>> {
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| record(&r, 0)).transpose()
    }

    pub(crate) async fn read_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// Whether the database answers (a trivial query, past every cache).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    pub async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        let cache = &self.inner.cache.meta;
        if let Some(v) = cache.get(&key) {
            return Ok(v);
        }
        let generation = cache.generation();
        let value = self.read_meta(&key).await?;
        cache.insert(generation, key, value.clone());
        Ok(value)
    }

    pub async fn get_service(&self, key: &ServiceKey) -> Result<Option<ServiceRecord>> {
        let row = sqlx::query(
            "SELECT body, version FROM services WHERE app = $1 AND env = $2 AND name = $3",
        )
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| record(&r, 0)).transpose()
    }

    /// Services of one app (all apps when `None`), sorted by key.
    pub async fn list_services(&self, app: Option<&str>) -> Result<Vec<ServiceRecord>> {
        let rows = match app {
            Some(app) => {
                sqlx::query(
                    "SELECT body, version FROM services WHERE app = $1 ORDER BY app, env, name",
                )
                .bind(app)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query("SELECT body, version FROM services ORDER BY app, env, name")
                    .fetch_all(self.pool())
                    .await?
            }
        };
        records(&rows)
    }

    /// Whether an app environment has any service (an existence check, no record read).
    pub async fn has_services(&self, app: &str, env: &str) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM services WHERE app = $1 AND env = $2 LIMIT 1")
                .bind(app)
                .bind(env)
                .fetch_optional(self.pool())
                .await?
                .is_some(),
        )
    }

    pub async fn get_task_definition(
        &self,
        family: &str,
        revision: u32,
    ) -> Result<Option<TaskDefinition>> {
        Ok(self
            .get_task_definitions(&[(family.to_owned(), revision)])
            .await?
            .pop())
    }

    pub async fn latest_task_definition(&self, family: &str) -> Result<Option<TaskDefinition>> {
        let row = sqlx::query(
            "SELECT body, version FROM task_definitions WHERE family = $1 ORDER BY revision DESC LIMIT 1",
        )
        .bind(family)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| record(&r, 0)).transpose()
    }

    /// Task definitions by (family, revision), from the database (unknown ones left out).
    pub(crate) async fn read_task_definitions(
        &self,
        ids: &[(String, u32)],
    ) -> Result<Vec<TaskDefinition>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cond: Vec<String> = (0..ids.len())
            .map(|i| format!("(family = ${} AND revision = ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!(
            "SELECT body, version FROM task_definitions WHERE {}",
            cond.join(" OR ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (family, revision) in ids {
            q = q.bind(family).bind(i64::from(*revision));
        }
        records(&q.fetch_all(self.pool()).await?)
    }

    /// Several revisions at once, by `(family, revision)`; unknown ones are left out.
    pub async fn get_task_definitions(&self, ids: &[(String, u32)]) -> Result<Vec<TaskDefinition>> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let found = self
            .inner
            .cache
            .task_definitions
            .get_or_read(ids, |missing| async move {
                let mut fresh = self.read_task_definitions(&missing).await?;
                Ok::<_, StoreError>(
                    missing
                        .iter()
                        .map(|(family, revision)| {
                            let i = fresh
                                .iter()
                                .position(|td| &td.family == family && td.revision == *revision);
                            i.map(|i| fresh.swap_remove(i))
                        })
                        .collect(),
                )
            })
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Every task definition revision, by family and revision.
    pub async fn list_task_definitions(&self) -> Result<Vec<TaskDefinition>> {
        let rows =
            sqlx::query("SELECT body, version FROM task_definitions ORDER BY family, revision")
                .fetch_all(self.pool())
                .await?;
        records(&rows)
    }

    pub async fn get_access_key(&self, id: &str) -> Result<Option<AccessKey>> {
        self.by_id("SELECT body, version FROM access_keys WHERE id = $1", id)
            .await
    }

    pub async fn get_identity(&self, name: &str) -> Result<Option<IdentityRecord>> {
        self.by_id("SELECT body, version FROM identities WHERE name = $1", name)
            .await
    }

    /// The identity whose token has this SHA-256 (hex).
    pub async fn identity_by_token(&self, token_sha256: &str) -> Result<Option<IdentityRecord>> {
        self.by_id(
            "SELECT body, version FROM identities WHERE token_hash = $1",
            token_sha256,
        )
        .await
    }

    /// Identities, oldest first.
    pub async fn list_identities(&self) -> Result<Vec<IdentityRecord>> {
        let rows = sqlx::query("SELECT body, version FROM identities ORDER BY created_at, name")
            .fetch_all(self.pool())
            .await?;
        records(&rows)
    }

    /// Audit entries after `after_seq`, at or after `since` (unix ms), of `identity` if
    /// given, oldest first, at most `limit`.
    pub async fn list_audit(
        &self,
        after_seq: i64,
        since: i64,
        identity: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT seq, body FROM audit WHERE seq > $1 AND at >= $2 AND ($3 = '' OR identity = $3)
             ORDER BY seq LIMIT $4",
        )
        .bind(after_seq)
        .bind(since)
        .bind(identity.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let mut e: AuditEntry = decode(r.get::<&str, _>(1))?;
                e.seq = r.get::<i64, _>(0);
                Ok(e)
            })
            .collect()
    }

    /// The push events of an app, newest first, at most `limit`.
    pub async fn list_pushes(&self, app: &str, limit: u32) -> Result<Vec<PushRecord>> {
        let rows = sqlx::query(
            "SELECT body FROM pushes WHERE app = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(app)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    /// ELBv2 objects of one kind (`load_balancer`, `target_group`, `listener`, `rule`),
    /// oldest first.
    pub async fn list_elb(&self, kind: &str) -> Result<Vec<ElbRecord>> {
        let rows = sqlx::query(
            "SELECT body, version FROM elb WHERE kind = $1 ORDER BY created_at, resource",
        )
        .bind(kind)
        .fetch_all(self.pool())
        .await?;
        records(&rows)
    }

    /// One ELBv2 object by the resource part of its ARN.
    pub async fn get_elb(&self, resource: &str) -> Result<Option<ElbRecord>> {
        self.by_id(
            "SELECT body, version FROM elb WHERE resource = $1",
            resource,
        )
        .await
    }

    /// Access keys, oldest first.
    pub async fn list_access_keys(&self) -> Result<Vec<AccessKey>> {
        let rows = sqlx::query("SELECT body, version FROM access_keys ORDER BY created_at, id")
            .fetch_all(self.pool())
            .await?;
        records(&rows)
    }

    /// One version of a secret, sealed; `None` for the current version. Versions of a
    /// deleted secret stay readable so running releases keep working until replaced.
    pub async fn get_secret(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<(u32, Vec<u8>)>> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT version, sealed FROM secrets WHERE name = $1 AND version = $2")
                    .bind(name)
                    .bind(i64::from(v))
                    .fetch_optional(self.pool())
                    .await?
            }
            None => {
                sqlx::query(
                    "SELECT version, sealed FROM secrets WHERE name = $1 AND deleted_at IS NULL
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(name)
                .fetch_optional(self.pool())
                .await?
            }
        };
        Ok(row.map(|r| (r.get::<i64, _>(0) as u32, r.get::<Vec<u8>, _>(1))))
    }

    /// Every version of a secret (deleted or not), sealed, oldest first: the newest is the
    /// one the next write follows.
    pub async fn secret_versions(&self, name: &str) -> Result<Vec<(u32, Vec<u8>)>> {
        let rows =
            sqlx::query("SELECT version, sealed FROM secrets WHERE name = $1 ORDER BY version")
                .bind(name)
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<i64, _>(0) as u32, r.get::<Vec<u8>, _>(1)))
            .collect())
    }

    /// The newest version of a secret, deleted or not (the next write follows it).
    pub async fn newest_secret_version(&self, name: &str) -> Result<Option<u32>> {
        let v: Option<i64> = sqlx::query("SELECT MAX(version) FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await?
            .get(0);
        Ok(v.map(|v| v as u32))
    }

    /// The name of every secret, deleted or not.
    pub async fn secret_names(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT name FROM secrets ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// The current version of a secret that is not deleted.
    pub async fn current_secret_version(&self, name: &str) -> Result<Option<u32>> {
        let v: Option<i64> =
            sqlx::query("SELECT MAX(version) FROM secrets WHERE name = $1 AND deleted_at IS NULL")
                .bind(name)
                .fetch_one(self.pool())
                .await?
                .get(0);
        Ok(v.map(|v| v as u32))
    }

    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>> {
        let rows = sqlx::query(
            "SELECT name, MAX(version), COUNT(*), MAX(created_at) FROM secrets
             WHERE deleted_at IS NULL GROUP BY name ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| SecretInfo {
                name: r.get(0),
                version: r.get::<i64, _>(1) as u32,
                versions: r.get::<i64, _>(2) as u32,
                updated_at: r.get(3),
            })
            .collect())
    }

    pub async fn get_deployment(&self, id: &str) -> Result<Option<Deployment>> {
        self.by_id("SELECT body, version FROM deployments WHERE id = $1", id)
            .await
    }

    /// Deployments of a service, newest first.
    pub async fn list_deployments(&self, key: &ServiceKey, limit: u32) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(
            "SELECT body, version FROM deployments WHERE app = $1 AND env = $2 AND name = $3
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        records(&rows)
    }

    /// Deployments that may still matter to the planner (in progress, or the newest ones).
    pub async fn active_deployments(&self, key: &ServiceKey) -> Result<Vec<Deployment>> {
        // The planner needs the in-progress ones and the succeeded ones it may fall back to;
        // the newest 10 cover every case that matters.
        self.list_deployments(key, 10).await
    }

    /// Some services of one app environment (by name, unknown ones left out) with their
    /// newest `deployments` deployments, live task counts and newest `events` events, in a
    /// fixed number of queries whatever the number of services. Cached.
    pub async fn service_views(
        &self,
        app: &str,
        env: &str,
        names: &[String],
        deployments: u32,
        events: u32,
    ) -> Result<Vec<ServiceView>> {
        let mut names: Vec<&String> = names.iter().collect();
        names.sort();
        names.dedup();
        let keys: Vec<_> = names
            .iter()
            .map(|n| {
                (
                    app.to_owned(),
                    env.to_owned(),
                    (*n).clone(),
                    deployments,
                    events,
                )
            })
            .collect();
        let found = self
            .inner
            .cache
            .views
            .get_or_read(keys, |missing| async move {
                let names: Vec<String> = missing.into_iter().map(|k| k.2).collect();
                let mut fresh = self
                    .read_service_views(app, env, &names, deployments, events)
                    .await?;
                Ok::<_, StoreError>(
                    names
                        .iter()
                        .map(|n| {
                            let i = fresh.iter().position(|v| &v.record.key.name == n);
                            i.map(|i| fresh.swap_remove(i))
                        })
                        .collect(),
                )
            })
            .await?;
        // In name order, as the keys are.
        Ok(found.into_iter().flatten().collect())
    }

    /// [`Store::service_views`] from the database.
    pub(crate) async fn read_service_views(
        &self,
        app: &str,
        env: &str,
        names: &[String],
        deployments: u32,
        events: u32,
    ) -> Result<Vec<ServiceView>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let ph = placeholders(3, names.len());
        let sql = format!(
            "SELECT body, version FROM services WHERE app = $1 AND env = $2 AND name IN ({ph}) ORDER BY name"
        );
        let rows = for_names(sql, app, env, names.iter().map(String::as_str))
            .fetch_all(self.pool())
            .await?;
        let mut views: Vec<ServiceView> = rows
            .iter()
            .map(|r| {
                Ok(ServiceView {
                    record: record(r, 0)?,
                    deployments: Vec::new(),
                    tasks: Vec::new(),
                    events: Vec::new(),
                })
            })
            .collect::<Result<_>>()?;
        if views.is_empty() {
            return Ok(views);
        }
        let found: Vec<&str> = views.iter().map(|v| v.record.key.name.as_str()).collect();
        let ph = placeholders(3, found.len());
        let last = found.len() + 3;
        let index = |name: &str| found.iter().position(|n| *n == name);

        let sql = format!(
            "SELECT name, body, version FROM (SELECT name, body, version,
                    ROW_NUMBER() OVER (PARTITION BY name ORDER BY created_at DESC, id DESC) AS n
             FROM deployments WHERE app = $1 AND env = $2 AND name IN ({ph})) AS d
             WHERE n <= ${last} ORDER BY name, n"
        );
        let q = for_names(sql, app, env, found.iter().copied());
        let rows = q
            .bind(i64::from(deployments))
            .fetch_all(self.pool())
            .await?;
        let mut deps: Vec<(usize, Deployment)> = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(i) = index(r.get::<&str, _>(0)) {
                deps.push((i, record(r, 1)?));
            }
        }

        let sql = format!(
            "SELECT name, deployment_id, revision, last_status, health, desired_running, COUNT(*)
             FROM tasks WHERE app = $1 AND env = $2 AND name IN ({ph}) AND last_status != 'STOPPED'
             GROUP BY name, deployment_id, revision, last_status, health, desired_running"
        );
        let q = for_names(sql, app, env, found.iter().copied());
        let rows = q.fetch_all(self.pool()).await?;
        let mut counts: Vec<(usize, TaskCount)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(i) = index(r.get::<&str, _>(0)) else {
                continue;
            };
            let status: &str = r.get(3);
            counts.push((
                i,
                TaskCount {
                    deployment_id: r.get(1),
                    revision: r.get::<i64, _>(2) as u32,
                    last_status: TaskStatus::parse(status).unwrap_or(TaskStatus::Pending),
                    health: health(r.get::<&str, _>(4)),
                    desired_running: r.get::<i64, _>(5) != 0,
                    count: r.get::<i64, _>(6) as u32,
                },
            ));
        }

        let sql = format!(
            "SELECT name, id, created_at, message, version FROM (SELECT name, id, created_at, message, version,
                    ROW_NUMBER() OVER (PARTITION BY name ORDER BY id DESC) AS n
             FROM events WHERE app = $1 AND env = $2 AND name IN ({ph})) AS e
             WHERE n <= ${last} ORDER BY name, id DESC"
        );
        let q = for_names(sql, app, env, found.iter().copied());
        let rows = q.bind(i64::from(events)).fetch_all(self.pool()).await?;
        let mut evs: Vec<(usize, ServiceEvent)> = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(i) = index(r.get::<&str, _>(0)) {
                evs.push((
                    i,
                    ServiceEvent {
                        id: r.get(1),
                        created_at: r.get(2),
                        message: r.get(3),
                        version: r.get::<i64, _>(4) as u64,
                    },
                ));
            }
        }
        for (i, d) in deps {
            views[i].deployments.push(d);
        }
        for (i, c) in counts {
            views[i].tasks.push(c);
        }
        for (i, e) in evs {
            views[i].events.push(e);
        }
        Ok(views)
    }

    pub async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        self.by_id("SELECT body, version FROM tasks WHERE id = $1", id)
            .await
    }

    /// Tasks of a service, newest first; stopped ones only when asked.
    pub async fn list_tasks(&self, key: &ServiceKey, include_stopped: bool) -> Result<Vec<Task>> {
        let sql = if include_stopped {
            "SELECT body, version FROM tasks WHERE app = $1 AND env = $2 AND name = $3 ORDER BY created_at DESC, id"
        } else {
            "SELECT body, version FROM tasks WHERE app = $1 AND env = $2 AND name = $3 AND last_status != 'STOPPED' ORDER BY created_at DESC, id"
        };
        let rows = sqlx::query(sql)
            .bind(&key.app)
            .bind(&key.env)
            .bind(&key.name)
            .fetch_all(self.pool())
            .await?;
        records(&rows)
    }

    /// Standalone tasks (ECS `RunTask`) of every app environment that are not stopped.
    pub async fn live_standalone_tasks(&self) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT body, version FROM tasks WHERE name = $1 AND last_status != 'STOPPED' ORDER BY created_at, id",
        )
        .bind(STANDALONE_SERVICE)
        .fetch_all(self.pool())
        .await?;
        records(&rows)
    }

    /// Events of a service, newest first.
    pub async fn list_events(&self, key: &ServiceKey, limit: u32) -> Result<Vec<ServiceEvent>> {
        let rows = sqlx::query(
            "SELECT id, created_at, message, version FROM events WHERE app = $1 AND env = $2 AND name = $3
             ORDER BY id DESC LIMIT $4",
        )
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(event).collect())
    }

    /// What changed a service since a writer read it at `version`, oldest first: for each
    /// newer version, the event written with the change that made it (the first event of
    /// that version; what the controller reported afterwards is left out).
    pub async fn events_since(&self, key: &ServiceKey, version: u64) -> Result<Vec<ServiceEvent>> {
        let rows = sqlx::query(
            "SELECT id, created_at, message, version FROM events WHERE id IN (
                SELECT MIN(id) FROM events WHERE app = $1 AND env = $2 AND name = $3
                AND version > $4 GROUP BY version) ORDER BY id",
        )
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .bind(version as i64)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(event).collect())
    }

    pub async fn get_host(&self, id: &str) -> Result<Option<HostRecord>> {
        self.by_id("SELECT body, version FROM hosts WHERE id = $1", id)
            .await
    }

    /// Every host, by id.
    pub async fn list_hosts(&self) -> Result<Vec<HostRecord>> {
        let rows = sqlx::query("SELECT body, version FROM hosts ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        records(&rows)
    }

    /// The tasks placed on a host that are not stopped.
    pub async fn live_tasks_on(&self, host: &str) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT body, version FROM tasks WHERE host = $1 AND last_status != 'STOPPED' ORDER BY created_at, id",
        )
        .bind(host)
        .fetch_all(self.pool())
        .await?;
        records(&rows)
    }

    /// What the live tasks reserve on each host (a task recorded without a host ran on
    /// `local`, the server's own), and how many tasks of each service each host runs that
    /// are meant to stay there (wanted, and not being moved by a rebalance).
    pub async fn host_usage(&self, local: Option<&str>) -> Result<HashMap<String, HostUsage>> {
        let tasks = self.live_tasks().await?;
        let ids: Vec<(String, u32)> = tasks
            .iter()
            .filter(|t| t.standalone.is_none())
            .map(|t| (t.service.family(), t.revision))
            .collect();
        let defs: HashMap<(String, u32), Need> = self
            .get_task_definitions(&ids)
            .await?
            .into_iter()
            .map(|td| ((td.family, td.revision), Need::of(&td.container)))
            .collect();
        let mut usage: HashMap<String, HostUsage> = HashMap::new();
        for t in &tasks {
            let Some(host) = t.host.as_deref().or(local) else {
                continue;
            };
            let need = match &t.standalone {
                Some(s) => Need::of(&s.container),
                None => defs
                    .get(&(t.service.family(), t.revision))
                    .copied()
                    .unwrap_or_default(),
            };
            let u = usage.entry(host.to_owned()).or_default();
            u.cpu += need.cpu;
            u.memory += need.memory;
            u.tasks += 1;
            if t.desired_running && !t.moving {
                *u.services.entry(t.service.clone()).or_default() += 1;
            }
        }
        Ok(usage)
    }

    /// The hosts among `up` as placement sees them for tasks of `service`: state,
    /// attributes, resources and what the live tasks use ([`Store::host_usage`]).
    pub async fn host_views(
        &self,
        up: &[String],
        local: Option<&str>,
        service: &ServiceKey,
    ) -> Result<Vec<HostView>> {
        let usage = self.host_usage(local).await?;
        Ok(self
            .list_hosts()
            .await?
            .into_iter()
            .filter(|h| up.contains(&h.id))
            .map(|h| {
                let u = usage.get(&h.id);
                HostView {
                    cpu_used: u.map_or(0, |u| u.cpu),
                    memory_used: u.map_or(0, |u| u.memory),
                    service_tasks: u
                        .and_then(|u| u.services.get(service).copied())
                        .unwrap_or(0),
                    id: h.id,
                    state: h.state,
                    attributes: h.attributes,
                    cpu: h.cpu,
                    memory: h.memory,
                }
            })
            .collect())
    }

    /// How many task records have each last status (the stopped ones still kept included).
    pub async fn task_counts(&self) -> Result<Vec<(TaskStatus, u64)>> {
        let rows = sqlx::query("SELECT last_status, COUNT(*) FROM tasks GROUP BY last_status")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let status = TaskStatus::parse(&r.get::<String, _>(0))?;
                Some((status, u64::try_from(r.get::<i64, _>(1)).unwrap_or(0)))
            })
            .collect())
    }

    /// Every task that is not stopped, of every service (placement counts them by host).
    pub async fn live_tasks(&self) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT body, version FROM tasks WHERE last_status != 'STOPPED' ORDER BY created_at, id",
        )
        .fetch_all(self.pool())
        .await?;
        records(&rows)
    }

    pub async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRecord>> {
        let row = sqlx::query("SELECT name, created_at, version FROM clusters WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| ClusterRecord {
            name: r.get(0),
            created_at: r.get(1),
            version: r.get::<i64, _>(2) as u64,
        }))
    }

    /// ECS clusters created through the ECS API, by name.
    pub async fn list_clusters(&self) -> Result<Vec<ClusterRecord>> {
        let rows = sqlx::query("SELECT name, created_at, version FROM clusters ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| ClusterRecord {
                name: r.get(0),
                created_at: r.get(1),
                version: r.get::<i64, _>(2) as u64,
            })
            .collect())
    }
}
