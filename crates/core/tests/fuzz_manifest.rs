//! Fuzzing of the `slipway.yml` parser on stable Rust, with proptest generators (issue 20).
//!
//! Four targets, each named `fuzz_manifest_*`:
//! - arbitrary bytes (as the CLI reads a file: lossy UTF-8),
//! - arbitrary text over YAML's punctuation, so the YAML grammar is reached,
//! - structure-aware documents: the manifest's shape with valid-ish values, then mutated
//!   (wrong types, huge numbers, deep nesting, unicode, tags and aliases, unknown and
//!   duplicated keys), rendered in block or flow style,
//! - valid manifests rendered in three layouts: each parses, compiles, means the same in every
//!   layout and compiles to the values it was generated from.
//!
//! The parser must never panic: it returns a manifest or a [`ManifestError`] with a message
//! and, when placed, a line and column inside the document. An accepted manifest compiles for
//! the default environment and for each environment it declares.
//!
//! Cases per target: `SLIPWAY_FUZZ_CASES` (else `PROPTEST_CASES`, else a CI-sized default).
//! `bench/fuzz.sh` runs one million per target in release mode.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::Config;
use slipway_core::manifest::{self, DEFAULT_ENV, Manifest, ManifestError};
use slipway_core::model::ServiceKind;

/// CI-sized runs: a few seconds per target on a debug build.
const CI_CASES: u32 = 2_000;
/// The targets that build whole documents: a debug build of the YAML parser takes 4–5 ms for
/// one, so CI runs fewer of them (the bench run takes a million of each, in release).
const CI_CASES_DOCUMENTS: u32 = 500;

fn config(ci_cases: u32) -> Config {
    let mut c = Config::default();
    c.cases = match std::env::var("SLIPWAY_FUZZ_CASES") {
        Ok(v) => v.parse().expect("SLIPWAY_FUZZ_CASES is a number of cases"),
        Err(_) if std::env::var_os("PROPTEST_CASES").is_some() => c.cases,
        Err(_) => ci_cases,
    };
    c.failure_persistence = None;
    c.max_global_rejects = c.cases;
    c
}

// ---- properties ----

/// What every outcome of `parse` must satisfy.
fn check_outcome(text: &str, r: &Result<Manifest, ManifestError>) -> Result<(), TestCaseError> {
    match r {
        Ok(m) => {
            // An accepted manifest compiles for the default environment and its own ones.
            let specs = m.compile(DEFAULT_ENV);
            prop_assert!(specs.is_ok(), "accepted but does not compile: {specs:?}");
            prop_assert_eq!(specs.unwrap().len(), m.services.len());
            for env in m.environments.keys() {
                let s = m.compile(env);
                prop_assert!(s.is_ok(), "environment {env} does not compile: {s:?}");
            }
        }
        Err(e) => check_error(text, e)?,
    }
    Ok(())
}

fn check_error(text: &str, e: &ManifestError) -> Result<(), TestCaseError> {
    prop_assert!(!e.message.trim().is_empty(), "an error without a message");
    prop_assert_eq!(e.line.is_some(), e.column.is_some());
    if let (Some(l), Some(c)) = (e.line, e.column) {
        // YAML's line breaks are LF, CR and CRLF; the end of input may be one line further.
        let lines = 1 + text.replace("\r\n", "\n").matches(['\r', '\n']).count() as u64;
        prop_assert!(
            l >= 1 && l <= lines + 1,
            "line {l} outside 1..={}",
            lines + 1
        );
        prop_assert!(c >= 1, "column {c}");
        let shown = e.to_string();
        let place = format!("{l}:{c}: ");
        prop_assert!(shown.starts_with(&place), "{}", shown);
        prop_assert!(e.with_file("f.yml").starts_with("f.yml:"));
    }
    Ok(())
}

// ---- a YAML tree and its renderings ----

