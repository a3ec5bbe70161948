//! A target that swallows connections (as a dead container's address does: no refusal, no
//! answer) is given up as soon as the routing table no longer has it, and the request is
//! served by a target that the new table has — even after the retry budget has passed.

use std::time::Duration;

use slipway_ingress::{
    IngressOptions, ProxyOptions, RouteConfig, RoutingConfig, ServiceConfig, TargetConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{echo_upstream, wait_for_addr};

fn config(targets: &[(&str, std::net::SocketAddr)]) -> RoutingConfig {
    RoutingConfig {
        services: vec![ServiceConfig {
            name: "app/default/web".into(),
            routes: vec![RouteConfig {
                host: None,
                path: "/".into(),
                strip_prefix: false,
            }],
            targets: targets
                .iter()
                .map(|(id, addr)| TargetConfig {
                    id: (*id).into(),
                    addr: *addr,
                    draining: false,
                })
                .collect(),
        }],
    }
}

#[tokio::test]
async fn a_connect_to_a_target_that_left_the_table_is_given_up_and_retried() {
    // A listener with a backlog of 0 and one connection queued that nobody accepts: the
    // kernel drops further SYNs, so a connect hangs like one to a vanished container.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let swallower = sock.listen(0).unwrap();
    let black_hole = swallower.local_addr().unwrap();
    let _queued = tokio::net::TcpStream::connect(black_hole).await.unwrap();
    let probe = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(black_hole),
    )
    .await;
    assert!(
        probe.is_err(),
        "the black hole must swallow connects for this test to mean anything: {probe:?}"
    );
    let good = echo_upstream().await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        slipway_ingress::routes_path(dir.path()),
        serde_json::to_vec(&config(&[("dead", black_hole)])).unwrap(),
    )
    .unwrap();
    let opts = IngressOptions {
        addrs: vec!["127.0.0.1:0".parse().unwrap()],
        data_dir: dir.path().to_owned(),
        access_log: None,
        access_log_max_bytes: 0,
        // Far longer than the client waits: only giving up on the removed target can pass.
        proxy: ProxyOptions {
            connect_timeout: Duration::from_secs(300),
            ..ProxyOptions::default()
        },
        tls: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ingress = tokio::spawn(slipway_ingress::run(opts, async move {
        let _ = stop_rx.await;
    }));
    let addr = wait_for_addr(&slipway_ingress::addr_path(dir.path())).await;

    let request = tokio::spawn(async move {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    });
    // Longer than the retry budget (1 s): a connect failure is retried all the same.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !request.is_finished(),
        "the request should still be connecting"
    );
    slipway_ingress::client::IngressClient::new(dir.path())
        .push(&config(&[("alive", good)]))
        .await
        .unwrap();

    let response = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("the request still hangs on the removed target")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("GET /x HTTP/1.1"), "{response}");

    let _ = stop_tx.send(());
    ingress.await.unwrap().unwrap();
}
