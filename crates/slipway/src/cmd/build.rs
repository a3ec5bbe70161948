//! The build half of `slipway deploy`: for each service with `image.build`, pack its context,
//! name the version (`<commit>` or `<commit>-dirty-<content hash>`), and unless the built-in
//! registry already holds that version, build it on the local Docker engine and push it.
//! The deploy then names the pushed image by digest.
//!
//! May call the local Docker engine (through `slipway-build`), the server's registry (`/v2/`)
//! and the API (a registry password). Prints progress on stderr.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use slipway_build::{BuildPlan, BuildProgress, Builder, PushProgress, RegistryCreds};
use slipway_core::manifest::BuildSpec;
use slipway_registry::admin::{PasswordRequest, PasswordResponse};

use crate::client::Client;

/// What happened to one service's image.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub service: String,
    /// `host:port/app/service:tag`.
    pub image: String,
    pub digest: String,
    /// The registry already had this version: nothing was built or pushed.
    pub reused: bool,
    pub pack_ms: u64,
    pub build_ms: u64,
    pub push_ms: u64,
    pub layers_pushed: usize,
    pub layers_existing: usize,
}

/// Builds (or finds) the image of `service` and returns where it is.
#[allow(clippy::too_many_arguments)]
pub async fn build_and_push(
    client: &Client,
    creds: &RegistryCreds,
    manifest_dir: &Path,
    app: &str,
    service: &str,
    spec: &BuildSpec,
    platform: Option<&str>,
    quiet: bool,
) -> Result<Built> {
    let Located {
        plan,
        packed,
        repo,
        tag,
        image,
        digest,
        pack_ms,
    } = locate(client, creds, manifest_dir, app, service, spec, platform).await?;
    if let Some(digest) = digest {
        if !quiet {
            eprintln!("{service}: {image} is already in the registry; nothing to build or push");
        }
        return Ok(Built {
            service: service.to_owned(),
            image,
            digest,
            reused: true,
            pack_ms,
            build_ms: 0,
            push_ms: 0,
            layers_pushed: 0,
            layers_existing: 0,
        });
    }

    let docker = bollard::Docker::connect_with_local_defaults()
        .context("cannot reach the local Docker engine to build images (is dockerd running?)")?
        .negotiate_version()
        .await
        .context("cannot reach the local Docker engine to build images (is dockerd running?)")?;
    let builder = Builder::new(docker);
    let bar = progress(quiet);
    bar.set_message(format!("{service}: building {} files", packed.files));
    let t1 = Instant::now();
    {
        let bar = bar.clone();
        let name = service.to_owned();
        let mut on = move |p: BuildProgress| {
            if let BuildProgress::Step { n, total, text } = p {
                let text: String = text.chars().take(60).collect();
                bar.set_message(format!("{name}: building, step {n}/{total}: {text}"));
            }
        };
        builder
            .build(&plan, &packed, &image, &mut on)
            .await
            .map_err(|e| anyhow!("services.{service}: the image build failed: {e}"))?;
    }
    let build_ms = t1.elapsed().as_millis() as u64;
    let t2 = Instant::now();
    let outcome = {
        let bar = bar.clone();
        let name = service.to_owned();
        let mut layers = 0usize;
        let mut on = move |p: PushProgress| {
            let PushProgress::Layer {
                status,
                current,
                total,
                ..
            } = p;
            if matches!(
                status.as_str(),
                "Pushed" | "Layer already exists" | "Mounted from"
            ) {
                layers += 1;
            }
            let bytes = match (current, total) {
                (Some(c), Some(t)) if t > 0 => format!(" {}%", c * 100 / t),
                _ => String::new(),
            };
            bar.set_message(format!(
                "{name}: pushing, {layers} layer(s) done, {status}{bytes}"
            ));
        };
        builder
            .push(&repo, &tag, creds, &mut on)
            .await
            .map_err(|e| anyhow!("services.{service}: pushing {image} failed: {e}"))?
    };
    let push_ms = t2.elapsed().as_millis() as u64;
    bar.finish_and_clear();
    if !quiet {
        eprintln!(
            "{service}: built and pushed {image} (build {}, push {}: {} layer(s) uploaded, {} already there)",
            crate::output::duration_ms(build_ms as i64),
            crate::output::duration_ms(push_ms as i64),
            outcome.layers_pushed,
            outcome.layers_existing
        );
    }
    Ok(Built {
        service: service.to_owned(),
        image,
        digest: outcome.digest,
        reused: false,
        pack_ms,
        build_ms,
        push_ms,
        layers_pushed: outcome.layers_pushed,
        layers_existing: outcome.layers_existing,
    })
}

