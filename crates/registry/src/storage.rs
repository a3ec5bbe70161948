//! The content-addressed blob store and upload files on disk.
//!
//! ```text
//! DATA_DIR/registry/
//!   blobs/sha256/ab/abcdef…   one file per digest (layers, configs and manifests)
//!   uploads/<uuid>            bytes of an upload session received so far
//!   tmp/                      small blobs (manifests) being written
//! ```
//! Every blob reaches its final name by `rename` after `fsync`, so a blob file is either
//! absent or complete. Nothing here buffers a whole blob: bodies are streamed to disk.

use std::path::{Path, PathBuf};

use axum::body::Body;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::names::{Algorithm, Digest, Hasher};

/// Why streaming a request body into an upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the request body failed: {0}")]
    Body(String),
    #[error("the body is longer than the declared range")]
    TooLong,
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// fsyncs a directory so a rename into it is durable.
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

impl BlobStore {
    /// Opens the store under `root`, creating its directories.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        for d in ["blobs", "uploads", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(BlobStore {
            root: root.to_owned(),
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deletes a blob's file (garbage collection).
    pub async fn remove_blob(&self, d: &Digest) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.blob_path(d)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn upload_path(&self, uuid: &str) -> PathBuf {
        self.root.join("uploads").join(uuid)
    }

    pub async fn blob_exists(&self, d: &Digest) -> bool {
        tokio::fs::try_exists(self.blob_path(d))
            .await
            .unwrap_or(false)
    }

    pub async fn read_small(&self, d: &Digest, limit: u64) -> std::io::Result<Vec<u8>> {
        let f = tokio::fs::File::open(self.blob_path(d)).await?;
        let mut buf = Vec::new();
        f.take(limit).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    /// Stores a small blob (a manifest) held in memory: temp file, fsync, rename.
    pub async fn put_small(&self, d: &Digest, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.blob_path(d);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.{}", d.hex(), crate::auth::random_hex(6)));
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(bytes).await?;
        f.sync_all().await?;
        drop(f);
        self.place(&tmp, &path).await
    }

    async fn place(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let dir = to.parent().expect("blob paths have a parent");
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::rename(from, to).await?;
        sync_dir(dir).await
    }

    pub async fn create_upload(&self, uuid: &str) -> std::io::Result<()> {
        let f = tokio::fs::File::create(self.upload_path(uuid)).await?;
        f.sync_all().await?;
        sync_dir(&self.root.join("uploads")).await
    }

    /// Appends a request body to an upload whose durable length is `offset`: bytes past
    /// `offset` (left by an interrupted request) are dropped first. At most `limit` bytes are
    /// accepted. The file is fsynced before returning the new length, so the caller may then
    /// record it. `hasher`, when given, must hold the state of the first `offset` bytes.
    pub async fn append(
        &self,
        uuid: &str,
        offset: u64,
        body: Body,
        limit: Option<u64>,
        mut hasher: Option<&mut Hasher>,
    ) -> Result<u64, WriteError> {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.upload_path(uuid))
            .await?;
        let len = f.metadata().await?.len();
        if len < offset {
            return Err(WriteError::Io(std::io::Error::other(format!(
                "upload {uuid} is shorter ({len} bytes) than recorded ({offset} bytes)"
            ))));
        }
        f.set_len(offset).await?;
        f.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut w = tokio::io::BufWriter::with_capacity(1 << 20, f);
        let mut written = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| WriteError::Body(e.to_string()))?;
            written += chunk.len() as u64;
            if limit.is_some_and(|l| written > l) {
                return Err(WriteError::TooLong);
            }
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&chunk);
            }
            w.write_all(&chunk).await?;
        }
        w.flush().await?;
        w.get_ref().sync_all().await?;
        Ok(offset + written)
    }

    /// The digest of the first `len` bytes of an upload, read back from disk.
    pub async fn hash_upload(&self, uuid: &str, alg: Algorithm) -> std::io::Result<Digest> {
        let mut f = tokio::fs::File::open(self.upload_path(uuid)).await?;
        let mut h = alg.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }

    /// Moves a finished upload to its blob path (or drops it when that blob is already
    /// stored: one copy per digest).
    pub async fn commit_upload(&self, uuid: &str, d: &Digest) -> std::io::Result<()> {
        let from = self.upload_path(uuid);
        let to = self.blob_path(d);
        if tokio::fs::try_exists(&to).await.unwrap_or(false) {
            return tokio::fs::remove_file(&from).await;
        }
        self.place(&from, &to).await
    }

    pub async fn remove_upload(&self, uuid: &str) {
        if let Err(e) = tokio::fs::remove_file(self.upload_path(uuid)).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(uuid, error = %e, "cannot remove an upload file");
        }
    }

    /// Opens a blob for reading; returns the file and its length.
    pub async fn open_blob(&self, d: &Digest) -> std::io::Result<(tokio::fs::File, u64)> {
        let f = tokio::fs::File::open(self.blob_path(d)).await?;
        let len = f.metadata().await?.len();
        Ok((f, len))
    }
}
