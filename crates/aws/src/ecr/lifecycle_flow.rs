//! ECR lifecycle policies in process: the operations against a real registry in a temp
//! directory, images pushed through its OCI router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use slipway_app::App;
use slipway_store::secrets::SecretBox;
use slipway_store::{AccessKey, Store};
use tower::ServiceExt;

use super::*;
use crate::AwsState;
use crate::ecs::strategy_flow::FixedImages;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const REPO: &str = "life/app";
const KEEP_1: &str = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
const KEEP_2: &str = r#"{"rules":[{"rulePriority":7,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]}"#;

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

struct Ecr {
    state: AwsState,
    _dir: tempfile::TempDir,
}

impl Ecr {
    async fn new() -> Ecr {
        let dir = tempfile::tempdir().unwrap();
        let app = App::new(
            Store::memory().await.unwrap(),
            Arc::new(FixedImages),
            SecretBox::from_key(&[7u8; 32]).unwrap(),
            "test",
        );
        let mut cfg = slipway_registry::RegistryConfig::new(
            dir.path().join("registry"),
            Arc::new(crate::ecs::strategy_flow::AdminOnly),
        );
        cfg.gc_interval = None;
        cfg.lifecycle_interval = None;
        let registry = Registry::open(cfg).await.unwrap();
        Ecr {
            state: AwsState {
                app,
                registry,
                keys: Default::default(),
                limiter: Arc::new(slipway_api::RateLimiter::new(0)),
                ingress_addr: None,
            },
            _dir: dir,
        }
    }

    /// Calls `op` as the ECR face does: the permission check, then the operation.
    async fn call_as(&self, read_only: bool, op: &str, body: &Value) -> AwsResult {
        let key = AccessKey {
            id: "AKIDTEST".into(),
            secret: "secret".into(),
            sealed: None,
            name: None,
            read_only,
            created_at: 0,
            revoked_at: None,
            owner: None,
            version: 1,
        };
        let who = self.state.app.key_identity(&key).await.unwrap().unwrap();
        let call = Call {
            state: &self.state,
            key,
            who,
            region: "us-east-1".into(),
            origin: "http://127.0.0.1".into(),
        };
        let body = body.to_string();
        crate::permit(
            &call,
            slipway_core::access::Face::Ecr,
            op,
            body.as_bytes(),
            &crate::Protocol::Ecr(op.to_owned()),
        )
        .await?;
        dispatch(&call, op, body.as_bytes()).await
    }

    async fn ok(&self, op: &str, body: Value) -> Value {
        match self.call_as(false, op, &body).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {body}: {} {}", e.kind, e.message),
        }
    }

    /// The error kind and message of a call that must fail.
    async fn err(&self, op: &str, body: Value) -> (&'static str, String) {
        match self.call_as(false, op, &body).await {
            Ok(v) => panic!("{op} {body} succeeded: {v}"),
            Err(e) => (e.kind, e.message),
        }
    }

    async fn oci(&self, method: Method, uri: &str, ct: Option<&str>, body: Vec<u8>) -> StatusCode {
        let (password, _) = self
            .state
            .registry
            .issue_password(slipway_registry::Rights::Push, "admin");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("slipway:{password}"));
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "reg.test")
            .header("authorization", format!("Basic {basic}"));
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        self.state
            .registry
            .router()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap()
            .status()
    }

    /// Pushes a one-layer image under `tag`; returns its manifest digest.
    async fn push(&self, tag: &str) -> String {
        let mut descs = Vec::new();
        let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
        let layer = format!("layer of {tag}");
        for blob in [&config, &layer] {
            let st = self
                .oci(
                    Method::POST,
                    &format!(
                        "/v2/{REPO}/blobs/uploads/?digest={}",
                        sha256(blob.as_bytes())
                    ),
                    None,
                    blob.clone().into_bytes(),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED);
            descs.push(json!({"digest": sha256(blob.as_bytes()), "size": blob.len()}));
        }
        descs[0]["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
        descs[1]["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descs[0], "layers": [descs[1]],
        }))
        .unwrap();
        let st = self
            .oci(
                Method::PUT,
                &format!("/v2/{REPO}/manifests/{tag}"),
                Some(OCI_MANIFEST),
                m.clone(),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
        sha256(&m)
    }

    async fn preview_digests(&self) -> Vec<String> {
        let p = self
            .ok(
                "GetLifecyclePolicyPreview",
                json!({ "repositoryName": REPO }),
            )
            .await;
        p["previewResults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["imageDigest"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn image_count(&self) -> usize {
        self.ok("DescribeImages", json!({ "repositoryName": REPO }))
            .await["imageDetails"]
            .as_array()
            .unwrap()
            .len()
    }
}

