//! The content-addressed blob store and upload files on disk.
//!
//! ```text
//! DATA_DIR/registry/
//!   blobs/sha256/ab/abcdef…   one file per digest (layers, configs and manifests)
//!   uploads/<uuid>            bytes of an upload session received so far
//!   tmp/                      small blobs (manifests) being written
//! ```
//! Every blob reaches its final name by `rename` after `fsync` (and the directory is fsynced
//! after the rename), so a blob file is either absent or complete. Upload files are not
//! fsynced while they grow: the one data fsync happens when the upload is committed. Nothing
//! here buffers a whole blob: bodies are streamed to disk in blocks and served in chunks.

use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Uploads are written in blocks of this size.
pub const WRITE_BLOCK: usize = 1 << 20;
/// Blobs are served in reads of this size (with one read ahead, 2 MiB per GET in flight).
/// 1 MiB reads serve a 256 MiB blob in ~108 ms against ~165 ms with 256 KiB reads (one
/// thread hand-off per read; bench/README.md).
pub const READ_CHUNK: usize = 1 << 20;

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
    #[error("the body has {got} bytes but the declared range {expected}")]
    TooShort { got: u64, expected: u64 },
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
        if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
            tokio::fs::create_dir_all(dir).await?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent).await?;
            }
        }
        tokio::fs::rename(from, to).await?;
        sync_dir(dir).await
    }

    /// Creates an empty upload file. Not fsynced: until the blob is committed its bytes are
    /// only as durable as the page cache (a server restart keeps them, a power loss may not;
    /// the digest check at commit catches a damaged upload).
    pub async fn create_upload(&self, uuid: &str) -> std::io::Result<()> {
        tokio::fs::File::create(self.upload_path(uuid)).await?;
        Ok(())
    }

    /// The length of an upload file (what the upload holds), `None` when it is gone.
    pub async fn upload_len(&self, uuid: &str) -> std::io::Result<Option<u64>> {
        match tokio::fs::metadata(self.upload_path(uuid)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// When an upload file was last written.
    pub async fn upload_modified(&self, uuid: &str) -> Option<std::time::SystemTime> {
        tokio::fs::metadata(self.upload_path(uuid))
            .await
            .ok()?
            .modified()
            .ok()
    }

    /// Appends a request body to an upload that holds `offset` bytes. The body is gathered
    /// into blocks of [`WRITE_BLOCK`] bytes that a blocking thread hashes (when `hasher` is
    /// given, holding the state of the first `offset` bytes) and writes while the next block
    /// arrives; at most three blocks are in memory. Nothing is fsynced here: that happens once,
    /// at commit ([`BlobStore::sync_upload`]). With `expect`, the body must have exactly that
    /// many bytes.
    ///
    /// When the body fails, is too long or this future is dropped, the file is cut back to
    /// `offset`, so a request either appends all of its body or nothing. `keep` (the upload's
    /// lock) is held by the writing thread until the file is settled, and handed back.
    pub async fn append<K: Send + 'static>(
        &self,
        uuid: &str,
        offset: u64,
        body: Body,
        expect: Option<u64>,
        hasher: Option<Hasher>,
        keep: K,
    ) -> (Result<Appended, WriteError>, K) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Block>(1);
        let path = self.upload_path(uuid);
        let writer = tokio::task::spawn_blocking(move || {
            let r = write_blocks(&path, offset, rx, hasher);
            (r, keep)
        });
        let mut failure = None;
        let mut written = 0u64;
        let mut block = Vec::new();
        let mut stream = body.into_data_stream();
        'body: while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(WriteError::Body(e.to_string()));
                    break;
                }
            };
            written += chunk.len() as u64;
            if expect.is_some_and(|l| written > l) {
                failure = Some(WriteError::TooLong);
                break;
            }
            if block.is_empty() && chunk.len() >= WRITE_BLOCK / 2 {
                // Big enough to write as it is, without a copy.
                if tx.send(Block::Data(chunk)).await.is_err() {
                    break;
                }
                continue;
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if block.capacity() == 0 {
                    block.reserve_exact(WRITE_BLOCK);
                }
                let take = (WRITE_BLOCK - block.len()).min(rest.len());
                block.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if block.len() == WRITE_BLOCK {
                    let full = Bytes::from(std::mem::take(&mut block));
                    if tx.send(Block::Data(full)).await.is_err() {
                        break 'body;
                    }
                }
            }
        }
        if failure.is_none()
            && let Some(expected) = expect
            && written < expected
        {
            failure = Some(WriteError::TooShort {
                got: written,
                expected,
            });
        }
        if failure.is_none() {
            if !block.is_empty() {
                let _ = tx.send(Block::Data(Bytes::from(block))).await;
            }
            let _ = tx.send(Block::End).await;
        }
        drop(tx);
        let (r, keep) = match writer.await {
            Ok(x) => x,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let r = match (failure, r) {
            (Some(f), _) => Err(f),
            (None, Err(e)) => Err(WriteError::Io(e)),
            (None, Ok(Some(a))) => Ok(a),
            (None, Ok(None)) => Err(WriteError::Io(std::io::Error::other(
                "the upload writer stopped early",
            ))),
        };
        (r, keep)
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
    /// Call [`BlobStore::sync_upload`] first.
    pub async fn commit_upload(&self, uuid: &str, d: &Digest) -> std::io::Result<()> {
        let from = self.upload_path(uuid);
        let to = self.blob_path(d);
        if tokio::fs::try_exists(&to).await.unwrap_or(false) {
            return tokio::fs::remove_file(&from).await;
        }
        self.place(&from, &to).await
    }

    /// Makes a finished upload's bytes durable: the one data fsync of an upload.
    pub async fn sync_upload(&self, uuid: &str) -> std::io::Result<()> {
        let path = self.upload_path(uuid);
        tokio::task::spawn_blocking(move || std::fs::File::open(path)?.sync_data())
            .await
            .map_err(std::io::Error::other)?
    }

    pub async fn remove_upload(&self, uuid: &str) {
        if let Err(e) = tokio::fs::remove_file(self.upload_path(uuid)).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(uuid, error = %e, "cannot remove an upload file");
        }
    }

    /// Opens a blob for reading; returns the file and its length.
    pub async fn open_blob(&self, d: &Digest) -> std::io::Result<(std::fs::File, u64)> {
        let path = self.blob_path(d);
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(path)?;
            let len = f.metadata()?.len();
            Ok((f, len))
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// A response body with `len` bytes of `file` from `start`, read in [`READ_CHUNK`] reads on
/// the blocking pool, one read ahead of the client: at most two chunks are in memory. A file
/// that turns out shorter ends the body with an error (never a short, "complete" body).
pub fn file_body(file: std::fs::File, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    tokio::spawn(async move {
        let mut file = Some(file);
        let mut pos = start;
        let end = start + len;
        while pos < end {
            // Read only when the channel has room: bounded read-ahead.
            let Ok(permit) = tx.reserve().await else {
                return;
            };
            let n = (end - pos).min(READ_CHUNK as u64);
            let f = file.take().expect("the file is back after each read");
            let read = tokio::task::spawn_blocking(move || {
                let r = read_chunk(&f, pos, n);
                (f, r)
            })
            .await;
            let (f, r) = match read {
                Ok(x) => x,
                Err(e) => {
                    permit.send(Err(std::io::Error::other(e)));
                    return;
                }
            };
            file = Some(f);
            let failed = r.is_err();
            permit.send(r);
            if failed {
                return;
            }
            pos += n;
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Reads exactly `n` bytes of `f` at `pos`.
fn read_chunk(f: &std::fs::File, pos: u64, n: u64) -> std::io::Result<Bytes> {
    use std::io::{Read, Seek};
    let mut f = f;
    f.seek(std::io::SeekFrom::Start(pos))?;
    let mut buf = Vec::with_capacity(n as usize);
    f.take(n).read_to_end(&mut buf)?;
    if (buf.len() as u64) < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the blob file is shorter than its size",
        ));
    }
    Ok(Bytes::from(buf))
}

/// What the upload writer thread receives.
enum Block {
    Data(Bytes),
    /// The body ended well: keep what was written.
    End,
}

/// The writer thread of [`BlobStore::append`]: `Ok(None)` when the body did not end well
/// (the file is then cut back to `offset`).
fn write_blocks(
    path: &Path,
    offset: u64,
    mut rx: tokio::sync::mpsc::Receiver<Block>,
    mut hasher: Option<Hasher>,
) -> std::io::Result<Option<Appended>> {
    use std::io::{Seek, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = f.metadata()?.len();
    if len < offset {
        return Err(std::io::Error::other(format!(
            "{} is shorter ({len} bytes) than expected ({offset} bytes)",
            path.display()
        )));
    }
    if len > offset {
        f.set_len(offset)?;
    }
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut written = 0u64;
    let r = loop {
        match rx.blocking_recv() {
            Some(Block::Data(b)) => {
                if let Some(h) = hasher.as_mut() {
                    h.update(&b);
                }
                if let Err(e) = f.write_all(&b) {
                    break Err(e);
                }
                written += b.len() as u64;
            }
            Some(Block::End) => {
                return Ok(Some(Appended {
                    len: offset + written,
                    hasher,
                }));
            }
            None => break Ok(None),
        }
    };
    drop(rx);
    let cut = f.set_len(offset);
    let r = r?;
    cut?;
    Ok(r)
}

/// The outcome of a successful [`BlobStore::append`].
pub struct Appended {
    /// The upload's new length.
    pub len: u64,
    /// The hasher given, now over the first `len` bytes.
    pub hasher: Option<Hasher>,
}
