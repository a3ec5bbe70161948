//! The ECR subset (`AmazonEC2ContainerRegistry_V20150921.*`): the built-in registry's
//! repositories and images.

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_registry::admin::{ImageInfo, RepositoryInfo};
use slipway_registry::{Registry, RegistryError, Rights};

use slipway_core::access::Face;

use crate::{ACCOUNT_ID, AwsError, AwsResult, Call, parse, ts};

mod lifecycle;
#[cfg(test)]
mod lifecycle_flow;

impl From<RegistryError> for AwsError {
    fn from(e: RegistryError) -> Self {
        tracing::error!(error = %e, "registry error in the AWS API");
        AwsError::server(e.to_string())
    }
}

pub(crate) async fn dispatch(call: &Call<'_>, op: &str, body: &[u8]) -> AwsResult {
    match op {
        "GetAuthorizationToken" => get_authorization_token(call),
        "CreateRepository" => create_repository(call, parse(body)?).await,
        "DescribeRepositories" => describe_repositories(call, parse(body)?).await,
        "DeleteRepository" => delete_repository(call, parse(body)?).await,
        "DescribeImages" => describe_images(call, parse(body)?).await,
        "ListImages" => list_images(call, parse(body)?).await,
        "BatchDeleteImage" => batch_delete_image(call, parse(body)?).await,
        "BatchGetImage" => batch_get_image(call, parse(body)?).await,
        "PutImageTagMutability" => put_tag_mutability(call, parse(body)?).await,
        "PutLifecyclePolicy" => lifecycle::put(call, parse(body)?).await,
        "GetLifecyclePolicy" => lifecycle::get(call, parse(body)?).await,
        "DeleteLifecyclePolicy" => lifecycle::delete(call, parse(body)?).await,
        "StartLifecyclePolicyPreview" => lifecycle::start_preview(call, parse(body)?).await,
        "GetLifecyclePolicyPreview" => lifecycle::get_preview(call, parse(body)?).await,
        _ => Err(AwsError::client(
            "UnknownOperationException",
            format!("unknown ECR operation {op}"),
        )),
    }
}

/// Every ECR operation [`dispatch`] answers (each has a rule in the permission table).
#[cfg(test)]
pub(crate) const OPERATIONS: &[&str] = &[
    "GetAuthorizationToken",
    "CreateRepository",
    "DescribeRepositories",
    "DeleteRepository",
    "DescribeImages",
    "ListImages",
    "BatchDeleteImage",
    "BatchGetImage",
    "PutImageTagMutability",
    "PutLifecyclePolicy",
    "GetLifecyclePolicy",
    "DeleteLifecyclePolicy",
    "StartLifecyclePolicyPreview",
    "GetLifecyclePolicyPreview",
];

/// The repository a mutating call acts on.
pub(crate) fn scope_target(body: &[u8]) -> Option<crate::Target> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("repositoryName")
        .and_then(Value::as_str)
        .map(|r| crate::Target::Repo(r.to_owned()))
}

fn host<'a>(call: &'a Call<'_>) -> &'a str {
    call.origin
        .split_once("://")
        .map_or(call.origin.as_str(), |x| x.1)
}

fn repo_json(call: &Call<'_>, r: &RepositoryInfo) -> Value {
    json!({
        "repositoryArn": call.arn("ecr", &format!("repository/{}", r.name)),
        "registryId": ACCOUNT_ID,
        "repositoryName": r.name,
        "repositoryUri": format!("{}/{}", host(call), r.name),
        "createdAt": ts(r.created_at),
        "imageTagMutability": if r.immutable { "IMMUTABLE" } else { "MUTABLE" },
        "imageScanningConfiguration": { "scanOnPush": false },
        "encryptionConfiguration": { "encryptionType": "AES256" },
    })
}

