//! Building and pushing on the Docker engine, through bollard.
//!
//! This module owns the two engine calls of a build: `POST /build` with the packed context
//! (classic builder; the archive is streamed from its temporary file) and
//! `POST /images/{name}/push` with registry credentials. It turns the engine's JSON progress
//! streams into [`BuildProgress`] and [`PushProgress`] and its errors into [`BuildError`].

use std::collections::HashMap;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{BuildImageOptions, PushImageOptions};
use futures_util::StreamExt;
use tokio_util::io::ReaderStream;

use crate::pack::dockerfile_display;
use crate::{BuildError, BuildPlan, Packed};

/// `os/arch[/variant]` → (os, arch); a bare `arch` is Linux's.
fn os_arch(platform: &str) -> (String, String) {
    let mut parts = platform.split('/');
    match (parts.next(), parts.next()) {
        (Some(os), Some(arch)) => (os.to_owned(), arch.to_owned()),
        (Some(arch), None) => ("linux".to_owned(), arch.to_owned()),
        _ => (String::new(), String::new()),
    }
}

/// Progress of a build, in the order the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildProgress {
    /// The builder started Dockerfile step `n` of `total`; `text` is the instruction.
    Step { n: u32, total: u32, text: String },
    /// Any other line of builder output (one line, without its newline).
    Output(String),
}

/// Progress of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushProgress {
    /// A layer's status (`Preparing`, `Pushing`, `Pushed`, `Layer already exists`, ...).
    ///
    /// `id` is empty: bollard's `PushImageInfo` does not carry the engine's layer id.
    Layer {
        id: String,
        status: String,
        current: Option<u64>,
        total: Option<u64>,
    },
}

/// Credentials for one registry, sent to the engine as `X-Registry-Auth`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCreds {
    pub username: String,
    pub password: String,
    /// The registry's `host:port`.
    pub server: String,
}

impl std::fmt::Debug for RegistryCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCreds")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("server", &self.server)
            .finish()
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// `sha256:…` of the pushed manifest.
    pub digest: String,
    /// Layers uploaded.
    pub layers_pushed: usize,
    /// Layers the registry already had (or mounted from another repository).
    pub layers_existing: usize,
}

/// Builds and pushes images on one Docker engine.
#[derive(Debug, Clone)]
pub struct Builder {
    docker: Docker,
}

impl Builder {
    pub fn new(docker: Docker) -> Self {
        Builder { docker }
    }

