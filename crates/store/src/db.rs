//! Opening the database: SQLite (a file in the data directory, or memory for tests) or
//! PostgreSQL (a URL), the checks that make a database usable by this server, and the
//! migrations.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use slipway_core::model::{ServiceKey, TaskDefinition};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;
use tokio::sync::broadcast;

use crate::cache::Cached;
use crate::notify::Notice;
use crate::{Result, ServiceView, StoreError};

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The persistent state of Slipway (cheap to clone: one pool, one set of caches).
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: AnyPool,
    pub backend: Backend,
    pub cache: Caches,
    pub notices: broadcast::Sender<Notice>,
    /// The services each batch committed by this process touched (see [`Store::changes`]).
    pub changes: broadcast::Sender<Arc<[ServiceKey]>>,
    /// This process' id in notifications, so it can tell its own from other servers'.
    pub origin: String,
    /// The PostgreSQL URL (for the listener and the leadership session).
    pub url: Option<String>,
    pub lease: crate::lease::Lease,
    /// Bumped after every commit of this process and every notice of another server's.
    pub generation: std::sync::atomic::AtomicU64,
    /// SQLite's group-commit writer (PostgreSQL commits each batch on its own).
    pub writer: Option<crate::write::GroupWriter>,
    /// Told of every deployment a commit of this process ended (see
    /// [`Store::on_deployment_ended`]).
    pub on_ended: std::sync::OnceLock<crate::EndedHook>,
}

/// The read caches (see [`crate::cache`]).
pub(crate) struct Caches {
    /// By (app, env, name, deployments, events); `None`: no such service.
    pub views: Cached<(String, String, String, u32, u32), Option<ServiceView>>,
    /// By (family, revision); `None`: no such revision.
    pub task_definitions: Cached<(String, u32), Option<TaskDefinition>>,
    pub meta: Cached<String, Option<String>>,
}

