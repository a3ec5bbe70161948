//! Writes: a [`Batch`] committed in one transaction, every record written by compare-and-swap
//! on its version (see the crate documentation).

use slipway_core::model::{
    Deployment, MAX_EVENTS, RolloutState, ServiceKey, Task, TaskDefinition, Timeline,
};
use sqlx::AnyConnection;
use sqlx::Row;

use crate::db::{Backend, Store};
use crate::notify::{CHANNEL, Payload};
use crate::read::record;
use crate::{
    AccessKey, Batch, ClusterRecord, Conflict, ElbRecord, HostRecord, IdentityRecord,
    NewDeployment, Outcome, Result, RevisionChoice, ServiceRecord, StoreError, Write,
};

/// How many deployments of a service are kept (in-progress ones are always kept).
pub const DEPLOYMENTS_KEPT: i64 = 50;

/// A bound value.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    S(&'a str),
    I(i64),
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind<'q>(q: AnyQuery<'q>, v: Val<'q>) -> AnyQuery<'q> {
    match v {
        Val::S(s) => q.bind(s),
        Val::I(i) => q.bind(i),
    }
}

/// `a = $from AND b = $from+1 ...`
fn conditions(keys: &[(&str, Val<'_>)], from: usize) -> String {
    keys.iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{c} = ${}", from + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

/// True for errors a writer recovers from by re-reading and re-applying: unique violations
/// (two writers created the same record) and PostgreSQL's serialization failures and
/// deadlocks.
fn is_race(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || matches!(d.code().as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    }
}

/// The current version of the row `keys` selects in `table` (0: none).
async fn version_of(tx: &mut AnyConnection, table: &str, keys: &[(&str, Val<'_>)]) -> Result<u64> {
    let sql = format!("SELECT version FROM {table} WHERE {}", conditions(keys, 1));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (_, v) in keys {
        q = bind(q, *v);
    }
    Ok(q.fetch_optional(&mut *tx)
        .await?
        .map_or(0, |r| r.get::<i64, _>(0) as u64))
}

/// Updates the row `keys` selects if it is at `version`; returns its new version.
async fn update_cas(
    tx: &mut AnyConnection,
    what: &(dyn Fn() -> String + Sync),
    table: &str,
    keys: &[(&str, Val<'_>)],
    sets: &[(&str, Val<'_>)],
    version: u64,
) -> Result<u64> {
    let set: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{c} = ${}", i + 1))
        .collect();
    let n = sets.len();
    let sql = format!(
        "UPDATE {table} SET {}, version = version + 1 WHERE {} AND version = ${}",
        set.join(", "),
        conditions(keys, n + 1),
        n + keys.len() + 1
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (_, v) in sets.iter().chain(keys) {
        q = bind(q, *v);
    }
    let r = q.bind(version as i64).execute(&mut *tx).await?;
    if r.rows_affected() == 0 {
        let found = version_of(tx, table, keys).await?;
        return Err(Conflict {
            record: what(),
            expected: version,
            found,
        }
        .into());
    }
    Ok(version + 1)
}

/// Inserts a new row at version 1, or reports the one that exists.
async fn insert_new(
    tx: &mut AnyConnection,
    what: &(dyn Fn() -> String + Sync),
    table: &str,
    keys: &[(&str, Val<'_>)],
    cols: &[(&str, Val<'_>)],
) -> Result<u64> {
    let found = version_of(tx, table, keys).await?;
    if found != 0 {
        return Err(Conflict {
            record: what(),
            expected: 0,
            found,
        }
        .into());
    }
    let all: Vec<&(&str, Val<'_>)> = keys.iter().chain(cols).collect();
    let names: Vec<&str> = all.iter().map(|(c, _)| *c).collect();
    let sql = format!(
        "INSERT INTO {table} ({}, version) VALUES ({}, 1)",
        names.join(", "),
        crate::read::placeholders(1, all.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (_, v) in all {
        q = bind(q, *v);
    }
    match q.execute(&mut *tx).await {
        Ok(_) => Ok(1),
        Err(e) if is_race(&e) => Err(Conflict {
            record: what(),
            expected: 0,
            found: 1,
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Writes a record: inserted when its version is 0, else compare-and-swapped.
async fn put(
    tx: &mut AnyConnection,
    what: &(dyn Fn() -> String + Sync),
    table: &str,
    keys: &[(&str, Val<'_>)],
    insert_only: &[(&str, Val<'_>)],
    sets: &[(&str, Val<'_>)],
    version: u64,
) -> Result<u64> {
    if version == 0 {
        let cols: Vec<(&str, Val<'_>)> = insert_only.iter().chain(sets).copied().collect();
        insert_new(tx, what, table, keys, &cols).await
    } else {
        update_cas(tx, what, table, keys, sets, version).await
    }
}

fn service_keys(k: &ServiceKey) -> [(&'static str, Val<'_>); 3] {
    [
        ("app", Val::S(&k.app)),
        ("env", Val::S(&k.env)),
        ("name", Val::S(&k.name)),
    ]
}

impl Store {
    /// Commits `batch` as one transaction: every write, or (on any error, a
    /// [`StoreError::Conflict`] among them) none. Returns one outcome per write, in order;
    /// then wakes the controllers of `batch.notify`, on every server.
    ///
    /// With SQLite, batches committed at the same moment share one database transaction
    /// and one fsync (group commit, see [`GroupWriter`]); each is a savepoint of its own, so
    /// each is still all or nothing and a conflict in one leaves the others untouched.
    ///
    /// Inside [`crate::audit::with_pending_audit`], the first batch with a change also
    /// records the call's audit entry (its outcome is not among those returned).
    pub async fn commit(&self, mut batch: Batch) -> Result<Vec<Outcome>> {
        if batch.writes.is_empty() {
            self.notify_local(&batch.notify);
            return Ok(Vec::new());
        }
        let carried = if batch.only_audit() {
            None
        } else {
            crate::audit::take()
        };
        if let Some(e) = &carried {
            batch.writes.push(Write::Audit(e.clone()));
        }
        let notify = batch.notify.clone();
        let touched = batch.touched();
        let committed = match &self.inner.writer {
            Some(w) => w.submit(batch).await,
            None => self.commit_alone(batch).await,
        };
        let mut out = match committed {
            Ok(out) => out,
            Err(e) => {
                if let Some(entry) = carried {
                    crate::audit::put_back(entry);
                }
                return Err(e);
            }
        };
        if carried.is_some() {
            out.pop();
        }
        if let Some(hook) = self.inner.on_ended.get() {
            for d in out.iter().flat_map(Outcome::ended) {
                hook(d);
            }
        }
        self.notify_local(&notify);
        self.announce(touched);
        Ok(out)
    }

    /// Calls `hook` with every deployment a commit of this process moves from
    /// `IN_PROGRESS` to an outcome, once, after the commit (the move is a compare-and-swap:
    /// one commit in the whole cluster makes it). Set once; later calls are ignored.
    pub fn on_deployment_ended(&self, hook: crate::EndedHook) {
        let _ = self.inner.on_ended.set(hook);
    }

    /// One batch in one transaction of its own (PostgreSQL: concurrent commits share WAL
    /// flushes in the server).
    async fn commit_alone(&self, batch: Batch) -> Result<Vec<Outcome>> {
        let backend = self.inner.backend;
        let light = batch.only_audit();
        let written = (!light).then(|| self.inner.cache.write_all());
        let mut tx = match backend {
            // Take the write lock at once: two writers never both read, then both try to
            // upgrade (SQLITE_BUSY).
            Backend::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool().begin().await?,
        };
        if light && backend == Backend::Postgres {
            // Committed and visible at once; flushed by the WAL writer within a few hundred
            // milliseconds (a crash of the database server may lose the last entries; it
            // never corrupts anything).
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        let out = apply_all(&mut tx, batch.writes).await?;
        if backend == Backend::Postgres && !light {
            // Delivered to every server (this one included) only if the transaction commits.
            sqlx::query("SELECT 1 FROM pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(Payload::encode(&self.inner.origin, &batch.notify))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        drop(written);
        if !light {
            self.bump_generation();
        }
        Ok(out)
    }

    /// Sets a meta value (one write).
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.commit(Batch::new().write(Write::Meta {
            key: key.to_owned(),
            value: value.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// Sets a meta value unless it is set; returns the value in force (the first writer's
    /// when several race).
    pub async fn init_meta(&self, key: &str, value: &str) -> Result<String> {
        let written = self.inner.cache.write_all();
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(self.pool())
            .await?;
        drop(written);
        self.bump_generation();
        Ok(self.read_meta(key).await?.unwrap_or_default())
    }

    /// Drops stopped tasks that stopped before `before`, keeping the newest `keep` per
    /// service (housekeeping: no record a writer holds is touched).
    pub async fn prune_stopped_tasks(&self, before: i64, keep: u32) -> Result<u64> {
        let _written = self.inner.cache.write_all();
        let res = sqlx::query(
            "DELETE FROM tasks WHERE last_status = 'STOPPED' AND created_at < $1 AND id NOT IN (
                SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY app, env, name ORDER BY created_at DESC) AS n
                                FROM tasks WHERE last_status = 'STOPPED') AS t WHERE n <= $2)",
        )
        .bind(before)
        .bind(i64::from(keep))
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected())
    }
}

/// Applies the writes of one batch, in order; a lost race is a [`StoreError::Conflict`].
async fn apply_all(tx: &mut AnyConnection, writes: Vec<Write>) -> Result<Vec<Outcome>> {
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        let r = apply(tx, w).await.map_err(|e| match e {
            StoreError::Database(ref d) if is_race(d) => StoreError::Conflict(Conflict {
                record: "a record".into(),
                expected: 0,
                found: 0,
            }),
            e => e,
        })?;
        out.push(r);
    }
    Ok(out)
}

/// Group commit for SQLite: one task writes, taking every batch waiting when it starts a
/// transaction (up to [`GROUP_MAX`]), each inside a savepoint, then commits them with one
/// fsync. An acknowledged batch is on disk (`synchronous=FULL`) as before; under
/// concurrency the disk is synced once per group instead of once per batch.
pub(crate) struct GroupWriter {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

struct Job {
    batch: Batch,
    done: tokio::sync::oneshot::Sender<Result<Vec<Outcome>>>,
}

/// Most batches committed together.
const GROUP_MAX: usize = 64;

impl GroupWriter {
    /// Starts the writer of `store` (it ends when the store is dropped).
    pub(crate) fn start(store: std::sync::Weak<crate::db::Inner>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(1024);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let Some(inner) = store.upgrade() else {
                    return;
                };
                let store = Store { inner };
                store.commit_group(jobs).await;
            }
        });
        GroupWriter { jobs: tx }
    }

    async fn submit(&self, batch: Batch) -> Result<Vec<Outcome>> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job { batch, done })
            .await
            .map_err(|_| StoreError::Unusable("the database writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unusable("the database writer stopped".into()))?
    }
}

impl Store {
    /// Commits `jobs` in one transaction, each batch in its own savepoint, and answers each.
    ///
    /// A group of audit entries only ([`Batch::only_audit`]) is committed with
    /// `synchronous=NORMAL`: in the database and visible before it is acknowledged, and kept
    /// if the process dies, but on disk only with the next synced commit or checkpoint (a
    /// power loss may drop the last entries; Vault's file audit device gives the same). It
    /// leaves the caches and the generation alone.
    async fn commit_group(&self, jobs: Vec<Job>) {
        let light = jobs.iter().all(|j| j.batch.only_audit());
        let written = (!light).then(|| self.inner.cache.write_all());
        tracing::trace!(batches = jobs.len(), light, "group commit");
        let mut results: Vec<Result<Vec<Outcome>>> = Vec::with_capacity(jobs.len());
        let mut dones = Vec::with_capacity(jobs.len());
        let committed: Result<()> = async {
            let mut conn = self.pool().acquire().await?;
            if light {
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *conn)
                    .await?;
            }
            let applied = async {
                let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
                for job in jobs {
                    dones.push(job.done);
                    if light {
                        // Audit entries cannot conflict: no savepoint, one statement each.
                        results.push(apply_all(&mut tx, job.batch.writes).await);
                        continue;
                    }
                    sqlx::query("SAVEPOINT batch").execute(&mut *tx).await?;
                    match apply_all(&mut tx, job.batch.writes).await {
                        Ok(out) => {
                            sqlx::query("RELEASE batch").execute(&mut *tx).await?;
                            results.push(Ok(out));
                        }
                        Err(e) => {
                            sqlx::query("ROLLBACK TO batch").execute(&mut *tx).await?;
                            sqlx::query("RELEASE batch").execute(&mut *tx).await?;
                            results.push(Err(e));
                        }
                    }
                }
                tx.commit().await?;
                Ok::<_, StoreError>(())
            }
            .await;
            if light {
                // Back to FULL before the connection serves anything else; a connection
                // that cannot be set back is closed, never reused.
                let restored = sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *conn)
                    .await;
                if restored.is_err() {
                    conn.close_on_drop();
                }
            }
            applied
        }
        .await;
        drop(written);
        if !light {
            self.bump_generation();
        }
        match committed {
            Ok(()) => {
                for (done, r) in dones.into_iter().zip(results) {
                    let _ = done.send(r);
                }
            }
            Err(e) => {
                // Nothing of the group is on disk: every batch failed with it.
                tracing::warn!(error = %e, "a group commit failed");
                let msg = e.to_string();
                for done in dones {
                    let _ = done.send(Err(StoreError::Unusable(format!(
                        "the commit failed: {msg}"
                    ))));
                }
            }
        }
    }
}

async fn apply(tx: &mut AnyConnection, w: Write) -> Result<Outcome> {
    Ok(match w {
        Write::Service(s) => Outcome::Version(put_service(tx, &s).await?),
        Write::RemoveService { key, version } => {
            let what = || format!("service {key}");
            let keys = service_keys(&key);
            let r = sqlx::query(
                "DELETE FROM services WHERE app = $1 AND env = $2 AND name = $3 AND version = $4",
            )
            .bind(&key.app)
            .bind(&key.env)
            .bind(&key.name)
            .bind(version as i64)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                let found = version_of(tx, "services", &keys).await?;
                return Err(Conflict {
                    record: what(),
                    expected: version,
                    found,
                }
                .into());
            }
            for table in ["deployments", "tasks", "events"] {
                let sql = format!("DELETE FROM {table} WHERE app = $1 AND env = $2 AND name = $3");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&key.app)
                    .bind(&key.env)
                    .bind(&key.name)
                    .execute(&mut *tx)
                    .await?;
            }
            Outcome::Done(true)
        }
        Write::Deploy(new) => {
            let (deployment, service_version, ended) = deploy(tx, new).await?;
            Outcome::Deployed {
                deployment: Box::new(deployment),
                service_version,
                ended,
            }
        }
        Write::Deployment(d) => {
            // Whether this write ends it: read in the same transaction as the
            // compare-and-swap below, so only the write that wins the swap says so.
            let ends = d.state.is_terminal()
                && sqlx::query("SELECT state FROM deployments WHERE id = $1")
                    .bind(&d.id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some_and(|r| r.get::<String, _>(0) == RolloutState::InProgress.as_str());
            let version = put_deployment(tx, &d).await?;
            if ends {
                let mut deployment = Box::new(d);
                deployment.version = version;
                Outcome::Ended {
                    version,
                    deployment,
                }
            } else {
                Outcome::Version(version)
            }
        }
        Write::Task(t) => Outcome::Version(put_task(tx, &t).await?),
        Write::TaskDefinition(td) => {
            Outcome::TaskDefinition(Box::new(put_task_definition(tx, *td).await?))
        }
        Write::Event { key, at, message } => {
            add_event(tx, &key, at, &message).await?;
            Outcome::Done(true)
        }
        Write::Cluster(c) => Outcome::Version(put_cluster(tx, &c).await?),
        Write::RemoveCluster { name, version } => {
            let r = sqlx::query("DELETE FROM clusters WHERE name = $1 AND version = $2")
                .bind(&name)
                .bind(version as i64)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() == 0 {
                let found = version_of(tx, "clusters", &[("name", Val::S(&name))]).await?;
                return Err(Conflict {
                    record: format!("cluster {name}"),
                    expected: version,
                    found,
                }
                .into());
            }
            Outcome::Done(true)
        }
        Write::AccessKey(k) => Outcome::Version(put_access_key(tx, &k).await?),
        Write::Identity(i) => Outcome::Version(put_identity(tx, &i).await?),
        Write::Elb(e) => Outcome::Version(put_elb(tx, &e).await?),
        Write::RemoveElb { resource, version } => {
            let r = sqlx::query("DELETE FROM elb WHERE resource = $1 AND version = $2")
                .bind(&resource)
                .bind(version as i64)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() == 0 {
                let found = version_of(tx, "elb", &[("resource", Val::S(&resource))]).await?;
                return Err(Conflict {
                    record: format!("load balancing object {resource}"),
                    expected: version,
                    found,
                }
                .into());
            }
            Outcome::Done(true)
        }
        Write::Audit(e) => {
            sqlx::query("INSERT INTO audit (at, identity, body) VALUES ($1, $2, $3)")
                .bind(e.at)
                .bind(&e.identity)
                .bind(encode(&e)?)
                .execute(&mut *tx)
                .await?;
            Outcome::Done(true)
        }
        Write::Secret {
            name,
            version,
            sealed,
            at,
            expected,
        } => Outcome::Version(
            put_secret(tx, &name, version, &sealed, at, expected)
                .await?
                .into(),
        ),
        Write::ResealSecret {
            name,
            version,
            old,
            sealed,
        } => {
            let r = sqlx::query(
                "UPDATE secrets SET sealed = $1 WHERE name = $2 AND version = $3 AND sealed = $4",
            )
            .bind(sealed)
            .bind(&name)
            .bind(i64::from(version))
            .bind(old)
            .execute(&mut *tx)
            .await?;
            Outcome::Done(r.rows_affected() > 0)
        }
        Write::DeleteSecret { name, at } => {
            let r = sqlx::query(
                "UPDATE secrets SET deleted_at = $1 WHERE name = $2 AND deleted_at IS NULL",
            )
            .bind(at)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
            Outcome::Done(r.rows_affected() > 0)
        }
        Write::Host(h) => Outcome::Version(put_host(tx, &h).await?),
        Write::RemoveHost { id, version } => {
            let r = sqlx::query("DELETE FROM hosts WHERE id = $1 AND version = $2")
                .bind(&id)
                .bind(version as i64)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() == 0 {
                let found = version_of(tx, "hosts", &[("id", Val::S(&id))]).await?;
                return Err(Conflict {
                    record: format!("host {id}"),
                    expected: version,
                    found,
                }
                .into());
            }
            Outcome::Done(true)
        }
        Write::JoinToken {
            hash,
            at,
            expires_at,
        } => {
            sqlx::query(
                "INSERT INTO join_tokens (hash, created_at, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(&hash)
            .bind(at)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            Outcome::Done(true)
        }
        Write::UseJoinToken { hash, host, at } => {
            let r = sqlx::query(
                "UPDATE join_tokens SET used_by = $1 WHERE hash = $2 AND used_by IS NULL AND expires_at > $3",
            )
            .bind(&host)
            .bind(&hash)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound(
                    "an unused, unexpired join token like that".into(),
                ));
            }
            Outcome::Done(true)
        }
        Write::Push(p) => {
            let r = sqlx::query(
                "INSERT INTO pushes (id, app, delivery, at, body) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (app, delivery) DO NOTHING",
            )
            .bind(&p.id)
            .bind(&p.app)
            .bind(&p.delivery)
            .bind(p.at)
            .bind(encode(&p)?)
            .execute(&mut *tx)
            .await?;
            Outcome::Done(r.rows_affected() > 0)
        }
        Write::Meta { key, value } => {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(&key)
            .bind(&value)
            .execute(&mut *tx)
            .await?;
            Outcome::Done(true)
        }
    })
}

async fn put_service(tx: &mut AnyConnection, s: &ServiceRecord) -> Result<u64> {
    let mut body = s.clone();
    body.version = s.version + 1;
    let body = encode(&body)?;
    put(
        tx,
        &|| format!("service {}", s.key),
        "services",
        &service_keys(&s.key),
        &[],
        &[
            ("body", Val::S(&body)),
            ("updated_at", Val::I(s.updated_at)),
        ],
        s.version,
    )
    .await
}

async fn put_deployment(tx: &mut AnyConnection, d: &Deployment) -> Result<u64> {
    let mut body = d.clone();
    body.version = d.version + 1;
    let body = encode(&body)?;
    put(
        tx,
        &|| format!("deployment {}", d.id),
        "deployments",
        &[("id", Val::S(&d.id))],
        &[
            ("app", Val::S(&d.service.app)),
            ("env", Val::S(&d.service.env)),
            ("name", Val::S(&d.service.name)),
            ("created_at", Val::I(d.created_at)),
        ],
        &[("state", Val::S(d.state.as_str())), ("body", Val::S(&body))],
        d.version,
    )
    .await
}

async fn put_task(tx: &mut AnyConnection, t: &Task) -> Result<u64> {
    let mut body = t.clone();
    body.version = t.version + 1;
    let body = encode(&body)?;
    put(
        tx,
        &|| format!("task {}", t.id),
        "tasks",
        &[("id", Val::S(&t.id))],
        &[
            ("app", Val::S(&t.service.app)),
            ("env", Val::S(&t.service.env)),
            ("name", Val::S(&t.service.name)),
            ("created_at", Val::I(t.created_at)),
        ],
        &[
            ("desired_running", Val::I(i64::from(t.desired_running))),
            ("last_status", Val::S(t.last_status.as_str())),
            ("body", Val::S(&body)),
            ("deployment_id", Val::S(&t.deployment_id)),
            ("revision", Val::I(i64::from(t.revision))),
            ("health", Val::S(t.health.as_str())),
            ("host", Val::S(t.host.as_deref().unwrap_or(""))),
        ],
        t.version,
    )
    .await
}

async fn put_host(tx: &mut AnyConnection, h: &HostRecord) -> Result<u64> {
    let mut body = h.clone();
    body.version = h.version + 1;
    let body = encode(&body)?;
    put(
        tx,
        &|| format!("host {}", h.id),
        "hosts",
        &[("id", Val::S(&h.id))],
        &[("created_at", Val::I(h.created_at))],
        &[("body", Val::S(&body))],
        h.version,
    )
    .await
}

/// Registers the next revision of `td.family` (version 0) or updates one.
async fn put_task_definition(
    tx: &mut AnyConnection,
    mut td: TaskDefinition,
) -> Result<TaskDefinition> {
    if td.version == 0 {
        td.revision = next_revision(tx, &td.family).await?;
    }
    let mut body = td.clone();
    body.version = td.version + 1;
    let text = encode(&body)?;
    let revision = i64::from(td.revision);
    let v = put(
        tx,
        &|| format!("task definition {}", td.id()),
        "task_definitions",
        &[
            ("family", Val::S(&td.family)),
            ("revision", Val::I(revision)),
        ],
        &[("created_at", Val::I(td.created_at))],
        &[("body", Val::S(&text))],
        td.version,
    )
    .await?;
    body.version = v;
    Ok(body)
}

async fn next_revision(tx: &mut AnyConnection, family: &str) -> Result<u32> {
    let next: i64 = sqlx::query(
        "SELECT COALESCE(MAX(revision), 0) + 1 FROM task_definitions WHERE family = $1",
    )
    .bind(family)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    Ok(next as u32)
}

async fn put_cluster(tx: &mut AnyConnection, c: &ClusterRecord) -> Result<u64> {
    put(
        tx,
        &|| format!("cluster {}", c.name),
        "clusters",
        &[("name", Val::S(&c.name))],
        &[],
        &[("created_at", Val::I(c.created_at))],
        c.version,
    )
    .await
}

async fn put_access_key(tx: &mut AnyConnection, k: &AccessKey) -> Result<u64> {
    let mut body = k.clone();
    body.version = k.version + 1;
    let body = encode(&body)?;
    put(
        tx,
        &|| format!("access key {}", k.id),
        "access_keys",
        &[("id", Val::S(&k.id))],
        &[("created_at", Val::I(k.created_at))],
        &[("body", Val::S(&body))],
        k.version,
    )
    .await
}

async fn put_identity(tx: &mut AnyConnection, i: &IdentityRecord) -> Result<u64> {
    let mut body = i.clone();
    body.version = i.version + 1;
    let body = encode(&body)?;
    put(
        tx,
        &|| format!("identity {}", i.identity.name),
        "identities",
        &[("name", Val::S(&i.identity.name))],
        &[
            ("created_at", Val::I(i.created_at)),
            ("token_hash", Val::S(&i.token_sha256)),
        ],
        &[("body", Val::S(&body))],
        i.version,
    )
    .await
}

async fn put_elb(tx: &mut AnyConnection, e: &ElbRecord) -> Result<u64> {
    let mut body = e.clone();
    body.version = e.version + 1;
    let body = encode(&body)?;
    let resource = e.object.resource();
    let name = e.object.name();
    put(
        tx,
        &|| format!("load balancing object {resource}"),
        "elb",
        &[("resource", Val::S(&resource))],
        &[
            ("created_at", Val::I(e.object.created_at())),
            ("kind", Val::S(e.object.kind())),
        ],
        &[("body", Val::S(&body)), ("name", Val::S(&name))],
        e.version,
    )
    .await
}

async fn put_secret(
    tx: &mut AnyConnection,
    name: &str,
    version: u32,
    sealed: &[u8],
    at: i64,
    expected: Option<u32>,
) -> Result<u32> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(version), 0),
                COALESCE(MAX(CASE WHEN deleted_at IS NULL THEN version END), 0)
         FROM secrets WHERE name = $1",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let (newest, live): (i64, i64) = (row.get(0), row.get(1));
    if let Some(e) = expected
        && i64::from(e) != live
    {
        return Err(Conflict {
            record: format!("secret {name}"),
            expected: u64::from(e),
            found: live as u64,
        }
        .into());
    }
    let next = newest + 1;
    // The value is sealed for `version`: written as any other version it would not open.
    if i64::from(version) != next {
        return Err(Conflict {
            record: format!("secret {name}"),
            expected: u64::from(version).saturating_sub(1),
            found: newest as u64,
        }
        .into());
    }
    sqlx::query("UPDATE secrets SET deleted_at = NULL WHERE name = $1 AND deleted_at IS NOT NULL")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO secrets (name, version, sealed, created_at) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(next)
        .bind(sealed.to_vec())
        .bind(at)
        .execute(&mut *tx)
        .await?;
    Ok(next as u32)
}

async fn add_event(tx: &mut AnyConnection, key: &ServiceKey, at: i64, message: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (app, env, name, created_at, message, version) VALUES ($1, $2, $3, $4, $5,
            COALESCE((SELECT version FROM services WHERE app = $1 AND env = $2 AND name = $3), 0))",
    )
    .bind(&key.app)
    .bind(&key.env)
    .bind(&key.name)
    .bind(at)
    .bind(message)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM events WHERE app = $1 AND env = $2 AND name = $3 AND id NOT IN
         (SELECT id FROM events WHERE app = $1 AND env = $2 AND name = $3 ORDER BY id DESC LIMIT $4)",
    )
    .bind(&key.app)
    .bind(&key.env)
    .bind(&key.name)
    .bind(MAX_EVENTS)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records a deployment: registers its revision when asked, supersedes the service's older
/// in-progress deployments (FAILED) or marks the one it rolls back ROLLED_BACK, updates the
/// service (if still at the version the writer read), keeps the newest deployments and
/// adds its event.
async fn deploy(
    tx: &mut AnyConnection,
    new: NewDeployment,
) -> Result<(Deployment, u64, Vec<Deployment>)> {
    let family = new.key.family();
    let revision = match new.revision {
        RevisionChoice::Existing(r) => r,
        RevisionChoice::Register {
            container,
            source,
            ecs,
        } => {
            let td = TaskDefinition {
                family: family.clone(),
                revision: 0,
                container: *container,
                created_at: new.now,
                source,
                ecs,
                deregistered_at: None,
                version: 0,
            };
            put_task_definition(tx, td).await?.revision
        }
    };
    // The service first: a writer that lost the race learns it before anything else moves.
    let existing =
        sqlx::query("SELECT body, version FROM services WHERE app = $1 AND env = $2 AND name = $3")
            .bind(&new.key.app)
            .bind(&new.key.env)
            .bind(&new.key.name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| record::<ServiceRecord>(&r, 0))
            .transpose()?;
    let svc = ServiceRecord {
        key: new.key.clone(),
        kind: new.kind,
        desired_count: new.desired_count,
        config: new.config,
        revision,
        deleting: false,
        placement: new.placement.clone(),
        created_at: existing.as_ref().map_or(new.now, |s| s.created_at),
        updated_at: new.now,
        version: new.service_version,
    };
    let service_version = put_service(tx, &svc).await?;

    let rows = sqlx::query(
        "SELECT body, version FROM deployments WHERE app = $1 AND env = $2 AND name = $3 AND state = 'IN_PROGRESS'",
    )
    .bind(&new.key.app)
    .bind(&new.key.env)
    .bind(&new.key.name)
    .fetch_all(&mut *tx)
    .await?;
    let mut ended = Vec::new();
    for r in rows {
        let mut d: Deployment = record(&r, 0)?;
        if new.rollback_of.as_deref() == Some(d.id.as_str()) {
            continue;
        }
        d.state = RolloutState::Failed;
        d.reason = Some(format!("superseded by deployment {}", new.id));
        d.updated_at = new.now;
        d.timeline.finished_at = Some(new.now);
        d.version = put_deployment(tx, &d).await?;
        ended.push(d);
    }
    if let Some(failed_id) = &new.rollback_of {
        let row = sqlx::query("SELECT body, version FROM deployments WHERE id = $1")
            .bind(failed_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("deployment {failed_id}")));
        };
        let mut d: Deployment = record(&row, 0)?;
        let was_in_progress = d.state == RolloutState::InProgress;
        d.state = RolloutState::RolledBack;
        d.rolled_back_by = Some(new.id.clone());
        d.updated_at = new.now;
        d.timeline.finished_at = Some(new.now);
        d.version = put_deployment(tx, &d).await?;
        if was_in_progress {
            ended.push(d);
        }
    }
    // Deployments of a service are ordered by creation: make that the order in which they
    // committed (writers of one service are serialised by its record's version), whatever
    // the writers' clocks said.
    let newest: Option<i64> = sqlx::query(
        "SELECT MAX(created_at) FROM deployments WHERE app = $1 AND env = $2 AND name = $3",
    )
    .bind(&new.key.app)
    .bind(&new.key.env)
    .bind(&new.key.name)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    let created_at = newest.map_or(new.now, |n| new.now.max(n + 1));
    // A progressive rollout (or a bake) is planned from the service's settings; a rollback
    // restores service at once. The stable version is the newest successful deployment's.
    let rollout = if new.config.progressive.is_plain() || new.rollback_of.is_some() {
        None
    } else {
        let stable: Option<Deployment> = sqlx::query(
            "SELECT body, version FROM deployments WHERE app = $1 AND env = $2 AND name = $3 AND state = 'SUCCEEDED' ORDER BY created_at DESC LIMIT 1",
        )
        .bind(&new.key.app)
        .bind(&new.key.env)
        .bind(&new.key.name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| record::<Deployment>(&r, 0))
        .transpose()?;
        Some(slipway_core::rollout::RolloutProgress::new(
            new.config.progressive,
            stable.map(|d| d.revision),
            created_at,
        ))
    };
    let mut dep = Deployment {
        id: new.id.clone(),
        service: new.key.clone(),
        revision,
        desired_count: new.desired_count,
        state: RolloutState::InProgress,
        reason: None,
        failed_tasks: 0,
        rollback_of: new.rollback_of.clone(),
        rolled_back_by: None,
        created_at,
        updated_at: created_at,
        timeline: Timeline::default(),
        rollout,
        version: 0,
    };
    dep.version = put_deployment(tx, &dep).await?;
    // Keep the history bounded: the newest deployments of the service.
    sqlx::query(
        "DELETE FROM deployments WHERE app = $1 AND env = $2 AND name = $3 AND state != 'IN_PROGRESS' AND id NOT IN
         (SELECT id FROM deployments WHERE app = $1 AND env = $2 AND name = $3 ORDER BY created_at DESC LIMIT $4)",
    )
    .bind(&new.key.app)
    .bind(&new.key.env)
    .bind(&new.key.name)
    .bind(DEPLOYMENTS_KEPT)
    .execute(&mut *tx)
    .await?;
    if let Some(msg) = &new.event {
        let msg = msg.replace("{revision}", &revision.to_string());
        add_event(tx, &new.key, new.now, &msg).await?;
    }
    Ok((dep, service_version, ended))
}
