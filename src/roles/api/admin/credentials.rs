//! Credentials saved from the page (Twilio, Airtable, Gmail...): sealed at rest, listed without
//! their values, each change in the activity log.

use axum::Json;
use axum::extract::{Path, State};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::bus::Activity;
use crate::roles::api::auth::Authed;
use crate::roles::api::{ApiContext, ApiError, AppJson};
use crate::security::credentials::{CredentialError, CredentialView};
use crate::security::users::Access;

fn credential_error(err: CredentialError) -> ApiError {
    match err {
        CredentialError::Unknown { .. } | CredentialError::BadValue => {
            ApiError::Unprocessable(json!({ "error": err.to_string() }))
        }
        CredentialError::Bus(bus) => bus.into(),
        other => ApiError::internal(other),
    }
}

/// Saved credentials, masked.
#[utoipa::path(get, path = "/api/admin/credentials", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = [CredentialView]), (status = 401), (status = 403)))]
pub(super) async fn list_credentials(
    State(ctx): State<ApiContext>,
    user: Authed,
) -> Result<Json<Vec<CredentialView>>, ApiError> {
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
pub(super) async fn save_credential(
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
        .ok_or_else(|| ApiError::unavailable("the credential was saved but is not listed yet".into()))
}

/// Deletes a credential.
#[utoipa::path(delete, path = "/api/admin/credentials/{service}/{key}", tag = "admin", security(("bearer" = [])),
    params(("service" = String, Path), ("key" = String, Path)),
    responses((status = 200), (status = 404), (status = 403)))]
pub(super) async fn delete_credential(
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
