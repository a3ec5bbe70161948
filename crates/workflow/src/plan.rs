//! From a parsed workflow to what runs: `needs` checks, matrix expansion into job instances,
//! the order (waves of jobs whose needs are done), which jobs run given the results of the
//! jobs they need, and the `needs` / `steps` contexts and job outputs.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use crate::error::WorkflowError;
use crate::expr::{EvalContext, ExprError, Status};
use crate::model::{Job, Matrix, Workflow};

/// GitHub's limit of jobs one matrix makes.
pub const MAX_MATRIX_JOBS: usize = 256;

/// Checks every `needs`: the job exists, is not the job itself, and there is no cycle. Each
/// error is placed at the `needs` entry to change. [`crate::parse_workflow`] calls it.
pub fn check_needs(wf: &Workflow) -> Result<(), WorkflowError> {
    let ids: Vec<&str> = wf.jobs.iter().map(|j| j.id.as_str()).collect();
    for job in &wf.jobs {
        for need in &job.needs {
            if need.id == job.id {
                return Err(WorkflowError::new(
                    &wf.file,
                    need.place,
                    format!("`jobs.{}.needs`: a job cannot need itself", job.id),
                ));
            }
            if !ids.contains(&need.id.as_str()) {
                return Err(WorkflowError::new(
                    &wf.file,
                    need.place,
                    format!(
                        "`jobs.{}.needs`: there is no job `{}` (jobs: {})",
                        job.id,
                        need.id,
                        ids.join(", ")
                    ),
                ));
            }
        }
        if let Some(strategy) = &job.strategy {
            let n = combinations(&strategy.matrix).len();
            if n > MAX_MATRIX_JOBS {
                return Err(WorkflowError::new(
                    &wf.file,
                    strategy.matrix.place,
                    format!(
                        "`jobs.{}.strategy.matrix` makes {n} jobs; at most {MAX_MATRIX_JOBS}",
                        job.id
                    ),
                ));
            }
        }
    }
    // Depth-first search; a need pointing to a job on the current path closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        wf: &'a Workflow,
        i: usize,
        marks: &mut [Mark],
        path: &mut Vec<&'a str>,
    ) -> Result<(), WorkflowError> {
        marks[i] = Mark::OnPath;
        let job = &wf.jobs[i];
        path.push(&job.id);
        for need in &job.needs {
            let j = wf
                .jobs
                .iter()
                .position(|x| x.id == need.id)
                .expect("checked");
            match marks[j] {
                Mark::OnPath => {
                    let start = path.iter().position(|p| *p == need.id).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].to_vec();
                    cycle.push(&need.id);
                    return Err(WorkflowError::new(
                        &wf.file,
                        need.place,
                        format!(
                            "`jobs.{}.needs`: `{}` makes a cycle ({}); remove one of these needs",
                            job.id,
                            need.id,
                            cycle.join(" → ")
                        ),
                    ));
                }
                Mark::New => visit(wf, j, marks, path)?,
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        Ok(())
    }
    let mut marks = vec![Mark::New; wf.jobs.len()];
    for i in 0..wf.jobs.len() {
        if marks[i] == Mark::New {
            visit(wf, i, &mut marks, &mut Vec::new())?;
        }
    }
    Ok(())
}

/// Job ids in waves: each wave's jobs need only jobs of earlier waves (file order inside a
/// wave). The workflow must have passed [`check_needs`].
pub fn waves(wf: &Workflow) -> Vec<Vec<String>> {
    let mut wave_of: HashMap<&str, usize> = HashMap::new();
    let mut remaining: Vec<&Job> = wf.jobs.iter().collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|job| {
            let deps: Option<Vec<usize>> = job
                .needs
                .iter()
                .map(|n| wave_of.get(n.id.as_str()).copied())
                .collect();
            match deps {
                Some(deps) => {
                    let w = deps.into_iter().map(|d| d + 1).max().unwrap_or(0);
                    wave_of.insert(&job.id, w);
                    false
                }
                None => true,
            }
        });
        if remaining.len() == before {
            break; // a cycle: check_needs refuses these
        }
    }
    let n = wave_of.values().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); n];
    for job in &wf.jobs {
        if let Some(&w) = wave_of.get(job.id.as_str()) {
            out[w].push(job.id.clone());
        }
    }
    out
}

