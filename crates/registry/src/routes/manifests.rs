//! Manifests: `GET`/`HEAD` by tag or digest, `PUT` (validation of the references, subject
//! and tag), `DELETE`.

use super::*;

pub(super) enum Reference {
    Tag(String),
    Digest(Digest),
}

pub(super) fn parse_reference(r: &str) -> Result<Reference> {
    if r.contains(':') {
        Ok(Reference::Digest(parse_digest(r)?))
    } else {
        validate_tag(r).map_err(|m| OciError::new(Code::TagInvalid, m))?;
        Ok(Reference::Tag(r.to_owned()))
    }
}

pub(super) fn manifest_unknown(name: &str, r: &str) -> OciError {
    OciError::new(
        Code::ManifestUnknown,
        format!("manifest {r} is not in repository {name}"),
    )
}

pub(super) async fn get_manifest(
    reg: &Registry,
    name: &str,
    r: &str,
    head: bool,
) -> Result<Response> {
    let reference = parse_reference(r)?;
    require_repo(reg, name).await?;
    let digest = match reference {
        Reference::Digest(d) => d.to_string(),
        Reference::Tag(t) => reg
            .inner
            .db
            .resolve_tag(name, &t)
            .await?
            .ok_or_else(|| manifest_unknown(name, r))?,
    };
    let row = reg
        .inner
        .db
        .get_manifest(name, &digest)
        .await?
        .ok_or_else(|| manifest_unknown(name, r))?;
    let d = Digest::parse(&digest).map_err(OciError::internal)?;
    let body = if head {
        Body::empty()
    } else {
        let bytes = reg.inner.blobs.read_small(&d, row.size as u64 + 1).await?;
        if bytes.len() as i64 != row.size {
            return Err(OciError::internal(format!(
                "stored manifest {digest} has {} bytes, expected {}",
                bytes.len(),
                row.size
            )));
        }
        Body::from(bytes)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(&row.media_type));
    h.insert(header::CONTENT_LENGTH, hv(&row.size.to_string()));
    h.insert(digest_header(), hv(&digest));
    h.insert(header::ETAG, hv(&format!("\"{digest}\"")));
    Ok(resp)
}

pub(super) fn invalid(msg: impl Into<String>) -> OciError {
    OciError::new(Code::ManifestInvalid, msg)
}

/// A descriptor's digest, checked.
pub(super) fn descriptor_digest(v: &Value, what: &str) -> Result<Digest> {
    let d = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} has no digest")))?;
    if v.get("size").and_then(Value::as_i64).is_none_or(|s| s < 0) {
        return Err(invalid(format!("{what} has no valid size")));
    }
    Digest::parse(d).map_err(|m| invalid(format!("{what}: {m}")))
}

/// Layers that registries need not hold: non-distributable ones (with `urls`).
pub(super) fn is_foreign(layer: &Value) -> bool {
    let has_urls = layer
        .get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty());
    let mt = layer.get("mediaType").and_then(Value::as_str).unwrap_or("");
    has_urls || mt.contains("nondistributable") || mt.contains(".foreign.")
}