#[derive(Clone, Debug)]
enum Y {
    /// A scalar token as written (quoted or not).
    S(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

fn s(t: impl Into<String>) -> Y {
    Y::S(t.into())
}

/// A single-quoted scalar (safe in block and flow context).
fn q(t: &str) -> Y {
    Y::S(format!("'{}'", t.replace('\'', "''")))
}

/// A double-quoted scalar with every character outside printable ASCII escaped, so that
/// it means `t` exactly (YAML folds raw line breaks such as U+0085 in quoted scalars).
fn dq(t: &str) -> String {
    let mut out = String::from("\"");
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn map(entries: Vec<(&str, Y)>) -> Y {
    Y::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn block(y: &Y) -> String {
    let mut out = String::new();
    match y {
        Y::Map(e) if !e.is_empty() => block_map(e, 0, &mut out),
        other => {
            flow(other, &mut out);
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn block_map(entries: &[(String, Y)], indent: usize, out: &mut String) {
    for (k, v) in entries {
        pad(indent, out);
        out.push_str(k);
        out.push(':');
        block_value(v, indent, out);
    }
}

/// A node after `key:` or `-` at `indent`; its children go at `indent + 2`.
fn block_value(v: &Y, indent: usize, out: &mut String) {
    match v {
        Y::S(t) => {
            out.push(' ');
            out.push_str(t);
            out.push('\n');
        }
        Y::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Y::Map(e) if e.is_empty() => out.push_str(" {}\n"),
        Y::Map(e) => {
            out.push('\n');
            block_map(e, indent + 2, out);
        }
        Y::Seq(items) => {
            out.push('\n');
            for it in items {
                pad(indent + 2, out);
                out.push('-');
                block_value(it, indent + 2, out);
            }
        }
    }
}

fn flow(y: &Y, out: &mut String) {
    match y {
        Y::S(t) => out.push_str(t),
        Y::Seq(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(it, out);
            }
            out.push(']');
        }
        Y::Map(e) => {
            out.push('{');
            for (i, (k, v)) in e.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                flow(v, out);
            }
            out.push('}');
        }
    }
}

fn flow_doc(y: &Y) -> String {
    let mut out = String::new();
    flow(y, &mut out);
    out.push('\n');
    out
}

/// Reorders every map's keys (keys carry meaning, order does not).
fn shuffle(y: &Y, seed: u64) -> Y {
    match y {
        Y::S(_) => y.clone(),
        Y::Seq(items) => Y::Seq(items.iter().map(|i| shuffle(i, seed)).collect()),
        Y::Map(e) => {
            let mut e: Vec<(String, Y)> = e
                .iter()
                .map(|(k, v)| (k.clone(), shuffle(v, seed)))
                .collect();
            e.sort_by_key(|(k, _)| {
                k.bytes().fold(seed, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                })
            });
            Y::Map(e)
        }
    }
}

fn count_nodes(y: &Y) -> usize {
    1 + match y {
        Y::S(_) => 0,
        Y::Seq(items) => items.iter().map(count_nodes).sum(),
        Y::Map(e) => e.iter().map(|(_, v)| count_nodes(v)).sum(),
    }
}

/// The node at preorder position `idx`.
fn node_at(y: &mut Y, idx: usize) -> &mut Y {
    // Find the path to the node, then follow it mutably.
    let mut path = Vec::new();
    fn find(y: &Y, idx: &mut usize, path: &mut Vec<usize>) -> bool {
        if *idx == 0 {
            return true;
        }
        *idx -= 1;
        let kids: Vec<&Y> = match y {
            Y::S(_) => vec![],
            Y::Seq(items) => items.iter().collect(),
            Y::Map(e) => e.iter().map(|(_, v)| v).collect(),
        };
        for (i, k) in kids.into_iter().enumerate() {
            path.push(i);
            if find(k, idx, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut i = idx % count_nodes(y);
    find(y, &mut i, &mut path);
    let mut cur = y;
    for p in path {
        cur = match cur {
            Y::Seq(items) => &mut items[p],
            Y::Map(e) => &mut e[p].1,
            Y::S(_) => unreachable!("a path goes through containers"),
        };
    }
    cur
}

// ---- generators: values ----

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const LOWER_DIGIT_DASH: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";

/// A word of `first` then `rest` characters (cheaper to draw than a regex).
fn word(
    first: &'static [u8],
    rest: &'static [u8],
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = String> {
    (
        prop::sample::select(first),
        prop::collection::vec(prop::sample::select(rest), len),
    )
        .prop_map(|(f, r)| {
            let mut w = String::from(f as char);
            w.extend(r.into_iter().map(char::from));
            w
        })
}

/// A name the manifest accepts (`[a-z][a-z0-9-]*`, not ending in '-', up to 40).
fn valid_name() -> impl Strategy<Value = String> {
    word(LOWER, LOWER_DIGIT_DASH, 0..20).prop_map(|w| {
        let w = w.trim_end_matches('-');
        if w.is_empty() {
            "a".to_owned()
        } else {
            w.to_owned()
        }
    })
}

/// Any text: unicode, controls and quotes included.
fn any_text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), len).prop_map(|c| c.into_iter().collect())
}

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = Y> {
    prop::sample::select(pool).prop_map(s)
}

fn pick_q(pool: &'static [&'static str]) -> impl Strategy<Value = Y> {
    prop::sample::select(pool).prop_map(q)
}

const NAMES: &[&str] = &["api", "web", "db", "worker", "a", "x-1", "jobs", "cache"];
const ENVS: &[&str] = &["prod", "staging", "default", "dev-2"];
const KINDS: &[&str] = &[
    "Load Balanced Web Service",
    "Backend Service",
    "Worker Service",
    "Scheduled Job",
    "web",
    "lb",
    "backend",
    "worker",
    "job",
    "LBWS",
];
const IMAGES: &[&str] = &[
    "slipway-hello:v1",
    "registry.local:5000/team/api@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "nginx",
    "db:2",
];
const DURATIONS: &[&str] = &[
    "500ms", "2s", "1m", "10m", "1h", "30", "0", "1s 500ms", "3d",
];
const BAD_DURATIONS: &[&str] = &[
    "-1s",
    "1y2",
    "18446744073709551615s",
    "99999999999999999999h",
    "1.5.s",
    "''",
    "'  '",
    "1 2",
    "5 fortnights",
    "1e3s",
];
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "100",
    "200",
    "256",
    "1000",
    "1001",
    "65535",
    "65536",
    "-1",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "1e309",
    "-0",
    "0x1F",
    "0o17",
    "+12",
    "007",
    "1_000",
    "1.5",
    ".inf",
    "-.inf",
    ".nan",
];
const SCALARS_ODD: &[&str] = &[
    "~",
    "null",
    "true",
    "false",
    "yes",
    "off",
    "''",
    "\"\"",
    "!!str 5",
    "!!int '7'",
    "!!binary aGVsbG8=",
    "!!float 1",
    "!custom x",
    "&a 1",
    "*a",
    "*undefined",
    "|\n  block text\n",
    ">-\n  folded\n",
    "\"\\u0000\"",
    "\"\\uD800\"",
    "\"\\xff\"",
    "'é日本語🚀'",
    "ｆｕｌｌｗｉｄｔｈ",
    "\"\\t\\r\\n\"",
    "<<",
    "? complex",
    "%YAML 1.2",
    "---",
    "...",
    "@reserved",
    "`backtick",
];
const SCHEDULES: &[&str] = &[
    "'@every 1h'",
    "'@every 10s'",
    "'@daily'",
    "'@hourly'",
    "'0 3 * * *'",
    "'*/15 * * * 1-5'",
    "'0 0 1 jan,jul *'",
    "'0 0 * * sun'",
    "'@every 0s'",
    "'@every 999999999999y'",
    "'@reboot'",
    "'61 * * * *'",
    "'*/0 * * * *'",
    "'5/4294967295 * * * *'",
    "'0/4294967296 * * * *'",
    "'1-0 * * * *'",
    "'0 0 30 2 *'",
    "'0 0 31 * 7'",
    "'- - - - -'",
    "'a b c d e'",
    "'* * * *'",
    "'*/1,*/2,5-7/3 * * * *'",
    "'0-59/59 0-23/23 1-31/30 1-12/11 0-7/7'",
];
const EXPRESSIONS: &[&str] = &[
    "'attribute:zone == a'",
    "'attribute:zone != b'",
    "'attribute:zone in [a, b]'",
    "'attribute:zone not in [a]'",
    "'attribute:gpu exists'",
    "'attribute:a == x and attribute:b == y or attribute:c exists'",
    "'attribute: == a'",
    "'attribute:zone in [a, [b]'",
    "'attribute:zone in ]['",
    "'and'",
    "'or or or'",
    "''",
    "'attribute:zone'",
];
const PATHS: &[&str] = &["/", "/api", "/healthz", "/a/b/", "x", "", "//", "/../etc"];
const HOSTS: &[&str] = &[
    "example.com",
    "*.example.com",
    "a-b.c",
    "*.",
    "",
    "bad host",
    "é.com",
];
const CODES: &[&str] = &[
    "'200'",
    "'200-299'",
    "'200,204'",
    "'299-200'",
    "'99'",
    "'600'",
    "'a'",
    "','",
    "'-'",
];
const VARS: &[&str] = &[
    "LOG_LEVEL",
    "A",
    "_X1",
    "1BAD",
    "bad-name",
    "'with space'",
    "PATH",
];
const SECRETS: &[&str] = &[
    "shop/db-password",
    "a",
    "x.y_z-1",
    "/abs",
    "a//b",
    "trailing/",
    "bad name",
];
const USERS: &[&str] = &["'1000:1000'", "app", "'0'", "'a b'", "':'", "'a:'"];
const MOUNTS: &[&str] = &["/data", "/etc/conf", "data", "/", "/a/../b", "/data/"];
const PLATFORMS: &[&str] = &[
    "linux/amd64",
    "linux/arm64/v8",
    "linux",
    "a/b/c/d",
    "linux/",
    "'linux/am d64'",
];
const RATES: &[&str] = &[
    "'2%'", "0.5", "100", "'101%'", "'-1%'", "'%'", "'NaN'", "'1e400'", "'inf%'",
];

/// A scalar that is well-formed for the field `kind`, or sometimes a bad one for it.
fn dur() -> impl Strategy<Value = Y> {
    prop_oneof![8 => pick(DURATIONS), 1 => pick_q(BAD_DURATIONS), 1 => pick(NUMBERS)]
}

fn num(good: &'static [&'static str]) -> impl Strategy<Value = Y> {
    prop_oneof![8 => pick(good), 2 => pick(NUMBERS)]
}

fn boolean() -> impl Strategy<Value = Y> {
    prop_oneof![4 => pick(&["true", "false"]), 1 => pick(&["yes", "1", "'true'", "~"])]
}

fn string_or_list(pool: &'static [&'static str]) -> impl Strategy<Value = Y> {
    prop_oneof![
        pick_q(pool),
        prop::collection::vec(pick_q(pool), 0..3).prop_map(Y::Seq),
    ]
}

/// Optional fields of a map: each present with some probability.
fn fields(v: Vec<BoxedStrategy<Option<(&'static str, Y)>>>) -> impl Strategy<Value = Y> {
    v.prop_map(|entries| {
        Y::Map(
            entries
                .into_iter()
                .flatten()
                .map(|(k, y)| (k.to_owned(), y))
                .collect(),
        )
    })
}

fn opt<S: Strategy<Value = Y> + 'static>(
    key: &'static str,
    st: S,
) -> BoxedStrategy<Option<(&'static str, Y)>> {
    prop::option::weighted(0.4, st.prop_map(move |y| (key, y))).boxed()
}

fn always<S: Strategy<Value = Y> + 'static>(
    key: &'static str,
    st: S,
) -> BoxedStrategy<Option<(&'static str, Y)>> {
    st.prop_map(move |y| Some((key, y))).boxed()
}

