//! Use cases on the catalog: task definitions, ECS clusters, secrets and access keys.

use slipway_core::model::{ContainerSpec, ServiceKey, TaskDefinition};
use slipway_store::{AccessKey, Batch, ClusterRecord, Outcome, Write, now_ms, random_id};

use slipway_store::StoreError;

use crate::retry::{Attempt, retry};
use crate::{App, AppError, MAX_SECRET_BYTES, Result};

impl App {
    /// Registers the next revision of `family` (ECS `RegisterTaskDefinition`).
    pub async fn register_task_definition(
        &self,
        family: &str,
        container: ContainerSpec,
        ecs: Option<String>,
    ) -> Result<TaskDefinition> {
        let td = TaskDefinition {
            family: family.to_owned(),
            revision: 0,
            container,
            created_at: now_ms(),
            source: None,
            ecs,
            deregistered_at: None,
            version: 0,
        };
        // Two writers registering at once both read the same next revision: the loser
        // registers the one after.
        retry(|| async {
            match self
                .store()
                .commit(Batch::new().write(Write::TaskDefinition(Box::new(td.clone()))))
                .await?
                .pop()
            {
                Some(Outcome::TaskDefinition(td)) => Ok(*td),
                other => Err(AppError::internal(format!("unexpected outcome {other:?}")).into()),
            }
        })
        .await
    }

    /// Marks a revision INACTIVE (ECS `DeregisterTaskDefinition`): existing services keep
    /// it; new services and updates may not use it.
    pub async fn deregister_task_definition(
        &self,
        family: &str,
        revision: u32,
    ) -> Result<TaskDefinition> {
        retry(|| async {
            let mut td = self
                .store()
                .get_task_definition(family, revision)
                .await?
                .ok_or_else(|| {
                    AppError::not_found(format!("task definition {family}:{revision}"))
                })?;
            if td.deregistered_at.is_some() {
                return Ok(td);
            }
            td.deregistered_at = Some(now_ms());
            match self
                .store()
                .commit(Batch::new().write(Write::TaskDefinition(Box::new(td))))
                .await?
                .pop()
            {
                Some(Outcome::TaskDefinition(td)) => Ok(*td),
                other => Err(AppError::internal(format!("unexpected outcome {other:?}")).into()),
            }
        })
        .await
    }

    /// Creates an ECS cluster record (creating one that exists returns it).
    pub async fn create_cluster(&self, name: &str) -> Result<ClusterRecord> {
        retry(|| async {
            if let Some(c) = self.store().get_cluster(name).await? {
                return Ok(c);
            }
            let mut c = ClusterRecord {
                name: name.to_owned(),
                created_at: now_ms(),
                version: 0,
            };
            let out = self
                .store()
                .commit(Batch::new().write(Write::Cluster(c.clone())))
                .await?;
            c.version = out[0].version();
            Ok(c)
        })
        .await
    }

    /// Deletes an ECS cluster: refused while services or tasks of its app environment
    /// are active (ECS's rules). Returns whether a cluster record was removed.
    pub async fn delete_cluster(&self, name: &str, app: &str, env: &str) -> Result<bool> {
        let services = self.store().list_services(Some(app)).await?;
        if services.iter().any(|s| s.key.env == env) {
            return Err(AppError::conflict(
                "CLUSTER_HAS_SERVICES",
                "The Cluster cannot be deleted while Services are active.",
            ));
        }
        let standalone = ServiceKey::standalone(app, env);
        if !self
            .store()
            .list_tasks(&standalone, false)
            .await?
            .is_empty()
        {
            return Err(AppError::conflict(
                "CLUSTER_HAS_TASKS",
                "The Cluster cannot be deleted while Tasks are active.",
            ));
        }
        retry(|| async {
            let Some(c) = self.store().get_cluster(name).await? else {
                return Ok(false);
            };
            self.store()
                .commit(Batch::new().write(Write::RemoveCluster {
                    name: c.name,
                    version: c.version,
                }))
                .await?;
            Ok(true)
        })
        .await
    }

