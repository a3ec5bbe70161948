//! Errors: the distribution spec's error codes with their JSON body, and internal failures.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Error codes of the distribution spec (plus docker distribution's `TAG_INVALID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TagInvalid,
    /// Not a spec code: a range the upload or blob cannot satisfy (HTTP 416).
    RangeInvalid,
    /// Not a spec code: the server failed.
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TagInvalid => "TAG_INVALID",
            Code::RangeInvalid => "BLOB_UPLOAD_INVALID",
            Code::Internal => "UNKNOWN",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answered to a registry client as `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug)]
pub struct OciError {
    pub code: Code,
    pub status: StatusCode,
    pub message: String,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl OciError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        OciError {
            code,
            status: code.status(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "registry request failed");
        OciError::new(Code::Internal, format!("internal error: {e}"))
    }
}

impl From<RegistryError> for OciError {
    fn from(e: RegistryError) -> Self {
        OciError::internal(e)
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": null }]
        });
        let mut r = (self.status, Json(body)).into_response();
        for (k, v) in self.headers {
            r.headers_mut().append(k, v);
        }
        r
    }
}

/// Failures of the registry's storage and database.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("registry database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("registry storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("registry data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for OciError {
    fn from(e: sqlx::Error) -> Self {
        OciError::internal(e)
    }
}

impl From<std::io::Error> for OciError {
    fn from(e: std::io::Error) -> Self {
        OciError::internal(e)
    }
}
