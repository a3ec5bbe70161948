//! Scheduled Jobs (issue #23 item 7): `@every 10s` runs three times in 35 s, a failing run
//! is retried as configured, a run past its timeout is stopped, `job run` runs one now,
//! and `job ls` and `ps --all` show the history.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fields::{BUSYBOX, busybox_image};
use crate::support::*;

fn job(name: &str, schedule: &str, script: &str, extra: &str) -> String {
    format!(
        "  {name}:
    type: Scheduled Job
    image: {{location: '{BUSYBOX}'}}
    entrypoint: [/bin/busybox, sh, -c]
    command: ['{script}']
    stop_timeout: 1s
    on: {{schedule: '{schedule}'}}
{extra}"
    )
}

fn runs(s: &Server, job: &str) -> Vec<Value> {
    let jobs = s.cli(&["--json", "job", "ls"]).ok().json();
    jobs.as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"]["name"] == job)
        .unwrap_or_else(|| panic!("no job {job}: {jobs}"))["runs"]
        .as_array()
        .unwrap()
        .clone()
}

fn stopped(r: &Value) -> bool {
    r["task"]["last_status"] == "STOPPED"
}

#[test]
fn scheduled_jobs_run_on_schedule_retry_time_out_and_keep_history() {
    if !docker() {
        return;
    }
    busybox_image();
    let s = Server::start();
    let app = app_name("jobs");
    s.manifest(&format!(
        "app: {app}\nservices:\n{}{}{}  web:\n    type: backend\n    image: {{location: slipway-hello:v1, port: 8080}}\n",
        job("tick", "@every 10s", "echo tick", ""),
        job("fail", "@every 1h", "echo broken; exit 3", "    retries: 2\n"),
        job("slow", "@daily", "exec /bin/busybox sleep 60", "    timeout: 2s\n"),
    ));
    let start = Instant::now();
    s.cli(&["deploy"]).ok();

    // A failing run is retried twice, then left failed.
    let out = s.cli(&["job", "run", "fail"]).ok();
    assert!(out.stdout.contains("run "), "{out:?}");
    let fails = wait_for(Duration::from_secs(30), "three failed attempts", || {
        let r = runs(&s, "fail");
        (r.len() == 3 && r.iter().all(stopped)).then_some(r)
    });
    let mut attempts: Vec<u64> = fails
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    attempts.sort();
    assert_eq!(attempts, vec![0, 1, 2]);
    assert!(
        fails.iter().all(|r| r["task"]["exit_code"] == 3),
        "{fails:?}"
    );

    // A run past its timeout is stopped.
    s.cli(&["job", "run", "slow"]).ok();
    let slow = wait_for(Duration::from_secs(30), "the slow run stopped", || {
        runs(&s, "slow").into_iter().find(stopped)
    });
    assert!(
        slow["task"]["stopped_reason"]
            .as_str()
            .unwrap()
            .contains("timed out after 2s"),
        "{slow}"
    );

    // Every 10 s: three runs within 35 s of the deploy, each succeeded.
    let left = Duration::from_secs(35).saturating_sub(start.elapsed());
    wait_for(left, "three runs of tick within 35 s", || {
        (runs(&s, "tick").len() >= 3).then_some(())
    });
    let ticks = wait_for(Duration::from_secs(20), "the tick runs to finish", || {
        let r = runs(&s, "tick");
        r.iter().take(3).all(stopped).then_some(r)
    });
    assert!(
        ticks
            .iter()
            .filter(|r| stopped(r))
            .all(|r| r["task"]["exit_code"] == 0),
        "{ticks:?}"
    );
    let mut at: Vec<i64> = ticks.iter().map(|r| r["tick"].as_i64().unwrap()).collect();
    at.sort();
    at.dedup();
    assert_eq!(at.len(), ticks.len(), "one run per tick: {ticks:?}");
    assert!(
        at.windows(2).all(|w| w[1] - w[0] == 10_000),
        "ticks 10 s apart: {at:?}"
    );

    // The fail job did not run again (its schedule is an hour away) and was retried no more.
    assert_eq!(runs(&s, "fail").len(), 3);

    // History in job ls and ps --all.
    let text = s.cli(&["job", "ls"]).ok().stdout;
    assert!(text.contains("tick  schedule @every 10s"), "{text}");
    assert!(
        text.contains("failed (exit code 3)") && text.contains("succeeded"),
        "{text}"
    );
    let ps = s.cli(&["ps", "--all"]).ok().stdout;
    assert!(
        ps.contains("tick (job run)") && ps.contains("fail (job run)"),
        "{ps}"
    );
    let events = s.cli(&["events", "fail"]).ok().stdout;
    assert!(events.contains("retry 2 of 2"), "{events}");

    // Bad input: not a job, no such job.
    let out = s.cli(&["job", "run", "web"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not a Scheduled Job"), "{out:?}");
    let out = s.cli(&["job", "run", "nope"]);
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn ticks_missed_while_the_server_was_down_run_once() {
    if !docker() {
        return;
    }
    busybox_image();
    let mut s = Server::start();
    let app = app_name("jobdown");
    s.manifest(&format!(
        "app: {app}\nservices:\n{}",
        job("beat", "@every 4s", "echo beat", "")
    ));
    s.cli(&["deploy"]).ok();
    wait_for(Duration::from_secs(20), "a first run", || {
        (!runs(&s, "beat").is_empty()).then_some(())
    });
    // Down for more than three ticks.
    s.kill9();
    std::thread::sleep(Duration::from_secs(13));
    s.restart();
    let before = runs(&s, "beat").len();
    let all = wait_for(
        Duration::from_secs(30),
        "two runs after the restart",
        || {
            let r = runs(&s, "beat");
            (r.len() >= before + 2).then_some(r)
        },
    );
    let mut ticks: Vec<i64> = all.iter().map(|r| r["tick"].as_i64().unwrap()).collect();
    ticks.sort();
    let n = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), n, "one run per tick: {all:?}");
    assert!(
        ticks.windows(2).all(|w| (w[1] - w[0]) % 4_000 == 0),
        "ticks on the 4 s grid: {ticks:?}"
    );
    // The missed ticks were run once: a gap of at least three ticks, not a burst.
    let gap = ticks.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap >= 12_000,
        "missed ticks collapsed into one run: {ticks:?}"
    );
}