fn var_map(
    keys: &'static [&'static str],
    vals: impl Strategy<Value = Y> + 'static,
) -> impl Strategy<Value = Y> {
    prop::collection::vec((prop::sample::select(keys), vals), 0..3)
        .prop_map(|v| Y::Map(v.into_iter().map(|(k, y)| (k.to_owned(), y)).collect()))
}

fn build() -> impl Strategy<Value = Y> {
    prop_oneof![
        pick_q(&[
            "./api",
            "api/Dockerfile",
            "Dockerfile.dev",
            ".",
            "",
            "/abs/x.dockerfile",
            "a/"
        ]),
        fields(vec![
            opt("context", pick_q(&[".", "./api", "", "ctx/"])),
            opt(
                "dockerfile",
                pick_q(&["Dockerfile", "./api/Dockerfile", "", "x"])
            ),
            opt("args", var_map(VARS, pick_q(&["1", "v"]))),
            opt("target", pick_q(&["prod", "build"])),
        ]),
    ]
}

fn image() -> impl Strategy<Value = Y> {
    fields(vec![
        opt("location", pick_q(IMAGES)),
        opt("build", build()),
        opt("port", num(&["8080", "80", "1", "65535"])),
        opt("pull", pick(&["missing", "always", "never"])),
    ])
}

