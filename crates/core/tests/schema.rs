//! The published JSON Schema of `slipway.yml` (`docs/slipway.schema.json`) is the one the
//! manifest's types generate, and the manifests we ship use only what it declares.

use std::path::{Path, PathBuf};

use serde_json::Value;
use slipway_core::schema::manifest_schema;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_schema_matches_the_manifest_types() {
    let path = repo().join("docs/slipway.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let committed: Value = serde_json::from_str(&text).expect("docs/slipway.schema.json is JSON");
    assert!(
        committed == manifest_schema(),
        "docs/slipway.schema.json is out of date with the manifest types in crates/core/src/manifest.rs; regenerate it with:\n    cargo run -p slipway -- schema > docs/slipway.schema.json"
    );
}

#[test]
fn schema_declares_the_top_level() {
    let s = manifest_schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["type"], "object");
    assert_eq!(s["additionalProperties"], false);
    let required: Vec<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["app", "services"]);
    let service = &s["$defs"]["Service"];
    assert_eq!(service["additionalProperties"], false);
    let types = &s["$defs"]["ServiceType"]["enum"];
    assert!(
        types
            .as_array()
            .unwrap()
            .contains(&"Backend Service".into())
    );
    assert_eq!(s["$defs"]["Port"]["maximum"], 65535);
    assert_eq!(s["$defs"]["Count"]["minimum"], 0);
    // Every `$ref` points at a definition.
    fn refs(v: &Value, root: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    assert!(resolve(root, r).is_some(), "dangling $ref {r}");
                }
                m.values().for_each(|x| refs(x, root));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, root)),
            _ => {}
        }
    }
    refs(&s, &s);
}

fn resolve<'a>(root: &'a Value, r: &str) -> Option<&'a Value> {
    root.pointer(r.strip_prefix('#')?)
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn allows(schema: &Value, ty: &str) -> bool {
    match &schema["type"] {
        Value::String(t) => t == ty || (t == "number" && ty == "integer"),
        Value::Array(ts) => ts.iter().any(|t| t == ty),
        _ => true,
    }
}

/// A small structural check: objects use only declared properties (and have the required
/// ones), values have a declared type, enums and integer ranges hold. Not a full validator.
fn check(v: &Value, schema: &Value, root: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return check(v, resolve(root, r).unwrap(), root, at, errors);
    }
    if let Some(branches) = schema.get("anyOf").or_else(|| schema.get("oneOf")) {
        let branches: Vec<&Value> = branches
            .as_array()
            .unwrap()
            .iter()
            .map(|b| match b.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(root, r).unwrap(),
                None => b,
            })
            .collect();
        // The first branch of the value's type decides (enough for the manifest's unions).
        match branches
            .iter()
            .find(|b| allows(b, type_of(v)) && b.get("const").is_none_or(|c| c == v))
        {
            Some(b) => check(v, b, root, at, errors),
            None => errors.push(format!("{at}: {v} matches none of the allowed forms")),
        }
        return;
    }
    if !allows(schema, type_of(v)) {
        errors.push(format!(
            "{at}: {} is not allowed here ({})",
            type_of(v),
            schema["type"]
        ));
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(n) = v.as_i64() {
        if schema
            .get("minimum")
            .and_then(Value::as_i64)
            .is_some_and(|m| n < m)
        {
            errors.push(format!("{at}: {n} is below the minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_i64)
            .is_some_and(|m| n > m)
        {
            errors.push(format!("{at}: {n} is above the maximum"));
        }
    }
    match v {
        Value::Object(m) => {
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !m.contains_key(req.as_str().unwrap()) {
                    errors.push(format!("{at}: missing required property {req}"));
                }
            }
            for (k, x) in m {
                let sub = format!("{at}.{k}");
                match (
                    schema["properties"].get(k),
                    schema.get("additionalProperties"),
                ) {
                    (Some(p), _) => check(x, p, root, &sub, errors),
                    (None, Some(Value::Bool(false))) => {
                        errors.push(format!("{sub}: the schema declares no such property"));
                    }
                    (None, Some(extra @ Value::Object(_))) => check(x, extra, root, &sub, errors),
                    (None, _) => {}
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter().enumerate() {
                    check(x, items, root, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn errors_of(yaml: &str) -> Vec<String> {
    let v: Value = serde_saphyr::from_str(yaml).expect("YAML");
    let s = manifest_schema();
    let mut errors = Vec::new();
    check(&v, &s, &s, "", &mut errors);
    errors
}

/// The manifests of `examples/*/slipway.yml`, and the complete ones in the README.
fn shipped_manifests() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo().join("examples")).unwrap() {
        let p = e.unwrap().path().join("slipway.yml");
        if p.exists() {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap();
        if block.lines().any(|l| l.starts_with("app:")) && block.contains("\nservices:") {
            out.push((format!("README.md yaml block {}", i + 1), block.to_owned()));
        }
    }
    out
}

#[test]
fn shipped_manifests_use_only_declared_properties() {
    let manifests = shipped_manifests();
    assert!(
        manifests.iter().any(|(n, _)| n.contains("examples")),
        "{manifests:?}"
    );
    for (name, text) in &manifests {
        slipway_core::manifest::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let errors = errors_of(text);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn the_structural_check_catches_mistakes() {
    let errors = errors_of(
        "app: shop\nservices:\n  api:\n    type: Web Thing\n    image: {build: ./api, port: 99999, pul: always}\n    http: {healthcheck: {path: /, intervall: 2s}}\n    count: 2\n    replicas: 3\n",
    );
    for want in [
        ".services.api.type",
        ".services.api.image.port",
        ".services.api.image.pul",
        ".services.api.http.healthcheck.intervall",
        ".services.api.replicas",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "{want}: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors_of("app: a\n")[0].contains("services"));
}
