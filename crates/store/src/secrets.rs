//! The secret store's sealing: AES-256-GCM with a 32-byte key kept in a file (by default
//! `DATA_DIR/secret.key`, mode 0600), never in the database. Servers sharing a database
//! share the key file; the database keeps only the key's fingerprint, so a server with
//! another key is refused before it writes anything. Each sealed value is
//! `nonce (12 bytes) || ciphertext || tag`, bound to the secret's name as associated data so a
//! value cannot be moved to another name.
//!
//! This module owns the key and the cipher; it may read and write the key file and nothing
//! else. Values pass through it and are never logged.

use std::fmt;
use std::io::Write;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Errors of the secret box. None carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "secret key file {0} is not 32 bytes; restore it from a backup (the stored secrets cannot be read without it)"
    )]
    BadKey(String),
    #[error(
        "secret {0:?} cannot be decrypted with this server's key (data directory moved without secret.key?)"
    )]
    Open(String),
    #[error("the system random generator failed")]
    Random,
}

/// Seals and opens secret values.
#[derive(Clone)]
pub struct SecretBox {
    key: std::sync::Arc<LessSafeKey>,
    rng: SystemRandom,
    fingerprint: String,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Loads `dir/secret.key`, creating it (0600) with a fresh random key on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, SecretError> {
        Self::load_or_create_file(&dir.join("secret.key"))
    }

    /// Loads the key file at `path`; `None` when there is none yet.
    pub fn load_file(path: &Path) -> Result<Option<Self>, SecretError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_key(&bytes)
                .map(Some)
                .ok_or_else(|| SecretError::BadKey(path.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretError::KeyFile {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Loads the key file at `path`, creating it (0600) with a fresh random key when missing.
    pub fn load_or_create_file(path: &Path) -> Result<Self, SecretError> {
        let path = path.to_path_buf();
        let err = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| SecretError::Random)?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&path).map_err(err)?;
                f.write_all(&key).map_err(err)?;
                f.sync_all().map_err(err)?;
                key.to_vec()
            }
            Err(e) => return Err(err(e)),
        };
        Self::from_key(&bytes).ok_or_else(|| SecretError::BadKey(path.display().to_string()))
    }

    /// A box from raw key bytes (32 of them).
    pub fn from_key(bytes: &[u8]) -> Option<Self> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).ok()?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"slipway secret key fingerprint\0");
        ctx.update(bytes);
        let fingerprint = ctx
            .finish()
            .as_ref()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(Self {
            key: std::sync::Arc::new(LessSafeKey::new(key)),
            rng: SystemRandom::new(),
            fingerprint,
        })
    }

    /// A one-way fingerprint of the key (what the database keeps to tell keys apart).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Encrypts `value` for the secret `name`.
    pub fn seal(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut buf = value.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts a value sealed for `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Open(name.to_owned()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| SecretError::Open(name.to_owned()))?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf)
            .map_err(|_| SecretError::Open(name.to_owned()))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_binds_the_name() {
        let dir = std::env::temp_dir().join(format!("slipway-secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("secret.key"));
        let b = SecretBox::load_or_create(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = b.seal("shop/db", b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        // Two seals of one value differ (fresh nonce).
        assert_ne!(sealed, b.seal("shop/db", b"hunter2").unwrap());
        assert_eq!(b.open("shop/db", &sealed).unwrap(), b"hunter2");
        assert!(b.open("shop/other", &sealed).is_err());
        // The same key file opens it after a restart; another key does not.
        let again = SecretBox::load_or_create(&dir).unwrap();
        assert_eq!(again.open("shop/db", &sealed).unwrap(), b"hunter2");
        let other = SecretBox::from_key(&[7u8; 32]).unwrap();
        assert!(other.open("shop/db", &sealed).is_err());
        assert_eq!(again.fingerprint(), b.fingerprint());
        assert_ne!(other.fingerprint(), b.fingerprint());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
