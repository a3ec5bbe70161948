//! Identities and the audit log: named tokens with a role and a scope, who a credential
//! belongs to, and the record of every mutating call.
//!
//! The first-start admin token (only its hash is kept, under [`ADMIN_TOKEN_META_KEY`]) is
//! the identity `admin`. Named identities are created with a token (shown once; only its
//! SHA-256 is kept) and revoked by name; revoking one revokes its access keys, and every
//! credential issued to it (registry passwords and tokens) is checked against it on each
//! use, so a revocation takes effect at the next request on every server (lookups are
//! cached only until the store's next write anywhere).
//!
//! Permission rules themselves are pure ([`slipway_core::access`]); the faces check them.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use slipway_core::access::{Identity, Role, validate_identity_name};
use slipway_store::{AccessKey, AuditEntry, Batch, IdentityRecord, Write, now_ms, random_id};
use subtle::ConstantTimeEq;

use crate::{App, AppError, Result};

/// Meta key under which the SHA-256 of the admin token is stored (never the token itself).
pub const ADMIN_TOKEN_META_KEY: &str = "admin_token_sha256";
/// The name of the first-start admin token's identity.
pub const ADMIN_IDENTITY: &str = "admin";

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Lookups of identities, valid until the store's next write.
#[derive(Default)]
pub(crate) struct IdentityCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    generation: u64,
    by_token: HashMap<String, Option<Identity>>,
    by_name: HashMap<String, Option<Identity>>,
}

const CACHE_MAX: usize = 4096;

impl IdentityCache {
    fn get(&self, generation: u64, token: bool, key: &str) -> Option<Option<Identity>> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.generation != generation {
            c.generation = generation;
            c.by_token.clear();
            c.by_name.clear();
            return None;
        }
        let map = if token { &c.by_token } else { &c.by_name };
        map.get(key).cloned()
    }

    fn put(&self, generation: u64, token: bool, key: &str, v: Option<Identity>) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.generation != generation {
            return;
        }
        let map = if token {
            &mut c.by_token
        } else {
            &mut c.by_name
        };
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(key.to_owned(), v);
    }
}

/// A new identity and its token (the only time the token is shown).
#[derive(Debug, Clone)]
pub struct NewIdentity {
    pub record: IdentityRecord,
    pub token: String,
}

