//! `slipway agent`: the host's side. It joins the cluster once (a join token buys a host id
//! and a key, kept in its data directory), then connects out to the server and keeps the
//! connection: it answers the leader's calls against the local engine, runs health probes
//! from the host, and reports container events. While the server is unreachable it keeps
//! every task running and starts again the containers of its tasks that exit; on reconnect
//! the leader looks at everything again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use slipway_runtime::{DockerRuntime, PullCredentials};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::proto::{Hello, Launch, Op, RegistryAuth, ToAgent, ToServer, UPGRADE};

/// Header naming the cluster an agent belongs to (a server of another cluster refuses it).
pub const CLUSTER_HEADER: &str = "x-slipway-cluster";

/// Errors that end the agent (anything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Refused(String),
    #[error("agent state file {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] slipway_runtime::RuntimeError),
}

/// How to run the agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The servers' URLs (`http://HOST:PORT`): any server of the cluster will do (one that
    /// does not lead names the leader); the agent tries them in turn.
    pub servers: Vec<String>,
    /// Where the host's identity is kept (`agent.json`, mode 0600).
    pub data_dir: PathBuf,
    /// Needed once, to join.
    pub join_token: Option<String>,
    pub name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// The address the ingress reaches this host's tasks at (default: the address this
    /// host reaches the server from).
    pub address: Option<String>,
    /// CPU units (1024 a core) this host offers to tasks; default: all of the engine's.
    pub cpu: Option<u64>,
    /// Memory (MiB) this host offers to tasks; default: all of the engine's. Less keeps
    /// room for the engine and other work on the host (ECS' reserved memory).
    pub memory: Option<u64>,
}

/// What a host keeps of its join.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub host: String,
    pub key: String,
    pub cluster: String,
}

/// `POST /api/v1/agent/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    pub engine: String,
    pub name: String,
}

/// Credentials for the registries the server named in its calls.
#[derive(Default)]
struct Passed(Mutex<HashMap<String, (String, String)>>);

impl Passed {
    fn learn(&self, auth: &[RegistryAuth]) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for a in auth {
            m.insert(
                a.registry.to_ascii_lowercase(),
                (a.username.clone(), a.password.clone()),
            );
        }
    }
}

impl PullCredentials for Passed {
    fn credentials_for(&self, registry: &str) -> Option<(String, String)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&registry.to_ascii_lowercase())
            .cloned()
    }
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("agent.json")
}

