//! The test email: an admin pastes a notification email; it is read as the poller would and,
//! when it is a lead, queued (once per `Idempotency-Key`).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::bus::{Activity, LeadSource};
use crate::cmo::{Intake, idempotency};
use crate::roles::api::auth::Authed;
use crate::roles::api::cmo::idempotency_key;
use crate::roles::api::{ApiContext, ApiError, store};
use crate::security::users::Access;

#[derive(Deserialize, ToSchema)]
pub struct TestEmail {
    /// The whole email as received (headers and body), or just its body.
    #[serde(alias = "email", alias = "raw_email")]
    raw: String,
    /// "Call again anyway": call even if the number was called inside the resubmit window.
    #[serde(default)]
    force: bool,
    /// Sandbox only: how the simulated lead answers (see trigger-lead's `sandbox_callee`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    sandbox_callee: Option<crate::clients::sandbox::Callee>,
}

/// Parses a pasted email with the intake's parser. A lead is queued on `lead.received` like one
/// from the inbox; otherwise the answer is the exact parse error (422). Both are kept.
#[utoipa::path(post, path = "/api/admin/test-email", tag = "admin", security(("bearer" = [])), request_body = TestEmail,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key and body gets the first answer")),
    responses((status = 200, description = "{status, lead_id, lead}"), (status = 422, description = "{error, detail, field?}"), (status = 403)))]
pub(super) async fn test_email(
    State(ctx): State<ApiContext>,
    user: Authed,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Manage)?;
    let store = store(&ctx)?;
    let request: TestEmail =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))?;
    if request.raw.trim().is_empty() {
        return Err(ApiError::bad_request("paste an email in `raw`".into()));
    }
    let key = idempotency_key(&headers, &user.username)?;
    let (ctx, user, request) = (&ctx, &user, &request);
    let answer = idempotency::once(&ctx.cmo.idempotency, key.as_ref(), &body, move |lead_id| async move {
        match crate::domain::parse_notification(request.raw.as_bytes(), ctx.settings.default_region) {
            Ok(lead) => {
                if let Some(callee) = &request.sandbox_callee {
                    ctx.cmo.sandbox_callee(lead.phone.as_str(), callee)?;
                }
                let intake = Intake {
                    lead_id,
                    force: request.force,
                };
                let received = ctx
                    .cmo
                    .enqueue(lead, LeadSource::AdminTestEmail, &user.username, intake)
                    .await?;
                let body = json!({
                    "status": "queued",
                    "lead_id": received.lead_id,
                    "lead": received.lead,
                });
                store.save_test_email(&request.raw, &body, &user.username).await?;
                Ok(body)
            }
            Err(err) => {
                let body = err.to_json();
                store.save_test_email(&request.raw, &body, &user.username).await?;
                ctx.bus
                    .record(&Activity::new(
                        "lead.test_email_rejected",
                        &user.username,
                        format!("test email not taken: {err}"),
                    ))
                    .await;
                Err(ApiError::Unprocessable(body))
            }
        }
    })
    .await?;
    Ok(Json(answer))
}

/// The last 20 pasted test emails, newest first, with what became of each.
#[utoipa::path(get, path = "/api/admin/test-email", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "[{id, raw, result, submitted_by, at}]"), (status = 403)))]
pub(super) async fn test_emails(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<Vec<Value>>, ApiError> {
    user.require(Access::Manage)?;
    Ok(Json(store(&ctx)?.recent_test_emails(20).await?))
}
