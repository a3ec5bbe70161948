//! Slipway pipelines' pure core (issue #18, "Format"): GitHub Actions workflow files in,
//! typed values out. No I/O, no async: the runner that executes jobs calls this crate.
//!
//! - [`yaml`]: the YAML tree with a place on every key and value.
//! - [`keys`]: the support matrix (supported / accepted without effect / rejected).
//! - [`parse`] ([`parse_workflow`]): text → [`Workflow`] ([`model`]), every error placed.
//! - [`actions`]: the built-in actions `uses:` may name.
//! - [`expr`]: `${{ }}` expressions, templates and `if:` conditions.
//! - [`filter`]: which pushes start a workflow (GitHub's filter patterns).
//! - [`plan`]: `needs` checks, matrix expansion, waves, skipping, outputs.
//! - [`context`]: the `github`, `inputs` and `env` contexts of a run.
//! - [`protocol`]: `GITHUB_OUTPUT`/`GITHUB_ENV` files and `::workflow commands::`.
//! - [`mask`]: the [`Masker`] that hides secrets in log lines.

pub mod actions;
pub mod context;
pub mod error;
pub mod expr;
pub mod filter;
pub mod keys;
pub mod mask;
pub mod model;
pub mod parse;
pub mod plan;
pub mod protocol;
pub mod yaml;

pub use error::{Place, WorkflowError};
pub use filter::{PushEvent, matches};
pub use mask::Masker;
pub use model::Workflow;
pub use parse::parse_workflow;
