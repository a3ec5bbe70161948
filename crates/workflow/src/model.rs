//! The typed workflow: what [`crate::parse_workflow`] returns and the runner reads.
//!
//! Strings the runner interpolates are [`Template`]s (parsed, not yet evaluated); `if:`s are
//! [`Condition`]s. Maps keep the file's order (`Vec` of pairs).

use serde_json::{Map, Value};

use crate::actions::ActionRef;
use crate::error::Place;
use crate::expr::{Condition, Expr, Template};
use crate::filter::Filter;

/// Ordered `NAME: value` pairs (`env`, `with`, `outputs`).
pub type Vars = Vec<(String, Template)>;

/// A parsed workflow file.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The file name given to the parser (for messages).
    pub file: String,
    pub name: Option<String>,
    pub on: Triggers,
    pub env: Vars,
    pub concurrency: Option<Concurrency>,
    pub defaults: RunDefaults,
    /// In file order.
    pub jobs: Vec<Job>,
    /// Keys accepted without effect, where they are written (the runner may log them).
    pub ignored: Vec<(Place, String)>,
}

impl Workflow {
    /// The job with id `id`.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The workflow's name as GitHub shows it: `name:`, else the file name.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.file)
    }
}

/// `on:` — what starts a run.
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    pub push: Option<PushTrigger>,
    pub workflow_dispatch: Option<Dispatch>,
}

/// `on.push` with its filters (each `None` when not written).
#[derive(Debug, Clone, Default)]
pub struct PushTrigger {
    pub branches: Option<Filter>,
    pub tags: Option<Filter>,
    pub paths: Option<Filter>,
}

/// `on.workflow_dispatch`.
#[derive(Debug, Clone, Default)]
pub struct Dispatch {
    pub inputs: Vec<Input>,
}

/// A `workflow_dispatch` input.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
    pub default: Option<Value>,
    /// `string` (default), `boolean`, `number`, `choice`, `environment`.
    pub kind: String,
    pub options: Vec<String>,
}

/// `concurrency:`
#[derive(Debug, Clone)]
pub struct Concurrency {
    pub group: Template,
    pub cancel_in_progress: Flag,
    pub place: Place,
}

/// A boolean that may be an expression (`continue-on-error`, `cancel-in-progress`).
#[derive(Debug, Clone, PartialEq)]
pub enum Flag {
    Value(bool),
    Expr(Expr),
}

impl Default for Flag {
    fn default() -> Self {
        Flag::Value(false)
    }
}

impl Flag {
    pub fn eval(&self, cx: &crate::expr::EvalContext) -> Result<bool, crate::expr::ExprError> {
        match self {
            Flag::Value(b) => Ok(*b),
            Flag::Expr(e) => Ok(crate::expr::truthy(&e.eval(cx)?)),
        }
    }
}

/// `defaults.run`
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDefaults {
    pub shell: Option<String>,
    pub working_directory: Option<String>,
}

/// A `needs:` entry and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub id: String,
    pub place: Place,
}

/// A job as written (before matrix expansion; see [`crate::plan`]).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    /// Where the job's id is written.
    pub place: Place,
    pub name: Option<Template>,
    pub needs: Vec<Need>,
    pub condition: Condition,
    /// `runs-on` labels (expressions allowed, e.g. `${{ matrix.os }}`).
    pub runs_on: Vec<Template>,
    pub container: Option<Container>,
    pub environment: Option<Environment>,
    pub timeout_minutes: Option<f64>,
    pub continue_on_error: Flag,
    pub concurrency: Option<Concurrency>,
    pub strategy: Option<Strategy>,
    pub outputs: Vars,
    pub env: Vars,
    pub defaults: RunDefaults,
    pub steps: Vec<Step>,
}

/// `container:`
#[derive(Debug, Clone)]
pub struct Container {
    pub image: Template,
    pub env: Vars,
    /// As written; not applied (see the support matrix).
    pub options: Option<String>,
}

/// `environment:`
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: Template,
    pub url: Option<Template>,
}

/// `strategy:`
#[derive(Debug, Clone)]
pub struct Strategy {
    pub matrix: Matrix,
    pub fail_fast: bool,
    pub max_parallel: Option<u32>,
}

/// `strategy.matrix`: static axes, `include` and `exclude` entries (values as JSON).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    /// In file order.
    pub axes: Vec<(String, Vec<Value>)>,
    pub include: Vec<Map<String, Value>>,
    pub exclude: Vec<Map<String, Value>>,
    pub place: Place,
}

/// A step.
#[derive(Debug, Clone)]
pub struct Step {
    pub place: Place,
    pub id: Option<String>,
    pub name: Option<Template>,
    pub action: StepAction,
    pub env: Vars,
    pub condition: Condition,
    pub continue_on_error: Flag,
    pub timeout_minutes: Option<f64>,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepAction {
    Run {
        script: Template,
        shell: Option<String>,
        working_directory: Option<Template>,
    },
    Uses {
        action: ActionRef,
        with: Vars,
    },
}

impl Step {
    /// The step's name as GitHub shows it: `name:`, else `Run <first line>` or the action.
    pub fn display_name(&self) -> String {
        if let Some(n) = self.name.as_ref().and_then(Template::as_literal) {
            return n;
        }
        match &self.action {
            StepAction::Run { script, .. } => {
                let text = script.as_literal().unwrap_or_else(|| "script".into());
                format!("Run {}", text.lines().next().unwrap_or("").trim())
            }
            StepAction::Uses { action, .. } => format!("Run {action}"),
        }
    }

    /// The action's name when the step `uses:` one.
    pub fn uses(&self) -> Option<&ActionRef> {
        match &self.action {
            StepAction::Uses { action, .. } => Some(action),
            StepAction::Run { .. } => None,
        }
    }
}
