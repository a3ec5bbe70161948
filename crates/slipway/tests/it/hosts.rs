//! Clusters of several hosts on the test bed ([`crate::testbed`]): real Docker daemons in
//! network namespaces, each with `slipway agent`, the server in the machine's namespace with
//! no tasks of its own. Placement, host loss and return, draining, the server down, rolling
//! deploys across hosts, and the bad inputs of joining.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::testbed::{TestBed, push_to_server};

/// A server and a bed of hosts whose agents have joined it.
struct Cluster {
    bed: TestBed,
    s: Server,
    /// The server's URL as the hosts reach it.
    lan_url: String,
    /// Host ids, in the bed's order.
    ids: Vec<String>,
    /// The join tokens the hosts used.
    tokens: Vec<String>,
}

impl Cluster {
    /// `attrs[i]`: the `--attribute`s of host `i`; every host offers `memory` MiB.
    fn new(attrs: &[&[&str]], memory: u64) -> Cluster {
        Self::with_spare(attrs, memory, 0)
    }

    /// As [`Cluster::new`], with `spare` more hosts in the bed that have not joined.
    fn with_spare(attrs: &[&[&str]], memory: u64, spare: usize) -> Cluster {
        Self::with_args(attrs, memory, spare, &[])
    }

    /// As [`Cluster::with_spare`], the server started with `args` too.
    fn with_args(attrs: &[&[&str]], memory: u64, spare: usize, args: &[&str]) -> Cluster {
        let mut bed = TestBed::new(attrs.len() + spare);
        let gw = bed.gateway.clone();
        // A port of its own, kept when the server restarts (the agents know it).
        let api = format!("0.0.0.0:{}", free_port());
        let mut server_args = vec![
            "--api-addr",
            &api,
            "--advertise-addr",
            &gw,
            "--no-local-agent",
        ];
        server_args.extend_from_slice(args);
        let s = Server::start_with(&server_args);
        let port = s.url.rsplit(':').next().unwrap().to_owned();
        let lan_url = format!("http://{gw}:{port}");
        let mem = memory.to_string();
        let mut tokens = Vec::new();
        for (i, a) in attrs.iter().enumerate() {
            let token = s.cli(&["host", "join-token"]).ok().stdout.trim().to_owned();
            tokens.push(token.clone());
            let mut extra: Vec<&str> = a.to_vec();
            extra.extend(["--memory", &mem]);
            bed.start_agent(i, &lan_url, Some(&token), &extra);
        }
        let mut c = Cluster {
            bed,
            s,
            lan_url,
            ids: Vec::new(),
            tokens,
        };
        let n = attrs.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        c.ids = wait_for(Duration::from_secs(61), "every agent to connect", || {
            if Instant::now() > deadline {
                for (i, h) in c.bed.hosts.iter().enumerate().take(n) {
                    eprintln!("---- agent {i} log ----\n{}", h.agent_log());
                }
            }
            let hosts = c.hosts();
            let by_name: BTreeMap<String, String> = hosts
                .iter()
                .filter(|h| h["connected"] == true)
                .map(|h| {
                    (
                        h["name"].as_str().unwrap().to_owned(),
                        h["id"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (1..=n)
                .map(|i| by_name.get(&format!("host{i}")).cloned())
                .collect::<Option<Vec<String>>>()
        });
        c
    }

    fn hosts(&self) -> Vec<Value> {
        self.s
            .cli(&["--json", "host", "ls"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    fn host(&self, i: usize) -> Value {
        self.hosts()
            .into_iter()
            .find(|h| h["id"] == self.ids[i].as_str())
            .unwrap()
    }

    /// Live tasks of `service` (of the manifest's app), from `slipway ps`.
    fn tasks(&self, service: &str) -> Vec<Value> {
        self.s
            .cli(&["--json", "ps", service])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Healthy running tasks of `service` per host index (hosts without any omitted).
    fn spread(&self, service: &str) -> BTreeMap<usize, usize> {
        let mut m = BTreeMap::new();
        for t in self.tasks(service) {
            if t["last_status"] == "RUNNING" && t["health"] == "HEALTHY" {
                let h = t["host"].as_str().unwrap_or_default();
                let i = self.ids.iter().position(|x| x == h).expect("a known host");
                *m.entry(i).or_default() += 1;
            }
        }
        m
    }

    /// Running containers of the cluster on host `i`.
    fn running_on(&self, i: usize) -> usize {
        self.bed.hosts[i]
            .containers(&self.s.cluster)
            .iter()
            .filter(|c| c.2)
            .count()
    }

    fn ingress_url(&self) -> String {
        format!("http://{}/", self.s.ingress())
    }

    fn events(&self, service: &str) -> String {
        self.s
            .cli(&["events", service, "--limit", "100"])
            .ok()
            .stdout
    }
}

fn healthy(c: &Cluster, service: &str) -> usize {
    c.spread(service).values().sum()
}

fn zone_manifest(app: &str, image: &str, count: u32, placement: &str) -> String {
    web_manifest(app, image, count, &format!("    placement:\n{placement}"))
}

#[test]
fn placement_spreads_binpacks_and_keeps_apart_across_three_hosts() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let c = Cluster::new(
        &[
            &["--attribute", "zone=a"],
            &["--attribute", "zone=a"],
            &["--attribute", "zone=b"],
        ],
        256,
    );
    let s = &c.s;
    let v1 = push_to_server(s, "slipway-hello:v1", "hello", "v1");
    let ls = c.hosts();
    assert_eq!(ls.len(), 3, "{ls:?}");
    for h in &ls {
        assert_eq!(h["memory"], 256, "{h}");
        assert_eq!(h["state"], "ACTIVE", "{h}");
    }

    // binpack on memory: 10 tasks of 32 MiB on hosts of 256 MiB fill one host (8) first.
    let app = app_name("pack");
    s.manifest(&zone_manifest(
        &app,
        &v1,
        10,
        "      strategy:\n        - type: binpack\n          field: memory\n",
    ));
    let out = s.cli(&["deploy"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    let mut counts: Vec<usize> = c.spread("web").values().copied().collect();
    counts.sort();
    assert_eq!(counts, vec![2, 8], "binpack: {:?}", c.spread("web"));
    let full = c
        .hosts()
        .into_iter()
        .map(|h| h["memory_used"].clone())
        .collect::<Vec<_>>();
    assert!(
        full.contains(&Value::from(256)),
        "one host is full: {full:?}"
    );
    s.cli(&["delete", "--app", &app, "--yes"]).ok();
    wait_for(Duration::from_secs(60), "the binpack tasks to stop", || {
        (0..3).all(|i| c.running_on(i) == 0).then_some(())
    });

    // spread over the zone attribute: 6 tasks → 3 in zone a (two hosts), 3 in zone b.
    let app = app_name("spread");
    s.manifest(&zone_manifest(
        &app,
        &v1,
        6,
        "      strategy:\n        - type: spread\n          field: attribute:zone\n",
    ));
    s.cli(&["deploy"]).ok();
    let by_host = c.spread("web");
    let zone_a = by_host.get(&0).unwrap_or(&0) + by_host.get(&1).unwrap_or(&0);
    let zone_b = *by_host.get(&2).unwrap_or(&0);
    assert_eq!((zone_a, zone_b), (3, 3), "spread by zone: {by_host:?}");
    // What the hosts run is what the records say (the engines themselves).
    assert_eq!(
        (0..3).map(|i| c.running_on(i)).sum::<usize>(),
        6,
        "containers on the engines"
    );
    s.cli(&["delete", "--app", &app, "--yes"]).ok();

    // distinctInstance, 4 tasks on 3 hosts: 3 run (one per host), 1 waits with the reason.
    let app = app_name("apart");
    s.manifest(&zone_manifest(
        &app,
        &v1,
        4,
        "      constraints:\n        - type: distinctInstance\n",
    ));
    s.cli(&["deploy", "--no-wait"]).ok();
    wait_for(
        Duration::from_secs(90),
        "3 tasks on 3 hosts and 1 pending",
        || {
            let tasks = c.tasks("web");
            let pending: Vec<&Value> = tasks
                .iter()
                .filter(|t| t["last_status"] == "PROVISIONING" || t["last_status"] == "PENDING")
                .filter(|t| t["pending_reason"].is_string())
                .collect();
            let spread = c.spread("web");
            (spread.len() == 3 && spread.values().all(|n| *n == 1) && pending.len() == 1)
                .then(|| pending[0]["pending_reason"].as_str().unwrap().to_owned())
        },
    );
    let events = c.events("web");
    assert!(
        events.contains("was unable to place a task because no host met all of its requirements: CONSTRAINT:distinctInstance"),
        "{events}"
    );
    s.cli(&["delete", "--app", &app, "--yes"]).ok();

    // A task larger than any host: PENDING with RESOURCE:MEMORY, nothing started anywhere.
    wait_for(Duration::from_secs(60), "the hosts to empty", || {
        (0..3).all(|i| c.running_on(i) == 0).then_some(())
    });
    let app = app_name("huge");
    s.manifest(&web_manifest(&app, &v1, 1, "").replace("memory: 32", "memory: 512"));
    s.cli(&["deploy", "--no-wait"]).ok();
    let reason = wait_for(Duration::from_secs(30), "a pending task", || {
        c.tasks("web")
            .iter()
            .find_map(|t| t["pending_reason"].as_str().map(str::to_owned))
    });
    assert_eq!(reason, "RESOURCE:MEMORY");
    let events = c.events("web");
    assert!(
        events.contains("RESOURCE:MEMORY (no host has 512 MiB free)"),
        "{events}"
    );
    assert!((0..3).all(|i| c.bed.hosts[i].containers(&s.cluster).is_empty()));
}

/// Sum of failures a load run saw.
fn failures(r: &LoadReport) -> u64 {
    r.non_2xx + r.errors
}

#[test]
fn rolling_deploy_drain_host_loss_and_return_under_load() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let c = Cluster::new(
        &[
            &["--attribute", "zone=a"],
            &["--attribute", "zone=b"],
            &["--attribute", "zone=c"],
        ],
        1024,
    );
    let v1 = push_to_server(&c.s, "slipway-hello:v1", "hello", "v1");
    let v2 = push_to_server(&c.s, "slipway-hello:v2", "hello", "v2");
    let app = app_name("hosts");
    let spread = "      strategy:\n        - type: spread\n          field: host\n";
    c.s.manifest(&zone_manifest(&app, &v1, 6, spread));
    let out = c.s.cli(&["deploy"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    assert_eq!(
        c.spread("web"),
        BTreeMap::from([(0, 2), (1, 2), (2, 2)]),
        "spread by host"
    );
    let url = c.ingress_url();

    // A rolling deploy across the three hosts under load: no failed request.
    let load = Load::start(&url, 16, Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    c.s.manifest(&zone_manifest(&app, &v2, 6, spread));
    let out = c.s.cli(&["deploy"]).ok();
    let report = load.stop();
    eprintln!("rolling deploy across 3 hosts: {report:?}");
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    assert_eq!(failures(&report), 0, "{report:?}");
    assert!(
        report.versions.contains_key("v1") && report.versions.contains_key("v2"),
        "both versions answered during the deploy: {report:?}"
    );
    assert_eq!(c.spread("web").values().sum::<usize>(), 6);

    // Drain host 1 under load: its tasks move with the rolling rules, no failed request.
    let load = Load::start(&url, 16, Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    let drained = c.s.cli(&["--json", "host", "drain", &c.ids[0]]).ok().json();
    assert_eq!(drained["state"], "DRAINING", "{drained}");
    wait_for(
        Duration::from_secs(120),
        "host 1 empty, 6 healthy elsewhere",
        || {
            let h = c.host(0);
            let spread = c.spread("web");
            (h["tasks"] == 0
                && c.running_on(0) == 0
                && !spread.contains_key(&0)
                && spread.values().sum::<usize>() == 6)
                .then_some(())
        },
    );
    let report = load.stop();
    eprintln!("drain under load: {report:?}");
    assert_eq!(failures(&report), 0, "{report:?}");
    assert!(report.ok > 0);
    let active =
        c.s.cli(&["--json", "host", "activate", &c.ids[0]])
            .ok()
            .json();
    assert_eq!(active["state"], "ACTIVE", "{active}");

    // Host 2 cut off the LAN under load: its tasks are replaced on the others.
    let on_lost: Vec<String> = c
        .tasks("web")
        .iter()
        .filter(|t| t["host"] == c.ids[1].as_str())
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!on_lost.is_empty(), "host 2 runs tasks before it is cut");
    let load = Load::start(&url, 16, Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    let cut_at = Instant::now();
    c.bed.cut(1);
    wait_for(
        Duration::from_secs(120),
        "6 healthy tasks off host 2",
        || {
            let spread = c.spread("web");
            (!spread.contains_key(&1) && spread.values().sum::<usize>() == 6).then_some(())
        },
    );
    let replaced = cut_at.elapsed();
    let report = load.stop();
    eprintln!(
        "host loss: {} tasks replaced and healthy on the other hosts {:.1} s after the cut; load {report:?}",
        on_lost.len(),
        replaced.as_secs_f64()
    );
    assert_eq!(c.host(1)["state"], "LOST");
    // Requests in flight to the dead host when it died are GETs: once the host is silent
    // (3 s) the ingress sends them to the other hosts, well within the client's 10 s; none
    // fails.
    assert_eq!(failures(&report), 0, "{report:?}");

    // The host comes back: the tasks it still runs were replaced, so they are stopped.
    assert_eq!(c.running_on(1), on_lost.len(), "host 2 kept its containers");
    c.bed.restore(1);
    wait_for(Duration::from_secs(60), "host 2 back and emptied", || {
        let h = c.host(1);
        (h["connected"] == true && h["state"] == "ACTIVE" && c.running_on(1) == 0).then_some(())
    });
    let running: usize = (0..3).map(|i| c.running_on(i)).sum();
    assert_eq!(
        running, 6,
        "exactly the service's count runs on the engines"
    );
    assert_eq!(c.spread("web").values().sum::<usize>(), 6);
    // Events tell the story: the loss with the tasks replaced, and each stale copy stopped.
    let events = c.events("web");
    let lost = events
        .lines()
        .find(|l| l.contains(&format!("host {} was lost", c.ids[1])))
        .unwrap_or_else(|| panic!("no loss event: {events}"));
    for t in &on_lost {
        assert!(lost.contains(&format!("(task {t})")), "{events}");
        assert!(
            events.contains(&format!(
                "task {t} still ran on host {}, which is back; it was replaced meanwhile, so it was stopped.",
                c.ids[1]
            )),
            "{events}"
        );
    }
}

/// A host unheard for half the loss timeout gets its tasks replaced on the others before it
/// is called lost (within maximum %; its own are left alone); heard again before the loss,
/// the surplus is scaled in from the most crowded hosts, so the count and the spread are
/// what they were, and the host was never LOST. (The loss timeout is long here, 40 s, so
/// that the replacements are healthy well before the host would be lost on a busy machine.)
#[test]
fn a_host_unheard_for_a_while_gets_replacements_and_the_surplus_goes_when_it_is_heard_again() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let c = Cluster::with_args(&[&[], &[], &[]], 1024, 0, &["--host-loss-timeout", "40s"]);
    let v1 = push_to_server(&c.s, "slipway-hello:v1", "hello", "v1");
    let app = app_name("unheard");
    let spread = "      strategy:\n        - type: spread\n          field: host\n";
    c.s.manifest(&zone_manifest(&app, &v1, 6, spread));
    let out = c.s.cli(&["deploy"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    let even = BTreeMap::from([(0, 2), (1, 2), (2, 2)]);
    assert_eq!(c.spread("web"), even, "spread by host");
    let on_host_3 = || {
        let mut ids: Vec<String> = c
            .tasks("web")
            .iter()
            .filter(|t| t["host"] == c.ids[2].as_str())
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let on_cut = on_host_3();

    let load = Load::start(&c.ingress_url(), 16, Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    let cut_at = Instant::now();
    c.bed.cut(2);
    // Replacements healthy on hosts 1 and 2 while host 3 is only unheard.
    wait_for(
        Duration::from_secs(120),
        "6 healthy tasks on hosts 1 and 2",
        || {
            let spread = c.spread("web");
            (spread.get(&0).unwrap_or(&0) + spread.get(&1).unwrap_or(&0) == 6).then_some(())
        },
    );
    eprintln!(
        "unheard host: 6 healthy on the others {:.1} s after the cut",
        cut_at.elapsed().as_secs_f64()
    );
    assert_eq!(c.host(2)["state"], "ACTIVE", "not lost yet");
    assert_eq!(c.running_on(2), 2, "host 3's own tasks were left alone");
    let events = c.events("web");
    let told = events
        .lines()
        .find(|l| l.contains(&format!("host {} is unheard", c.ids[2])))
        .unwrap_or_else(|| panic!("no unheard event: {events}"));
    for t in &on_cut {
        assert!(told.contains(&format!("(task {t})")), "{events}");
    }

    // Heard again: two tasks too many, taken from the crowded hosts: 2 / 2 / 2 again.
    c.bed.restore(2);
    wait_for(
        Duration::from_secs(60),
        "2 / 2 / 2 and 6 containers",
        || {
            let running: usize = (0..3).map(|i| c.running_on(i)).sum();
            (c.spread("web") == even && running == 6).then_some(())
        },
    );
    let report = load.stop();
    eprintln!("unheard host and back under load: {report:?}");
    assert_eq!(failures(&report), 0, "{report:?}");
    assert_eq!(on_host_3(), on_cut, "host 3 kept its own tasks");
    assert_eq!(c.host(2)["state"], "ACTIVE");
    let events = c.events("web");
    assert!(
        !events.contains(&format!("host {} was lost", c.ids[2])),
        "never lost: {events}"
    );
}

#[test]
fn hosts_keep_serving_while_the_server_is_down_and_it_converges_without_restarts() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let mut c = Cluster::new(&[&[], &[], &[]], 1024);
    let v1 = push_to_server(&c.s, "slipway-hello:v1", "hello", "v1");
    let app = app_name("away");
    c.s.manifest(&zone_manifest(
        &app,
        &v1,
        3,
        "      strategy:\n        - type: spread\n          field: host\n",
    ));
    c.s.cli(&["deploy"]).ok();
    assert_eq!(c.spread("web"), BTreeMap::from([(0, 1), (1, 1), (2, 1)]));
    let published: Vec<String> = c
        .tasks("web")
        .iter()
        .map(|t| t["published"].as_str().unwrap().to_owned())
        .collect();
    let url = c.ingress_url();

    let load = Load::start(&url, 8, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    let down_at = Instant::now();
    c.s.kill9();

    // Meanwhile a task is killed on host 1: its agent starts it again.
    let (victim, task, _) = c.bed.hosts[0].containers(&c.s.cluster)[0].clone();
    let started = |i: usize, id: &str| -> String {
        let o = c.bed.hosts[i].docker(&["inspect", "--format", "{{.State.StartedAt}}", id]);
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let before = started(0, &victim);
    assert!(c.bed.hosts[0].docker(&["kill", &victim]).status.success());
    wait_for(
        Duration::from_secs(30),
        "host 1's agent to start its task again",
        || {
            let now = started(0, &victim);
            (now != before && c.running_on(0) == 1).then_some(())
        },
    );
    assert!(
        c.bed.hosts[0]
            .agent_log()
            .contains("starting an exited task again"),
        "{}",
        c.bed.hosts[0].agent_log()
    );

    // Every host keeps serving, directly and through the ingress, for 60 s.
    while down_at.elapsed() < Duration::from_secs(60) {
        for p in &published {
            let (ip, port) = p.rsplit_once(':').unwrap();
            let answer = probe(ip, port.parse().unwrap(), "/");
            assert_eq!(
                answer.map(|a| a.0),
                Some(200),
                "{p} while the server is down"
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let report = load.stop();
    eprintln!("60 s with the server down: {report:?}");
    assert_eq!(failures(&report), 0, "{report:?}");
    assert!(report.ok > 0);

    // The server comes back: the agents reconnect, and nothing healthy is restarted.
    let snapshot: Vec<Vec<(String, String)>> = (0..3)
        .map(|i| {
            c.bed.hosts[i]
                .containers(&c.s.cluster)
                .into_iter()
                .map(|(id, _, _)| (id.clone(), started(i, &id)))
                .collect()
        })
        .collect();
    c.s.restart();
    wait_for(Duration::from_secs(60), "every agent back", || {
        c.hosts()
            .iter()
            .all(|h| h["connected"] == true && h["state"] == "ACTIVE")
            .then_some(())
    });
    wait_for(Duration::from_secs(60), "3 healthy tasks", || {
        (healthy(&c, "web") == 3).then_some(())
    });
    // Some reconcile passes, then the same containers, started when they were.
    std::thread::sleep(Duration::from_secs(5));
    for (i, before) in snapshot.iter().enumerate() {
        let now: Vec<(String, String)> = c.bed.hosts[i]
            .containers(&c.s.cluster)
            .into_iter()
            .map(|(id, _, _)| (id.clone(), started(i, &id)))
            .collect();
        assert_eq!(&now, before, "host {} after the server came back", i + 1);
    }
    assert_eq!(healthy(&c, "web"), 3);
    let tasks = c.tasks("web");
    assert!(
        tasks.iter().any(|t| t["id"] == task.as_str()),
        "the killed task is the same task, started again: {tasks:?}"
    );
}

/// One line on stderr (the CLI's and the agent's error contract), containing `what`.
#[track_caller]
fn one_line_error(stderr: &str, what: &str) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains(" INFO ") && !l.contains(" WARN "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(lines[0].contains(what), "{what:?} in {stderr}");
}

#[test]
fn joining_refuses_bad_tokens_other_clusters_and_revoked_hosts() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let mut c = Cluster::with_spare(&[&[], &[]], 1024, 1);
    let spare = 2;
    let quick = Duration::from_secs(30);
    let refused =
        "the join token is wrong, used or expired; make a new one with `slipway host join-token`";

    // A wrong token, a token already used, and no token at all: refused, no host added.
    let (code, err) = c.bed.run_agent(
        spare,
        &c.lan_url,
        "a",
        &["--join-token", "sjt_wrong"],
        quick,
    );
    assert_eq!(code, Some(1), "{err}");
    one_line_error(&err, refused);
    let used = c.tokens[0].clone();
    let (code, err) = c
        .bed
        .run_agent(spare, &c.lan_url, "b", &["--join-token", &used], quick);
    assert_eq!(code, Some(1), "{err}");
    one_line_error(&err, refused);
    let (code, err) = c.bed.run_agent(spare, &c.lan_url, "c", &[], quick);
    assert_eq!(code, Some(1), "{err}");
    one_line_error(&err, "this host has not joined a cluster");
    assert_eq!(c.hosts().len(), 2);

    // Another cluster's server: an agent of this cluster is refused there, and that
    // cluster's join token means nothing here.
    let other = Server::start_with(&[
        "--api-addr",
        &format!("0.0.0.0:{}", free_port()),
        "--no-local-agent",
    ]);
    let other_port = other.url.rsplit(':').next().unwrap().to_owned();
    let other_url = format!("http://{}:{other_port}", c.bed.gateway);
    let dir = c.bed.agent_dir(0).display().to_string();
    let (code, err) = c.bed.run_agent(0, &other_url, &dir, &[], quick);
    assert_eq!(code, Some(1), "{err}");
    one_line_error(
        &err,
        &format!(
            "this agent belongs to cluster {}, and this server runs cluster {}",
            c.s.cluster, other.cluster
        ),
    );
    let foreign = other
        .cli(&["host", "join-token"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let (code, err) = c
        .bed
        .run_agent(spare, &c.lan_url, "d", &["--join-token", &foreign], quick);
    assert_eq!(code, Some(1), "{err}");
    one_line_error(&err, refused);
    assert_eq!(c.hosts().len(), 2);
    assert_eq!(
        other.cli(&["--json", "host", "ls"]).ok().json(),
        serde_json::json!([])
    );

    // A host with tasks is not removed by mistake; with --force it is, its tasks move, its
    // containers stop, and its agent's credential no longer works.
    let v1 = push_to_server(&c.s, "slipway-hello:v1", "hello", "v1");
    c.s.manifest(&zone_manifest(
        &app_name("rm"),
        &v1,
        2,
        "      strategy:\n        - type: spread\n          field: host\n",
    ));
    c.s.cli(&["deploy"]).ok();
    assert_eq!(c.spread("web"), BTreeMap::from([(0, 1), (1, 1)]));
    let out = c.s.cli(&["host", "rm", &c.ids[1]]);
    assert_eq!(out.code, 1, "{out:?}");
    one_line_error(&out.stderr, "still runs 1 task(s); drain it first");
    assert_eq!(c.hosts().len(), 2);
    c.s.cli(&["host", "rm", "--force", &c.ids[1]]).ok();
    let code = c.bed.wait_agent(1, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{}", c.bed.hosts[1].agent_log());
    assert!(
        c.bed.hosts[1]
            .agent_log()
            .contains("credential was revoked"),
        "{}",
        c.bed.hosts[1].agent_log()
    );
    assert_eq!(
        c.running_on(1),
        0,
        "the removed host's containers are stopped"
    );
    wait_for(Duration::from_secs(60), "2 healthy tasks on host 1", || {
        (c.spread("web") == BTreeMap::from([(0, 2)])).then_some(())
    });
    let dir = c.bed.agent_dir(1).display().to_string();
    let (code, err) = c.bed.run_agent(1, &c.lan_url, &dir, &[], quick);
    assert_eq!(code, Some(1), "{err}");
    one_line_error(&err, "credential was revoked");
    assert_eq!(c.hosts().len(), 1);
}

/// The host id at the end of a container instance ARN.
fn instance_host(arn: &Value) -> String {
    arn.as_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

#[test]
fn ecs_container_instances_and_placement_through_the_aws_cli() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let Some(cli) = crate::aws::aws_cli() else {
        return;
    };
    let c = Cluster::new(
        &[
            &["--attribute", "zone=a"],
            &["--attribute", "zone=a"],
            &["--attribute", "zone=b"],
        ],
        1024,
    );
    let v1 = push_to_server(&c.s, "slipway-hello:v1", "hello", "v1");
    let aws = crate::aws::Aws::new(&c.s, &cli, &["--name", "ops"]);
    aws.json(&["ecs", "create-cluster", "--cluster-name", "web"]);

    // The hosts are the container instances, with their resources and attributes.
    let listed = aws.json(&["ecs", "list-container-instances", "--cluster", "web"]);
    let mut hosts: Vec<String> = listed["containerInstanceArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(instance_host)
        .collect();
    hosts.sort();
    let mut ids = c.ids.clone();
    ids.sort();
    assert_eq!(hosts, ids, "{listed}");
    let described = aws.json(&[
        "ecs",
        "describe-container-instances",
        "--cluster",
        "web",
        "--container-instances",
        &c.ids[2],
        "nope",
    ]);
    let h = &described["containerInstances"][0];
    assert_eq!(h["ec2InstanceId"], c.ids[2].as_str());
    assert_eq!(h["status"], "ACTIVE");
    assert_eq!(h["agentConnected"], true);
    assert_eq!(h["registeredResources"][1]["name"], "MEMORY");
    assert_eq!(h["registeredResources"][1]["integerValue"], 1024);
    assert!(
        h["attributes"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"name": "zone", "value": "b"})),
        "{h}"
    );
    assert_eq!(described["failures"][0]["reason"], "MISSING", "{described}");

    // A service placed by ECS's fields: only zone b, spread over instances.
    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "site",
        "--container-definitions",
        &crate::aws::container_defs("site", &v1),
    ]);
    let created = aws.json(&[
        "ecs",
        "create-service",
        "--cluster",
        "web",
        "--service-name",
        "site",
        "--task-definition",
        "site:1",
        "--desired-count",
        "2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:zone == b",
        "--placement-strategy",
        "type=spread,field=instanceId",
    ]);
    assert_eq!(
        created["service"]["placementConstraints"],
        serde_json::json!([{"type": "memberOf", "expression": "attribute:zone == b"}])
    );
    assert_eq!(
        created["service"]["placementStrategy"],
        serde_json::json!([{"type": "spread", "field": "instanceId"}])
    );
    crate::aws::wait_stable(&aws, "web", "site");
    let arns = aws.json(&[
        "ecs",
        "list-tasks",
        "--cluster",
        "web",
        "--service-name",
        "site",
    ]);
    let mut args = vec!["ecs", "describe-tasks", "--cluster", "web", "--tasks"];
    let arns: Vec<String> = arns["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    args.extend(arns.iter().map(String::as_str));
    let tasks = aws.json(&args);
    let on: Vec<String> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| instance_host(&t["containerInstanceArn"]))
        .collect();
    assert_eq!(on, vec![c.ids[2].clone(); 2], "{tasks}");

    // RunTask by placement; StartTask on the instance named.
    let run = aws.json(&[
        "ecs",
        "run-task",
        "--cluster",
        "web",
        "--task-definition",
        "site:1",
        "--count",
        "2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:zone == a",
        "type=distinctInstance",
    ]);
    assert_eq!(run["failures"], serde_json::json!([]), "{run}");
    let run_arns: Vec<String> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_owned())
        .collect();
    let placed = wait_for(Duration::from_secs(60), "the run tasks placed", || {
        let mut args = vec!["ecs", "describe-tasks", "--cluster", "web", "--tasks"];
        args.extend(run_arns.iter().map(String::as_str));
        let d = aws.json(&args);
        let mut on: Vec<String> = d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["lastStatus"] == "RUNNING")
            .map(|t| instance_host(&t["containerInstanceArn"]))
            .collect();
        on.sort();
        (on.len() == 2).then_some(on)
    });
    let mut zone_a = vec![c.ids[0].clone(), c.ids[1].clone()];
    zone_a.sort();
    assert_eq!(placed, zone_a, "one task on each host of zone a");
    let started = aws.json(&[
        "ecs",
        "start-task",
        "--cluster",
        "web",
        "--task-definition",
        "site:1",
        "--container-instances",
        &c.ids[1],
    ]);
    assert_eq!(
        instance_host(&started["tasks"][0]["containerInstanceArn"]),
        c.ids[1]
    );

    // Draining through ECS is Slipway's drain.
    let drained = aws.json(&[
        "ecs",
        "update-container-instances-state",
        "--cluster",
        "web",
        "--container-instances",
        &c.ids[0],
        "--status",
        "DRAINING",
    ]);
    assert_eq!(drained["containerInstances"][0]["status"], "DRAINING");
    assert_eq!(c.host(0)["state"], "DRAINING");
    let draining = aws.json(&[
        "ecs",
        "list-container-instances",
        "--cluster",
        "web",
        "--status",
        "DRAINING",
    ]);
    assert_eq!(
        draining["containerInstanceArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(instance_host)
            .collect::<Vec<_>>(),
        vec![c.ids[0].clone()]
    );
    aws.json(&[
        "ecs",
        "update-container-instances-state",
        "--cluster",
        "web",
        "--container-instances",
        &c.ids[0],
        "--status",
        "ACTIVE",
    ]);
    assert_eq!(c.host(0)["state"], "ACTIVE");

    // Bad placement: an ECS error, and no service.
    let bad = aws.run(&[
        "ecs",
        "create-service",
        "--cluster",
        "web",
        "--service-name",
        "bad",
        "--task-definition",
        "site:1",
        "--placement-strategy",
        "type=binpack,field=disk",
    ]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("InvalidParameterException"), "{bad:?}");
    let services = aws.json(&["ecs", "list-services", "--cluster", "web"]);
    assert_eq!(
        services["serviceArns"].as_array().unwrap().len(),
        1,
        "{services}"
    );
}

#[test]
fn rebalance_spreads_a_service_onto_a_host_that_joined_under_load() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let mut c = Cluster::with_spare(&[&[], &[]], 1024, 1);
    let v1 = push_to_server(&c.s, "slipway-hello:v1", "hello", "v1");
    c.s.manifest(&zone_manifest(
        &app_name("rebal"),
        &v1,
        6,
        "      strategy:\n        - type: spread\n          field: host\n",
    ));
    c.s.cli(&["deploy"]).ok();
    assert_eq!(c.spread("web"), BTreeMap::from([(0, 3), (1, 3)]));

    // A third host joins (given a dead server URL first: it tries the next): nothing moves
    // by itself.
    let token =
        c.s.cli(&["host", "join-token"])
            .ok()
            .stdout
            .trim()
            .to_owned();
    let lan = format!("http://{}:1,{}", c.bed.gateway, c.lan_url);
    c.bed
        .start_agent(2, &lan, Some(&token), &["--memory", "1024"]);
    let third = wait_for(Duration::from_secs(60), "the third host", || {
        c.hosts()
            .into_iter()
            .find(|h| h["name"] == "host3" && h["connected"] == true)
            .map(|h| h["id"].as_str().unwrap().to_owned())
    });
    c.ids.push(third);
    assert_eq!(c.spread("web"), BTreeMap::from([(0, 3), (1, 3)]));

    // Rebalance under load: one task leaves each full host, no request fails.
    let load = Load::start(&c.ingress_url(), 16, Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    let out = c.s.cli(&["--json", "rebalance", "web"]).ok();
    let report = load.stop();
    eprintln!("rebalance under load: {report:?}");
    let r = out.json();
    assert_eq!(r["moved"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(failures(&report), 0, "{report:?}");
    assert_eq!(c.spread("web"), BTreeMap::from([(0, 2), (1, 2), (2, 2)]));
    assert_eq!((0..3).map(|i| c.running_on(i)).sum::<usize>(), 6);
    let events = c.events("web");
    assert!(
        events.contains("rebalancing: moving 2 task(s) to restore the spread"),
        "{events}"
    );
    // Balanced now: a second rebalance moves nothing.
    let again = c.s.cli(&["rebalance", "web"]).ok();
    assert!(again.stdout.contains("already balanced"), "{again:?}");
}

/// `GET path` with a Host header through `addr`, waiting up to 20 s: (status, body).
fn curl_host(addr: &str, host: &str, path: &str) -> (u16, String) {
    let o = std::process::Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{addr}{path}"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Builds one of examples/shop's images (FROM the local slipway-shop-base:v1).
fn shop_image(part: &str) -> String {
    let tag = format!("slipway-shop-{part}:hosts");
    let o = std::process::Command::new("docker")
        .args(["build", "--quiet", "--tag", &tag])
        .arg(repo_root().join("examples/shop").join(part))
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tag
}

#[test]
fn backend_services_answer_by_name_across_hosts_and_environments_stay_apart() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let c = Cluster::new(
        &[
            &["--attribute", "role=back"],
            &["--attribute", "role=front"],
        ],
        1024,
    );
    let users = push_to_server(&c.s, &shop_image("users"), "users", "v1");
    let gateway = push_to_server(&c.s, &shop_image("gateway"), "gateway", "v1");
    let only = |role: &str| {
        format!(
            "    placement:\n      constraints:\n        - type: memberOf\n          expression: attribute:role == {role}\n"
        )
    };
    // The gateway on one host, its backend on the other.
    let app = app_name("disc");
    c.s.manifest(&format!(
        "app: {app}\nservices:\n  gateway:\n    type: Load Balanced Web Service\n    image:\n      location: {gateway}\n      port: 8080\n    http:\n      path: /\n      healthcheck: /healthz\n    count: 1\n    memory: 32\n{}  users:\n    type: Backend Service\n    image:\n      location: {users}\n      port: 8080\n    http:\n      healthcheck: /healthz\n    count: 2\n    memory: 32\n{}",
        only("front"),
        only("back"),
    ));
    c.s.cli(&["deploy"]).ok();
    assert_eq!(c.spread("gateway"), BTreeMap::from([(1, 1)]));
    assert_eq!(c.spread("users"), BTreeMap::from([(0, 2)]));
    let ingress = c.s.ingress();
    let answer = wait_for(
        Duration::from_secs(30),
        "the gateway to reach users",
        || probe_host(&ingress, "localhost", "/users").filter(|(code, _)| *code == 200),
    );
    assert!(answer.1.contains("Grace Hopper"), "{answer:?}");

    // Another app's gateway asking for `users` on the same hosts: its own environment has
    // no such service, so the name does not lead to this app's users.
    let other = app_name("iso");
    c.s.manifest(&format!(
        "app: {other}\nservices:\n  gateway:\n    type: Load Balanced Web Service\n    image:\n      location: {gateway}\n      port: 8080\n    http:\n      path: /\n      alias: {other}.test\n      healthcheck: /healthz\n    count: 1\n    memory: 32\n{}",
        only("front"),
    ));
    c.s.cli(&["deploy"]).ok();
    let refused = curl_host(&ingress, &format!("{other}.test"), "/users");
    assert_ne!(refused.0, 200, "{refused:?}");
    assert!(!refused.1.contains("Grace Hopper"), "{refused:?}");
    // The first app still answers.
    assert_eq!(probe_host(&ingress, "localhost", "/users").unwrap().0, 200);

    // Nor does the other app get in by the users' virtual address itself, which the first
    // app's own tasks reach (a hash of the service's key: the only service with a clash
    // would be the gateway, one chance in 131 000).
    let key = slipway_core::model::ServiceKey::new(app.as_str(), "default", "users");
    let vip = slipway_agent::discovery::assign_vips(std::slice::from_ref(&key))[&key];
    let direct = |a: &str, alias: &str| {
        format!(
            "app: {a}\nservices:\n  direct:\n    type: Load Balanced Web Service\n    image:\n      location: {gateway}\n      port: 8080\n    http:\n      path: /\n      alias: {alias}\n      healthcheck: /healthz\n    variables:\n      SHOP_ROUTES: users={vip}:8080\n    count: 1\n    memory: 32\n{}",
            only("front"),
        )
    };
    c.s.manifest(&direct(&app, "own.test"));
    c.s.cli(&["deploy"]).ok();
    let own = curl_host(&ingress, "own.test", "/users");
    assert_eq!(own.0, 200, "the app's own tasks reach {vip}: {own:?}");
    c.s.manifest(&direct(&other, "other.test"));
    c.s.cli(&["deploy"]).ok();
    let foreign = curl_host(&ingress, "other.test", "/users");
    assert_ne!(foreign.0, 200, "{foreign:?}");
    assert!(!foreign.1.contains("Grace Hopper"), "{foreign:?}");
    // Nor where a users task is published on its host (for the ingress and the other hosts'
    // proxies): the other app's task is stopped on its own host (issue 20 item 9), while
    // a host process still gets there.
    let ports = c.bed.hosts[0].docker(&[
        "ps",
        "--filter",
        &format!("label=slipway.app={app}"),
        "--filter",
        "label=slipway.service=users",
        "--format",
        "{{.Ports}}",
    ]);
    let ports = String::from_utf8_lossy(&ports.stdout).into_owned();
    let published = ports
        .lines()
        .next()
        .and_then(|l| l.split_once("->"))
        .map(|(a, _)| a.trim().to_owned())
        .unwrap_or_else(|| panic!("a published users task on host 0: {ports:?}"));
    assert_eq!(
        probe_host(&published, "users", "/healthz").map(|r| r.0),
        Some(200),
        "a host process reaches {published}"
    );
    c.s.manifest(&format!(
        "app: {other}\nservices:\n  direct:\n    type: Load Balanced Web Service\n    image:\n      location: {gateway}\n      port: 8080\n    http:\n      path: /\n      alias: leak.test\n      healthcheck: /healthz\n    variables:\n      SHOP_ROUTES: users={published}\n    count: 1\n    memory: 32\n{}",
        only("front"),
    ));
    c.s.cli(&["deploy"]).ok();
    let leak = curl_host(&ingress, "leak.test", "/users");
    assert_ne!(leak.0, 200, "another app reached {published}: {leak:?}");
    assert!(!leak.1.contains("Grace Hopper"), "{leak:?}");

    // Its backend moves (all on the gateway's host now): the name follows.
    c.s.manifest(&format!(
        "app: {app}\nservices:\n  gateway:\n    type: Load Balanced Web Service\n    image:\n      location: {gateway}\n      port: 8080\n    http:\n      path: /\n      healthcheck: /healthz\n    count: 1\n    memory: 32\n{}  users:\n    type: Backend Service\n    image:\n      location: {users}\n      port: 8080\n    http:\n      healthcheck: /healthz\n    count: 2\n    memory: 32\n{}",
        only("front"),
        only("front"),
    ));
    c.s.cli(&["deploy"]).ok();
    assert_eq!(c.spread("users"), BTreeMap::from([(1, 2)]));
    let moved = probe_host(&ingress, "localhost", "/users").unwrap();
    assert_eq!(moved.0, 200, "{moved:?}");
}

/// Issue #23 items 1-2 on a remote host: a crashed task's last output and exit code are read
/// through its agent before the container is removed, and a failed HTTP check probed by the
/// agent names the path, the status and the body.
#[test]
fn a_remote_task_keeps_its_last_output_and_its_failed_check_says_what_it_saw() {
    if !docker() || !crate::testbed::available() {
        return;
    }
    let c = Cluster::new(&[&[]], 512);
    let s = &c.s;
    let exit = push_to_server(s, "slipway-hello:exit", "hello", "exit");
    let unhealthy = push_to_server(s, "slipway-hello:unhealthy", "hello", "unhealthy");
    let app = app_name("remote");
    let extra = "    stop_timeout: 2s\n    variables: { HELLO_DRAIN_MS: \"0\" }\n    deployment:\n      failure_threshold: 1\n";
    s.manifest(&web_manifest(&app, &exit, 1, extra));
    let out = s.cli(&["deploy", "--timeout", "120s"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("exit code 3") && out.stdout.contains("exiting at start with code 3"),
        "{out:?}"
    );
    let all = s.cli(&["--json", "ps", "web", "--all"]).ok().json();
    let t = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["exit"]["exit_code"] == 3)
        .unwrap_or_else(|| panic!("a task with exit code 3: {all}"))
        .clone();
    assert_eq!(t["host"], c.ids[0].as_str(), "{t}");
    let logs = s
        .cli(&["logs", "web", "--task", t["id"].as_str().unwrap()])
        .ok();
    assert!(
        logs.stdout.contains("exiting at start with code 3"),
        "{logs:?}"
    );

    s.manifest(&web_manifest(&app, &unhealthy, 1, extra));
    let out = s.cli(&["deploy", "--timeout", "120s"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("GET /healthz on port 8080 answered 503"),
        "the agent's probe saw the status: {out:?}"
    );
}
