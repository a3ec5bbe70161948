//! Copilot's container fields (issue #23 item 7): `entrypoint`, `command` and `user` take
//! effect, `storage.volumes` keep files across a redeploy (and `slipway delete`), a
//! `read_only` volume refuses writes, `depends_on` orders a first deploy, environment
//! overrides of `image` and `stop_timeout`, and `slipway diff` knows the new fields.

use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Debian's busybox-static in an image FROM scratch with no entrypoint or command (so a
/// task runs only with the manifest's), and directories owned by uid 1234 that seed the
/// volumes mounted on them.
pub const BUSYBOX: &str = "slipway-busybox:fields";

pub fn busybox_image() {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::copy("/bin/busybox", ctx.path().join("busybox"))
            .expect("/bin/busybox (Debian's busybox-static) is needed");
        std::fs::create_dir(ctx.path().join("d")).unwrap();
        std::fs::write(ctx.path().join("d/.keep"), "").unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY --chown=1234:1234 d /data\nCOPY --chown=1234:1234 d /ro\nCOPY --chown=1234:1234 d /tmp\n",
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", BUSYBOX])
            .arg(ctx.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Removes the named volumes of an app when the test ends (they outlive the server).
struct Volumes(String);

impl Volumes {
    fn list(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "volume",
                "ls",
                "-q",
                "--filter",
                &format!("label=slipway.app={}", self.0),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        let v = self.list();
        if !v.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&v)
                .output();
        }
    }
}

fn running_logs(s: &Server) -> String {
    let c = wait_for(Duration::from_secs(30), "a running container", || {
        s.containers().into_iter().find(|c| c.running)
    });
    wait_for(Duration::from_secs(30), "the task's output", || {
        let out = Command::new("docker")
            .args(["logs", &c.id])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("ro=").then_some(text)
    })
}

fn box_manifest(app: &str, mark: &str, user: &str) -> String {
    format!(
        "app: {app}
services:
  box:
    type: Backend Service
    image: {{location: '{BUSYBOX}'}}
    entrypoint: [/bin/busybox, sh, -c]
    command: ['echo \"who=$(/bin/busybox id -u):$(/bin/busybox id -g)\"; [ -f /data/first ] || echo $MARK > /data/first; echo \"first=$(/bin/busybox cat /data/first)\"; if echo x > /ro/x; then echo ro=writable; else echo ro=refused; fi; exec /bin/busybox sleep 3600']
    user: '{user}'
    variables: {{MARK: {mark}}}
    stop_timeout: 1s
    storage:
      volumes:
        data: {{path: /data}}
        conf: {{path: /ro, read_only: true}}
"
    )
}

#[test]
fn entrypoint_command_user_and_volumes_take_effect() {
    if !docker() {
        return;
    }
    busybox_image();
    let s = Server::start();
    let app = app_name("fields");
    let volumes = Volumes(app.clone());
    s.manifest(&box_manifest(&app, "one", "1234:1234"));
    s.cli(&["deploy"]).ok();
    let logs = running_logs(&s);
    // The entrypoint ran the command as the user; the read-only volume refused a write.
    assert!(logs.contains("who=1234:1234"), "{logs}");
    assert!(logs.contains("first=one"), "{logs}");
    assert!(logs.contains("ro=refused"), "{logs}");
    let mut names = volumes.list();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("slipway-{app}-default-conf"),
            format!("slipway-{app}-default-data")
        ]
    );

    // diff knows the new fields.
    s.manifest(&box_manifest(&app, "two", "4321:1234"));
    let j = s.cli(&["--json", "diff"]).ok().json();
    let paths: Vec<&str> = j["results"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert!(paths.contains(&"user"), "{j}");
    assert_eq!(j["results"][0]["new_deployment"], true, "{j}");

    // A redeploy (new revision, new container, another user) finds the file in the volume.
    s.manifest(&box_manifest(&app, "two", "1234:1234"));
    let before: Vec<String> = s.containers().into_iter().map(|c| c.id).collect();
    s.cli(&["deploy"]).ok();
    wait_for(Duration::from_secs(30), "the old container gone", || {
        s.containers()
            .iter()
            .all(|c| !before.contains(&c.id))
            .then_some(())
    });
    let logs = running_logs(&s);
    assert!(
        logs.contains("first=one"),
        "the file outlived the task: {logs}"
    );

    // slipway delete keeps the volumes (removing them is `docker volume rm`).
    s.cli(&["delete", "--app", &app, "--yes"]).ok();
    wait_for(Duration::from_secs(30), "the app's containers gone", || {
        s.containers().is_empty().then_some(())
    });
    assert_eq!(volumes.list().len(), 2, "volumes are kept on delete");
}

