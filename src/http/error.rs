//! The one error type at the HTTP edge. Every error body is `{"error": ...}`; a 5xx body never
//! carries internal detail (that goes to the log with its cause chain).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// Any module's failure; its detail is logged, never sent.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        Self::Internal(Box::new(err))
    }
}

impl From<crate::bus::BusError> for ApiError {
    fn from(err: crate::bus::BusError) -> Self {
        Self::Internal(Box::new(err))
    }
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let message = match &self {
            Self::Internal(err) => {
                tracing::error!(error = %err, "internal error");
                "internal error".to_owned()
            }
            other => {
                tracing::info!(%status, error = %other, "request refused");
                other.to_string()
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
