//! The admin page's API: figures, leads, the test email, credentials, the activity log, agent
//! commands, the call script and rules, and a live event stream. Every route needs a signed-in
//! person ([`Authed`]) and says which [`Access`] it needs; every change lands in the activity log
//! with who made it.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::ApiContext;
use super::auth::Authed;
use super::{ApiError, store, views};
use crate::bus::{Activity, subject};
use crate::cmo::CommandRequest;
use crate::security::users::Access;
use crate::store::{ActivityFilter, Period};

mod credentials;
mod roster;
mod script;
mod test_email;

pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/api/admin/me", get(me))
        .route("/api/admin/stats", get(stats))
        .route("/api/admin/leads", get(leads))
        .route("/api/admin/leads/{id}", get(lead))
        .route("/api/admin/bookings", get(bookings))
        .route(
            "/api/admin/test-email",
            get(test_email::test_emails).post(test_email::test_email),
        )
        .route("/api/admin/activity", get(activity))
        .route(
            "/api/admin/credentials",
            get(credentials::list_credentials).post(credentials::save_credential),
        )
        .route(
            "/api/admin/credentials/{service}/{key}",
            delete(credentials::delete_credential),
        )
        .route("/api/admin/agent/{command}", post(agent_command))
        .route("/api/admin/unbounce-url", post(unbounce_url))
        .route("/api/admin/sandbox", get(sandbox))
        .route("/api/admin/script", get(script::script).put(script::save_script))
        .route("/api/admin/script/try", post(script::try_answer))
        .route("/api/admin/roster", get(roster::roster).put(roster::save_roster))
        .route(
            "/api/admin/experiment",
            get(script::experiment).put(script::save_experiment),
        )
        .route("/api/admin/events", get(events))
}

/// Who is signed in, and what they may do (the page shows only that).
#[utoipa::path(get, path = "/api/admin/me", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "{username, role, may: {read, command, manage}}"), (status = 401)))]
async fn me(user: Authed) -> Json<Value> {
    Json(json!({
        "username": user.username,
        "role": user.role,
        "may": {
            "read": user.role.may(Access::Read),
            "command": user.role.may(Access::Command),
            "manage": user.role.may(Access::Manage),
        },
    }))
}