#[test]
fn depends_on_starts_a_first_deploy_in_order() {
    if !docker() {
        return;
    }
    busybox_image();
    let s = Server::start();
    let app = app_name("deps");
    let _volumes = Volumes(app.clone());
    // db becomes healthy only after a few seconds; app must not start before that.
    s.manifest(&format!(
        "app: {app}
services:
  app:
    type: Backend Service
    image: {{location: '{BUSYBOX}'}}
    entrypoint: [/bin/busybox, sh, -c]
    command: ['exec /bin/busybox sleep 3600']
    stop_timeout: 1s
    depends_on: [db]
  db:
    type: Backend Service
    image: {{location: '{BUSYBOX}'}}
    entrypoint: [/bin/busybox, sh, -c]
    command: ['/bin/busybox sleep 3; echo > /tmp/ready; exec /bin/busybox sleep 3600']
    stop_timeout: 1s
    healthcheck:
      command: [CMD, /bin/busybox, test, -f, /tmp/ready]
      interval: 1s
      retries: 2
      start_period: 30s
"
    ));
    let out = s.cli(&["deploy", "--timeout", "60s"]);
    assert_eq!(
        out.code,
        0,
        "{out:?}\n{}\n{}",
        s.cli(&["events", "app"]).stdout,
        s.cli(&["events", "db"]).stdout
    );
    let task = |svc: &str| -> Value {
        s.api_get(&format!("/services/{app}/default/{svc}"))["tasks"][0].clone()
    };
    let db = task("db");
    let dependent = task("app");
    let db_healthy = db["healthy_at"].as_i64().expect("db healthy");
    let app_created = dependent["created_at"].as_i64().unwrap();
    assert!(
        app_created >= db_healthy,
        "app's first task was created at {app_created}, before db was healthy at {db_healthy}"
    );
    let events = s.cli(&["events", "app"]).ok().stdout;
    assert!(events.contains("waits for service db"), "{events}");

    // Environment overrides of image and stop_timeout, as diff shows them.
    s.manifest(&format!(
        "app: {app}
services:
  web:
    type: Load Balanced Web Service
    image: {{location: slipway-hello:v1, port: 8080}}
    http: {{path: /, healthcheck: /healthz}}
    stop_timeout: 20s
environments:
  prod:
    services:
      web:
        image: {{location: slipway-hello:v2}}
        stop_timeout: 2s
"
    ));
    let j = s.cli(&["--json", "diff", "--env", "prod"]).ok().json();
    let changes = j["results"][0]["changes"].as_array().unwrap();
    let new_of = |prefix: &str| {
        changes
            .iter()
            .find(|c| c["path"].as_str().unwrap().starts_with(prefix))
            .map(|c| c["new"].clone())
    };
    let image = changes.iter().find(|c| c["path"] == "image").unwrap();
    assert_eq!(image["new"], "slipway-hello:v2", "{j}");
    let stop = new_of("stop_timeout").unwrap();
    assert!(stop == 2000 || stop == "2s", "{j}");
    s.cli(&["deploy", "--env", "prod"]).ok();
    let web = s.api_get(&format!("/services/{app}/prod/web"));
    assert_eq!(web["container"]["image"], "slipway-hello:v2", "{web}");
    assert_eq!(web["container"]["stop_timeout_ms"], 2000, "{web}");
}
