//! Blobs (`GET`/`HEAD` with ranges, `DELETE`) and blob uploads (monolithic, chunked,
//! resumable; cross-repository mounts).

use super::*;

/// A `Range: bytes=...` request: `Ok(None)` to serve everything, `Err` when unsatisfiable.
pub(super) fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| ());
    match (a.trim(), b.trim()) {
        ("", "") => Err(()),
        ("", n) => {
            let n = num(n)?;
            if n == 0 || size == 0 {
                return Err(());
            }
            Ok(Some((size.saturating_sub(n), size - 1)))
        }
        (a, "") => {
            let a = num(a)?;
            if a >= size {
                return Err(());
            }
            Ok(Some((a, size - 1)))
        }
        (a, b) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b || a >= size {
                return Err(());
            }
            Ok(Some((a, b.min(size - 1))))
        }
    }
}

pub(super) async fn get_blob(
    reg: &Registry,
    name: &str,
    d: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response> {
    let d = parse_digest(d)?;
    let ds = d.to_string();
    if reg.inner.db.repo_blob(name, &ds).await?.is_none() {
        return Err(OciError::new(
            Code::BlobUnknown,
            format!("blob {ds} is not in repository {name}"),
        ));
    }
    // A client that saw the blob may now push a manifest naming it: keep it from GC.
    reg.touch(&ds);
    let (file, size) = match reg.inner.blobs.open_blob(&d).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OciError::new(
                Code::BlobUnknown,
                format!("blob {ds} is missing from storage"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => parse_range(v, size).map_err(|()| {
            OciError::new(Code::RangeInvalid, format!("range {v} cannot be satisfied"))
                .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"))
        })?,
        None => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head {
        Body::empty()
    } else {
        slipway_metrics::global().blob_pulled(len);
        crate::storage::file_body(file, start, len)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(digest_header(), hv(&ds));
    h.insert(header::ETAG, hv(&format!("\"{ds}\"")));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {start}-{}/{size}", start + len - 1)),
        );
    }
    Ok(r)
}

pub(super) async fn delete_blob(reg: &Registry, name: &str, d: &str) -> Result<Response> {
    let d = parse_digest(d)?.to_string();
    if reg.inner.db.unlink_blob(name, &d).await? {
        Ok(empty(StatusCode::ACCEPTED, vec![]))
    } else {
        Err(OciError::new(
            Code::BlobUnknown,
            format!("blob {d} is not in repository {name}"),
        ))
    }
}

// ---- uploads ----

pub(super) fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

pub(super) fn range_value(received: u64) -> String {
    format!("0-{}", received.saturating_sub(1))
}

pub(super) fn upload_unknown(id: &str) -> OciError {
    OciError::new(
        Code::BlobUploadUnknown,
        format!("upload {id} is not known (finished, cancelled or never started)"),
    )
}

pub(super) fn blob_created(name: &str, d: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        vec![
            (header::LOCATION, format!("/v2/{name}/blobs/{d}")),
            (digest_header(), d.to_string()),
        ],
    )
}

/// `Content-Range: <start>-<end>` of a chunk, if given.
pub(super) fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        OciError::new(
            Code::RangeInvalid,
            "malformed Content-Range; expected <start>-<end>",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes ")
        .or_else(|| s.strip_prefix("bytes="))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

pub(super) fn out_of_order(id: &str, name: &str, received: u64, start: u64) -> OciError {
    OciError::new(
        Code::RangeInvalid,
        format!("chunk starts at {start} but the upload has {received} bytes; resume from there"),
    )
    .with_header(header::RANGE, &range_value(received))
    .with_header(header::LOCATION, &upload_location(name, id))
    .with_header(uuid_header(), id)
}

pub(super) async fn start_upload(
    reg: &Registry,
    name: &str,
    q: &Query,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    if let Some(m) = q.get("mount")
        && let Ok(d) = Digest::parse(m)
    {
        // A token without pull on the source is sent back for one that has it (as the
        // reference registry does), rather than silently given an upload session.
        if let Some(from) = q.get("from")
            && validate_name(from).is_ok()
            && matches!(principal, Principal::Token(..))
            && !principal.may(from, Action::Pull)
        {
            let scope = format!(
                "{} {}",
                repo_scope(name, Action::Push),
                repo_scope(from, Action::Pull)
            );
            return Err(challenge_for(reg, headers, Some(&scope), true));
        }
        let ds = d.to_string();
        let _gc = reg.inner.gc_lock.read().await;
        let source = match q.get("from") {
            Some(from) => {
                validate_name(from).is_ok()
                    && principal.may(from, Action::Pull)
                    && reg.inner.db.repo_blob(from, &ds).await?.is_some()
            }
            None => {
                principal.rights().allows(Action::Pull)
                    && reg.inner.db.blob_size(&ds).await?.is_some()
            }
        };
        if source && reg.inner.blobs.blob_exists(&d).await {
            reg.inner.db.ensure_repo(name).await?;
            reg.inner.db.link_blob(name, &ds).await?;
            reg.touch(&ds);
            return Ok(blob_created(name, &d));
        }
        // Not mountable: fall back to a normal upload session (never an error).
    }
    reg.inner.db.ensure_repo(name).await?;
    let id = auth::random_hex(16);
    reg.inner.blobs.create_upload(&id).await?;
    reg.inner.db.create_upload(&id, name).await?;
    if let Some(d) = q.get("digest") {
        // Monolithic upload: the whole blob in the POST.
        let d = match parse_digest(d) {
            Ok(d) => d,
            Err(e) => {
                discard_upload(reg, &id).await?;
                return Err(e);
            }
        };
        return finish_upload(reg, name, &id, &d, headers, body).await;
    }
    Ok(empty(
        StatusCode::ACCEPTED,
        vec![
            (header::LOCATION, upload_location(name, &id)),
            (header::RANGE, "0-0".into()),
            (uuid_header(), id),
        ],
    ))
}

/// Checks that upload `id` exists and belongs to `name`.
pub(super) async fn load_upload(reg: &Registry, name: &str, id: &str) -> Result<()> {
    if !valid_upload_id(id) {
        return Err(upload_unknown(id));
    }
    match reg.inner.db.upload_repo(id).await? {
        Some(repo) if repo == name => Ok(()),
        _ => Err(upload_unknown(id)),
    }
}

/// What an upload holds: the length of its file. After a crash this is whatever reached the
/// file; the client resumes from there and the digest check at the end catches damage.
pub(super) async fn upload_len(reg: &Registry, id: &str) -> Result<u64> {
    reg.inner
        .blobs
        .upload_len(id)
        .await?
        .ok_or_else(|| upload_unknown(id))
}

pub(super) async fn discard_upload(reg: &Registry, id: &str) -> Result<()> {
    reg.inner.db.delete_upload(id).await?;
    reg.inner.blobs.remove_upload(id).await;
    reg.forget_upload(id);
    Ok(())
}

/// An upload's lock, holding its incremental hash.
type UploadGuard = tokio::sync::OwnedMutexGuard<crate::UploadCache>;

/// Appends a body at `received` (exactly `expect` bytes when given), keeping the incremental
/// SHA-256 when it is in step. A body that fails appends nothing.
pub(super) async fn append_body(
    reg: &Registry,
    id: &str,
    received: u64,
    body: Body,
    expect: Option<u64>,
    mut guard: UploadGuard,
) -> Result<(u64, UploadGuard)> {
    let hasher = match guard.take() {
        Some((n, h)) if n == received => Some(h),
        _ if received == 0 => Some(Algorithm::Sha256.hasher()),
        _ => None,
    };
    let (r, mut guard) = reg
        .inner
        .blobs
        .append(id, received, body, expect, hasher, guard)
        .await;
    match r {
        Ok(a) => {
            if let Some(h) = a.hasher {
                *guard = Some((a.len, h));
            }
            Ok((a.len, guard))
        }
        Err(WriteError::TooLong) => Err(OciError::new(
            Code::RangeInvalid,
            "the chunk is longer than its Content-Range",
        )),
        Err(WriteError::TooShort { got, expected }) => Err(OciError::new(
            Code::RangeInvalid,
            format!("the chunk has {got} bytes but its Content-Range announced {expected}"),
        )),
        Err(WriteError::Body(e)) => Err(OciError::new(
            Code::BlobUploadInvalid,
            format!("the upload body was cut off: {e}"),
        )),
        Err(WriteError::Io(e)) => Err(e.into()),
    }
}

/// Appends one chunk (PATCH or the body of the final PUT), honouring `Content-Range`.
pub(super) async fn append_chunk(
    reg: &Registry,
    name: &str,
    id: &str,
    received: u64,
    headers: &HeaderMap,
    body: Body,
    guard: UploadGuard,
) -> Result<(u64, UploadGuard)> {
    let range = content_range(headers)?;
    let expect = match range {
        Some((start, end)) => {
            if start != received {
                return Err(out_of_order(id, name, received, start));
            }
            Some(end - start + 1)
        }
        None => None,
    };
    append_body(reg, id, received, body, expect, guard).await
}

pub(super) async fn patch_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    load_upload(reg, name, id).await?;
    let guard = reg.upload_lock(id).lock_owned().await;
    // Read under the lock: another request may have appended meanwhile.
    let received = upload_len(reg, id).await?;
    let (n, _guard) = append_chunk(reg, name, id, received, headers, body, guard).await?;
    Ok(empty(
        StatusCode::ACCEPTED,
        vec![
            (header::LOCATION, upload_location(name, id)),
            (header::RANGE, range_value(n)),
            (uuid_header(), id.to_owned()),
        ],
    ))
}

pub(super) async fn put_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    load_upload(reg, name, id).await?;
    let d = parse_digest(q.get("digest").ok_or_else(|| {
        OciError::new(Code::DigestInvalid, "the final PUT needs ?digest=<digest>")
    })?)?;
    finish_upload(reg, name, id, &d, headers, body).await
}

