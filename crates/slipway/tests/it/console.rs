//! The web console in a real browser: Debian's `chromium`, driven through `chromedriver`
//! (WebDriver, with fantoccini), against a real server and the real engine. The browser runs
//! headless with its own profile; chromedriver listens on a free loopback port; both are
//! stopped on drop. Screenshots of the overview, a service and a deployment's timeline go to
//! the target directory (and to `docs/screenshots/` with `SLIPWAY_UPDATE_SCREENSHOTS=1`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::*;

/// chromedriver and a browser session.
struct Browser {
    driver: Child,
    client: Client,
    rt: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(async { client.close().await });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Browser {
    /// Starts chromedriver and a headless chromium; `None` (skipped) when they are not
    /// installed, a failure when `SLIPWAY_REQUIRE_DOCKER=1` (CI installs them).
    fn start() -> Option<Browser> {
        let binary = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|b| have(b))
            .map(|b| b.to_owned());
        let (Some(binary), true) = (binary, have("chromedriver")) else {
            assert!(
                !std::env::var("SLIPWAY_REQUIRE_DOCKER").is_ok_and(|v| v == "1"),
                "the console tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipping: chromium and chromedriver are not installed");
            return None;
        };
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": which(&binary),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = rt.block_on(async {
            let mut last = None;
            // chromedriver takes a moment to listen.
            for _ in 0..100 {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
                {
                    Ok(c) => return c,
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("cannot start a browser session through chromedriver: {last:?}");
        });
        Some(Browser {
            driver,
            client,
            rt,
            _profile: profile,
        })
    }

    fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client.goto(url))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    fn source(&self) -> String {
        self.rt.block_on(self.client.source()).unwrap()
    }

    fn url(&self) -> String {
        self.rt
            .block_on(self.client.current_url())
            .unwrap()
            .to_string()
    }

    // Reads go through one script each: a live page may swap its <main> between a
    // WebDriver "find" and a "get text", so they read the page as it is at one moment.

    fn css_text(&self, css: &str) -> String {
        let v = self.js_with(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
            css,
        );
        v.as_str()
            .unwrap_or_else(|| panic!("no {css} in {}", self.source()))
            .to_owned()
    }

    fn css_attr(&self, css: &str, attr: &str) -> Option<String> {
        let v = self.rt.block_on(self.client.execute(
            "const e = document.querySelector(arguments[0]); \
             if (!e) throw new Error('no ' + arguments[0]); return e.getAttribute(arguments[1])",
            vec![json!(css), json!(attr)],
        ));
        v.unwrap_or_else(|e| panic!("{css}: {e}"))
            .as_str()
            .map(str::to_owned)
    }

    fn count(&self, css: &str) -> usize {
        self.js_with("return document.querySelectorAll(arguments[0]).length", css)
            .as_u64()
            .unwrap() as usize
    }

    fn js_with(&self, script: &str, arg: &str) -> Value {
        self.rt
            .block_on(self.client.execute(script, vec![json!(arg)]))
            .unwrap()
    }

    /// Clicks the element (in one script: see `css_text`).
    fn click(&self, css: &str) {
        self.js_with(
            "const e = document.querySelector(arguments[0]); \
             if (!e) throw new Error('no ' + arguments[0]); e.click(); return null",
            css,
        );
    }

    fn fill(&self, css: &str, text: &str) {
        self.rt.block_on(async {
            let e = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"));
            e.clear().await.unwrap();
            e.send_keys(text).await.unwrap();
        })
    }

    fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client.execute(script, vec![]))
            .unwrap()
    }

    /// No alert, confirm or prompt dialog is open.
    fn no_dialog(&self) -> bool {
        self.rt.block_on(self.client.get_alert_text()).is_err()
    }

    /// Waits until the page's live stream is open.
    fn wait_live(&self) {
        wait_for(Duration::from_secs(10), "the page's live stream", || {
            (self.js("return document.body.dataset.liveState") == json!("open")).then_some(())
        });
    }

    fn screenshot(&self, name: &str) {
        let png = self.rt.block_on(self.client.screenshot()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = repo_root().join("target").join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        if std::env::var("SLIPWAY_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let docs = repo_root().join("docs").join("screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
        }
    }

    /// Logs in through the login form.
    fn login(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/ui/login"));
        self.fill("#token", token);
        self.click("form.login button[type=submit]");
        wait_for(Duration::from_secs(10), "the overview after login", || {
            self.url().ends_with("/ui/").then_some(())
        });
    }
}

