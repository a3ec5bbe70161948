//! Everyday verbs: scale, restart, rollback, logs, login, delete.

use std::time::Duration;

use crate::support::*;

fn running_tasks(s: &Server) -> Vec<String> {
    let mut t: Vec<String> = s
        .containers()
        .into_iter()
        .filter(|c| c.running)
        .map(|c| c.task)
        .collect();
    t.sort();
    t
}

#[test]
fn scale_restart_rollback_logs_delete() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("ops");
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 2, ""));
    s.cli(&["deploy"]).ok();

    // A redeploy with nothing changed starts no deployment.
    let out = s.cli(&["deploy"]).ok();
    assert!(out.stdout.contains("UNCHANGED"), "{out:?}");

    // Scale out and in.
    s.cli(&["scale", "web", "4"]).ok();
    assert_eq!(running_tasks(&s).len(), 4);
    s.cli(&["scale", "web", "1"]).ok();
    wait_for(Duration::from_secs(30), "one task", || {
        (running_tasks(&s).len() == 1).then_some(())
    });
    s.cli(&["scale", "web", "2"]).ok();

    // Restart replaces every task.
    let before = running_tasks(&s);
    let out = s.cli(&["restart", "web"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    let after = running_tasks(&s);
    assert_eq!(after.len(), 2);
    assert!(
        before.iter().all(|t| !after.contains(t)),
        "restart kept old tasks: {before:?} {after:?}"
    );

    // Deploy v2, then roll back to the previous revision.
    s.cli(&["deploy", "--image", "web=slipway-hello:v2"]).ok();
    let out = s.cli(&["rollback", "web"]).ok();
    assert!(out.stdout.contains("rolling back to revision 1"), "{out:?}");
    let st = s.cli(&["--json", "status", "web"]).ok().json();
    assert_eq!(st["summary"]["revision"], 1);
    for c in s.containers() {
        let (_, body) = probe(&c.ip, 8080, "/").unwrap();
        assert!(body.contains("\"version\":\"v1\""), "{body}");
    }

    // Logs of every task, prefixed with the task id.
    let logs = s.cli(&["logs", "web"]).ok().stdout;
    let task = &running_tasks(&s)[0];
    assert!(
        logs.contains(&format!("{task} | hello v1 listening on :8080")),
        "{logs}"
    );

    // `logs -f` streams: it prints the existing lines and keeps running.
    let mut follow = std::process::Command::new(&*BIN)
        .args(["logs", "web", "-f"])
        .current_dir(s.dir.path())
        .env("SLIPWAY_SERVER", &s.url)
        .env("SLIPWAY_TOKEN", &s.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("logs -f printed nothing");
    assert!(first.contains(" | "), "{first}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f exited instead of following"
    );
    follow.kill().unwrap();
    let _ = follow.wait();

    // Variables and discovery environment reach the task.
    let c = s.containers().into_iter().find(|c| c.running).unwrap();
    assert_eq!(
        probe(&c.ip, 8080, "/env/SLIPWAY_SERVICE_DISCOVERY_SUFFIX")
            .unwrap()
            .1,
        format!("default.{app}.internal")
    );

    // login stores the server and token for later commands.
    let token_file = s.data_dir().join("admin.token");
    let out = s.cli_env(
        &[
            "login",
            "--server",
            &s.url,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli_env(&["status"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("web"), "{out:?}");

    // Delete stops everything and removes the app network.
    s.cli(&["delete", "web"]).ok();
    assert!(s.containers().is_empty());
    let nets = std::process::Command::new("docker")
        .args([
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=slipway.cluster={}", s.cluster),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&nets.stdout).trim().is_empty(),
        "network left behind"
    );
    let out = s.cli(&["status", "web"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not found"), "{out:?}");
}
