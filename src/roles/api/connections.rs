//! "Test connection" on the Credentials page: each outside service is asked one harmless question
//! with the credentials in force now (saved, configured, or the sandbox's), and the page shows what
//! it answered. For Airtable the answer includes the table's schema against the columns leadq
//! writes, and the missing ones can be created from the page.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ApiContext;
use super::auth::Authed;
use super::{ApiError, settings_now};
use crate::bus::Activity;
use crate::clients::airtable::schema::{self, SchemaCheck};
use crate::clients::airtable::{AirtableClient, AirtableError};
use crate::clients::sandbox::Mode;
use crate::clients::twilio::TwilioClient;
use crate::config::Settings;
use crate::security::users::Access;

pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/api/admin/connections/{service}/test", post(test_connection))
        .route("/api/admin/connections/airtable/columns", post(create_columns))
}

/// Whether a service is live or the sandbox, for the answer.
fn mode(ctx: &ApiContext, live_when_no_sandbox: bool, pick: fn((Mode, Mode)) -> Mode) -> &'static str {
    match &ctx.sandbox {
        Some(sandbox) if pick(sandbox.modes()) == Mode::Sandboxed => "sandboxed",
        Some(_) => "live",
        None if live_when_no_sandbox => "live",
        None => "not_configured",
    }
}

/// What a service answered: `ok`, one readable sentence, and details where there are any.
fn answer(service: &str, mode: &str, ok: bool, said: String, detail: Value) -> Json<Value> {
    tracing::info!(service, mode, ok, answer = %said, "connection test");
    Json(json!({ "service": service, "mode": mode, "ok": ok, "answer": said, "detail": detail }))
}

/// Asks `twilio`, `airtable` or `imap` (also `gmail`) one question with the credentials in force.
#[utoipa::path(post, path = "/api/admin/connections/{service}/test", tag = "admin", security(("bearer" = [])),
    params(("service" = String, Path, description = "twilio, airtable or imap")),
    responses((status = 200, description = "{service, mode, ok, answer, detail}: what the service answered (ok false when it refused)"),
        (status = 404, description = "no such service"), (status = 403)))]
async fn test_connection(
    State(ctx): State<ApiContext>,
    user: Authed,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    user.require(Access::Manage)?;
    let settings = settings_now(&ctx).await?;
    match service.as_str() {
        "twilio" => Ok(test_twilio(&ctx, &settings).await),
        "airtable" => Ok(test_airtable(&ctx, &settings).await),
        "imap" | "gmail" => Ok(test_inbox(&settings).await),
        _ => Err(ApiError::NotFound),
    }
}

async fn test_twilio(ctx: &ApiContext, settings: &Settings) -> Json<Value> {
    let twilio = &settings.twilio;
    let mode = mode(ctx, twilio.account_sid.is_some(), |m| m.0);
    let client = match TwilioClient::new(twilio) {
        Ok(client) => client,
        Err(err) => return answer("twilio", mode, false, format!("not configured: {err}"), Value::Null),
    };
    match client.account().await {
        Ok(account) if account.status == "active" => answer(
            "twilio",
            mode,
            true,
            format!(
                "account \"{}\" is active; calls and texts come from {}",
                account.friendly_name,
                twilio.from_number.as_deref().unwrap_or("?")
            ),
            json!({ "account_sid": account.sid, "status": account.status }),
        ),
        Ok(account) => answer(
            "twilio",
            mode,
            false,
            format!("the account is {}: Twilio will not place calls", account.status),
            json!({ "account_sid": account.sid, "status": account.status }),
        ),
        Err(err) => answer("twilio", mode, false, err.to_string(), Value::Null),
    }
}

fn airtable_client(settings: &Settings) -> Result<AirtableClient, AirtableError> {
    let airtable = &settings.airtable;
    AirtableClient::new(
        &airtable.api_base,
        airtable.token.as_ref(),
        airtable.base_id.as_deref(),
        &airtable.table,
        airtable.fields.get("lead_id").map_or("Lead ID", String::as_str),
    )
}

