//! A TLS listener in front of a plain HTTP/1.1 upstream that echoes the request head it got:
//! an HTTP/2 client over TLS (ALPN h2) reaches it as HTTP/1.1 with `Host` and the
//! `X-Forwarded-*` headers set.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipway_ingress::{
    IngressOptions, ProxyOptions, RouteConfig, RoutingConfig, ServiceConfig, TargetConfig,
    TlsOptions,
};

use crate::echo_upstream;

#[tokio::test]
async fn http2_over_tls_reaches_an_http1_upstream_with_forwarded_headers() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo_upstream().await;
    let routes = RoutingConfig {
        services: vec![ServiceConfig {
            name: "app/default/web".into(),
            routes: vec![RouteConfig {
                host: None,
                path: "/".into(),
                strip_prefix: false,
            }],
            targets: vec![TargetConfig {
                id: "t1".into(),
                addr: upstream,
                draining: false,
                unreachable: false,
                version: None,
            }],
            weights: Vec::new(),
            sticky: false,
        }],
    };
    std::fs::write(
        slipway_ingress::routes_path(dir.path()),
        serde_json::to_vec(&routes).unwrap(),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (crt_path, key_path) = (dir.path().join("a.crt"), dir.path().join("a.key"));
    std::fs::write(&crt_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let opts = IngressOptions {
        addrs: vec!["127.0.0.1:0".parse().unwrap()],
        data_dir: dir.path().to_owned(),
        access_log: None,
        access_log_max_bytes: 0,
        proxy: ProxyOptions::default(),
        tls: Some(TlsOptions {
            addrs: vec!["127.0.0.1:0".parse().unwrap()],
            default_pair: Some((crt_path, key_path)),
            dir: None,
        }),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ingress = tokio::spawn(slipway_ingress::run(opts, async move {
        let _ = stop_rx.await;
    }));
    let tls_addr_file = slipway_ingress::tls_addr_path(dir.path());
    let mut tls_addr = String::new();
    for _ in 0..500 {
        if let Ok(a) = std::fs::read_to_string(&tls_addr_file)
            && a.ends_with('\n')
        {
            tls_addr = a.trim().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!tls_addr.is_empty(), "the ingress did not start");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(slipway_ingress::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(&tls_addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("a.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://a.test/hello?x=1")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let head = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(head.starts_with("get /hello?x=1 http/1.1\r\n"), "{head}");
    for want in [
        "host: a.test\r\n",
        "x-forwarded-proto: https\r\n",
        "x-forwarded-host: a.test\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
        "x-request-id: ",
    ] {
        assert!(head.contains(want), "{want:?} missing from {head}");
    }

    let _ = stop_tx.send(());
    ingress.await.unwrap().unwrap();
}
