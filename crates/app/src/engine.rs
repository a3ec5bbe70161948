//! What the use cases need from the cluster's engines: resolving images to what a revision
//! pins, logs and exec in a task's container (on its host), and removing an app's
//! networks. [`Hosts`] provides it.

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use slipway_agent::Hosts;
use slipway_core::model::PullPolicy;
use slipway_runtime::{ExecOutput, ImageInfo, RuntimeError};

/// One container's log lines.
pub type LogStream = BoxStream<'static, Result<String, RuntimeError>>;

/// The engine operations of the application layer.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Resolves an image (pulling it per `pull`); refuses one built for another platform.
    async fn resolve_image(&self, image: &str, pull: PullPolicy)
    -> Result<ImageInfo, RuntimeError>;
    /// `os/arch` of the hosts.
    fn host_platform(&self) -> String;
    /// The server's own host (tasks recorded without a host ran there).
    fn local_host(&self) -> Option<String>;
    /// The hosts that can be reached now.
    fn up_hosts(&self) -> Vec<String>;
    fn logs(
        &self,
        host: &str,
        container: &str,
        follow: bool,
        since: Option<i64>,
        tail: Option<u32>,
    ) -> LogStream;
    async fn exec(
        &self,
        host: &str,
        container: &str,
        cmd: Vec<String>,
        max_output: usize,
    ) -> Result<ExecOutput, RuntimeError>;
    /// Forgets a removed host: stops the cluster's containers there if it is reachable and
    /// ends its agent's connection. How many containers were removed.
    async fn forget_host(&self, host: &str, cluster: &str) -> usize;
    /// Removes the networks of an app (or one environment) on every host; their names.
    async fn remove_app_networks(
        &self,
        cluster: &str,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<String>, RuntimeError>;
}

fn runtime_error(e: slipway_agent::HostError) -> RuntimeError {
    match e {
        slipway_agent::HostError::Runtime(e) => e,
        e => RuntimeError::Unreachable(e.to_string()),
    }
}

#[async_trait]
impl Engine for Hosts {
    async fn resolve_image(
        &self,
        image: &str,
        pull: PullPolicy,
    ) -> Result<ImageInfo, RuntimeError> {
        Hosts::resolve_image(self, image, pull)
            .await
            .map_err(runtime_error)
    }

    fn host_platform(&self) -> String {
        self.platform()
    }

    fn local_host(&self) -> Option<String> {
        self.local_id().map(str::to_owned)
    }

    fn up_hosts(&self) -> Vec<String> {
        self.up()
    }

    fn logs(
        &self,
        host: &str,
        container: &str,
        follow: bool,
        since: Option<i64>,
        tail: Option<u32>,
    ) -> LogStream {
        Hosts::logs(self, host, container, follow, since, tail)
            .map(|r| r.map_err(RuntimeError::Unreachable))
            .boxed()
    }

    async fn exec(
        &self,
        host: &str,
        container: &str,
        cmd: Vec<String>,
        max_output: usize,
    ) -> Result<ExecOutput, RuntimeError> {
        Hosts::exec(self, host, container, cmd, max_output)
            .await
            .map_err(runtime_error)
    }

    async fn forget_host(&self, host: &str, cluster: &str) -> usize {
        Hosts::forget(self, host, cluster).await
    }

    async fn remove_app_networks(
        &self,
        cluster: &str,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<String>, RuntimeError> {
        Hosts::remove_app_networks(self, cluster, app, env)
            .await
            .map_err(runtime_error)
    }
}