fn http() -> impl Strategy<Value = Y> {
    let full = fields(vec![
        always("path", pick_q(PATHS)),
        opt("port", num(&["8081", "9000"])),
        opt("success_codes", pick(CODES)),
        opt("healthy_threshold", num(&["1", "2", "200"])),
        opt("unhealthy_threshold", num(&["3", "201"])),
        opt("interval", dur()),
        opt("timeout", dur()),
        opt("grace_period", dur()),
    ]);
    fields(vec![
        opt("path", pick_q(PATHS)),
        opt("healthcheck", prop_oneof![pick_q(PATHS), full]),
        opt("alias", string_or_list(HOSTS)),
        opt("strip_prefix", boolean()),
        opt("deregistration_delay", dur()),
        opt("allow_shadowing", boolean()),
    ])
}

fn deployment() -> impl Strategy<Value = Y> {
    let pct = || num(&["1", "5", "10", "50", "100"]);
    fields(vec![
        opt("rolling", pick(&["default", "recreate", "other"])),
        opt("minimum_healthy_percent", num(&["0", "50", "100"])),
        opt("maximum_percent", num(&["100", "150", "200"])),
        opt("rollback", boolean()),
        opt("circuit_breaker", boolean()),
        opt("failure_threshold", num(&["1", "3"])),
        opt("timeout", dur()),
        opt(
            "strategy",
            pick(&["rolling", "canary", "linear", "blue_green", "bluegreen"]),
        ),
        opt(
            "canary",
            fields(vec![opt("percent", pct()), opt("bake", dur())]),
        ),
        opt(
            "linear",
            fields(vec![opt("step_percent", pct()), opt("bake", dur())]),
        ),
        opt("bake", dur()),
        opt("sticky", boolean()),
        opt(
            "analysis",
            fields(vec![
                opt("enabled", boolean()),
                opt("interval", dur()),
                opt("max_error_rate", pick(RATES)),
                opt("max_p99", dur()),
                opt("min_requests", num(&["0", "20", "50"])),
                opt("failures", num(&["1", "3"])),
            ]),
        ),
    ])
}

