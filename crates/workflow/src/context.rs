//! Building the contexts a run's expressions read: `github` from what the runner knows of the
//! run, `inputs` from a manual run's values checked against `workflow_dispatch.inputs`, and
//! `env` from the workflow's, job's and step's layers.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::expr::{EvalContext, ExprError, to_string};
use crate::model::{Vars, Workflow};

/// What the runner knows about a run (the `github` context's source).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInfo {
    /// `refs/heads/NAME` or `refs/tags/NAME`.
    pub ref_: String,
    pub sha: String,
    /// `owner/name` (Slipway: the app's name, and its owner).
    pub repository: String,
    /// The workspace's path inside the job's container.
    pub workspace: String,
    /// `push` or `workflow_dispatch`.
    pub event_name: String,
    pub actor: String,
    pub run_id: String,
    pub run_number: u64,
}

/// The `github` context: `ref`, `ref_name`, `ref_type` (`branch` / `tag`), `sha`,
/// `event_name`, `repository`, `repository_owner`, `workspace`, `actor`, `run_id`,
/// `run_number`. `job` is set per job (see [`EvalContext::with`]).
pub fn github_context(info: &RunInfo) -> Value {
    let (ref_type, ref_name) = if let Some(t) = info.ref_.strip_prefix("refs/tags/") {
        ("tag", t)
    } else if let Some(b) = info.ref_.strip_prefix("refs/heads/") {
        ("branch", b)
    } else {
        ("", info.ref_.as_str())
    };
    let owner = info.repository.split('/').next().unwrap_or_default();
    json!({
        "ref": info.ref_,
        "ref_name": ref_name,
        "ref_type": ref_type,
        "sha": info.sha,
        "event_name": info.event_name,
        "repository": info.repository,
        "repository_owner": owner,
        "workspace": info.workspace,
        "actor": info.actor,
        "run_id": info.run_id,
        "run_number": info.run_number as f64,
    })
}

/// The `inputs` context of a manual run: the given values, else the defaults, typed as
/// declared (`boolean` and `number` inputs become booleans and numbers). Fails on an
/// unknown input, a missing required one, a value not among a `choice` input's options, or
/// a value that is not a boolean or number where one is declared.
pub fn inputs_context(wf: &Workflow, given: &BTreeMap<String, String>) -> Result<Value, String> {
    let declared = wf
        .on
        .workflow_dispatch
        .as_ref()
        .map(|d| d.inputs.as_slice())
        .unwrap_or_default();
    if let Some(unknown) = given
        .keys()
        .find(|k| !declared.iter().any(|i| &i.name == *k))
    {
        let names: Vec<&str> = declared.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "the workflow has no input `{unknown}` (inputs: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ));
    }
    let mut out = Map::new();
    for input in declared {
        let text = match (given.get(&input.name), &input.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => to_string(d),
            (None, None) if input.required => {
                return Err(format!("the input `{}` is required", input.name));
            }
            (None, None) => String::new(),
        };
        let value = match input.kind.as_str() {
            "boolean" => match text.as_str() {
                "true" => Value::Bool(true),
                "false" | "" => Value::Bool(false),
                other => {
                    return Err(format!(
                        "the input `{}` is a boolean, not `{other}`",
                        input.name
                    ));
                }
            },
            "number" if text.is_empty() => Value::Null,
            "number" => match text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => Value::Number(n),
                None => {
                    return Err(format!(
                        "the input `{}` is a number, not `{text}`",
                        input.name
                    ));
                }
            },
            "choice" if !text.is_empty() && !input.options.contains(&text) => {
                return Err(format!(
                    "the input `{}` is one of {}, not `{text}`",
                    input.name,
                    input.options.join(", ")
                ));
            }
            _ => Value::String(text),
        };
        out.insert(input.name.clone(), value);
    }
    Ok(Value::Object(out))
}

/// The environment of a step: each layer (workflow `env`, job `env`, step `env`, in that
/// order) is evaluated with the `env` context of the layers before it, then overrides them.
/// `cx` holds the other contexts (its own `env`, if any, is the starting point).
pub fn resolve_env(
    layers: &[&Vars],
    cx: &EvalContext,
) -> Result<BTreeMap<String, String>, ExprError> {
    let mut env: BTreeMap<String, String> = match cx.contexts.get("env") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), to_string(v))).collect(),
        _ => BTreeMap::new(),
    };
    for layer in layers {
        let env_json: Map<String, Value> = env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let layer_cx = cx.clone().with("env", Value::Object(env_json));
        let values = layer
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.eval(&layer_cx)?)))
            .collect::<Result<Vec<_>, ExprError>>()?;
        env.extend(values);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_workflow;

    #[test]
    fn github_context_from_a_tag_push() {
        let g = github_context(&RunInfo {
            ref_: "refs/tags/v1.4.0-prod".into(),
            repository: "acme/hello".into(),
            ..RunInfo::default()
        });
        assert_eq!(g["ref_type"], "tag");
        assert_eq!(g["ref_name"], "v1.4.0-prod");
        assert_eq!(g["repository_owner"], "acme");
    }

    #[test]
    fn inputs_are_checked_and_typed() {
        let wf = parse_workflow(
            "w.yml",
            "on:\n  workflow_dispatch:\n    inputs:\n      env:\n        type: choice\n        options: [staging, prod]\n        required: true\n      dry:\n        type: boolean\n        default: true\n      n:\n        type: number\n        default: 3\njobs:\n  a:\n    runs-on: x\n    steps: [run: echo]\n",
        )
        .unwrap();
        let given = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let v = inputs_context(&wf, &given(&[("env", "prod")])).unwrap();
        assert_eq!(v, json!({"env": "prod", "dry": true, "n": 3.0}));
        let v = inputs_context(
            &wf,
            &given(&[("env", "staging"), ("dry", "false"), ("n", "1.5")]),
        )
        .unwrap();
        assert_eq!(v, json!({"env": "staging", "dry": false, "n": 1.5}));
        assert!(
            inputs_context(&wf, &given(&[]))
                .unwrap_err()
                .contains("`env` is required")
        );
        assert!(
            inputs_context(&wf, &given(&[("env", "dev")]))
                .unwrap_err()
                .contains("one of staging, prod")
        );
        assert!(
            inputs_context(&wf, &given(&[("env", "prod"), ("dry", "yes")]))
                .unwrap_err()
                .contains("boolean")
        );
        assert!(
            inputs_context(&wf, &given(&[("env", "prod"), ("x", "1")]))
                .unwrap_err()
                .contains("no input `x`")
        );
    }

    #[test]
    fn env_layers_see_the_layers_before_them() {
        let wf = parse_workflow(
            "w.yml",
            "on: push\nenv:\n  REGION: eu\n  IMAGE: app:${{ github.sha }}\njobs:\n  a:\n    runs-on: x\n    env:\n      TARGET: ${{ env.REGION }}-1\n    steps:\n      - run: echo\n        env:\n          REGION: us\n          FULL: ${{ env.TARGET }}/${{ env.IMAGE }}\n",
        )
        .unwrap();
        let job = &wf.jobs[0];
        let cx = EvalContext::new().with("github", json!({"sha": "abc"}));
        let env = resolve_env(&[&wf.env, &job.env, &job.steps[0].env], &cx).unwrap();
        assert_eq!(env["REGION"], "us");
        assert_eq!(env["TARGET"], "eu-1");
        assert_eq!(env["FULL"], "eu-1/app:abc");
    }
}
