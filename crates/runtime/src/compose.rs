//! Engine calls for containers Slipway does not own (docker compose services watched by
//! `slipway watch`): find them by label, inspect their image and health, pull with registry
//! credentials, tag and remove images. No decisions here either.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::{
    CreateImageOptions, InspectContainerOptions, ListContainersOptions, RemoveImageOptions,
    TagImageOptions,
};
use futures_util::StreamExt;

use crate::{DockerRuntime, Result, RuntimeError, split_tag};

/// Registry credentials for a pull (sent to the engine as `X-Registry-Auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullAuth {
    pub username: String,
    pub password: String,
    /// `host[:port]` of the registry.
    pub server: String,
}

/// Docker's health status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The container has no health check.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// What `slipway watch` needs to know about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDetails {
    pub id: String,
    pub name: String,
    /// The image id (`sha256:...`) the container runs.
    pub image_id: String,
    /// The image reference it was created from (`Config.Image`).
    pub config_image: String,
    /// `running`, `exited`, `restarting`, `created`, `dead`, `paused`, `removing`.
    pub status: String,
    pub exit_code: Option<i64>,
    pub restart_count: i64,
    pub started_at: Option<String>,
    pub health: Health,
    /// Output of the last failing health probe, trimmed.
    pub health_output: Option<String>,
    pub labels: HashMap<String, String>,
}

/// An image as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetails {
    pub id: String,
    /// `repo@sha256:...` references.
    pub repo_digests: Vec<String>,
    pub repo_tags: Vec<String>,
    /// The image declares a `HEALTHCHECK` (other than `NONE`).
    pub has_healthcheck: bool,
}

impl DockerRuntime {
    /// Ids of the containers (running or not) that carry every `key=value` label given.
    pub async fn containers_with_labels(&self, labels: &[String]) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_owned(), labels.to_vec())]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Details of one container; `None` when it does not exist (any more).
    pub async fn container_details(&self, id: &str) -> Result<Option<ContainerDetails>> {
        let c = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let e = RuntimeError::from(e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let st = c.state.unwrap_or_default();
        let config = c.config.unwrap_or_default();
        let health = match st.health.as_ref().and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
            Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
            Some(HealthStatusEnum::STARTING) => Health::Starting,
            _ => Health::None,
        };
        let health_output = st
            .health
            .as_ref()
            .and_then(|h| h.log.as_ref())
            .and_then(|l| {
                l.iter()
                    .rev()
                    .find(|r| r.exit_code.unwrap_or(0) != 0)
                    .and_then(|r| r.output.clone())
            })
            .map(|o| o.trim().chars().take(300).collect());
        let status = match st.status {
            Some(ContainerStateStatusEnum::RUNNING) => "running",
            Some(ContainerStateStatusEnum::RESTARTING) => "restarting",
            Some(ContainerStateStatusEnum::CREATED) => "created",
            Some(ContainerStateStatusEnum::PAUSED) => "paused",
            Some(ContainerStateStatusEnum::REMOVING) => "removing",
            Some(ContainerStateStatusEnum::DEAD) => "dead",
            _ => "exited",
        };
        Ok(Some(ContainerDetails {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image_id: c.image.unwrap_or_default(),
            config_image: config.image.unwrap_or_default(),
            status: status.to_owned(),
            exit_code: st.exit_code,
            restart_count: c.restart_count.unwrap_or(0),
            started_at: st.started_at,
            health,
            health_output,
            labels: config.labels.unwrap_or_default(),
        }))
    }

    /// An image by reference or id; `None` when the engine does not have it.
    pub async fn image_details(&self, reference: &str) -> Result<Option<ImageDetails>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(ImageDetails {
                has_healthcheck: i
                    .config
                    .as_ref()
                    .and_then(|c| c.healthcheck.as_ref())
                    .and_then(|h| h.test.as_ref())
                    .and_then(|t| t.first())
                    .is_some_and(|t| t != "NONE"),
                id: i.id.unwrap_or_default(),
                repo_digests: i.repo_digests.unwrap_or_default(),
                repo_tags: i.repo_tags.unwrap_or_default(),
            })),
            Err(e) => {
                let e = RuntimeError::from(e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// Pulls `repo:tag` or `repo@digest`, with credentials when given.
    pub async fn pull_image(&self, image: &str, auth: Option<&PullAuth>) -> Result<()> {
        let (repo, tag) = split_tag(image);
        let opts = CreateImageOptions {
            from_image: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let creds = auth.map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(a.server.clone()),
            ..Default::default()
        });
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                return Err(RuntimeError::ImageUnavailable {
                    image: image.into(),
                    reason: format!("pull failed: {e}"),
                });
            }
        }
        Ok(())
    }

    /// Tags an image (by id or reference) as `repo:tag`.
    pub async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        self.docker
            .tag_image(
                source,
                Some(TagImageOptions {
                    repo: Some(repo.to_owned()),
                    tag: Some(tag.to_owned()),
                }),
            )
            .await?;
        Ok(())
    }

    /// Removes an image reference (not forced: an image a container uses stays). Returns
    /// whether anything was removed; a missing or still-used image is not an error.
    pub async fn remove_image(&self, reference: &str) -> Result<bool> {
        let opts = RemoveImageOptions {
            force: false,
            noprune: false,
            ..Default::default()
        };
        match self.docker.remove_image(reference, Some(opts), None).await {
            Ok(items) => Ok(!items.is_empty()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
