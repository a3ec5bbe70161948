//! TLS on the API address (and so on the registry: `docker` on other hosts needs it).
//!
//! * `--tls-cert FILE --tls-key FILE`: PEM files, reloaded when their contents change (read
//!   every second; a change is taken once it has stayed the same for one check, so a pair
//!   written one file after the other is read whole) and on `SIGHUP`. A broken new pair
//!   keeps the old one serving, with one log line. New connections get the new pair;
//!   established ones keep theirs.
//! * `--tls-auto`: on first start a private CA is made in `DATA_DIR/ca/` (`ca.crt`, `ca.key`
//!   mode 0600); it issues the server certificate (`server.crt`, `server.key`) for
//!   `localhost`, the host name, the loopback addresses, the bound address (or, when bound to
//!   every interface, the machine's addresses) and each `--tls-san`. The certificate is
//!   issued again when that list changes. `slipway registry ca` prints the CA for clients.
//!
//! One port serves both: a connection whose first byte is a TLS handshake gets TLS; plain
//! HTTP is served only to loopback peers (the CLI, the local engine's pulls) and refused
//! otherwise. When the API address is a specific non-loopback address, a second, plain
//! listener on `127.0.0.1` with the same port keeps the local clients working.
//! Both kinds of connection read through [`crate::lowat::LowatStream`] (fewer wake-ups for
//! uploads) and are served by [`crate::limits::serve`] (timeouts and connection cap).

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use slipway_ingress::tls::provider;
use slipway_supervise::{LoopSpec, Supervisor};

/// Reads a certificate chain and key (PEM) that belong together (shared with the ingress).
fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    Ok(slipway_ingress::tls::load_pair(cert, key)?)
}

/// Serves whatever pair was loaded last. Each handshake picks the current pair, so a reload
/// never touches established connections.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("cert lock").clone())
    }
}

/// How often the certificate files are read.
const POLL: Duration = Duration::from_secs(1);

/// The contents of the certificate and key files (`None`: unreadable).
type Contents = (Option<Vec<u8>>, Option<Vec<u8>>);

fn read_contents(cert: &Path, key: &Path) -> Contents {
    (std::fs::read(cert).ok(), std::fs::read(key).ok())
}

/// Follows the certificate files by their contents.
struct Reloader {
    cert: PathBuf,
    key: PathBuf,
    /// The contents last loaded, or last found broken.
    seen: Contents,
    /// Changed contents waiting to be the same at the next check (so a pair written one
    /// file after the other is read once both are in place).
    pending: Option<Contents>,
}

impl Reloader {
    /// One check: a new pair when the files changed (and stayed the same for one check, or
    /// `now` is set: SIGHUP) and the new pair loads. A broken pair is reported once (one log
    /// line per change of the files) and the old pair keeps serving.
    fn check(&mut self, now: bool) -> Option<CertifiedKey> {
        let contents = read_contents(&self.cert, &self.key);
        if contents == self.seen {
            self.pending = None;
            return None;
        }
        if !now && self.pending.as_ref() != Some(&contents) {
            self.pending = Some(contents);
            return None;
        }
        self.pending = None;
        let loaded = match &contents {
            (Some(c), Some(k)) => slipway_ingress::tls::pair_from_pem(c, k, &self.cert, &self.key)
                .map_err(|e| e.to_string()),
            (None, _) => Err(format!("cannot read {}", self.cert.display())),
            (_, None) => Err(format!("cannot read {}", self.key.display())),
        };
        self.seen = contents;
        match loaded {
            Ok(k) => {
                tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                Some(k)
            }
            Err(e) => {
                tracing::warn!(cert = %self.cert.display(), "kept the previous TLS certificate: {e}");
                None
            }
        }
    }
}

/// The reloader's loop: checks the files every [`POLL`] and on SIGHUP until `stop`.
async fn reload(
    reloader: Arc<std::sync::Mutex<Reloader>>,
    resolver: Arc<Resolver>,
    mut stop: watch::Receiver<bool>,
) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let forced = tokio::select! {
            _ = tokio::time::sleep(POLL) => false,
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
            _ = stop.changed() => return,
        };
        let r = reloader.clone();
        let checked = tokio::task::spawn_blocking(move || {
            r.lock().unwrap_or_else(|p| p.into_inner()).check(forced)
        })
        .await;
        match checked {
            Ok(Some(k)) => *resolver.0.write().expect("cert lock") = Arc::new(k),
            Ok(None) => {}
            // A panic of the check is this loop's: the supervisor restarts it.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// A TLS setup ready to serve.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The private CA's certificate (PEM) with `--tls-auto`.
    pub ca_pem: Option<String>,
}

/// Loads `cert`/`key` and keeps reloading them when their contents change (checked every
/// second) and on SIGHUP (a loop under `sup`).
pub fn serve_files(
    cert: PathBuf,
    key: PathBuf,
    sup: &Supervisor,
    stop: watch::Receiver<bool>,
) -> Result<Tls> {
    let seen = read_contents(&cert, &key);
    let first = match &seen {
        (Some(c), Some(k)) => slipway_ingress::tls::pair_from_pem(c, k, &cert, &key)?,
        _ => load_pair(&cert, &key)?,
    };
    let resolver = Arc::new(Resolver(RwLock::new(Arc::new(first))));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let reloader = Arc::new(std::sync::Mutex::new(Reloader {
        cert,
        key,
        seen,
        pending: None,
    }));
    let s = stop.clone();
    sup.spawn(LoopSpec::new("tls-reload"), stop, move |_| {
        reload(reloader.clone(), resolver.clone(), s.clone())
    });
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_pem: None,
    })
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