fn placement() -> impl Strategy<Value = Y> {
    let strategy = prop_oneof![
        pick_q(&["host", "instanceId", "attribute:zone", "attribute:", "cpu"])
            .prop_map(|f| map(vec![("type", s("spread")), ("field", f)])),
        pick(&["cpu", "memory", "disk"])
            .prop_map(|f| map(vec![("type", s("binpack")), ("field", f)])),
        Just(map(vec![("type", s("random"))])),
    ];
    let constraint = prop_oneof![
        Just(map(vec![("type", s("distinctInstance"))])),
        pick(EXPRESSIONS).prop_map(|e| map(vec![("type", s("memberOf")), ("expression", e)])),
    ];
    fields(vec![
        opt(
            "strategy",
            prop::collection::vec(strategy, 0..3).prop_map(Y::Seq),
        ),
        opt(
            "constraints",
            prop::collection::vec(constraint, 0..3).prop_map(Y::Seq),
        ),
    ])
}

fn service() -> impl Strategy<Value = Y> {
    fields(vec![
        always("type", pick_q(KINDS)),
        always("image", image()),
        opt("http", http()),
        opt(
            "healthcheck",
            fields(vec![
                always(
                    "command",
                    string_or_list(&["curl -f localhost", "CMD", "CMD-SHELL", "true"]),
                ),
                opt("interval", dur()),
                opt("timeout", dur()),
                opt("retries", num(&["1", "3"])),
                opt("start_period", dur()),
            ]),
        ),
        opt("count", num(&["0", "1", "3", "1000"])),
        opt("cpu", num(&["256", "1024", "65536"])),
        opt("memory", num(&["6", "64", "512", "1048576"])),
        opt("variables", var_map(VARS, pick_q(&["info", "", "x=y"]))),
        opt("command", string_or_list(&["serve --port 80", "", "a  b"])),
        opt("entrypoint", string_or_list(&["/bin/sh -c", "", "x"])),
        opt("user", pick(USERS)),
        opt(
            "storage",
            fields(vec![opt(
                "volumes",
                var_map(
                    &["data", "conf", "b/d", "-x", "v.1"],
                    fields(vec![
                        always("path", pick_q(MOUNTS)),
                        opt("read_only", boolean()),
                    ]),
                ),
            )]),
        ),
        opt(
            "depends_on",
            prop::collection::vec(pick(NAMES), 0..3).prop_map(Y::Seq),
        ),
        opt("on", fields(vec![always("schedule", pick(SCHEDULES))])),
        opt("retries", num(&["0", "2", "10", "11"])),
        opt("timeout", dur()),
        opt("deployment", deployment()),
        opt("stop_timeout", dur()),
        opt("init", boolean()),
        opt("secrets", var_map(VARS, pick_q(SECRETS))),
        opt("platform", pick(PLATFORMS)),
        opt("placement", placement()),
    ])
}