/// Appends the last bytes, checks the digest and moves the blob into place (one fsync of
/// the data, the rename, one fsync of the directory).
pub(super) async fn finish_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    d: &Digest,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let guard = reg.upload_lock(id).lock_owned().await;
    // Under the lock: a concurrent PUT may have finished the session.
    if reg.inner.db.upload_repo(id).await?.is_none() {
        return Err(upload_unknown(id));
    }
    let received = upload_len(reg, id).await?;
    let (n, mut guard) = append_chunk(reg, name, id, received, headers, body, guard).await?;
    let actual = match guard.take() {
        Some((len, h)) if len == n && d.algorithm() == Algorithm::Sha256 => h.finish(),
        _ => reg.inner.blobs.hash_upload(id, d.algorithm()).await?,
    };
    if &actual != d {
        drop(guard);
        discard_upload(reg, id).await?;
        return Err(OciError::new(
            Code::DigestInvalid,
            format!("the uploaded content has digest {actual}, not {d}; the upload was discarded"),
        ));
    }
    if !reg.inner.blobs.blob_exists(d).await {
        reg.inner.blobs.sync_upload(id).await?;
    }
    {
        // GC must not delete this digest between "its file exists" and the row commit.
        let _gc = reg.inner.gc_lock.read().await;
        reg.inner.blobs.commit_upload(id, d).await?;
        reg.inner
            .db
            .finish_upload(Some(id), name, &d.to_string(), n)
            .await?;
        reg.touch(&d.to_string());
    }
    drop(guard);
    reg.forget_upload(id);
    slipway_metrics::global().blob_pushed(n);
    reg.report_storage().await;
    Ok(blob_created(name, d))
}

pub(super) async fn upload_status(reg: &Registry, name: &str, id: &str) -> Result<Response> {
    load_upload(reg, name, id).await?;
    let received = upload_len(reg, id).await?;
    Ok(empty(
        StatusCode::NO_CONTENT,
        vec![
            (header::LOCATION, upload_location(name, id)),
            (header::RANGE, range_value(received)),
            (uuid_header(), id.to_owned()),
        ],
    ))
}

pub(super) async fn cancel_upload(reg: &Registry, name: &str, id: &str) -> Result<Response> {
    load_upload(reg, name, id).await?;
    let lock = reg.upload_lock(id);
    let _held = lock.lock().await;
    discard_upload(reg, id).await?;
    Ok(empty(StatusCode::NO_CONTENT, vec![]))
}
