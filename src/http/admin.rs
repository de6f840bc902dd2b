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
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::ApiContext;
use super::auth::Authed;
use super::cmo::idempotency_key;
use super::{ApiError, AppJson, store, views};
use crate::bus::{Activity, LeadSource, subject};
use crate::cmo::{CommandRequest, Intake, idempotency};
use crate::credentials::{CredentialError, CredentialView};
use crate::domain::qualification::Rules;
use crate::domain::script::{AnswerType, Script};
use crate::store::{ActivityFilter, Period};
use crate::users::Access;

pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/api/admin/me", get(me))
        .route("/api/admin/stats", get(stats))
        .route("/api/admin/leads", get(leads))
        .route("/api/admin/leads/{id}", get(lead))
        .route("/api/admin/test-email", get(test_emails).post(test_email))
        .route("/api/admin/activity", get(activity))
        .route("/api/admin/credentials", get(list_credentials).post(save_credential))
        .route("/api/admin/credentials/{service}/{key}", delete(delete_credential))
        .route("/api/admin/agent/{command}", post(agent_command))
        .route("/api/admin/unbounce-url", post(unbounce_url))
        .route("/api/admin/sandbox", get(sandbox))
        .route("/api/admin/script", get(script).put(save_script))
        .route("/api/admin/script/try", post(try_answer))
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
    responses((status = 200, description = "{agent, today: {leads, calls, sms, qualified, conversion_rate, verdicts, speed_to_lead}, fresh_install, calls_in_progress: [{lead_id, name, phone, phase, answered, asking, heard: [{question, said, captured}], since}]}"), (status = 401), (status = 403)))]
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
        Err(ApiError::BadRequest("limit must be 1 to 200".into()))
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

/// One lead: contact, answers raw and interpreted, verdict, reasons, timestamps, CRM and SMS state,
/// and for its page: `transcript` (question prompt, said, read_as, captured), `activity` (oldest
/// first), `text_sent`, and `crm_row` (the row the sandbox's CRM holds, null when Airtable is live).
#[utoipa::path(get, path = "/api/admin/leads/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the lead id")),
    responses((status = 200), (status = 404), (status = 401), (status = 403)))]
async fn lead(State(ctx): State<ApiContext>, user: Authed, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    user.require(Access::Read)?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::BadRequest(format!("`{id}` is not a lead id")))?;
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
    sandbox_callee: Option<crate::sandbox::Callee>,
}

/// Parses a pasted email with the intake's parser. A lead is queued on `lead.received` like one
/// from the inbox; otherwise the answer is the exact parse error (422). Both are kept.
#[utoipa::path(post, path = "/api/admin/test-email", tag = "admin", security(("bearer" = [])), request_body = TestEmail,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key and body gets the first answer")),
    responses((status = 200, description = "{status, lead_id, lead}"), (status = 422, description = "{error, detail, field?}"), (status = 403)))]
async fn test_email(
    State(ctx): State<ApiContext>,
    user: Authed,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Manage)?;
    let store = store(&ctx)?;
    let request: TestEmail =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("malformed request body: {e}")))?;
    if request.raw.trim().is_empty() {
        return Err(ApiError::BadRequest("paste an email in `raw`".into()));
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
async fn test_emails(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<Vec<Value>>, ApiError> {
    user.require(Access::Manage)?;
    Ok(Json(store(&ctx)?.recent_test_emails(20).await?))
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

fn credential_error(err: CredentialError) -> ApiError {
    match err {
        CredentialError::Unknown { .. } | CredentialError::BadValue => {
            ApiError::Unprocessable(json!({ "error": err.to_string() }))
        }
        CredentialError::Bus(bus) => bus.into(),
        other => ApiError::Internal(Box::new(other)),
    }
}

/// Saved credentials, masked.
#[utoipa::path(get, path = "/api/admin/credentials", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = [CredentialView]), (status = 401), (status = 403)))]
async fn list_credentials(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<Vec<CredentialView>>, ApiError> {
    user.require(Access::Manage)?;
    ctx.credentials.list().await.map(Json).map_err(credential_error)
}

#[derive(Deserialize, ToSchema)]
pub struct SaveCredential {
    /// twilio, airtable, gmail or calendly.
    service: String,
    key: String,
    #[schema(value_type = String, format = Password)]
    value: SecretString,
}

/// Sets or replaces a credential; answers with it masked.
#[utoipa::path(post, path = "/api/admin/credentials", tag = "admin", security(("bearer" = [])), request_body = SaveCredential,
    responses((status = 200, body = CredentialView), (status = 422, description = "unknown credential or bad value"), (status = 403)))]
async fn save_credential(
    State(ctx): State<ApiContext>,
    user: Authed,
    AppJson(request): AppJson<SaveCredential>,
) -> Result<Json<CredentialView>, ApiError> {
    user.require(Access::Manage)?;
    let credentials = &ctx.credentials;
    credentials
        .set(&request.service, &request.key, &request.value, &user.username)
        .await
        .map_err(credential_error)?;
    let summary = format!("saved credential {}.{}", request.service, request.key);
    ctx.bus
        .record(&Activity::new("credential.saved", &user.username, summary))
        .await;
    let saved = credentials.list().await.map_err(credential_error)?;
    saved
        .into_iter()
        .find(|c| c.service == request.service && c.key == request.key)
        .map(Json)
        .ok_or_else(|| ApiError::Unavailable("the credential was saved but is not listed yet".into()))
}

/// Deletes a credential.
#[utoipa::path(delete, path = "/api/admin/credentials/{service}/{key}", tag = "admin", security(("bearer" = [])),
    params(("service" = String, Path), ("key" = String, Path)),
    responses((status = 200), (status = 404), (status = 403)))]