const CA_NAME: &str = "Slipway private CA";

fn ca_params() -> Result<rcgen::CertificateParams> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "Slipway");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// The IPv4 addresses of this machine's interfaces (from `/proc/net/fib_trie`).
fn local_addresses() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let mut out = Vec::new();
    let mut last = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if line.contains("/32 host LOCAL") {
            if let Some(ip) = last.take() {
                out.push(ip);
            }
        } else if t.parse::<std::net::Ipv4Addr>().is_ok() {
            last = Some(t.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The names the server certificate covers.
pub fn certificate_names(bound: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_owned());
        }
    }
    if bound.ip().is_unspecified() {
        names.extend(local_addresses());
    } else {
        names.push(bound.ip().to_string());
    }
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// Makes (or reuses) the private CA and a server certificate for `names`, then serves it
/// (reloading like `--tls-cert`).
pub fn serve_auto(
    dir: &Path,
    names: &[String],
    sup: &Supervisor,
    stop: watch::Receiver<bool>,
) -> Result<Tls> {
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir)
        .with_context(|| format!("cannot create {}", ca_dir.display()))?;
    let (ca_key_path, ca_crt_path) = (ca_dir.join("ca.key"), ca_dir.join("ca.crt"));
    let ca_key = if ca_key_path.exists() {
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(&ca_key_path)?)
            .with_context(|| format!("{} is not a usable key", ca_key_path.display()))?
    } else {
        let key = rcgen::KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_file(&ca_key_path, &key.serialize_pem(), true)?;
        write_file(&ca_crt_path, &cert.pem(), false)?;
        tracing::info!(path = %ca_crt_path.display(), "created a private CA; `slipway registry ca` prints it");
        key
    };
    let ca_pem = std::fs::read_to_string(&ca_crt_path)
        .with_context(|| format!("cannot read {}", ca_crt_path.display()))?;
    let (crt, key, names_file) = (
        ca_dir.join("server.crt"),
        ca_dir.join("server.key"),
        ca_dir.join("server.names"),
    );
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&names_file).unwrap_or_default();
    if current != wanted || !crt.exists() || !key.exists() {
        let issuer = rcgen::Issuer::new(ca_params()?, &ca_key);
        let mut p = rcgen::CertificateParams::new(names.to_vec())?;
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Slipway server");
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        let year = 1970
            + SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 31_556_952) as i32;
        p.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        p.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
        let server_key = rcgen::KeyPair::generate()?;
        let cert = p.signed_by(&server_key, &issuer)?;
        write_file(&key, &server_key.serialize_pem(), true)?;
        write_file(&crt, &format!("{}{}", cert.pem(), ca_pem), false)?;
        write_file(&names_file, &wanted, false)?;
        tracing::info!(names = %names.join(","), "issued the server certificate from the private CA");
    }
    let mut tls = serve_files(crt, key, sup, stop)?;
    tls.ca_pem = Some(ca_pem);
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_loopback_and_the_bound_address() {
        let n = certificate_names("10.1.2.3:443".parse().unwrap(), &["reg.example".into()]);
        for want in ["localhost", "127.0.0.1", "10.1.2.3", "reg.example"] {
            assert!(n.iter().any(|x| x == want), "{want} in {n:?}");
        }
    }

    fn write_pair(dir: &Path, cert_from: &str, key_from: &str) {
        let pair = |n: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let p = rcgen::CertificateParams::new(vec![format!("{n}.test")]).unwrap();
            (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
        };
        let (c, _) = pair(cert_from);
        let (c2, k2) = pair(key_from);
        let (c, k) = if cert_from == key_from {
            (c2, k2)
        } else {
            (c, k2)
        };
        std::fs::write(dir.join("c.pem"), c).unwrap();
        std::fs::write(dir.join("k.pem"), k).unwrap();
    }

    #[test]
    fn reload_follows_contents_and_keeps_the_old_pair_when_the_new_one_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        write_pair(dir.path(), "a", "a");
        let mut r = Reloader {
            seen: read_contents(&cert, &key),
            cert,
            key,
            pending: None,
        };
        assert!(r.check(false).is_none(), "nothing changed");
        // A change is taken once it stays the same for one check.
        write_pair(dir.path(), "b", "b");
        assert!(r.check(false).is_none());
        assert!(r.check(false).is_some());
        assert!(r.check(false).is_none());
        // Mismatched certificate and key: not taken, and not tried again until they change.
        write_pair(dir.path(), "c", "d");
        assert!(r.check(false).is_none());
        assert!(r.check(false).is_none());
        assert_eq!(r.seen, read_contents(&r.cert, &r.key));
        assert!(r.check(false).is_none());
        // A missing file is a broken pair too; SIGHUP reads at once.
        std::fs::remove_file(&r.key).unwrap();
        assert!(r.check(true).is_none());
        write_pair(dir.path(), "e", "e");
        assert!(r.check(true).is_some());
    }

    #[tokio::test]
    async fn auto_ca_issues_a_loadable_certificate_and_reuses_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let names = vec!["localhost".to_owned(), "10.9.9.9".to_owned()];
        let sup = Supervisor::default();
        let a = serve_auto(dir.path(), &names, &sup, rx.clone()).unwrap();
        let mode = std::fs::metadata(dir.path().join("ca/ca.key"))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        let b = serve_auto(dir.path(), &["localhost".to_owned()], &sup, rx).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem, "the CA is made once");
        assert!(a.ca_pem.unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
