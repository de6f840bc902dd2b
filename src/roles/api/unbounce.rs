//! `POST /webhooks/unbounce/{token}`: Unbounce's form-submit webhook straight onto
//! `lead.received`, without waiting for the notification email. The token in the path is the
//! secret (Unbounce does not sign); an optional allowlist (`LEADQ_UNBOUNCE__ALLOW`) limits who
//! may post. A bad body is refused with the field at fault and publishes nothing.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, header};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ApiContext;
use super::ApiError;
use crate::bus::LeadSource;
use crate::cmo::{CmoError, Intake};
use crate::domain::lead::LeadError;
use crate::roles::api::unbounce_form::{Submission, check_token};

pub fn routes() -> Router<ApiContext> {
    Router::new().route("/webhooks/unbounce/{token}", post(form_submit))
}

async fn form_submit(
    State(ctx): State<ApiContext>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let allow = &ctx.settings.unbounce.allow;
    if !allow.is_empty() && !allow.iter().any(|net| net.contains(&peer.ip())) {
        return Err(ApiError::forbidden(format!(
            "{} may not post form submissions (LEADQ_UNBOUNCE__ALLOW)",
            peer.ip()
        )));
    }
    match check_token(ctx.config.bucket(), &token).await? {
        Some(true) => {}
        Some(false) => return Err(ApiError::forbidden("unknown webhook token".into())),
        None => {
            return Err(ApiError::forbidden(
                "no Unbounce webhook URL was made yet (`leadq admin unbounce-url`)".into(),
            ));
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let submission = if json {
        Submission::from_json(&body)
    } else {
        Submission::from_form(&body)
    }
    .map_err(|err| CmoError::InvalidBody {
        field: err.field,
        detail: err.detail,
    })?;
    let intake = Intake {
        lead_id: Some(submission.identity),
        force: false,
    };
    let lead = submission
        .into_lead(ctx.settings.default_region)
        .map_err(|err| match err {
            LeadError::Invalid { field, detail } => CmoError::InvalidField { field, detail },
            LeadError::NotALead(detail) => CmoError::BadRequest(detail),
        })?;
    let received = ctx
        .cmo
        .enqueue(lead, LeadSource::UnbounceWebhook, "unbounce", intake)
        .await?;
    tracing::info!(lead_id = %received.lead_id, "form submission queued");
    Ok(Json(json!({ "status": "queued", "lead_id": received.lead_id })))
}
