//! What a CMO operation can refuse or fail with, whichever transport carried it. Each error has
//! the HTTP-style code both transports answer with (the REST status; `Nats-Service-Error-Code`).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CmoError {
    #[error("{0}")]
    BadRequest(String),
    /// A malformed part of a request body, named in the answer's `field`.
    #[error("{field}: {detail}")]
    InvalidBody { field: &'static str, detail: String },
    /// A lead that cannot be called: the field at fault is named in the answer.
    #[error("invalid lead: {field}: {detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Over the key's rate limit; the client may try again after the given seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    #[error("this Idempotency-Key was used with a different request body")]
    KeyReused,
    #[error("{0}")]
    Unavailable(String),
    /// Any module's failure; its detail is logged, never sent.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

/// A wait in whole seconds, rounded up: what `Retry-After` and the messages say.
pub fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl CmoError {
    pub fn rate_limited(message: &str, wait: Duration) -> Self {
        let secs = whole_seconds(wait);
        Self::RateLimited {
            message: format!("{message}; try again in {secs} s"),
            retry_after_secs: secs,
        }
    }

    /// The HTTP-style code of the refusal.
    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::InvalidBody { .. } => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::InvalidField { .. } | Self::KeyReused => 422,
            Self::RateLimited { .. } => 429,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
        }
    }

    /// What the client is told: everything but an internal failure, which is logged instead.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(err) => {
                tracing::error!(error = %err, "internal error");
                "internal error".into()
            }
            other => other.to_string(),
        }
    }
}

/// A store that does not answer is a 503 (try again), not a fault of the request or a 500.
impl From<crate::store::StoreError> for CmoError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unanswered(_) => Self::Unavailable(err.to_string()),
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// NATS away for longer than the bus rides out is a 503 too.
impl From<crate::bus::BusError> for CmoError {
    fn from(err: crate::bus::BusError) -> Self {
        if err.is_transient() {
            Self::Unavailable(format!("the message bus is not answering right now ({err}); try again"))
        } else {
            Self::Internal(Box::new(err))
        }
    }
}