fn override_() -> impl Strategy<Value = Y> {
    fields(vec![
        opt("count", num(&["0", "4"])),
        opt("cpu", num(&["512"])),
        opt("memory", num(&["128"])),
        opt("variables", var_map(VARS, pick_q(&["warn"]))),
        opt("secrets", var_map(VARS, pick_q(SECRETS))),
        opt("http", fields(vec![opt("alias", string_or_list(HOSTS))])),
        opt("deployment", deployment()),
        opt(
            "image",
            fields(vec![opt("location", pick_q(IMAGES)), opt("build", build())]),
        ),
        opt("stop_timeout", dur()),
    ])
}

/// A document of the manifest's shape, with valid-ish values.
fn manifest_doc() -> impl Strategy<Value = Y> {
    let services = prop::collection::vec((prop::sample::select(NAMES), service()), 1..4)
        .prop_map(|v| Y::Map(v.into_iter().map(|(k, y)| (k.to_owned(), y)).collect()));
    let envs = prop::collection::vec(
        (
            prop::sample::select(ENVS),
            prop::collection::vec((prop::sample::select(NAMES), override_()), 0..3).prop_map(|v| {
                map(vec![(
                    "services",
                    Y::Map(v.into_iter().map(|(k, y)| (k.to_owned(), y)).collect()),
                )])
            }),
        ),
        0..3,
    )
    .prop_map(|v| Y::Map(v.into_iter().map(|(k, y)| (k.to_owned(), y)).collect()));
    (
        prop_oneof![8 => pick(&["shop", "a", "my-app-2"]), 1 => pick(&["Shop", "-x", "a-", "''", "12"])],
        services,
        prop::option::weighted(0.4, envs),
    )
        .prop_map(|(app, services, envs)| {
            let mut e = vec![("app", app), ("services", services)];
            if let Some(envs) = envs {
                e.push(("environments", envs));
            }
            map(e)
        })
}

// ---- generators: mutations ----

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the node with another value.
    Replace(Y),
    /// Add a key (unknown, duplicated or odd) to the map at the node, or replace the node.
    Insert(String, Y),
    /// Remove the nth key of the map at the node.
    Delete(usize),
}