fn get_authorization_token(call: &Call<'_>) -> AwsResult {
    let rights = if call.who.check(Face::Registry, "push").is_ok() {
        Rights::Push
    } else {
        Rights::Pull
    };
    // The password belongs to the key: it stops working when the key (or its owner) is
    // revoked.
    let (password, exp) = call
        .state
        .registry
        .issue_password(rights, &format!("key:{}", call.key.id));
    let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    Ok(json!({
        "authorizationData": [{
            "authorizationToken": token,
            "expiresAt": exp,
            "proxyEndpoint": call.origin,
        }]
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoReq {
    repository_name: Option<String>,
    image_tag_mutability: Option<String>,
    force: Option<bool>,
}

fn check_name(name: &str) -> AwsResult<()> {
    let ecr_ok = (2..=256).contains(&name.len())
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && seg.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        });
    if !ecr_ok {
        return Err(AwsError::invalid(format!(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*'' (got {name:?})"
        )));
    }
    Registry::check_repository_name(name).map_err(AwsError::invalid)
}

fn mutability(s: Option<&str>) -> AwsResult<Option<bool>> {
    match s {
        None => Ok(None),
        Some("MUTABLE") => Ok(Some(false)),
        Some("IMMUTABLE") => Ok(Some(true)),
        Some(o) => Err(AwsError::invalid(format!(
            "imageTagMutability must be MUTABLE or IMMUTABLE on Slipway, got {o}"
        ))),
    }
}

fn not_found(name: &str) -> AwsError {
    AwsError::client(
        "RepositoryNotFoundException",
        format!(
            "The repository with name '{name}' does not exist in the registry with id '{ACCOUNT_ID}'"
        ),
    )
}

async fn existing(call: &Call<'_>, name: Option<&str>) -> AwsResult<RepositoryInfo> {
    let name = name.ok_or_else(|| AwsError::invalid("repositoryName is required"))?;
    check_name(name)?;
    call.state
        .registry
        .repository(name)
        .await?
        .ok_or_else(|| not_found(name))
}

async fn create_repository(call: &Call<'_>, req: RepoReq) -> AwsResult {
    let name = req
        .repository_name
        .ok_or_else(|| AwsError::invalid("repositoryName is required"))?;
    check_name(&name)?;
    let immutable = mutability(req.image_tag_mutability.as_deref())?.unwrap_or(false);
    if !call
        .state
        .registry
        .create_repository(&name, immutable)
        .await?
    {
        return Err(AwsError::client(
            "RepositoryAlreadyExistsException",
            format!(
                "The repository with name '{name}' already exists in the registry with id '{ACCOUNT_ID}'"
            ),
        ));
    }
    let r = existing(call, Some(&name)).await?;
    Ok(json!({ "repository": repo_json(call, &r) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeReposReq {
    repository_names: Option<Vec<String>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

async fn describe_repositories(call: &Call<'_>, req: DescribeReposReq) -> AwsResult {
    let repos = match req.repository_names {
        Some(names) => {
            let mut out = Vec::new();
            for n in names {
                out.push(existing(call, Some(&n)).await?);
            }
            out
        }
        None => call.state.registry.repositories().await?,
    };
    let (repos, next) = crate::page(&repos, req.max_results, req.next_token.as_deref(), 1000)?;
    let page: Vec<Value> = repos.iter().map(|r| repo_json(call, r)).collect();
    Ok(json!({
        "repositories": page,
        "nextToken": next,
    }))
}

async fn delete_repository(call: &Call<'_>, req: RepoReq) -> AwsResult {
    let r = existing(call, req.repository_name.as_deref()).await?;
    if (r.tags > 0 || r.manifests > 0) && !req.force.unwrap_or(false) {
        return Err(AwsError::client(
            "RepositoryNotEmptyException",
            format!(
                "The repository with name '{}' in registry with id '{ACCOUNT_ID}' cannot be deleted because it still contains images",
                r.name
            ),
        ));
    }
    call.state.registry.delete_repository(&r.name).await?;
    Ok(json!({ "repository": repo_json(call, &r) }))
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct ImageId {
    image_digest: Option<String>,
    image_tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterReq {
    tag_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImagesReq {
    repository_name: Option<String>,
    image_ids: Option<Vec<ImageId>>,
    filter: Option<FilterReq>,
}

fn matches_status(tagged: Option<bool>, i: &ImageInfo) -> bool {
    let has_tags = !i.tags.is_empty();
    tagged.is_none_or(|t| t == has_tags)
}

fn tag_status(f: Option<&FilterReq>) -> AwsResult<Option<bool>> {
    match f.and_then(|f| f.tag_status.as_deref()) {
        None | Some("ANY") => Ok(None),
        Some("TAGGED") => Ok(Some(true)),
        Some("UNTAGGED") => Ok(Some(false)),
        Some(o) => Err(AwsError::invalid(format!(
            "tagStatus must be TAGGED, UNTAGGED or ANY, got {o}"
        ))),
    }
}

async fn repo_images(
    call: &Call<'_>,
    name: Option<&str>,
) -> AwsResult<(RepositoryInfo, Vec<ImageInfo>)> {
    let r = existing(call, name).await?;
    let images = call
        .state
        .registry
        .images(&r.name)
        .await?
        .ok_or_else(|| not_found(&r.name))?;
    Ok((r, images))
}

fn find<'a>(images: &'a [ImageInfo], id: &ImageId) -> Option<&'a ImageInfo> {
    images.iter().find(|i| {
        id.image_digest.as_deref().is_none_or(|d| d == i.digest)
            && id
                .image_tag
                .as_deref()
                .is_none_or(|t| i.tags.iter().any(|x| x == t))
            && (id.image_digest.is_some() || id.image_tag.is_some())
    })
}

fn image_detail(r: &RepositoryInfo, i: &ImageInfo) -> Value {
    let mut v = json!({
        "registryId": ACCOUNT_ID,
        "repositoryName": r.name,
        "imageDigest": i.digest,
        "imageSizeInBytes": i.size,
        "imagePushedAt": ts(i.pushed_at),
        "imageManifestMediaType": i.media_type,
        "imageStatus": "ACTIVE",
    });
    if !i.tags.is_empty() {
        v["imageTags"] = json!(i.tags);
    }
    v
}

async fn describe_images(call: &Call<'_>, req: ImagesReq) -> AwsResult {
    let (r, images) = repo_images(call, req.repository_name.as_deref()).await?;
    let tagged = tag_status(req.filter.as_ref())?;
    let mut details = Vec::new();
    match &req.image_ids {
        Some(ids) => {
            for id in ids {
                let i = find(&images, id).ok_or_else(|| {
                    AwsError::client(
                        "ImageNotFoundException",
                        format!(
                            "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{}' in the registry with id '{ACCOUNT_ID}'",
                            id.image_digest.as_deref().unwrap_or("null"),
                            id.image_tag.as_deref().unwrap_or("null"),
                            r.name
                        ),
                    )
                })?;
                details.push(image_detail(&r, i));
            }
        }
        None => {
            for i in &images {
                if matches_status(tagged, i) {
                    details.push(image_detail(&r, i));
                }
            }
        }
    }
    Ok(json!({ "imageDetails": details }))
}

async fn list_images(call: &Call<'_>, req: ImagesReq) -> AwsResult {
    let (_, images) = repo_images(call, req.repository_name.as_deref()).await?;
    let tagged = tag_status(req.filter.as_ref())?;
    let mut ids = Vec::new();
    for i in &images {
        if !matches_status(tagged, i) {
            continue;
        }
        if i.tags.is_empty() {
            ids.push(json!({ "imageDigest": i.digest }));
        }
        for t in &i.tags {
            ids.push(json!({ "imageDigest": i.digest, "imageTag": t }));
        }
    }
    Ok(json!({ "imageIds": ids }))
}

fn id_json(id: &ImageId) -> Value {
    let mut v = json!({});
    if let Some(d) = &id.image_digest {
        v["imageDigest"] = json!(d);
    }
    if let Some(t) = &id.image_tag {
        v["imageTag"] = json!(t);
    }
    v
}

fn failure(id: &ImageId, code: &str, reason: &str) -> Value {
    json!({ "imageId": id_json(id), "failureCode": code, "failureReason": reason })
}

fn check_ids(ids: &Option<Vec<ImageId>>) -> AwsResult<&[ImageId]> {
    let ids = ids.as_deref().unwrap_or_default();
    if ids.is_empty() || ids.len() > 100 {
        return Err(AwsError::invalid(
            "imageIds must hold between 1 and 100 image ids",
        ));
    }
    Ok(ids)
}

async fn batch_delete_image(call: &Call<'_>, req: ImagesReq) -> AwsResult {
    let (r, _) = repo_images(call, req.repository_name.as_deref()).await?;
    let ids = check_ids(&req.image_ids)?;
    let reg = &call.state.registry;
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for id in ids {
        // Look again for each id: earlier deletions change what is there.
        let images = reg.images(&r.name).await?.unwrap_or_default();
        if id.image_digest.is_none() && id.image_tag.is_none() {
            failures.push(failure(id, "MissingDigestAndTag", "Missing digest and tag"));
            continue;
        }
        if let Some(d) = &id.image_digest
            && slipway_registry::names::Digest::parse(d).is_err()
        {
            failures.push(failure(id, "InvalidImageDigest", "Invalid image digest"));
            continue;
        }
        let Some(img) = find(&images, id) else {
            let code = if id.image_digest.is_some() && id.image_tag.is_some() {
                "ImageTagDoesNotMatchDigest"
            } else {
                "ImageNotFound"
            };
            failures.push(failure(id, code, "Requested image not found"));
            continue;
        };
        match &id.image_tag {
            // By tag: the tag goes; the image goes with its last tag.
            Some(tag) if id.image_digest.is_none() => {
                reg.delete_tag(&r.name, tag).await?;
                if img.tags.len() == 1 {
                    reg.delete_manifest(&r.name, &img.digest).await?;
                }
                deleted.push(json!({ "imageDigest": img.digest, "imageTag": tag }));
            }
            // By digest: the image and every tag go.
            _ => {
                reg.delete_manifest(&r.name, &img.digest).await?;
                if img.tags.is_empty() {
                    deleted.push(json!({ "imageDigest": img.digest }));
                }
                for t in &img.tags {
                    deleted.push(json!({ "imageDigest": img.digest, "imageTag": t }));
                }
            }
        }
    }
    Ok(json!({ "imageIds": deleted, "failures": failures }))
}

async fn batch_get_image(call: &Call<'_>, req: ImagesReq) -> AwsResult {
    let (r, images) = repo_images(call, req.repository_name.as_deref()).await?;
    let ids = check_ids(&req.image_ids)?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for id in ids {
        let Some(img) = find(&images, id) else {
            failures.push(failure(id, "ImageNotFound", "Requested image not found"));
            continue;
        };
        let Some((media_type, bytes)) = call.state.registry.manifest(&r.name, &img.digest).await?
        else {
            failures.push(failure(id, "ImageNotFound", "Requested image not found"));
            continue;
        };
        let mut image_id = json!({ "imageDigest": img.digest });
        if let Some(t) = &id.image_tag {
            image_id["imageTag"] = json!(t);
        }
        out.push(json!({
            "registryId": ACCOUNT_ID,
            "repositoryName": r.name,
            "imageId": image_id,
            "imageManifest": String::from_utf8_lossy(&bytes),
            "imageManifestMediaType": media_type,
        }));
    }
    Ok(json!({ "images": out, "failures": failures }))
}

async fn put_tag_mutability(call: &Call<'_>, req: RepoReq) -> AwsResult {
    let r = existing(call, req.repository_name.as_deref()).await?;
    let immutable = mutability(req.image_tag_mutability.as_deref())?
        .ok_or_else(|| AwsError::invalid("imageTagMutability is required"))?;
    call.state
        .registry
        .set_immutable(&r.name, immutable)
        .await?;
    Ok(json!({
        "registryId": ACCOUNT_ID,
        "repositoryName": r.name,
        "imageTagMutability": if immutable { "IMMUTABLE" } else { "MUTABLE" },
    }))
}
