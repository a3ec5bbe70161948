//! Slipway's image builder: the build-and-push half of `slipway deploy` with `image.build`.
//!
//! This crate owns turning a service's build settings ([`BuildPlan`]) into an image in a
//! registry, on the developer's machine and its local Docker engine:
//!
//! 1. [`pack`] writes the build context to a deterministic tar archive, honouring
//!    `.dockerignore` ([`ignore`]), and hashes it with the build's settings;
//! 2. [`version_tag`] names the build from git (or the content hash outside git), and
//!    [`platform_tag`] adds the platform when it is not the hosts';
//! 3. [`Builder::build`] builds it with the engine's classic builder, and checks that the
//!    image is for the platform asked (the builder's cache may hand back another's);
//! 4. [`Builder::push`] pushes it and reports the manifest digest to deploy by.
//!
//! It decides nothing about which services to build or where to push: the CLI does.

pub mod ignore;

mod engine;
mod pack;
mod version;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use engine::{BuildProgress, Builder, PushOutcome, PushProgress, RegistryCreds};
pub use pack::{Packed, pack};
pub use version::{platform_tag, version_tag};

/// One service's build, paths already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile, relative to `context` (conventionally `Dockerfile`); an absolute path
    /// must lie inside the context.
    pub dockerfile: PathBuf,
    /// Build arguments (`--build-arg`).
    pub args: BTreeMap<String, String>,
    /// The stage to build (`--target`).
    pub target: Option<String>,
    /// The platform to build for, e.g. `linux/amd64`.
    pub platform: Option<String>,
}

impl BuildPlan {
    /// A plan for `context` with its `Dockerfile` and no arguments, target or platform.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildPlan {
            context: context.into(),
            dockerfile: PathBuf::from("Dockerfile"),
            args: BTreeMap::new(),
            target: None,
            platform: None,
        }
    }
}

/// Why packing, building or pushing failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("build context {} is not a directory", path.display())]
    ContextMissing { path: PathBuf },
    #[error("Dockerfile {} does not exist", path.display())]
    DockerfileMissing { path: PathBuf },
    #[error(
        "Dockerfile {} is outside the build context {}",
        dockerfile.display(),
        context.display()
    )]
    DockerfileOutsideContext {
        dockerfile: PathBuf,
        context: PathBuf,
    },
    #[error("{}: {source}", path.display())]
    BadIgnore {
        path: PathBuf,
        #[source]
        source: ignore::PatternError,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine refused or failed the build; `step` is the Dockerfile step it was on,
    /// as `N/M "INSTRUCTION"`.
    #[error(
        "{dockerfile}: {}{message}",
        step.as_ref().map(|s| format!("step {s}: ")).unwrap_or_default()
    )]
    Failed {
        /// The Dockerfile's path as given in the plan (context joined with dockerfile).
        dockerfile: String,
        step: Option<String>,
        message: String,
    },
    /// The engine built an image for another platform than asked, even without its cache.
    #[error("{dockerfile}: the engine built an image for {got}, not the {wanted} asked for")]
    WrongPlatform {
        dockerfile: String,
        wanted: String,
        got: String,
    },
    #[error("push failed: {0}")]
    Push(String),
    #[error("docker engine: {0}")]
    Engine(#[from] bollard::errors::Error),
}