/// Values that do not belong where they land.
fn odd_value() -> impl Strategy<Value = Y> {
    let leaf = prop_oneof![
        pick(NUMBERS),
        pick(SCALARS_ODD),
        any_text(0..12).prop_map(|t| s(serde_json::to_string(&t).unwrap())),
        any_text(0..12).prop_map(s),
        any_text(0..12).prop_map(|t| q(&t)),
    ];
    prop_oneof![
        4 => leaf.clone(),
        1 => prop::collection::vec(leaf.clone(), 0..4).prop_map(Y::Seq),
        1 => prop::collection::vec((word(LOWER, b"abc_", 0..8), leaf.clone()), 0..4)
            .prop_map(Y::Map),
        // Deep nesting: past serde-saphyr's depth budget (64) at times.
        1 => (1usize..150, any::<bool>(), leaf).prop_map(|(depth, seqs, l)| {
            (0..depth).fold(l, |y, _| if seqs { Y::Seq(vec![y]) } else { Y::Map(vec![("k".into(), y)]) })
        }),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let key = prop_oneof![
        pick(&[
            "app",
            "services",
            "type",
            "image",
            "count",
            "port",
            "unknown",
            "<<",
            "? x",
            "'quoted key'",
            "\"\\u00e9\""
        ])
        .prop_map(|y| match y {
            Y::S(t) => t,
            _ => unreachable!(),
        }),
        any_text(1..8),
        word(LOWER, b"abcdefghijklmnopqrstuvwxyz_", 0..12),
    ];
    prop_oneof![
        4 => odd_value().prop_map(Mutation::Replace),
        2 => (key, odd_value()).prop_map(|(k, v)| Mutation::Insert(k, v)),
        2 => any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn apply(y: &mut Y, at: usize, m: Mutation) {
    let n = node_at(y, at);
    match (n, m) {
        (n, Mutation::Replace(v)) => *n = v,
        (Y::Map(e), Mutation::Insert(k, v)) => e.push((k, v)),
        (n, Mutation::Insert(_, v)) => *n = v,
        (Y::Map(e), Mutation::Delete(i)) if !e.is_empty() => {
            let i = i % e.len();
            e.remove(i);
        }
        (Y::Seq(items), Mutation::Delete(i)) if !items.is_empty() => {
            let i = i % items.len();
            items.remove(i);
        }
        _ => {}
    }
}

/// Letters, digits and every character YAML gives a meaning to.
const YAML_ALPHABET: &[char] = &[
    'a', 'b', 'k', 's', 'z', '0', '1', '9', ' ', ' ', ' ', '\n', '\n', '\t', '\r', ':', ':', '-',
    '[', ']', '{', '}', ',', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', '?', '.', '~',
    '\\', '<', '=', 'é', '\u{85}', '\u{feff}', '\u{2028}', '\0',
];

#[derive(Clone, Copy, Debug)]
enum Layout {
    Block,
    Flow,
}

// ---- valid manifests with known meaning ----

#[derive(Clone, Debug)]
struct ValidService {
    name: String,
    kind: ServiceKind,
    image: String,
    port: Option<u16>,
    count: Option<u32>,
    cpu: Option<u32>,
    memory: Option<u32>,
    path: Option<String>,
    variables: BTreeMap<String, String>,
}

fn valid_service() -> impl Strategy<Value = ValidService> {
    (
        valid_name(),
        prop::sample::select(
            &[
                ServiceKind::LoadBalancedWebService,
                ServiceKind::BackendService,
                ServiceKind::WorkerService,
            ][..],
        ),
        (
            word(LOWER, b"abcdefghijklmnopqrstuvwxyz0123456789._/-", 0..20),
            prop::option::of(word(b"Av_9", b"AZaz09_.-", 0..10)),
        )
            .prop_map(|(repo, tag)| match tag {
                Some(t) => format!("{repo}:{t}"),
                None => repo,
            }),
        prop::option::of(1u16..),
        prop::option::of(0u32..=1000),
        prop::option::of(1u32..=65536),
        prop::option::of(6u32..=1_048_576),
        prop::option::of(word(b"/", b"abc019/_-", 0..12)),
        prop::collection::btree_map(word(b"ABCXYZ_", b"ABCXYZ019_", 0..8), any_text(0..16), 0..4),
    )
        .prop_map(
            |(name, kind, image, port, count, cpu, memory, path, variables)| {
                let web = kind == ServiceKind::LoadBalancedWebService;
                ValidService {
                    name,
                    kind,
                    image,
                    // A web service needs its port.
                    port: if web {
                        Some(port.unwrap_or(8080))
                    } else {
                        port
                    },
                    count,
                    cpu,
                    memory,
                    path: if web { path } else { None },
                    variables,
                }
            },
        )
}

fn valid_doc(app: &str, services: &[ValidService]) -> Y {
    let svc = |v: &ValidService| {
        let kind = match v.kind {
            ServiceKind::LoadBalancedWebService => "Load Balanced Web Service",
            ServiceKind::BackendService => "Backend Service",
            _ => "Worker Service",
        };
        let mut image = vec![("location", q(&v.image))];
        if let Some(p) = v.port {
            image.push(("port", s(p.to_string())));
        }
        let mut e = vec![("type", q(kind)), ("image", map(image))];
        for (k, n) in [("count", v.count), ("cpu", v.cpu), ("memory", v.memory)] {
            if let Some(n) = n {
                e.push((k, s(n.to_string())));
            }
        }
        if let Some(p) = &v.path {
            e.push(("http", map(vec![("path", q(p))])));
        }
        if !v.variables.is_empty() {
            e.push((
                "variables",
                Y::Map(
                    v.variables
                        .iter()
                        .map(|(k, v)| (k.clone(), s(dq(v))))
                        .collect(),
                ),
            ));
        }
        map(e)
    };
    map(vec![
        ("app", s(app)),
        (
            "services",
            Y::Map(services.iter().map(|v| (v.name.clone(), svc(v))).collect()),
        ),
    ])
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn fuzz_manifest_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let r = manifest::parse(&text);
        check_outcome(&text, &r)?;
    }

    #[test]
    fn fuzz_manifest_yaml_alphabet(
        text in prop::collection::vec(prop::sample::select(YAML_ALPHABET), 0..300)
            .prop_map(|c| c.into_iter().collect::<String>()),
        prefix in prop::sample::select(&["", "app: a\nservices:\n", "app: a\nservices:\n  s:\n    "][..]),
    ) {
        let text = format!("{prefix}{text}");
        let r = manifest::parse(&text);
        check_outcome(&text, &r)?;
    }
}

proptest! {
    #![proptest_config(config(CI_CASES_DOCUMENTS))]

    #[test]
    fn fuzz_manifest_structured_mutations(
        doc in manifest_doc(),
        mutations in prop::collection::vec((any::<usize>(), mutation()), 0..4),
        layout in prop::sample::select(&[Layout::Block, Layout::Flow][..]),
    ) {
        let mut doc = doc;
        for (at, m) in mutations {
            apply(&mut doc, at, m);
        }
        let text = match layout {
            Layout::Block => block(&doc),
            Layout::Flow => flow_doc(&doc),
        };
        let r = manifest::parse(&text);
        check_outcome(&text, &r)?;
    }

    #[test]
    fn fuzz_manifest_valid_documents_mean_the_same_in_every_layout(
        app in valid_name(),
        services in prop::collection::vec(valid_service(), 1..4),
        seed in any::<u64>(),
    ) {
        // Service names are map keys: keep the first of each name.
        let mut seen = std::collections::BTreeSet::new();
        let services: Vec<ValidService> =
            services.into_iter().filter(|s| seen.insert(s.name.clone())).collect();
        let doc = valid_doc(&app, &services);
        let layouts = [block(&doc), flow_doc(&doc), block(&shuffle(&doc, seed))];
        let mut compiled = Vec::new();
        for text in &layouts {
            let m = manifest::parse(text);
            prop_assert!(m.is_ok(), "a valid manifest is refused: {:?}\n{}", m.err(), text);
            let specs = m.unwrap().compile(DEFAULT_ENV);
            prop_assert!(specs.is_ok(), "{:?}", specs.err());
            compiled.push(specs.unwrap());
        }
        prop_assert_eq!(&compiled[0], &compiled[1]);
        prop_assert_eq!(&compiled[0], &compiled[2]);
        let specs = &compiled[0];
        prop_assert_eq!(specs.len(), services.len());
        for v in &services {
            let spec = specs.iter().find(|s| s.key.name == v.name);
            prop_assert!(spec.is_some(), "service {} missing", v.name);
            let spec = spec.unwrap();
            prop_assert_eq!(&spec.key.app, &app);
            prop_assert_eq!(spec.kind, v.kind);
            prop_assert_eq!(&spec.container.image, &v.image);
            prop_assert_eq!(spec.container.port, v.port);
            prop_assert_eq!(spec.desired_count, v.count);
            prop_assert_eq!(spec.container.cpu, v.cpu);
            prop_assert_eq!(spec.container.memory, v.memory);
            prop_assert_eq!(&spec.container.environment, &v.variables);
            if v.kind == ServiceKind::LoadBalancedWebService {
                let route = spec.container.http_route.as_ref();
                prop_assert!(route.is_some());
                prop_assert_eq!(&route.unwrap().path, v.path.as_deref().unwrap_or("/"));
            }
        }
    }
}
