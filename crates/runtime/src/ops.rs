//! Everyday operations on the engine: running a command in a task (`slipway exec`), running
//! an image locally in the foreground (`slipway run`), and removing an app's networks
//! (`slipway delete --app`).

use std::collections::HashMap;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, ListNetworksOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use slipway_core::model::labels;

use crate::{CLUSTER_LABEL, DockerRuntime, Result, RuntimeError};

/// Label of containers started by `slipway run` (never owned by a server).
pub const LOCAL_RUN_LABEL: &str = "slipway.local-run";

/// What a command run in a container printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecOutput {
    /// `None` if the engine did not report one.
    pub exit_code: Option<i64>,
    /// Standard output and standard error, interleaved as they came.
    pub output: Vec<u8>,
    /// Output beyond the cap was dropped.
    pub truncated: bool,
}

/// A container for `slipway run`: in the foreground, on the default bridge network, with the
/// container port published on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct LocalRun<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub env: Vec<String>,
    pub command: Option<Vec<String>>,
    /// `(host port, container port)`.
    pub publish: Option<(u16, u16)>,
    /// Labels besides [`LOCAL_RUN_LABEL`].
    pub labels: HashMap<String, String>,
}

impl DockerRuntime {
    /// Runs `cmd` in a running container and collects its output, keeping at most
    /// `max_output` bytes (the command still runs to its end). Callers bound the time.
    pub async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        max_output: usize,
    ) -> Result<ExecOutput> {
        let created = self
            .docker
            .create_exec(
                container_id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd),
                    ..Default::default()
                },
            )
            .await?;
        let mut out = ExecOutput {
            exit_code: None,
            output: Vec::new(),
            truncated: false,
        };
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await?;
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                let bytes = chunk?.into_bytes();
                let room = max_output.saturating_sub(out.output.len());
                if bytes.len() > room {
                    out.truncated = true;
                }
                out.output
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
        // The stream ends when the process does; the engine may take a moment to record
        // the exit code.
        for _ in 0..50 {
            let info = self.docker.inspect_exec(&created.id).await?;
            if info.running != Some(true) {
                out.exit_code = info.exit_code;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(out)
    }

    /// Whether the engine has an image (by reference or id).
    pub async fn has_image(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = RuntimeError::from(e);
                if e.is_not_found() { Ok(false) } else { Err(e) }
            }
        }
    }

    /// Creates (not starts) a `slipway run` container. Returns its id.
    pub async fn create_local(&self, r: &LocalRun<'_>) -> Result<String> {
        let mut labels = r.labels.clone();
        labels.insert(LOCAL_RUN_LABEL.to_owned(), "1".to_owned());
        let (exposed, bindings) = match r.publish {
            Some((host, container)) => {
                let key = format!("{container}/tcp");
                (
                    Some(vec![key.clone()]),
                    Some(HashMap::from([(
                        key,
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some(host.to_string()),
                        }]),
                    )])),
                )
            }
            None => (None, None),
        };
        let body = ContainerCreateBody {
            image: Some(r.image.to_owned()),
            env: Some(r.env.clone()),
            cmd: r.command.clone(),
            labels: Some(labels),
            exposed_ports: exposed,
            host_config: Some(HostConfig {
                port_bindings: bindings,
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(r.name.to_owned()),
            ..Default::default()
        };
        Ok(self.docker.create_container(Some(opts), body).await?.id)
    }

    /// Waits until a container stops and returns its exit code.
    pub async fn wait_exit(&self, id: &str) -> Result<i64> {
        let mut s = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e.into()),
            None => Ok(0),
        }
    }

    /// Removes the networks of an app (of one environment when `env` is given) that this
    /// cluster created. Returns the names removed; a network still in use is an error.
    pub async fn remove_app_networks(
        &self,
        cluster: &str,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<String>> {
        let mut label = vec![
            format!("{CLUSTER_LABEL}={cluster}"),
            format!("{}={app}", labels::APP),
        ];
        if let Some(e) = env {
            label.push(format!("{}={e}", labels::ENV));
        }
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(HashMap::from([("label".to_owned(), label)])),
            }))
            .await?;
        let mut removed = Vec::new();
        for n in nets {
            let Some(name) = n.name else { continue };
            match self.docker.remove_network(&name).await {
                Ok(()) => removed.push(name),
                Err(e) => {
                    let e = RuntimeError::from(e);
                    if !e.is_not_found() {
                        return Err(e);
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// What an engine says of itself: the identity and resources of a host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineInfo {
    /// The engine's own id and its data root (`ID@/var/lib/docker`): a host's identity,
    /// stable across restarts (the data root tells apart engines that share a machine's
    /// `/etc/docker` and so its id).
    pub id: String,
    /// The machine's name as the engine reports it.
    pub name: String,
    /// CPUs and memory (bytes) the engine sees.
    pub cpus: u64,
    pub memory: u64,
    /// `os/arch` (Go names).
    pub platform: String,
}

impl DockerRuntime {
    /// The engine's identity and resources.
    pub async fn engine_info(&self) -> Result<EngineInfo> {
        let i = self.docker.info().await?;
        Ok(EngineInfo {
            id: format!(
                "{}@{}",
                i.id.unwrap_or_default(),
                i.docker_root_dir.unwrap_or_default()
            ),
            name: i.name.unwrap_or_default(),
            cpus: i.ncpu.unwrap_or(1).max(1) as u64,
            memory: i.mem_total.unwrap_or(0).max(0) as u64,
            platform: self.host_platform(),
        })
    }
}
