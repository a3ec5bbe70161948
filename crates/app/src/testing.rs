//! Test helpers (feature `testing`): an [`Engine`] without an engine, for tests of the
//! application layer and of the faces on an in-memory store.

use async_trait::async_trait;
use slipway_core::model::PullPolicy;
use slipway_runtime::{ExecOutput, ImageInfo, RuntimeError};

use crate::{Engine, LogStream};

/// Resolves every image to a digest made from its name; no host, no logs, no exec.
pub struct FixedImages;

#[async_trait]
impl Engine for FixedImages {
    async fn resolve_image(&self, image: &str, _: PullPolicy) -> Result<ImageInfo, RuntimeError> {
        let hex: String = image.bytes().map(|b| format!("{b:02x}")).collect();
        Ok(ImageInfo {
            id: format!("sha256:{hex:0<64}"),
            repo_digest: None,
            os: Some("linux".into()),
            architecture: Some("amd64".into()),
        })
    }

    fn host_platform(&self) -> String {
        "linux/amd64".into()
    }

    fn local_host(&self) -> Option<String> {
        None
    }

    fn up_hosts(&self) -> Vec<String> {
        Vec::new()
    }

    fn logs(&self, _: &str, _: &str, _: bool, _: Option<i64>, _: Option<u32>) -> LogStream {
        Box::pin(futures_util::stream::empty())
    }

    async fn exec(
        &self,
        _: &str,
        _: &str,
        _: Vec<String>,
        _: usize,
    ) -> Result<ExecOutput, RuntimeError> {
        Err(RuntimeError::Unreachable("no engine in this test".into()))
    }

    async fn forget_host(&self, _: &str, _: &str) -> usize {
        0
    }

    async fn remove_app_networks(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<String>, RuntimeError> {
        Ok(Vec::new())
    }
}