impl App {
    /// The identity a bearer token belongs to, if it is the admin token or a live named
    /// identity's.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<Identity>> {
        self.authenticate_hash(&hash_token(token)).await
    }

    /// The live identity of a token known by its hash ([`hash_token`]): what a session
    /// that once presented the token re-checks on every request, so revoking the token
    /// ends the session.
    pub async fn authenticate_hash(&self, hash: &str) -> Result<Option<Identity>> {
        let hash = hash.to_owned();
        let generation = self.store().generation();
        if let Some(hit) = self.inner.identities.get(generation, true, &hash) {
            return Ok(hit);
        }
        let admin = self.store().get_meta(ADMIN_TOKEN_META_KEY).await?;
        let found = if admin
            .as_deref()
            .is_some_and(|a| bool::from(a.as_bytes().ct_eq(hash.as_bytes())))
        {
            Some(Identity::admin(ADMIN_IDENTITY))
        } else {
            self.store()
                .identity_by_token(&hash)
                .await?
                .filter(|r| r.revoked_at.is_none())
                .map(|r| r.identity)
        };
        self.inner
            .identities
            .put(generation, true, &hash, found.clone());
        Ok(found)
    }

    /// Whether `token` is the first-start admin token (to tell a user who tries it where
    /// it does not belong which credential to use instead).
    pub async fn is_admin_token(&self, token: &str) -> bool {
        matches!(self.authenticate_token(token).await, Ok(Some(i)) if i.name == ADMIN_IDENTITY && i.role == Role::Admin)
    }

    /// A live identity by name (`admin` is the first-start admin; `key:ID` the identity of
    /// a live access key, see [`App::key_identity`]).
    pub async fn identity(&self, name: &str) -> Result<Option<Identity>> {
        if name == ADMIN_IDENTITY {
            return Ok(Some(Identity::admin(ADMIN_IDENTITY)));
        }
        if let Some(id) = name.strip_prefix("key:") {
            return match self.store().get_access_key(id).await? {
                Some(k) => self.key_identity(&k).await,
                None => Ok(None),
            };
        }
        self.named_identity(name).await
    }

    /// A live named identity (or the admin).
    async fn named_identity(&self, name: &str) -> Result<Option<Identity>> {
        if name == ADMIN_IDENTITY {
            return Ok(Some(Identity::admin(ADMIN_IDENTITY)));
        }
        let generation = self.store().generation();
        if let Some(hit) = self.inner.identities.get(generation, false, name) {
            return Ok(hit);
        }
        let found = self
            .store()
            .get_identity(name)
            .await?
            .filter(|r| r.revoked_at.is_none())
            .map(|r| r.identity);
        self.inner
            .identities
            .put(generation, false, name, found.clone());
        Ok(found)
    }

    /// Who an access key acts as: its owner (and dies with it), else the admin under the
    /// key's name; a read-only key is a reader either way. `None` when the key or its owner
    /// is revoked.
    pub async fn key_identity(&self, key: &AccessKey) -> Result<Option<Identity>> {
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        let mut who = match &key.owner {
            Some(o) => match self.named_identity(o).await? {
                Some(i) => i,
                None => return Ok(None),
            },
            None => Identity::admin(key.name.as_deref().unwrap_or(&key.id)),
        };
        if key.read_only {
            who.role = Role::Reader;
        }
        Ok(Some(who))
    }

    /// Creates a named identity with a role and an optional scope; its token is returned
    /// once.
    pub async fn create_identity(
        &self,
        name: &str,
        role: Role,
        apps: Vec<String>,
        envs: Vec<String>,
    ) -> Result<NewIdentity> {
        validate_identity_name(name).map_err(AppError::invalid)?;
        if name == ADMIN_IDENTITY {
            return Err(AppError::invalid(
                "the name admin belongs to the first-start admin token; choose another name",
            ));
        }
        if role == Role::Admin && (!apps.is_empty() || !envs.is_empty()) {
            return Err(AppError::invalid(
                "an admin cannot be scoped to apps or environments; give --role deployer a scope instead",
            ));
        }
        for a in apps.iter().chain(&envs) {
            slipway_core::model::validate_name(a).map_err(AppError::invalid)?;
        }
        let token = format!("slw_{}", random_id(32));
        let mut record = IdentityRecord {
            identity: Identity {
                name: name.to_owned(),
                role,
                apps,
                envs,
            },
            token_sha256: hash_token(&token),
            created_at: now_ms(),
            revoked_at: None,
            version: 0,
        };
        let out = self
            .store()
            .commit(Batch::new().write(Write::Identity(record.clone())))
            .await
            .map_err(|e| match e {
                slipway_store::StoreError::Conflict(_) => AppError::conflict(
                    "ALREADY_EXISTS",
                    format!(
                        "identity {name} already exists (`slipway token ls` lists them; a revoked name is not reused)"
                    ),
                ),
                e => e.into(),
            })?;
        record.version = out[0].version();
        tracing::info!(identity = name, role = %role, "created an identity");
        Ok(NewIdentity { record, token })
    }

    /// Identities, oldest first (never their tokens).
    pub async fn list_identities(&self) -> Result<Vec<IdentityRecord>> {
        Ok(self.store().list_identities().await?)
    }

    /// Revokes an identity and its access keys (revoking a revoked one changes nothing).
    pub async fn revoke_identity(&self, name: &str) -> Result<IdentityRecord> {
        crate::retry::retry(|| async {
            let mut rec = self.store().get_identity(name).await?.ok_or_else(|| {
                AppError::not_found(format!("identity {name} (`slipway token ls` lists them)"))
            })?;
            let now = now_ms();
            let mut batch = Batch::new();
            if rec.revoked_at.is_none() {
                rec.revoked_at = Some(now);
                batch = batch.write(Write::Identity(rec.clone()));
            }
            for mut k in self.store().list_access_keys().await? {
                if k.owner.as_deref() == Some(name) && k.revoked_at.is_none() {
                    k.revoked_at = Some(now);
                    batch = batch.write(Write::AccessKey(k));
                }
            }
            let revoking = rec.revoked_at == Some(now);
            let out = self.store().commit(batch).await?;
            if revoking && let Some(o) = out.first() {
                rec.version = o.version();
            }
            tracing::info!(identity = name, "revoked an identity");
            Ok(rec)
        })
        .await
    }

    /// Appends to the audit log.
    pub async fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.store()
            .commit(Batch::new().write(Write::Audit(entry)))
            .await?;
        Ok(())
    }
}
