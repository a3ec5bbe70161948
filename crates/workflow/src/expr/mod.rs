//! GitHub Actions expressions: `${{ ... }}`.
//!
//! A small hand-written lexer and recursive-descent parser ([`parse`]) build an [`Expr`]
//! (GitHub's grammar is tiny and its coercion rules are its own, so no parser crate);
//! [`eval`](Expr::eval) evaluates it over JSON values with GitHub's rules (loose equality
//! through numbers, case-insensitive string comparison, `&&`/`||` returning an operand);
//! [`Template`] is a string with any number of `${{ }}` parts; [`Condition`] is an `if:`
//! (implicitly `success() && ...` unless it calls a status function).
//!
//! Syntax errors, unknown contexts and unknown functions are found when the workflow is
//! parsed; evaluation errors (`fromJSON` of bad JSON, a bad `format` string) when it runs.

mod eval;
mod parse;
mod template;
mod value;

pub use eval::{EvalContext, Status};
pub use parse::parse;
pub use template::{Condition, Template, TemplatePart};
pub use value::{fmt_number, loose_eq, to_number, to_string, truthy};

pub use serde_json::Value;

/// An expression error. Its place is the workflow key the expression is written under (the
/// parser adds it); the message names the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub message: String,
}

impl ExprError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The contexts an expression may name.
pub const CONTEXTS: &[&str] = &[
    "github", "env", "secrets", "vars", "steps", "needs", "matrix", "job", "runner", "inputs",
    "strategy",
];

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `null`, `true`, `1.5`, `'text'`.
    Literal(Value),
    /// A context by its lowercase name: `github`, `env`, ...
    Context(String),
    /// `a.b`
    Property(Box<Expr>, String),
    /// `a[expr]`
    Index(Box<Expr>, Box<Expr>),
    /// `a.*` or `a[*]`: every element (a filter: later property accesses apply to each).
    Star(Box<Expr>),
    Not(Box<Expr>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The functions an expression may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Success,
    Failure,
    Always,
    Cancelled,
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
}

impl Func {
    /// Looks a function up by name (case-insensitive, as GitHub); `None` if unknown.
    pub fn by_name(name: &str) -> Option<Func> {
        let f = match name.to_ascii_lowercase().as_str() {
            "success" => Func::Success,
            "failure" => Func::Failure,
            "always" => Func::Always,
            "cancelled" => Func::Cancelled,
            "contains" => Func::Contains,
            "startswith" => Func::StartsWith,
            "endswith" => Func::EndsWith,
            "format" => Func::Format,
            "join" => Func::Join,
            "tojson" => Func::ToJson,
            "fromjson" => Func::FromJson,
            _ => return None,
        };
        Some(f)
    }

    /// The least and most number of arguments.
    pub fn arity(self) -> (usize, usize) {
        match self {
            Func::Success | Func::Failure | Func::Always | Func::Cancelled => (0, 0),
            Func::Contains | Func::StartsWith | Func::EndsWith => (2, 2),
            Func::Format => (1, usize::MAX),
            Func::Join => (1, 2),
            Func::ToJson | Func::FromJson => (1, 1),
        }
    }

    /// Whether this is one of the status functions (`success()`, `failure()`, ...).
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Func::Success | Func::Failure | Func::Always | Func::Cancelled
        )
    }
}

impl Expr {
    /// Whether the expression calls a status function anywhere.
    pub fn uses_status(&self) -> bool {
        match self {
            Expr::Literal(_) | Expr::Context(_) => false,
            Expr::Property(e, _) | Expr::Star(e) | Expr::Not(e) => e.uses_status(),
            Expr::Index(a, b) | Expr::Compare(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.uses_status() || b.uses_status()
            }
            Expr::Call(f, args) => f.is_status() || args.iter().any(Expr::uses_status),
        }
    }

    /// The job ids read through `needs.<id>` or `needs['<id>']`.
    pub fn needs_refs(&self, out: &mut Vec<String>) {
        match self {
            Expr::Property(target, id) if **target == Expr::Context("needs".into()) => {
                out.push(id.clone());
            }
            Expr::Index(target, key) if **target == Expr::Context("needs".into()) => {
                if let Expr::Literal(Value::String(id)) = &**key {
                    out.push(id.clone());
                }
                key.needs_refs(out);
            }
            Expr::Literal(_) | Expr::Context(_) => {}
            Expr::Property(e, _) | Expr::Star(e) | Expr::Not(e) => e.needs_refs(out),
            Expr::Index(a, b) | Expr::Compare(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.needs_refs(out);
                b.needs_refs(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.needs_refs(out)),
        }
    }

    /// Whether the expression reads the named context (lowercase) anywhere.
    pub fn reads_context(&self, name: &str) -> bool {
        match self {
            Expr::Literal(_) => false,
            Expr::Context(c) => c == name,
            Expr::Property(e, _) | Expr::Star(e) | Expr::Not(e) => e.reads_context(name),
            Expr::Index(a, b) | Expr::Compare(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.reads_context(name) || b.reads_context(name)
            }
            Expr::Call(_, args) => args.iter().any(|a| a.reads_context(name)),
        }
    }
}
