//! The warm transfer's roster: who a qualified lead can be put through to, and when.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::bus::Activity;
use crate::domain::roster::{Rep, Roster};
use crate::roles::api::auth::Authed;
use crate::roles::api::{ApiContext, ApiError, AppJson, store};
use crate::security::users::Access;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RosterView {
    /// `{reps: [{name, phone, days, hours}], time_zone, ring_secs}`.
    #[schema(value_type = Object)]
    roster: Roster,
    /// The rep a qualified lead would be offered right now, if any.
    #[schema(value_type = Option<Object>)]
    on_duty: Option<Rep>,
}

fn view(ctx: &ApiContext, roster: Roster) -> RosterView {
    let on_duty = roster
        .on_duty(jiff::Timestamp::now(), &ctx.settings.calling_hours.fallback)
        .cloned();
    RosterView { roster, on_duty }
}

/// The roster in force and who is on duty now.
#[utoipa::path(get, path = "/api/admin/roster", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = RosterView), (status = 401)))]
pub(super) async fn roster(State(ctx): State<ApiContext>, user: Authed) -> Result<Json<RosterView>, ApiError> {
    user.require(Access::Read)?;
    let roster = ctx.config.roster().await;
    Ok(Json(view(&ctx, roster)))
}

/// Replaces the roster (numbers read into E.164); calls from now on offer its reps.
#[utoipa::path(put, path = "/api/admin/roster", tag = "admin", security(("bearer" = [])),
    request_body(content = Object, description = "{reps: [{name, phone, days, hours}], time_zone, ring_secs}"),
    responses((status = 200, body = RosterView), (status = 422, description = "a rep, zone or ring time that cannot be used"), (status = 403)))]
pub(super) async fn save_roster(
    State(ctx): State<ApiContext>,
    user: Authed,
    AppJson(roster): AppJson<Roster>,
) -> Result<Json<RosterView>, ApiError> {
    user.require(Access::Manage)?;
    if roster.reps.len() > 50 {
        return Err(ApiError::Unprocessable(json!({ "error": "at most 50 reps" })));
    }
    let roster = roster
        .checked()
        .map_err(|e| ApiError::Unprocessable(json!({ "error": e.to_string() })))?;
    ctx.config
        .save_roster(store(&ctx)?, &roster, &user.username)
        .await
        .map_err(ApiError::internal)?;
    ctx.bus
        .record(&Activity::new(
            "roster.saved",
            &user.username,
            format!("saved the transfer roster ({} reps)", roster.reps.len()),
        ))
        .await;
    Ok(Json(view(&ctx, roster)))
}