    /// Stores a new version of a secret, sealed; returns its version. With `expect`, only
    /// if the current version is that one (0: only if the secret does not exist).
    pub async fn set_secret(&self, name: &str, value: &str, expect: Option<u32>) -> Result<u32> {
        slipway_core::manifest::check_secret_name(name).map_err(AppError::invalid)?;
        if value.is_empty() {
            return Err(AppError::invalid(format!(
                "secret {name:?}: the value is empty"
            )));
        }
        if value.len() > MAX_SECRET_BYTES || value.contains('\0') {
            return Err(AppError::invalid(format!(
                "secret {name:?}: a value is text of at most {MAX_SECRET_BYTES} bytes without NUL characters"
            )));
        }
        let version = match expect {
            // The caller named the version it read: a lost race is its conflict.
            Some(_) => match self.put_secret(name, value, expect).await {
                Ok(v) => v,
                Err(Attempt::Lost(c)) => return Err(StoreError::Conflict(c).into()),
                Err(Attempt::Failed(e)) => return Err(e),
            },
            None => retry(|| self.put_secret(name, value, None)).await?,
        };
        tracing::info!(secret = %name, version, "secret set");
        Ok(version)
    }

    /// One attempt at writing the next version of a secret, sealed for its name and that
    /// version. (Older versions sealed for the name alone were re-sealed when the server
    /// started: [`App::seal_legacy_secrets`]; a write reads nothing but the newest version.)
    async fn put_secret(
        &self,
        name: &str,
        value: &str,
        expect: Option<u32>,
    ) -> std::result::Result<u32, Attempt> {
        let next = self
            .store()
            .newest_secret_version(name)
            .await?
            .map_or(1, |v| v + 1);
        let sealed = self
            .secrets()
            .seal(name, next, value.as_bytes())
            .map_err(|e| Attempt::Failed(AppError::internal(e)))?;
        let batch = Batch::new().write(Write::Secret {
            name: name.to_owned(),
            version: next,
            sealed,
            at: now_ms(),
            expected: expect,
        });
        let out = self.store().commit(batch).await?;
        Ok(out[0].version() as u32)
    }

