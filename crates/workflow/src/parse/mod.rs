//! Workflow text → [`Workflow`]: walks the placed YAML tree, checks every key against the
//! support matrix ([`crate::keys`]), parses every expression, checks `uses:` and `needs`.
//!
//! Every error is a [`WorkflowError`] naming `file:line:column`, the key's path and the fix.
//! Here: the helpers, the top level and `on:`; [`job`] has jobs and steps.

mod job;

use crate::error::{Place, WorkflowError};
use crate::expr::{Condition, Template};
use crate::filter::{Filter, Pattern};
use crate::keys::{self, Support};
use crate::model::{Dispatch, Flag, Input, PushTrigger, RunDefaults, Triggers, Vars, Workflow};
use crate::yaml::{self, Key, Node, Yaml};

type Result<T> = std::result::Result<T, WorkflowError>;
type Entries = [(Key, Node)];

/// Parses a workflow file. `file` names it in errors (`ci.yml:12:7: ...`).
///
/// Fails on malformed YAML, unknown or rejected keys, bad expressions, a `uses:` that is not
/// built in, and `needs` naming an unknown job or making a cycle.
pub fn parse_workflow(file: &str, text: &str) -> Result<Workflow> {
    let root = yaml::parse(file, text)?;
    let mut cx = Cx {
        file,
        ignored: Vec::new(),
        job_needs: None,
    };
    let top = match &root.value {
        Yaml::Map(entries) => entries.as_slice(),
        Yaml::Null => {
            return Err(cx.err(root.place, "the workflow is empty: write `on:` and `jobs:`"));
        }
        other => {
            return Err(cx.err(
                root.place,
                format!(
                    "a workflow is a mapping with `on:` and `jobs:`, found {}",
                    other.kind()
                ),
            ));
        }
    };
    cx.check_keys(top, "", "")?;
    let name = get(top, "name")
        .map(|(_, v)| cx.string(v, "name"))
        .transpose()?;
    let on = match get(top, "on") {
        Some((_, v)) => cx.triggers(v)?,
        None => {
            return Err(cx.err(
                root.place,
                "missing `on:` (write `on: push` or `on: {push: {branches: [main]}}`)",
            ));
        }
    };
    let env = cx.opt_vars(top, "env", "env")?;
    let concurrency = get(top, "concurrency")
        .map(|(k, v)| cx.concurrency(k, v, "concurrency"))
        .transpose()?;
    let defaults = cx.defaults(top, "", "")?;
    let Some((jobs_key, jobs_node)) = get(top, "jobs") else {
        return Err(cx.err(
            root.place,
            "missing `jobs:` (a workflow needs at least one job)",
        ));
    };
    let jobs = job::jobs(&mut cx, jobs_key, jobs_node)?;
    let workflow = Workflow {
        file: file.to_owned(),
        name,
        on,
        env,
        concurrency,
        defaults,
        jobs,
        ignored: cx.ignored,
    };
    crate::plan::check_needs(&workflow)?;
    Ok(workflow)
}

/// The entry for `key` in a mapping.
fn get<'n>(map: &'n Entries, key: &str) -> Option<(&'n Key, &'n Node)> {
    map.iter().find(|(k, _)| k.name == key).map(|(k, v)| (k, v))
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Job and step ids: a letter or `_`, then letters, digits, `-` and `_`.
fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

struct Cx<'a> {
    file: &'a str,
    ignored: Vec<(Place, String)>,
    /// While a job is read: its id and the ids it needs (what `needs.<id>` may name).
    job_needs: Option<(String, Vec<String>)>,
}

