//! The agent protocol: what the leading server asks of a host's agent and what the agent
//! answers, as newline-delimited JSON over one HTTP connection the agent opened and
//! upgraded (`Upgrade: slipway-agent/1`). The agent connects out, so a host needs no
//! inbound port; the server sends calls, the agent answers each, streams the chunks of a
//! long answer (logs) and reports container events as they happen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_core::model::{ContainerSpec, PullPolicy, ServiceKey};
use slipway_runtime::ContainerEvent;

/// The protocol name of the upgrade.
pub const UPGRADE: &str = "slipway-agent/1";

/// What an agent says of its host when it connects (its first line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The host's id (issued at join).
    pub host: String,
    /// The engine's id (a host is one engine).
    pub engine: String,
    pub name: String,
    /// CPU units (1024 per core) and MiB offered to tasks.
    pub cpu: u64,
    pub memory: u64,
    /// `os/arch`.
    pub platform: String,
    /// `zone=a` and the like.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The address other hosts (the ingress) reach this host's published ports at.
    pub address: String,
    pub version: String,
}

/// Credentials for pulling from a registry (the server's own, short-lived).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    /// `host:port` as the image references name it.
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A task's container to create (an owned `slipway_runtime::TaskLaunch`). Its debug
/// output names the extra variables but never shows their values (decrypted secrets).
#[derive(Clone, Serialize, Deserialize)]
pub struct Launch {
    pub cluster: String,
    pub service: ServiceKey,
    pub task_id: String,
    pub deployment_id: String,
    pub revision: u32,
    pub network: String,
    pub container: ContainerSpec,
    /// Environment added to the spec's (discovery variables, decrypted secrets).
    pub extra_env: Vec<(String, String)>,
    /// Decrypted secrets delivered as files under `/run/secrets` (written on the host that
    /// creates the container).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<slipway_runtime::SecretFile>,
    /// Environment added to each sidecar's, by container name (its decrypted secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecar_env: Vec<(String, Vec<(String, String)>)>,
    /// Publish the container's port on the host's address (a port the agent picks).
    pub publish: bool,
    #[serde(default)]
    pub auth: Vec<RegistryAuth>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("cluster", &self.cluster)
            .field("service", &self.service)
            .field("task_id", &self.task_id)
            .field("deployment_id", &self.deployment_id)
            .field("revision", &self.revision)
            .field("network", &self.network)
            .field("container", &self.container)
            .field(
                "extra_env",
                &self.extra_env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("secret_files", &self.secret_files)
            .field(
                "sidecar_env",
                &self
                    .sidecar_env
                    .iter()
                    .map(|(n, e)| (n, e.iter().map(|(k, _)| k).collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
            )
            .field("publish", &self.publish)
            .field("auth", &self.auth)
            .finish()
    }
}

/// One call of the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    List {
        cluster: String,
    },
    ExitInfo {
        container: String,
    },
    EnsureNetwork {
        cluster: String,
        key: ServiceKey,
    },
    RemoveNetwork {
        cluster: String,
        key: ServiceKey,
    },
    RemoveAppNetworks {
        cluster: String,
        app: String,
        env: Option<String>,
    },
    Create {
        launch: Box<Launch>,
    },
    Start {
        container: String,
    },
    Address {
        container: String,
        network: String,
    },
    Stop {
        container: String,
        timeout_ms: u64,
    },
    Remove {
        container: String,
    },
    /// Streamed: one chunk of log text at a time.
    Logs {
        container: String,
        follow: bool,
        since: Option<i64>,
        tail: Option<u32>,
    },
    Exec {
        container: String,
        cmd: Vec<String>,
        max_output: usize,
    },
    /// A health probe from the host (`GET url`): the status code, or why there was none.
    Probe {
        url: String,
        timeout_ms: u64,
    },
    ResolveImage {
        image: String,
        pull: PullPolicy,
        #[serde(default)]
        auth: Vec<RegistryAuth>,
    },
}

/// Server → agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToAgent {
    Call {
        id: u64,
        op: Op,
    },
    /// The caller of a streamed call went away: stop streaming.
    Cancel {
        id: u64,
    },
    Ping,
    /// The services of the cluster for discovery across hosts (sent when it changes).
    Services {
        map: crate::discovery::ServiceMap,
    },
}

/// Agent → server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToServer {
    /// The answer of a call: a JSON value, or an error message.
    Reply {
        id: u64,
        #[serde(default)]
        ok: Option<serde_json::Value>,
        #[serde(default)]
        err: Option<String>,
    },
    /// A piece of a streamed answer.
    Chunk {
        id: u64,
        data: String,
    },
    /// The end of a streamed answer.
    End {
        id: u64,
        #[serde(default)]
        err: Option<String>,
    },
    Event {
        event: ContainerEvent,
    },
    Pong,
}

/// The result of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeResult {
    /// An answer's status (agents before the body was kept).
    Status(u16),
    /// An answer: its status and the body's first bytes.
    Answered { status: u16, body: String },
    /// No answer, and why (timeout, connection refused).
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(secret_files: Vec<slipway_runtime::SecretFile>) -> Launch {
        Launch {
            cluster: "c".into(),
            service: ServiceKey::new("shop", "default", "api"),
            task_id: "t1".into(),
            deployment_id: "d1".into(),
            revision: 1,
            network: "n".into(),
            container: serde_json::from_value(serde_json::json!({
                "image": "hello:v1",
                "pull": "missing",
                "port": 8080,
                "command": null,
                "environment": {},
                "cpu": null,
                "memory": 32,
                "healthcheck": null,
                "http_health": null,
                "stop_timeout_ms": 30000,
                "http_route": null
            }))
            .unwrap(),
            extra_env: Vec::new(),
            secret_files,
            sidecar_env: Vec::new(),
            publish: false,
            auth: Vec::new(),
        }
    }

    /// A task's secret files reach the agent that creates its container; a launch without
    /// any reads as before (and an older server's launch, without the field, reads too).
    #[test]
    fn secret_files_travel_to_the_agent() {
        let files = vec![slipway_runtime::SecretFile {
            name: "TLS_KEY".into(),
            value: "hunter2".into(),
        }];
        let op = Op::Create {
            launch: Box::new(launch(files.clone())),
        };
        let json = serde_json::to_string(&op).unwrap();
        let Op::Create { launch: back } = serde_json::from_str(&json).unwrap() else {
            panic!("not a create: {json}");
        };
        assert_eq!(back.secret_files, files);
        assert!(!format!("{back:?}").contains("hunter2"));
        let none = serde_json::to_value(launch(Vec::new())).unwrap();
        assert!(none.get("secret_files").is_none(), "{none}");
        let old: Launch = serde_json::from_value(none).unwrap();
        assert!(old.secret_files.is_empty());
    }

    /// Debug output (logs, panics) names a launch's variables and credentials, never their
    /// values: decrypted secrets ride in `extra_env`, pull passwords in `auth`.
    #[test]
    fn debug_output_never_shows_secret_values() {
        let mut l = launch(Vec::new());
        l.extra_env = vec![("DB_PASSWORD".into(), "s3cret-env".into())];
        l.auth = vec![RegistryAuth {
            registry: "reg:5000".into(),
            username: "slipway-internal".into(),
            password: "s3cret-pw".into(),
        }];
        let text = format!(
            "{:?}",
            Op::Create {
                launch: Box::new(l)
            }
        );
        assert!(text.contains("DB_PASSWORD"), "{text}");
        assert!(!text.contains("s3cret-env"), "{text}");
        assert!(!text.contains("s3cret-pw"), "{text}");
    }
}