/// Every job `id` needs, directly or through other jobs.
pub fn ancestors(wf: &Workflow, id: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut todo = vec![id.to_owned()];
    while let Some(cur) = todo.pop() {
        if let Some(job) = wf.job(&cur) {
            for n in &job.needs {
                if !out.contains(&n.id) {
                    out.push(n.id.clone());
                    todo.push(n.id.clone());
                }
            }
        }
    }
    out
}

/// One matrix combination: values in the order the matrix writes its keys.
pub type Combination = Vec<(String, Value)>;

fn set(c: &mut Combination, k: &str, v: &Value) {
    match c.iter_mut().find(|(ck, _)| ck == k) {
        Some(slot) => slot.1 = v.clone(),
        None => c.push((k.to_owned(), v.clone())),
    }
}

fn value_of<'c>(c: &'c Combination, k: &str) -> Option<&'c Value> {
    c.iter().find(|(ck, _)| ck == k).map(|(_, v)| v)
}

/// The matrix's combinations, as GitHub computes them: the product of the axes, minus the
/// combinations an `exclude` entry matches (all its keys equal), then each `include` entry
/// is added to every original combination whose original values it does not overwrite, or
/// else becomes a combination of its own.
pub fn combinations(m: &Matrix) -> Vec<Combination> {
    let mut combos: Vec<Combination> = if m.axes.is_empty() {
        Vec::new()
    } else {
        let mut acc: Vec<Combination> = vec![Vec::new()];
        for (k, values) in &m.axes {
            acc = acc
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((k.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        acc
    };
    combos.retain(|c| {
        !m.exclude
            .iter()
            .any(|ex| ex.iter().all(|(k, v)| value_of(c, k) == Some(v)))
    });
    let originals = combos.len();
    let is_axis = |k: &str| m.axes.iter().any(|(a, _)| a == k);
    for inc in &m.include {
        let mut added = false;
        for c in combos.iter_mut().take(originals) {
            let fits = inc
                .iter()
                .all(|(k, v)| !is_axis(k) || value_of(c, k) == Some(v));
            if fits {
                for (k, v) in inc {
                    set(c, k, v);
                }
                added = true;
            }
        }
        if !added {
            combos.push(inc.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        }
    }
    combos
}

/// A concrete job: a job, or one combination of its matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInstance {
    pub job_id: String,
    /// As GitHub shows it: `test (1, linux)`, or the evaluated `name:`.
    pub name: String,
    /// The `matrix` context (an object; empty without a matrix).
    pub matrix: Value,
}

fn show(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => v.to_string(),
        other => crate::expr::to_string(other),
    }
}

/// The instances of `job`. `cx` provides the contexts its `name:` may read besides `matrix`
/// (`github`, `inputs`, `vars`). A name that does not read `matrix` gets the values appended.
pub fn instances(job: &Job, cx: &EvalContext) -> Result<Vec<JobInstance>, ExprError> {
    let combos = match &job.strategy {
        Some(s) => combinations(&s.matrix),
        None => vec![Vec::new()],
    };
    let reads_matrix = job.name.as_ref().is_some_and(|n| n.reads_context("matrix"));
    combos
        .into_iter()
        .map(|c| {
            let matrix: Map<String, Value> = c.iter().cloned().collect();
            let matrix = Value::Object(matrix);
            let cx = cx.clone().with("matrix", matrix.clone());
            let base = match &job.name {
                Some(t) => t.eval(&cx)?,
                None => job.id.clone(),
            };
            let name = if c.is_empty() || reads_matrix {
                base
            } else {
                let values: Vec<String> = c.iter().map(|(_, v)| show(v)).collect();
                format!("{base} ({})", values.join(", "))
            };
            Ok(JobInstance {
                job_id: job.id.clone(),
                name,
                matrix,
            })
        })
        .collect()
}

/// How a job or a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl Outcome {
    /// `success`, `failure`, `cancelled`, `skipped` (as in `needs.x.result`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped => "skipped",
        }
    }

    /// A matrix job's result from its instances': any failure fails it, then any
    /// cancellation; all skipped is skipped; otherwise success.
    pub fn combine(all: &[Outcome]) -> Outcome {
        if all.contains(&Outcome::Failure) {
            Outcome::Failure
        } else if all.contains(&Outcome::Cancelled) {
            Outcome::Cancelled
        } else if !all.is_empty() && all.iter().all(|o| *o == Outcome::Skipped) {
            Outcome::Skipped
        } else {
            Outcome::Success
        }
    }
}

