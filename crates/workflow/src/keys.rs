//! The support matrix: every workflow key Slipway knows, and what it does with it.
//!
//! [`KEYS`] is the one table: the parser looks every key of the file up in it (an unknown
//! or rejected key fails with its place and the reason), and `docs/pipelines.md` carries
//! the table [`support_matrix_markdown`] renders (a test keeps the two equal).
//!
//! Paths are written with `.`; `<...>` segments are names the user chooses (a job id, a
//! variable name); `[]` is every item of a list.

/// What Slipway does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Works as on GitHub (within the note's limits).
    Supported,
    /// Read and checked for shape, then ignored (the note says why that is harmless).
    Ignored,
    /// The workflow is refused, with the note as the reason.
    Rejected,
}

impl Support {
    pub fn label(self) -> &'static str {
        match self {
            Support::Supported => "supported",
            Support::Ignored => "accepted without effect",
            Support::Rejected => "rejected",
        }
    }
}

/// One key of the support matrix.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub path: &'static str,
    pub support: Support,
    pub note: &'static str,
}

const fn k(path: &'static str, support: Support, note: &'static str) -> KeySpec {
    KeySpec {
        path,
        support,
        note,
    }
}

use Support::{Ignored, Rejected, Supported};

/// Every key the parser knows.
pub const KEYS: &[KeySpec] = &[
    k("name", Supported, "the workflow's name"),
    k(
        "run-name",
        Ignored,
        "a run is named after its workflow and ref",
    ),
    k(
        "on",
        Supported,
        "an event name, a list of them, or a mapping",
    ),
    k(
        "on.push",
        Supported,
        "pushes to the app's git remote or a webhook",
    ),
    k(
        "on.push.branches",
        Supported,
        "glob patterns, `!` negations in order",
    ),
    k("on.push.branches-ignore", Supported, "glob patterns"),
    k(
        "on.push.tags",
        Supported,
        "glob patterns, `!` negations in order",
    ),
    k("on.push.tags-ignore", Supported, "glob patterns"),
    k(
        "on.push.paths",
        Supported,
        "glob patterns, `!` negations in order; not applied to tag pushes",
    ),
    k(
        "on.push.paths-ignore",
        Supported,
        "glob patterns; not applied to tag pushes",
    ),
    k("on.workflow_dispatch", Supported, "`slipway pipeline run`"),
    k(
        "on.workflow_dispatch.inputs",
        Supported,
        "their defaults fill the `inputs` context",
    ),
    k(
        "on.workflow_dispatch.inputs.<input>.description",
        Supported,
        "",
    ),
    k(
        "on.workflow_dispatch.inputs.<input>.required",
        Supported,
        "",
    ),
    k("on.workflow_dispatch.inputs.<input>.default", Supported, ""),
    k(
        "on.workflow_dispatch.inputs.<input>.type",
        Supported,
        "string, boolean, number, choice or environment",
    ),
    k(
        "on.workflow_dispatch.inputs.<input>.options",
        Supported,
        "the choices of a `choice` input",
    ),
    k(
        "on.pull_request",
        Rejected,
        "pull requests are not run: Slipway runs pushes and manual runs",
    ),
    k(
        "on.pull_request_target",
        Rejected,
        "it runs code from forks with the repository's secrets; Slipway never does",
    ),
    k(
        "on.schedule",
        Rejected,
        "scheduled runs are not supported yet: use a Scheduled Job service in slipway.yml",
    ),
    k(
        "on.workflow_call",
        Rejected,
        "reusable workflows are not supported",
    ),
    k(
        "on.workflow_run",
        Rejected,
        "chain jobs with `needs` in one workflow instead",
    ),
    k(
        "on.repository_dispatch",
        Rejected,
        "start a run with `slipway pipeline run` instead",
    ),
    k(
        "on.<event>",
        Rejected,
        "only `push` and `workflow_dispatch` start runs",
    ),
    k("env", Supported, "variables for every job"),
    k(
        "concurrency",
        Supported,
        "a group name, or the mapping form",
    ),
    k(
        "concurrency.group",
        Supported,
        "an expression over `github`, `inputs`, `vars`",
    ),
    k(
        "concurrency.cancel-in-progress",
        Supported,
        "a boolean or an expression",
    ),
    k(
        "permissions",
        Ignored,
        "there is no GITHUB_TOKEN to scope; jobs get only their environment's secrets",
    ),
    k("defaults", Supported, ""),
    k("defaults.run", Supported, ""),
    k(
        "defaults.run.shell",
        Supported,
        "bash, sh, or a command with `{0}`",
    ),
    k(
        "defaults.run.working-directory",
        Supported,
        "relative to the workspace",
    ),
    k("jobs", Supported, "at least one job"),
    k(
        "jobs.<job>",
        Supported,
        "ids: letters, digits, `-`, `_`, starting with a letter or `_`",
    ),
    k("jobs.<job>.name", Supported, "may use `matrix`"),
    k(
        "jobs.<job>.needs",
        Supported,
        "a job id or a list; unknown ids and cycles are errors",
    ),
    k(
        "jobs.<job>.if",
        Supported,
        "an expression, with or without `${{ }}`",
    ),
    k(
        "jobs.<job>.runs-on",
        Supported,
        "a label or a list: mapped to a runner image",
    ),
    k(
        "jobs.<job>.container",
        Supported,
        "an image, or the mapping form",
    ),
    k(
        "jobs.<job>.container.image",
        Supported,
        "the job's container image",
    ),
    k("jobs.<job>.container.env", Supported, ""),
    k(
        "jobs.<job>.container.options",
        Ignored,
        "Slipway sets the job container's options itself (no privileged mode, no host mounts)",
    ),
    k(
        "jobs.<job>.container.credentials",
        Rejected,
        "images come from the cluster's registry with the job's own token",
    ),
    k(
        "jobs.<job>.container.ports",
        Rejected,
        "jobs publish no ports on the host",
    ),
    k(
        "jobs.<job>.container.volumes",
        Rejected,
        "jobs mount nothing from the host",
    ),
    k(
        "jobs.<job>.environment",
        Supported,
        "a Slipway environment (its secrets and protection): a name or {name, url}",
    ),
    k("jobs.<job>.environment.name", Supported, ""),
    k(
        "jobs.<job>.environment.url",
        Supported,
        "shown with the run",
    ),
    k(
        "jobs.<job>.timeout-minutes",
        Supported,
        "a number (default 360)",
    ),
    k(
        "jobs.<job>.continue-on-error",
        Supported,
        "a boolean or an expression",
    ),
    k("jobs.<job>.concurrency", Supported, "as the workflow's"),
    k("jobs.<job>.concurrency.group", Supported, ""),
    k("jobs.<job>.concurrency.cancel-in-progress", Supported, ""),
    k(
        "jobs.<job>.permissions",
        Ignored,
        "there is no GITHUB_TOKEN to scope",
    ),
    k("jobs.<job>.strategy", Supported, ""),
    k(
        "jobs.<job>.strategy.matrix",
        Supported,
        "static lists only (no `${{ }}` matrix)",
    ),
    k(
        "jobs.<job>.strategy.matrix.include",
        Supported,
        "as on GitHub",
    ),
    k(
        "jobs.<job>.strategy.matrix.exclude",
        Supported,
        "as on GitHub",
    ),
    k("jobs.<job>.strategy.fail-fast", Supported, "default true"),
    k("jobs.<job>.strategy.max-parallel", Supported, ""),
    k("jobs.<job>.outputs", Supported, "expressions over `steps`"),
    k("jobs.<job>.env", Supported, ""),
    k("jobs.<job>.defaults", Supported, ""),
    k("jobs.<job>.defaults.run", Supported, ""),
    k("jobs.<job>.defaults.run.shell", Supported, ""),
    k("jobs.<job>.defaults.run.working-directory", Supported, ""),
    k("jobs.<job>.steps", Supported, "at least one step"),
    k(
        "jobs.<job>.services",
        Rejected,
        "service containers are not supported yet: start them in a step",
    ),
    k(
        "jobs.<job>.uses",
        Rejected,
        "reusable workflows are not supported",
    ),
    k(
        "jobs.<job>.with",
        Rejected,
        "reusable workflows are not supported",
    ),
    k(
        "jobs.<job>.secrets",
        Rejected,
        "reusable workflows are not supported; secrets come from the job's environment",
    ),
    k(
        "jobs.<job>.steps[].id",
        Supported,
        "letters, digits, `-`, `_`",
    ),
    k("jobs.<job>.steps[].name", Supported, ""),
    k(
        "jobs.<job>.steps[].run",
        Supported,
        "a script for the step's shell",
    ),
    k(
        "jobs.<job>.steps[].shell",
        Supported,
        "bash, sh, or a command with `{0}`",
    ),
    k("jobs.<job>.steps[].working-directory", Supported, ""),
    k(
        "jobs.<job>.steps[].uses",
        Supported,
        "a built-in action only (see the list below)",
    ),
    k("jobs.<job>.steps[].with", Supported, "the action's inputs"),
    k("jobs.<job>.steps[].env", Supported, ""),
    k(
        "jobs.<job>.steps[].if",
        Supported,
        "an expression, with or without `${{ }}`",
    ),
    k(
        "jobs.<job>.steps[].continue-on-error",
        Supported,
        "a boolean or an expression",
    ),
    k("jobs.<job>.steps[].timeout-minutes", Supported, "a number"),
];

