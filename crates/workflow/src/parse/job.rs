//! `jobs:` — jobs, their strategy and their steps.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{Cx, Entries, Result, get, valid_id};
use crate::actions::parse_uses;
use crate::expr::Condition;
use crate::model::{Container, Environment, Flag, Job, Matrix, Need, Step, StepAction, Strategy};
use crate::yaml::{Key, Node, Yaml};

const JOB: &str = "jobs.<job>";
const STEP: &str = "jobs.<job>.steps[]";

pub(super) fn jobs(cx: &mut Cx<'_>, key: &Key, node: &Node) -> Result<Vec<Job>> {
    let map = cx.map(node, "jobs")?;
    if map.is_empty() {
        return Err(cx.err(
            key.place,
            "`jobs` is empty: a workflow needs at least one job",
        ));
    }
    map.iter().map(|(k, v)| job(cx, k, v)).collect()
}

fn job(cx: &mut Cx<'_>, key: &Key, node: &Node) -> Result<Job> {
    let id = &key.name;
    if !valid_id(id) {
        return Err(cx.err(
            key.place,
            format!(
                "job id `{id}`: use letters, digits, `-` and `_`, starting with a letter or `_`"
            ),
        ));
    }
    let shown = format!("jobs.{id}");
    let map = cx.map(node, &shown)?;
    cx.check_keys(map, JOB, &shown)?;
    let p = |k: &str| format!("{shown}.{k}");
    let needs = match get(map, "needs") {
        Some((_, v)) => cx
            .string_list(v, &p("needs"))?
            .into_iter()
            .map(|(id, place)| Need { id, place })
            .collect(),
        None => Vec::new(),
    };
    cx.job_needs = Some((id.clone(), needs.iter().map(|n| n.id.clone()).collect()));
    let job = job_fields(cx, key, map, &shown, needs);
    cx.job_needs = None;
    job
}

/// The job's keys after `needs` (which expressions in them may read).
fn job_fields(
    cx: &mut Cx<'_>,
    key: &Key,
    map: &Entries,
    shown: &str,
    needs: Vec<Need>,
) -> Result<Job> {
    let id = &key.name;
    let p = |k: &str| format!("{shown}.{k}");
    let condition = match get(map, "if") {
        Some((k, v)) => cx.condition(k, v, &p("if"))?,
        None => Condition::default(),
    };
    let runs_on = match get(map, "runs-on") {
        Some((_, v)) if matches!(v.value, Yaml::Map(_)) => {
            return Err(cx.err(v.place, format!(
                "`{}` as {{group, labels}} is not supported: write a label such as `ubuntu-latest`",
                p("runs-on")
            )));
        }
        Some((_, v)) => cx
            .string_list(v, &p("runs-on"))?
            .iter()
            .map(|(s, place)| {
                crate::expr::Template::parse(s)
                    .map_err(|e| cx.err(*place, format!("`{}`: {e}", p("runs-on"))))
            })
            .collect::<Result<Vec<_>>>()?,
        None => {
            return Err(cx.err(key.place, format!(
                "`{shown}` needs `runs-on` (a label such as `ubuntu-latest`; it picks the runner image)"
            )));
        }
    };
    let steps = match get(map, "steps") {
        Some((k, v)) => steps(cx, k, v, shown)?,
        None => {
            return Err(cx.err(key.place, format!("`{shown}` has no `steps`")));
        }
    };
    Ok(Job {
        id: id.clone(),
        place: key.place,
        name: get(map, "name")
            .map(|(_, v)| cx.template(v, &p("name")))
            .transpose()?,
        needs,
        condition,
        runs_on,
        container: get(map, "container")
            .map(|(k, v)| container(cx, k, v, shown))
            .transpose()?,
        environment: get(map, "environment")
            .map(|(k, v)| environment(cx, k, v, shown))
            .transpose()?,
        timeout_minutes: get(map, "timeout-minutes")
            .map(|(_, v)| cx.minutes(v, &p("timeout-minutes")))
            .transpose()?,
        continue_on_error: get(map, "continue-on-error")
            .map(|(_, v)| cx.flag(v, &p("continue-on-error")))
            .transpose()?
            .unwrap_or_default(),
        concurrency: get(map, "concurrency")
            .map(|(k, v)| cx.concurrency(k, v, &p("concurrency")))
            .transpose()?,
        strategy: get(map, "strategy")
            .map(|(k, v)| strategy(cx, k, v, shown))
            .transpose()?,
        outputs: cx.opt_vars(map, "outputs", &p("outputs"))?,
        env: cx.opt_vars(map, "env", &p("env"))?,
        defaults: cx.defaults(map, JOB, shown)?,
        steps,
    })
}

