//! The registry's repositories and images as a Rust API, for other front doors (the ECR
//! subset of the AWS-compatible API). Same objects as `slipway repo` and `/v2/`.

use crate::admin::{ImageInfo, RepositoryInfo};
use crate::names::Digest;
use crate::{Registry, RegistryError};

impl Registry {
    /// Checks a repository name (distribution's grammar).
    pub fn check_repository_name(name: &str) -> Result<(), String> {
        crate::names::validate_name(name)
    }

    pub async fn repository(&self, name: &str) -> Result<Option<RepositoryInfo>, RegistryError> {
        crate::admin::info(self, name).await
    }

    /// Every repository, by name.
    pub async fn repositories(&self) -> Result<Vec<RepositoryInfo>, RegistryError> {
        let mut out = Vec::new();
        for r in self.inner.db.list_repos(None, -1).await? {
            if let Some(i) = crate::admin::info(self, &r.name).await? {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Creates a repository; false when it exists.
    pub async fn create_repository(
        &self,
        name: &str,
        immutable: bool,
    ) -> Result<bool, RegistryError> {
        self.inner.db.create_repo(name, immutable).await
    }

    /// Switches tag mutability; false when the repository does not exist.
    pub async fn set_immutable(&self, name: &str, immutable: bool) -> Result<bool, RegistryError> {
        self.inner.db.set_immutable(name, immutable).await
    }

    /// Deletes a repository with its tags and manifests (the caller checks emptiness).
    pub async fn delete_repository(&self, name: &str) -> Result<bool, RegistryError> {
        match self.inner.db.delete_repo(name).await? {
            Some(uploads) => {
                for u in uploads {
                    self.inner.blobs.remove_upload(&u).await;
                    self.forget_upload(&u);
                }
                self.forget_lifecycle_state(name);
                tracing::info!(repository = %name, "deleted repository");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Images (top-level manifests) of a repository, newest first; `None` when it does not
    /// exist.
    pub async fn images(&self, name: &str) -> Result<Option<Vec<ImageInfo>>, RegistryError> {
        if self.inner.db.get_repo(name).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(crate::admin::image_list(self, name).await?))
    }

    /// Removes one tag; false when it did not exist.
    pub async fn delete_tag(&self, name: &str, tag: &str) -> Result<bool, RegistryError> {
        self.inner.db.delete_tag(name, tag).await
    }

    /// Removes a manifest and its tags; false when it did not exist.
    pub async fn delete_manifest(&self, name: &str, digest: &str) -> Result<bool, RegistryError> {
        self.inner.db.delete_manifest(name, digest).await
    }

    /// The digest a tag points to.
    pub async fn resolve_tag(
        &self,
        name: &str,
        tag: &str,
    ) -> Result<Option<String>, RegistryError> {
        self.inner.db.resolve_tag(name, tag).await
    }

    /// A manifest's media type and bytes.
    pub async fn manifest(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<(String, Vec<u8>)>, RegistryError> {
        let Some(row) = self.inner.db.get_manifest(name, digest).await? else {
            return Ok(None);
        };
        let Ok(d) = Digest::parse(digest) else {
            return Ok(None);
        };
        let bytes = self.inner.blobs.read_small(&d, row.size as u64 + 1).await?;
        Ok(Some((row.media_type, bytes)))
    }
}
