//! The ingress' TLS listener against a real server and a real hello container: HTTPS with
//! certificates from files, HTTP/2 by ALPN (and h2c on the plain listener), SNI, and
//! certificate reload that keeps established connections (keep-alive and WebSocket) alive.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// A private CA that issues the test's certificates.
pub(crate) struct Ca {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ingress test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
            params,
        }
    }

    /// Writes `DIR/FILE.crt` and `DIR/FILE.key` (each by rename) for `names`, with common
    /// name `cn` (what the tests look for in the served certificate).
    pub(crate) fn issue(&self, dir: &Path, file: &str, names: &[&str], cn: &str) {
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        let mut p = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        write_by_rename(&dir.join(format!("{file}.key")), &key.serialize_pem());
        write_by_rename(&dir.join(format!("{file}.crt")), &cert.pem());
    }
}

pub(crate) fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The subject of the certificate the ingress serves for `name` (openssl s_client).
fn served_subject(port: u16, name: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -subject"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `curl` over HTTPS with the test CA; returns (body, http_version).
fn curl(ca: &Path, name: &str, port: u16, extra: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{name}:{port}:127.0.0.1"),
            "-w",
            "\n%{http_version}",
        ])
        .args(extra)
        .arg(format!("https://{name}:{port}/"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl https://{name}:{port}/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), version.to_owned())
}

pub(crate) type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection (ALPN http/1.1) that verifies the ingress against the test CA.
pub(crate) fn connect(ca: &Ca, name: &str, port: u16) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), name.to_owned().try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

pub(crate) fn read_head(c: &mut Tls) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// One keep-alive GET on an open connection: (status line, body).
fn get(c: &mut Tls, host: &str) -> (String, String) {
    c.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let head = read_head(c);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    (
        head.lines().next().unwrap().to_owned(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Sends a masked text frame and reads the echo.
fn ws_echo(c: &mut Tls, text: &[u8]) -> (u8, Vec<u8>) {
    let mask = [9u8, 8, 7, 6];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend(mask);
    f.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.write_all(&f).unwrap();
    let mut h = [0u8; 2];
    c.read_exact(&mut h).unwrap();
    let mut payload = vec![0u8; (h[1] & 0x7f) as usize];
    c.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

#[test]
fn https_http2_sni_and_reload_without_dropping_connections() {
    if !docker() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (dir, default_dir) = (certs.path().join("by-name"), certs.path().join("default"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&default_dir).unwrap();
    let ca = Ca::new();
    let ca_pem = certs.path().join("ca.pem");
    std::fs::write(&ca_pem, &ca.pem).unwrap();
    ca.issue(&dir, "a.test", &["a.test"], "a.test gen1");
    ca.issue(&dir, "_.w.test", &["*.w.test"], "wildcard w.test");
    ca.issue(&default_dir, "default", &["default.test"], "default pair");

    let s = Server::start_with(&[
        "--ingress-tls-addr",
        "127.0.0.1:0",
        "--ingress-tls-dir",
        dir.to_str().unwrap(),
        "--ingress-tls-cert",
        default_dir.join("default.crt").to_str().unwrap(),
        "--ingress-tls-key",
        default_dir.join("default.key").to_str().unwrap(),
    ]);
    let app = app_name("tls");
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 1, ""));
    s.cli(&["deploy"]).ok();
    let tls_addr = std::fs::read_to_string(s.data_dir().join("ingress/ingress-tls.addr")).unwrap();
    let port: u16 = tls_addr.trim().rsplit_once(':').unwrap().1.parse().unwrap();

    // HTTPS answers from the service, over HTTP/1.1 and, by ALPN, HTTP/2.
    let (body, version) = curl(&ca_pem, "a.test", port, &["--http1.1"]);
    assert!(body.contains("\"version\":\"v1\""), "{body}");
    assert_eq!(version, "1.1");
    let (body, version) = curl(&ca_pem, "a.test", port, &["--http2"]);
    assert!(body.contains("\"version\":\"v1\""), "{body}");
    assert_eq!(version, "2", "HTTP/2 was not negotiated");
    let (_, version) = curl(&ca_pem, "x.w.test", port, &["--http2"]);
    assert_eq!(version, "2");

    // h2c with prior knowledge on the plain listener.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--http2-prior-knowledge"])
        .args(["-w", "\n%{http_version}"])
        .arg(format!("http://{}/", s.ingress()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"version\":\"v1\"") && text.ends_with("\n2"),
        "{text}"
    );

    // SNI: exact name, wildcard, then the default pair (also for clients without a name).
    assert!(served_subject(port, "a.test").contains("a.test gen1"));
    assert!(served_subject(port, "x.w.test").contains("wildcard w.test"));
    assert!(served_subject(port, "other.test").contains("default pair"));

    // The access log and the metrics record the protocol and TLS.
    let log = s.access_log();
    assert!(
        log.iter()
            .any(|l| l["proto"] == "HTTP/2" && l["tls"] == true && l["status"] == 200),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l["proto"] == "HTTP/2" && l["tls"] == false),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l["proto"] == "HTTP/1.1" && l["tls"] == true),
        "{log:?}"
    );
    let metrics = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(s.data_dir().join("ingress/ingress.sock"))
        .arg("http://ingress/metrics")
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    assert!(
        metrics.contains(
            "slipway_ingress_requests_by_protocol_total{protocol=\"HTTP/2\",tls=\"true\"} 2"
        ),
        "{metrics}"
    );

    // Connections opened before the reload: a keep-alive one and a WebSocket.
    let mut keep = connect(&ca, "a.test", port);
    let (status, body) = get(&mut keep, "a.test");
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("\"version\":\"v1\""), "{body}");
    let mut ws = connect(&ca, "a.test", port);
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut ws);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(ws_echo(&mut ws, b"before"), (0x81, b"before".to_vec()));

    // A new certificate for a.test: new connections get it ...
    ca.issue(&dir, "a.test", &["a.test"], "a.test gen2");
    wait_for(Duration::from_secs(20), "the new certificate", || {
        served_subject(port, "a.test")
            .contains("a.test gen2")
            .then_some(())
    });
    let (body, _) = curl(&ca_pem, "a.test", port, &["--http2"]);
    assert!(body.contains("\"version\":\"v1\""), "{body}");
    // ... while the connections opened before keep working.
    let (status, _) = get(&mut keep, "a.test");
    assert!(
        status.contains(" 200 "),
        "keep-alive after reload: {status}"
    );
    assert_eq!(ws_echo(&mut ws, b"after"), (0x81, b"after".to_vec()));

    // A broken certificate file: the previous certificate stays, with one log line.
    write_by_rename(&dir.join("a.test.crt"), "this is not a certificate\n");
    let ingress_log = || std::fs::read_to_string(s.data_dir().join("ingress/ingress.log")).unwrap();
    let line = "kept the previous TLS certificate for a.test";
    wait_for(
        Duration::from_secs(20),
        "the bad certificate to be noticed",
        || ingress_log().contains(line).then_some(()),
    );
    assert!(served_subject(port, "a.test").contains("a.test gen2"));
    let (body, _) = curl(&ca_pem, "a.test", port, &[]);
    assert!(body.contains("\"version\":\"v1\""), "{body}");
    // Several more checks of the files pass: still exactly one line for the one bad change.
    std::thread::sleep(Duration::from_secs(3));
    let log = ingress_log();
    assert_eq!(log.matches(line).count(), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains(line) && l.contains("a.test.crt")),
        "the line names the file: {log}"
    );
    let (status, _) = get(&mut keep, "a.test");
    assert!(status.contains(" 200 "), "{status}");
}
