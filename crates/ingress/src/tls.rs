//! TLS for the ingress: certificates from PEM files, picked by SNI, reloaded when they change.
//!
//! * A default pair (`--tls-cert FILE --tls-key FILE`) serves clients whose name matches no
//!   other certificate, and clients that send no name (an IP address).
//! * A directory (`--tls-dir DIR`) holds one `NAME.crt` / `NAME.key` pair per host name;
//!   `*.example.com.crt` (or `_.example.com.crt`, easier in a shell) is a wildcard for one
//!   label. SNI picks by exact name, then the wildcard of the name's parent, then the default
//!   pair; with no match and no default the handshake fails.
//!
//! Every second the files' modification times (and sizes, inodes) are compared with what was
//! loaded; a pair that changed, and then stayed the same for one more check (so a pair
//! written file by file is not read half way), is loaded again. A pair that no longer loads
//! keeps its previous certificate and gets one warning line per change. The resolver is asked
//! at each handshake, so established connections are never touched by a reload.
//!
//! ALPN offers `h2` and `http/1.1`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// TLS listeners and where their certificates come from.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub addrs: Vec<SocketAddr>,
    /// The default pair (certificate chain, private key).
    pub default_pair: Option<(PathBuf, PathBuf)>,
    /// A directory of `NAME.crt` / `NAME.key` pairs.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a PEM certificate chain: {detail}", path.display())]
    BadCert { path: PathBuf, detail: String },
    #[error("{} holds no certificate", path.display())]
    NoCert { path: PathBuf },
    #[error("{} is not a PEM private key: {detail}", path.display())]
    BadKey { path: PathBuf, detail: String },
    #[error("{} and {} do not make a usable certificate and key pair: {source}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "no TLS certificate: give --tls-cert and --tls-key, or a --tls-dir holding NAME.crt and NAME.key pairs"
    )]
    NoCertificates,
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// The crypto provider (ring) every TLS piece of Slipway uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain and its private key (PEM) and checks that they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    pair_from_pem(&read(cert)?, &read(key)?, cert, key)
}