    /// Re-seals every secret version still sealed for its name alone (written before
    /// versions were bound) bound to its name and version, each only if still as read; the
    /// server calls it when it starts. Returns how many were re-sealed.
    pub async fn seal_legacy_secrets(&self) -> Result<usize> {
        let mut n = 0;
        for name in self.store().secret_names().await? {
            let mut batch = Batch::new();
            for (version, old) in self.store().secret_versions(&name).await? {
                let Ok(opened) = self.secrets().open(&name, version, &old) else {
                    continue;
                };
                if opened.legacy {
                    let sealed = self
                        .secrets()
                        .seal(&name, version, &opened.value)
                        .map_err(AppError::internal)?;
                    batch = batch.write(Write::ResealSecret {
                        name: name.clone(),
                        version,
                        sealed,
                        old,
                    });
                }
            }
            let count = batch.writes.len();
            if count == 0 {
                continue;
            }
            match self.store().commit(batch).await {
                Ok(_) => {
                    tracing::info!(secret = %name, versions = count, "re-sealed legacy versions with their version bound");
                    n += count;
                }
                // Another server re-sealed them first.
                Err(slipway_store::StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }

    /// Marks a secret deleted (new deploys cannot use it); false when there was none.
    pub async fn delete_secret(&self, name: &str) -> Result<bool> {
        slipway_core::manifest::check_secret_name(name).map_err(AppError::invalid)?;
        let out = self
            .store()
            .commit(Batch::new().write(Write::DeleteSecret {
                name: name.to_owned(),
                at: now_ms(),
            }))
            .await?;
        let deleted = out[0] == Outcome::Done(true);
        if deleted {
            tracing::info!(secret = %name, "secret deleted");
        }
        Ok(deleted)
    }

    /// Creates an access key of the AWS-compatible API (its secret is shown once).
    pub async fn create_access_key(
        &self,
        name: Option<String>,
        read_only: bool,
        owner: Option<String>,
    ) -> Result<AccessKey> {
        if let Some(o) = &owner
            && self.identity(o).await?.is_none()
        {
            return Err(AppError::not_found(format!(
                "identity {o} (`slipway token ls` lists the live ones)"
            )));
        }
        if let Some(n) = &name
            && (n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)))
        {
            return Err(AppError::invalid(format!(
                "name {n:?} must be 1 to 64 letters, digits or +=,.@_-"
            )));
        }
        let id = format!("AKIA{}", random_id(8).to_ascii_uppercase());
        let secret = random_id(20);
        let mut key = AccessKey {
            sealed: Some(self.seal_key_secret(&id, &secret)?),
            id,
            secret: String::new(),
            name,
            read_only,
            created_at: now_ms(),
            revoked_at: None,
            owner,
            version: 0,
        };
        let out = self
            .store()
            .commit(Batch::new().write(Write::AccessKey(key.clone())))
            .await?;
        key.version = out[0].version();
        key.secret = secret;
        tracing::info!(id = %key.id, read_only = key.read_only, "created an access key");
        Ok(key)
    }

    /// Seals an access key's secret for the database, bound to the key's id (`:` is in no
    /// secret store name, so no secret can stand in for it).
    fn seal_key_secret(&self, id: &str, secret: &str) -> Result<String> {
        let sealed = self
            .secrets()
            .seal(&format!("access-key:{id}"), 1, secret.as_bytes())
            .map_err(AppError::internal)?;
        Ok(hex::encode(sealed))
    }

    /// Fills in the secret of a key read from the store (in memory only).
    pub fn open_access_key(&self, key: &mut AccessKey) -> Result<()> {
        let Some(sealed) = &key.sealed else {
            return Ok(());
        };
        let bytes = hex::decode(sealed).map_err(AppError::internal)?;
        let opened = self
            .secrets()
            .open(&format!("access-key:{}", key.id), 1, &bytes)
            .map_err(AppError::internal)?;
        key.secret = String::from_utf8(opened.value).map_err(AppError::internal)?;
        Ok(())
    }

    /// Seals the secrets of access keys written before secrets were sealed (run at start;
    /// returns how many were sealed). A key another server changed meanwhile is left for
    /// the next start.
    pub async fn seal_legacy_access_keys(&self) -> Result<usize> {
        let mut n = 0;
        for mut k in self.store().list_access_keys().await? {
            if k.sealed.is_some() || k.secret.is_empty() {
                continue;
            }
            k.sealed = Some(self.seal_key_secret(&k.id, &k.secret)?);
            k.secret = String::new();
            match self
                .store()
                .commit(Batch::new().write(Write::AccessKey(k)))
                .await
            {
                Ok(_) => n += 1,
                Err(slipway_store::StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if n > 0 {
            tracing::info!(
                keys = n,
                "sealed the secrets of access keys stored in clear"
            );
        }
        Ok(n)
    }

    /// Revokes an access key (revoking a revoked key changes nothing).
    pub async fn revoke_access_key(&self, id: &str) -> Result<AccessKey> {
        retry(|| async {
            let mut key = self.store().get_access_key(id).await?.ok_or_else(|| {
                AppError::not_found(format!(
                    "access key {id} (`slipway access-key ls` lists them)"
                ))
            })?;
            if key.revoked_at.is_some() {
                return Ok(key);
            }
            key.revoked_at = Some(now_ms());
            let out = self
                .store()
                .commit(Batch::new().write(Write::AccessKey(key.clone())))
                .await?;
            key.version = out[0].version();
            tracing::info!(id = %key.id, "revoked an access key");
            Ok(key)
        })
        .await
    }
}
