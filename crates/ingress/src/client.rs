//! The controller's side of the control API: a small HTTP/1.1 client over the Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{DrainRequest, DrainResponse};
use crate::table::RoutingConfig;
use crate::versions::VersionReport;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("ingress control socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ingress control call failed: {0}")]
    Http(String),
    #[error("ingress refused the request ({status}): {body}")]
    Refused { status: StatusCode, body: String },
}

/// Talks to one ingress through its control socket.
#[derive(Debug, Clone)]
pub struct IngressClient {
    socket: PathBuf,
}

impl IngressClient {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            socket: crate::socket_path(data_dir),
        }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Option<T>, ClientError> {
        let fut = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let bytes = match body {
                Some(b) => Bytes::from(
                    serde_json::to_vec(b).map_err(|e| ClientError::Http(e.to_string()))?,
                ),
                None => Bytes::new(),
            };
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "ingress")
                .header("content-type", "application/json")
                .body(Full::new(bytes))
                .map_err(|e| ClientError::Http(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(ClientError::Refused {
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            if body.is_empty() {
                return Ok(None);
            }
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| ClientError::Http(e.to_string()))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ClientError::Http("timed out".into()))?
    }

    /// True when the ingress answers on its control socket.
    pub async fn ping(&self) -> bool {
        let r: Result<Option<serde_json::Value>, _> = self
            .call::<(), _>(Method::GET, "/config", None, Duration::from_secs(1))
            .await;
        r.is_ok()
    }

    /// Replaces the routing configuration.
    pub async fn push(&self, cfg: &RoutingConfig) -> Result<(), ClientError> {
        let _: Option<serde_json::Value> = self
            .call(Method::PUT, "/config", Some(cfg), Duration::from_secs(5))
            .await?;
        Ok(())
    }

    pub async fn config(&self) -> Result<RoutingConfig, ClientError> {
        Ok(self
            .call::<(), _>(Method::GET, "/config", None, Duration::from_secs(5))
            .await?
            .unwrap_or_default())
    }

    /// Waits until `target` has no request in flight (it must already be draining), or
    /// `timeout` passes.
    pub async fn drain(
        &self,
        target: &str,
        timeout: Duration,
    ) -> Result<DrainResponse, ClientError> {
        let req = DrainRequest {
            target: target.to_owned(),
            timeout_ms: timeout.as_millis() as u64,
        };
        self.call(
            Method::POST,
            "/drain",
            Some(&req),
            timeout + Duration::from_secs(5),
        )
        .await?
        .ok_or_else(|| ClientError::Http("empty drain answer".into()))
    }

    /// The measurements of every version of every service (counters since the ingress
    /// started; subtract two snapshots for an interval).
    pub async fn versions(&self) -> Result<Vec<VersionReport>, ClientError> {
        Ok(self
            .call::<(), _>(Method::GET, "/versions", None, Duration::from_secs(5))
            .await?
            .unwrap_or_default())
    }

    pub async fn metrics(&self) -> Result<String, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .uri("/metrics")
            .header("host", "ingress")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