/// Today's figures for the dashboard.
#[utoipa::path(get, path = "/api/admin/stats", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "{agent, today: {leads, calls, sms, qualified, conversion_rate, booked, booking_rate, median_secs_to_booking, transferred, verdicts, speed_to_lead}, fresh_install, calls_in_progress: [{lead_id, name, phone, phase, answered, asking, heard: [{question, said, captured}], since}]}"), (status = 401), (status = 403)))]
async fn stats(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<Value>, ApiError> {
    user.require(Access::Read)?;
    let store = store(&ctx)?;
    let since = Period::Today.start(OffsetDateTime::now_utc(), &ctx.settings.calling_hours.fallback);
    let status = ctx.cmo.status().await?;
    let figures = store.figures(since).await?;
    let dashboard = store.dashboard(since).await?;
    let (calls, script) = (ctx.calls.in_progress().await?, ctx.config.script().await);
    let verdicts: serde_json::Map<String, Value> = dashboard["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| Some((row["verdict"].as_str()?.to_owned(), row["count"].clone())))
        .collect();
    Ok(Json(json!({
        "agent": status,
        "today": {
            "leads": figures.total_leads,
            "qualified": figures.qualified_leads,
            "calls": figures.calls_made,
            "sms": figures.sms_sent,
            "conversion_rate": figures.conversion_rate(),
            "booked": figures.booked_leads,
            "booking_rate": figures.booking_rate(),
            "median_secs_to_booking": figures.median_secs_to_booking,
            "transferred": figures.transferred_leads,
            "verdicts": verdicts,
            "speed_to_lead": {
                "p50": dashboard["p50"],
                "p95": dashboard["p95"],
                "average": figures.average_speed_to_lead,
                "samples": dashboard["samples"],
            },
        },
        "fresh_install": !store.has_leads().await?,
        "calls_in_progress": calls.iter().map(|call| views::live_call(call, &script)).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct LeadQuery {
    verdict: Option<String>,
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

fn default_limit() -> u32 {
    50
}

fn page_size(limit: u32) -> Result<u32, ApiError> {
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request("limit must be 1 to 200".into()))
    }
}

/// Finished leads, newest first.
#[utoipa::path(get, path = "/api/admin/leads", tag = "admin", security(("bearer" = [])), params(LeadQuery),
    responses((status = 200, description = "{items, total, limit, offset}"), (status = 401), (status = 403)))]
async fn leads(
    State(ctx): State<ApiContext>,
    user: Authed,
    Query(query): Query<LeadQuery>,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Read)?;
    let page = store(&ctx)?
        .leads_page(query.verdict, page_size(query.limit)?, query.offset)
        .await?;
    Ok(Json(serde_json::to_value(page).unwrap_or_default()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct BookingQuery {
    /// Only the bookings no lead could be found for.
    #[serde(default)]
    unmatched: bool,
    #[serde(default = "default_limit")]
    limit: u32,
}

/// The bookings Calendly reported, newest first: each with its lead, or none when neither the
/// link's lead id nor the email matched one (`unmatched=true` lists only those).
#[utoipa::path(get, path = "/api/admin/bookings", tag = "admin", security(("bearer" = [])), params(BookingQuery),
    responses((status = 200, description = "{items: [{invitee, event, email, name, meeting_at, reported_at, rescheduled, lead_id}]}"),
        (status = 401), (status = 403)))]
async fn bookings(
    State(ctx): State<ApiContext>,
    user: Authed,
    Query(query): Query<BookingQuery>,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Read)?;
    let items = store(&ctx)?.bookings(query.unmatched, page_size(query.limit)?).await?;
    Ok(Json(json!({ "items": items })))
}

/// One lead: contact, answers raw and interpreted, verdict, reasons, timestamps, CRM and SMS state,
/// and for its page: `transcript` (question prompt, said, read_as, captured), `activity` (oldest
/// first), `text_sent`, and `crm_row` (the row the sandbox's CRM holds, null when Airtable is live).
#[utoipa::path(get, path = "/api/admin/leads/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the lead id")),
    responses((status = 200), (status = 404), (status = 401), (status = 403)))]
async fn lead(State(ctx): State<ApiContext>, user: Authed, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    user.require(Access::Read)?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::bad_request(format!("`{id}` is not a lead id")))?;
    let store = store(&ctx)?;
    let record = store.lead(id).await?.ok_or(ApiError::NotFound)?;
    let activity = store.lead_activity(id).await?;
    let script = ctx.config.script().await;
    let airtable = &ctx.settings.airtable;
    let crm_row = ctx.sandbox.as_ref().and_then(|sandbox| {
        let column = airtable.fields.get("lead_id")?;
        sandbox.crm_row(&airtable.table, column, &id.to_string())
    });
    Ok(Json(views::lead_page(record, &script, activity, crm_row)))
}

/// The activity log, newest first; filter by `kind` and `actor`.
#[utoipa::path(get, path = "/api/admin/activity", tag = "admin", security(("bearer" = [])), params(ActivityFilter),
    responses((status = 200, description = "{items, total, limit, offset}"), (status = 401), (status = 403)))]
async fn activity(
    State(ctx): State<ApiContext>,
    user: Authed,
    Query(filter): Query<ActivityFilter>,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Read)?;
    page_size(filter.limit)?;
    let page = store(&ctx)?.activity_page(&filter).await?;
    Ok(Json(serde_json::to_value(page).unwrap_or_default()))
}

/// The CMO commands (start, stop, pause, resume, get_status, get_metrics), from the page.
#[utoipa::path(post, path = "/api/admin/agent/{command}", tag = "admin", security(("bearer" = [])),
    params(("command" = String, Path, description = "start, stop, pause, resume, get_status or get_metrics")),
    responses((status = 200), (status = 400, description = "unknown command"), (status = 403)))]
