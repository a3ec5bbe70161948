//! Fuzzing of the Copilot workspace translator (issue 22, part 4) on stable Rust.
//!
//! Two targets, each named `fuzz_copilot_*`:
//! - arbitrary YAML-ish text as each of the workspace's files (`.workspace`, a service
//!   manifest, an environment manifest),
//! - Copilot-shaped service manifests: the keys Copilot has (those Slipway maps, the AWS-only
//!   ones, sidecars, logging, environments overrides), unknown keys, and values of every
//!   shape (scalars, numbers, booleans, lists, nested mappings) in block or flow style.
//!
//! The translator must never panic. It returns an error naming one of the workspace's files
//! (its line and column inside it, when placed), or a translation whose manifest compiles for
//! the default environment and each environment of the workspace, whose `slipway.yml` text
//! parses back, and whose warnings each name a file of the workspace and a place inside it.
//!
//! Cases per target: `SLIPWAY_FUZZ_CASES` (else `PROPTEST_CASES`, else a CI-sized default).

use proptest::prelude::*;
use proptest::test_runner::Config;
use slipway_core::copilot::{CopilotError, Translation, WORKSPACE_FILE, WorkspaceFile, translate};
use slipway_core::manifest::{self, DEFAULT_ENV};

const CI_CASES: u32 = 1_000;

fn config() -> Config {
    let mut c = Config::default();
    c.cases = match std::env::var("SLIPWAY_FUZZ_CASES") {
        Ok(v) => v.parse().expect("SLIPWAY_FUZZ_CASES is a number of cases"),
        Err(_) if std::env::var_os("PROPTEST_CASES").is_some() => c.cases,
        Err(_) => CI_CASES,
    };
    c.failure_persistence = None;
    c
}

fn lines_of(text: &str) -> u64 {
    1 + text.replace("\r\n", "\n").matches(['\r', '\n']).count() as u64
}

fn check(
    files: &[WorkspaceFile],
    r: &Result<Translation, CopilotError>,
) -> Result<(), TestCaseError> {
    let text_of = |f: &str| files.iter().find(|x| x.path == f).map(|x| x.text.as_str());
    match r {
        Ok(t) => {
            prop_assert!(t.manifest.compile(DEFAULT_ENV).is_ok());
            for env in &t.environments {
                let c = t.manifest.compile(env);
                prop_assert!(c.is_ok(), "environment {env}: {c:?}");
            }
            let again = manifest::parse(&t.yaml);
            prop_assert!(again.is_ok(), "{again:?}\n{}", t.yaml);
            for w in &t.warnings {
                let text = text_of(&w.file);
                prop_assert!(text.is_some(), "a warning about {} (not a file)", w.file);
                prop_assert!(
                    w.line >= 1 && w.line <= lines_of(text.unwrap()) + 1 && w.column >= 1,
                    "{w}"
                );
                prop_assert!(!w.key.is_empty() && !w.message.is_empty());
            }
        }
        Err(e) => {
            prop_assert!(!e.error.message.trim().is_empty());
            prop_assert_eq!(e.error.line.is_some(), e.error.column.is_some());
            if let Some(l) = e.error.line {
                let text = text_of(&e.file);
                prop_assert!(text.is_some(), "an error placed in {} (not a file)", e.file);
                prop_assert!(l >= 1 && l <= lines_of(text.unwrap()) + 1, "{e}");
                let place = format!("{}:{l}:", e.file);
                prop_assert!(e.to_string().starts_with(&place), "{e}");
            }
        }
    }
    Ok(())
}

fn ws(workspace: &str, service: &str, env: &str) -> Vec<WorkspaceFile> {
    vec![
        WorkspaceFile {
            path: WORKSPACE_FILE.into(),
            text: workspace.into(),
        },
        WorkspaceFile {
            path: "copilot/api/manifest.yml".into(),
            text: service.into(),
        },
        WorkspaceFile {
            path: "copilot/environments/test/manifest.yml".into(),
            text: env.into(),
        },
    ]
}

/// Text over YAML's punctuation and a few of Copilot's words.
fn yamlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "\n",
        "  ",
        ":",
        " ",
        "-",
        "[",
        "]",
        "{",
        "}",
        ",",
        "'",
        "\"",
        "#",
        "&a",
        "*a",
        "!!str",
        "|",
        ">",
        "?",
        "~",
        "null",
        "true",
        "1",
        "-1",
        "0x1f",
        "1e9",
        "99999999999999999999",
        "name",
        "type",
        "image",
        "build",
        "port",
        "http",
        "path",
        "count",
        "range",
        "1-3",
        "secrets",
        "variables",
        "environments",
        "test",
        "Load Balanced Web Service",
        "Backend Service",
        "sidecars",
        "network",
        "vpc",
        "é",
        "\t",
        "\r\n",
        "${COPILOT_ENVIRONMENT_NAME}",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

