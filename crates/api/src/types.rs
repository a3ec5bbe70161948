//! Request and response bodies of the native API, shared with the CLI.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
}

/// What a deploy did to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployOutcome {
    /// A new deployment started.
    Deploying,
    /// Only the desired count or deployment settings changed: no new deployment.
    Scaled,
    /// Nothing changed.
    Unchanged,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResult {
    pub service: ServiceKey,
    pub outcome: DeployOutcome,
    pub deployment_id: Option<String>,
    pub revision: u32,
    pub image_digest: Option<String>,
}

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

/// Response of rollback, restart and delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResponse {
    pub service: ServiceKey,
    pub deployment_id: Option<String>,
    pub message: String,
}

/// The error body of every failed call: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// An error a handler returns.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
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
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<slipway_store::StoreError> for ApiError {
    fn from(e: slipway_store::StoreError) -> Self {
        ApiError::internal(e)
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecResponse {
    pub task: String,
    /// The command's exit code (`None` if the engine did not report one).
    pub exit_code: Option<i64>,
    /// Standard output and standard error, interleaved.
    pub output: String,
    /// The output was longer than the cap and was cut.
    pub truncated: bool,
}

/// `POST /api/v1/diff` (same body as `/deploy`): what a deploy would change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffResponse {
    pub results: Vec<DiffResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffResult {
    #[serde(flatten)]
    pub diff: slipway_core::diff::ServiceDiff,
    /// Why a deploy would start a deployment although nothing differs, and the like.
    pub note: Option<String>,
}

/// `DELETE /api/v1/apps/{app}[?env=ENV]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteAppResponse {
    pub app: String,
    pub env: Option<String>,
    /// Services now being deleted (their tasks stop, then they are forgotten).
    pub services: Vec<ServiceKey>,
    /// Docker networks removed (those of environments with no service left).
    pub networks: Vec<String>,
    pub message: String,
}
