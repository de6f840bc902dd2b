//! The CMO agent's REST interface, the seed's contracts field for field: status, commands,
//! trigger-lead, reports and capabilities, each behind `X-API-Key`.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiContext;
use super::idempotency::{self, IdempotencyKey};
use super::{ApiError, AppJson};
use crate::agent::AgentState;
use crate::api_keys::KeyCheck;
use crate::bus::{AGENT_ID, Activity, IntakeTimestamps, LeadReceived, LeadSource};
use crate::domain::lead::{Lead, LeadError, PageDetails};
use crate::store::{Figures, Period};

pub const AGENT_NAME: &str = "Mesh Cowork Lead Qualifier";
const COMMANDS: [&str; 6] = ["start", "stop", "pause", "resume", "get_status", "get_metrics"];
const CAPABILITIES: [&str; 6] = [
    "email_monitoring",
    "outbound_calling",
    "speech_recognition",
    "lead_qualification",
    "sms_followup",
    "crm_integration",
];

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
        check_key(ctx, presented, address).await.map(Self)
    }
}

/// The key's name when `presented` is a live key allowed from `address` (no address: the request
/// came over NATS, where the server's own user auth is the network boundary).
pub async fn check_key(ctx: &ApiContext, presented: Option<&str>, address: Option<IpAddr>) -> Result<String, ApiError> {
    let presented = presented.ok_or_else(|| ApiError::Unauthorized("missing X-API-Key".into()))?;
    let keys = &ctx.api_keys;
    match keys.check(presented, address).await? {
        KeyCheck::Valid(name) => Ok(name),
        KeyCheck::Unknown => Err(ApiError::Unauthorized("invalid API key".into())),
        KeyCheck::Revoked => Err(ApiError::Unauthorized("this API key was revoked".into())),
        KeyCheck::RateLimited(wait) => Err(ApiError::too_many("this API key is over its rate limit", wait)),
        KeyCheck::AddressNotAllowed => Err(ApiError::Forbidden(format!(
            "this API key is not allowed from {}",
            address.map(|a| a.to_string()).unwrap_or_default()
        ))),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Metrics {
    pub calls_today: u64,
    pub sms_today: u64,
    pub leads_today: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    pub agent_id: &'static str,
    pub agent_name: &'static str,
    pub agent_type: &'static str,
    /// `active`, `paused` or `stopped`.
    pub status: &'static str,
    pub role: &'static str,
    pub department: &'static str,
    pub version: &'static str,
    pub metrics: Metrics,
    /// When the agent last did something, RFC 3339; null before any activity.
    pub last_activity: Option<String>,
    pub uptime_hours: f64,
}

async fn figures(ctx: &ApiContext, period: Period) -> Result<Figures, ApiError> {
    let store = super::store(ctx)?;
    let since = period.start(OffsetDateTime::now_utc(), &ctx.settings.calling_hours.fallback);
    Ok(store.figures(since).await?)
}

pub async fn status_body(ctx: &ApiContext) -> Result<StatusBody, ApiError> {
    let state = *ctx.agent_now.borrow();
    let today = figures(ctx, Period::Today).await?;
    Ok(StatusBody {
        agent_id: AGENT_ID,
        agent_name: AGENT_NAME,
        agent_type: "lead_qualification",
        status: state.as_status(),
        role: "account_executive",
        department: "cmo",
        version: env!("CARGO_PKG_VERSION"),
        metrics: Metrics {
            calls_today: today.calls_made,
            sms_today: today.sms_sent,
            leads_today: today.total_leads,
        },
        last_activity: today.last_activity,
        uptime_hours: (ctx.started.elapsed().as_secs_f64() / 3600.0 * 100.0).round() / 100.0,
    })
}

#[utoipa::path(get, path = "/api/cmo/status", tag = "cmo", security(("api_key" = [])),
    responses((status = 200, body = StatusBody), (status = 401, description = "missing or invalid X-API-Key")))]