/// The entry for `path` (exact first, then a `<...>` pattern), if any.
pub fn lookup(path: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|s| s.path == path)
        .or_else(|| KEYS.iter().find(|s| pattern_matches(s.path, path)))
}

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<_>, Vec<_>) = (pattern.split('.').collect(), path.split('.').collect());
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| a == b || (a.starts_with('<') && a.ends_with('>')))
}

/// The keys allowed directly under `parent` (for "allowed: ..." in messages).
pub fn children(parent: &str) -> Vec<&'static str> {
    let (depth, prefix) = if parent.is_empty() {
        (1, String::new())
    } else {
        (parent.split('.').count() + 1, format!("{parent}."))
    };
    KEYS.iter()
        .filter(|s| s.support != Support::Rejected)
        .filter(|s| s.path.split('.').count() == depth && s.path.starts_with(&prefix))
        .filter_map(|s| s.path.rsplit('.').next())
        .filter(|last| !last.starts_with('<'))
        .collect()
}

/// The support matrix as a Markdown table (the one in `docs/pipelines.md`).
pub fn support_matrix_markdown() -> String {
    let mut out = String::from("| key | support | notes |\n| --- | --- | --- |\n");
    for s in KEYS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            s.path,
            s.support.label(),
            s.note.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_prefers_exact_paths() {
        assert_eq!(lookup("on.schedule").unwrap().note, KEYS[19].note);
        assert_eq!(lookup("on.release").unwrap().path, "on.<event>");
        assert_eq!(lookup("jobs.<job>.services").unwrap().support, Rejected);
        assert!(lookup("jobs.<job>.bogus").is_none());
        let c = children("jobs.<job>.container");
        assert_eq!(c, ["image", "env", "options"]);
        assert_eq!(children("")[..3], ["name", "run-name", "on"]);
    }

    #[test]
    fn paths_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in KEYS {
            assert!(seen.insert(s.path), "{} twice", s.path);
        }
    }
}