pub(super) async fn put_manifest(
    reg: &Registry,
    name: &str,
    r: &str,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reference = parse_reference(r)?;
    let max = reg.inner.max_manifest_bytes;
    let too_big = || {
        invalid(format!("the manifest is larger than {max} bytes"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|l| l > max as u64)
    {
        return Err(too_big());
    }
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_big())?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("the manifest is not valid JSON: {e}")))?;
    if !doc.is_object() {
        return Err(invalid("the manifest is not a JSON object"));
    }
    if doc.get("schemaVersion").and_then(Value::as_i64) != Some(2) {
        return Err(invalid("only schemaVersion 2 manifests are supported"));
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|v| !v.is_empty() && v != "application/octet-stream" && v != "application/json");
    let inner_type = doc.get("mediaType").and_then(Value::as_str);
    let media_type = match (declared.as_deref(), inner_type) {
        (Some(h), Some(b)) if h != b => {
            return Err(invalid(format!(
                "Content-Type {h} does not match the manifest's mediaType {b}"
            )));
        }
        (Some(h), _) => h.to_owned(),
        (None, Some(b)) => b.to_owned(),
        (None, None) if doc.get("manifests").is_some() => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    let is_index = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        OCI_INDEX | DOCKER_LIST => true,
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other}; OCI image manifests and indexes and Docker schema 2 manifests and lists are"
            )));
        }
    };
    let digest = match &reference {
        Reference::Digest(d) => {
            let actual = d.algorithm().digest_of(&bytes);
            if &actual != d {
                return Err(OciError::new(
                    Code::DigestInvalid,
                    format!("the manifest has digest {actual}, not {d}"),
                ));
            }
            actual
        }
        Reference::Tag(_) => Algorithm::Sha256.digest_of(&bytes),
    };
    let mut tags: Vec<String> = Vec::new();
    if let Reference::Tag(t) = &reference {
        tags.push(t.clone());
    }
    // Tags given as `?tag=` (distribution-spec 1.1): each one is answered in `OCI-Tag`.
    let mut tag_params: Vec<String> = Vec::new();
    for t in q.all("tag") {
        validate_tag(&t).map_err(|m| OciError::new(Code::TagInvalid, m))?;
        if !tag_params.contains(&t) {
            tag_params.push(t);
        }
    }
    if tag_params.len() > MAX_TAG_PARAMS {
        return Err(OciError::new(
            Code::TagInvalid,
            format!(
                "{} tags in one push; at most {MAX_TAG_PARAMS} are taken",
                tag_params.len()
            ),
        )
        .with_status(StatusCode::URI_TOO_LONG));
    }
    for t in &tag_params {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    require_repo_or_create(reg, name).await?;
    // From the reference checks to the commit, GC cannot sweep what this manifest names.
    let _gc = reg.inner.gc_lock.read().await;

    let mut refs: Vec<(String, &'static str)> = Vec::new();
    let missing = |what: &str, d: &Digest| {
        OciError::new(
            Code::ManifestBlobUnknown,
            format!("{what} {d} is not in repository {name}; push it first"),
        )
    };
    if is_index {
        let children = doc
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("an index needs a manifests array"))?;
        for (i, c) in children.iter().enumerate() {
            let d = descriptor_digest(c, &format!("manifests[{i}]"))?;
            if reg
                .inner
                .db
                .get_manifest(name, &d.to_string())
                .await?
                .is_none()
            {
                return Err(missing("manifest", &d));
            }
            refs.push((d.to_string(), "manifest"));
        }
    } else {
        let config = doc
            .get("config")
            .ok_or_else(|| invalid("an image manifest needs a config descriptor"))?;
        let cd = descriptor_digest(config, "config")?;
        if reg
            .inner
            .db
            .repo_blob(name, &cd.to_string())
            .await?
            .is_none()
        {
            return Err(missing("config blob", &cd));
        }
        refs.push((cd.to_string(), "blob"));
        let layers = match doc.get("layers") {
            Some(Value::Array(l)) => l.as_slice(),
            None => &[],
            Some(_) => return Err(invalid("layers must be an array")),
        };
        for (i, l) in layers.iter().enumerate() {
            let d = descriptor_digest(l, &format!("layers[{i}]"))?;
            if is_foreign(l) {
                continue;
            }
            if reg
                .inner
                .db
                .repo_blob(name, &d.to_string())
                .await?
                .is_none()
            {
                return Err(missing("layer", &d));
            }
            refs.push((d.to_string(), "blob"));
        }
    }
    let subject = match doc.get("subject") {
        Some(s) => Some(descriptor_digest(s, "subject")?.to_string()),
        None => None,
    };
    let artifact_type = doc
        .get("artifactType")
        .and_then(Value::as_str)
        .or_else(|| {
            (!is_index)
                .then(|| doc.pointer("/config/mediaType").and_then(Value::as_str))
                .flatten()
        })
        .map(str::to_owned);
    let annotations = doc
        .get("annotations")
        .filter(|a| a.is_object())
        .map(Value::to_string);

    reg.inner.blobs.put_small(&digest, &bytes).await?;
    let new = NewManifest {
        digest: digest.to_string(),
        media_type,
        size: bytes.len() as i64,
        artifact_type,
        subject: subject.clone(),
        annotations,
        refs,
        tags,
    };
    for (child, _) in &new.refs {
        reg.touch(child);
    }
    reg.touch(&new.digest);
    match reg.inner.db.put_manifest(name, &new).await {
        Ok(()) => {}
        Err(PutManifestError::TagImmutable {
            repo,
            tag,
            existing,
        }) => {
            return Err(OciError::new(
                Code::TagInvalid,
                format!(
                    "tag {tag} already exists in immutable repository {repo} (it points to {existing}); push under a new tag"
                ),
            ));
        }
        Err(PutManifestError::Db(e)) => return Err(e.into()),
    }
    slipway_metrics::global().manifest_pushed();
    let mut hs = vec![
        (header::LOCATION, format!("/v2/{name}/manifests/{digest}")),
        (digest_header(), digest.to_string()),
    ];
    if let Some(s) = subject {
        hs.push((header::HeaderName::from_static("oci-subject"), s));
    }
    if !tag_params.is_empty() {
        hs.push((
            header::HeaderName::from_static("oci-tag"),
            tag_params.join(", "),
        ));
    }
    Ok(empty(StatusCode::CREATED, hs))
}

pub(super) async fn require_repo_or_create(reg: &Registry, name: &str) -> Result<()> {
    reg.inner.db.ensure_repo(name).await?;
    Ok(())
}

pub(super) async fn delete_manifest(reg: &Registry, name: &str, r: &str) -> Result<Response> {
    let deleted = match parse_reference(r)? {
        Reference::Digest(d) => reg.inner.db.delete_manifest(name, &d.to_string()).await?,
        Reference::Tag(t) => reg.inner.db.delete_tag(name, &t).await?,
    };
    if deleted {
        Ok(empty(StatusCode::ACCEPTED, vec![]))
    } else {
        Err(manifest_unknown(name, r))
    }
}