fn which(cmd: &str) -> String {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// The newest deployment of `web`, as `slipway status --json` reports it.
fn last_deployment(s: &Server) -> Value {
    s.cli(&["--json", "status", "web"]).ok().json()["summary"]["last_deployment"].clone()
}

#[test]
fn the_console_shows_services_deployments_and_their_timeline_and_acts_with_confirmation() {
    if !docker() {
        return;
    }
    let Some(b) = Browser::start() else { return };
    let s = Server::start();
    let app = app_name("ui");
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 2, ""));
    s.cli(&["deploy"]).ok();

    // Log in; the overview shows the service healthy, with no alarm.
    b.login(&s.url, &s.token);
    let row = format!("tr[data-service='{app}/default/web']");
    assert_eq!(b.css_text(&format!("{row} td.healthy")), "2");
    assert_eq!(b.count(&format!("{row}.broken")), 0);
    assert_eq!(
        b.js("return [...document.scripts].filter(s => !s.src.endsWith('/ui/static/console.js')).length"),
        json!(0),
        "no script but the console's own file"
    );
    b.screenshot("overview");

    // A new version from the CLI while the service page is open (its tasks start slowly, so
    // the deployment takes a few seconds): its tasks and the deployment appear on the page
    // without a reload (a reload would drop the marker); the deployment's own page, opened
    // while it runs, draws it to the end live.
    b.goto(&format!("{}/ui/services/{app}/default/web", s.url));
    b.wait_live();
    b.js("window.slipwayMarker = 'still here'; return null");
    s.manifest(&web_manifest(
        &app,
        "slipway-hello:v2",
        2,
        "    variables:\n      HELLO_START_DELAY_MS: \"2500\"\n",
    ));
    let mut deploy = s
        .command(&["deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "the new deployment and a v2 task on the open page",
        || {
            let v = b.js(
            "return [document.querySelectorAll(\"table.deployments tr[data-state='IN_PROGRESS']\").length, \
             document.querySelectorAll(\"section[aria-labelledby='tasks'] tr[data-revision='2']\").length > 0]",
        );
            (v == json!([1, true])).then_some(())
        },
    );
    assert_eq!(
        b.js("return window.slipwayMarker"),
        json!("still here"),
        "updated in place, not reloaded"
    );
    b.click("table.deployments tr[data-state='IN_PROGRESS'] th a");
    wait_for(Duration::from_secs(10), "the deployment's page", || {
        b.url().contains("/ui/deployments/").then_some(())
    });
    b.wait_live();
    b.js("window.slipwayMarker = 'still here'; return null");
    wait_for(
        Duration::from_secs(60),
        "SUCCEEDED and its timeline on the open page",
        || {
            let v = b.js(
            "const s = document.querySelector('dd.rollout-state'); \
             return [s && s.dataset.state, document.querySelectorAll(\"svg line.mark[data-field='finished_at']\").length]",
        );
            (v == json!(["SUCCEEDED", 1])).then_some(())
        },
    );
    assert_eq!(
        b.js("return window.slipwayMarker"),
        json!("still here"),
        "updated in place, not reloaded"
    );
    assert!(deploy.wait().unwrap().success());
    let d = last_deployment(&s);
    assert_eq!(d["state"], "SUCCEEDED");
    let id = d["id"].as_str().unwrap();
    b.goto(&format!("{}/ui/deployments/{id}", s.url));
    assert_eq!(b.css_text("dd.rollout-state"), "SUCCEEDED");
    let tl = &d["timeline"];
    for field in [
        "first_healthy_at",
        "first_old_stopped_at",
        "old_deregistered_at",
        "old_gone_at",
        "finished_at",
    ] {
        let at = tl[field]
            .as_i64()
            .unwrap_or_else(|| panic!("{field} in {tl}"));
        assert_eq!(
            b.css_attr(&format!("svg line.mark[data-field='{field}']"), "data-at"),
            Some(at.to_string()),
            "{field}"
        );
    }
    let overlap = b
        .css_attr("svg rect.overlap", "data-from")
        .zip(b.css_attr("svg rect.overlap", "data-to"));
    assert_eq!(
        overlap,
        Some((
            tl["first_healthy_at"].as_i64().unwrap().to_string(),
            tl["old_deregistered_at"].as_i64().unwrap().to_string()
        ))
    );
    // Both versions' counts: the new one ends at 2 healthy, the old one at 0.
    let points = |class: &str| {
        b.css_attr(&format!("svg path.{class}"), "data-points")
            .unwrap()
    };
    assert!(points("new").ends_with(":2"), "{}", points("new"));
    assert!(
        points("old").starts_with(&format!("{}:2", d["created_at"])),
        "{}",
        points("old")
    );
    assert!(points("old").ends_with(":0"), "{}", points("old"));
    b.screenshot("deployment");

    // A bad version, with the service page open: ROLLED_BACK appears on it live, with the
    // reason; afterwards the overview shows the service healthy, not red.
    b.goto(&format!("{}/ui/services/{app}/default/web", s.url));
    b.wait_live();
    b.js("window.slipwayMarker = 'still here'; return null");
    s.manifest(&web_manifest(&app, "slipway-hello:exit", 2, ""));
    let mut deploy = s
        .command(&["deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reason = wait_for(
        Duration::from_secs(60),
        "ROLLED_BACK on the open page",
        || {
            let v = b.js(
            "const r = document.querySelector(\"table.deployments tr[data-state='ROLLED_BACK'] td:last-child\"); \
             return r ? r.textContent : null",
        );
            v.as_str().map(str::to_owned)
        },
    );
    assert!(reason.starts_with("circuit breaker"), "{reason}");
    assert_eq!(
        b.js("return window.slipwayMarker"),
        json!("still here"),
        "updated in place, not reloaded"
    );
    assert!(
        !deploy.wait().unwrap().success(),
        "the CLI says the deploy failed"
    );
    let bad = s.cli(&["--json", "status", "web"]).ok().json()["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["state"] == "ROLLED_BACK")
        .cloned()
        .unwrap();
    b.goto(&format!(
        "{}/ui/deployments/{}",
        s.url,
        bad["id"].as_str().unwrap()
    ));
    assert_eq!(b.css_text("dd.rollout-state"), "ROLLED_BACK");
    assert_eq!(b.css_text("dd.reason"), reason);
    assert_eq!(b.count("svg line.mark.rollback"), 1);
    wait_for(Duration::from_secs(60), "the service healthy again", || {
        (last_deployment(&s)["state"] == "SUCCEEDED").then_some(())
    });
    b.goto(&format!("{}/ui/", s.url));
    assert_eq!(b.count(&format!("{row}.broken")), 0, "no lingering red");
    assert_eq!(b.css_text(&format!("{row} td.healthy")), "2");

    // Scale from the page: it asks first, then does it.
    b.goto(&format!("{}/ui/services/{app}/default/web", s.url));
    b.screenshot("service");
    b.click("a.button[href$='/scale']");
    assert!(
        b.css_text("form.confirm").contains("from 2 tasks to"),
        "{}",
        b.source()
    );
    b.fill("#count", "3");
    b.click("form.confirm button[type=submit]");
    wait_for(Duration::from_secs(10), "back on the service page", || {
        b.url()
            .ends_with(&format!("/ui/services/{app}/default/web"))
            .then_some(())
    });
    assert_eq!(
        s.cli(&["--json", "status", "web"]).ok().json()["summary"]["desired"],
        3
    );
    assert!(b.no_dialog());

    // Restart and roll back from the page, each after its confirmation.
    let before = last_deployment(&s);
    b.click("a.button[href$='/restart']");
    assert!(
        b.css_text("form.confirm").contains("replaces every task"),
        "{}",
        b.source()
    );
    b.click("form.confirm button[type=submit]");
    let restarted = wait_for(
        Duration::from_secs(60),
        "the restart's deployment to succeed",
        || {
            let d = last_deployment(&s);
            (d["id"] != before["id"] && d["state"] == "SUCCEEDED").then_some(d)
        },
    );
    assert_eq!(
        restarted["revision"], before["revision"],
        "a restart keeps the revision"
    );
    wait_for(Duration::from_secs(10), "back on the service page", || {
        b.url()
            .ends_with(&format!("/ui/services/{app}/default/web"))
            .then_some(())
    });
    b.click("a.button[href$='/rollback']");
    assert!(
        b.css_text("form.confirm")
            .contains("previous successful revision"),
        "{}",
        b.source()
    );
    b.click("form.confirm button[type=submit]");
    let rolled = wait_for(Duration::from_secs(60), "the rollback's deployment", || {
        let d = last_deployment(&s);
        (d["id"] != restarted["id"]).then_some(d)
    });
    assert_ne!(rolled["revision"], restarted["revision"], "{rolled}");
    assert!(b.no_dialog());

    // A reader sees the same pages and no action.
    let reader = s
        .cli(&["--json", "token", "create", "looker", "--role", "reader"])
        .ok()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    b.click("form.whoami button[type=submit]");
    b.login(&s.url, &reader);
    b.goto(&format!("{}/ui/services/{app}/default/web", s.url));
    assert!(b.css_text("h1").contains("web"));
    assert_eq!(b.count("section.actions"), 0);
    assert_eq!(b.count("a.button"), 0);
    assert!(b.no_dialog());
}

/// A runtime and an HTTP client that does not follow redirects (the console's answers are
/// checked as they are).
fn http_client() -> (tokio::runtime::Runtime, reqwest::Client) {
    // reqwest's TLS needs a provider even for plain HTTP; the binary installs ring's too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (rt, http)
}

/// Logs in to the console over plain HTTP: the session cookie (`name=value`).
async fn http_login(http: &reqwest::Client, base: &str, token: &str) -> String {
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .unwrap_or_else(|| panic!("no {name} cookie"))
            .to_owned()
    };
    let page = http.get(format!("{base}/ui/login")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    let login = cookie_of(&page, "slipway_login");
    let nonce = login.split_once('=').unwrap().1.to_owned();
    let body = format!("login_csrf={nonce}&token={token}");
    let r = http
        .post(format!("{base}/ui/login"))
        .header("cookie", &login)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    cookie_of(&r, "slipway_session")
}

/// Reads an event stream until `until` holds for the text so far.
async fn read_until(r: &mut reqwest::Response, text: &mut String, until: impl Fn(&str) -> bool) {
    while !until(text) {
        let chunk = tokio::time::timeout(Duration::from_secs(60), r.chunk())
            .await
            .unwrap_or_else(|_| panic!("nothing more after {text}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended after {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

fn ids(text: &str) -> Vec<i64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.trim().parse().unwrap())
        .collect()
}

#[test]
fn a_live_stream_dropped_during_a_deploy_misses_no_event_after_it_reconnects() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("live");
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 2, ""));
    s.cli(&["deploy"]).ok();
    let events_path = format!("/services/{app}/default/web/events?limit=100");
    let before: Vec<i64> = s
        .api_get(&events_path)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let newest_before = before.iter().copied().max().unwrap();
    let (rt, http) = http_client();
    let url = format!("{}/ui/live?service={app}/default/web", s.url);
    let (first_ids, mut deploy) = rt.block_on(async {
        let cookie = http_login(&http, &s.url, &s.token).await;
        let mut r = http
            .get(&url)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut text = String::new();
        read_until(&mut r, &mut text, |t| t.contains("event: change")).await;
        // Deploy a new version; drop the stream after its first event.
        s.manifest(&web_manifest(&app, "slipway-hello:v2", 2, ""));
        let deploy = s
            .command(&["deploy"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        read_until(&mut r, &mut text, |t| t.contains("event: service-event")).await;
        drop(r);
        (ids(&text), (deploy, cookie))
    });
    let (ref mut child, cookie) = deploy;
    assert!(child.wait().unwrap().success(), "the deploy succeeds");
    let last_seen = *first_ids.last().unwrap();
    // Back with the id it saw last: everything after it, nothing twice.
    let replayed = rt.block_on(async {
        let mut r = http
            .get(&url)
            .header("cookie", &cookie)
            .header("last-event-id", last_seen.to_string())
            .send()
            .await
            .unwrap();
        let mut text = String::new();
        read_until(&mut r, &mut text, |t| t.contains("event: change")).await;
        ids(&text)
    });
    let mut all: Vec<i64> = s
        .api_get(&events_path)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .filter(|id| *id > newest_before)
        .collect();
    all.sort();
    let mut seen = first_ids.clone();
    seen.extend(&replayed);
    assert_eq!(
        seen, all,
        "first connection {first_ids:?}, after reconnecting {replayed:?}"
    );
    assert!(
        !replayed.is_empty(),
        "the deploy went on while the stream was down"
    );
}

#[test]
fn the_logs_page_follows_a_task_live_and_shows_markup_as_text() {
    if !docker() {
        return;
    }
    let Some(b) = Browser::start() else { return };
    let s = Server::start();
    let app = app_name("logs");
    let say = "<script>alert(1)</script>";
    s.manifest(&web_manifest(
        &app,
        "slipway-hello:v1",
        2,
        &format!("    variables:\n      HELLO_SAY: \"{say}\"\n"),
    ));
    s.cli(&["deploy"]).ok();
    let task = s.cli(&["--json", "ps", "web"]).ok().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.login(&s.url, &s.token);
    b.goto(&format!(
        "{}/ui/services/{app}/default/web/logs?task={task}",
        s.url
    ));
    wait_for(Duration::from_secs(10), "the logs stream open", || {
        (b.js("return document.body.dataset.logsState") == json!("open")).then_some(())
    });
    let shown = |b: &Browser| {
        b.js("return document.querySelector('pre.logs').textContent")
            .as_str()
            .unwrap()
            .to_owned()
    };
    let count = |text: &str| text.lines().filter(|l| l.contains(say)).count();
    let at_load = count(&shown(&b));
    // New lines arrive while the page stays open (one a second), as text.
    wait_for(Duration::from_secs(20), "two more lines, live", || {
        (count(&shown(&b)) >= at_load + 2).then_some(())
    });
    let text = shown(&b);
    assert!(
        text.lines().all(|l| l.starts_with(&format!("{task} | "))),
        "one task's lines only: {text}"
    );
    let html = b
        .js("return document.querySelector('pre.logs').innerHTML")
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(b.no_dialog(), "the line's script never ran");
    assert_eq!(
        b.js("return [...document.scripts].filter(s => !s.src.endsWith('/ui/static/console.js')).length"),
        json!(0)
    );
    // A search that matches nothing shows nothing.
    b.goto(&format!(
        "{}/ui/services/{app}/default/web/logs?task={task}&q=no-such-text",
        s.url
    ));
    assert_eq!(shown(&b).trim(), "");
    b.screenshot("logs");
}

#[test]
fn forged_posts_change_nothing_on_a_real_server() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("forge");
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 1, ""));
    s.cli(&["deploy"]).ok();
    let reader = s
        .cli(&["--json", "token", "create", "peek", "--role", "reader"])
        .ok()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (rt, http) = http_client();
    let scale = format!("{}/ui/services/{app}/default/web/scale", s.url);
    let statuses = rt.block_on(async {
        let csrf_of = |page: &str| {
            let from =
                page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
            page[from..from + 64].to_owned()
        };
        let post = |cookie: Option<String>, body: String| {
            let mut r = http
                .post(&scale)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
            if let Some(c) = cookie {
                r = r.header("cookie", c);
            }
            r.send()
        };
        // No session.
        let none = post(None, "count=5".into()).await.unwrap().status();
        // An admin's session, without its CSRF token (what another site's form would send).
        let admin = http_login(&http, &s.url, &s.token).await;
        let no_csrf = post(Some(admin.clone()), "count=5".into())
            .await
            .unwrap()
            .status();
        // A reader's session with its own valid CSRF token: refused by the permission rule.
        let looker = http_login(&http, &s.url, &reader).await;
        let page = http
            .get(format!("{}/ui/services/{app}/default/web", s.url))
            .header("cookie", &looker)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !page.contains("/scale\""),
            "a reader's page has no scale button"
        );
        let reader_post = post(Some(looker), format!("csrf={}&count=5", csrf_of(&page)))
            .await
            .unwrap()
            .status();
        [none.as_u16(), no_csrf.as_u16(), reader_post.as_u16()]
    });
    assert_eq!(statuses, [403, 403, 403]);
    assert_eq!(
        s.cli(&["--json", "status", "web"]).ok().json()["summary"]["desired"],
        1,
        "nothing changed"
    );
    let audit = s.cli(&["--json", "audit"]).ok().json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["identity"] == "peek"
                && e["face"] == "console"
                && e["outcome"] == "refused"),
        "{audit}"
    );
}

