//! The errors of use cases: a kind (what the faces turn into a status or an exception), a
//! stable machine code and a message that says what to do.

use slipway_store::StoreError;

/// What kind of failure an [`AppError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or invalid: nothing was changed.
    Invalid,
    NotFound,
    /// The request conflicts with the current state (including a lost race when the caller
    /// named the version it expected).
    Conflict,
    /// Valid, but it cannot be carried out (an image that cannot be pulled, a missing secret).
    Unprocessable,
    /// The engine failed while running the request.
    Upstream,
    /// The engine did not answer in time.
    Timeout,
    Internal,
}

/// A failed use case.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    /// For a lost race: the version found now (what a retry with `expect` should name).
    pub current_version: Option<u64>,
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            kind,
            code,
            message: message.into(),
            current_version: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, "INVALID_INPUT", message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, "INTERNAL", e.to_string())
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(c) => {
                let mut e = AppError::conflict(
                    "VERSION_CONFLICT",
                    format!(
                        "{} changed while this request was applied; try again",
                        c.record
                    ),
                );
                e.current_version = Some(c.found);
                e
            }
            StoreError::NotFound(what) => AppError::not_found(what),
            e => {
                tracing::error!(error = %e, "store error");
                AppError::internal(e)
            }
        }
    }
}