/// A service's version, found without building: its packed context, its tag, and the digest
/// the registry has for that tag (if it has it).
pub struct Located {
    plan: BuildPlan,
    packed: slipway_build::Packed,
    repo: String,
    tag: String,
    /// `host:port/app/service:tag`.
    pub image: String,
    pub digest: Option<String>,
    pack_ms: u64,
}

/// Packs a service's context, names its version and asks the registry whether it has it.
pub async fn locate(
    client: &Client,
    creds: &RegistryCreds,
    manifest_dir: &Path,
    app: &str,
    service: &str,
    spec: &BuildSpec,
    platform: Option<&str>,
) -> Result<Located> {
    let context = join_relative(manifest_dir, Path::new(&spec.context));
    let plan = BuildPlan {
        context: context.clone(),
        dockerfile: spec.dockerfile.clone().into(),
        args: spec.args.clone(),
        target: spec.target.clone(),
        platform: platform
            .map(str::to_owned)
            .or_else(|| spec.platform.clone()),
    };
    let t0 = Instant::now();
    let (packed, plan) =
        tokio::task::spawn_blocking(move || slipway_build::pack(&plan).map(|p| (p, plan)))
            .await?
            .map_err(|e| anyhow!("services.{service}.image.build: {e}"))?;
    let hosts: serde_json::Value = client.get("/info").await.unwrap_or_default();
    let tag = slipway_build::platform_tag(
        &slipway_build::version_tag(&context, &packed.content_hash),
        plan.platform.as_deref(),
        hosts["platform"].as_str(),
    );
    let pack_ms = t0.elapsed().as_millis() as u64;
    let host = registry_host(client.server())?;
    let repo = format!("{host}/{app}/{service}");
    let image = format!("{repo}:{tag}");
    let digest = registry_digest(client, creds, app, service, &tag).await?;
    Ok(Located {
        plan,
        packed,
        repo,
        tag,
        image,
        digest,
        pack_ms,
    })
}

/// `base/rel` without the `.` components of `rel`, so paths in messages read as written
/// (`./b/Dockerfile`, not `././b/Dockerfile`).
fn join_relative(base: &Path, rel: &Path) -> std::path::PathBuf {
    let rest: std::path::PathBuf = rel
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if rest.as_os_str().is_empty() {
        base.to_owned()
    } else {
        base.join(rest)
    }
}

/// The directory a manifest's build contexts are relative to: the manifest's own.
pub fn manifest_dir(manifest: &std::path::Path) -> std::path::PathBuf {
    manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_owned()
}

/// A short-lived push credential for the built-in registry.
pub async fn registry_creds(client: &Client) -> Result<RegistryCreds> {
    let r: PasswordResponse = client
        .post("/registry/password", &PasswordRequest { pull_only: false })
        .await
        .context("getting a registry password to push images")?;
    Ok(RegistryCreds {
        username: "slipway".into(),
        password: r.password,
        server: registry_host(client.server())?,
    })
}

/// `host:port` of the built-in registry: the server's address.
fn registry_host(server: &str) -> Result<String> {
    let rest = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("https://"))
        .ok_or_else(|| anyhow!("server address {server:?} is not an http(s) URL"))?;
    Ok(rest.trim_end_matches('/').to_owned())
}

/// The digest of `app/service:tag` in the built-in registry, if it is there.
async fn registry_digest(
    client: &Client,
    creds: &RegistryCreds,
    app: &str,
    service: &str,
    tag: &str,
) -> Result<Option<String>> {
    let url = format!(
        "{}/v2/{app}/{service}/manifests/{tag}",
        client.server().trim_end_matches('/')
    );
    let resp = client
        .http()
        .head(&url)
        .basic_auth(&creds.username, Some(&creds.password))
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("asking the registry for {app}/{service}:{tag}"))?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    Ok(resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.starts_with("sha256:"))
        .map(str::to_owned))
}

fn progress(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