async fn agent_command(
    State(ctx): State<ApiContext>,
    user: Authed,
    Path(command): Path<String>,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Command)?;
    let request = CommandRequest {
        command,
        parameters: Value::Null,
    };
    Ok(Json(ctx.cmo.command(&user.username, request).await?))
}

/// Which outside services are live and which the sandbox stands in for, and, in the sandbox, its
/// outbox: the calls placed (what was said each way), the texts sent and the CRM rows.
#[utoipa::path(get, path = "/api/admin/sandbox", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "{active, services: {twilio, airtable}, outbox?: {calls, texts, crm_rows}}")))]
async fn sandbox(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<Value>, ApiError> {
    user.require(Access::Read)?;
    let configured = |yes: bool| if yes { "live" } else { "not_configured" };
    let twilio = &ctx.settings.twilio;
    let airtable = &ctx.settings.airtable;
    Ok(Json(match &ctx.sandbox {
        Some(sandbox) => {
            let (twilio, airtable_mode) = sandbox.modes();
            json!({
                "active": sandbox.any(),
                "services": { "twilio": twilio, "airtable": airtable_mode },
                "outbox": sandbox.outbox(&airtable.table),
            })
        }
        None => json!({
            "active": false,
            "services": {
                "twilio": configured(twilio.account_sid.is_some() && twilio.auth_token.is_some()),
                "airtable": configured(airtable.token.is_some() && airtable.base_id.is_some()),
            },
        }),
    }))
}

/// A new secret URL for Unbounce's form-submit webhook, shown once; the old one stops working.
#[utoipa::path(post, path = "/api/admin/unbounce-url", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "{url}: paste it in Unbounce (page > Integrations > Webhooks)"), (status = 403)))]
async fn unbounce_url(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<Value>, ApiError> {
    user.require(Access::Manage)?;
    let token = crate::roles::api::unbounce_form::rotate_token(ctx.config.bucket()).await?;
    ctx.bus
        .record(&Activity::new(
            "unbounce.url_rotated",
            &user.username,
            "a new Unbounce webhook URL was made; the previous one no longer works",
        ))
        .await;
    Ok(Json(
        json!({ "url": crate::roles::api::unbounce_form::webhook_url(&ctx.settings.public_url, &token) }),
    ))
}

/// The subjects the dashboard follows live.
const LIVE_SUBJECTS: [&str; 6] = [
    subject::LEAD_RECEIVED,
    subject::LEAD_FINALIZED,
    subject::CALL_ANSWER,
    subject::CALL_COMPLETED,
    subject::AGENT_STATUS,
    subject::AGENT_ACTIVITY,
];

/// Server-sent events from the bus: `lead.received`, `lead.finalized`, `call.answer`, `call.completed`,
/// `agent.status` and `agent.activity`, each as an event named by its subject with its JSON.
#[utoipa::path(get, path = "/api/admin/events", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream"), (status = 401)))]
async fn events(
    State(ctx): State<ApiContext>,
    user: Authed,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    user.require(Access::Read)?;
    let mut streams = Vec::new();
    for name in LIVE_SUBJECTS {
        let subscriber = ctx.bus.client.subscribe(name).await.map_err(ApiError::internal)?;
        streams.push(subscriber);
    }
    let stopping = ctx.stopping.clone();
    let stream = futures::stream::select_all(streams)
        .map(|message| {
            let data = String::from_utf8_lossy(&message.payload).into_owned();
            Ok(Event::default().event(message.subject.as_str()).data(data))
        })
        .take_until(stopping.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    me,
    stats,
    leads,
    lead,
    bookings,
    test_email::test_emails,
    test_email::test_email,
    activity,
    credentials::list_credentials,
    credentials::save_credential,
    credentials::delete_credential,
    agent_command,
    unbounce_url,
    sandbox,
    script::script,
    script::save_script,
    script::try_answer,
    roster::roster,
    roster::save_roster,
    script::experiment,
    script::save_experiment,
    events
))]
pub struct AdminApi;
