//! Network isolation (issue 20, item 9: the security group of seed 002): a task accepts
//! connections from the ingress and from the services of its own app environment, not from
//! another app's tasks — neither at its container address nor where its port is published
//! on the host (a server with `--advertise-addr` publishes every task there, for the other
//! hosts of a cluster).
//!
//! The connections are made from inside the tasks themselves (`docker exec` of busybox'
//! `nc` in the tasks' containers), so they take the very paths a hostile task would.

use std::process::Command;
use std::sync::Once;

use crate::support::*;

const IMAGE: &str = "slipway-busybox:isolation-exposed";

/// busybox (as `/bin/sh`) FROM scratch, with `/www/healthz` and `/www/index.html`, exposing
/// 8080 as most web images do.
fn image() -> &'static str {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let bin = std::path::Path::new("/bin/busybox");
        assert!(
            bin.exists(),
            "this test needs a static busybox at /bin/busybox: apt-get install busybox-static"
        );
        let ctx = tempfile::tempdir().unwrap();
        std::fs::copy(bin, ctx.path().join("busybox")).unwrap();
        std::fs::create_dir_all(ctx.path().join("www")).unwrap();
        std::fs::write(ctx.path().join("www/index.html"), "app a\n").unwrap();
        std::fs::write(ctx.path().join("www/healthz"), "ok\n").unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\nCOPY www /www\nENV PATH=/bin\nEXPOSE 8080\n",
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "--quiet", "--tag", IMAGE])
            .arg(ctx.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(out.status.success(), "docker build: {out:?}");
    });
    IMAGE
}

/// An address of this host other than loopback, as a cluster's server advertises: the
/// source of its default route, else Docker's default bridge.
fn host_address() -> String {
    let out = Command::new("ip")
        .args(["-4", "route", "get", "192.0.2.200"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "src")
        .map(|w| w[1].to_owned())
        .filter(|ip| !ip.starts_with("127."))
        .unwrap_or_else(|| "172.17.0.1".to_owned())
}

/// The running container of `app`'s service `svc` on server `s`.
fn container_of(s: &Server, app: &str, svc: &str) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=slipway.cluster={}", s.cluster),
            "--filter",
            &format!("label=slipway.app={app}"),
            "--filter",
            &format!("label=slipway.service={svc}"),
        ])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert_eq!(ids.len(), 1, "one running task of {app}/{svc}: {ids:?}");
    ids[0].to_owned()
}

fn inspect(id: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, id])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker inspect: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether a `GET /healthz` sent from inside container `from` to `addr` (`host:port`) is
/// answered 200 (a connection that is dropped or refused is not).
fn reaches(from: &str, addr: &str) -> bool {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("docker")
        .args([
            "exec",
            from,
            "busybox",
            "sh",
            "-c",
            &format!("printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {host} {port}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(" 200 ")
}

#[test]
fn another_apps_task_cannot_connect_to_a_task_but_its_own_environment_and_the_ingress_can() {
    if !docker() {
        return;
    }
    let image = image();
    let advertise = host_address();
    let s = Server::start_with(&["--advertise-addr", &advertise]);
    let a = app_name("isoa");
    let b = app_name("isob");
    // App A: a web service behind the ingress, and a second service of its environment.
    s.manifest(&format!(
        "app: {a}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: {image}\n      port: 8080\n    command: [busybox, httpd, -f, -p, '8080', -h, /www]\n    http:\n      path: /\n      healthcheck: /healthz\n    count: 1\n    memory: 32\n  peer:\n    type: Backend Service\n    image:\n      location: {image}\n    command: [busybox, sleep, '3600']\n    stop_timeout: 1s\n"
    ));
    s.cli(&["deploy"]).ok();
    // App B: a task with a shell, which also serves itself (the control: its `nc` works).
    s.manifest(&format!(
        "app: {b}\nservices:\n  box:\n    type: Backend Service\n    image:\n      location: {image}\n    command: [busybox, sh, -c, 'busybox httpd -p 8081 -h /www; exec busybox sleep 3600']\n    stop_timeout: 1s\n"
    ));
    s.cli(&["deploy"]).ok();

    let web = container_of(&s, &a, "web");
    let peer = container_of(&s, &a, "peer");
    let other = container_of(&s, &b, "box");
    let ip = inspect(
        &web,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    );
    let published = inspect(
        &web,
        "{{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostIp}}:{{.HostPort}}{{end}}{{end}}",
    );
    assert!(
        published.starts_with(&format!("{advertise}:")),
        "A's task is published on the advertised address ({advertise}): {published:?}"
    );

    // The ingress serves A.
    let (status, body) = wait_for(
        std::time::Duration::from_secs(30),
        "the ingress to serve A",
        || probe_host(&s.ingress(), &s.ingress(), "/").filter(|(st, _)| *st == 200),
    );
    assert_eq!((status, body.trim()), (200, "app a"));
    // A host process (the ingress of another host, a discovery proxy) reaches the published
    // port.
    assert_eq!(
        probe_host(&published, &published, "/healthz").map(|(st, _)| st),
        Some(200),
        "a host process reaches A's published port {published}"
    );
    // A's own environment reaches it, by name and by address.
    assert!(reaches(&peer, "web:8080"), "A's peer reaches web by name");
    assert!(
        reaches(&peer, &format!("{ip}:8080")),
        "A's peer reaches web at {ip}:8080"
    );
    // B's task can connect (to itself), but not to A's task: not at its container address,
    // not at its published port.
    assert!(
        reaches(&other, "127.0.0.1:8081"),
        "B's own connections work"
    );
    assert!(
        !reaches(&other, &format!("{ip}:8080")),
        "B reached A's task at its container address {ip}:8080"
    );
    assert!(
        !reaches(&other, &published),
        "B reached A's task at its published port {published}"
    );
}
