//! The CMO agent's REST interface: each route reads its request, checks `X-API-Key`, and hands
//! it to the transport-neutral operation in [`crate::cmo`].

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::ApiContext;
use super::{ApiError, AppJson};
use crate::cmo::{Cmo, CommandRequest, IdempotencyKey, StatusBody, TriggerLead, idempotency};

pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/api/cmo/status", get(status))
        .route("/api/cmo/command", post(command))
        .route("/api/cmo/trigger-lead", post(trigger_lead))
        .route("/api/cmo/report/{period}", get(report))
        .route("/api/cmo/capabilities", get(capabilities))
}

/// A request carrying a valid `X-API-Key` from an allowed address; holds the key's name.
pub struct CmoKey(pub String);

impl FromRequestParts<ApiContext> for CmoKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let presented = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(ctx.cmo.check_key(presented, address).await?))
    }
}

/// The request's `Idempotency-Key`, checked; `None` without the header.
pub fn idempotency_key(headers: &HeaderMap, actor: &str) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(idempotency::HEADER) else {
        return Ok(None);
    };
    Ok(Some(IdempotencyKey::new(value.to_str().unwrap_or("\u{0}"), actor)?))
}

#[utoipa::path(get, path = "/api/cmo/status", tag = "cmo", security(("api_key" = [])),
    responses((status = 200, body = StatusBody), (status = 401, description = "missing or invalid X-API-Key")))]
async fn status(State(ctx): State<ApiContext>, _key: CmoKey) -> Result<Json<StatusBody>, ApiError> {
    Ok(Json(ctx.cmo.status().await?))
}

#[utoipa::path(post, path = "/api/cmo/command", tag = "cmo", request_body = CommandRequest, security(("api_key" = [])),
    responses((status = 200, description = "{status, message, command}"), (status = 400, description = "unknown command")))]
async fn command(
    State(ctx): State<ApiContext>,
    CmoKey(key): CmoKey,
    AppJson(request): AppJson<CommandRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(ctx.cmo.command(&format!("cmo:{key}"), request).await?))
}

#[utoipa::path(post, path = "/api/cmo/trigger-lead", tag = "cmo", request_body = TriggerLead, security(("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key and body gets the first answer and queues nothing")),
    responses((status = 200, description = "{status, message, task_id, lead}"), (status = 422, description = "a field that makes the lead uncallable, or an Idempotency-Key reused for another body")))]
async fn trigger_lead(
    State(ctx): State<ApiContext>,
    CmoKey(key): CmoKey,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let actor = format!("cmo:{key}");
    let idempotency_key = idempotency_key(&headers, &actor)?;
    Ok(Json(ctx.cmo.trigger(&actor, idempotency_key.as_ref(), &body).await?))
}

#[utoipa::path(get, path = "/api/cmo/report/{period}", tag = "cmo", security(("api_key" = [])),
    params(("period" = String, Path, description = "today, week or month")),
    responses((status = 200, description = "{period, total_leads, qualified_leads, calls_made, sms_sent, average_speed_to_lead, conversion_rate, booked_leads, booking_rate, median_secs_to_booking, transferred_leads}"), (status = 400, description = "unknown period")))]
async fn report(
    State(ctx): State<ApiContext>,
    _key: CmoKey,
    Path(period): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(ctx.cmo.report(&period).await?))
}

#[utoipa::path(get, path = "/api/cmo/capabilities", tag = "cmo", security(("api_key" = [])),
    responses((status = 200, description = "{agent_id, capabilities, commands, ...}")))]
async fn capabilities(_key: CmoKey) -> Json<Value> {
    Json(Cmo::capabilities())
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "leadq", description = "Lead qualification agent: the CMO agent's REST interface"),
    paths(status, command, trigger_lead, report, capabilities),
    modifiers(&ApiKeyScheme)
)]
pub struct CmoApi;

struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}
