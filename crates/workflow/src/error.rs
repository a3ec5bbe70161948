//! The crate's one error type: a message with the `file:line:column` it refers to.

use std::fmt;

/// A 1-based line and column in a workflow file (line 0: the place is unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Place {
    pub line: u64,
    pub column: u64,
}

impl Place {
    pub const UNKNOWN: Place = Place { line: 0, column: 0 };

    pub fn new(line: u64, column: u64) -> Self {
        Self { line, column }
    }

    pub(crate) fn from_location(loc: serde_saphyr::Location) -> Self {
        Self::new(loc.line(), loc.column())
    }
}

/// A workflow that cannot be run, with the place to fix. Displays as one line:
/// `file:line:column: message` (or `file: message` when the place is unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkflowError {
    pub file: String,
    pub place: Place,
    pub message: String,
}

impl WorkflowError {
    pub fn new(file: &str, place: Place, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            place,
            message: message.into(),
        }
    }
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.place.line, self.place.column, self.message
            )
        }
    }
}
