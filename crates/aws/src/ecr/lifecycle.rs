//! ECR lifecycle policies: the registry's own ([`slipway_registry::lifecycle`]), in ECR's
//! JSON format, validated and evaluated by the registry exactly as `slipway repo policy`
//! does.

use serde::Deserialize;
use serde_json::{Value, json};
use slipway_registry::lifecycle::{Expiry, PolicyError, Preview};

use super::{ImageId, existing, not_found, tag_status};
use crate::{ACCOUNT_ID, AwsError, AwsResult, Call, ts};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PolicyReq {
    repository_name: Option<String>,
    lifecycle_policy_text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PreviewReq {
    repository_name: Option<String>,
    image_ids: Option<Vec<ImageId>>,
    filter: Option<super::FilterReq>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn policy_not_found(repo: &str) -> AwsError {
    AwsError::client(
        "LifecyclePolicyNotFoundException",
        format!(
            "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id '{ACCOUNT_ID}'"
        ),
    )
}

fn invalid_policy(e: &PolicyError) -> AwsError {
    AwsError::invalid(e.to_string())
}

fn policy_json(call: &Call<'_>, repo: &str, text: &str) -> Value {
    // Applied only by this process's runs; never applied yet shows as 0, as ECR does.
    let evaluated = call
        .state
        .registry
        .lifecycle_evaluated_at(repo)
        .unwrap_or(0);
    json!({
        "registryId": ACCOUNT_ID,
        "repositoryName": repo,
        "lifecyclePolicyText": text,
        "lastEvaluatedAt": ts(evaluated),
    })
}

pub(super) async fn put(call: &Call<'_>, req: PolicyReq) -> AwsResult {
    let r = existing(call, req.repository_name.as_deref()).await?;
    let text = req
        .lifecycle_policy_text
        .ok_or_else(|| AwsError::invalid("lifecyclePolicyText is required"))?;
    match call
        .state
        .registry
        .set_lifecycle_policy(&r.name, Some(&text))
        .await?
    {
        Ok(true) => Ok(json!({
            "registryId": ACCOUNT_ID,
            "repositoryName": r.name,
            "lifecyclePolicyText": text,
        })),
        // Deleted since `existing` looked.
        Ok(false) => Err(not_found(&r.name)),
        Err(e) => Err(invalid_policy(&e)),
    }
}

pub(super) async fn get(call: &Call<'_>, req: PolicyReq) -> AwsResult {
    let r = existing(call, req.repository_name.as_deref()).await?;
    let text = call
        .state
        .registry
        .lifecycle_policy(&r.name)
        .await?
        .ok_or_else(|| policy_not_found(&r.name))?;
    Ok(policy_json(call, &r.name, &text))
}

pub(super) async fn delete(call: &Call<'_>, req: PolicyReq) -> AwsResult {
    let r = existing(call, req.repository_name.as_deref()).await?;
    let reg = &call.state.registry;
    let text = reg
        .lifecycle_policy(&r.name)
        .await?
        .ok_or_else(|| policy_not_found(&r.name))?;
    let answer = policy_json(call, &r.name, &text);
    match reg.set_lifecycle_policy(&r.name, None).await? {
        Ok(true) => Ok(answer),
        Ok(false) => Err(not_found(&r.name)),
        Err(e) => Err(invalid_policy(&e)),
    }
}

/// Computes the preview at once (ECR computes it in the background, so its status may be
/// `IN_PROGRESS`; here it is always `COMPLETE` when this answers). Nothing is deleted; the
/// registry keeps the result for `GetLifecyclePolicyPreview`.
pub(super) async fn start_preview(call: &Call<'_>, req: PolicyReq) -> AwsResult {
    let r = existing(call, req.repository_name.as_deref()).await?;
    let preview = call
        .state
        .registry
        .start_lifecycle_preview(
            &r.name,
            req.lifecycle_policy_text.as_deref(),
            slipway_store::now_ms(),
        )
        .await?
        .map_err(|e| invalid_policy(&e))?
        .ok_or_else(|| policy_not_found(&r.name))?;
    Ok(json!({
        "registryId": ACCOUNT_ID,
        "repositoryName": r.name,
        "lifecyclePolicyText": preview.policy_text,
        "status": "COMPLETE",
    }))
}

fn result_json(e: &Expiry) -> Value {
    let mut v = json!({
        "imageDigest": e.digest,
        "imagePushedAt": ts(e.pushed_at),
        "action": { "type": "EXPIRE" },
        "appliedRulePriority": e.rule_priority,
    });
    if !e.tags.is_empty() {
        v["imageTags"] = json!(e.tags);
    }
    v
}

fn selected(e: &Expiry, ids: Option<&[ImageId]>, tagged: Option<bool>) -> bool {
    let has_tags = !e.tags.is_empty();
    tagged.is_none_or(|t| t == has_tags)
        && ids.is_none_or(|ids| {
            ids.iter().any(|id| {
                (id.image_digest.is_some() || id.image_tag.is_some())
                    && id.image_digest.as_deref().is_none_or(|d| d == e.digest)
                    && id
                        .image_tag
                        .as_deref()
                        .is_none_or(|t| e.tags.iter().any(|x| x == t))
            })
        })
}

pub(super) async fn get_preview(call: &Call<'_>, req: PreviewReq) -> AwsResult {
    let r = existing(call, req.repository_name.as_deref()).await?;
    let tagged = tag_status(req.filter.as_ref())?;
    let Preview {
        policy_text,
        report,
    } = call
        .state
        .registry
        .lifecycle_preview(&r.name)
        .ok_or_else(|| {
            AwsError::client(
                "LifecyclePolicyPreviewNotFoundException",
                format!(
                    "There is no lifecycle policy preview for the repository with name '{}' in the registry with id '{ACCOUNT_ID}'",
                    r.name
                ),
            )
        })?;
    let results: Vec<&Expiry> = report
        .expired
        .iter()
        .filter(|e| selected(e, req.image_ids.as_deref(), tagged))
        .collect();
    let (shown, next) = crate::page(&results, req.max_results, req.next_token.as_deref(), 100)?;
    let page: Vec<Value> = shown.iter().map(|e| result_json(e)).collect();
    Ok(json!({
        "registryId": ACCOUNT_ID,
        "repositoryName": r.name,
        "lifecyclePolicyText": policy_text,
        "status": "COMPLETE",
        "previewResults": page,
        "nextToken": next,
        "summary": { "expiringImageTotalCount": report.expired.len() },
    }))
}
