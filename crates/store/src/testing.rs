//! Stores for tests: the same suite runs on every backend (feature `testing`).
//!
//! SQLite always; PostgreSQL when `SLIPWAY_TEST_POSTGRES` names a server
//! (`postgres://USER@HOST:PORT/DB`; `scripts/pg.sh start DIR` makes a throwaway one). Each
//! PostgreSQL store gets a database of its own. With `SLIPWAY_REQUIRE_POSTGRES=1` (set by
//! `scripts/test.sh` and CI) a missing server is a failure, not a skip.

use slipway_core::model::{ContainerSpec, PullPolicy};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::Store;

/// The PostgreSQL server of the tests, if any (panics when one is required and missing).
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("SLIPWAY_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() && std::env::var("SLIPWAY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("SLIPWAY_REQUIRE_POSTGRES=1 but SLIPWAY_TEST_POSTGRES is not set");
    }
    url
}

/// A new, empty database on the test server: its URL.
pub async fn fresh_postgres_database(server: &str) -> String {
    let name = format!("t_{}", crate::random_id(6));
    let mut admin = PgConnection::connect(server)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let _ = admin.close().await;
    let mut url = url::Url::parse(server).expect("a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A store on each backend: `("sqlite", in-memory)` and, when a server is configured,
/// `("postgres", a fresh database)`.
pub async fn stores() -> Vec<(&'static str, Store)> {
    let mut out = vec![("sqlite", Store::memory().await.expect("in-memory SQLite"))];
    if let Some(server) = postgres_url() {
        let url = fresh_postgres_database(&server).await;
        out.push((
            "postgres",
            Store::open_postgres(&url).await.expect("open PostgreSQL"),
        ));
    }
    out
}

/// Two stores sharing one database per backend (two servers): a SQLite file opened twice
/// (in `dir`), and a fresh PostgreSQL database opened twice.
pub async fn shared_pairs(dir: &std::path::Path) -> Vec<(&'static str, Store, Store)> {
    let path = dir.join("shared.db");
    let a = Store::open_sqlite(&path).await.expect("open SQLite");
    let b = Store::open_sqlite(&path).await.expect("open SQLite again");
    let mut out = vec![("sqlite", a, b)];
    if let Some(server) = postgres_url() {
        let url = fresh_postgres_database(&server).await;
        let a = Store::open_postgres(&url).await.expect("open PostgreSQL");
        let b = Store::open_postgres(&url)
            .await
            .expect("open PostgreSQL again");
        out.push(("postgres", a, b));
    }
    out
}

impl Store {
    /// Runs one statement as is (tests that need a database in a state no write makes).
    pub async fn debug_execute(&self, sql: &str) -> crate::Result<u64> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}

impl Store {
    /// [`Store::service_views`] straight from the database (what the cache must equal).
    pub async fn uncached_service_views(
        &self,
        app: &str,
        env: &str,
        names: &[String],
        deployments: u32,
        events: u32,
    ) -> crate::Result<Vec<crate::ServiceView>> {
        self.read_service_views(app, env, names, deployments, events)
            .await
    }

    /// [`Store::get_meta`] straight from the database.
    pub async fn uncached_meta(&self, key: &str) -> crate::Result<Option<String>> {
        self.read_meta(key).await
    }
}

/// A plain container of `image` (port 8080, no checks, no secrets).
pub fn container(image: &str) -> ContainerSpec {
    ContainerSpec {
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
        init: false,
        http_route: None,
        secrets: Default::default(),
        entrypoint: None,
        user: None,
        volumes: Vec::new(),
        depends_on: Vec::new(),
        job: None,
        ..ContainerSpec::default()
    }
}