/// [`load_pair`] from contents already read (`cert` and `key` name them in errors).
pub fn pair_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCert {
            path: cert.to_owned(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_owned(),
        });
    }
    let k = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_owned(),
        detail: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, k, &provider()).map_err(|source| TlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// The certificates in service, by the names they answer to.
#[derive(Debug, Default)]
pub struct Certs {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Wildcards by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Certs {
    /// The certificate for a client that asked for `sni`: exact name, then the wildcard of its
    /// parent, then the default.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = self.exact.get(&name) {
                return Some(c.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(c) = self.wildcard.get(parent)
            {
                return Some(c.clone());
            }
        }
        self.default.clone()
    }

    fn is_empty(&self) -> bool {
        self.default.is_none() && self.exact.is_empty() && self.wildcard.is_empty()
    }
}

/// Answers each handshake from the certificates loaded last.
#[derive(Debug, Default)]
pub struct SniResolver(ArcSwap<Certs>);

impl SniResolver {
    pub fn certs(&self) -> Arc<Certs> {
        self.0.load_full()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().pick(hello.server_name())
    }
}

/// What identifies one version of a file: modification time, size, inode.
type FileStamp = Option<(SystemTime, u64, u64)>;
type PairStamp = (FileStamp, FileStamp);

fn stamp(p: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// One certificate pair and what was loaded from it.
#[derive(Debug)]
struct Pair {
    cert: PathBuf,
    key: PathBuf,
    /// The files' stamp when `loaded` (or the last failure) was read.
    seen: PairStamp,
    /// A changed stamp waiting to be stable for one check before it is read.
    pending: Option<PairStamp>,
    loaded: Option<Arc<CertifiedKey>>,
}

/// The key under which a pair is kept: `""` for the default pair, else the host name
/// (`*.example.com` for wildcards).
const DEFAULT: &str = "";

/// Host name of a `--tls-dir` certificate file, if it is one.
fn name_of(file: &Path) -> Option<String> {
    if file.extension()? != "crt" {
        return None;
    }
    let stem = file.file_stem()?.to_str()?.to_ascii_lowercase();
    let name = match stem.strip_prefix("_.") {
        Some(rest) => format!("*.{rest}"),
        None => stem,
    };
    (!name.is_empty()).then_some(name)
}

/// Loads the certificate files and keeps them current.
#[derive(Debug)]
struct Loader {
    default_pair: Option<(PathBuf, PathBuf)>,
    dir: Option<PathBuf>,
    pairs: BTreeMap<String, Pair>,
}

impl Loader {
    /// The pairs the files describe now.
    fn wanted(&self) -> BTreeMap<String, (PathBuf, PathBuf)> {
        let mut out = BTreeMap::new();
        if let Some(dir) = &self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for e in entries.flatten() {
                let path = e.path();
                if let Some(name) = name_of(&path) {
                    let key = path.with_extension("key");
                    out.insert(name, (path, key));
                }
            }
        }
        if let Some((c, k)) = &self.default_pair {
            out.insert(DEFAULT.to_owned(), (c.clone(), k.clone()));
        }
        out
    }

    /// First load: every pair must load.
    fn initial(&mut self) -> Result<Certs, TlsError> {
        if let Some(dir) = &self.dir {
            std::fs::read_dir(dir).map_err(|source| TlsError::Read {
                path: dir.clone(),
                source,
            })?;
        }
        for (name, (cert, key)) in self.wanted() {
            let seen = (stamp(&cert), stamp(&key));
            let loaded = Arc::new(load_pair(&cert, &key)?);
            self.pairs.insert(
                name,
                Pair {
                    cert,
                    key,
                    seen,
                    pending: None,
                    loaded: Some(loaded),
                },
            );
        }
        let certs = self.certs();
        if certs.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        Ok(certs)
    }

    /// One check of the files; returns new certificates when anything changed.
    fn poll(&mut self) -> Option<Certs> {
        let wanted = self.wanted();
        let mut changed = false;
        let gone: Vec<String> = self
            .pairs
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.pairs.remove(&name);
            tracing::info!(name = %name, "TLS certificate removed (its file is gone)");
            changed = true;
        }
        for (name, (cert, key)) in wanted {
            let now = (stamp(&cert), stamp(&key));
            let pair = self.pairs.entry(name.clone()).or_insert_with(|| Pair {
                cert,
                key,
                seen: (None, None),
                pending: None,
                loaded: None,
            });
            if now == pair.seen {
                pair.pending = None;
                continue;
            }
            // Read a changed pair once it has stayed the same for one check.
            if pair.pending != Some(now) {
                pair.pending = Some(now);
                continue;
            }
            pair.pending = None;
            pair.seen = now;
            let label = if name == DEFAULT { "default" } else { &name };
            match load_pair(&pair.cert, &pair.key) {
                Ok(k) => {
                    pair.loaded = Some(Arc::new(k));
                    changed = true;
                    tracing::info!(name = %label, cert = %pair.cert.display(), "reloaded the TLS certificate");
                }
                Err(e) if pair.loaded.is_some() => {
                    tracing::warn!(name = %label, "kept the previous TLS certificate for {label}: {e}");
                }
                Err(e) => {
                    tracing::warn!(name = %label, "no TLS certificate for {label}: {e}");
                }
            }
        }
        changed.then(|| self.certs())
    }

    fn certs(&self) -> Certs {
        let mut c = Certs::default();
        for (name, pair) in &self.pairs {
            let Some(k) = &pair.loaded else { continue };
            if name == DEFAULT {
                c.default = Some(k.clone());
            } else if let Some(parent) = name.strip_prefix("*.") {
                c.wildcard.insert(parent.to_owned(), k.clone());
            } else {
                c.exact.insert(name.clone(), k.clone());
            }
        }
        c
    }
}

/// A running TLS setup: the acceptor for listeners and the resolver it reads.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub resolver: Arc<SniResolver>,
}

