//! Online garbage collection of blobs.
//!
//! **Mark**: a blob is live while any manifest *is* it, refers to it (config, layers, index
//! children) or names it as its `subject`. Manifests themselves are never collected here:
//! untagged manifests go by the lifecycle rules or an explicit delete, and once deleted
//! their bytes become collectable.
//!
//! **Sweep**: an unreferenced blob is deleted only when
//! * it was stored more than the grace period ago, and
//! * nothing touched it within the grace period (a `HEAD`/`GET` — docker checks a layer
//!   exists and then pushes a manifest naming it —, a mount, a finished upload, a manifest
//!   write naming it), and
//! * no write is in flight: every path that makes a blob referenced (finishing an upload,
//!   a mount, a manifest `PUT` from its reference check to its commit) holds the GC lock
//!   shared, and the sweep holds it exclusively while it re-checks the rows in one
//!   transaction, deletes them and then the files.
//!
//! Upload sessions keep their bytes under `uploads/`, which GC never touches (abandoned
//! ones are purged by their own TTL). Files under `blobs/` with no row (left by a crash
//! between the rename and the commit) and stale files under `tmp/` are removed after the
//! grace period too. Pushes and pulls keep working while GC runs; at most they wait for
//! the short exclusive sweep.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Registry;
use crate::db::now_ms;
use crate::error::RegistryError;
use crate::names::Digest;

/// One collected (or, in a dry run, collectable) blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcBlob {
    pub digest: String,
    pub size: i64,
}

/// What a GC run did (or would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Grace period used, in seconds.
    pub grace_secs: u64,
    pub blobs: Vec<GcBlob>,
    pub bytes_freed: i64,
    /// Blob files without metadata (and stale temp files) removed.
    pub orphan_files: usize,
    pub duration_ms: i64,
}

impl Registry {
    /// Records that a blob is being used by a request in flight (see the module docs).
    pub(crate) fn touch(&self, digest: &str) {
        self.inner
            .touched
            .lock()
            .expect("touch map lock")
            .insert(digest.to_owned(), now_ms());
    }

    /// Runs garbage collection once; `dry_run` reports without deleting.
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport, RegistryError> {
        let started = now_ms();
        let grace_ms = i64::try_from(self.inner.gc_grace.as_millis()).unwrap_or(i64::MAX);
        let cutoff = started.saturating_sub(grace_ms);
        let recent = |reg: &Registry| -> HashSet<String> {
            let mut t = reg.inner.touched.lock().expect("touch map lock");
            t.retain(|_, at| *at >= cutoff);
            t.keys().cloned().collect()
        };
        // Mark (no lock): unreferenced and old enough.
        let touched = recent(self);
        let candidates: Vec<(String, i64)> = self
            .inner
            .db
            .gc_candidates(cutoff)
            .await?
            .into_iter()
            .filter(|(d, _)| !touched.contains(d))
            .collect();
        let mut report = GcReport {
            dry_run,
            grace_secs: self.inner.gc_grace.as_secs(),
            ..Default::default()
        };
        if dry_run {
            report.orphan_files = self.orphans(cutoff, &HashSet::new()).await?.len();
            report.blobs = candidates
                .into_iter()
                .map(|(digest, size)| GcBlob { digest, size })
                .collect();
            report.bytes_freed = report.blobs.iter().map(|b| b.size).sum();
            report.duration_ms = now_ms() - started;
            return Ok(report);
        }
        // Sweep: exclusive against every write that could make a blob referenced.
        let _sweep = self.inner.gc_lock.write().await;
        let touched = recent(self);
        let digests: Vec<String> = candidates
            .iter()
            .map(|(d, _)| d.clone())
            .filter(|d| !touched.contains(d))
            .collect();
        let deleted = self.inner.db.gc_sweep(&digests, cutoff).await?;
        self.report_storage().await;
        let deleted_set: HashSet<&String> = deleted.iter().collect();
        for (digest, size) in candidates {
            if !deleted_set.contains(&digest) {
                continue;
            }
            if let Ok(d) = Digest::parse(&digest) {
                self.inner.blobs.remove_blob(&d).await?;
            }
            report.bytes_freed += size;
            report.blobs.push(GcBlob { digest, size });
        }
        let orphans = self.orphans(cutoff, &touched).await?;
        for p in &orphans {
            if let Err(e) = tokio::fs::remove_file(p).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(e.into());
            }
        }
        report.orphan_files = orphans.len();
        report.duration_ms = now_ms() - started;
        if !report.blobs.is_empty() || report.orphan_files > 0 {
            tracing::info!(
                blobs = report.blobs.len(),
                bytes = report.bytes_freed,
                orphan_files = report.orphan_files,
                "registry garbage collection freed space"
            );
        }
        Ok(report)
    }

    /// Blob files with no row, and temp files, last modified before `cutoff`.
    async fn orphans(
        &self,
        cutoff: i64,
        touched: &HashSet<String>,
    ) -> Result<Vec<std::path::PathBuf>, RegistryError> {
        let root = self.inner.blobs.root().to_owned();
        let files = tokio::task::spawn_blocking(move || old_files(&root, cutoff))
            .await
            .map_err(|e| RegistryError::Corrupt(e.to_string()))??;
        let mut out = Vec::new();
        let mut blob_files = Vec::new();
        for (path, digest) in files {
            match digest {
                None => out.push(path),
                Some(d) if !touched.contains(&d) => blob_files.push((path, d)),
                Some(_) => {}
            }
        }
        let digests: Vec<String> = blob_files.iter().map(|(_, d)| d.clone()).collect();
        let known = self.inner.db.known_blobs(&digests).await?;
        out.extend(
            blob_files
                .into_iter()
                .filter(|(_, d)| !known.contains(d))
                .map(|(p, _)| p),
        );
        Ok(out)
    }
}

/// Files under `blobs/<alg>/<xx>/` (with their digest) and `tmp/` (without) whose mtime is
/// before `cutoff` (unix ms).
fn old_files(
    root: &Path,
    cutoff: i64,
) -> std::io::Result<Vec<(std::path::PathBuf, Option<String>)>> {
    let old = |p: &Path| -> bool {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|d| (d.as_millis() as i64) < cutoff)
    };
    let mut out = Vec::new();
    let dirs = |p: &Path| -> std::io::Result<Vec<std::fs::DirEntry>> {
        match std::fs::read_dir(p) {
            Ok(rd) => rd.collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    for alg in dirs(&root.join("blobs"))? {
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        for prefix in dirs(&alg.path())? {
            for f in dirs(&prefix.path())? {
                let p = f.path();
                if old(&p) {
                    let digest = format!("{alg_name}:{}", f.file_name().to_string_lossy());
                    out.push((p, Some(digest)));
                }
            }
        }
    }
    for f in dirs(&root.join("tmp"))? {
        let p = f.path();
        if old(&p) {
            out.push((p, None));
        }
    }
    Ok(out)
}
