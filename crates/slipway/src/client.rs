//! The API client used by every verb except `server`, and where it finds the server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use slipway_api::types::ErrorBody;
use slipway_core::model::ServiceKey;

/// Where `slipway login` keeps the server and token (mode 0600).
pub fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("slipway").join("config.json"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientConfig {
    pub server: String,
    pub token: String,
}

impl ClientConfig {
    /// `SLIPWAY_SERVER` + `SLIPWAY_TOKEN`, else the file written by `slipway login`.
    pub fn load() -> Result<Self> {
        let env_server = std::env::var("SLIPWAY_SERVER")
            .ok()
            .filter(|s| !s.is_empty());
        let env_token = std::env::var("SLIPWAY_TOKEN").ok();
        // Set but empty is a mistake (`SLIPWAY_TOKEN=$(cat a-missing-file)`), not "no token".
        if env_token.as_ref().is_some_and(|t| t.trim().is_empty()) {
            bail!(
                "SLIPWAY_TOKEN is set but empty: set it to the token (e.g. SLIPWAY_TOKEN=$(cat DATA_DIR/admin.token)), or unset it to use the server `slipway login` remembered"
            );
        }
        if let (Some(server), Some(token)) = (&env_server, &env_token) {
            return Ok(Self {
                server: server.trim_end_matches('/').to_owned(),
                token: token.trim().to_owned(),
            });
        }
        let path = config_path()
            .ok_or_else(|| anyhow!("cannot locate the config directory (HOME is not set)"))?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) => bail!(
                "no server configured: set SLIPWAY_SERVER and SLIPWAY_TOKEN, or run `slipway login --server URL --token-file DATA_DIR/admin.token`"
            ),
        };
        let mut cfg: ClientConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid slipway config", path.display()))?;
        if let Some(s) = env_server {
            cfg.server = s;
        }
        if let Some(t) = env_token {
            cfg.token = t;
        }
        cfg.server = cfg.server.trim_end_matches('/').to_owned();
        Ok(cfg)
    }
}

#[derive(Clone)]
pub struct Client {
    cfg: ClientConfig,
    http: reqwest::Client,
}

/// Path segment of a service in the API.
pub fn service_path(key: &ServiceKey) -> String {
    format!("/services/{}/{}/{}", key.app, key.env, key.name)
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { cfg, http })
    }

    pub fn from_env() -> Result<Self> {
        Self::new(ClientConfig::load()?)
    }

    /// The server's base URL (`http://host:port`), where the built-in registry answers too.
    pub fn server(&self) -> &str {
        &self.cfg.server
    }

    /// The HTTP client, for requests outside `/api/v1` (the registry's `/v2/`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.cfg.server)
    }

    /// Sends an authenticated request; a connection failure becomes one line naming the
    /// server.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        req.bearer_auth(&self.cfg.token).send().await.map_err(|e| {
            anyhow!(
                "cannot reach the Slipway server at {}: {e}; is `slipway server` running?",
                self.cfg.server
            )
        })
    }

    /// The error of a failed answer: the API's message, else its body, with the status.
    async fn failure(resp: reqwest::Response) -> anyhow::Error {
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        let msg = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
        anyhow!("{msg} (HTTP {})", status.as_u16())
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = self.call(req).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Self::failure(resp).await);
        }
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("unexpected answer from the server ({status})"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.get(self.url(path))).await
    }

    /// GET that maps 404 to `None`.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let resp = self.call(self.http.get(self.url(path))).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        Ok(Some(serde_json::from_slice(&resp.bytes().await?)?))
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// POST that changes a record only if it is still at `expect` (`If-Match`), when given.
    pub async fn post_if<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        expect: Option<u64>,
    ) -> Result<T> {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(v) = expect {
            req = req.header(reqwest::header::IF_MATCH, format!("\"{v}\""));
        }
        self.send(req).await
    }

    /// PUT with a raw JSON text body (a lifecycle policy, sent as written).
    pub async fn put_text<T: DeserializeOwned>(&self, path: &str, body: String) -> Result<T> {
        self.send(
            self.http
                .put(self.url(path))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    /// POST without a body.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.post(self.url(path))).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.delete_if(path, None).await
    }

    /// DELETE of a record only if it is still at `expect` (`If-Match`), when given.
    pub async fn delete_if<T: DeserializeOwned>(
        &self,
        path: &str,
        expect: Option<u64>,
    ) -> Result<T> {
        let mut req = self.http.delete(self.url(path));
        if let Some(v) = expect {
            req = req.header(reqwest::header::IF_MATCH, format!("\"{v}\""));
        }
        self.send(req).await
    }

    /// A streaming GET (logs).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response> {
        let resp = self.call(self.http.get(self.url(path))).await?;
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        Ok(resp)
    }
}
