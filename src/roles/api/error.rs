//! The one error type at the HTTP edge. Every error body is `{"error": ...}`; a 5xx body never
//! carries internal detail (that goes to the log with its cause chain).

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    /// A malformed part of a request body, named in the answer's `field`.
    #[error("{field}: {detail}")]
    InvalidBody { field: &'static str, detail: String },
    /// A lead that cannot be called: the field at fault is named in the body.
    #[error("invalid lead: {field}: {detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
    /// Refused for now; the client may try again after the given seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// Understood but not acceptable; the body (with `error`) says why in detail.
    #[error("{0}")]
    Unprocessable(serde_json::Value),
    /// Any module's failure; its detail is logged, never sent.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

/// The CMO operations' refusals, answered with the same status and words over REST.
impl From<crate::cmo::CmoError> for ApiError {
    fn from(err: crate::cmo::CmoError) -> Self {
        use crate::cmo::CmoError;
        match err {
            CmoError::BadRequest(message) => Self::BadRequest(message),
            CmoError::InvalidBody { field, detail } => Self::InvalidBody { field, detail },
            CmoError::InvalidField { field, detail } => Self::InvalidField { field, detail },
            CmoError::Unauthorized(message) => Self::Unauthorized(message),
            CmoError::Forbidden(message) => Self::Forbidden(message),
            CmoError::RateLimited {
                message,
                retry_after_secs,
            } => Self::TooManyRequests {
                message,
                retry_after_secs,
            },
            CmoError::KeyReused => Self::Unprocessable(serde_json::json!({ "error": CmoError::KeyReused.to_string() })),
            CmoError::Unavailable(message) => Self::Unavailable(message),
            CmoError::Internal(err) => Self::Internal(err),
        }
    }
}

/// A store that does not answer is a 503 (try again), not a fault of the request or a 500.
impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        crate::cmo::CmoError::from(err).into()
    }
}

/// NATS away for longer than the bus rides out is a 503 too.
impl From<crate::bus::BusError> for ApiError {
    fn from(err: crate::bus::BusError) -> Self {
        crate::cmo::CmoError::from(err).into()
    }
}

impl ApiError {
    /// A 429 naming the wait, in whole seconds rounded up (also sent as `Retry-After`).
    pub fn too_many(message: &str, wait: std::time::Duration) -> Self {
        let secs = crate::cmo::whole_seconds(wait);
        Self::TooManyRequests {
            message: format!("{message}; try again in {secs} s"),
            retry_after_secs: secs,
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) | Self::InvalidBody { .. } => StatusCode::BAD_REQUEST,
            Self::InvalidField { .. } | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
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
        let mut body = match &self {
            Self::Unprocessable(detail) => detail.clone(),
            _ => serde_json::json!({ "error": message }),
        };
        if let Self::InvalidField { field, .. } | Self::InvalidBody { field, .. } = &self {
            body["field"] = (*field).into();
        }
        let mut response = (status, Json(body)).into_response();
        if let Self::TooManyRequests { retry_after_secs, .. } = &self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, (*retry_after_secs).into());
        }
        response
    }
}

/// JSON bodies whose rejection (malformed JSON, wrong content type, missing fields) is an
/// `ApiError`, so it answers `{"error": ...}` like everything else.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::BadRequest(format!("malformed request body: {}", rejection.body_text()))
    }
}