impl Cx<'_> {
    fn err(&self, place: Place, message: impl Into<String>) -> WorkflowError {
        WorkflowError::new(self.file, place, message)
    }

    /// Checks each key of `map` against the support matrix. `pattern` is the map's path in
    /// the matrix (`jobs.<job>`), `shown` its path in the file (`jobs.build`).
    fn check_keys(&mut self, map: &Entries, pattern: &str, shown: &str) -> Result<()> {
        for (key, _) in map {
            let path = join(shown, &key.name);
            match keys::lookup(&join(pattern, &key.name)) {
                Some(spec) if spec.support == Support::Supported => {}
                Some(spec) if spec.support == Support::Ignored => {
                    self.ignored
                        .push((key.place, format!("`{path}` has no effect: {}", spec.note)));
                }
                Some(spec) => {
                    return Err(self.err(
                        key.place,
                        format!("`{path}` is not supported: {}", spec.note),
                    ));
                }
                None => {
                    let allowed = keys::children(pattern);
                    let place = if shown.is_empty() {
                        "the workflow"
                    } else {
                        shown
                    };
                    return Err(self.err(
                        key.place,
                        format!(
                            "unknown key `{}` in {}{place}{}; allowed: {}",
                            key.name,
                            if shown.is_empty() { "" } else { "`" },
                            if shown.is_empty() { "" } else { "`" },
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn map<'n>(&self, node: &'n Node, path: &str) -> Result<&'n Entries> {
        match &node.value {
            Yaml::Map(entries) => Ok(entries),
            other => Err(self.err(
                node.place,
                format!("`{path}` must be a mapping, found {}", other.kind()),
            )),
        }
    }

    /// A mapping, or nothing (`push:` with no filters is written as null).
    fn opt_map<'n>(&self, node: &'n Node, path: &str) -> Result<&'n Entries> {
        match &node.value {
            Yaml::Null => Ok(&[]),
            _ => self.map(node, path),
        }
    }

    /// A scalar as text (numbers and booleans as written in YAML's canonical form).
    fn string(&self, node: &Node, path: &str) -> Result<String> {
        match &node.value {
            Yaml::Str(s) => Ok(s.clone()),
            Yaml::Int(i) => Ok(i.to_string()),
            Yaml::Float(f) => Ok(crate::expr::fmt_number(*f)),
            Yaml::Bool(b) => Ok(b.to_string()),
            other => Err(self.err(
                node.place,
                format!("`{path}` must be a string, found {}", other.kind()),
            )),
        }
    }

    fn template(&self, node: &Node, path: &str) -> Result<Template> {
        let text = self.string(node, path)?;
        let t =
            Template::parse(&text).map_err(|e| self.err(node.place, format!("`{path}`: {e}")))?;
        for part in &t.parts {
            if let crate::expr::TemplatePart::Expr(e) = part {
                self.check_needs_refs(e, node.place, path)?;
            }
        }
        Ok(t)
    }

    fn condition(&self, key: &Key, node: &Node, path: &str) -> Result<Condition> {
        let text = match &node.value {
            Yaml::Bool(b) => b.to_string(),
            _ => self.string(node, path)?,
        };
        let c =
            Condition::parse(&text).map_err(|e| self.err(key.place, format!("`{path}`: {e}")))?;
        self.check_needs_refs(&c.expr, key.place, path)?;
        Ok(c)
    }

    /// `needs.<id>` must name a job the current job needs (GitHub refuses it otherwise; here
    /// it would silently be null).
    fn check_needs_refs(&self, e: &crate::expr::Expr, place: Place, path: &str) -> Result<()> {
        let mut refs = Vec::new();
        e.needs_refs(&mut refs);
        let Some(first) = refs.first() else {
            return Ok(());
        };
        let Some((job, needs)) = &self.job_needs else {
            return Err(self.err(
                place,
                format!(
                    "`{path}`: the `needs` context exists only inside a job (`needs.{first}` here)"
                ),
            ));
        };
        match refs.iter().find(|r| !needs.iter().any(|n| n.eq_ignore_ascii_case(r))) {
            Some(r) => Err(self.err(place, format!(
                "`{path}`: `needs.{r}`: job `{job}` does not need `{r}`; add it to `jobs.{job}.needs`"
            ))),
            None => Ok(()),
        }
    }

    /// A string or a list of strings, each with its place.
    fn string_list(&self, node: &Node, path: &str) -> Result<Vec<(String, Place)>> {
        match &node.value {
            Yaml::Seq(items) => items
                .iter()
                .map(|n| Ok((self.string(n, path)?, n.place)))
                .collect(),
            _ => Ok(vec![(self.string(node, path)?, node.place)]),
        }
    }

    /// `NAME: value` pairs whose values are templates.
    fn vars(&self, node: &Node, path: &str) -> Result<Vars> {
        let map = self.opt_map(node, path)?;
        map.iter()
            .map(|(k, v)| {
                let p = format!("{path}.{}", k.name);
                let t = match &v.value {
                    Yaml::Null => Template::literal(""),
                    _ => self.template(v, &p)?,
                };
                Ok((k.name.clone(), t))
            })
            .collect()
    }

    fn opt_vars(&self, map: &Entries, key: &str, path: &str) -> Result<Vars> {
        get(map, key).map_or(Ok(Vec::new()), |(_, v)| self.vars(v, path))
    }

    /// A boolean, or an expression `${{ }}` deciding it.
    fn flag(&self, node: &Node, path: &str) -> Result<Flag> {
        match &node.value {
            Yaml::Bool(b) => Ok(Flag::Value(*b)),
            Yaml::Str(s) if s.trim() == "true" || s.trim() == "false" => {
                Ok(Flag::Value(s.trim() == "true"))
            }
            Yaml::Str(s) if s.trim().starts_with("${{") => {
                let c = Condition::parse(s)
                    .map_err(|e| self.err(node.place, format!("`{path}`: {e}")))?;
                self.check_needs_refs(&c.expr, node.place, path)?;
                Ok(Flag::Expr(c.expr))
            }
            other => Err(self.err(
                node.place,
                format!(
                    "`{path}` must be true, false or an expression `${{{{ }}}}`, found {}",
                    other.kind()
                ),
            )),
        }
    }

    fn minutes(&self, node: &Node, path: &str) -> Result<f64> {
        let m = match &node.value {
            Yaml::Int(i) => *i as f64,
            Yaml::Float(f) => *f,
            _ => {
                return Err(self.err(node.place, format!("`{path}` must be a number of minutes")));
            }
        };
        if m <= 0.0 || !m.is_finite() {
            return Err(self.err(node.place, format!("`{path}` must be more than 0 minutes")));
        }
        Ok(m)
    }

    fn concurrency(
        &mut self,
        key: &Key,
        node: &Node,
        path: &str,
    ) -> Result<crate::model::Concurrency> {
        let (group, cancel) = match &node.value {
            Yaml::Map(map) => {
                let pattern = if path.starts_with("jobs.") {
                    "jobs.<job>.concurrency"
                } else {
                    "concurrency"
                };
                self.check_keys(map, pattern, path)?;
                let group = match get(map, "group") {
                    Some((_, g)) => self.template(g, &format!("{path}.group"))?,
                    None => return Err(self.err(key.place, format!("`{path}` needs a `group`"))),
                };
                let cancel = get(map, "cancel-in-progress")
                    .map(|(_, v)| self.flag(v, &format!("{path}.cancel-in-progress")))
                    .transpose()?
                    .unwrap_or_default();
                (group, cancel)
            }
            _ => (self.template(node, path)?, Flag::Value(false)),
        };
        Ok(crate::model::Concurrency {
            group,
            cancel_in_progress: cancel,
            place: key.place,
        })
    }

    /// `defaults.run` of the workflow (`pattern` "") or of a job.
    fn defaults(&mut self, map: &Entries, pattern: &str, shown: &str) -> Result<RunDefaults> {
        let Some((_, d)) = get(map, "defaults") else {
            return Ok(RunDefaults::default());
        };
        let (pd, sd) = (join(pattern, "defaults"), join(shown, "defaults"));
        let d = self.opt_map(d, &sd)?;
        self.check_keys(d, &pd, &sd)?;
        let Some((_, run)) = get(d, "run") else {
            return Ok(RunDefaults::default());
        };
        let (pr, sr) = (join(&pd, "run"), join(&sd, "run"));
        let run = self.opt_map(run, &sr)?;
        self.check_keys(run, &pr, &sr)?;
        let field = |key: &str| {
            get(run, key)
                .map(|(_, v)| self.string(v, &format!("{sr}.{key}")))
                .transpose()
        };
        Ok(RunDefaults {
            shell: field("shell")?,
            working_directory: field("working-directory")?,
        })
    }

    /// `on:` in its three forms.
    fn triggers(&mut self, node: &Node) -> Result<Triggers> {
        let mut triggers = Triggers::default();
        let events: Vec<(String, Place, Option<&Node>)> = match &node.value {
            Yaml::Map(map) => {
                self.check_keys(map, "on", "on")?;
                map.iter()
                    .map(|(k, v)| (k.name.clone(), k.place, Some(v)))
                    .collect()
            }
            Yaml::Str(_) | Yaml::Seq(_) => self
                .string_list(node, "on")?
                .into_iter()
                .map(|(name, place)| (name, place, None))
                .collect(),
            other => {
                return Err(self.err(
                    node.place,
                    format!(
                        "`on` must be an event, a list or a mapping, found {}",
                        other.kind()
                    ),
                ));
            }
        };
        if events.is_empty() {
            return Err(self.err(node.place, "`on` names no event: write `on: push`"));
        }
        for (event, place, body) in events {
            if body.is_none() {
                // The list forms: check the names against the matrix too.
                let as_map = [(
                    Key {
                        place,
                        name: event.clone(),
                    },
                    Node {
                        place,
                        value: Yaml::Null,
                    },
                )];
                self.check_keys(&as_map, "on", "on")?;
            }
            match event.as_str() {
                "push" => triggers.push = Some(self.push(body)?),
                "workflow_dispatch" => triggers.workflow_dispatch = Some(self.dispatch(body)?),
                _ => {}
            }
        }
        Ok(triggers)
    }

    fn push(&mut self, body: Option<&Node>) -> Result<PushTrigger> {
        let Some(body) = body else {
            return Ok(PushTrigger::default());
        };
        let map = self.opt_map(body, "on.push")?;
        self.check_keys(map, "on.push", "on.push")?;
        let filter = |name: &str| -> Result<Option<Filter>> {
            let include = get(map, name);
            let ignore_name = format!("{name}-ignore");
            let ignore = get(map, &ignore_name);
            let (key, node, is_ignore) = match (include, ignore) {
                (Some(_), Some((k, _))) => {
                    return Err(self.err(k.place, format!(
                        "`on.push` has both `{name}` and `{ignore_name}`: use one (negate with `!` in `{name}`)"
                    )));
                }
                (Some((k, v)), None) => (k, v, false),
                (None, Some((k, v))) => (k, v, true),
                (None, None) => return Ok(None),
            };
            let path = format!("on.push.{}", key.name);
            let patterns = self.string_list(node, &path)?;
            if is_ignore && let Some((p, place)) = patterns.iter().find(|(p, _)| p.starts_with('!'))
            {
                return Err(self.err(
                    *place,
                    format!(
                        "`{path}`: `{p}`: negations belong in `{name}`, not in `{ignore_name}`"
                    ),
                ));
            }
            Ok(Some(Filter {
                patterns: patterns.iter().map(|(p, _)| Pattern::parse(p)).collect(),
                ignore: is_ignore,
                place: key.place,
            }))
        };
        Ok(PushTrigger {
            branches: filter("branches")?,
            tags: filter("tags")?,
            paths: filter("paths")?,
        })
    }

    fn dispatch(&mut self, body: Option<&Node>) -> Result<Dispatch> {
        let Some(body) = body else {
            return Ok(Dispatch::default());
        };
        let map = self.opt_map(body, "on.workflow_dispatch")?;
        self.check_keys(map, "on.workflow_dispatch", "on.workflow_dispatch")?;
        let Some((_, inputs)) = get(map, "inputs") else {
            return Ok(Dispatch::default());
        };
        let inputs = self.opt_map(inputs, "on.workflow_dispatch.inputs")?;
        let mut out = Vec::new();
        for (k, v) in inputs {
            let shown = format!("on.workflow_dispatch.inputs.{}", k.name);
            let m = self.opt_map(v, &shown)?;
            self.check_keys(m, "on.workflow_dispatch.inputs.<input>", &shown)?;
            let text = |key: &str| {
                get(m, key)
                    .map(|(_, v)| self.string(v, &format!("{shown}.{key}")))
                    .transpose()
            };
            let kind = text("type")?.unwrap_or_else(|| "string".into());
            if !["string", "boolean", "number", "choice", "environment"].contains(&kind.as_str()) {
                let place = get(m, "type").map_or(k.place, |(_, v)| v.place);
                return Err(self.err(place, format!(
                    "`{shown}.type`: `{kind}` is not an input type; use string, boolean, number, choice or environment"
                )));
            }
            let required = match get(m, "required").map(|(_, v)| &v.value) {
                None => false,
                Some(Yaml::Bool(b)) => *b,
                Some(_) => {
                    return Err(
                        self.err(k.place, format!("`{shown}.required` must be true or false"))
                    );
                }
            };
            let options = match get(m, "options") {
                Some((_, v)) => self
                    .string_list(v, &format!("{shown}.options"))?
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect(),
                None => Vec::new(),
            };
            out.push(Input {
                name: k.name.clone(),
                description: text("description")?,
                required,
                default: get(m, "default").map(|(_, v)| v.value.to_json()),
                kind,
                options,
            });
        }
        Ok(Dispatch { inputs: out })
    }
}