fn container(cx: &mut Cx<'_>, key: &Key, node: &Node, job: &str) -> Result<Container> {
    let shown = format!("{job}.container");
    if !matches!(node.value, Yaml::Map(_)) {
        return Ok(Container {
            image: cx.template(node, &shown)?,
            env: Vec::new(),
            options: None,
        });
    }
    let map = cx.map(node, &shown)?;
    cx.check_keys(map, "jobs.<job>.container", &shown)?;
    let Some((_, image)) = get(map, "image") else {
        return Err(cx.err(key.place, format!("`{shown}` needs an `image`")));
    };
    Ok(Container {
        image: cx.template(image, &format!("{shown}.image"))?,
        env: cx.opt_vars(map, "env", &format!("{shown}.env"))?,
        options: get(map, "options")
            .map(|(_, v)| cx.string(v, &format!("{shown}.options")))
            .transpose()?,
    })
}

fn environment(cx: &mut Cx<'_>, key: &Key, node: &Node, job: &str) -> Result<Environment> {
    let shown = format!("{job}.environment");
    if !matches!(node.value, Yaml::Map(_)) {
        return Ok(Environment {
            name: cx.template(node, &shown)?,
            url: None,
        });
    }
    let map = cx.map(node, &shown)?;
    cx.check_keys(map, "jobs.<job>.environment", &shown)?;
    let Some((_, name)) = get(map, "name") else {
        return Err(cx.err(key.place, format!("`{shown}` needs a `name`")));
    };
    Ok(Environment {
        name: cx.template(name, &format!("{shown}.name"))?,
        url: get(map, "url")
            .map(|(_, v)| cx.template(v, &format!("{shown}.url")))
            .transpose()?,
    })
}

fn strategy(cx: &mut Cx<'_>, key: &Key, node: &Node, job: &str) -> Result<Strategy> {
    let shown = format!("{job}.strategy");
    let map = cx.map(node, &shown)?;
    cx.check_keys(map, "jobs.<job>.strategy", &shown)?;
    let Some((mk, mv)) = get(map, "matrix") else {
        return Err(cx.err(key.place, format!("`{shown}` needs a `matrix`")));
    };
    let fail_fast = match get(map, "fail-fast").map(|(_, v)| v) {
        None => true,
        Some(Node {
            value: Yaml::Bool(b),
            ..
        }) => *b,
        Some(v) => {
            return Err(cx.err(
                v.place,
                format!("`{shown}.fail-fast` must be true or false"),
            ));
        }
    };
    let max_parallel = match get(map, "max-parallel").map(|(_, v)| v) {
        None => None,
        Some(Node {
            value: Yaml::Int(n),
            ..
        }) if *n >= 1 && *n <= i64::from(u32::MAX) => Some(*n as u32),
        Some(v) => {
            return Err(cx.err(
                v.place,
                format!("`{shown}.max-parallel` must be a whole number of at least 1"),
            ));
        }
    };
    Ok(Strategy {
        matrix: matrix(cx, mk, mv, &format!("{shown}.matrix"))?,
        fail_fast,
        max_parallel,
    })
}

fn matrix(cx: &mut Cx<'_>, key: &Key, node: &Node, shown: &str) -> Result<Matrix> {
    let map = match &node.value {
        Yaml::Map(m) => m,
        Yaml::Str(_) => {
            return Err(cx.err(node.place, format!(
                "`{shown}`: a matrix computed by an expression is not supported; write its lists in the file"
            )));
        }
        other => {
            return Err(cx.err(
                node.place,
                format!("`{shown}` must be a mapping, found {}", other.kind()),
            ));
        }
    };
    let mut m = Matrix {
        place: key.place,
        ..Matrix::default()
    };
    for (k, v) in map {
        let path = format!("{shown}.{}", k.name);
        let items = match &v.value {
            Yaml::Seq(items) => items,
            Yaml::Str(s) if s.contains("${{") => {
                return Err(cx.err(v.place, format!(
                    "`{path}`: a matrix computed by an expression is not supported; write the list in the file"
                )));
            }
            other => {
                return Err(cx.err(
                    v.place,
                    format!("`{path}` must be a list, found {}", other.kind()),
                ));
            }
        };
        match k.name.as_str() {
            "include" | "exclude" => {
                let entries = items
                    .iter()
                    .map(|item| match &item.value {
                        Yaml::Map(_) => match item.value.to_json() {
                            Value::Object(o) => Ok(o),
                            _ => unreachable!("a YAML mapping is a JSON object"),
                        },
                        other => Err(cx.err(
                            item.place,
                            format!("`{path}` entries must be mappings, found {}", other.kind()),
                        )),
                    })
                    .collect::<Result<Vec<Map<String, Value>>>>()?;
                if k.name == "include" {
                    m.include = entries;
                } else {
                    m.exclude = entries;
                }
            }
            _ => {
                if items.is_empty() {
                    return Err(cx.err(
                        v.place,
                        format!("`{path}` is an empty list: the matrix would have no jobs"),
                    ));
                }
                m.axes.push((
                    k.name.clone(),
                    items.iter().map(|n| n.value.to_json()).collect(),
                ));
            }
        }
    }
    if m.axes.is_empty() && m.include.is_empty() {
        return Err(cx.err(key.place, format!("`{shown}` defines no values")));
    }
    Ok(m)
}

