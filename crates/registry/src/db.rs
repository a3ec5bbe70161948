//! The registry's metadata in its own SQLite database (`DATA_DIR/registry/registry.db`,
//! migrations in `crates/registry/migrations/`). Writes are serialised by one lock and run
//! in `BEGIN IMMEDIATE` transactions, so check-then-write steps (tag immutability) are atomic.

use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::Mutex;

use crate::error::RegistryError;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug)]
pub struct Db {
    pool: SqlitePool,
    write: Mutex<()>,
}

/// A repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repo {
    pub name: String,
    pub immutable: bool,
    pub created_at: i64,
    /// Bumped by every change of the repository's settings.
    pub version: i64,
}

/// A stored manifest's metadata.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
    pub pushed_at: i64,
}

/// A manifest to record.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    pub annotations: Option<String>,
    /// (child digest, kind): `blob` for config and layers, `manifest` for index entries.
    pub refs: Vec<(String, &'static str)>,
    pub tags: Vec<String>,
}

/// Why a manifest could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    #[error("tag {tag} already points to {existing} in immutable repository {repo}")]
    TagImmutable {
        repo: String,
        tag: String,
        existing: String,
    },
    #[error(transparent)]
    Db(#[from] RegistryError),
}

impl From<sqlx::Error> for PutManifestError {
    fn from(e: sqlx::Error) -> Self {
        PutManifestError::Db(e.into())
    }
}

fn repo_of(row: &sqlx::sqlite::SqliteRow) -> Repo {
    Repo {
        name: row.get("name"),
        immutable: row.get::<i64, _>("immutable") != 0,
        created_at: row.get("created_at"),
        version: row.get("version"),
    }
}

fn manifest_of(row: &sqlx::sqlite::SqliteRow) -> ManifestRow {
    ManifestRow {
        digest: row.get("digest"),
        media_type: row.get("media_type"),
        size: row.get("size"),
        artifact_type: row.get("artifact_type"),
        annotations: row.get("annotations"),
        pushed_at: row.get("pushed_at"),
    }
}

