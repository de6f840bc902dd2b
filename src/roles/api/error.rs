//! The one error type at the HTTP edge. Every error body is `{"error": ...}`; a 5xx body never
//! carries internal detail (that goes to the log with its cause chain).

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::cmo::CmoError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    /// Understood but not acceptable; the body (with `error`) says why in detail.
    #[error("{0}")]
    Unprocessable(serde_json::Value),
    /// The refusals every route shares with the CMO operations (bad request, unauthorized,
    /// forbidden, rate limited, unavailable, internal), answered with the same status and words.
    #[error(transparent)]
    Refused(CmoError),
}

impl From<CmoError> for ApiError {
    fn from(err: CmoError) -> Self {
        match err {
            // A reused key answers 422 with the reason in the body, like every refusal here.
            CmoError::KeyReused => Self::Unprocessable(serde_json::json!({ "error": CmoError::KeyReused.to_string() })),
            other => Self::Refused(other),
        }
    }
}

/// A store that does not answer is a 503 (try again), not a fault of the request or a 500.
impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        CmoError::from(err).into()
    }
}

/// NATS away for longer than the bus rides out is a 503 too.
impl From<crate::bus::BusError> for ApiError {
    fn from(err: crate::bus::BusError) -> Self {
        CmoError::from(err).into()
    }
}

impl ApiError {
    pub fn bad_request(message: String) -> Self {
        Self::Refused(CmoError::BadRequest(message))
    }

    pub fn unauthorized(message: String) -> Self {
        Self::Refused(CmoError::Unauthorized(message))
    }

    pub fn forbidden(message: String) -> Self {
        Self::Refused(CmoError::Forbidden(message))
    }

    pub fn unavailable(message: String) -> Self {
        Self::Refused(CmoError::Unavailable(message))
    }

    /// A failure of the server's own; its detail is logged, never sent.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Refused(CmoError::Internal(Box::new(err)))
    }

    /// A 429 naming the wait, in whole seconds rounded up (also sent as `Retry-After`).
    pub fn too_many(message: &str, wait: std::time::Duration) -> Self {
        Self::Refused(CmoError::rate_limited(message, wait))
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Refused(err) => StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        // An internal failure is logged with its detail by `public_message`.
        if !matches!(self, Self::Refused(CmoError::Internal(_))) {
            tracing::info!(%status, error = %self, "request refused");
        }
        let mut body = match &self {
            Self::Unprocessable(detail) => detail.clone(),
            Self::Refused(err) => serde_json::json!({ "error": err.public_message() }),
            Self::NotFound => serde_json::json!({ "error": self.to_string() }),
        };
        if let Self::Refused(CmoError::InvalidField { field, .. } | CmoError::InvalidBody { field, .. }) = &self {
            body["field"] = (*field).into();
        }
        let mut response = (status, Json(body)).into_response();
        if let Self::Refused(CmoError::RateLimited { retry_after_secs, .. }) = &self {
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
        Self::bad_request(format!("malformed request body: {}", rejection.body_text()))
    }
}