fn load_identity(dir: &Path) -> Result<Option<Identity>, AgentError> {
    let path = state_path(dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| AgentError::State {
                path: path.display().to_string(),
                source: std::io::Error::other(e),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AgentError::State {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn save_identity(dir: &Path, id: &Identity) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_path(dir);
    let err = |source| AgentError::State {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&serde_json::to_vec(id).unwrap_or_default())
        .map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

/// The agent: joins if it has to, then serves until `shutdown`.
pub async fn run(opts: AgentOptions, shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
    let passed = Arc::new(Passed::default());
    let rt = DockerRuntime::connect()
        .await?
        .with_credentials(passed.clone());
    let engine = rt.engine_info().await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| AgentError::Refused(format!("cannot build an HTTP client: {e}")))?;
    let servers: Vec<String> = opts
        .servers
        .iter()
        .map(|s| s.trim_end_matches('/').to_owned())
        .collect();
    let Some(server) = servers.first().cloned() else {
        return Err(AgentError::Refused(
            "no server to connect to: pass --server URL".into(),
        ));
    };
    let identity = match load_identity(&opts.data_dir)? {
        Some(id) => id,
        None => {
            let Some(token) = opts.join_token.clone() else {
                return Err(AgentError::Refused(format!(
                    "this host has not joined a cluster ({} is missing): pass --join-token (from `slipway host join-token` on the server)",
                    state_path(&opts.data_dir).display()
                )));
            };
            let id = join_any(&http, &servers, &token, &engine, opts.name.as_deref()).await?;
            save_identity(&opts.data_dir, &id)?;
            tracing::info!(host = %id.host, cluster = %id.cluster, "joined the cluster");
            id
        }
    };
    let address = match &opts.address {
        Some(a) => a.clone(),
        None => local_address_towards(&server).unwrap_or_else(|| "127.0.0.1".into()),
    };
    let hello = Hello {
        host: identity.host.clone(),
        engine: engine.id.clone(),
        name: opts.name.clone().unwrap_or_else(|| engine.name.clone()),
        cpu: opts
            .cpu
            .unwrap_or(engine.cpus * 1024)
            .min(engine.cpus * 1024),
        memory: opts
            .memory
            .unwrap_or(engine.memory / (1024 * 1024))
            .min(engine.memory / (1024 * 1024)),
        platform: engine.platform.clone(),
        attributes: opts.attributes.clone(),
        address,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let agent = Agent {
        rt,
        passed,
        hello,
        identity,
        http,
        probe: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| AgentError::Refused(format!("cannot build an HTTP client: {e}")))?,
        stopping: Arc::default(),
        discovery: Arc::default(),
        maps: watch::Sender::new(None),
    };
    tokio::spawn(keep_discovery(
        agent.rt.clone(),
        agent.discovery.clone(),
        agent.maps.subscribe(),
    ));
    agent.serve(&servers, shutdown).await
}

/// Applies the server's service maps one after the other (the newest when several came
/// meanwhile), starting this host's discovery with the first.
async fn keep_discovery(
    rt: DockerRuntime,
    cell: Arc<crate::hosts::DiscoveryCell>,
    mut maps: watch::Receiver<Option<crate::discovery::ServiceMap>>,
) {
    while maps.changed().await.is_ok() {
        let Some(map) = maps.borrow_and_update().clone() else {
            continue;
        };
        // Containers of this host must not reach other hosts' published tasks.
        let _ = slipway_runtime::isolation::sync_remote(&map.cluster, &map.published).await;
        let rt = rt.clone();
        if let Some(d) = cell
            .get_or_init(|| crate::discovery::Discovery::start(rt))
            .await
        {
            d.apply(map).await;
        }
    }
}

/// Joins through the first of `servers` that answers (a refusal is final).
async fn join_any(
    http: &reqwest::Client,
    servers: &[String],
    token: &str,
    engine: &slipway_runtime::EngineInfo,
    name: Option<&str>,
) -> Result<Identity, AgentError> {
    let mut unreachable = Vec::new();
    for server in servers {
        match join(http, server, token, engine, name).await {
            Ok(id) => return Ok(id),
            Err(Failure::Refused(msg)) => return Err(AgentError::Refused(msg)),
            Err(Failure::Retry(msg)) => unreachable.push(msg),
        }
    }
    Err(AgentError::Refused(unreachable.join("; ")))
}

async fn join(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    engine: &slipway_runtime::EngineInfo,
    name: Option<&str>,
) -> Result<Identity, Failure> {
    let req = JoinRequest {
        token: token.trim().to_owned(),
        engine: engine.id.clone(),
        name: name.unwrap_or(&engine.name).to_owned(),
    };
    let resp = http
        .post(format!("{server}/api/v1/agent/join"))
        .json(&req)
        .send()
        .await
        .map_err(|e| Failure::Retry(format!("cannot reach the server at {server}: {e}")))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(Failure::Refused(format!(
            "the server refused to join this host: {msg} (HTTP {})",
            status.as_u16()
        )));
    }
    serde_json::from_str(&body)
        .map_err(|e| Failure::Refused(format!("unexpected answer to the join: {e}")))
}

/// The local address a connection to the server leaves from.
fn local_address_towards(server: &str) -> Option<String> {
    let url = url::Url::parse(server).ok()?;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect((host, port)).ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}

struct Agent {
    rt: DockerRuntime,
    passed: Arc<Passed>,
    hello: Hello,
    identity: Identity,
    http: reqwest::Client,
    probe: reqwest::Client,
    /// Containers the server asked to stop (they are not started again).
    stopping: Arc<Mutex<HashSet<String>>>,
    /// Service names across hosts: started with the server's first map (`Some(None)`: this
    /// host cannot run it).
    discovery: Arc<crate::hosts::DiscoveryCell>,
    /// The newest service map from the server.
    maps: watch::Sender<Option<crate::discovery::ServiceMap>>,
}

impl Agent {
    async fn serve(
        self,
        servers: &[String],
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        // The server tried next; each failure moves to the next one.
        let mut turn = 0usize;
        let server = |turn: usize| servers[turn % servers.len()].clone();
        let me = Arc::new(self);
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(me.clone().supervise(connected.clone(), shutdown.clone()));
        let mut backoff = Duration::from_millis(200);
        let mut url = server(turn);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match me.connect(&url).await {
                Ok(Connected::Upgraded(io)) => {
                    backoff = Duration::from_millis(200);
                    connected.store(true, std::sync::atomic::Ordering::SeqCst);
                    tracing::info!(server = %url, host = %me.identity.host, "connected");
                    tokio::select! {
                        r = me.clone().session(io) => {
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "connection to the server ended");
                            }
                        }
                        _ = shutdown.changed() => {}
                    }
                    connected.store(false, std::sync::atomic::Ordering::SeqCst);
                    url = server(turn);
                    continue;
                }
                Ok(Connected::Redirect(to)) => {
                    tracing::info!(leader = %to, "the server names the leader; connecting there");
                    url = to;
                    continue;
                }
                Err(Failure::Refused(msg)) => return Err(AgentError::Refused(msg)),
                Err(Failure::Retry(msg)) => {
                    tracing::warn!(server = %url, error = %msg, "cannot connect; retrying");
                    turn += 1;
                    url = server(turn);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn connect(&self, server: &str) -> Result<Connected, Failure> {
        let resp = self
            .http
            .get(format!("{server}/api/v1/agent/connect"))
            .header(reqwest::header::CONNECTION, "Upgrade")
            .header(reqwest::header::UPGRADE, UPGRADE)
            .header(CLUSTER_HEADER, &self.identity.cluster)
            .bearer_auth(format!("{}.{}", self.identity.host, self.identity.key))
            .send()
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let status = resp.status();
        if status == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let io = resp
                .upgrade()
                .await
                .map_err(|e| Failure::Retry(e.to_string()))?;
            return Ok(Connected::Upgraded(io));
        }
        if status.is_redirection()
            && let Some(to) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
        {
            return Ok(Connected::Redirect(
                to.trim_end_matches("/api/v1/agent/connect").to_owned(),
            ));
        }
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        if matches!(status.as_u16(), 401 | 403 | 409) {
            return Err(Failure::Refused(format!(
                "the server refused this host: {msg} (HTTP {})",
                status.as_u16()
            )));
        }
        Err(Failure::Retry(format!("{msg} (HTTP {})", status.as_u16())))
    }

    /// One connection: the hello, then calls answered and events reported until it ends.
    async fn session(self: Arc<Self>, io: reqwest::Upgraded) -> std::io::Result<()> {
        let (reader, mut writer) = tokio::io::split(io);
        let (tx, mut rx) = mpsc::unbounded_channel::<ToServer>();
        let mut hello = serde_json::to_vec(&self.hello).unwrap_or_default();
        hello.push(b'\n');
        writer.write_all(&hello).await?;
        writer.flush().await?;
        let writer_task = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let mut line = serde_json::to_vec(&msg).unwrap_or_default();
                line.push(b'\n');
                if writer.write_all(&line).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
        });
        // Container events, as they happen.
        let events_task = {
            let tx = tx.clone();
            let mut events = Box::pin(self.rt.events(&self.identity.cluster));
            tokio::spawn(async move {
                while let Some(ev) = events.next().await {
                    match ev {
                        Ok(event) => {
                            if tx.send(ToServer::Event { event }).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "docker event stream failed");
                            return;
                        }
                    }
                }
            })
        };
        let mut streams: HashMap<u64, tokio::task::AbortHandle> = HashMap::new();
        let mut lines = BufReader::new(reader).lines();
        // The server pings every second: SILENCE without a word means it is gone.
        let result = loop {
            let line = match tokio::time::timeout(crate::hub::SILENCE, lines.next_line()).await {
                Ok(Ok(Some(l))) => l,
                Ok(Ok(None)) => break Ok(()),
                Ok(Err(e)) => break Err(e),
                Err(_) => break Err(std::io::Error::other("the server went silent")),
            };
            let Ok(msg) = serde_json::from_str::<ToAgent>(&line) else {
                continue;
            };
            match msg {
                ToAgent::Ping => {
                    let _ = tx.send(ToServer::Pong);
                }
                ToAgent::Services { map } => {
                    // Applied in order, the newest winning (see `keep_discovery`).
                    self.maps.send_replace(Some(map));
                }
                ToAgent::Cancel { id } => {
                    if let Some(h) = streams.remove(&id) {
                        h.abort();
                    }
                }
                ToAgent::Call { id, op } => {
                    let me = self.clone();
                    let tx = tx.clone();
                    let streamed = matches!(op, Op::Logs { .. });
                    let h = tokio::spawn(async move { me.call(id, op, tx).await });
                    if streamed {
                        streams.retain(|_, h| !h.is_finished());
                        streams.insert(id, h.abort_handle());
                    }
                }
            }
        };
        for (_, h) in streams {
            h.abort();
        }
        events_task.abort();
        writer_task.abort();
        result
    }

    async fn call(&self, id: u64, op: Op, tx: mpsc::UnboundedSender<ToServer>) {
        if let Op::Logs {
            container,
            follow,
            since,
            tail,
        } = op
        {
            let mut s = Box::pin(self.rt.logs(&container, follow, since, tail));
            let mut err = None;
            while let Some(chunk) = s.next().await {
                match chunk {
                    Ok(data) => {
                        if tx.send(ToServer::Chunk { id, data }).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                }
            }
            let _ = tx.send(ToServer::End { id, err });
            return;
        }
        let reply = match self.answer(op).await {
            Ok(ok) => ToServer::Reply {
                id,
                ok: Some(ok),
                err: None,
            },
            Err(e) => ToServer::Reply {
                id,
                ok: None,
                err: Some(e),
            },
        };
        let _ = tx.send(reply);
    }

    async fn answer(&self, op: Op) -> Result<serde_json::Value, String> {
        let rt = &self.rt;
        let json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| e.to_string());
        let e = |e: slipway_runtime::RuntimeError| e.to_string();
        match op {
            Op::List { cluster } => json(serde_json::to_value(rt.list(&cluster).await.map_err(e)?)),
            Op::ExitInfo { container } => json(serde_json::to_value(
                rt.exit_info(&container).await.map_err(e)?,
            )),
            Op::EnsureNetwork { cluster, key } => json(serde_json::to_value(
                rt.ensure_network(&cluster, &key).await.map_err(e)?,
            )),
            Op::RemoveNetwork { cluster, key } => {
                rt.remove_network(&cluster, &key).await.map_err(e)?;
                Ok(serde_json::Value::Null)
            }
            Op::RemoveAppNetworks { cluster, app, env } => json(serde_json::to_value(
                rt.remove_app_networks(&cluster, &app, env.as_deref())
                    .await
                    .map_err(e)?,
            )),
            Op::Create { launch } => {
                let id = self.create(*launch).await?;
                json(serde_json::to_value(id))
            }
            Op::Start { container } => {
                lock(&self.stopping).remove(&container);
                rt.start(&container).await.map_err(e)?;
                Ok(serde_json::Value::Null)
            }
            Op::Address { container, network } => json(serde_json::to_value(
                rt.address(&container, &network).await.map_err(e)?,
            )),
            Op::Stop {
                container,
                timeout_ms,
            } => {
                lock(&self.stopping).insert(container.clone());
                rt.stop(&container, Duration::from_millis(timeout_ms))
                    .await
                    .map_err(e)?;
                Ok(serde_json::Value::Null)
            }
            Op::Remove { container } => {
                lock(&self.stopping).remove(&container);
                rt.remove(&container).await.map_err(e)?;
                Ok(serde_json::Value::Null)
            }
            Op::Exec {
                container,
                cmd,
                max_output,
            } => json(serde_json::to_value(
                rt.exec(&container, cmd, max_output).await.map_err(e)?,
            )),
            Op::Probe { url, timeout_ms } => json(serde_json::to_value(
                crate::probe::http_get(&self.probe, &url, Duration::from_millis(timeout_ms)).await,
            )),
            Op::ResolveImage { image, pull, auth } => {
                self.passed.learn(&auth);
                json(serde_json::to_value(
                    rt.resolve_image(&image, pull).await.map_err(e)?,
                ))
            }
            Op::Logs { .. } => Err("logs are streamed".into()),
        }
    }

    async fn create(&self, launch: Launch) -> Result<String, String> {
        self.passed.learn(&launch.auth);
        crate::hosts::create_here(
            &self.rt,
            &launch,
            Some(self.hello.address.as_str()),
            &self.discovery,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// While the server is unreachable, starts again the containers of this host's tasks
    /// that exit (not those the server asked to stop). The server reconciles what happened
    /// when it is back.
    async fn supervise(
        self: Arc<Self>,
        connected: Arc<std::sync::atomic::AtomicBool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let mut events = Box::pin(self.rt.events(&self.identity.cluster));
            loop {
                let ev = tokio::select! {
                    e = events.next() => e,
                    _ = shutdown.changed() => return,
                };
                let Some(Ok(ev)) = ev else { break };
                if ev.action != "die" || connected.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                if lock(&self.stopping).contains(&ev.container_id) {
                    continue;
                }
                let rt = self.rt.clone();
                let id = ev.container_id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    tracing::info!(container = %id, "the server is away: starting an exited task again");
                    if let Err(e) = rt.start(&id).await {
                        tracing::warn!(container = %id, error = %e, "cannot start it again");
                    }
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Connected {
    Upgraded(reqwest::Upgraded),
    Redirect(String),
}

enum Failure {
    /// Will not get better by retrying (credential refused, another cluster).
    Refused(String),
    Retry(String),
}