impl Tls {
    /// Loads every certificate (failing when one does not load, or there is none) and starts
    /// a thread that reloads them while the returned [`Tls`] (its resolver) is alive.
    pub fn start(opts: &TlsOptions) -> Result<Tls, TlsError> {
        let mut loader = Loader {
            default_pair: opts.default_pair.clone(),
            dir: opts.dir.clone(),
            pairs: BTreeMap::new(),
        };
        let resolver = Arc::new(SniResolver(ArcSwap::from_pointee(loader.initial()?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let weak: Weak<SniResolver> = Arc::downgrade(&resolver);
        std::thread::Builder::new()
            .name("tls-reload".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(RELOAD_INTERVAL);
                    let Some(r) = weak.upgrade() else { return };
                    if let Some(certs) = loader.poll() {
                        r.0.store(Arc::new(certs));
                    }
                }
            })
            .map_err(|e| TlsError::Read {
                path: PathBuf::from("(reload thread)"),
                source: e,
            })?;
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, file: &str, names: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap()
        .self_signed(&key)
        .unwrap();
        std::fs::write(dir.join(format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn served(certs: &Certs, sni: Option<&str>) -> Option<Vec<u8>> {
        certs.pick(sni).map(|k| k.cert[0].as_ref().to_vec())
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let d = tempfile::tempdir().unwrap();
        let certs_dir = d.path().join("certs");
        std::fs::create_dir(&certs_dir).unwrap();
        let a = write_pair(&certs_dir, "a.test", &["a.test"]);
        let w = write_pair(&certs_dir, "_.w.test", &["*.w.test"]);
        let def = write_pair(d.path(), "default", &["default.test"]);
        let mut l = Loader {
            default_pair: Some((d.path().join("default.crt"), d.path().join("default.key"))),
            dir: Some(certs_dir),
            pairs: BTreeMap::new(),
        };
        let c = l.initial().unwrap();
        assert_eq!(served(&c, Some("a.test")), Some(a.clone()));
        assert_eq!(served(&c, Some("A.Test.")), Some(a));
        assert_eq!(served(&c, Some("x.w.test")), Some(w));
        assert_eq!(served(&c, Some("y.x.w.test")), Some(def.clone()));
        assert_eq!(served(&c, Some("other.test")), Some(def.clone()));
        assert_eq!(served(&c, None), Some(def));
    }

    #[test]
    fn reload_needs_a_stable_change_and_keeps_the_old_pair_when_the_new_one_is_bad() {
        let d = tempfile::tempdir().unwrap();
        let first = write_pair(d.path(), "a.test", &["a.test"]);
        let mut l = Loader {
            default_pair: None,
            dir: Some(d.path().to_owned()),
            pairs: BTreeMap::new(),
        };
        l.initial().unwrap();
        assert!(l.poll().is_none(), "nothing changed");
        let second = write_pair(d.path(), "a.test", &["a.test"]);
        assert!(l.poll().is_none(), "a change is read once it is stable");
        let c = l.poll().expect("the new pair");
        assert_eq!(served(&c, Some("a.test")), Some(second.clone()));
        assert_ne!(first, second);

        std::fs::write(d.path().join("a.test.crt"), "not a certificate").unwrap();
        assert!(l.poll().is_none());
        assert!(l.poll().is_none(), "a bad pair changes nothing");
        assert_eq!(served(&l.certs(), Some("a.test")), Some(second));

        // A key that does not match the certificate is refused too.
        let other = rcgen::KeyPair::generate().unwrap();
        write_pair(d.path(), "a.test", &["a.test"]);
        std::fs::write(d.path().join("a.test.key"), other.serialize_pem()).unwrap();
        let err = load_pair(&d.path().join("a.test.crt"), &d.path().join("a.test.key"));
        assert!(matches!(err, Err(TlsError::Pair { .. })), "{err:?}");
    }

    #[test]
    fn nothing_to_serve_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let mut l = Loader {
            default_pair: None,
            dir: Some(d.path().to_owned()),
            pairs: BTreeMap::new(),
        };
        assert!(matches!(l.initial(), Err(TlsError::NoCertificates)));
    }
}