/// The status a job's `if:` sees: cancelled when the run is; failure when a job it needs
/// (directly or not) failed; success when all of them succeeded; otherwise (something was
/// skipped) neither, so the default `success()` skips it too.
pub fn job_status(
    wf: &Workflow,
    id: &str,
    results: &HashMap<String, Outcome>,
    run_cancelled: bool,
) -> Status {
    if run_cancelled {
        return Status::Cancelled;
    }
    let mut status = Status::Success;
    for a in ancestors(wf, id) {
        match results.get(&a) {
            Some(Outcome::Failure) => return Status::Failure,
            Some(Outcome::Cancelled) => return Status::Cancelled,
            Some(Outcome::Success) => {}
            Some(Outcome::Skipped) | None => status = Status::Skipped,
        }
    }
    status
}

/// Whether job `id` runs, given the results of the jobs before it. `cx` holds the contexts
/// its `if:` may read (`github`, `needs` from [`needs_context`], `vars`, `inputs`); its
/// status is set here.
pub fn should_run(
    wf: &Workflow,
    id: &str,
    results: &HashMap<String, Outcome>,
    run_cancelled: bool,
    cx: &EvalContext,
) -> Result<bool, ExprError> {
    let Some(job) = wf.job(id) else {
        return Ok(false);
    };
    let cx = cx
        .clone()
        .with_status(job_status(wf, id, results, run_cancelled));
    job.condition.eval(&cx)
}

/// The `needs` context of `job`: `{id: {result, outputs}}` for each job it needs directly.
pub fn needs_context(
    job: &Job,
    results: &HashMap<String, (Outcome, BTreeMap<String, String>)>,
) -> Value {
    let mut out = Map::new();
    for n in &job.needs {
        let (result, outputs) = results
            .get(&n.id)
            .cloned()
            .unwrap_or((Outcome::Skipped, BTreeMap::new()));
        out.insert(
            n.id.clone(),
            json!({"result": result.as_str(), "outputs": outputs}),
        );
    }
    Value::Object(out)
}

/// The outputs of a matrix job from its instances' (in the order they finished): a later
/// instance's value of an output replaces an earlier one, as on GitHub.
pub fn merge_outputs(instances: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for o in instances {
        out.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

/// A finished step, for the `steps` context and the status of the steps after it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub id: Option<String>,
    /// Before `continue-on-error`.
    pub outcome: Outcome,
    /// After `continue-on-error` (a failure allowed to continue is a success).
    pub conclusion: Outcome,
    pub outputs: BTreeMap<String, String>,
}

/// The `steps` context: `{id: {outputs, outcome, conclusion}}` for steps with an id.
pub fn steps_context(done: &[StepRecord]) -> Value {
    let mut out = Map::new();
    for s in done {
        if let Some(id) = &s.id {
            out.insert(
                id.clone(),
                json!({
                    "outputs": s.outputs,
                    "outcome": s.outcome.as_str(),
                    "conclusion": s.conclusion.as_str(),
                }),
            );
        }
    }
    Value::Object(out)
}

/// The status the next step's `if:` sees: failure once a step's conclusion is failure.
pub fn step_status(done: &[StepRecord], job_cancelled: bool) -> Status {
    if job_cancelled {
        Status::Cancelled
    } else if done.iter().any(|s| s.conclusion == Outcome::Failure) {
        Status::Failure
    } else {
        Status::Success
    }
}

/// A job's `outputs:` evaluated once its steps are done (`cx` with `steps`, `matrix`,
/// `needs`, ...). An output that evaluates to an empty string is left out, as on GitHub.
pub fn job_outputs(job: &Job, cx: &EvalContext) -> Result<BTreeMap<String, String>, ExprError> {
    let mut out = BTreeMap::new();
    for (k, t) in &job.outputs {
        let v = t.eval(cx)?;
        if !v.is_empty() {
            out.insert(k.clone(), v);
        }
    }
    Ok(out)
}