#[test]
fn the_registry_pages_show_images_and_the_services_that_run_them() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let host = s.url.trim_start_matches("http://").to_owned();
    let app = app_name("reg");
    let pw = s
        .cli(&["registry", "password"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let image = format!("{host}/{app}/web:v1");
    let o = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("slipway:{pw}"),
            "docker-daemon:slipway-hello:v1",
            &format!("docker://{image}"),
        ])
        .output()
        .expect("skopeo runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.manifest(&web_manifest(&app, &image, 1, ""));
    s.cli(&["deploy"]).ok();
    let (rt, http) = http_client();
    let (list, repo) = rt.block_on(async {
        let cookie = http_login(&http, &s.url, &s.token).await;
        let get = |path: String| {
            let (http, cookie) = (&http, &cookie);
            async move {
                let r = http
                    .get(path)
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.text().await.unwrap()
            }
        };
        (
            get(format!("{}/ui/registry", s.url)).await,
            get(format!("{}/ui/registry/{app}/web", s.url)).await,
        )
    });
    assert!(
        list.contains(&format!("data-repository=\"{app}/web\"")),
        "{list}"
    );
    let row = repo
        .split("<tr data-digest=")
        .nth(1)
        .unwrap_or_else(|| panic!("no image row: {repo}"));
    assert!(row.contains("<td>v1</td>"), "{row}");
    assert!(row.contains("linux/amd64"), "{row}");
    assert!(
        row.contains(&format!("href=\"/ui/services/{app}/default/web\"")),
        "the service that runs it: {row}"
    );
    assert!(repo.contains("No lifecycle policy"), "{repo}");
}
