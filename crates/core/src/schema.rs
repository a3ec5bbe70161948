//! The JSON Schema (draft 2020-12) of `slipway.yml`, generated from the manifest's types so
//! that it cannot drift from what the parser accepts. Editors use it through
//! `# yaml-language-server: $schema=...`; `slipway schema` prints it and
//! `docs/slipway.schema.json` is its committed copy.
//!
//! The derives live on the types in [`crate::manifest`]; this module holds the hand-written
//! schemas of the types whose `Deserialize` is hand-written too ([`Kind`], [`Dur`], [`SecretSource`]).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde_json::Value;

use crate::manifest::{Dur, Kind, Manifest, SecretSource};

/// Every spelling of a service type the manifest accepts (case-insensitively): Copilot's
/// names first, then the short aliases.
pub const SERVICE_TYPES: &[&str] = &[
    "Load Balanced Web Service",
    "Backend Service",
    "Worker Service",
    "Scheduled Job",
    "web",
    "lb",
    "lbws",
    "backend",
    "worker",
    "job",
];

/// The rule for app, service and environment names (see [`crate::model::validate_name`]).
pub const NAME_PATTERN: &str = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$";

/// A duration as `humantime` reads it: one or more `<number><unit>` pairs.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*[a-zA-Zµ]+\s*)+$";

/// `{"pattern": NAME_PATTERN}`, for the `propertyNames` of maps keyed by names.
pub fn name_rule() -> Value {
    serde_json::json!({ "pattern": NAME_PATTERN })
}

/// The schema of `slipway.yml`, as a JSON value.
pub fn manifest_schema() -> Value {
    let mut schema = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<Manifest>();
    let root = schema.ensure_object();
    root.insert("title".into(), "slipway.yml".into());
    root.insert(
        "description".into(),
        "A Slipway app: its services and per-environment overrides. Field names follow AWS Copilot's manifests.".into(),
    );
    schema.to_value()
}

impl JsonSchema for Kind {
    fn schema_name() -> Cow<'static, str> {
        "ServiceType".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The service type: Copilot's name or its short alias (case does not matter).",
            "type": "string",
            "enum": SERVICE_TYPES,
        })
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: 500ms, 1.5s, 10s, 5m, 1h 30m, or a number of seconds.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": DURATION_PATTERN },
            ],
        })
    }
}

impl JsonSchema for SecretSource {
    fn schema_name() -> Cow<'static, str> {
        "SecretSource".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a secret name (delivered as an environment variable), or {from: secret-name, as: env | file}",
            "oneOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": {
                        "from": { "type": "string", "description": "the secret's name" },
                        "as": {
                            "enum": ["env", "file"],
                            "description": "env: an environment variable (default); file: /run/secrets/NAME on an in-memory mount, mode 0400"
                        }
                    },
                    "required": ["from"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_the_pattern_parse() {
        for d in ["500ms", "1.5s", "10s", "5m", "1h 30m", " 2 s "] {
            let text = format!(
                "app: a\nservices:\n  s:\n    type: backend\n    image: {{location: x:1}}\n    stop_timeout: \"{d}\"\n"
            );
            crate::manifest::parse(&text).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
    }

    #[test]
    fn every_listed_service_type_parses() {
        for t in SERVICE_TYPES {
            let job = t.to_ascii_lowercase().contains("job");
            let text = format!(
                "app: a\nservices:\n  s:\n    type: {t}\n    image: {{location: x:1, port: 80}}\n{}",
                if job {
                    "    on: {schedule: '@daily'}\n"
                } else {
                    ""
                }
            );
            crate::manifest::parse(&text).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }
}