const PREFIX: &str = "name: api\ntype: Load Balanced Web Service\n";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_copilot_arbitrary_text(a in yamlish(), b in yamlish(), c in yamlish(), which in 0..4u8) {
        let files = match which {
            0 => ws(&a, &format!("{PREFIX}{b}"), &c),
            1 => ws("application: shop\n", &b, &c),
            2 => ws("application: shop\n", &format!("{PREFIX}image: {{location: x, port: 80}}\n{b}"), "name: test\ntype: Environment\n"),
            _ => ws("application: shop\n", &format!("{PREFIX}image: {{location: x, port: 80}}\n"), &format!("name: test\ntype: Environment\n{c}")),
        };
        let r = translate(&files);
        check(&files, &r)?;
    }

    #[test]
    fn fuzz_copilot_structured(doc in service_doc(), flow in any::<bool>()) {
        // An image, unless the document has its own: so that many documents are accepted.
        let own_image = matches!(&doc, Y::Map(m) if m.iter().any(|(k, _)| k == "image"));
        let image = if own_image { "" } else { "image: {location: x, port: 8080}\n" };
        let text = format!("{PREFIX}{image}{}", render(&doc, 0, flow));
        let files = ws("application: shop\n", &text, "name: test\ntype: Environment\n");
        let r = translate(&files);
        check(&files, &r)?;
    }
}

#[derive(Clone, Debug)]
enum Y {
    S(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

fn scalar() -> impl Strategy<Value = Y> {
    prop::sample::select(vec![
        "8080",
        "0",
        "-1",
        "70000",
        "true",
        "false",
        "null",
        "'/'",
        "/api",
        "api",
        "'1-10'",
        "2-4",
        "10s",
        "1m30s",
        "bogus",
        "'200,301'",
        "linux/x86_64",
        "linux/arm64",
        "windows/x86_64",
        "api/Dockerfile",
        "./api",
        "registry.example/api:1",
        "'@daily'",
        "\"0 3 * * *\"",
        "/copilot/shop/${COPILOT_ENVIRONMENT_NAME}/secrets/db",
        "arn:aws:ssm:eu-west-1:1:parameter/x",
        "\"\"",
        "\"é\"",
        "recreate",
        "default",
        "a.example.com",
        "1.5",
        "99999999999",
    ])
    .prop_map(|s| Y::S(s.to_owned()))
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "image",
        "build",
        "context",
        "dockerfile",
        "args",
        "target",
        "location",
        "port",
        "http",
        "path",
        "healthcheck",
        "alias",
        "success_codes",
        "interval",
        "grace_period",
        "healthy_threshold",
        "deregistration_delay",
        "target_port",
        "count",
        "range",
        "min",
        "max",
        "cpu_percentage",
        "spot",
        "cpu",
        "memory",
        "platform",
        "osfamily",
        "architecture",
        "variables",
        "LOG_LEVEL",
        "secrets",
        "DB",
        "secretsmanager",
        "from_cfn",
        "environments",
        "test",
        "prod",
        "exec",
        "network",
        "vpc",
        "security_groups",
        "connect",
        "storage",
        "volumes",
        "data",
        "efs",
        "readonly_fs",
        "deployment",
        "rolling",
        "rollback_alarms",
        "publish",
        "taskdef_overrides",
        "observability",
        "sidecars",
        "logging",
        "command",
        "entrypoint",
        "on",
        "schedule",
        "retries",
        "timeout",
        "unknown",
        "name",
        "hosted_zone",
    ])
    .prop_map(str::to_owned)
}

fn service_doc() -> impl Strategy<Value = Y> {
    let leaf = scalar();
    let tree = leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Y::Seq),
            prop::collection::vec((key(), inner), 0..5).prop_map(|mut v| {
                let mut seen = std::collections::BTreeSet::new();
                v.retain(|(k, _)| seen.insert(k.clone()));
                Y::Map(v)
            }),
        ]
    });
    prop::collection::vec((key(), tree), 0..8).prop_map(|mut v| {
        let mut seen = std::collections::BTreeSet::new();
        v.retain(|(k, _)| k != "name" && seen.insert(k.clone()));
        Y::Map(v)
    })
}

fn flow(y: &Y) -> String {
    match y {
        Y::S(s) => s.clone(),
        Y::Seq(v) => format!("[{}]", v.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Y::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}: {}", flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The top-level mapping in block style; nested values in block or flow style.
fn render(y: &Y, depth: usize, flow_style: bool) -> String {
    let pad = "  ".repeat(depth);
    match y {
        Y::Map(m) => {
            let mut out = String::new();
            for (k, v) in m {
                match v {
                    Y::S(_) => out.push_str(&format!("{pad}{k}: {}\n", flow(v))),
                    _ if flow_style && depth > 0 => {
                        out.push_str(&format!("{pad}{k}: {}\n", flow(v)))
                    }
                    Y::Map(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n{}", render(v, depth + 1, flow_style)))
                    }
                    Y::Seq(items) if !items.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        for it in items {
                            out.push_str(&format!("{pad}  - {}\n", flow(it)));
                        }
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", flow(v))),
                }
            }
            out
        }
        other => format!("{pad}{}\n", flow(other)),
    }
}