    /// Builds `image` (`repo:tag`) from a packed context with the classic builder and
    /// returns the image id (`sha256:…`). Progress goes to `on`.
    ///
    /// The built image's os/arch is checked against the plan's platform (the engine's own
    /// when the plan names none): the classic builder's cache ignores the platform and can
    /// hand back an image built earlier for another one. Such a build is done again without
    /// the cache; still wrong, it is [`BuildError::WrongPlatform`].
    pub async fn build(
        &self,
        plan: &BuildPlan,
        packed: &Packed,
        image: &str,
        on: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<String, BuildError> {
        let wanted = match &plan.platform {
            Some(p) => os_arch(p),
            None => {
                let v = self.docker.version().await?;
                (v.os.unwrap_or_default(), v.arch.unwrap_or_default())
            }
        };
        let mut no_cache = false;
        loop {
            let id = self.build_once(plan, packed, image, no_cache, on).await?;
            let inspect = self.docker.inspect_image(image).await?;
            let got = (
                inspect.os.unwrap_or_default(),
                inspect.architecture.unwrap_or_default(),
            );
            if wanted.0.is_empty() || got == wanted {
                return Ok(id);
            }
            if no_cache {
                return Err(BuildError::WrongPlatform {
                    dockerfile: dockerfile_display(plan),
                    wanted: format!("{}/{}", wanted.0, wanted.1),
                    got: format!("{}/{}", got.0, got.1),
                });
            }
            tracing::warn!(
                image,
                wanted = %format!("{}/{}", wanted.0, wanted.1),
                got = %format!("{}/{}", got.0, got.1),
                "the builder's cache gave an image of another platform; building again without it"
            );
            no_cache = true;
        }
    }

    async fn build_once(
        &self,
        plan: &BuildPlan,
        packed: &Packed,
        image: &str,
        no_cache: bool,
        on: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<String, BuildError> {
        let dockerfile = dockerfile_display(plan);
        let file = tokio::fs::File::open(packed.path())
            .await
            .map_err(|source| BuildError::Io {
                path: packed.path().to_owned(),
                source,
            })?;
        let body = bollard::body_try_stream(ReaderStream::with_capacity(file, 64 * 1024));
        let options = BuildImageOptions {
            dockerfile: packed.dockerfile.clone(),
            t: Some(image.to_owned()),
            buildargs: (!plan.args.is_empty()).then(|| {
                plan.args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>()
            }),
            target: plan.target.clone().unwrap_or_default(),
            platform: plan.platform.clone().unwrap_or_default(),
            nocache: no_cache,
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        tracing::info!(image, dockerfile = %dockerfile, bytes = packed.bytes, "building image");

        let mut lines = LineSplitter::default();
        let mut step: Option<String> = None;
        let mut image_id: Option<String> = None;
        let mut stream = self.docker.build_image(options, None, Some(body));
        let mut emit = |line: String, step: &mut Option<String>| match parse_step(&line) {
            Some(p) => {
                if let BuildProgress::Step { n, total, text } = &p {
                    *step = Some(format!("{n}/{total} {text:?}"));
                }
                on(p);
            }
            None => on(BuildProgress::Output(line)),
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream {
                        for line in lines.push(&text) {
                            emit(line, &mut step);
                        }
                    }
                    if let Some(id) = info.aux.and_then(|a| a.id) {
                        image_id = Some(id);
                    }
                }
                Err(e) => {
                    for line in lines.finish() {
                        emit(line, &mut step);
                    }
                    return Err(build_failure(&dockerfile, step, e));
                }
            }
        }
        for line in lines.finish() {
            emit(line, &mut step);
        }
        let id =
            match image_id {
                Some(id) => id,
                // Engines that send no aux ID: the tag now names the image.
                None => self.docker.inspect_image(image).await?.id.ok_or_else(|| {
                    BuildError::Failed {
                        dockerfile: dockerfile.clone(),
                        step: None,
                        message: "the engine reported no image id".into(),
                    }
                })?,
            };
        tracing::info!(image, id = %id, "built image");
        Ok(id)
    }

    /// Pushes `repo:tag` to its registry with `creds`; returns the manifest digest and how
    /// many layers were uploaded or already there.
    pub async fn push(
        &self,
        repo: &str,
        tag: &str,
        creds: &RegistryCreds,
        on: &mut (dyn FnMut(PushProgress) + Send),
    ) -> Result<PushOutcome, BuildError> {
        let credentials = DockerCredentials {
            username: Some(creds.username.clone()),
            password: Some(creds.password.clone()),
            serveraddress: Some(creds.server.clone()),
            ..Default::default()
        };
        let options = PushImageOptions {
            tag: Some(tag.to_owned()),
            platform: None,
        };
        tracing::info!(repo, tag, "pushing image");
        let mut stream = self
            .docker
            .push_image(repo, Some(options), Some(credentials));
        let mut tally = PushTally::default();
        while let Some(item) = stream.next().await {
            let info = item.map_err(push_failure)?;
            let Some(status) = info.status else { continue };
            let detail = info.progress_detail.unwrap_or_default();
            if let Some(p) = tally.record(&status, detail.current, detail.total) {
                on(p);
            }
        }
        let outcome = tally.finish()?;
        tracing::info!(repo, tag, digest = %outcome.digest, pushed = outcome.layers_pushed, existing = outcome.layers_existing, "pushed image");
        Ok(outcome)
    }
}

fn build_failure(dockerfile: &str, step: Option<String>, e: DockerError) -> BuildError {
    let message = match e {
        DockerError::DockerStreamError { error } => error,
        DockerError::DockerResponseServerError { message, .. } => message,
        other => return BuildError::Engine(other),
    };
    BuildError::Failed {
        dockerfile: dockerfile.to_owned(),
        step,
        message: one_line(&message),
    }
}

fn push_failure(e: DockerError) -> BuildError {
    match e {
        DockerError::DockerStreamError { error } => BuildError::Push(one_line(&error)),
        DockerError::DockerResponseServerError { message, .. } => {
            BuildError::Push(one_line(&message))
        }
        other => BuildError::Engine(other),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses the classic builder's `Step N/M : INSTRUCTION` line.
fn parse_step(line: &str) -> Option<BuildProgress> {
    let rest = line.strip_prefix("Step ")?;
    let (nums, text) = rest.split_once(" : ")?;
    let (n, total) = nums.split_once('/')?;
    Some(BuildProgress::Step {
        n: n.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
        text: text.trim().to_owned(),
    })
}

/// Splits the builder's output chunks (which need not end at a newline) into lines.
#[derive(Default)]
struct LineSplitter {
    partial: String,
}

impl LineSplitter {
    fn push(&mut self, chunk: &str) -> Vec<String> {
        self.partial.push_str(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if !line.trim().is_empty() {
                out.push(line.to_owned());
            }
        }
        out
    }

    fn finish(&mut self) -> Vec<String> {
        let rest = std::mem::take(&mut self.partial);
        if rest.trim().is_empty() {
            Vec::new()
        } else {
            vec![rest]
        }
    }
}

/// Counts a push's layers from its status messages and finds the manifest digest.
#[derive(Default)]
struct PushTally {
    pushed: usize,
    existing: usize,
    digest: Option<String>,
}

impl PushTally {
    /// Records one status; returns the progress to report for a layer status.
    fn record(
        &mut self,
        status: &str,
        current: Option<i64>,
        total: Option<i64>,
    ) -> Option<PushProgress> {
        // "<tag>: digest: sha256:<hex> size: <n>"
        if let Some((_, rest)) = status.split_once("digest: ") {
            if let Some(d) = rest.split_whitespace().next().filter(|d| is_digest(d)) {
                self.digest = Some(d.to_owned());
            }
            return None;
        }
        if status.starts_with("The push refers to") {
            return None;
        }
        if status == "Pushed" {
            self.pushed += 1;
        } else if status == "Layer already exists" || status.starts_with("Mounted from") {
            self.existing += 1;
        }
        let size = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        Some(PushProgress::Layer {
            id: String::new(),
            status: status.to_owned(),
            current: size(current),
            total: size(total),
        })
    }

    fn finish(self) -> Result<PushOutcome, BuildError> {
        let digest = self
            .digest
            .ok_or_else(|| BuildError::Push("the engine reported no manifest digest".into()))?;
        Ok(PushOutcome {
            digest,
            layers_pushed: self.pushed,
            layers_existing: self.existing,
        })
    }
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        assert_eq!(os_arch("linux/arm64/v8"), ("linux".into(), "arm64".into()));
        assert_eq!(os_arch("linux/amd64"), ("linux".into(), "amd64".into()));
        assert_eq!(os_arch("arm64"), ("linux".into(), "arm64".into()));
    }

    #[test]
    fn step_lines() {
        assert_eq!(
            parse_step("Step 2/3 : COPY missing.txt /"),
            Some(BuildProgress::Step {
                n: 2,
                total: 3,
                text: "COPY missing.txt /".into()
            })
        );
        assert_eq!(parse_step(" ---> Running in 1234"), None);
        assert_eq!(parse_step("Step x/3 : FROM scratch"), None);
    }

    #[test]
    fn output_is_split_into_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push("Step 1/2 : FROM "), Vec::<String>::new());
        assert_eq!(
            s.push("scratch\n ---> abc\n\n  \nhalf"),
            ["Step 1/2 : FROM scratch", " ---> abc"]
        );
        assert_eq!(s.push(" a line\r\nnext"), ["half a line"]);
        assert_eq!(s.finish(), ["next"]);
        assert_eq!(s.finish(), Vec::<String>::new());
    }

