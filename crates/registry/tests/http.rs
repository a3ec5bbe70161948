//! In-process HTTP tests of the registry router, by the conformance suite's categories:
//! pull, push, content discovery and content management, plus auth and bad input.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};
use slipway_registry::{Registry, RegistryConfig, Rights};
use tower::ServiceExt;

mod support;

use support::{ADMIN, FixedIds, admin_password, routers};
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn header(&self, k: &str) -> &str {
        self.headers
            .get(k)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {k} header in {:?}", self.headers))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The spec error code of an error body.
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

struct Reg {
    dir: tempfile::TempDir,
    app: Router,
    auth: String,
}

fn basic(pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("slipway:{pass}"))
    )
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

async fn open(dir: &std::path::Path) -> Registry {
    let mut cfg = RegistryConfig::new(dir.to_owned(), Arc::new(FixedIds::default()));
    cfg.max_manifest_bytes = 64 * 1024;
    Registry::open(cfg).await.unwrap()
}

impl Reg {
    async fn new() -> Reg {
        let dir = tempfile::tempdir().unwrap();
        let reg = open(dir.path()).await;
        Reg {
            app: routers(&reg),
            dir,
            auth: basic(&admin_password(&reg)),
        }
    }

    /// Drops the registry and opens it again on the same directory (a server restart).
    async fn reopen(&mut self) {
        let reg = open(self.dir.path()).await;
        self.app = routers(&reg);
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        self.send_body(method, uri, headers, Body::from(body)).await
    }

    async fn send_body(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "reg.test");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// An authenticated request (Basic, admin token).
    async fn req(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let mut h: Vec<(&str, &str)> = vec![("authorization", self.auth.as_str())];
        h.extend_from_slice(headers);
        self.send(method, uri, &h, body).await
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        d
    }

    /// Pushes config + one layer and returns (manifest bytes, manifest digest).
    async fn push_image(&self, repo: &str, tag: &str, seed: &str, arch: &str) -> (Vec<u8>, String) {
        let config = json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "seed": seed})
            .to_string()
            .into_bytes();
        let layer = format!("layer of {seed}").into_bytes();
        let cd = self.push_blob(repo, &config).await;
        let ld = self.push_blob(repo, &layer).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let r = self
            .req(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST)],
                manifest.clone(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let d = sha256(&manifest);
        assert_eq!(r.header("docker-content-digest"), d);
        (manifest, d)
    }
}

// ---- auth ----

