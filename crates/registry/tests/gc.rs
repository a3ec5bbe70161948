//! Online garbage collection racing pushes, and lifecycle preview = run, in process.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use slipway_registry::{Registry, RegistryConfig};
use tower::ServiceExt;

mod support;

use support::{ADMIN, FixedIds, admin_password, routers};
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

#[derive(Clone)]
struct Client {
    app: Router,
    basic: String,
}

impl Client {
    async fn req(
        &self,
        method: Method,
        uri: &str,
        ct: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Bytes) {
        // The native API takes the admin token as a Bearer token; /v2/ takes Basic.
        let auth = if uri.starts_with("/api/") {
            format!("Bearer {ADMIN}")
        } else {
            self.basic.clone()
        };
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "reg.test")
            .header("authorization", auth);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body)
    }

    /// Pushes a blob unless the repository already has it (as docker does: HEAD first).
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let (st, _) = self
            .req(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"), None, vec![])
            .await;
        if st == StatusCode::OK {
            return d;
        }
        let (st, body) = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                None,
                data.to_vec(),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        d
    }

    /// Pushes an image with `layers` and returns its manifest digest.
    async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layers: &[Vec<u8>],
    ) -> Result<String, String> {
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#).into_bytes();
        let cd = self.push_blob(repo, &config).await;
        let mut descs = Vec::new();
        for l in layers {
            let d = self.push_blob(repo, l).await;
            descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}));
        }
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let (st, body) = self
            .req(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                Some(OCI_MANIFEST),
                m.clone(),
            )
            .await;
        if st != StatusCode::CREATED {
            return Err(format!("{st} {}", String::from_utf8_lossy(&body)));
        }
        Ok(sha256(&m))
    }

    /// Pulls a tag completely: the manifest and every blob, checking digests.
    async fn pull(&self, repo: &str, tag: &str) -> Result<(), String> {
        let (st, m) = self
            .req(
                Method::GET,
                &format!("/v2/{repo}/manifests/{tag}"),
                None,
                vec![],
            )
            .await;
        if st != StatusCode::OK {
            return Err(format!(
                "manifest {tag}: {st} {}",
                String::from_utf8_lossy(&m)
            ));
        }
        let doc: Value = serde_json::from_slice(&m).unwrap();
        let mut digests = vec![doc["config"]["digest"].as_str().unwrap().to_owned()];
        for l in doc["layers"].as_array().unwrap() {
            digests.push(l["digest"].as_str().unwrap().to_owned());
        }
        for d in digests {
            let (st, b) = self
                .req(Method::GET, &format!("/v2/{repo}/blobs/{d}"), None, vec![])
                .await;
            if st != StatusCode::OK {
                return Err(format!(
                    "blob {d} of {tag}: {st} {}",
                    String::from_utf8_lossy(&b)
                ));
            }
            if sha256(&b) != d {
                return Err(format!("blob {d} of {tag} has other content"));
            }
        }
        Ok(())
    }

    async fn head_blob(&self, repo: &str, d: &str) -> StatusCode {
        self.req(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"), None, vec![])
            .await
            .0
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

async fn open(dir: &std::path::Path, grace: Duration) -> (Registry, Client) {
    let mut cfg = RegistryConfig::new(dir.to_owned(), Arc::new(FixedIds::default()));
    cfg.gc_grace = grace;
    cfg.gc_interval = None;
    cfg.lifecycle_interval = None;
    let reg = Registry::open(cfg).await.unwrap();
    let client = Client {
        app: routers(&reg),
        basic: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("slipway:{}", admin_password(&reg)))
        ),
    };
    (reg, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_gc_never_lose_a_blob_and_gc_frees_garbage() {
    let grace = Duration::from_millis(1500);
    let dir = tempfile::tempdir().unwrap();
    let (reg, c) = open(dir.path(), grace).await;
    let repo = "race/app";

    // Garbage: blobs no manifest refers to, and an image whose manifest is deleted. Its base
    // layer is pushed again by the racing pushes (which must then see it or re-upload it).
    let base = random_bytes(4096);
    let orphans: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(c.push_blob(repo, &random_bytes(10_000)).await);
        }
        v
    };
    let gone = c
        .push_image(repo, "gone", &[base.clone(), random_bytes(20_000)])
        .await
        .unwrap();
    let (st, _) = c
        .req(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/{gone}"),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // Too young to collect yet.
    assert!(reg.gc(false).await.unwrap().blobs.is_empty());
    tokio::time::sleep(grace + Duration::from_millis(100)).await;

    // A dry run reports the garbage and deletes nothing.
    let dry = reg.gc(true).await.unwrap();
    let dry_set: HashSet<String> = dry.blobs.iter().map(|b| b.digest.clone()).collect();
    for o in &orphans {
        assert!(dry_set.contains(o), "{o} not in {dry_set:?}");
        assert_eq!(c.head_blob(repo, o).await, StatusCode::OK);
    }
    assert!(
        dry_set.contains(&gone),
        "the deleted manifest's bytes are garbage"
    );

    // The race: pushes with new layers (and the old base layer) against a GC loop.
    let done = Arc::new(AtomicBool::new(false));
    let gc_task = {
        let reg = reg.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut freed: HashSet<String> = HashSet::new();
            let mut runs = 0;
            while !done.load(Ordering::SeqCst) && runs < 2000 {
                for b in reg.gc(false).await.unwrap().blobs {
                    freed.insert(b.digest);
                }
                runs += 1;
                tokio::task::yield_now().await;
            }
            (freed, runs)
        })
    };
    let mut pushers = Vec::new();
    for p in 0..3 {
        let c = c.clone();
        let base = base.clone();
        pushers.push(tokio::spawn(async move {
            let mut tags = Vec::new();
            for i in 0..15 {
                let tag = format!("p{p}-{i}");
                c.push_image(
                    repo,
                    &tag,
                    &[base.clone(), random_bytes(30_000), random_bytes(5_000)],
                )
                .await
                .unwrap_or_else(|e| panic!("push {tag}: {e}"));
                tags.push(tag);
            }
            tags
        }));
    }
    let mut tags = Vec::new();
    for p in pushers {
        tags.extend(p.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let (mut freed, runs) = gc_task.await.unwrap();
    assert!(runs > 0);
    // GC once more after the grace period: pushed images are referenced, so still whole.
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    for b in reg.gc(false).await.unwrap().blobs {
        freed.insert(b.digest);
    }
    assert_eq!(tags.len(), 45);
    for t in &tags {
        c.pull(repo, t)
            .await
            .unwrap_or_else(|e| panic!("pull {t} after GC: {e}"));
    }
    // GC did delete the unreferenced blobs, and they are gone for real.
    for o in orphans.iter().chain([&gone]) {
        assert!(freed.contains(o), "{o} was not collected");
    }
    for o in &orphans {
        assert_eq!(c.head_blob(repo, o).await, StatusCode::NOT_FOUND);
        let d = o.strip_prefix("sha256:").unwrap();
        assert!(
            !dir.path()
                .join("blobs/sha256")
                .join(&d[..2])
                .join(d)
                .exists()
        );
    }
    // Re-pushing a collected blob really uploads it again.
    let again = random_bytes(10);
    let d = c.push_blob(repo, &again).await;
    assert_eq!(c.head_blob(repo, &d).await, StatusCode::OK);
}

#[tokio::test]
async fn lifecycle_preview_equals_what_a_run_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (_reg, c) = open(dir.path(), Duration::from_secs(3600)).await;
    let repo = "life/app";
    let mut pushed = Vec::new();
    for i in 0..5 {
        pushed.push(
            c.push_image(repo, &format!("dev-{i}"), &[random_bytes(100)])
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let prod = c
        .push_image(repo, "prod-1", &[random_bytes(100)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // An untagged image: the "dev-4" tag moves to a new image.
    let moved = c
        .push_image(repo, "dev-4", &[random_bytes(100)])
        .await
        .unwrap();

    let bad = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    let (st, body) = c
        .req(
            Method::PUT,
            &format!("/api/v1/repositories/{repo}/lifecycle-policy"),
            None,
            bad.into(),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let msg = String::from_utf8_lossy(&body);
    assert!(
        msg.contains("rule with rulePriority 1") && msg.contains("tagPrefixList or tagPatternList"),
        "{msg}"
    );

    let policy = r#"{"rules":[
      {"rulePriority":1,"description":"keep prod","selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":100},"action":{"type":"expire"}},
      {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
      {"rulePriority":3,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}}]}"#;
    let (st, body) = c
        .req(
            Method::PUT,
            &format!("/api/v1/repositories/{repo}/lifecycle-policy"),
            None,
            policy.into(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (st, body) = c
        .req(
            Method::POST,
            &format!("/api/v1/repositories/{repo}/lifecycle-policy/preview"),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let preview: Value = serde_json::from_slice(&body).unwrap();
    let expired = |v: &Value| -> Vec<String> {
        v["expired"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    // Images newest first: moved (dev-4), prod-1, the old dev-4 (now untagged, kept by
    // rule 2), dev-3, dev-2, dev-1, dev-0. Rule 3 counts all seven and keeps the newest
    // three (prod-1 and the untagged one belong to rules 1 and 2 anyway): dev-3 to dev-0
    // expire.
    let mut want: Vec<String> = pushed[..4].to_vec();
    want.sort();
    let mut got = expired(&preview);
    got.sort();
    assert_eq!(got, want, "{preview}");
    assert_eq!(preview["dry_run"], true);

    let (st, body) = c
        .req(
            Method::POST,
            &format!("/api/v1/repositories/{repo}/lifecycle-policy/run"),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let run: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(expired(&run), expired(&preview), "preview equals the run");
    for d in &want {
        let (st, _) = c
            .req(
                Method::GET,
                &format!("/v2/{repo}/manifests/{d}"),
                None,
                vec![],
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{d} was deleted");
    }
    for d in [&prod, &moved, &pushed[4]] {
        let (st, _) = c
            .req(
                Method::GET,
                &format!("/v2/{repo}/manifests/{d}"),
                None,
                vec![],
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{d} was kept");
    }
    // Nothing more to expire: a second preview is empty.
    let (_, body) = c
        .req(
            Method::POST,
            &format!("/api/v1/repositories/{repo}/lifecycle-policy/preview"),
            None,
            vec![],
        )
        .await;
    let again: Value = serde_json::from_slice(&body).unwrap();
    assert!(expired(&again).is_empty(), "{again}");
}
