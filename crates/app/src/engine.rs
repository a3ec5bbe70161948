//! What the use cases need from a container engine: resolving images to what a revision
//! pins, logs, exec, and removing an app's networks. [`DockerRuntime`] provides it.

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use slipway_core::model::PullPolicy;
use slipway_runtime::{DockerRuntime, ExecOutput, ImageInfo, RuntimeError};

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
    fn logs(
        &self,
        container: &str,
        follow: bool,
        since: Option<i64>,
        tail: Option<u32>,
    ) -> LogStream;
    async fn exec(
        &self,
        container: &str,
        cmd: Vec<String>,
        max_output: usize,
    ) -> Result<ExecOutput, RuntimeError>;
    /// Removes the networks of an app (or one environment); returns their names.
    async fn remove_app_networks(
        &self,
        cluster: &str,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<String>, RuntimeError>;
}

#[async_trait]
impl Engine for DockerRuntime {
    async fn resolve_image(
        &self,
        image: &str,
        pull: PullPolicy,
    ) -> Result<ImageInfo, RuntimeError> {
        DockerRuntime::resolve_image(self, image, pull).await
    }

    fn host_platform(&self) -> String {
        DockerRuntime::host_platform(self)
    }

    fn logs(
        &self,
        container: &str,
        follow: bool,
        since: Option<i64>,
        tail: Option<u32>,
    ) -> LogStream {
        DockerRuntime::logs(self, container, follow, since, tail).boxed()
    }

    async fn exec(
        &self,
        container: &str,
        cmd: Vec<String>,
        max_output: usize,
    ) -> Result<ExecOutput, RuntimeError> {
        DockerRuntime::exec(self, container, cmd, max_output).await
    }

    async fn remove_app_networks(
        &self,
        cluster: &str,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<String>, RuntimeError> {
        DockerRuntime::remove_app_networks(self, cluster, app, env).await
    }
}
