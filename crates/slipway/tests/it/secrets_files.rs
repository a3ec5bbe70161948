//! Secrets delivered as files (`secrets: {NAME: {from: secret, as: file}}`): the task reads
//! `/run/secrets/NAME` (mode 0400, owned by the image's user), `docker inspect` shows
//! neither the value nor a variable for it, nothing on disk holds it, the files of replaced
//! tasks go away, and the environment-variable forms keep working beside it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{Server, docker, wait_for};

/// GET through the ingress (any host); waits (bounded) until the ingress answers.
fn get(s: &Server, path: &str) -> (u16, String) {
    let addr = s.ingress();
    wait_for(Duration::from_secs(20), &format!("{path} answers"), || {
        let out = Command::new("curl")
            .args(["-s", "-m", "8", "-w", "\n%{http_code}"])
            .arg(format!("http://{addr}{path}"))
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n')?;
        let code: u16 = code.trim().parse().ok()?;
        (code != 0 && code != 502 && code != 503).then(|| (code, body.to_owned()))
    })
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            hits.extend(files_containing(&p, needle));
        } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            hits.push(p);
        }
    }
    hits
}

fn docker_out(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The task directories holding secret files under `root`.
fn task_dirs(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|cluster| std::fs::read_dir(cluster.path()).into_iter().flatten())
        .flatten()
        .map(|t| t.path())
        .collect()
}

#[test]
fn a_file_secret_reaches_the_task_but_not_its_container_config() {
    if !docker() {
        return;
    }
    let root = PathBuf::from(format!(
        "/dev/shm/slipway-it-secrets-{}",
        rand::random::<u32>()
    ));
    let s = Server::start_with_env(&[], &[("SLIPWAY_SECRET_FILES_DIR", root.to_str().unwrap())]);
    let app = crate::support::app_name("sfile");
    let file_v1 = format!("file-one-{}", rand::random::<u64>());
    let file_v2 = format!("file-two-{}", rand::random::<u64>());
    let env_value = format!("env-{}", rand::random::<u64>());
    let set = |name: &str, value: &str| {
        let f = s.dir.path().join("value.txt");
        std::fs::write(&f, value).unwrap();
        s.cli(&["secret", "set", name, "--file", f.to_str().unwrap()])
            .ok();
        std::fs::remove_file(&f).unwrap();
    };
    set(&format!("{app}/tls"), &file_v1);
    set(&format!("{app}/db"), &env_value);
    let secrets = format!(
        "    secrets:\n      TLS_KEY: {{from: {app}/tls, as: file}}\n      DB: {{from: {app}/db, as: env}}\n      SHORT: {app}/db\n"
    );
    // slipway-hello:files runs as user 1000:1000.
    let manifest = s.manifest(&crate::support::web_manifest(
        &app,
        "slipway-hello:files",
        2,
        &secrets,
    ));
    let m = manifest.to_str().unwrap();
    let deployed = s.cli(&["deploy", "-f", m]).ok();

    // The task reads the file, owned by its user with mode 0400; the env forms still work.
    assert_eq!(get(&s, "/secret-file/TLS_KEY"), (200, file_v1.clone()));
    assert_eq!(
        get(&s, "/secret-stat/TLS_KEY"),
        (200, "400 1000 1000".into())
    );
    assert_eq!(get(&s, "/env/DB"), (200, env_value.clone()));
    assert_eq!(get(&s, "/env/SHORT"), (200, env_value.clone()));
    assert_eq!(
        get(&s, "/env/TLS_KEY").0,
        404,
        "a file secret is no variable"
    );

    let running: Vec<String> = s
        .containers()
        .into_iter()
        .filter(|c| c.running)
        .map(|c| c.id)
        .collect();
    assert_eq!(running.len(), 2);
    for id in &running {
        let inspect = docker_out(&["inspect", id]);
        assert!(
            !inspect.contains(&file_v1),
            "docker inspect shows the file secret's value"
        );
        let env = docker_out(&["inspect", "-f", "{{json .Config.Env}}", id]);
        assert!(!env.contains("TLS_KEY"), "a variable for the file: {env}");
        // The env form is what it always was: a variable (docker inspect shows it).
        assert!(env.contains(&format!("DB={env_value}")), "{env}");
        let mounts = docker_out(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Destination}} {{.RW}} {{.Source}}\n{{end}}",
            id,
        ]);
        let line = mounts
            .lines()
            .find(|l| l.starts_with("/run/secrets "))
            .unwrap_or_else(|| panic!("no /run/secrets mount: {mounts}"));
        assert!(line.starts_with("/run/secrets false "), "{line}");
        let source = Path::new(line.rsplit(' ').next().unwrap());
        assert!(source.starts_with(&root), "{line}");
        // Nothing of the container's writable layer holds the value.
        let upper = docker_out(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", id]);
        let upper = Path::new(upper.trim());
        if upper.is_dir() {
            assert_eq!(
                files_containing(upper, file_v1.as_bytes()),
                Vec::<PathBuf>::new()
            );
        }
    }
    // Nor the data directory, the server's log or the CLI's output.
    assert_eq!(
        files_containing(&s.data_dir(), file_v1.as_bytes()),
        Vec::<PathBuf>::new()
    );
    assert!(
        !s.log().contains(&file_v1),
        "the server log shows the value"
    );
    assert!(!deployed.stdout.contains(&file_v1) && !deployed.stderr.contains(&file_v1));
    // The files live only on the in-memory mount's host directory, private to the server.
    let hits = files_containing(&root, file_v1.as_bytes());
    assert_eq!(hits.len(), 2, "{hits:?}");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&root), 0o700);
    for h in &hits {
        assert_eq!(mode(h), 0o400, "{}", h.display());
    }

    // A new version rolls out as a new file; the replaced tasks' files go away with them.
    set(&format!("{app}/tls"), &file_v2);
    s.cli(&["deploy", "-f", m]).ok();
    wait_for(Duration::from_secs(30), "the new file serves", || {
        (get(&s, "/secret-file/TLS_KEY").1 == file_v2).then_some(())
    });
    wait_for(
        Duration::from_secs(60),
        "the old tasks and their secret files are gone",
        || {
            let live = s.containers().len();
            (live == 2 && task_dirs(&root).len() == 2).then_some(())
        },
    );
    assert_eq!(
        files_containing(&root, file_v1.as_bytes()),
        Vec::<PathBuf>::new(),
        "the replaced version's files are left"
    );

    // A bad `as`: one error placed in the manifest with the fix; nothing changes.
    let before = s.api_get(&format!("/services/{app}/default/web"));
    let bad = s.manifest(&crate::support::web_manifest(
        &app,
        "slipway-hello:files",
        2,
        &format!("    secrets:\n      TLS_KEY: {{from: {app}/tls, as: tmpfs}}\n"),
    ));
    let out = s.cli(&["deploy", "-f", bad.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("slipway.yml:14:"), "{line}");
    assert!(
        line.contains("as: file") && line.contains("as: env") && line.contains("\"tmpfs\""),
        "{line}"
    );
    let after = s.api_get(&format!("/services/{app}/default/web"));
    assert_eq!(after["summary"]["revision"], before["summary"]["revision"]);
    assert_eq!(get(&s, "/secret-file/TLS_KEY"), (200, file_v2.clone()));

    drop(s);
    let _ = std::fs::remove_dir_all(&root);
}
