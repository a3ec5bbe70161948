//! Progressive delivery under real load through the real ingress: canary and linear
//! rollouts with exact weights, analysis that rolls back a version that passes its health
//! checks but fails users (errors or latency), stickiness, promote and abort, no traffic
//! (inconclusive: never promoted), and bad input.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A web service of the example app with a `deployment:` block.
fn manifest(app: &str, count: u32, deployment: &str) -> String {
    web_manifest(
        app,
        "slipway-hello:v1",
        count,
        &format!("    deployment: {deployment}\n"),
    )
}

/// One answered request: when (unix ms), its status, and the version that answered (2xx).
#[derive(Debug, Clone)]
struct Seen {
    at: i64,
    status: u16,
    version: Option<String>,
}

/// Constant load on keep-alive connections that records every request (no cookies kept:
/// each request is assigned a version afresh by the weights).
struct Recorder {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Recorder {
    fn start(addr: &str, conns: usize) -> Recorder {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let url = format!("http://{addr}/");
        let (flag, log) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(conns)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(600);
                let mut tasks = Vec::new();
                for _ in 0..conns {
                    let (client, url, flag, log) =
                        (client.clone(), url.clone(), flag.clone(), log.clone());
                    tasks.push(tokio::spawn(async move {
                        while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                            let (status, version) = match client.get(&url).send().await {
                                Ok(resp) => {
                                    let status = resp.status().as_u16();
                                    let body = resp.text().await.unwrap_or_default();
                                    let version = serde_json::from_str::<Value>(&body)
                                        .ok()
                                        .and_then(|v| v["version"].as_str().map(str::to_owned));
                                    (status, version)
                                }
                                Err(_) => (0, None),
                            };
                            log.lock().unwrap().push(Seen {
                                at: now_ms(),
                                status,
                                version,
                            });
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
        Recorder { stop, seen, thread }
    }

    fn snapshot(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn stop(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// Requests in `[from, to)` that failed (not 2xx, or no answer).
fn failed(seen: &[Seen], from: i64, to: i64) -> usize {
    seen.iter()
        .filter(|s| s.at >= from && s.at < to && !(200..300).contains(&s.status))
        .count()
}

/// One GET / through the ingress on a fresh connection (optionally with a cookie): status,
/// the answering version, and the `Set-Cookie` value it got, if any.
fn get(addr: &str, cookie: Option<&str>) -> Option<(u16, Option<String>, Option<String>)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: progressive.test\r\n{cookie}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let set_cookie = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("set-cookie")
            .then(|| v.trim().split(';').next().unwrap_or("").to_owned())
    });
    let version = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    Some((status, version, set_cookie))
}

/// `slipway deploy --json` of the manifest in place, with extra arguments.
fn deploy(s: &Server, args: &[&str]) -> (Out, Value) {
    let mut all = vec!["deploy", "--json"];
    all.extend_from_slice(args);
    let out = s.cli(&all);
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn deployment(s: &Server, id: &str) -> Value {
    s.api_get(&format!("/deployments/{id}"))
}

/// The id of the service's newest deployment.
fn newest_deployment(s: &Server, app: &str) -> String {
    let d = s.api_get(&format!("/services/{app}/default/web"));
    d["deployments"][0]["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_version_that_fails_users_is_rolled_back_by_analysis_and_rolling_lets_it_through() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("canbad");
    // Analysis every 3 s (10 requests to the new version at least: the debug build's ingress
    // serves a few hundred requests a second here), three bad intervals roll back; the
    // canary step is long, so only analysis can end it.
    s.manifest(&manifest(
        &app,
        2,
        "{strategy: canary, canary: {percent: 5, bake: 2m}, timeout: 4m, analysis: {interval: 3s, failures: 3, min_requests: 10}}",
    ));
    s.cli(&["deploy"]).ok();
    let rec = Recorder::start(&s.ingress(), 8);
    wait_for(Duration::from_secs(30), "load to flow", || {
        (rec.snapshot().len() > 200).then_some(())
    });

    // 1. A canary of a version failing one request in five.
    let started = now_ms();
    let (out, v) = deploy(&s, &["--image", "web=slipway-hello:bad"]);
    let ended = now_ms();
    let canary_span = ended - started;
    assert_ne!(out.code, 0, "a rolled-back deploy exits non-zero: {out:?}");
    let r = &v["results"][0];
    assert_eq!(r["outcome"], "ROLLED_BACK", "{v:#}");
    let reason = r["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("error rate ") && reason.ends_with("over 3 intervals"),
        "{reason}"
    );
    let rollout = &r["deployment"]["rollout"];
    let weights: Vec<i64> = rollout["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["weight"].as_i64().unwrap())
        .collect();
    assert_eq!(weights, vec![0, 5, 0], "5 %, then cut off: {rollout:#}");
    let shifted = rollout["weights"][1]["at"].as_i64().unwrap();
    let cut = rollout["weights"][2]["at"].as_i64().unwrap();
    let seen = rec.snapshot();
    let canary_failed = failed(&seen, started, ended + 1000);
    let window = seen
        .iter()
        .filter(|x| x.at >= shifted && x.at < cut)
        .count();
    // At most what 5 % of the traffic could produce over the configured intervals (three
    // bad ones, and the one in which the interval that started them began): as if every
    // request the canary took had failed.
    let rate = window as f64 / ((cut - shifted) as f64 / 1000.0);
    let bound = 0.05 * rate * 4.0 * 3.0;
    eprintln!(
        "canary: {canary_failed} failed requests; {window} requests in {} ms at 5 % ({rate:.0} req/s), bound {bound:.0}",
        cut - shifted
    );
    assert!(canary_failed > 0, "the bad version took some requests");
    assert!(
        (canary_failed as f64) <= bound,
        "{canary_failed} failed requests > {bound:.0}"
    );
    // The human output names the reason too (events).
    let ev = s.cli(&["events", "web"]).ok();
    assert!(ev.stdout.contains("over 3 intervals"), "{}", ev.stdout);

    // 2. A version that answers 300 ms slower is rolled back by the p99 rule.
    let (out, v) = deploy(&s, &["--image", "web=slipway-hello:slow"]);
    assert_ne!(out.code, 0, "{out:?}");
    let r = &v["results"][0];
    assert_eq!(r["outcome"], "ROLLED_BACK", "{v:#}");
    let reason = r["reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("p99 "), "{reason}");

    // 3. The same failing version with a plain rolling update (no bake): it reaches 100 %,
    // and users keep getting errors.
    let started = now_ms();
    let (out, v) = deploy(
        &s,
        &["--image", "web=slipway-hello:bad", "--strategy", "rolling"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(v["results"][0]["outcome"], "SUCCEEDED", "{v:#}");
    assert_eq!(
        v["results"][0]["deployment"]["state"], "SUCCEEDED",
        "a deployment of the bad version: {v:#}"
    );
    let done = now_ms();
    // As long after reaching 100 % as the canary took from its start to its rollback.
    std::thread::sleep(Duration::from_millis(canary_span.max(0) as u64));
    let seen = rec.stop();
    let rolling_failed = failed(&seen, started, now_ms());
    eprintln!(
        "failed client requests: canary {canary_failed}, rolling {rolling_failed} (rolling took {} ms, watched {} ms more)",
        done - started,
        canary_span
    );
    assert!(
        rolling_failed > canary_failed * 3,
        "rolling lets the failures through: {rolling_failed} vs canary {canary_failed}"
    );
}

/// The share of `version` among the 2xx answers in `[from, to)`, and how many there were.
fn share(seen: &[Seen], version: &str, from: i64, to: i64) -> (f64, usize) {
    let answered: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.at >= from && s.at < to && s.version.is_some())
        .collect();
    let hits = answered
        .iter()
        .filter(|s| s.version.as_deref() == Some(version))
        .count();
    (
        100.0 * hits as f64 / answered.len().max(1) as f64,
        answered.len(),
    )
}

/// Checks each step of a finished rollout against the answers: the share of the new
/// version between two weight changes (leaving out a second after each change, while the
/// requests assigned before it finish) is the weight ±2 points, over 1000+ requests.
fn check_steps(seen: &[Seen], d: &Value, version: &str) -> Vec<(i64, f64, usize)> {
    let marks = d["rollout"]["weights"].as_array().unwrap();
    let mut steps = Vec::new();
    for pair in marks.windows(2) {
        let (w, from, to) = (
            pair[0]["weight"].as_i64().unwrap(),
            pair[0]["at"].as_i64().unwrap(),
            pair[1]["at"].as_i64().unwrap(),
        );
        if w == 0 {
            continue;
        }
        let (pct, n) = share(seen, version, from + 1000, to);
        steps.push((w, pct, n));
        assert!(n >= 1000, "step {w} %: only {n} requests");
        assert!(
            (pct - w as f64).abs() <= 2.0,
            "step {w} %: the new version answered {pct:.2} % of {n} requests"
        );
    }
    steps
}

#[test]
fn a_good_version_goes_through_canary_and_linear_steps_with_exact_weights_and_no_error() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("cangood");
    s.manifest(&manifest(
        &app,
        2,
        "{strategy: canary, canary: {percent: 10, bake: 20s}, analysis: {interval: 2s}}",
    ));
    s.cli(&["deploy"]).ok();
    let rec = Recorder::start(&s.ingress(), 6);
    // The human output shows each step and each verdict as they happen.
    let out = s.cli(&["deploy", "--image", "web=slipway-hello:v2"]);
    assert_eq!(out.code, 0, "{out:?}");
    for want in [
        "web: canary 10 % of requests to revision 2",
        "web: analysis at 10 %: pass: error rate 0.0 % vs stable 0.0 %, p99 ",
        "web: canary 100 % of requests to revision 2",
        "✔ web: SUCCEEDED",
    ] {
        assert!(out.stdout.contains(want), "{want:?} in:\n{}", out.stdout);
    }
    let canary = deployment(&s, &newest_deployment(&s, &app));
    assert_eq!(canary["state"], "SUCCEEDED", "{canary:#}");
    // Linear: 30 % steps.
    s.manifest(&manifest(
        &app,
        2,
        "{strategy: linear, linear: {step_percent: 30, bake: 20s}, analysis: {interval: 2s}}",
    ));
    let (out, v) = deploy(&s, &["--image", "web=slipway-hello:v3"]);
    assert_eq!(out.code, 0, "{out:?}");
    let linear = v["results"][0]["deployment"].clone();
    std::thread::sleep(Duration::from_secs(1));
    let seen = rec.stop();
    let bad = seen
        .iter()
        .filter(|x| !(200..300).contains(&x.status))
        .count();
    assert_eq!(bad, 0, "{bad} of {} requests failed", seen.len());
    let c = check_steps(&seen, &canary, "v2");
    let l = check_steps(&seen, &linear, "v3");
    eprintln!("canary steps (weight, observed %, requests): {c:?}\nlinear steps: {l:?}");
    let ws = |d: &Value| -> Vec<i64> {
        d["rollout"]["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["weight"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ws(&canary), vec![0, 10, 100]);
    assert_eq!(ws(&linear), vec![0, 30, 60, 90, 100]);
    // After 100 %, only the new version answers.
    let last = linear["rollout"]["weights"][4]["at"].as_i64().unwrap();
    let (pct, n) = share(&seen, "v3", last + 1000, now_ms());
    assert!(n == 0 || pct == 100.0, "{pct} % of {n}");
}

#[test]
fn stickiness_promote_and_abort() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("sticky");
    // Half the requests; the step lasts long enough that only promote or abort ends it.
    s.manifest(&manifest(
        &app,
        1,
        "{strategy: canary, canary: {percent: 50, bake: 10m}, analysis: {interval: 2s}}",
    ));
    s.cli(&["deploy"]).ok();
    let addr = s.ingress();
    let at_half = |s: &Server| {
        let id = newest_deployment(s, &app);
        wait_for(Duration::from_secs(60), "the canary at 50 %", || {
            (deployment(s, &id)["rollout"]["weight"] == 50).then_some(())
        });
        id
    };
    // Fresh clients until one is on each version; each then keeps its cookie.
    let clients = |want: &[&str]| -> BTreeMap<String, String> {
        let mut got = BTreeMap::new();
        for _ in 0..200 {
            let (status, version, cookie) = get(&addr, None).unwrap();
            assert_eq!(status, 200);
            let version = version.unwrap();
            let cookie = cookie.expect("a fresh client is given a cookie");
            assert!(cookie.starts_with("slipway-v-"), "{cookie}");
            got.entry(version).or_insert(cookie);
            if want.iter().all(|w| got.contains_key(*w)) {
                return got;
            }
        }
        panic!("200 fresh clients did not reach {want:?}: {got:?}");
    };

    s.cli(&["deploy", "--image", "web=slipway-hello:v2", "--no-wait"])
        .ok();
    let id = at_half(&s);
    let sticky = clients(&["v1", "v2"]);
    for (version, cookie) in &sticky {
        for _ in 0..100 {
            let (status, v, again) = get(&addr, Some(cookie)).unwrap();
            assert_eq!(status, 200);
            assert_eq!(
                v.as_deref(),
                Some(version.as_str()),
                "a sticky client flipped"
            );
            assert_eq!(again, None, "no new cookie for a client that has one");
        }
    }

    // Promote: every request to v2 now, the rest of the bake skipped.
    let out = s.cli(&["promote", "web"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("SUCCEEDED"), "{}", out.stdout);
    assert_eq!(deployment(&s, &id)["state"], "SUCCEEDED");
    // The client that was on v1 is on v2 now (v1 takes no request any more).
    let (_, v, _) = get(&addr, Some(&sticky["v1"])).unwrap();
    assert_eq!(v.as_deref(), Some("v2"));

    // Abort: v3 at 50 %, a client on it goes back to v2 at once, and v3 is rolled back.
    s.cli(&["deploy", "--image", "web=slipway-hello:v3", "--no-wait"])
        .ok();
    let id = at_half(&s);
    let sticky = clients(&["v3"]);
    let out = s.cli(&["abort", "web"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("ROLLED_BACK"), "{}", out.stdout);
    let d = deployment(&s, &id);
    assert_eq!(d["state"], "ROLLED_BACK");
    assert_eq!(d["reason"], "aborted by a user");
    for _ in 0..20 {
        let (status, v, _) = get(&addr, Some(&sticky["v3"])).unwrap();
        assert_eq!((status, v.as_deref()), (200, Some("v2")));
    }
    // Nothing left to promote or abort: a clear refusal.
    let out = s.cli(&["abort", "web"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no deployment in progress"), "{out:?}");
}

#[test]
fn without_traffic_a_canary_is_never_promoted_and_fails_at_its_deadline() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("quiet");
    s.manifest(&manifest(
        &app,
        1,
        "{strategy: canary, canary: {percent: 20, bake: 2s}, analysis: {interval: 2s}, timeout: 25s}",
    ));
    s.cli(&["deploy"]).ok();
    // No request reaches the service: every interval is inconclusive.
    let (out, v) = deploy(&s, &["--image", "web=slipway-hello:v2"]);
    assert_ne!(out.code, 0, "{out:?}");
    let r = &v["results"][0];
    assert_eq!(r["outcome"], "ROLLED_BACK", "{v:#}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("within 25s") && reason.contains("inconclusive"),
        "{reason}"
    );
    let rollout = &r["deployment"]["rollout"];
    let max = rollout["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["weight"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(max, 20, "never promoted: {rollout:#}");
    assert_eq!(rollout["last"]["outcome"], "inconclusive", "{rollout:#}");
}

#[test]
fn bad_rollout_settings_are_refused_and_change_nothing() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("badroll");
    s.manifest(&manifest(&app, 1, "{strategy: rolling}"));
    s.cli(&["deploy"]).ok();
    let before = s.api_get(&format!("/services/{app}/default/web"));
    let cases: [(&str, &str); 3] = [
        (
            "{strategy: canary, canary: {percent: 0}}",
            "percent must be between 1 and 100",
        ),
        (
            "{strategy: linear, linear: {step_percent: 101}}",
            "percent must be between 1 and 100",
        ),
        (
            "{strategy: canary, canary: {bake: 20m}, timeout: 10m}",
            "not shorter than the deployment timeout",
        ),
    ];
    for (deployment, want) in cases {
        s.manifest(&manifest(&app, 1, deployment));
        let out = s.cli(&["deploy", "--image", "web=slipway-hello:v2"]);
        assert_ne!(out.code, 0, "{deployment}: {out:?}");
        assert!(out.stderr.contains(want), "{deployment}: {}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("slipway.yml:"), "{}", out.stderr);
    }
    // Analysis on a service without ingress routes.
    s.manifest(&format!(
        "app: {app}\nservices:\n  worker:\n    type: Backend Service\n    image:\n      location: slipway-hello:v1\n    deployment: {{strategy: canary}}\n"
    ));
    let out = s.cli(&["deploy"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("needs ingress routes"),
        "{}",
        out.stderr
    );
    // The flags are checked the same way.
    s.manifest(&manifest(&app, 1, "{strategy: rolling}"));
    let out = s.cli(&["deploy", "--strategy", "canary", "--percent", "0"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("between 1 and 100"), "{}", out.stderr);
    let after = s.api_get(&format!("/services/{app}/default/web"));
    assert_eq!(
        before["summary"]["revision"], after["summary"]["revision"],
        "nothing was deployed"
    );
}