#[tokio::test]
async fn lifecycle_policies_set_get_preview_and_delete() {
    let e = Ecr::new().await;
    e.ok("CreateRepository", json!({ "repositoryName": REPO }))
        .await;
    let mut pushed = Vec::new();
    for tag in ["v1", "v2", "v3"] {
        pushed.push(e.push(tag).await);
        // Push times are in ms: keep the three apart so "newest" is the last pushed.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let repo = json!({ "repositoryName": REPO });

    // Nothing set yet.
    for op in [
        "GetLifecyclePolicy",
        "DeleteLifecyclePolicy",
        "StartLifecyclePolicyPreview",
    ] {
        let (kind, msg) = e.err(op, repo.clone()).await;
        assert_eq!(kind, "LifecyclePolicyNotFoundException", "{op}: {msg}");
    }
    let (kind, _) = e.err("GetLifecyclePolicyPreview", repo.clone()).await;
    assert_eq!(kind, "LifecyclePolicyPreviewNotFoundException");
    let (kind, _) = e
        .err(
            "PutLifecyclePolicy",
            json!({ "repositoryName": "nope", "lifecyclePolicyText": KEEP_1 }),
        )
        .await;
    assert_eq!(kind, "RepositoryNotFoundException");

    // Put echoes; Get answers the text, never evaluated yet.
    let put = e
        .ok(
            "PutLifecyclePolicy",
            json!({ "repositoryName": REPO, "lifecyclePolicyText": KEEP_1 }),
        )
        .await;
    assert_eq!(
        put,
        json!({ "registryId": ACCOUNT_ID, "repositoryName": REPO, "lifecyclePolicyText": KEEP_1 })
    );
    let got = e.ok("GetLifecyclePolicy", repo.clone()).await;
    assert_eq!(got["lifecyclePolicyText"], KEEP_1);
    assert_eq!(got["lastEvaluatedAt"], json!(0.0));

    // A bad policy: the parser's message, the stored policy unchanged.
    let bad = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    for op in ["PutLifecyclePolicy", "StartLifecyclePolicyPreview"] {
        let (kind, msg) = e
            .err(
                op,
                json!({ "repositoryName": REPO, "lifecyclePolicyText": bad }),
            )
            .await;
        assert_eq!(kind, "InvalidParameterException", "{op}");
        assert!(
            msg.contains("rulePriority 1") && msg.contains("tagPrefixList or tagPatternList"),
            "{msg}"
        );
    }
    assert_eq!(
        e.ok("GetLifecyclePolicy", repo.clone()).await["lifecyclePolicyText"],
        KEEP_1
    );

    // A preview of a given policy: the stored one is untouched.
    let started = e
        .ok(
            "StartLifecyclePolicyPreview",
            json!({ "repositoryName": REPO, "lifecyclePolicyText": KEEP_2 }),
        )
        .await;
    assert_eq!(started["status"], "COMPLETE");
    assert_eq!(started["lifecyclePolicyText"], KEEP_2);
    assert_eq!(e.preview_digests().await, [pushed[0].clone()]);
    assert_eq!(
        e.ok("GetLifecyclePolicy", repo.clone()).await["lifecyclePolicyText"],
        KEEP_1
    );

    // A preview of the stored policy: the two older images, oldest first, nothing deleted.
    let started = e.ok("StartLifecyclePolicyPreview", repo.clone()).await;
    assert_eq!(started["lifecyclePolicyText"], KEEP_1);
    let p = e.ok("GetLifecyclePolicyPreview", repo.clone()).await;
    assert_eq!(p["status"], "COMPLETE");
    assert_eq!(p["lifecyclePolicyText"], KEEP_1);
    assert_eq!(p["summary"]["expiringImageTotalCount"], 2);
    let results = p["previewResults"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{p}");
    for (r, (digest, tag)) in results.iter().zip(pushed.iter().zip(["v1", "v2"])) {
        assert_eq!(r["imageDigest"], json!(digest));
        assert_eq!(r["imageTags"], json!([tag]));
        assert_eq!(r["action"], json!({ "type": "EXPIRE" }));
        assert_eq!(r["appliedRulePriority"], 1);
        assert!(r["imagePushedAt"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(e.image_count().await, 3);

    // Filters and pages of the preview; the summary counts them all.
    let by_tag = e
        .ok(
            "GetLifecyclePolicyPreview",
            json!({ "repositoryName": REPO, "imageIds": [{ "imageTag": "v2" }] }),
        )
        .await;
    assert_eq!(by_tag["previewResults"].as_array().unwrap().len(), 1);
    assert_eq!(by_tag["previewResults"][0]["imageDigest"], json!(pushed[1]));
    let page1 = e
        .ok(
            "GetLifecyclePolicyPreview",
            json!({ "repositoryName": REPO, "maxResults": 1 }),
        )
        .await;
    assert_eq!(page1["previewResults"][0]["imageDigest"], json!(pushed[0]));
    assert_eq!(page1["summary"]["expiringImageTotalCount"], 2);
    let page2 = e
        .ok(
            "GetLifecyclePolicyPreview",
            json!({ "repositoryName": REPO, "maxResults": 1, "nextToken": page1["nextToken"] }),
        )
        .await;
    assert_eq!(page2["previewResults"][0]["imageDigest"], json!(pushed[1]));
    assert!(page2["nextToken"].is_null());

    // A read-only key reads but does not write.
    for op in [
        "PutLifecyclePolicy",
        "DeleteLifecyclePolicy",
        "StartLifecyclePolicyPreview",
    ] {
        let body = json!({ "repositoryName": REPO, "lifecyclePolicyText": KEEP_2 });
        let err = e.call_as(true, op, &body).await.unwrap_err();
        assert_eq!(err.kind, "AccessDeniedException", "{op}");
    }
    for op in ["GetLifecyclePolicy", "GetLifecyclePolicyPreview"] {
        e.call_as(true, op, &repo).await.unwrap();
    }
    assert_eq!(
        e.ok("GetLifecyclePolicy", repo.clone()).await["lifecyclePolicyText"],
        KEEP_1
    );

    // A run deletes what the preview listed and is when the policy was last evaluated.
    let run = e
        .state
        .registry
        .apply_lifecycle(REPO, false, slipway_store::now_ms())
        .await
        .unwrap()
        .unwrap();
    let ran: Vec<String> = run.expired.iter().map(|x| x.digest.clone()).collect();
    assert_eq!(ran, e.preview_digests().await);
    assert_eq!(e.image_count().await, 1);
    let got = e.ok("GetLifecyclePolicy", repo.clone()).await;
    assert!(got["lastEvaluatedAt"].as_f64().unwrap() > 0.0, "{got}");

    // Delete answers the deleted policy; then there is none.
    let deleted = e.ok("DeleteLifecyclePolicy", repo.clone()).await;
    assert_eq!(deleted["lifecyclePolicyText"], KEEP_1);
    assert_eq!(deleted["repositoryName"], REPO);
    let (kind, _) = e.err("GetLifecyclePolicy", repo.clone()).await;
    assert_eq!(kind, "LifecyclePolicyNotFoundException");

    // A repository deleted and created again has no preview left.
    e.ok(
        "DeleteRepository",
        json!({ "repositoryName": REPO, "force": true }),
    )
    .await;
    e.ok("CreateRepository", repo.clone()).await;
    let (kind, _) = e.err("GetLifecyclePolicyPreview", repo.clone()).await;
    assert_eq!(kind, "LifecyclePolicyPreviewNotFoundException");
}