async fn status(State(ctx): State<ApiContext>, _key: CmoKey) -> Result<Json<StatusBody>, ApiError> {
    Ok(Json(status_body(&ctx).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CommandRequest {
    pub command: String,
    #[serde(default)]
    pub parameters: Value,
}

/// Sets the state, then waits (briefly) until this process's view has it, so a status asked right
/// after the command answers with the new state.
async fn set_state(ctx: &ApiContext, state: AgentState) -> Result<(), ApiError> {
    ctx.agent_state.set(state).await?;
    let mut now = ctx.agent_now.clone();
    if tokio::time::timeout(std::time::Duration::from_secs(1), now.wait_for(|s| *s == state))
        .await
        .is_err()
    {
        tracing::warn!(?state, "the agent state watch has not caught up after 1 s");
    }
    Ok(())
}

/// One command, for REST and NATS alike; `actor` names who sent it in the activity log.
pub async fn run_command(ctx: &ApiContext, actor: &str, request: CommandRequest) -> Result<Value, ApiError> {
    let (message, data) = match request.command.as_str() {
        "start" | "resume" => {
            set_state(ctx, AgentState::Running).await?;
            (
                if request.command == "start" {
                    "Agent started"
                } else {
                    "Agent resumed"
                },
                None,
            )
        }
        "pause" => {
            set_state(ctx, AgentState::Paused).await?;
            ("Agent paused", None)
        }
        "stop" => {
            set_state(ctx, AgentState::Stopped).await?;
            ("Agent stopped", None)
        }
        "get_status" => (
            "Agent status",
            Some(serde_json::to_value(status_body(ctx).await?).unwrap_or_default()),
        ),
        "get_metrics" => (
            "Agent metrics",
            Some(report_body(&figures(ctx, Period::Today).await?, Period::Today)),
        ),
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown command `{other}`; valid commands: {}",
                COMMANDS.join(", ")
            )));
        }
    };
    if data.is_none() {
        let mut entry = Activity::new("agent.command", actor, message);
        entry.detail = json!({ "command": request.command, "parameters": request.parameters });
        ctx.bus.record(&entry).await;
    }
    let mut body = json!({ "status": "success", "message": message, "command": request.command });
    if let Some(data) = data {
        body["data"] = data;
    }
    Ok(body)
}

#[utoipa::path(post, path = "/api/cmo/command", tag = "cmo", request_body = CommandRequest, security(("api_key" = [])),
    responses((status = 200, description = "{status, message, command}"), (status = 400, description = "unknown command")))]
async fn command(
    State(ctx): State<ApiContext>,
    CmoKey(key): CmoKey,
    AppJson(request): AppJson<CommandRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(run_command(&ctx, &format!("cmo:{key}"), request).await?))
}

/// The seed's trigger-lead body: the landing page's form fields.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TriggerLead {
    pub fname: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub what_kind_of_office_space_are_you_interested_in: Option<String>,
    pub message: Option<String>,
    pub campaignid: Option<String>,
    /// Call even if this number had a lead inside the resubmit window (recorded in the activity log).
    #[serde(default)]
    pub force: bool,
    /// Sandbox only: how the simulated lead answers (`qualified`, `unqualified`, `voicemail`,
    /// `busy`, `no_answer`, `silence`, or a list of answers). Refused when Twilio is live.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub sandbox_callee: Option<crate::sandbox::Callee>,
    /// Any other form fields, kept as extras.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, Value>,
}

/// Queues a lead given as form fields, for REST and NATS alike: the body as sent, so a repeated
/// `Idempotency-Key` can be told apart from a reused one.
pub async fn trigger(
    ctx: &ApiContext,
    actor: &str,
    key: Option<&IdempotencyKey>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let request: TriggerLead =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed request body: {e}")))?;
    idempotency::once(&ctx.idempotency, key, body, |lead_id| {
        queue_lead(ctx, actor, request, lead_id)
    })
    .await
}

async fn queue_lead(
    ctx: &ApiContext,
    actor: &str,
    request: TriggerLead,
    lead_id: Option<Uuid>,
) -> Result<Value, ApiError> {
    let (force, callee) = (request.force, request.sandbox_callee);
    let known = [
        ("fname", request.fname),
        ("email", request.email),
        ("phone", request.phone),
        (
            "what_kind_of_office_space_are_you_interested_in",
            request.what_kind_of_office_space_are_you_interested_in,
        ),
        ("message", request.message),
        ("campaignid", request.campaignid),
    ];
    let mut fields: Vec<(String, String)> = known
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    fields.extend(request.extra.into_iter().map(|(k, v)| match v {
        Value::String(s) => (k, s),
        other => (k, other.to_string()),
    }));
    let lead =
        Lead::from_form(fields, PageDetails::default(), ctx.settings.default_region).map_err(|err| match err {
            LeadError::Invalid { field, detail } => ApiError::InvalidField { field, detail },
            LeadError::NotALead(detail) => ApiError::BadRequest(detail),
        })?;
    if let Some(callee) = &callee {
        sandbox_callee(ctx, lead.phone.as_str(), callee)?;
    }
    let received = enqueue(ctx, lead, LeadSource::CmoTrigger, actor, Intake { lead_id, force }).await?;
    Ok(json!({
        "status": "success",
        "message": "Lead queued for processing",
        "task_id": received.lead_id,
        "lead": { "name": received.lead.name, "phone": received.lead.phone },
    }))
}

