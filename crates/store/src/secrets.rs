//! The secret store's sealing: AES-256-GCM with a 32-byte key kept in a file (by default
//! `DATA_DIR/secret.key`, mode 0600), never in the database. Servers sharing a database
//! share the key file; the database keeps only the key's fingerprint, so a server with
//! another key is refused before it writes anything.
//!
//! A sealed value is `0x02 || nonce (12 bytes) || ciphertext || tag`, its associated data
//! binding the secret's name **and version** (`slipway-secret\0v2\0NAME\0VERSION` as 8
//! big-endian bytes), so a ciphertext moved to another name, or replayed into another
//! version row of the same name, fails to open. Values sealed before versions were bound
//! (`nonce || ciphertext || tag`, bound to the name only) still open ([`Opened::legacy`]
//! tells the caller, which re-seals them on the secret's next write). A legacy nonce whose
//! first byte happens to be the marker is told apart by trying both readings: only the right
//! one authenticates.
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

    /// Encrypts `value` for version `version` of the secret `name`.
    pub fn seal(&self, name: &str, version: u32, value: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut buf = value.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound(name, version)),
                &mut buf,
            )
            .map_err(|_| SecretError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(FORMAT_V2);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts version `version` of the secret `name`: a value sealed for exactly that
    /// name and version, or a legacy value sealed for the name alone.
    pub fn open(&self, name: &str, version: u32, sealed: &[u8]) -> Result<Opened, SecretError> {
        if let Some(rest) = sealed.strip_prefix(&[FORMAT_V2])
            && let Some(value) = self.open_with(rest, &bound(name, version))
        {
            return Ok(Opened {
                value,
                legacy: false,
            });
        }
        match self.open_with(sealed, name.as_bytes()) {
            Some(value) => Ok(Opened {
                value,
                legacy: true,
            }),
            None => Err(SecretError::Open(name.to_owned())),
        }
    }

    /// `nonce || ciphertext || tag` opened with `aad`.
    fn open_with(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The first byte of a value sealed with its name and version bound.
const FORMAT_V2: u8 = 0x02;

/// The associated data of version `version` of `name`. Secret names hold no NUL, so the
/// encoding is unambiguous.
fn bound(name: &str, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(name.len() + 32);
    aad.extend_from_slice(b"slipway-secret\0v2\0");
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&u64::from(version).to_be_bytes());
    aad
}

/// What a server before versions were bound wrote: `nonce || ciphertext || tag` with the
/// name alone as associated data (for tests of the legacy path).
#[cfg(any(test, feature = "testing"))]
pub fn legacy_seal(key: &[u8], name: &str, value: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let mut buf = value.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(name.as_bytes()),
        &mut buf,
    )
    .unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// An opened secret value.
pub struct Opened {
    pub value: Vec<u8>,
    /// Sealed for the name alone (before versions were bound): re-seal it.
    pub legacy: bool,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("legacy", &self.legacy)
            .finish_non_exhaustive()
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
        let sealed = b.seal("shop/db", 1, b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        // Two seals of one value differ (fresh nonce).
        assert_ne!(sealed, b.seal("shop/db", 1, b"hunter2").unwrap());
        let opened = b.open("shop/db", 1, &sealed).unwrap();
        assert_eq!(
            (opened.value.as_slice(), opened.legacy),
            (&b"hunter2"[..], false)
        );
        assert!(b.open("shop/other", 1, &sealed).is_err());
        // The same key file opens it after a restart; another key does not.
        let again = SecretBox::load_or_create(&dir).unwrap();
        assert_eq!(again.open("shop/db", 1, &sealed).unwrap().value, b"hunter2");
        let other = SecretBox::from_key(&[7u8; 32]).unwrap();
        assert!(other.open("shop/db", 1, &sealed).is_err());
        assert_eq!(again.fingerprint(), b.fingerprint());
        assert_ne!(other.fingerprint(), b.fingerprint());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_ciphertext_is_bound_to_its_name_and_version() {
        let b = SecretBox::from_key(&[9u8; 32]).unwrap();
        let v3 = b.seal("shop/db", 3, b"hunter2").unwrap();
        assert_eq!(v3[0], FORMAT_V2);
        assert_eq!(b.open("shop/db", 3, &v3).unwrap().value, b"hunter2");
        // Replayed into another version row of the same name: refused.
        for version in [0, 1, 2, 4, u32::MAX] {
            let e = b.open("shop/db", version, &v3).unwrap_err();
            assert!(
                matches!(e, SecretError::Open(ref n) if n == "shop/db"),
                "{e}"
            );
        }
        // Moved to another name, at the same version: refused.
        assert!(b.open("shop/db2", 3, &v3).is_err());
        assert!(b.open("shop", 3, &v3).is_err());
        // Without its marker it is no legacy value either (the name alone does not open it).
        assert!(b.open("shop/db", 3, &v3[1..]).is_err());
        // A flipped bit anywhere is refused.
        for i in 0..v3.len() {
            let mut bad = v3.clone();
            bad[i] ^= 0x01;
            assert!(b.open("shop/db", 3, &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_legacy_value_still_opens_and_says_so() {
        let key = [9u8; 32];
        let b = SecretBox::from_key(&key).unwrap();
        // Any nonce, including one whose first byte is the new format's marker.
        for first in [0x00, FORMAT_V2, 0xff] {
            let mut nonce = [5u8; NONCE_LEN];
            nonce[0] = first;
            let old = legacy_seal(&key, "shop/db", b"hunter2", nonce);
            for version in [1, 7] {
                let opened = b.open("shop/db", version, &old).unwrap();
                assert_eq!(opened.value, b"hunter2");
                assert!(opened.legacy, "nonce starting {first:#x}");
            }
            // Still bound to its name.
            assert!(b.open("shop/other", 1, &old).is_err());
            // Another key cannot open it.
            let other = SecretBox::from_key(&[8u8; 32]).unwrap();
            assert!(other.open("shop/db", 1, &old).is_err());
        }
        // Debug never shows a value.
        let opened = b
            .open("shop/db", 1, &b.seal("shop/db", 1, b"hunter2").unwrap())
            .unwrap();
        assert!(!format!("{opened:?}").contains("hunter2"));
    }
}