impl Db {
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged push survives power loss (its blobs are fsynced first).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Db {
            pool,
            write: Mutex::new(()),
        })
    }

    // ---- repositories ----

    pub async fn get_repo(&self, name: &str) -> Result<Option<Repo>> {
        let row = sqlx::query(
            "SELECT name, immutable, created_at, version FROM repositories WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(repo_of))
    }

    /// Creates a repository; `false` when it already existed (then nothing changes).
    pub async fn create_repo(&self, name: &str, immutable: bool) -> Result<bool> {
        let _w = self.write.lock().await;
        let r = sqlx::query(
            "INSERT INTO repositories (name, immutable, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(i64::from(immutable))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The repository, created (mutable) when it does not exist: pushing creates it.
    pub async fn ensure_repo(&self, name: &str) -> Result<Repo> {
        if let Some(r) = self.get_repo(name).await? {
            return Ok(r);
        }
        if self.create_repo(name, false).await? {
            tracing::info!(repository = name, "created repository on first push");
        }
        self.get_repo(name)
            .await?
            .ok_or_else(|| RegistryError::Corrupt(format!("repository {name} vanished")))
    }

    pub async fn set_immutable(&self, name: &str, immutable: bool) -> Result<bool> {
        let _w = self.write.lock().await;
        let r = sqlx::query(
            "UPDATE repositories SET immutable = ?, version = version + 1 WHERE name = ?",
        )
        .bind(i64::from(immutable))
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Repositories sorted by name, after `last`, at most `limit`.
    pub async fn list_repos(&self, last: Option<&str>, limit: i64) -> Result<Vec<Repo>> {
        let rows = sqlx::query(
            "SELECT name, immutable, created_at, version FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
        )
        .bind(last.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(repo_of).collect())
    }

    /// Deletes a repository with its tags, manifests, links and uploads. Blob files stay
    /// until garbage collection. Returns the upload ids that were dropped.
    pub async fn delete_repo(&self, name: &str) -> Result<Option<Vec<String>>> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let uploads: Vec<String> = sqlx::query("SELECT uuid FROM uploads WHERE repo = ?")
            .bind(name)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get("uuid"))
            .collect();
        sqlx::query("DELETE FROM tags WHERE repo = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM manifests WHERE repo = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM repositories WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((r.rows_affected() == 1).then_some(uploads))
    }

    /// (tags, manifests) counts of a repository.
    pub async fn repo_counts(&self, name: &str) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM tags WHERE repo = ?1) AS t, (SELECT COUNT(*) FROM manifests WHERE repo = ?1) AS m",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.get("t"), row.get("m")))
    }

    // ---- blobs ----

    /// The size of a blob linked to `repo`.
    pub async fn repo_blob(&self, repo: &str, digest: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest WHERE r.repo = ? AND r.digest = ?",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get("size")))
    }

    /// The size of a stored blob, in any repository.
    pub async fn blob_size(&self, digest: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT size FROM blobs WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("size")))
    }

    /// Links an already-stored blob into a repository (a mount).
    pub async fn link_blob(&self, repo: &str, digest: &str) -> Result<()> {
        let _w = self.write.lock().await;
        sqlx::query(
            "INSERT INTO repo_blobs (repo, digest, linked_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(repo)
        .bind(digest)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn unlink_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        let _w = self.write.lock().await;
        let r = sqlx::query("DELETE FROM repo_blobs WHERE repo = ? AND digest = ?")
            .bind(repo)
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    // ---- uploads ----

    pub async fn create_upload(&self, uuid: &str, repo: &str) -> Result<()> {
        let _w = self.write.lock().await;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO uploads (uuid, repo, received, started_at, updated_at) VALUES (?, ?, 0, ?, ?)",
        )
        .bind(uuid)
        .bind(repo)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The repository of an upload session. (The bytes it holds are its file's length; the
    /// `received` column is no longer kept, so a PATCH writes nothing here.)
    pub async fn upload_repo(&self, uuid: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT repo FROM uploads WHERE uuid = ?")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("repo")))
    }

    pub async fn delete_upload(&self, uuid: &str) -> Result<bool> {
        let _w = self.write.lock().await;
        let r = sqlx::query("DELETE FROM uploads WHERE uuid = ?")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Upload sessions started before `before` (unix ms); the caller checks their files'
    /// modification times to spare the ones still being written.
    pub async fn stale_uploads(&self, before: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT uuid FROM uploads WHERE updated_at < ?")
            .bind(before)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get("uuid")).collect())
    }

    /// Records a finished upload whose blob file is in place: the blob, its link to the
    /// repository, and the end of the session, in one transaction.
    pub async fn finish_upload(
        &self,
        uuid: Option<&str>,
        repo: &str,
        digest: &str,
        size: u64,
    ) -> Result<()> {
        let _w = self.write.lock().await;
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(digest)
        .bind(size as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO repo_blobs (repo, digest, linked_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(repo)
        .bind(digest)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(uuid) = uuid {
            sqlx::query("DELETE FROM uploads WHERE uuid = ?")
                .bind(uuid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- manifests and tags ----

    pub async fn get_manifest(&self, repo: &str, digest: &str) -> Result<Option<ManifestRow>> {
        let row = sqlx::query(
            "SELECT digest, media_type, size, artifact_type, annotations, pushed_at FROM manifests WHERE repo = ? AND digest = ?",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(manifest_of))
    }

    pub async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT digest FROM tags WHERE repo = ? AND tag = ?")
            .bind(repo)
            .bind(tag)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("digest")))
    }

    /// Records a manifest whose bytes are stored, with its references and tags. In an
    /// immutable repository, moving an existing tag to another digest is refused (and then
    /// nothing is recorded); re-tagging the same digest succeeds.
    pub async fn put_manifest(&self, repo: &str, m: &NewManifest) -> Result<(), PutManifestError> {
        let _w = self.write.lock().await;
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let immutable: i64 = sqlx::query("SELECT immutable FROM repositories WHERE name = ?")
            .bind(repo)
            .fetch_one(&mut *tx)
            .await?
            .get("immutable");
        if immutable != 0 {
            for tag in &m.tags {
                let existing: Option<String> =
                    sqlx::query("SELECT digest FROM tags WHERE repo = ? AND tag = ?")
                        .bind(repo)
                        .bind(tag)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.get("digest"));
                if let Some(existing) = existing
                    && existing != m.digest
                {
                    return Err(PutManifestError::TagImmutable {
                        repo: repo.to_owned(),
                        tag: tag.clone(),
                        existing,
                    });
                }
            }
        }
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&m.digest)
        .bind(m.size)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, size, artifact_type, subject, annotations, pushed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repo, digest) DO UPDATE SET pushed_at = excluded.pushed_at",
        )
        .bind(repo)
        .bind(&m.digest)
        .bind(&m.media_type)
        .bind(m.size)
        .bind(&m.artifact_type)
        .bind(&m.subject)
        .bind(&m.annotations)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (child, kind) in &m.refs {
            sqlx::query(
                "INSERT INTO manifest_refs (repo, manifest, child, kind) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(&m.digest)
            .bind(child)
            .bind(*kind)
            .execute(&mut *tx)
            .await?;
        }
        for tag in &m.tags {
            sqlx::query(
                "INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(tag)
            .bind(&m.digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a manifest and every tag pointing to it.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<bool> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM tags WHERE repo = ? AND digest = ?")
            .bind(repo)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM manifests WHERE repo = ? AND digest = ?")
            .bind(repo)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let _w = self.write.lock().await;
        let r = sqlx::query("DELETE FROM tags WHERE repo = ? AND tag = ?")
            .bind(repo)
            .bind(tag)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Tags sorted lexically (byte order), after `last`, at most `limit`.
    pub async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT tag FROM tags WHERE repo = ? AND tag > ? ORDER BY tag LIMIT ?")
                .bind(repo)
                .bind(last.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(|r| r.get("tag")).collect())
    }

    /// Manifests of `repo` whose `subject` is `digest`.
    pub async fn referrers(&self, repo: &str, digest: &str) -> Result<Vec<ManifestRow>> {
        let rows = sqlx::query(
            "SELECT digest, media_type, size, artifact_type, annotations, pushed_at FROM manifests WHERE repo = ? AND subject = ? ORDER BY digest",
        )
        .bind(repo)
        .bind(digest)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(manifest_of).collect())
    }

    /// Every manifest of a repository, with its tags, newest first.
    pub async fn manifests_with_tags(&self, repo: &str) -> Result<Vec<(ManifestRow, Vec<String>)>> {
        let rows = sqlx::query(
            "SELECT digest, media_type, size, artifact_type, annotations, pushed_at FROM manifests WHERE repo = ? ORDER BY pushed_at DESC, digest",
        )
        .bind(repo)
        .fetch_all(&self.pool)
        .await?;
        let tags = sqlx::query("SELECT tag, digest FROM tags WHERE repo = ? ORDER BY tag")
            .bind(repo)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let m = manifest_of(r);
                let t = tags
                    .iter()
                    .filter(|t| t.get::<String, _>("digest") == m.digest)
                    .map(|t| t.get::<String, _>("tag"))
                    .collect();
                (m, t)
            })
            .collect())
    }

    /// The references of a manifest: (child digest, kind, child size if stored as a blob).
    pub async fn manifest_refs(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<(String, String, Option<i64>)>> {
        let rows = sqlx::query(
            "SELECT r.child, r.kind, b.size FROM manifest_refs r LEFT JOIN blobs b ON b.digest = r.child WHERE r.repo = ? AND r.manifest = ?",
        )
        .bind(repo)
        .bind(digest)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("child"), r.get("kind"), r.get("size")))
            .collect())
    }

    /// Bytes of every blob recorded (what the storage holds, blobs awaiting GC included).
    pub async fn stored_bytes(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(size), 0) FROM blobs")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ---- garbage collection ----

    /// Blobs created before `cutoff` (unix ms) that no manifest is, refers to (config,
    /// layers, index children) or names as its subject: (digest, size).
    pub async fn gc_candidates(&self, cutoff: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(GC_UNREFERENCED)
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("digest"), r.get("size")))
            .collect())
    }

    /// Deletes the rows (blob and its repository links) of those `digests` that are still
    /// unreferenced and older than `cutoff`, in one transaction under the write lock (the
    /// same lock a manifest write commits under). Returns the digests deleted.
    pub async fn gc_sweep(&self, digests: &[String], cutoff: i64) -> Result<Vec<String>> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let still: std::collections::HashSet<String> = sqlx::query(GC_UNREFERENCED)
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get("digest"))
            .collect();
        let mut deleted = Vec::new();
        for d in digests.iter().filter(|d| still.contains(*d)) {
            sqlx::query("DELETE FROM repo_blobs WHERE digest = ?")
                .bind(d)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM blobs WHERE digest = ?")
                .bind(d)
                .execute(&mut *tx)
                .await?;
            deleted.push(d.clone());
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Which of `digests` have a blob row.
    pub async fn known_blobs(
        &self,
        digests: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        for d in digests {
            if self.blob_size(d).await?.is_some() {
                out.insert(d.clone());
            }
        }
        Ok(out)
    }

    // ---- lifecycle ----

    pub async fn lifecycle_policy(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT lifecycle_policy FROM repositories WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.get("lifecycle_policy")))
    }

    /// Sets (or, with `None`, removes) a repository's policy; `false` if there is no such
    /// repository.
    pub async fn set_lifecycle_policy(&self, name: &str, policy: Option<&str>) -> Result<bool> {
        let _w = self.write.lock().await;
        let r = sqlx::query(
            "UPDATE repositories SET lifecycle_policy = ?, version = version + 1 WHERE name = ?",
        )
        .bind(policy)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Every (manifest, child, kind) reference of a repository.
    pub async fn repo_refs(&self, repo: &str) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT manifest, child, kind FROM manifest_refs WHERE repo = ?")
            .bind(repo)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("manifest"), r.get("child"), r.get("kind")))
            .collect())
    }

    /// (digest, subject) of the manifests of a repository that have a subject.
    pub async fn repo_subjects(&self, repo: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT digest, subject FROM manifests WHERE repo = ? AND subject IS NOT NULL",
        )
        .bind(repo)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("digest"), r.get("subject")))
            .collect())
    }
}

/// Blobs older than `?1` that nothing references.
const GC_UNREFERENCED: &str = "SELECT b.digest, b.size FROM blobs b
     WHERE b.created_at < ?1
       AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
       AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = b.digest)
       AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.subject = b.digest)
     ORDER BY b.digest";
