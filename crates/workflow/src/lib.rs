//! Slipway pipelines' pure core (issue #18, "Format"): GitHub Actions workflow files in,
//! typed values out. No I/O: the runner that executes jobs calls this crate.
//!
//! - [`yaml`]: the YAML tree with a place on every key and value.
//! - [`expr`]: `${{ }}` expressions, templates and `if:` conditions.

pub mod error;
pub mod expr;
pub mod yaml;

pub use error::{Place, WorkflowError};