async fn delete_credential(
    State(ctx): State<ApiContext>,
    user: Authed,
    Path((service, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Manage)?;
    if !ctx.credentials.delete(&service, &key).await.map_err(credential_error)? {
        return Err(ApiError::NotFound);
    }
    let summary = format!("deleted credential {service}.{key}");
    ctx.bus
        .record(&Activity::new("credential.deleted", &user.username, summary))
        .await;
    Ok(Json(json!({ "status": "deleted" })))
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
    let token = crate::unbounce::rotate_token(ctx.config.bucket()).await?;
    ctx.bus
        .record(&Activity::new(
            "unbounce.url_rotated",
            &user.username,
            "a new Unbounce webhook URL was made; the previous one no longer works",
        ))
        .await;
    Ok(Json(
        json!({ "url": crate::unbounce::webhook_url(&ctx.settings.public_url, &token) }),
    ))
}

#[derive(Deserialize, serde::Serialize, ToSchema)]
pub struct ScriptAndRules {
    #[schema(value_type = Object)]
    script: Script,
    #[schema(value_type = Object)]
    rules: Rules,
}

/// The call script and the qualification rules in force.
#[utoipa::path(get, path = "/api/admin/script", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ScriptAndRules), (status = 401)))]
async fn script(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<ScriptAndRules>, ApiError> {
    user.require(Access::Read)?;
    Ok(Json(ScriptAndRules {
        script: ctx.config.script().await,
        rules: ctx.config.rules().await,
    }))
}

/// What makes a script unusable on a call, if anything.
fn script_problem(script: &Script) -> Option<String> {
    if script.questions.is_empty() || script.questions.len() > 20 {
        return Some("the script needs 1 to 20 questions".into());
    }
    let mut ids = std::collections::HashSet::new();
    for question in &script.questions {
        if question.id.trim().is_empty() || !ids.insert(question.id.as_str()) {
            return Some(format!("question ids must be present and unique (`{}`)", question.id));
        }
        if question.prompt.trim().is_empty() {
            return Some(format!("question `{}` has no prompt", question.id));
        }
        if let AnswerType::Choice { options } = &question.answer
            && options.is_empty()
        {
            return Some(format!("question `{}` offers no options", question.id));
        }
    }
    [
        &script.greeting,
        &script.closing,
        &script.voicemail,
        &script.reprompt,
        &script.opt_out,
    ]
    .iter()
    .any(|text| text.trim().is_empty())
    .then(|| "greeting, reprompt, voicemail, closing and opt_out must all be said".into())
}

/// Replaces the script and rules; calls placed from now on use them.
#[utoipa::path(put, path = "/api/admin/script", tag = "admin", security(("bearer" = [])), request_body = ScriptAndRules,
    responses((status = 200, body = ScriptAndRules), (status = 422, description = "an unusable script"), (status = 403)))]
async fn save_script(
    State(ctx): State<ApiContext>,
    user: Authed,
    AppJson(request): AppJson<ScriptAndRules>,
) -> Result<Json<ScriptAndRules>, ApiError> {
    user.require(Access::Manage)?;
    if let Some(problem) = script_problem(&request.script) {
        return Err(ApiError::Unprocessable(json!({ "error": problem })));
    }
    if request.rules.qualified_score > 100 {
        return Err(ApiError::Unprocessable(
            json!({ "error": "rules.qualified_score must be 0 to 100" }),
        ));
    }
    ctx.config
        .save(store(&ctx)?, &request.script, &request.rules, &user.username)
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    ctx.bus
        .record(&Activity::new(
            "script.saved",
            &user.username,
            "saved the call script and rules",
        ))
        .await;
    Ok(Json(request))
}

#[derive(Deserialize, ToSchema)]
pub struct TryAnswer {
    question: String,
    text: String,
    /// The day of the call, for relative dates; default today.
    #[schema(value_type = Option<String>, format = Date)]
    today: Option<String>,
}

/// How an answer to a question of the script in force is read: the same as `leadq script test`.
#[utoipa::path(post, path = "/api/admin/script/try", tag = "admin", security(("bearer" = [])), request_body = TryAnswer,
    responses((status = 200, description = "{question, raw, value, captured, read_as}"), (status = 404, description = "no such question")))]
async fn try_answer(
    State(ctx): State<ApiContext>,
    user: Authed,
    AppJson(request): AppJson<TryAnswer>,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Read)?;
    let script = ctx.config.script().await;
    let question = script
        .questions
        .iter()
        .find(|q| q.id == request.question)
        .ok_or_else(|| ApiError::BadRequest(format!("the script has no question `{}`", request.question)))?;
    let today = match request.today.as_deref() {
        Some(day) => day
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::BadRequest(format!("today: `{day}` is not a date such as 2026-11-24")))?,
        None => jiff::ZonedDateTime::now().date(),
    };
    let answer = crate::domain::answers::interpret(question, &request.text, today);
    let read_as = crate::domain::reading::in_words(&question.answer, &answer.value, answer.captured);
    let mut body = serde_json::to_value(answer).unwrap_or_default();
    body["read_as"] = Value::String(read_as);
    Ok(Json(body))
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
        let subscriber = ctx
            .bus
            .client
            .subscribe(name)
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
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
    test_emails,
    test_email,
    activity,
    list_credentials,
    save_credential,
    delete_credential,
    agent_command,
    unbounce_url,
    sandbox,
    script,
    save_script,
    try_answer,
    events
))]
pub struct AdminApi;