#[tokio::test]
async fn unauthenticated_requests_get_a_bearer_challenge() {
    let r = Reg::new().await;
    let resp = r.send(Method::GET, "/v2/", &[], vec![]).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.header("www-authenticate"),
        "Bearer realm=\"http://reg.test/v2/token\",service=\"slipway\""
    );
    assert_eq!(resp.code(), "UNAUTHORIZED");
    assert_eq!(
        resp.header("docker-distribution-api-version"),
        "registry/2.0"
    );

    let resp = r
        .send(Method::GET, "/v2/team/app/manifests/v1", &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(
        resp.header("www-authenticate")
            .contains("scope=\"repository:team/app:pull\""),
    );
    let ok = r.req(Method::GET, "/v2/", &[], vec![]).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let r = Reg::new().await;
    for creds in [
        basic("wrong"),
        basic("slwp1.abc.def"),
        "Bearer nonsense".into(),
    ] {
        let resp = r
            .send(Method::GET, "/v2/", &[("authorization", &creds)], vec![])
            .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{creds}");
        assert_eq!(resp.code(), "UNAUTHORIZED");
    }
    let resp = r
        .send(
            Method::GET,
            "/v2/token?service=slipway",
            &[("authorization", &basic("wrong"))],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let resp = r
        .send(Method::GET, "/v2/token?service=slipway", &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_flow_grants_only_what_the_password_allows() {
    let r = Reg::new().await;
    // A push password from the admin API.
    let admin_bearer = format!("Bearer {ADMIN}");
    let pw = r
        .send(
            Method::POST,
            "/api/v1/registry/password",
            &[
                ("authorization", &admin_bearer),
                ("content-type", "application/json"),
            ],
            br#"{"pull_only": false}"#.to_vec(),
        )
        .await
        .json();
    assert_eq!(pw["rights"], "pull,push");
    let push_pw = pw["password"].as_str().unwrap().to_owned();
    let tok = r
        .send(
            Method::GET,
            "/v2/token?service=slipway&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&account=ci",
            &[("authorization", &basic(&push_pw))],
            vec![],
        )
        .await;
    assert_eq!(tok.status, StatusCode::OK);
    let body = tok.json();
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_u64().unwrap() >= 60);
    let bearer = format!("Bearer {}", body["token"].as_str().unwrap());
    // The token pushes to team/app ...
    let data = b"blob via token".to_vec();
    let resp = r
        .send(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={}", sha256(&data)),
            &[("authorization", &bearer)],
            data.clone(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    // ... but is not good for another repository: the client is sent back for a token.
    let resp = r
        .send(
            Method::POST,
            "/v2/team/other/blobs/uploads/",
            &[("authorization", &bearer)],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(
        resp.header("www-authenticate")
            .contains("error=\"insufficient_scope\"")
    );
    // A token with no scope still logs in (what `docker login` does).
    let tok = r
        .send(
            Method::GET,
            "/v2/token?service=slipway&client_id=docker&offline_token=true",
            &[("authorization", &basic(&push_pw))],
            vec![],
        )
        .await
        .json();
    let login = r
        .send(
            Method::GET,
            "/v2/",
            &[(
                "authorization",
                &format!("Bearer {}", tok["token"].as_str().unwrap()),
            )],
            vec![],
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
}

#[tokio::test]
async fn pull_only_credentials_cannot_push() {
    let mut r = Reg::new().await;
    r.push_image("team/app", "v1", "a", "amd64").await;
    let reg = open(r.dir.path()).await;
    let (pull_pw, _) = reg.issue_password(Rights::Pull, "admin");
    // Basic with a pull-only password: pulls work, pushes are DENIED and store nothing.
    r.auth = basic(&pull_pw);
    assert_eq!(
        r.req(Method::GET, "/v2/team/app/manifests/v1", &[], vec![])
            .await
            .status,
        StatusCode::OK
    );
    let data = b"not allowed".to_vec();
    let resp = r
        .req(
            Method::POST,
            &format!("/v2/team/new/blobs/uploads/?digest={}", sha256(&data)),
            &[],
            data,
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.code(), "DENIED");
    let resp = r
        .req(Method::DELETE, "/v2/team/app/manifests/v1", &[], vec![])
        .await;
    assert_eq!(resp.code(), "DENIED");
    // Through the token endpoint: the push scope is not granted, and the push is DENIED.
    let tok = r
        .send(
            Method::GET,
            "/v2/token?service=slipway&scope=repository:team/app:pull,push",
            &[("authorization", &basic(&pull_pw))],
            vec![],
        )
        .await
        .json();
    let bearer = format!("Bearer {}", tok["token"].as_str().unwrap());
    let resp = r
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &[("authorization", &bearer)],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.code(), "DENIED");
    let resp = r
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &[("authorization", &bearer)],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    r.reopen().await;
    r.auth = basic(&admin_password(&reg));
    let cat = r.req(Method::GET, "/v2/_catalog", &[], vec![]).await.json();
    assert_eq!(cat["repositories"], json!(["team/app"]));
}

// ---- push ----

#[tokio::test]
async fn monolithic_uploads() {
    let r = Reg::new().await;
    // POST with the whole blob.
    let d = r.push_blob("team/app", b"hello blob").await;
    // POST then PUT with the whole blob.
    let data = b"second blob".to_vec();
    let resp = r
        .req(Method::POST, "/v2/team/app/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.header("range"), "0-0");
    let id = resp.header("docker-upload-uuid").to_owned();
    let loc = resp.header("location").to_owned();
    assert_eq!(loc, format!("/v2/team/app/blobs/uploads/{id}"));
    let d2 = sha256(&data);
    let resp = r
        .req(
            Method::PUT,
            &format!("{loc}?digest={d2}"),
            &[("content-type", "application/octet-stream")],
            data.clone(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    assert_eq!(resp.header("location"), format!("/v2/team/app/blobs/{d2}"));
    assert_eq!(resp.header("docker-content-digest"), d2);
    let got = r
        .req(
            Method::GET,
            &format!("/v2/team/app/blobs/{d2}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(got.body.as_ref(), data.as_slice());
    let head = r
        .req(
            Method::HEAD,
            &format!("/v2/team/app/blobs/{d}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), "10");
    assert_eq!(head.header("docker-content-digest"), d);
    assert!(head.body.is_empty());
    // The empty blob.
    let e = r.push_blob("team/app", b"").await;
    let got = r
        .req(Method::GET, &format!("/v2/team/app/blobs/{e}"), &[], vec![])
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.is_empty());
    // One copy per digest on disk.
    let again = r.push_blob("team/other", b"hello blob").await;
    assert_eq!(again, d);
    let hex = d.strip_prefix("sha256:").unwrap();
    assert!(
        r.dir
            .path()
            .join(format!("blobs/sha256/{}/{hex}", &hex[..2]))
            .exists()
    );
}

#[tokio::test]
async fn large_blobs_stream_through_chunks() {
    let r = Reg::new().await;
    // 12 MiB in three streamed PATCHes, well past any default request body limit.
    let data: Vec<u8> = (0..12u32 << 20).map(|i| (i % 253) as u8).collect();
    let loc = start(&r, "big").await;
    for chunk in data.chunks(4 << 20) {
        let resp = r.req(Method::PATCH, &loc, &[], chunk.to_vec()).await;
        assert_eq!(resp.status, StatusCode::ACCEPTED);
    }
    let d = sha256(&data);
    let resp = r
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let got = r
        .req(Method::GET, &format!("/v2/big/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(got.header("content-length"), (12u32 << 20).to_string());
    assert!(got.body.as_ref() == data.as_slice());
    // Monolithic as well.
    let mono: Vec<u8> = data.iter().rev().copied().collect();
    r.push_blob("big", &mono).await;
}

#[tokio::test]
async fn sha512_blobs() {
    let r = Reg::new().await;
    let data = b"sha512 content".to_vec();
    let d = format!("sha512:{}", hex::encode(Sha512::digest(&data)));
    let resp = r
        .req(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={d}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let got = r
        .req(Method::GET, &format!("/v2/a/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(got.body.as_ref(), data.as_slice());
}

async fn start(r: &Reg, repo: &str) -> String {
    let resp = r
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    resp.header("location").to_owned()
}

#[tokio::test]
async fn chunked_uploads_check_their_ranges() {
    let r = Reg::new().await;
    let data: Vec<u8> = (0..30u8).collect();
    let loc = start(&r, "team/app").await;
    let resp = r
        .req(
            Method::PATCH,
            &loc,
            &[
                ("content-range", "0-9"),
                ("content-type", "application/octet-stream"),
            ],
            data[..10].to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.header("range"), "0-9");
    let loc = resp.header("location").to_owned();
    // Out of order: starts past the end, or overlaps.
    for range in ["15-24", "5-14"] {
        let resp = r
            .req(
                Method::PATCH,
                &loc,
                &[("content-range", range)],
                data[..10].to_vec(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(resp.header("range"), "0-9");
    }
    // A chunk longer than its range.
    let resp = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "10-14")],
            data[10..20].to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let resp = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "10-19")],
            data[10..20].to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.header("range"), "0-19");
    let status = r.req(Method::GET, &loc, &[], vec![]).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-19");
    // The final PUT carries the last chunk.
    let d = sha256(&data);
    let resp = r
        .req(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-range", "20-29")],
            data[20..].to_vec(),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    let got = r
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(got.body.as_ref(), data.as_slice());
    // The session is over.
    let gone = r.req(Method::GET, &loc, &[], vec![]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn a_failed_chunk_appends_nothing() {
    let r = Reg::new().await;
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let loc = start(&r, "team/app").await;
    let ok = r
        .req(Method::PATCH, &loc, &[], data[..1 << 20].to_vec())
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    // Shorter than its Content-Range.
    let resp = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", &format!("{}-{}", 1 << 20, (3 << 20) - 1))],
            data[1 << 20..2 << 20].to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // A body that breaks off after more than one write block.
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&data[1 << 20..(2 << 20) + 5])),
        Ok(Bytes::copy_from_slice(&data[(2 << 20) + 5..(2 << 20) + 9])),
        Err(std::io::Error::other("connection reset")),
    ];
    let auth = r.auth.clone();
    let resp = r
        .send_body(
            Method::PATCH,
            &loc,
            &[("authorization", &auth)],
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(resp.code(), "BLOB_UPLOAD_INVALID");
    let status = r.req(Method::GET, &loc, &[], vec![]).await;
    assert_eq!(status.header("range"), format!("0-{}", (1 << 20) - 1));
    let id = loc.rsplit('/').next().unwrap();
    let on_disk = std::fs::metadata(r.dir.path().join("uploads").join(id)).unwrap();
    assert_eq!(
        on_disk.len(),
        1 << 20,
        "the failed requests left bytes behind"
    );
    // The upload goes on from there.
    let resp = r
        .req(Method::PATCH, &loc, &[], data[1 << 20..].to_vec())
        .await;
    assert_eq!(resp.header("range"), format!("0-{}", (3 << 20) - 1));
    let d = sha256(&data);
    let resp = r
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let got = r
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"), &[], vec![])
        .await;
    assert!(got.body.as_ref() == data.as_slice());
}

#[tokio::test]
async fn after_a_crash_an_upload_resumes_from_what_its_file_holds() {
    let mut r = Reg::new().await;
    let data: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8).collect();
    let loc = start(&r, "team/app").await;
    let resp = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "0-99")],
            data[..100].to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    // The server died in the middle of the next PATCH: 50 more bytes reached the file.
    let id = loc.rsplit('/').next().unwrap();
    let path = r.dir.path().join("uploads").join(id);
    let mut held = std::fs::read(&path).unwrap();
    held.extend_from_slice(&data[100..150]);
    std::fs::write(&path, &held).unwrap();
    r.reopen().await;
    let status = r.req(Method::GET, &loc, &[], vec![]).await;
    assert_eq!(status.header("range"), "0-149");
    let resp = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "150-299")],
            data[150..].to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    let d = sha256(&data);
    let resp = r
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    // Damage (here: a byte changed behind the server's back) is caught by the digest check.
    let loc = start(&r, "team/app").await;
    let resp = r.req(Method::PATCH, &loc, &[], data.clone()).await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    let id = loc.rsplit('/').next().unwrap();
    let path = r.dir.path().join("uploads").join(id);
    let mut held = std::fs::read(&path).unwrap();
    held[7] ^= 0xff;
    std::fs::write(&path, &held).unwrap();
    r.reopen().await;
    let resp = r
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], vec![])
        .await;
    assert_eq!(resp.code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    let r = Reg::new().await;
    let loc = start(&r, "s").await;
    let resp = r.req(Method::PATCH, &loc, &[], b"stream-".to_vec()).await;
    assert_eq!(resp.header("range"), "0-6");
    let resp = r.req(Method::PATCH, &loc, &[], b"ed".to_vec()).await;
    assert_eq!(resp.header("range"), "0-8");
    let d = sha256(b"stream-ed");
    let resp = r
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let r = Reg::new().await;
    let loc = start(&r, "team/app").await;
    r.req(Method::PATCH, &loc, &[], b"actual".to_vec()).await;
    let claimed = sha256(b"claimed");
    let resp = r
        .req(Method::PUT, &format!("{loc}?digest={claimed}"), &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.code(), "DIGEST_INVALID");
    for d in [&claimed, &sha256(b"actual")] {
        let head = r
            .req(
                Method::HEAD,
                &format!("/v2/team/app/blobs/{d}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(head.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        r.req(Method::GET, &loc, &[], vec![]).await.code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    // Monolithic with a mismatch, and malformed digests.
    let resp = r
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={claimed}"),
            &[],
            b"other".to_vec(),
        )
        .await;
    assert_eq!(resp.code(), "DIGEST_INVALID");
    for bad in ["sha256:abc", "md5:00", "sha256:../../etc/passwd"] {
        let resp = r
            .req(
                Method::POST,
                &format!("/v2/team/app/blobs/uploads/?digest={bad}"),
                &[],
                b"x".to_vec(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(resp.code(), "DIGEST_INVALID", "{bad}");
        let resp = r
            .req(
                Method::GET,
                &format!("/v2/team/app/blobs/{bad}"),
                &[],
                vec![],
            )
            .await;
        if bad.contains('/') {
            // Not even a blob route: a path that walks out of the store is never served.
            assert_eq!(resp.status, StatusCode::NOT_FOUND, "{bad}");
        } else {
            assert_eq!(resp.code(), "DIGEST_INVALID", "{bad}");
        }
    }
    assert_eq!(
        std::fs::read_dir(r.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn uploads_resume_after_a_restart() {
    let mut r = Reg::new().await;
    let data: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
    let loc = start(&r, "team/app").await;
    let resp = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "0-99")],
            data[..100].to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    r.reopen().await;
    let status = r.req(Method::GET, &loc, &[], vec![]).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-99");
    let resp = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "100-199")],
            data[100..].to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    let d = sha256(&data);
    let resp = r
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let got = r
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(got.body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn cross_repository_mount() {
    let r = Reg::new().await;
    let d = r.push_blob("team/a", b"shared layer").await;
    let head = r
        .req(Method::HEAD, &format!("/v2/team/b/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let resp = r
        .req(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/a"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    assert_eq!(resp.header("location"), format!("/v2/team/b/blobs/{d}"));
    assert_eq!(resp.header("docker-content-digest"), d);
    let head = r
        .req(Method::HEAD, &format!("/v2/team/b/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(head.status, StatusCode::OK);
    // Anonymous mount (no `from`).
    let resp = r
        .req(
            Method::POST,
            &format!("/v2/team/c/blobs/uploads/?mount={d}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    // A missing blob falls back to an upload session.
    let missing = sha256(b"never pushed");
    let resp = r
        .req(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?mount={missing}&from=team/a"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert!(resp.header("location").contains("/blobs/uploads/"));
}

/// A token for `scopes` (space-separated), from a push password.
async fn token_for(r: &Reg, password: &str, scopes: &[&str]) -> String {
    let q: String = scopes
        .iter()
        .map(|s| {
            let enc: String = form_urlencoded::byte_serialize(s.as_bytes()).collect();
            format!("&scope={enc}")
        })
        .collect();
    let tok = r
        .send(
            Method::GET,
            &format!("/v2/token?service=slipway{q}"),
            &[("authorization", &basic(password))],
            vec![],
        )
        .await;
    assert_eq!(tok.status, StatusCode::OK);
    format!("Bearer {}", tok.json()["token"].as_str().unwrap())
}

/// A mount whose token lacks pull on the source repository is sent back for a token naming
/// both repositories (as the reference registry does), not silently given an upload; with
/// such a token the mount is done.
#[tokio::test]
async fn cross_repository_mount_challenges_for_pull_on_the_source() {
    let r = Reg::new().await;
    let d = r.push_blob("team/a", b"layer to mount").await;
    let reg = open(r.dir.path()).await;
    let (push_pw, _) = reg.issue_password(Rights::Push, "admin");
    let mount = format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/a");

    let target_only = token_for(&r, &push_pw, &["repository:team/b:pull,push"]).await;
    let resp = r
        .send(
            Method::POST,
            &mount,
            &[("authorization", &target_only)],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.code(), "UNAUTHORIZED");
    let challenge = resp.header("www-authenticate");
    assert!(
        challenge.contains("scope=\"repository:team/b:pull,push repository:team/a:pull\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.starts_with("Bearer realm=\"http://reg.test/v2/token\""));
    // Nothing was mounted or started.
    let head = r
        .req(Method::HEAD, &format!("/v2/team/b/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);

    // The token the challenge asks for (both scopes, as the client sends them back).
    let both = token_for(
        &r,
        &push_pw,
        &["repository:team/b:pull,push repository:team/a:pull"],
    )
    .await;
    let resp = r
        .send(Method::POST, &mount, &[("authorization", &both)], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    assert_eq!(resp.header("location"), format!("/v2/team/b/blobs/{d}"));
    assert_eq!(resp.header("docker-content-digest"), d);
    let head = r
        .req(Method::HEAD, &format!("/v2/team/b/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(head.status, StatusCode::OK);

    // With pull on the source, a blob the source does not have still falls back to an
    // upload session (never an error).
    let missing = sha256(b"not in team/a");
    let resp = r
        .send(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?mount={missing}&from=team/a"),
            &[("authorization", &both)],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
}

/// Pushes a config and a layer and returns an image manifest naming them (not pushed).
async fn image_manifest(r: &Reg, repo: &str, seed: &str) -> Vec<u8> {
    let config = json!({"architecture": "amd64", "os": "linux", "seed": seed})
        .to_string()
        .into_bytes();
    let layer = format!("layer of {seed}").into_bytes();
    let cd = r.push_blob(repo, &config).await;
    let ld = r.push_blob(repo, &layer).await;
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    })
    .to_string()
    .into_bytes()
}

async fn tags_of(r: &Reg, repo: &str) -> Value {
    r.req(Method::GET, &format!("/v2/{repo}/tags/list"), &[], vec![])
        .await
        .json()["tags"]
        .clone()
}

/// Distribution-spec 1.1: `PUT /v2/<name>/manifests/<digest>?tag=a&tag=b` tags the manifest
/// with each tag and answers them in `OCI-Tag`; a bad tag, too many tags or an immutable
/// tag moved refuse the whole push and change nothing.
#[tokio::test]
async fn push_by_digest_with_tag_parameters() {
    let r = Reg::new().await;
    let bearer = format!("Bearer {ADMIN}");
    let resp = r
        .send(
            Method::POST,
            "/api/v1/repositories",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            br#"{"name":"team/locked","immutable":true}"#.to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let a = image_manifest(&r, "team/locked", "a").await;
    let a_d = sha256(&a);
    let put = |query: String, body: Vec<u8>| {
        let r = &r;
        async move {
            let d = sha256(&body);
            r.req(
                Method::PUT,
                &format!("/v2/team/locked/manifests/{d}{query}"),
                &[("content-type", OCI_MANIFEST)],
                body,
            )
            .await
        }
    };

    let resp = put("?tag=1.2.3&tag=1.2&tag=latest&tag=1.2".into(), a.clone()).await;
    assert_eq!(
        resp.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.header("oci-tag"), "1.2.3, 1.2, latest");
    assert_eq!(resp.header("docker-content-digest"), a_d);
    assert_eq!(
        tags_of(&r, "team/locked").await,
        json!(["1.2", "1.2.3", "latest"])
    );
    for t in ["1.2.3", "1.2", "latest"] {
        let got = r
            .req(
                Method::GET,
                &format!("/v2/team/locked/manifests/{t}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(got.header("docker-content-digest"), a_d, "{t}");
    }
    // Without tag parameters there is no OCI-Tag header.
    let resp = put(String::new(), a.clone()).await;
    assert_eq!(resp.status, StatusCode::CREATED);
    assert!(resp.headers.get("oci-tag").is_none());

    // Another manifest: a bad tag among good ones refuses the push, nothing changes.
    let b = image_manifest(&r, "team/locked", "b").await;
    let b_d = sha256(&b);
    let resp = put("?tag=new&tag=-bad".into(), b.clone()).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.code(), "TAG_INVALID");
    // Too many tags: 414, nothing changes.
    let many: String = (0..=100).map(|i| format!("&tag=t{i}")).collect();
    let resp = put(format!("?{}", &many[1..]), b.clone()).await;
    assert_eq!(resp.status, StatusCode::URI_TOO_LONG);
    assert_eq!(resp.code(), "TAG_INVALID");
    // Moving an immutable tag among new ones: refused, nothing changes.
    let resp = put("?tag=new&tag=latest".into(), b.clone()).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.code(), "TAG_INVALID");
    assert!(
        resp.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(
        tags_of(&r, "team/locked").await,
        json!(["1.2", "1.2.3", "latest"])
    );
    let got = r
        .req(
            Method::HEAD,
            &format!("/v2/team/locked/manifests/{b_d}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    // New tags only: accepted.
    let resp = put("?tag=b1&tag=b2".into(), b.clone()).await;
    assert_eq!(resp.status, StatusCode::CREATED);
    assert_eq!(resp.header("oci-tag"), "b1, b2");
    assert_eq!(
        tags_of(&r, "team/locked").await,
        json!(["1.2", "1.2.3", "b1", "b2", "latest"])
    );
}

// ---- pull ----

#[tokio::test]
async fn blob_range_requests() {
    let r = Reg::new().await;
    let data: Vec<u8> = (0..100u8).collect();
    let d = r.push_blob("a", &data).await;
    let uri = format!("/v2/a/blobs/{d}");
    let resp = r
        .req(Method::GET, &uri, &[("range", "bytes=10-19")], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.header("content-range"), "bytes 10-19/100");
    assert_eq!(resp.body.as_ref(), &data[10..20]);
    let resp = r
        .req(Method::GET, &uri, &[("range", "bytes=90-")], vec![])
        .await;
    assert_eq!(resp.body.as_ref(), &data[90..]);
    let resp = r
        .req(Method::GET, &uri, &[("range", "bytes=-5")], vec![])
        .await;
    assert_eq!(resp.body.as_ref(), &data[95..]);
    let resp = r
        .req(Method::GET, &uri, &[("range", "bytes=95-500")], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.body.as_ref(), &data[95..]);
    for bad in ["bytes=50-0", "bytes=100-200", "bytes=x-"] {
        let resp = r.req(Method::GET, &uri, &[("range", bad)], vec![]).await;
        assert_eq!(resp.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(resp.header("content-range"), "bytes */100");
    }
}

#[tokio::test]
async fn blobs_larger_than_a_read_are_served_whole_and_by_range() {
    let r = Reg::new().await;
    // Not a multiple of the 256 KiB read size.
    let data: Vec<u8> = (0..(1u32 << 20) + 12_345)
        .map(|i| (i % 247) as u8)
        .collect();
    let d = r.push_blob("a", &data).await;
    let uri = format!("/v2/a/blobs/{d}");
    let resp = r.req(Method::GET, &uri, &[], vec![]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.body.as_ref() == data.as_slice());
    let (a, b) = (200_000usize, 900_000usize);
    let resp = r
        .req(
            Method::GET,
            &uri,
            &[("range", &format!("bytes={a}-{b}"))],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.header("content-range"),
        format!("bytes {a}-{b}/{}", data.len())
    );
    assert!(resp.body.as_ref() == &data[a..=b]);
    let head = r.req(Method::HEAD, &uri, &[], vec![]).await;
    assert_eq!(head.header("content-length"), data.len().to_string());
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn manifests_are_served_byte_for_byte() {
    let r = Reg::new().await;
    let (bytes, d) = r.push_image("team/app", "v1", "one", "amd64").await;
    let got = r
        .req(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body.as_ref(), bytes.as_slice());
    assert_eq!(got.header("content-type"), OCI_MANIFEST);
    assert_eq!(got.header("docker-content-digest"), d);
    let head = r
        .req(
            Method::HEAD,
            &format!("/v2/team/app/manifests/{d}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), bytes.len().to_string());
    assert_eq!(head.header("docker-content-digest"), d);
    assert!(head.body.is_empty());
    // A Docker schema 2 manifest with odd whitespace keeps its bytes and type.
    let cfg = r
        .push_blob("team/app", br#"{"architecture":"arm64","os":"linux"}"#)
        .await;
    let docker = format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {{\"mediaType\": \"application/vnd.docker.container.image.v1+json\", \"size\": 38, \"digest\": \"{cfg}\"}},\n   \"layers\": []\n}}"
    )
    .into_bytes();
    let resp = r
        .req(
            Method::PUT,
            "/v2/team/app/manifests/docker",
            &[("content-type", DOCKER_MANIFEST)],
            docker.clone(),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    let got = r
        .req(Method::GET, "/v2/team/app/manifests/docker", &[], vec![])
        .await;
    assert_eq!(got.body.as_ref(), docker.as_slice());
    assert_eq!(got.header("content-type"), DOCKER_MANIFEST);
    // Unknown manifests and repositories.
    let resp = r
        .req(Method::GET, "/v2/team/app/manifests/nope", &[], vec![])
        .await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let resp = r
        .req(Method::GET, "/v2/team/none/manifests/v1", &[], vec![])
        .await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
    let resp = r
        .req(
            Method::GET,
            &format!("/v2/team/app/blobs/{}", sha256(b"none")),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
}

#[tokio::test]
async fn bad_manifests_are_rejected_and_store_nothing() {
    let r = Reg::new().await;
    let (good, _) = r.push_image("team/app", "v1", "x", "amd64").await;
    let missing = sha256(b"missing layer");
    let mut doc: Value = serde_json::from_slice(&good).unwrap();
    doc["layers"][0]["digest"] = json!(missing);
    let bad = doc.to_string().into_bytes();
    let resp = r
        .req(
            Method::PUT,
            "/v2/team/app/manifests/v2",
            &[("content-type", OCI_MANIFEST)],
            bad,
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.code(), "MANIFEST_BLOB_UNKNOWN");
    // By digest: the body must hash to it.
    let wrong = sha256(b"something else");
    let resp = r
        .req(
            Method::PUT,
            &format!("/v2/team/app/manifests/{wrong}"),
            &[("content-type", OCI_MANIFEST)],
            good.clone(),
        )
        .await;
    assert_eq!(resp.code(), "DIGEST_INVALID");
    // Oversized (the test registry allows 64 KiB).
    let mut big: Value = serde_json::from_slice(&good).unwrap();
    big["annotations"] = json!({ "pad": "x".repeat(70 * 1024) });
    let resp = r
        .req(
            Method::PUT,
            "/v2/team/app/manifests/big",
            &[("content-type", OCI_MANIFEST)],
            big.to_string().into_bytes(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.code(), "MANIFEST_INVALID");
    // Not JSON, wrong schema, type mismatch, unsupported type.
    for (ct, body) in [
        (OCI_MANIFEST, b"not json".to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion": 1}"#.to_vec()),
        (DOCKER_MANIFEST, good.clone()),
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            br#"{"schemaVersion": 2}"#.to_vec(),
        ),
    ] {
        let resp = r
            .req(
                Method::PUT,
                "/v2/team/app/manifests/bad",
                &[("content-type", ct)],
                body,
            )
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{ct}");
        assert_eq!(resp.code(), "MANIFEST_INVALID", "{ct}");
    }
    // An index whose child is unknown.
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]});
    let resp = r
        .req(
            Method::PUT,
            "/v2/team/app/manifests/idx",
            &[("content-type", OCI_INDEX)],
            index.to_string().into_bytes(),
        )
        .await;
    assert_eq!(resp.code(), "MANIFEST_BLOB_UNKNOWN");
    let tags = r
        .req(Method::GET, "/v2/team/app/tags/list", &[], vec![])
        .await
        .json();
    assert_eq!(tags["tags"], json!(["v1"]));
}

#[tokio::test]
async fn names_and_tags_are_validated() {
    let r = Reg::new().await;
    for path in [
        "/v2/Team/app/manifests/v1",
        "/v2/team/../etc/manifests/v1",
        "/v2/../x/blobs/uploads/",
        "/v2/a//b/tags/list",
        "/v2/a%2Fb/tags/list",
    ] {
        let method = if path.ends_with("uploads/") {
            Method::POST
        } else {
            Method::GET
        };
        let resp = r.req(method, path, &[], vec![]).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(resp.code(), "NAME_INVALID", "{path}");
    }
    let resp = r
        .req(
            Method::PUT,
            "/v2/a/manifests/-bad",
            &[("content-type", OCI_MANIFEST)],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(resp.code(), "TAG_INVALID");
    let cat = r.req(Method::GET, "/v2/_catalog", &[], vec![]).await.json();
    assert_eq!(cat["repositories"], json!([]));
}

// ---- content discovery ----

#[tokio::test]
async fn tags_and_catalog_paginate() {
    let r = Reg::new().await;
    let (bytes, _) = r.push_image("team/app", "v1", "p", "amd64").await;
    for t in ["b", "a", "c", "v2"] {
        let resp = r
            .req(
                Method::PUT,
                &format!("/v2/team/app/manifests/{t}"),
                &[("content-type", OCI_MANIFEST)],
                bytes.clone(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED);
    }
    let all = r
        .req(Method::GET, "/v2/team/app/tags/list", &[], vec![])
        .await;
    assert_eq!(
        all.json(),
        json!({"name": "team/app", "tags": ["a", "b", "c", "v1", "v2"]})
    );
    assert!(all.headers.get("link").is_none());
    let p1 = r
        .req(Method::GET, "/v2/team/app/tags/list?n=2", &[], vec![])
        .await;
    assert_eq!(p1.json()["tags"], json!(["a", "b"]));
    let link = p1.header("link").to_owned();
    assert_eq!(link, "</v2/team/app/tags/list?n=2&last=b>; rel=\"next\"");
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let p2 = r.req(Method::GET, next, &[], vec![]).await;
    assert_eq!(p2.json()["tags"], json!(["c", "v1"]));
    let p3 = r
        .req(
            Method::GET,
            "/v2/team/app/tags/list?n=2&last=v1",
            &[],
            vec![],
        )
        .await;
    assert_eq!(p3.json()["tags"], json!(["v2"]));
    assert!(p3.headers.get("link").is_none());
    let unknown = r.req(Method::GET, "/v2/nope/tags/list", &[], vec![]).await;
    assert_eq!(unknown.code(), "NAME_UNKNOWN");

    r.push_blob("a/one", b"1").await;
    r.push_blob("z/two", b"2").await;
    let c = r.req(Method::GET, "/v2/_catalog?n=2", &[], vec![]).await;
    assert_eq!(c.json()["repositories"], json!(["a/one", "team/app"]));
    assert_eq!(
        c.header("link"),
        "</v2/_catalog?n=2&last=team%2Fapp>; rel=\"next\""
    );
    let c2 = r
        .req(Method::GET, "/v2/_catalog?n=2&last=team%2Fapp", &[], vec![])
        .await;
    assert_eq!(c2.json()["repositories"], json!(["z/two"]));
}

#[tokio::test]
async fn referrers_list_manifests_by_subject() {
    let r = Reg::new().await;
    let (img, img_d) = r.push_image("team/app", "v1", "s", "amd64").await;
    let empty = r.push_blob("team/app", b"{}").await;
    let sbom = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": img_d, "size": img.len()},
        "annotations": {"org.example": "sbom"},
    })
    .to_string()
    .into_bytes();
    let sd = sha256(&sbom);
    let resp = r
        .req(
            Method::PUT,
            &format!("/v2/team/app/manifests/{sd}"),
            &[("content-type", OCI_MANIFEST)],
            sbom.clone(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    assert_eq!(resp.header("oci-subject"), img_d);
    let list = r
        .req(
            Method::GET,
            &format!("/v2/team/app/referrers/{img_d}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.header("content-type"), OCI_INDEX);
    let body = list.json();
    assert_eq!(body["mediaType"], OCI_INDEX);
    assert_eq!(
        body["manifests"],
        json!([{"mediaType": OCI_MANIFEST, "digest": sd, "size": sbom.len(), "artifactType": "application/spdx+json", "annotations": {"org.example": "sbom"}}])
    );
    let filtered = r
        .req(
            Method::GET,
            &format!("/v2/team/app/referrers/{img_d}?artifactType=application/other"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(filtered.header("oci-filters-applied"), "artifactType");
    assert_eq!(filtered.json()["manifests"], json!([]));
    let kept = r
        .req(
            Method::GET,
            &format!("/v2/team/app/referrers/{img_d}?artifactType=application%2Fspdx%2Bjson"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(kept.json()["manifests"].as_array().unwrap().len(), 1);
    let none = r
        .req(
            Method::GET,
            &format!("/v2/team/app/referrers/{}", sha256(b"x")),
            &[],
            vec![],
        )
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json()["manifests"], json!([]));
    // A subject that was never pushed is accepted.
    let orphan = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(b"absent"), "size": 1},
    });
    let resp = r
        .req(
            Method::PUT,
            "/v2/team/app/manifests/orphan",
            &[("content-type", OCI_MANIFEST)],
            orphan.to_string().into_bytes(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
}

// ---- content management ----

#[tokio::test]
async fn deletes() {
    let r = Reg::new().await;
    let (bytes, d) = r.push_image("team/app", "v1", "d", "amd64").await;
    r.req(
        Method::PUT,
        "/v2/team/app/manifests/v2",
        &[("content-type", OCI_MANIFEST)],
        bytes,
    )
    .await;
    // Delete a tag: the manifest stays.
    let resp = r
        .req(Method::DELETE, "/v2/team/app/manifests/v2", &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.req(Method::GET, "/v2/team/app/manifests/v2", &[], vec![])
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        r.req(
            Method::GET,
            &format!("/v2/team/app/manifests/{d}"),
            &[],
            vec![]
        )
        .await
        .status,
        StatusCode::OK
    );
    // Delete the manifest: its tags go too.
    let resp = r
        .req(
            Method::DELETE,
            &format!("/v2/team/app/manifests/{d}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    for reference in ["v1", d.as_str()] {
        let resp = r
            .req(
                Method::GET,
                &format!("/v2/team/app/manifests/{reference}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(resp.code(), "MANIFEST_UNKNOWN");
    }
    let resp = r
        .req(
            Method::DELETE,
            &format!("/v2/team/app/manifests/{d}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    // Delete a blob.
    let b = r.push_blob("team/app", b"delete me").await;
    let resp = r
        .req(
            Method::DELETE,
            &format!("/v2/team/app/blobs/{b}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    let head = r
        .req(
            Method::HEAD,
            &format!("/v2/team/app/blobs/{b}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    // Cancel an upload.
    let loc = start(&r, "team/app").await;
    assert_eq!(
        r.req(Method::DELETE, &loc, &[], vec![]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        r.req(Method::GET, &loc, &[], vec![]).await.code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    let tags = r
        .req(Method::GET, "/v2/team/app/tags/list", &[], vec![])
        .await
        .json();
    assert_eq!(tags["tags"], json!([]));
}

#[tokio::test]
async fn indexes_and_immutable_repositories() {
    let r = Reg::new().await;
    let bearer = format!("Bearer {ADMIN}");
    let auth = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let resp = r
        .send(
            Method::POST,
            "/api/v1/repositories",
            &auth,
            br#"{"name":"team/locked","immutable":true}"#.to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let resp = r
        .send(
            Method::POST,
            "/api/v1/repositories",
            &auth,
            br#"{"name":"team/locked"}"#.to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT);
    let resp = r
        .send(
            Method::POST,
            "/api/v1/repositories",
            &auth,
            br#"{"name":"Bad/Name"}"#.to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);

    let (amd, amd_d) = r.push_image("team/locked", "v1-amd64", "i1", "amd64").await;
    let (arm, arm_d) = r.push_image("team/locked", "v1-arm64", "i2", "arm64").await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd_d, "size": amd.len(), "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": arm_d, "size": arm.len(), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]})
    .to_string()
    .into_bytes();
    let put = |tag: &'static str, body: Vec<u8>, ct: &'static str| {
        let r = &r;
        async move {
            r.req(
                Method::PUT,
                &format!("/v2/team/locked/manifests/{tag}"),
                &[("content-type", ct)],
                body,
            )
            .await
        }
    };
    assert_eq!(
        put("v1", index.clone(), OCI_INDEX).await.status,
        StatusCode::CREATED
    );
    // Same digest again: fine. Another digest under the same tag: refused.
    assert_eq!(
        put("v1", index.clone(), OCI_INDEX).await.status,
        StatusCode::CREATED
    );
    let resp = put("v1", amd.clone(), OCI_MANIFEST).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.code(), "TAG_INVALID");
    assert!(
        resp.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("immutable")
    );
    let got = r
        .req(Method::GET, "/v2/team/locked/manifests/v1", &[], vec![])
        .await;
    assert_eq!(got.body.as_ref(), index.as_slice());
    assert_eq!(got.header("content-type"), OCI_INDEX);

    // The images listing: the index with both platforms, the tagged children too.
    let images = r
        .send(
            Method::GET,
            "/api/v1/repositories/team/locked/images",
            &auth,
            vec![],
        )
        .await
        .json();
    let images = images.as_array().unwrap();
    assert_eq!(images.len(), 3);
    let idx = images.iter().find(|i| i["tags"] == json!(["v1"])).unwrap();
    assert_eq!(idx["platforms"], json!(["linux/amd64", "linux/arm64/v8"]));
    let amd_img = images.iter().find(|i| i["digest"] == json!(amd_d)).unwrap();
    assert_eq!(amd_img["platforms"], json!(["linux/amd64"]));
    assert!(amd_img["size"].as_i64().unwrap() > amd.len() as i64);

    // Switch to mutable: now the tag moves.
    let resp = r
        .send(
            Method::PATCH,
            "/api/v1/repositories/team/locked",
            &auth,
            br#"{"immutable":false}"#.to_vec(),
        )
        .await;
    assert_eq!(resp.json()["immutable"], false);
    assert_eq!(
        put("v1", amd.clone(), OCI_MANIFEST).await.status,
        StatusCode::CREATED
    );

    // Deleting a non-empty repository needs force.
    let resp = r
        .send(
            Method::DELETE,
            "/api/v1/repositories/team/locked",
            &auth,
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT);
    let resp = r
        .send(
            Method::DELETE,
            "/api/v1/repositories/team/locked?force=true",
            &auth,
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let list = r
        .send(Method::GET, "/api/v1/repositories", &auth, vec![])
        .await
        .json();
    assert_eq!(list, json!([]));
    let resp = r
        .req(Method::GET, "/v2/team/locked/manifests/v1", &[], vec![])
        .await;
    assert_eq!(resp.code(), "NAME_UNKNOWN");
    // The admin API needs the admin token.
    let resp = r
        .send(
            Method::GET,
            "/api/v1/repositories",
            &[("authorization", "Bearer nope")],
            vec![],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let resp = r
        .send(Method::POST, "/api/v1/registry/password", &[], vec![])
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}
