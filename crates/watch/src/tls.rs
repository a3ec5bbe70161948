//! TLS for registry checks, following Docker's conventions (rustls with the ring provider).
//!
//! * Trust: the platform's roots (`rustls-platform-verifier`: the system CA bundle) plus
//!   every `*.crt` in `CERTS_D/HOST:PORT/` — Docker's `/etc/docker/certs.d`, where
//!   `slipway registry ca` tells users to install a private CA. A `*.cert` with its `*.key`
//!   there is presented as a client certificate, as the docker daemon does.
//! * Registries Docker treats as insecure (loopback ones, `--insecure-registry`) get HTTPS
//!   without verification first and plain HTTP after it, as the daemon does; when a CA *is*
//!   installed for such a registry it is held to it (see [`crate::registry`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Where Docker looks for per-registry certificates.
pub const DEFAULT_CERTS_D: &str = "/etc/docker/certs.d";

/// The crypto provider every TLS client here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A problem with the TLS material of one registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("cannot set up TLS verification: {0}")]
    Verifier(String),
}

/// What `CERTS_D/HOST:PORT/` holds for one registry.
#[derive(Debug, Default)]
pub struct HostCerts {
    /// Extra trusted CA certificates (`*.crt`).
    pub roots: Vec<CertificateDer<'static>>,
    /// A client certificate chain and its key (`*.cert` + `*.key`).
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// What identifies the contents of a certs.d directory (so a change is picked up without a
/// restart): file names, sizes and modification times.
pub type DirStamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The directory of `registry` (`host:port`) under `root`.
pub fn host_dir(root: &Path, registry: &str) -> PathBuf {
    root.join(registry)
}

/// The files of a registry's certs.d directory, sorted; empty when there is none.
pub fn stamp(dir: &Path) -> DirStamp {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: DirStamp = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "crt" || x == "cert" || x == "key")
        })
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            let len = m.as_ref().map_or(0, std::fs::Metadata::len);
            let mtime = m.and_then(|m| m.modified().ok());
            (p, len, mtime)
        })
        .collect();
    out.sort();
    out
}

/// Reads `*.crt` (CAs), and `*.cert` with the `*.key` of the same name (client identity).
pub fn read_host_certs(dir: &Path) -> Result<HostCerts, TlsError> {
    let mut out = HostCerts::default();
    let bad = |p: &Path, reason: String| TlsError::File {
        path: p.display().to_string(),
        reason,
    };
    for (path, _, _) in stamp(dir) {
        match path.extension().and_then(|x| x.to_str()) {
            Some("crt") => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                    .map_err(|e| bad(&path, format!("cannot read it ({e})")))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&path, format!("not a PEM certificate ({e})")))?;
                if certs.is_empty() {
                    return Err(bad(&path, "holds no PEM certificate".into()));
                }
                out.roots.extend(certs);
            }
            Some("cert") => {
                let key = path.with_extension("key");
                if !key.exists() {
                    return Err(bad(
                        &path,
                        format!("a client certificate needs its key {}", key.display()),
                    ));
                }
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                    .map_err(|e| bad(&path, format!("cannot read it ({e})")))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&path, format!("not a PEM certificate ({e})")))?;
                let k = PrivateKeyDer::from_pem_file(&key)
                    .map_err(|e| bad(&key, format!("not a PEM private key ({e})")))?;
                out.identity = Some((chain, k));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn finish(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsError> {
    match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Verifier(format!("client certificate: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A client configuration that verifies servers against the platform's roots plus `extra`.
pub fn verified(
    extra: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsError> {
    let p = provider();
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, p.clone())
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Verifier(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    finish(builder, identity)
}

/// An HTTP client that verifies HTTPS servers against the system's roots (webhooks).
pub fn https_client(timeout: std::time::Duration) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .tls_backend_preconfigured(verified(Vec::new(), None)?)
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// A client configuration that accepts any server certificate (Docker's behaviour towards
/// insecure registries: TLS if the registry speaks it, no verification). Signatures are
/// still checked, so the handshake is real.
pub fn unverified() -> ClientConfig {
    let p = provider();
    ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(p)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether an error (a reqwest error's chain) is a failed certificate verification, and if
/// so a short description of it.
pub fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // `io::Error::source` skips the error it wraps, and hyper wraps rustls's error in
        // an io::Error inside another io::Error: unwrap those by hand.
        let mut inner: &(dyn std::error::Error + 'static) = err;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        let tls = inner.downcast_ref::<rustls::Error>();
        if let Some(t) = tls {
            return match t {
                rustls::Error::InvalidCertificate(c) => Some(describe_cert_error(c)),
                _ => None,
            };
        }
        cur = err.source();
    }
    None
}

fn describe_cert_error(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => "its certificate is signed by an unknown authority".into(),
        C::Expired | C::ExpiredContext { .. } => "its certificate has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "its certificate is not valid yet".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "its certificate is not valid for this host name".into()
        }
        C::BadSignature => "its certificate has a bad signature".into(),
        C::Revoked => "its certificate is revoked".into(),
        other => format!("invalid certificate ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let k = rcgen::KeyPair::generate().unwrap();
        (p.self_signed(&k).unwrap(), k)
    }

    #[test]
    fn reads_cas_and_client_pairs_and_rejects_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = host_dir(tmp.path(), "reg.example:5000");
        assert!(stamp(&dir).is_empty(), "no directory, nothing to trust");
        assert!(read_host_certs(&dir).unwrap().roots.is_empty());

        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = ca();
        std::fs::write(dir.join("ca.crt"), c.pem()).unwrap();
        std::fs::write(dir.join("client.cert"), c.pem()).unwrap();
        std::fs::write(dir.join("client.key"), k.serialize_pem()).unwrap();
        std::fs::write(dir.join("README"), "ignored").unwrap();
        let h = read_host_certs(&dir).unwrap();
        assert_eq!(h.roots.len(), 1);
        assert!(h.identity.is_some());
        assert_eq!(stamp(&dir).len(), 3);
        verified(h.roots, h.identity).unwrap();

        std::fs::write(dir.join("bad.crt"), "not a certificate").unwrap();
        let e = read_host_certs(&dir).unwrap_err().to_string();
        assert!(
            e.contains("bad.crt") && e.contains("no PEM certificate"),
            "{e}"
        );
        std::fs::remove_file(dir.join("bad.crt")).unwrap();
        std::fs::remove_file(dir.join("client.key")).unwrap();
        let e = read_host_certs(&dir).unwrap_err().to_string();
        assert!(e.contains("client.cert") && e.contains("client.key"), "{e}");
    }

    #[test]
    fn certificate_errors_are_recognised_through_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, inner));
        let got = certificate_problem(&io).unwrap();
        assert!(got.contains("unknown authority"), "{got}");
        let other = std::io::Error::other(rustls::Error::DecryptError);
        assert_eq!(certificate_problem(&other), None);
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(certificate_problem(&plain), None);
    }
}