/// Airtable's refusal of a schema request, said so a person knows what to change.
fn schema_refusal(err: &AirtableError) -> String {
    match err {
        AirtableError::Rejected { status: 401, .. } => {
            "Airtable refused the token (401): check it on the Credentials page".into()
        }
        AirtableError::Rejected { status: 403 | 404, .. } => {
            "Airtable answered 403: the base id is wrong, or the token lacks the \
             schema.bases:read / schema.bases:write scopes or access to this base"
                .into()
        }
        other => other.to_string(),
    }
}

async fn schema_check(settings: &Settings) -> Result<SchemaCheck, AirtableError> {
    let client = airtable_client(settings)?;
    let tables = client.tables().await?;
    Ok(schema::check(
        &tables,
        &settings.airtable.table,
        &settings.airtable.fields,
    ))
}

async fn test_airtable(ctx: &ApiContext, settings: &Settings) -> Json<Value> {
    let airtable = &settings.airtable;
    let mode = mode(ctx, airtable.token.is_some(), |m| m.1);
    match schema_check(settings).await {
        Ok(check) => answer(
            "airtable",
            mode,
            check.ready(),
            check.summary(),
            serde_json::to_value(&check).unwrap_or_default(),
        ),
        Err(err) => answer("airtable", mode, false, schema_refusal(&err), Value::Null),
    }
}

async fn test_inbox(settings: &Settings) -> Json<Value> {
    let Some(imap) = &settings.imap else {
        return answer(
            "imap",
            "not_configured",
            false,
            "no inbox configured: set LEADQ_IMAP__HOST, or save gmail.username and gmail.password".into(),
            Value::Null,
        );
    };
    match crate::clients::imap::check_inbox(imap).await {
        Ok(emails) => answer(
            "imap",
            "live",
            true,
            format!(
                "signed in to {} as {}; {} holds {emails} emails",
                imap.host, imap.username, imap.mailbox
            ),
            json!({ "emails": emails }),
        ),
        Err(err) => answer("imap", "live", false, err.to_string(), Value::Null),
    }
}

/// Creates what the Airtable check found missing: the table with every column, or the missing
/// columns. A column of the wrong type is left for a person to change (it may hold data).
#[utoipa::path(post, path = "/api/admin/connections/airtable/columns", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "{created: [column], check}: what was made, and the table checked again"),
        (status = 503, description = "Airtable refused or could not be reached: {error}"), (status = 403)))]
async fn create_columns(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<Value>, ApiError> {
    user.require(Access::Manage)?;
    let settings = settings_now(&ctx).await?;
    let unavailable = |err: AirtableError| ApiError::unavailable(schema_refusal(&err));
    let client = airtable_client(&settings).map_err(unavailable)?;
    let check = schema_check(&settings).await.map_err(unavailable)?;
    let mut created = Vec::new();
    match &check.table_id {
        None => {
            client
                .create_table(&check.table, &check.missing)
                .await
                .map_err(unavailable)?;
            created.extend(
                check
                    .missing
                    .iter()
                    .filter_map(|m| m["name"].as_str().map(str::to_owned)),
            );
        }
        Some(table_id) => {
            for spec in &check.missing {
                client.create_field(table_id, spec).await.map_err(unavailable)?;
                created.extend(spec["name"].as_str().map(str::to_owned));
            }
        }
    }
    ctx.bus
        .record(&Activity::new(
            "crm.columns_created",
            &user.username,
            format!("created {} Airtable columns in \"{}\"", created.len(), check.table),
        ))
        .await;
    let after = schema_check(&settings).await.map_err(unavailable)?;
    Ok(Json(
        json!({ "created": created, "check": after, "answer": after.summary() }),
    ))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(test_connection, create_columns))]
pub struct ConnectionsApi;