fn steps(cx: &mut Cx<'_>, key: &Key, node: &Node, job: &str) -> Result<Vec<Step>> {
    let shown = format!("{job}.steps");
    let Yaml::Seq(items) = &node.value else {
        return Err(cx.err(
            node.place,
            format!(
                "`{shown}` must be a list of steps, found {}",
                node.value.kind()
            ),
        ));
    };
    if items.is_empty() {
        return Err(cx.err(key.place, format!("`{shown}` is empty")));
    }
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let shown = format!("{shown}[{i}]");
        let map = cx.map(item, &shown)?;
        let step = step(cx, item, map, &shown)?;
        if let Some(id) = &step.id
            && !ids.insert(id.clone())
        {
            let place = get(map, "id").map_or(item.place, |(_, v)| v.place);
            return Err(cx.err(
                place,
                format!("`{shown}.id`: `{id}` is the id of an earlier step of this job"),
            ));
        }
        out.push(step);
    }
    Ok(out)
}

fn step(cx: &mut Cx<'_>, node: &Node, map: &Entries, shown: &str) -> Result<Step> {
    cx.check_keys(map, STEP, shown)?;
    let p = |k: &str| format!("{shown}.{k}");
    let action = match (get(map, "run"), get(map, "uses")) {
        (Some(_), Some((k, _))) => {
            return Err(cx.err(
                k.place,
                format!("`{shown}` has both `run` and `uses`: a step does one of them"),
            ));
        }
        (None, None) => {
            return Err(cx.err(
                node.place,
                format!("`{shown}` needs `run` (a script) or `uses` (a built-in action)"),
            ));
        }
        (Some((_, run)), None) => {
            if let Some((k, _)) = get(map, "with") {
                return Err(cx.err(
                    k.place,
                    format!("`{}` goes with `uses`, not with `run`", p("with")),
                ));
            }
            StepAction::Run {
                script: cx.template(run, &p("run"))?,
                shell: get(map, "shell")
                    .map(|(_, v)| cx.string(v, &p("shell")))
                    .transpose()?,
                working_directory: get(map, "working-directory")
                    .map(|(_, v)| cx.template(v, &p("working-directory")))
                    .transpose()?,
            }
        }
        (None, Some((_, uses))) => {
            for key in ["shell", "working-directory"] {
                if let Some((k, _)) = get(map, key) {
                    return Err(cx.err(
                        k.place,
                        format!("`{}` goes with `run`, not with `uses`", p(key)),
                    ));
                }
            }
            let text = cx.string(uses, &p("uses"))?;
            let action = parse_uses(&text)
                .map_err(|e| cx.err(uses.place, format!("`{}`: {e}", p("uses"))))?;
            StepAction::Uses {
                action,
                with: cx.opt_vars(map, "with", &p("with"))?,
            }
        }
    };
    let id = match get(map, "id") {
        Some((_, v)) => {
            let id = cx.string(v, &p("id"))?;
            if !valid_id(&id) {
                return Err(cx.err(v.place, format!(
                    "`{}`: `{id}`: use letters, digits, `-` and `_`, starting with a letter or `_`",
                    p("id")
                )));
            }
            Some(id)
        }
        None => None,
    };
    Ok(Step {
        place: node.place,
        id,
        name: get(map, "name")
            .map(|(_, v)| cx.template(v, &p("name")))
            .transpose()?,
        action,
        env: cx.opt_vars(map, "env", &p("env"))?,
        condition: match get(map, "if") {
            Some((k, v)) => cx.condition(k, v, &p("if"))?,
            None => Condition::default(),
        },
        continue_on_error: get(map, "continue-on-error")
            .map(|(_, v)| cx.flag(v, &p("continue-on-error")))
            .transpose()?
            .unwrap_or(Flag::Value(false)),
        timeout_minutes: get(map, "timeout-minutes")
            .map(|(_, v)| cx.minutes(v, &p("timeout-minutes")))
            .transpose()?,
    })
}
