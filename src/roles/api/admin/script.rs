//! The call script and qualification rules: read, checked, saved, and tried on a spoken answer.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::bus::Activity;
use crate::domain::experiment::Experiment;
use crate::domain::qualification::Rules;
use crate::domain::script::{AnswerType, Script};
use crate::roles::api::auth::Authed;
use crate::roles::api::{ApiContext, ApiError, AppJson, store};
use crate::security::users::Access;

#[derive(Deserialize, serde::Serialize, ToSchema)]
pub struct ScriptAndRules {
    #[schema(value_type = Object)]
    script: Script,
    #[schema(value_type = Object)]
    rules: Rules,
    /// The script of Spanish calls; left out of a save, it stays as it is.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    script_es: Option<Script>,
}

/// The call script and the qualification rules in force.
#[utoipa::path(get, path = "/api/admin/script", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ScriptAndRules), (status = 401)))]
pub(super) async fn script(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<ScriptAndRules>, ApiError> {
    user.require(Access::Read)?;
    Ok(Json(ScriptAndRules {
        script: ctx.config.script().await,
        rules: ctx.config.rules().await,
        script_es: Some(ctx.config.spanish_script().await),
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
pub(super) async fn save_script(
    State(ctx): State<ApiContext>,
    user: Authed,
    AppJson(request): AppJson<ScriptAndRules>,
) -> Result<Json<ScriptAndRules>, ApiError> {
    user.require(Access::Manage)?;
    if let Some(problem) = script_problem(&request.script) {
        return Err(ApiError::Unprocessable(json!({ "error": problem })));
    }
    if let Some(problem) = request.script_es.as_ref().and_then(script_problem) {
        return Err(ApiError::Unprocessable(
            json!({ "error": format!("script_es: {problem}") }),
        ));
    }
    if request.rules.qualified_score > 100 {
        return Err(ApiError::Unprocessable(
            json!({ "error": "rules.qualified_score must be 0 to 100" }),
        ));
    }
    ctx.config
        .save(store(&ctx)?, &request.script, &request.rules, &user.username)
        .await
        .map_err(ApiError::internal)?;
    if let Some(spanish) = &request.script_es {
        ctx.config
            .save_spanish_script(store(&ctx)?, spanish, &user.username)
            .await
            .map_err(ApiError::internal)?;
    }
    ctx.bus
        .record(&Activity::new(
            "script.saved",
            &user.username,
            "saved the call script and rules",
        ))
        .await;
    Ok(Json(request))
}

#[derive(Deserialize, serde::Serialize, ToSchema)]
pub struct ExperimentView {
    /// The share of leads (0 to 1) called with variant `b`.
    share_b: f64,
    /// The script variant `b` (as the script); null: no experiment.
    #[schema(value_type = Option<Object>)]
    variant_b: Option<Script>,
    /// The variants side by side with the two-proportion tests (read only).
    #[serde(default, skip_deserializing)]
    #[schema(value_type = Option<Object>)]
    results: Option<Value>,
}

/// The A/B test of the script: the share and variant `b`, and each variant's figures so far.
#[utoipa::path(get, path = "/api/admin/experiment", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ExperimentView), (status = 401)))]
pub(super) async fn experiment(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<ExperimentView>, ApiError> {
    user.require(Access::Read)?;
    let experiment = ctx.config.experiment().await;
    Ok(Json(ExperimentView {
        share_b: experiment.share_b,
        variant_b: experiment.variant_b,
        results: ctx.cmo.ab_test().await?,
    }))
}

/// Starts, changes or (with `variant_b` null) ends the A/B test; calls from now on follow it.
#[utoipa::path(put, path = "/api/admin/experiment", tag = "admin", security(("bearer" = [])), request_body = ExperimentView,
    responses((status = 200, body = ExperimentView), (status = 422, description = "an unusable variant or share"), (status = 403)))]
pub(super) async fn save_experiment(
    State(ctx): State<ApiContext>,
    user: Authed,
    AppJson(request): AppJson<ExperimentView>,
) -> Result<Json<ExperimentView>, ApiError> {
    user.require(Access::Manage)?;
    if !(0.0..=1.0).contains(&request.share_b) {
        return Err(ApiError::Unprocessable(json!({ "error": "share_b must be 0 to 1" })));
    }
    if let Some(problem) = request.variant_b.as_ref().and_then(script_problem) {
        return Err(ApiError::Unprocessable(
            json!({ "error": format!("variant_b: {problem}") }),
        ));
    }
    let experiment = Experiment {
        variant_b: request.variant_b,
        share_b: request.share_b,
    };
    ctx.config
        .save_experiment(store(&ctx)?, &experiment, &user.username)
        .await
        .map_err(ApiError::internal)?;
    let summary = if experiment.running() {
        format!(
            "started an A/B test: {:.0}% of leads get script b",
            experiment.share_b * 100.0
        )
    } else {
        "ended the A/B test: every call uses the script".to_owned()
    };
    ctx.bus
        .record(&Activity::new("experiment.saved", &user.username, summary))
        .await;
    Ok(Json(ExperimentView {
        share_b: experiment.share_b,
        variant_b: experiment.variant_b,
        results: ctx.cmo.ab_test().await?,
    }))
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
pub(super) async fn try_answer(
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
        .ok_or_else(|| ApiError::bad_request(format!("the script has no question `{}`", request.question)))?;
    let today = match request.today.as_deref() {
        Some(day) => day
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::bad_request(format!("today: `{day}` is not a date such as 2026-11-24")))?,
        None => jiff::ZonedDateTime::now().date(),
    };
    let answer = crate::domain::answers::interpret(question, &request.text, today);
    let read_as = crate::domain::reading::in_words(&question.answer, &answer.value, answer.captured);
    let mut body = serde_json::to_value(answer).unwrap_or_default();
    body["read_as"] = Value::String(read_as);
    Ok(Json(body))
}