/// Tells the sandbox how the lead at `phone` will answer; refused unless the calls go to the sandbox.
pub fn sandbox_callee(ctx: &ApiContext, phone: &str, callee: &crate::sandbox::Callee) -> Result<(), ApiError> {
    match &ctx.sandbox {
        Some(sandbox) if sandbox.modes().0 == crate::sandbox::Mode::Sandboxed => {
            sandbox.set_callee(phone, callee);
            Ok(())
        }
        _ => Err(ApiError::InvalidBody {
            field: "sandbox_callee",
            detail: "only for the sandbox, and Twilio is live: this lead would get a real call".into(),
        }),
    }
}

/// How a lead that did not come through the inbox is queued.
#[derive(Debug, Default, Clone, Copy)]
pub struct Intake {
    /// The lead's id when the request names it (an idempotency key, a webhook's body); else new.
    pub lead_id: Option<Uuid>,
    /// Call even if the number had a lead inside the resubmit window.
    pub force: bool,
}

/// Puts a lead that did not come through the inbox on `lead.received`, and logs who did it.
pub async fn enqueue(
    ctx: &ApiContext,
    lead: Lead,
    source: LeadSource,
    actor: &str,
    intake: Intake,
) -> Result<LeadReceived, ApiError> {
    let now = OffsetDateTime::now_utc();
    let lead_id = intake.lead_id.unwrap_or_else(Uuid::now_v7);
    let received_at = lead.received_at.or(Some(now));
    let mut received = LeadReceived::new(
        lead_id,
        source,
        Lead { received_at, ..lead },
        IntakeTimestamps {
            inbox_at: None,
            seen_at: now,
            published_at: now,
        },
    );
    received.force = intake.force;
    ctx.bus.publish(&received).await.map_err(|err| {
        tracing::warn!(%err, "lead not queued");
        ApiError::Unavailable("the lead could not be queued (NATS is unavailable); try again".into())
    })?;
    let (kind, summary) = match source {
        LeadSource::AdminTestEmail => ("lead.test_email", "test email queued as a lead"),
        LeadSource::UnbounceWebhook => ("lead.webhook", "form submission received from Unbounce"),
        _ => ("lead.triggered", "lead queued by the CMO agent"),
    };
    let mut entry = Activity::new(kind, actor, summary);
    entry.lead_id = Some(lead_id);
    ctx.bus.record(&entry).await;
    if intake.force {
        let mut entry = Activity::new(
            "lead.forced",
            actor,
            "called on purpose even if the number was called inside the resubmit window",
        );
        entry.lead_id = Some(lead_id);
        ctx.bus.record(&entry).await;
    }
    Ok(received)
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
    let idempotency_key = IdempotencyKey::from_headers(&headers, &actor)?;
    Ok(Json(trigger(&ctx, &actor, idempotency_key.as_ref(), &body).await?))
}

/// A period's report, for REST and NATS alike.
pub async fn report_value(ctx: &ApiContext, period: &str) -> Result<Value, ApiError> {
    let period = Period::parse(period)
        .ok_or_else(|| ApiError::BadRequest(format!("unknown period `{period}`; use today, week or month")))?;
    Ok(report_body(&figures(ctx, period).await?, period))
}

pub fn report_body(figures: &Figures, period: Period) -> Value {
    json!({
        "period": period.as_str(),
        "total_leads": figures.total_leads,
        "qualified_leads": figures.qualified_leads,
        "calls_made": figures.calls_made,
        "sms_sent": figures.sms_sent,
        "average_speed_to_lead": figures.average_speed_to_lead,
        "conversion_rate": figures.conversion_rate(),
    })
}

#[utoipa::path(get, path = "/api/cmo/report/{period}", tag = "cmo", security(("api_key" = [])),
    params(("period" = String, Path, description = "today, week or month")),
    responses((status = 200, description = "{period, total_leads, qualified_leads, calls_made, sms_sent, average_speed_to_lead, conversion_rate}"), (status = 400, description = "unknown period")))]
async fn report(
    State(ctx): State<ApiContext>,
    _key: CmoKey,
    Path(period): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(report_value(&ctx, &period).await?))
}

#[utoipa::path(get, path = "/api/cmo/capabilities", tag = "cmo", security(("api_key" = [])),
    responses((status = 200, description = "{agent_id, capabilities, commands, ...}")))]
async fn capabilities(_key: CmoKey) -> Json<Value> {
    Json(capabilities_body())
}

/// What the agent can do, for REST and NATS alike.
pub fn capabilities_body() -> Value {
    json!({
        "agent_id": AGENT_ID,
        "agent_name": AGENT_NAME,
        "agent_type": "lead_qualification",
        "role": "account_executive",
        "department": "cmo",
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": CAPABILITIES,
        "commands": COMMANDS,
        "report_periods": ["today", "week", "month"],
    })
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
