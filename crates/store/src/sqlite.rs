//! The SQLite implementation of [`Store`].

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use slipway_core::model::{
    Deployment, MAX_EVENTS, RolloutState, STANDALONE_SERVICE, ServiceEvent, ServiceKey, Task,
    TaskDefinition, TaskHealth, TaskStatus, Timeline,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::cache::Cached;
use crate::{
    AccessKey, NewDeployment, Result, RevisionChoice, SecretInfo, ServiceRecord, ServiceView,
    Store, StoreError, TaskCount,
};

/// State in one SQLite file (WAL mode). Write transactions start with `BEGIN IMMEDIATE`, so
/// concurrent writers wait for each other (busy timeout) instead of failing when a read
/// transaction cannot be upgraded.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    cache: Arc<Caches>,
}

/// The read caches (see [`crate::cache`]).
struct Caches {
    /// By (app, env, name, deployments, events); `None`: no such service.
    views: Cached<(String, String, String, u32, u32), Option<ServiceView>>,
    /// By (family, revision); `None`: no such revision.
    task_definitions: Cached<(String, u32), Option<TaskDefinition>>,
    meta: Cached<String, Option<String>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
        Self::with_options(opts, 4).await
    }

    /// An in-memory database, for tests.
    pub async fn memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        Self::with_options(opts, 1).await
    }

    async fn with_options(opts: SqliteConnectOptions, max: u32) -> Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            cache: Arc::new(Caches {
                views: Cached::new(),
                task_definitions: Cached::new(),
                meta: Cached::new(),
            }),
        })
    }

    async fn read_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// Task definitions by (family, revision), from the database (unknown ones left out).
    async fn read_task_definitions(&self, ids: &[(String, u32)]) -> Result<Vec<TaskDefinition>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT body FROM task_definitions WHERE {}",
            vec!["(family = ? AND revision = ?)"; ids.len()].join(" OR ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (family, revision) in ids {
            q = q.bind(family).bind(i64::from(*revision));
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    /// [`Store::service_views`] from the database.
    async fn read_service_views(
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
        let ph = placeholders(names.len());
        let sql = format!(
            "SELECT body FROM services WHERE app = ? AND env = ? AND name IN ({ph}) ORDER BY name"
        );
        let rows = for_names(sql, app, env, names.iter().map(String::as_str))
            .fetch_all(&self.pool)
            .await?;
        let mut views: Vec<ServiceView> = rows
            .iter()
            .map(|r| {
                Ok(ServiceView {
                    record: decode(r.get::<&str, _>(0))?,
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
        let ph = placeholders(found.len());
        let index = |name: &str| found.iter().position(|n| *n == name);

        let sql = format!(
            "SELECT name, body FROM (SELECT name, body, ROW_NUMBER() OVER (PARTITION BY name ORDER BY created_at DESC, id DESC) AS n
             FROM deployments WHERE app = ? AND env = ? AND name IN ({ph})) WHERE n <= ? ORDER BY name, n"
        );
        let q = for_names(sql, app, env, found.iter().copied());
        let rows = q.bind(i64::from(deployments)).fetch_all(&self.pool).await?;
        let mut deps: Vec<(usize, Deployment)> = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(i) = index(r.get::<&str, _>(0)) {
                deps.push((i, decode(r.get::<&str, _>(1))?));
            }
        }

        let sql = format!(
            "SELECT name, json_extract(body, '$.deployment_id'), json_extract(body, '$.revision'), last_status,
                    json_extract(body, '$.health'), desired_running, COUNT(*)
             FROM tasks WHERE app = ? AND env = ? AND name IN ({ph}) AND last_status != 'STOPPED'
             GROUP BY 1, 2, 3, 4, 5, 6"
        );
        let q = for_names(sql, app, env, found.iter().copied());
        let rows = q.fetch_all(&self.pool).await?;
        let mut counts: Vec<(usize, TaskCount)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(i) = index(r.get::<&str, _>(0)) else {
                continue;
            };
            let status: &str = r.get(3);
            let health: &str = r.get(4);
            counts.push((
                i,
                TaskCount {
                    deployment_id: r.get(1),
                    revision: r.get::<i64, _>(2) as u32,
                    last_status: TaskStatus::parse(status).unwrap_or(TaskStatus::Pending),
                    health: match health {
                        "HEALTHY" => TaskHealth::Healthy,
                        "UNHEALTHY" => TaskHealth::Unhealthy,
                        _ => TaskHealth::Unknown,
                    },
                    desired_running: r.get(5),
                    count: r.get::<i64, _>(6) as u32,
                },
            ));
        }

        let sql = format!(
            "SELECT name, id, created_at, message FROM (SELECT name, id, created_at, message,
                    ROW_NUMBER() OVER (PARTITION BY name ORDER BY id DESC) AS n
             FROM events WHERE app = ? AND env = ? AND name IN ({ph})) WHERE n <= ? ORDER BY name, id DESC"
        );
        let q = for_names(sql, app, env, found.iter().copied());
        let rows = q.bind(i64::from(events)).fetch_all(&self.pool).await?;
        let mut evs: Vec<(usize, ServiceEvent)> = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(i) = index(r.get::<&str, _>(0)) {
                evs.push((
                    i,
                    ServiceEvent {
                        id: r.get(1),
                        created_at: r.get(2),
                        message: r.get(3),
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
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T> {
    Ok(serde_json::from_str(body)?)
}

/// `?, ?, ?` for `n` parameters.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `sql` with its first parameters bound: `app`, `env`, then each of `names` (for an
/// `app = ? AND env = ? AND name IN (...)` filter).
fn for_names<'q>(
    sql: String,
    app: &'q str,
    env: &'q str,
    names: impl IntoIterator<Item = &'q str>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, <sqlx::Sqlite as sqlx::Database>::Arguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(app).bind(env);
    for n in names {
        q = q.bind(n);
    }
    q
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

#[async_trait]
impl Store for SqliteStore {
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        if let Some(v) = self.cache.meta.get(&key) {
            return Ok(v);
        }
        let generation = self.cache.meta.generation();
        let value = self.read_meta(&key).await?;
        self.cache.meta.insert(generation, key, value.clone());
        Ok(value)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let _written = self.cache.meta.write();
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_service(&self, key: &ServiceKey) -> Result<Option<ServiceRecord>> {
        let row = sqlx::query("SELECT body FROM services WHERE app = ? AND env = ? AND name = ?")
            .bind(&key.app)
            .bind(&key.env)
            .bind(&key.name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(r.get::<&str, _>(0))).transpose()
    }

    async fn list_services(&self, app: Option<&str>) -> Result<Vec<ServiceRecord>> {
        let rows = match app {
            Some(app) => {
                sqlx::query("SELECT body FROM services WHERE app = ? ORDER BY app, env, name")
                    .bind(app)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT body FROM services ORDER BY app, env, name")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    async fn put_service(&self, s: &ServiceRecord) -> Result<()> {
        let _written = self.cache.views.write();
        sqlx::query(
            "INSERT INTO services (app, env, name, body, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (app, env, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(&s.key.app)
        .bind(&s.key.env)
        .bind(&s.key.name)
        .bind(encode(s)?)
        .bind(s.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_service(&self, key: &ServiceKey) -> Result<()> {
        let _written = self.cache.views.write();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for table in ["services", "deployments", "tasks", "events"] {
            let sql = format!("DELETE FROM {table} WHERE app = ? AND env = ? AND name = ?");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&key.app)
                .bind(&key.env)
                .bind(&key.name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_task_definition(
        &self,
        family: &str,
        revision: u32,
    ) -> Result<Option<TaskDefinition>> {
        let row =
            sqlx::query("SELECT body FROM task_definitions WHERE family = ? AND revision = ?")
                .bind(family)
                .bind(i64::from(revision))
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| decode(r.get::<&str, _>(0))).transpose()
    }

    async fn latest_task_definition(&self, family: &str) -> Result<Option<TaskDefinition>> {
        let row = sqlx::query(
            "SELECT body FROM task_definitions WHERE family = ? ORDER BY revision DESC LIMIT 1",
        )
        .bind(family)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| decode(r.get::<&str, _>(0))).transpose()
    }

    async fn register_task_definition(&self, mut td: TaskDefinition) -> Result<TaskDefinition> {
        let _written = self.cache.task_definitions.write();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(revision), 0) + 1 FROM task_definitions WHERE family = ?",
        )
        .bind(&td.family)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        td.revision = next as u32;
        sqlx::query(
            "INSERT INTO task_definitions (family, revision, body, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&td.family)
        .bind(next)
        .bind(encode(&td)?)
        .bind(td.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(td)
    }

    async fn put_task_definition(&self, td: &TaskDefinition) -> Result<()> {
        let _written = self.cache.task_definitions.write();
        sqlx::query("UPDATE task_definitions SET body = ? WHERE family = ? AND revision = ?")
            .bind(encode(td)?)
            .bind(&td.family)
            .bind(i64::from(td.revision))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_task_definitions(&self, ids: &[(String, u32)]) -> Result<Vec<TaskDefinition>> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let found = self
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

    async fn list_task_definitions(&self) -> Result<Vec<TaskDefinition>> {
        let rows = sqlx::query("SELECT body FROM task_definitions ORDER BY family, revision")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    async fn put_access_key(&self, key: &AccessKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO access_keys (id, body, created_at) VALUES (?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        )
        .bind(&key.id)
        .bind(encode(key)?)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_access_key(&self, id: &str) -> Result<Option<AccessKey>> {
        let row = sqlx::query("SELECT body FROM access_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(r.get::<&str, _>(0))).transpose()
    }

    async fn list_access_keys(&self) -> Result<Vec<AccessKey>> {
        let rows = sqlx::query("SELECT body FROM access_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    async fn put_secret(&self, name: &str, sealed: &[u8], now: i64) -> Result<u32> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let next: i64 =
            sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 FROM secrets WHERE name = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
        sqlx::query("UPDATE secrets SET deleted_at = NULL WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO secrets (name, version, sealed, created_at) VALUES (?, ?, ?, ?)")
            .bind(name)
            .bind(next)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(next as u32)
    }

    async fn get_secret(&self, name: &str, version: Option<u32>) -> Result<Option<(u32, Vec<u8>)>> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT version, sealed FROM secrets WHERE name = ? AND version = ?")
                    .bind(name)
                    .bind(i64::from(v))
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(
                    "SELECT version, sealed FROM secrets WHERE name = ? AND deleted_at IS NULL
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        Ok(row.map(|r| (r.get::<i64, _>(0) as u32, r.get::<Vec<u8>, _>(1))))
    }

    async fn current_secret_version(&self, name: &str) -> Result<Option<u32>> {
        let v: Option<i64> =
            sqlx::query("SELECT MAX(version) FROM secrets WHERE name = ? AND deleted_at IS NULL")
                .bind(name)
                .fetch_one(&self.pool)
                .await?
                .get(0);
        Ok(v.map(|v| v as u32))
    }

    async fn list_secrets(&self) -> Result<Vec<SecretInfo>> {
        let rows = sqlx::query(
            "SELECT name, MAX(version), COUNT(*), MAX(created_at) FROM secrets
             WHERE deleted_at IS NULL GROUP BY name ORDER BY name",
        )
        .fetch_all(&self.pool)
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

    async fn delete_secret(&self, name: &str, now: i64) -> Result<bool> {
        let r =
            sqlx::query("UPDATE secrets SET deleted_at = ? WHERE name = ? AND deleted_at IS NULL")
                .bind(now)
                .bind(name)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn create_deployment(&self, new: NewDeployment) -> Result<Deployment> {
        let _written = (
            self.cache.views.write(),
            self.cache.task_definitions.write(),
        );
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let family = new.key.family();
        let revision = match new.revision {
            RevisionChoice::Existing(r) => r,
            RevisionChoice::Register(container) => {
                let container = *container;
                let next: i64 = sqlx::query(
                    "SELECT COALESCE(MAX(revision), 0) + 1 FROM task_definitions WHERE family = ?",
                )
                .bind(&family)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
                let td = TaskDefinition {
                    family: family.clone(),
                    revision: next as u32,
                    container,
                    created_at: new.now,
                    source: None,
                    ecs: None,
                    deregistered_at: None,
                };
                sqlx::query("INSERT INTO task_definitions (family, revision, body, created_at) VALUES (?, ?, ?, ?)")
                    .bind(&family)
                    .bind(next)
                    .bind(encode(&td)?)
                    .bind(new.now)
                    .execute(&mut *tx)
                    .await?;
                next as u32
            }
        };
        // Older deployments still in progress are superseded; a failed one being rolled back
        // is marked ROLLED_BACK.
        let rows = sqlx::query("SELECT body FROM deployments WHERE app = ? AND env = ? AND name = ? AND state = 'IN_PROGRESS'")
            .bind(&new.key.app)
            .bind(&new.key.env)
            .bind(&new.key.name)
            .fetch_all(&mut *tx)
            .await?;
        let mut changed: Vec<Deployment> = Vec::new();
        for r in rows {
            let mut d: Deployment = decode(r.get::<&str, _>(0))?;
            if new.rollback_of.as_deref() == Some(d.id.as_str()) {
                continue;
            }
            d.state = RolloutState::Failed;
            d.reason = Some(format!("superseded by deployment {}", new.id));
            d.updated_at = new.now;
            d.timeline.finished_at = Some(new.now);
            changed.push(d);
        }
        if let Some(failed_id) = &new.rollback_of {
            let row = sqlx::query("SELECT body FROM deployments WHERE id = ?")
                .bind(failed_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(format!("deployment {failed_id}")));
            };
            let mut d: Deployment = decode(row.get::<&str, _>(0))?;
            d.state = RolloutState::RolledBack;
            d.rolled_back_by = Some(new.id.clone());
            d.updated_at = new.now;
            d.timeline.finished_at = Some(new.now);
            changed.push(d);
        }
        for d in &changed {
            sqlx::query("UPDATE deployments SET state = ?, body = ? WHERE id = ?")
                .bind(d.state.as_str())
                .bind(encode(d)?)
                .bind(&d.id)
                .execute(&mut *tx)
                .await?;
        }
        let dep = Deployment {
            id: new.id.clone(),
            service: new.key.clone(),
            revision,
            desired_count: new.desired_count,
            state: RolloutState::InProgress,
            reason: None,
            failed_tasks: 0,
            rollback_of: new.rollback_of.clone(),
            rolled_back_by: None,
            created_at: new.now,
            updated_at: new.now,
            timeline: Timeline::default(),
        };
        sqlx::query("INSERT INTO deployments (id, app, env, name, state, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(&dep.id)
            .bind(&new.key.app)
            .bind(&new.key.env)
            .bind(&new.key.name)
            .bind(dep.state.as_str())
            .bind(encode(&dep)?)
            .bind(new.now)
            .execute(&mut *tx)
            .await?;
        let existing =
            sqlx::query("SELECT body FROM services WHERE app = ? AND env = ? AND name = ?")
                .bind(&new.key.app)
                .bind(&new.key.env)
                .bind(&new.key.name)
                .fetch_optional(&mut *tx)
                .await?;
        let created_at = match existing {
            Some(r) => decode::<ServiceRecord>(r.get::<&str, _>(0))?.created_at,
            None => new.now,
        };
        let svc = ServiceRecord {
            key: new.key.clone(),
            kind: new.kind,
            desired_count: new.desired_count,
            config: new.config,
            revision,
            deleting: false,
            created_at,
            updated_at: new.now,
        };
        sqlx::query(
            "INSERT INTO services (app, env, name, body, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (app, env, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(&new.key.app)
        .bind(&new.key.env)
        .bind(&new.key.name)
        .bind(encode(&svc)?)
        .bind(new.now)
        .execute(&mut *tx)
        .await?;
        // Keep the history bounded: the newest 50 deployments of the service.
        sqlx::query(
            "DELETE FROM deployments WHERE app = ? AND env = ? AND name = ? AND state != 'IN_PROGRESS' AND id NOT IN
             (SELECT id FROM deployments WHERE app = ? AND env = ? AND name = ? ORDER BY created_at DESC LIMIT 50)",
        )
        .bind(&new.key.app)
        .bind(&new.key.env)
        .bind(&new.key.name)
        .bind(&new.key.app)
        .bind(&new.key.env)
        .bind(&new.key.name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(dep)
    }

    async fn get_deployment(&self, id: &str) -> Result<Option<Deployment>> {
        let row = sqlx::query("SELECT body FROM deployments WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(r.get::<&str, _>(0))).transpose()
    }

    async fn list_deployments(&self, key: &ServiceKey, limit: u32) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(
            "SELECT body FROM deployments WHERE app = ? AND env = ? AND name = ? ORDER BY created_at DESC, id DESC LIMIT ?",
        )
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    async fn service_views(
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

    async fn active_deployments(&self, key: &ServiceKey) -> Result<Vec<Deployment>> {
        // The planner needs the in-progress ones and the succeeded ones it may fall back to;
        // the newest 10 cover every case that matters.
        self.list_deployments(key, 10).await
    }

    async fn put_deployment(&self, d: &Deployment) -> Result<()> {
        let _written = self.cache.views.write();
        sqlx::query("UPDATE deployments SET state = ?, body = ? WHERE id = ?")
            .bind(d.state.as_str())
            .bind(encode(d)?)
            .bind(&d.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_task(&self, t: &Task) -> Result<()> {
        let _written = self.cache.views.write();
        sqlx::query(
            "INSERT INTO tasks (id, app, env, name, desired_running, last_status, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET desired_running = excluded.desired_running, last_status = excluded.last_status, body = excluded.body",
        )
        .bind(&t.id)
        .bind(&t.service.app)
        .bind(&t.service.env)
        .bind(&t.service.name)
        .bind(t.desired_running)
        .bind(t.last_status.as_str())
        .bind(encode(t)?)
        .bind(t.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let row = sqlx::query("SELECT body FROM tasks WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(r.get::<&str, _>(0))).transpose()
    }

    async fn list_tasks(&self, key: &ServiceKey, include_stopped: bool) -> Result<Vec<Task>> {
        let sql = if include_stopped {
            "SELECT body FROM tasks WHERE app = ? AND env = ? AND name = ? ORDER BY created_at DESC, id"
        } else {
            "SELECT body FROM tasks WHERE app = ? AND env = ? AND name = ? AND last_status != 'STOPPED' ORDER BY created_at DESC, id"
        };
        let rows = sqlx::query(sql)
            .bind(&key.app)
            .bind(&key.env)
            .bind(&key.name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    async fn live_standalone_tasks(&self) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT body FROM tasks WHERE name = ? AND last_status != 'STOPPED' ORDER BY created_at, id",
        )
        .bind(STANDALONE_SERVICE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    async fn prune_stopped_tasks(&self, before: i64, keep: u32) -> Result<u64> {
        let _written = self.cache.views.write();
        let res = sqlx::query(
            "DELETE FROM tasks WHERE last_status = 'STOPPED' AND created_at < ? AND id NOT IN (
                SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY app, env, name ORDER BY created_at DESC) AS n
                                FROM tasks WHERE last_status = 'STOPPED') WHERE n <= ?)",
        )
        .bind(before)
        .bind(i64::from(keep))
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    async fn add_event(&self, key: &ServiceKey, now: i64, message: &str) -> Result<()> {
        let _written = self.cache.views.write();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO events (app, env, name, created_at, message) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .bind(now)
        .bind(message)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM events WHERE app = ? AND env = ? AND name = ? AND id NOT IN
             (SELECT id FROM events WHERE app = ? AND env = ? AND name = ? ORDER BY id DESC LIMIT ?)",
        )
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .bind(MAX_EVENTS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_events(&self, key: &ServiceKey, limit: u32) -> Result<Vec<ServiceEvent>> {
        let rows = sqlx::query(
            "SELECT id, created_at, message FROM events WHERE app = ? AND env = ? AND name = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(&key.app)
        .bind(&key.env)
        .bind(&key.name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ServiceEvent {
                id: r.get(0),
                created_at: r.get(1),
                message: r.get(2),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use slipway_core::model::{ContainerSpec, DeploymentConfig, PullPolicy, ServiceKind};

    use super::*;

    fn container(image: &str) -> ContainerSpec {
        ContainerSpec {
            secrets: Default::default(),
            image: image.into(),
            image_digest: None,
            pull: PullPolicy::Missing,
            port: Some(8080),
            command: None,
            environment: Default::default(),
            cpu: None,
            memory: None,
            healthcheck: None,
            http_health: None,
            stop_timeout_ms: 30_000,
            http_route: None,
        }
    }

    fn new(
        id: &str,
        key: &ServiceKey,
        revision: RevisionChoice,
        now: i64,
        rollback_of: Option<&str>,
    ) -> NewDeployment {
        NewDeployment {
            id: id.into(),
            key: key.clone(),
            kind: ServiceKind::BackendService,
            desired_count: 2,
            config: DeploymentConfig::default(),
            revision,
            rollback_of: rollback_of.map(str::to_owned),
            now,
        }
    }

    #[tokio::test]
    async fn secrets_keep_every_version() {
        let s = SqliteStore::memory().await.unwrap();
        assert_eq!(s.current_secret_version("shop/db").await.unwrap(), None);
        assert_eq!(s.put_secret("shop/db", b"one", 1).await.unwrap(), 1);
        assert_eq!(s.put_secret("shop/db", b"two", 2).await.unwrap(), 2);
        assert_eq!(s.put_secret("other", b"x", 3).await.unwrap(), 1);
        assert_eq!(
            s.get_secret("shop/db", None).await.unwrap(),
            Some((2, b"two".to_vec()))
        );
        assert_eq!(
            s.get_secret("shop/db", Some(1)).await.unwrap(),
            Some((1, b"one".to_vec()))
        );
        let all = s.list_secrets().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[1].name.as_str(), all[1].version, all[1].versions),
            ("shop/db", 2, 2)
        );
        assert!(s.delete_secret("shop/db", 4).await.unwrap());
        assert!(!s.delete_secret("shop/db", 5).await.unwrap());
        assert_eq!(s.current_secret_version("shop/db").await.unwrap(), None);
        assert_eq!(s.get_secret("shop/db", None).await.unwrap(), None);
        // Pinned versions stay readable for the releases that use them.
        assert!(s.get_secret("shop/db", Some(2)).await.unwrap().is_some());
        // Set again: numbering continues, never reusing a version.
        assert_eq!(s.put_secret("shop/db", b"three", 6).await.unwrap(), 3);
        assert_eq!(s.list_secrets().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn task_definitions_and_access_keys() {
        let s = SqliteStore::memory().await.unwrap();
        let td = |image: &str| TaskDefinition {
            family: "web".into(),
            revision: 0,
            container: container(image),
            created_at: 5,
            source: None,
            ecs: Some("{}".into()),
            deregistered_at: None,
        };
        assert_eq!(
            s.register_task_definition(td("a:1"))
                .await
                .unwrap()
                .revision,
            1
        );
        let mut two = s.register_task_definition(td("a:2")).await.unwrap();
        assert_eq!(two.revision, 2);
        two.deregistered_at = Some(9);
        s.put_task_definition(&two).await.unwrap();
        let all = s.list_task_definitions().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].deregistered_at, Some(9));
        // Revisions are never reused.
        assert_eq!(
            s.register_task_definition(td("a:3"))
                .await
                .unwrap()
                .revision,
            3
        );

        let mut k = AccessKey {
            id: "AKIA1".into(),
            secret: "s".into(),
            name: Some("ci".into()),
            read_only: true,
            created_at: 1,
            revoked_at: None,
        };
        s.put_access_key(&k).await.unwrap();
        k.revoked_at = Some(2);
        s.put_access_key(&k).await.unwrap();
        assert_eq!(s.get_access_key("AKIA1").await.unwrap(), Some(k.clone()));
        assert_eq!(s.list_access_keys().await.unwrap(), vec![k]);
        assert!(s.get_access_key("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn deployments_register_revisions_and_supersede() {
        let s = SqliteStore::memory().await.unwrap();
        let key = ServiceKey::new("shop", "default", "api");
        let d1 = s
            .create_deployment(new(
                "d1",
                &key,
                RevisionChoice::Register(Box::new(container("a:1"))),
                1,
                None,
            ))
            .await
            .unwrap();
        assert_eq!(d1.revision, 1);
        let d2 = s
            .create_deployment(new(
                "d2",
                &key,
                RevisionChoice::Register(Box::new(container("a:2"))),
                2,
                None,
            ))
            .await
            .unwrap();
        assert_eq!(d2.revision, 2);
        let d1 = s.get_deployment("d1").await.unwrap().unwrap();
        assert_eq!(d1.state, RolloutState::Failed);
        assert!(d1.reason.unwrap().contains("superseded by deployment d2"));
        let svc = s.get_service(&key).await.unwrap().unwrap();
        assert_eq!(svc.revision, 2);
        assert_eq!(
            s.latest_task_definition(&key.family())
                .await
                .unwrap()
                .unwrap()
                .container
                .image,
            "a:2"
        );

        let d3 = s
            .create_deployment(new("d3", &key, RevisionChoice::Existing(1), 3, Some("d2")))
            .await
            .unwrap();
        assert_eq!(d3.rollback_of.as_deref(), Some("d2"));
        let d2 = s.get_deployment("d2").await.unwrap().unwrap();
        assert_eq!(d2.state, RolloutState::RolledBack);
        assert_eq!(d2.rolled_back_by.as_deref(), Some("d3"));
        let list = s.list_deployments(&key, 10).await.unwrap();
        assert_eq!(
            list.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["d3", "d2", "d1"]
        );
    }

    fn task(id: &str, key: &ServiceKey, deployment: &str, status: TaskStatus) -> Task {
        Task {
            id: id.into(),
            service: key.clone(),
            deployment_id: deployment.into(),
            revision: 1,
            container_id: None,
            last_status: status,
            desired_running: status != TaskStatus::Stopped,
            health: if status == TaskStatus::Running {
                TaskHealth::Healthy
            } else {
                TaskHealth::Unknown
            },
            address: None,
            stop_code: None,
            stopped_reason: None,
            exit_code: None,
            created_at: 1,
            started_at: None,
            healthy_at: None,
            stopped_at: None,
            standalone: None,
        }
    }

    #[tokio::test]
    async fn service_views_batch_several_services() {
        let s = SqliteStore::memory().await.unwrap();
        let a = ServiceKey::new("shop", "default", "a");
        let b = ServiceKey::new("shop", "default", "b");
        let other = ServiceKey::new("shop", "prod", "a");
        for (i, key) in [&a, &b, &other].into_iter().enumerate() {
            let id = format!("d{i}");
            s.create_deployment(new(
                &id,
                key,
                RevisionChoice::Register(Box::new(container("x:1"))),
                i as i64,
                None,
            ))
            .await
            .unwrap();
            s.create_deployment(new(
                &format!("{id}b"),
                key,
                RevisionChoice::Existing(1),
                10 + i as i64,
                None,
            ))
            .await
            .unwrap();
            s.add_event(key, 1, "first").await.unwrap();
            s.add_event(key, 2, "second").await.unwrap();
            s.add_event(key, 3, "third").await.unwrap();
        }
        s.put_task(&task("t1", &a, "d0b", TaskStatus::Running))
            .await
            .unwrap();
        s.put_task(&task("t2", &a, "d0b", TaskStatus::Running))
            .await
            .unwrap();
        s.put_task(&task("t3", &a, "d0", TaskStatus::Pending))
            .await
            .unwrap();
        s.put_task(&task("t4", &a, "d0", TaskStatus::Stopped))
            .await
            .unwrap();
        s.put_task(&task("t5", &other, "d2", TaskStatus::Running))
            .await
            .unwrap();

        let names = ["b".to_owned(), "a".to_owned(), "missing".to_owned()];
        let v = s
            .service_views("shop", "default", &names, 1, 2)
            .await
            .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].record.key, a);
        assert_eq!(v[1].record.key, b);
        assert_eq!(v[0].deployments.len(), 1, "newest deployment only");
        assert_eq!(v[0].deployments[0].id, "d0b");
        let msgs: Vec<&str> = v[0].events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["third", "second"]);
        let mut counts: Vec<(String, TaskStatus, u32)> = v[0]
            .tasks
            .iter()
            .map(|t| (t.deployment_id.clone(), t.last_status, t.count))
            .collect();
        counts.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            counts,
            [
                ("d0".to_owned(), TaskStatus::Pending, 1),
                ("d0b".to_owned(), TaskStatus::Running, 2)
            ],
            "stopped tasks are not counted"
        );
        assert!(v[0].tasks.iter().all(|t| t.desired_running));
        assert!(v[1].tasks.is_empty());

        let tds = s
            .get_task_definitions(&[(a.family(), 1), (b.family(), 1), (b.family(), 9)])
            .await
            .unwrap();
        assert_eq!(tds.len(), 2);

        let mut standalone = task(
            "s1",
            &ServiceKey::standalone("shop", "default"),
            "x",
            TaskStatus::Running,
        );
        s.put_task(&standalone).await.unwrap();
        assert_eq!(s.live_standalone_tasks().await.unwrap().len(), 1);
        standalone.last_status = TaskStatus::Stopped;
        s.put_task(&standalone).await.unwrap();
        assert!(s.live_standalone_tasks().await.unwrap().is_empty());
    }

    /// The read caches never answer with what a finished write changed: after every kind of
    /// write, the cached reads equal reads straight from the database.
    #[tokio::test]
    async fn cached_reads_follow_every_write() {
        let s = SqliteStore::memory().await.unwrap();
        let a = ServiceKey::new("shop", "default", "a");
        let names = ["a".to_owned(), "b".to_owned()];
        let tds = [(a.family(), 1), (a.family(), 2)];
        let check = async |s: &SqliteStore, step: &str| {
            // Twice: the first read may fill the cache, the second is answered from it.
            for _ in 0..2 {
                let cached = s
                    .service_views("shop", "default", &names, 10, 100)
                    .await
                    .unwrap();
                let fresh = s
                    .read_service_views("shop", "default", &names, 10, 100)
                    .await
                    .unwrap();
                assert_eq!(cached, fresh, "service views after {step}");
                let cached = s.get_task_definitions(&tds).await.unwrap();
                let fresh = s.read_task_definitions(&tds).await.unwrap();
                assert_eq!(cached.len(), fresh.len(), "task definitions after {step}");
                for (c, f) in cached.iter().zip(&fresh) {
                    assert_eq!(
                        (&c.family, c.revision, &c.deregistered_at),
                        (&f.family, f.revision, &f.deregistered_at),
                        "task definitions after {step}"
                    );
                }
                assert_eq!(
                    s.get_meta("k").await.unwrap(),
                    s.read_meta("k").await.unwrap(),
                    "meta after {step}"
                );
            }
        };
        check(&s, "nothing").await;
        s.create_deployment(new(
            "d1",
            &a,
            RevisionChoice::Register(Box::new(container("x:1"))),
            1,
            None,
        ))
        .await
        .unwrap();
        check(&s, "create_deployment").await;
        s.put_task(&task("t1", &a, "d1", TaskStatus::Running))
            .await
            .unwrap();
        check(&s, "put_task").await;
        s.add_event(&a, 2, "started").await.unwrap();
        check(&s, "add_event").await;
        let mut d = s.get_deployment("d1").await.unwrap().unwrap();
        d.state = RolloutState::Succeeded;
        s.put_deployment(&d).await.unwrap();
        check(&s, "put_deployment").await;
        let mut rec = s.get_service(&a).await.unwrap().unwrap();
        rec.desired_count = 5;
        s.put_service(&rec).await.unwrap();
        check(&s, "put_service").await;
        let mut td = s
            .get_task_definition(&a.family(), 1)
            .await
            .unwrap()
            .unwrap();
        td.deregistered_at = Some(3);
        s.put_task_definition(&td).await.unwrap();
        check(&s, "put_task_definition").await;
        td.revision = 0;
        s.register_task_definition(td).await.unwrap();
        check(&s, "register_task_definition").await;
        s.set_meta("k", "v").await.unwrap();
        check(&s, "set_meta").await;
        s.remove_service(&a).await.unwrap();
        check(&s, "remove_service").await;
        assert!(
            s.service_views("shop", "default", &names, 10, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn events_are_bounded_and_newest_first() {
        let s = SqliteStore::memory().await.unwrap();
        let key = ServiceKey::new("shop", "default", "api");
        for i in 0..(MAX_EVENTS + 20) {
            s.add_event(&key, i, &format!("event {i}")).await.unwrap();
        }
        let ev = s.list_events(&key, 1000).await.unwrap();
        assert_eq!(ev.len() as i64, MAX_EVENTS);
        assert_eq!(ev[0].message, format!("event {}", MAX_EVENTS + 19));
    }

    #[tokio::test]
    async fn meta_and_file_database_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = SqliteStore::open(&path).await.unwrap();
            s.set_meta("k", "v1").await.unwrap();
            s.set_meta("k", "v2").await.unwrap();
        }
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some("v2"));
        assert_eq!(s.get_meta("missing").await.unwrap(), None);
    }
}
