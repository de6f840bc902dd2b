//! Calendly's webhook (`POST /webhooks/calendly`): who booked a tour, cancelled or rescheduled.
//! A delivery must carry a valid `Calendly-Webhook-Signature` signed within the tolerance, and is
//! taken once (a replay is refused); a booking is matched to its lead by the lead id the booking
//! link carried (`utm_content`), else by email, and one nobody matches is kept, unmatched.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::ApiContext;
use super::ApiError;
use crate::bus::Activity;
use crate::clients::calendly::{self, SIGNATURE_HEADER, SignatureError, WebhookEnvelope};
use crate::security::secrets::sha256_hex;
use crate::store::{Booking, BookingEvent};

#[derive(utoipa::OpenApi)]
#[openapi(paths(webhook))]
pub struct CalendlyApi;

pub fn routes() -> Router<ApiContext> {
    Router::new().route("/webhooks/calendly", post(webhook))
}

/// A booking, cancel or reschedule reported by Calendly: `{"matched", "lead_id"}` once kept.
#[utoipa::path(post, path = "/webhooks/calendly", tag = "webhooks",
    responses((status = 200, description = "kept (matched to a lead or not)"),
        (status = 400, description = "not a Calendly webhook body"),
        (status = 401, description = "no or a malformed Calendly-Webhook-Signature"),
        (status = 403, description = "a signature that does not match, is stale, or was received before"),
        (status = 503, description = "no signing key configured, or the store is away")))]
pub async fn webhook(State(ctx): State<ApiContext>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    let Some(key) = ctx.calendly_key.borrow().clone() else {
        return Err(ApiError::unavailable(
            "Calendly webhooks are not set up: no signing key (LEADQ_CALENDLY__SIGNING_KEY, or calendly.signing_key on the Credentials page)".into(),
        ));
    };
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let tolerance = ctx.settings.calendly.tolerance;
    match calendly::verify(key.expose_secret(), header, &body, OffsetDateTime::now_utc(), tolerance) {
        Ok(_) => {}
        Err(err @ (SignatureError::Missing | SignatureError::Malformed)) => {
            return Err(ApiError::unauthorized(format!("Calendly webhook refused: {err}")));
        }
        Err(err) => return Err(ApiError::forbidden(format!("Calendly webhook refused: {err}"))),
    }
    let envelope: WebhookEnvelope = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not a Calendly webhook body: {e}")))?;
    let event = match envelope.event.as_str() {
        "invitee.created" => BookingEvent::Created,
        "invitee.canceled" => BookingEvent::Canceled,
        other => return Ok(Json(json!({ "ignored": other }))),
    };
    // Only now is the delivery remembered: an unsigned or malformed one leaves no trace.
    let seen = sha256_hex(header.unwrap_or_default().as_bytes());
    if !ctx.webhooks_seen.first_time(&seen).await? {
        return Err(ApiError::forbidden(
            "Calendly webhook refused: this delivery was received before (a replay)".into(),
        ));
    }
    match keep(&ctx, event, envelope).await {
        Ok(answer) => Ok(Json(answer)),
        Err(err) => {
            // Not kept: the same delivery may come again and be taken.
            if let Err(e) = ctx.webhooks_seen.forget(&seen).await {
                tracing::warn!(%e, "a failed Calendly delivery stays marked received");
            }
            Err(err)
        }
    }
}

/// Matches the report to its lead, keeps it, and says so in the lead's activity.
async fn keep(ctx: &ApiContext, event: BookingEvent, envelope: WebhookEnvelope) -> Result<Value, ApiError> {
    let store = ctx
        .store
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this process keeps no records (LEADQ_DB)".into()))?;
    let invitee = envelope.payload;
    let tracked = invitee
        .tracking
        .utm_content
        .as_deref()
        .and_then(|id| uuid::Uuid::parse_str(id).ok());
    let lead_id = store.match_booking(tracked, invitee.email.as_deref()).await?;
    let booking = Booking {
        invitee: invitee.uri,
        event,
        email: invitee.email,
        name: invitee.name,
        meeting_at: invitee.scheduled_event.and_then(|e| e.start_time),
        reported_at: envelope.created_at,
        rescheduled: invitee.rescheduled,
        lead_id: lead_id.clone(),
    };
    store.record_booking(&booking).await?;
    // A booked lead gets no more reminders to book.
    if event == BookingEvent::Created
        && let Some(id) = lead_id.as_deref().and_then(|id| uuid::Uuid::parse_str(id).ok())
    {
        ctx.followup_stops.stop(id, "booked").await?;
    }
    let (kind, summary) = match (event, booking.rescheduled) {
        (BookingEvent::Created, _) => (
            "lead.booked",
            format!(
                "booked a tour for {}",
                booking.meeting_at.as_deref().unwrap_or("a time not given")
            ),
        ),
        (BookingEvent::Canceled, true) => ("lead.rescheduled", "moved the tour to another time".to_owned()),
        (BookingEvent::Canceled, false) => ("lead.canceled", "cancelled the tour".to_owned()),
    };
    let who = booking.email.as_deref().unwrap_or("someone");
    let mut activity = match &lead_id {
        Some(_) => Activity::new(kind, "calendly", summary),
        None => Activity::new(
            "booking.unmatched",
            "calendly",
            format!("{who} {summary}; no lead has this email or link"),
        ),
    };
    activity.lead_id = lead_id.as_deref().and_then(|id| uuid::Uuid::parse_str(id).ok());
    activity.detail = json!({ "invitee": booking.invitee, "email": booking.email, "meeting_at": booking.meeting_at });
    ctx.bus.record(&activity).await;
    tracing::info!(matched = lead_id.is_some(), event = kind, "Calendly report kept");
    Ok(json!({ "matched": lead_id.is_some(), "lead_id": lead_id }))
}