    #[test]
    fn push_statuses_are_tallied() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let mut t = PushTally::default();
        assert!(
            t.record("The push refers to repository [x/y]", None, None)
                .is_none()
        );
        for s in ["Preparing", "Waiting", "Pushed", "Layer already exists"] {
            assert!(t.record(s, None, None).is_some());
        }
        assert_eq!(
            t.record("Pushing", Some(512), Some(1024)),
            Some(PushProgress::Layer {
                id: String::new(),
                status: "Pushing".into(),
                current: Some(512),
                total: Some(1024)
            })
        );
        t.record("Pushed", None, None);
        t.record("Mounted from team/app", None, None);
        assert!(
            t.record(&format!("v1: digest: {d} size: 528"), None, None)
                .is_none()
        );
        let out = t.finish().unwrap();
        assert_eq!(
            out,
            PushOutcome {
                digest: d,
                layers_pushed: 2,
                layers_existing: 2
            }
        );
        assert!(matches!(
            PushTally::default().finish(),
            Err(BuildError::Push(_))
        ));
    }

    #[test]
    fn failures_name_the_dockerfile_and_step() {
        let e = build_failure(
            "users/Dockerfile",
            Some("2/3 \"COPY missing.txt /\"".into()),
            DockerError::DockerStreamError {
                error: "COPY failed: file not found\n in build context".into(),
            },
        );
        assert_eq!(
            e.to_string(),
            "users/Dockerfile: step 2/3 \"COPY missing.txt /\": COPY failed: file not found in build context"
        );
        let e = build_failure(
            "Dockerfile",
            None,
            DockerError::DockerResponseServerError {
                status_code: 500,
                message: "dockerfile parse error".into(),
            },
        );
        assert_eq!(e.to_string(), "Dockerfile: dockerfile parse error");
    }
}
