//! Request and response bodies of the native API, shared with the CLI.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_core::model::{
    ContainerSpec, Deployment, DeploymentConfig, ServiceEvent, ServiceKey, ServiceKind,
    ServiceSpec, Task,
};

/// `POST /api/v1/deploy`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRequest {
    pub services: Vec<ServiceSpec>,
    /// Start a new deployment even when nothing changed (`slipway restart`).
    #[serde(default)]
    pub force: bool,
    /// Deploy a service only if its record is still at this version (by service name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expect: BTreeMap<String, u64>,
}

pub use slipway_app::{DeployOutcome, DeployResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResponse {
    pub results: Vec<DeployResult>,
}

/// One line of `slipway status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub service: ServiceKey,
    pub kind: ServiceKind,
    pub desired: u32,
    pub running: u32,
    pub healthy: u32,
    pub revision: u32,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    pub deleting: bool,
    pub last_deployment: Option<Deployment>,
    /// The service record's version (send it as `If-Match` to change only that version).
    #[serde(default)]
    pub version: u64,
}

/// `GET /api/v1/services/{app}/{env}/{name}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceDetail {
    pub summary: ServiceSummary,
    pub config: DeploymentConfig,
    pub container: Option<ContainerSpec>,
    pub deployments: Vec<Deployment>,
    pub tasks: Vec<Task>,
    pub events: Vec<ServiceEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub count: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub revision: Option<u32>,
}

/// Response of scale, rollback, restart and delete.
pub type ActionResponse = slipway_app::ActionResult;

/// The error body of every failed call: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// For `VERSION_CONFLICT`: the record's version now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// An error a handler returns.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub current_version: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            current_version: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                current_version: self.current_version,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<slipway_store::StoreError> for ApiError {
    fn from(e: slipway_store::StoreError) -> Self {
        slipway_app::AppError::from(e).into()
    }
}

impl From<slipway_app::AppError> for ApiError {
    fn from(e: slipway_app::AppError) -> Self {
        use slipway_app::ErrorKind;
        let status = match e.kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            code: e.code,
            message: e.message,
            current_version: e.current_version,
        }
    }
}

/// `POST /api/v1/services/{app}/{env}/{name}/exec`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The command and its arguments (no shell is involved).
    pub cmd: Vec<String>,
    /// The task to run it in (default: the oldest healthy task).
    #[serde(default)]
    pub task: Option<String>,
}

pub type ExecResponse = slipway_app::ExecResult;

/// `POST /api/v1/diff` (same body as `/deploy`): what a deploy would change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffResponse {
    pub results: Vec<DiffResult>,
}

pub use slipway_app::DiffResult;

/// `DELETE /api/v1/apps/{app}[?env=ENV]`
pub type DeleteAppResponse = slipway_app::DeleteAppResult;
