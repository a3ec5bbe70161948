//! Bearer-token authentication of the API.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiState;
use crate::types::ApiError;

/// Meta key under which the SHA-256 of the admin token is stored (never the token itself).
pub const TOKEN_META_KEY: &str = "admin_token_sha256";

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

pub(crate) async fn require_token(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(hash_token);
    let expected = match state.app.store().get_meta(TOKEN_META_KEY).await {
        Ok(Some(h)) => h,
        Ok(None) | Err(_) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_READY",
                "the server has no admin token yet",
            )
            .into_response();
        }
    };
    match presented {
        Some(h) if bool::from(h.as_bytes().ct_eq(expected.as_bytes())) => next.run(req).await,
        _ => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "missing or invalid API token; set SLIPWAY_TOKEN or run `slipway login --server URL --token-file DATA_DIR/admin.token`",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}