impl Caches {
    /// Declares a write to everything cached: the guard bumps every generation when dropped.
    pub fn write_all(&self) -> impl Sized + '_ {
        (
            self.views.write(),
            self.task_definitions.write(),
            self.meta.write(),
        )
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

/// `postgres://user:secret@host/db` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to
    /// date. Writes are durable when acknowledged (`synchronous=FULL`).
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        let s = Self::connect_sqlite(path).await?;
        s.migrate().await?;
        Ok(s)
    }

    /// An in-memory SQLite database, for tests.
    pub async fn memory() -> Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await?;
        let s = Self::with_pool(pool, Backend::Sqlite, None);
        s.migrate().await?;
        Ok(s)
    }

    /// Connects to the SQLite database at `path` (creating the file) without migrating.
    pub async fn connect_sqlite(path: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        // sqlx reads the path of a SQLite URL percent-decoded: escape every byte that is not
        // plainly a path character (spaces, `#`, `?`, `%` ...).
        use std::os::unix::ffi::OsStrExt;
        let escaped: String = path
            .as_os_str()
            .as_bytes()
            .iter()
            .map(|&b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b => format!("%{b:02X}"),
            })
            .collect();
        let url = format!("sqlite://{escaped}?mode=rwc");
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers never wait for the writer. FULL: a commit is on disk
                    // before it is acknowledged (power loss keeps every acknowledged write).
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Self::with_pool(pool, Backend::Sqlite, None))
    }

    /// Connects to PostgreSQL at `url` without migrating or writing anything: the caller
    /// checks the database ([`Store::check_schema`], [`Store::peek_meta`]) first, then
    /// calls [`Store::migrate`]. Errors say what to fix and never show a password.
    pub async fn connect_postgres(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let shown = redacted(url);
        let parsed = url::Url::parse(url).map_err(|e| {
            StoreError::Unusable(format!(
                "--database {shown}: not a URL ({e}); use postgres://USER[:PASSWORD]@HOST:PORT/DATABASE"
            ))
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(StoreError::Unusable(format!(
                "--database {shown}: only postgres:// URLs are supported (SQLite is the default without --database)"
            )));
        }
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| {
                StoreError::Unusable(format!(
                    "cannot connect to the database at {shown}: {e}; check --database and that PostgreSQL runs there"
                ))
            })?;
        let s = Self::with_pool(pool, Backend::Postgres, Some(url.to_owned()));
        crate::notify::spawn_listener(&s).await?;
        Ok(s)
    }

    /// Connects to PostgreSQL and brings its schema up to date (tests and tools; the server
    /// checks the database between the two steps).
    pub async fn open_postgres(url: &str) -> Result<Self> {
        let s = Self::connect_postgres(url).await?;
        s.check_schema().await?;
        s.migrate().await?;
        Ok(s)
    }

    fn with_pool(pool: AnyPool, backend: Backend, url: Option<String>) -> Self {
        let (notices, _) = broadcast::channel(1024);
        let (changes, _) = broadcast::channel(1024);
        let inner = Arc::new_cyclic(|weak| Inner {
            pool,
            backend,
            cache: Caches {
                views: Cached::new(),
                task_definitions: Cached::new(),
                meta: Cached::new(),
            },
            notices,
            changes,
            origin: crate::random_id(8),
            url,
            lease: crate::lease::Lease::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
            writer: (backend == Backend::Sqlite)
                .then(|| crate::write::GroupWriter::start(weak.clone())),
            on_ended: std::sync::OnceLock::new(),
        });
        Store { inner }
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.inner.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        }
    }

    /// True when the database has Slipway's tables (it was migrated at least once).
    async fn has_schema(&self) -> Result<bool> {
        let sql = match self.inner.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '_sqlx_migrations' AND table_schema = current_schema()"
            }
        };
        let n: i64 = sqlx::query(sql).fetch_one(self.pool()).await?.get(0);
        Ok(n > 0)
    }

    /// Refuses a database whose schema is newer than this build knows (written by a newer
    /// Slipway): running on it could misread or damage what the newer version wrote.
    pub async fn check_schema(&self) -> Result<()> {
        if !self.has_schema().await? {
            return Ok(());
        }
        let newest: Option<i64> = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(self.pool())
            .await?
            .get(0);
        let known = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        match newest {
            Some(v) if v > known => Err(StoreError::Unusable(format!(
                "the {} database has schema version {v}, newer than this Slipway knows ({known}); run a Slipway at least as new as the one that wrote it",
                self.inner.backend.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// Applies the migrations this database lacks.
    pub async fn migrate(&self) -> Result<()> {
        self.check_schema().await?;
        self.migrator().run(self.pool()).await?;
        Ok(())
    }

    /// A meta value read without migrating (`None` when the database is still empty): what
    /// the server checks before it writes anything.
    pub async fn peek_meta(&self, key: &str) -> Result<Option<String>> {
        if !self.has_schema().await? {
            return Ok(None);
        }
        self.read_meta(key).await
    }

    /// The notices of committed batches (see [`Notice`]); lagging receivers lose old ones
    /// and get [`Notice::All`] semantics by [`broadcast::error::RecvError::Lagged`].
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    /// A number that changes whenever anything may have been written, here or (as far as
    /// notices tell) by another server: what a cache outside the store checks its entries
    /// against.
    pub fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn bump_generation(&self) {
        bump(&self.inner);
    }

    /// The services whose records (service, deployments, tasks, events) each batch committed
    /// by this process changed, as it commits: what live views (the console's) follow,
    /// without asking the database again and again. A lagging receiver learns it lost some
    /// ([`broadcast::error::RecvError::Lagged`]) and should look at everything again.
    /// Batches committed by other servers sharing a PostgreSQL database are not in it.
    pub fn changes(&self) -> broadcast::Receiver<Arc<[ServiceKey]>> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn announce(&self, touched: Vec<ServiceKey>) {
        if !touched.is_empty() && self.inner.changes.receiver_count() > 0 {
            let _ = self.inner.changes.send(touched.into());
        }
    }

    /// Wakes this process' subscribers for `keys` (after a local commit).
    pub(crate) fn notify_local(&self, keys: &[ServiceKey]) {
        for k in keys {
            let _ = self.inner.notices.send(Notice::Service(k.clone()));
        }
    }
}

pub(crate) fn bump(inner: &Inner) {
    inner
        .generation
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}
