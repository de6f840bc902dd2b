//! Airtable's REST API: upsert records on the lead id (`PATCH /v0/{baseId}/{table}` with
//! `performUpsert`), at most 10 records a request and 5 requests a second per base, as Airtable
//! requires. The base URL is a setting, so tests point this same client at the stand-in.

pub mod schema;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

/// Airtable refuses more records than this in one request.
pub const MAX_RECORDS_PER_REQUEST: usize = 10;
/// Airtable allows 5 requests a second per base, and refuses everything for 30 seconds beyond it.
/// Requests leave at most every 220 ms (about 4.5 a second): the margin keeps network jitter from
/// ever bunching six into one of Airtable's seconds.
const REQUEST_SPACING: Duration = Duration::from_millis(220);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One column as Airtable's Meta API describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSchema {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// One table as `GET /v0/meta/bases/{baseId}/tables` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    pub id: String,
    pub name: String,
    pub fields: Vec<FieldSchema>,
}

#[derive(Debug, thiserror::Error)]
pub enum AirtableError {
    #[error("Airtable is not configured: {0}")]
    NotConfigured(&'static str),
    /// 429: Airtable asks for 30 seconds of quiet before the next request.
    #[error("Airtable rate limit reached")]
    RateLimited,
    /// 5xx, a timeout, or no connection: worth another try.
    #[error("Airtable unavailable: {0}")]
    Transient(String),
    /// 4xx: these records will never be accepted as they are.
    #[error("Airtable refused the records ({status}): {message}")]
    Rejected { status: u16, message: String },
}

#[derive(Debug, Deserialize)]
struct UpsertAnswer {
    records: Vec<RecordId>,
}

#[derive(Debug, Deserialize)]
struct RecordId {
    id: String,
}

/// One base's table, with the rate limit shared by every clone.
#[derive(Clone)]
pub struct AirtableClient {
    http: reqwest::Client,
    url: String,
    /// The base's schema: `{api}/v0/meta/bases/{baseId}`.
    meta: String,
    token: SecretString,
    merge_on: String,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for AirtableClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirtableClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl AirtableClient {
    pub fn new(
        api_base: &Url,
        token: Option<&SecretString>,
        base_id: Option<&str>,
        table: &str,
        merge_on: &str,
    ) -> Result<Self, AirtableError> {
        let token = token
            .cloned()
            .ok_or(AirtableError::NotConfigured("LEADQ_AIRTABLE__TOKEN"))?;
        let base_id = base_id.ok_or(AirtableError::NotConfigured("LEADQ_AIRTABLE__BASE_ID"))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| AirtableError::Transient(e.to_string()))?;

        let api = api_base.as_str().trim_end_matches('/');
        let url = format!("{api}/v0/{base_id}/{}", urlencode(table));
        Ok(Self {
            http,
            url,
            meta: format!("{api}/v0/meta/bases/{base_id}"),
            token,
            merge_on: merge_on.to_owned(),
            limiter: Arc::new(RateLimiter::direct(
                Quota::with_period(REQUEST_SPACING)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::MIN),
            )),
        })
    }

    /// Creates or updates up to 10 records, matched on the merge field; returns their record ids.
    pub async fn upsert(&self, records: &[Map<String, Value>]) -> Result<Vec<String>, AirtableError> {
        if records.len() > MAX_RECORDS_PER_REQUEST {
            return Err(AirtableError::Rejected {
                status: 422,
                message: format!(
                    "{} records in one request; Airtable takes {MAX_RECORDS_PER_REQUEST}",
                    records.len()
                ),
            });
        }
        let body = json!({
            "performUpsert": { "fieldsToMergeOn": [self.merge_on] },
            "typecast": true,
            "records": records.iter().map(|fields| json!({ "fields": fields })).collect::<Vec<_>>(),
        });
        let answer: UpsertAnswer = self.send(self.http.patch(&self.url).json(&body)).await?;
        Ok(answer.records.into_iter().map(|r| r.id).collect())
    }

    /// `GET /v0/meta/bases/{baseId}/tables`: the base's tables and their columns (the token needs
    /// the `schema.bases:read` scope).
    pub async fn tables(&self) -> Result<Vec<TableSchema>, AirtableError> {
        #[derive(Deserialize)]
        struct Tables {
            tables: Vec<TableSchema>,
        }
        let request = self.http.get(format!("{}/tables", self.meta));
        Ok(self.send::<Tables>(request).await?.tables)
    }

    /// `POST /v0/meta/bases/{baseId}/tables/{tableId}/fields`: one column, as
    /// the CRM schema's column spec describes it (`schema.bases:write`).
    pub async fn create_field(&self, table_id: &str, spec: &Value) -> Result<FieldSchema, AirtableError> {
        let request = self
            .http
            .post(format!("{}/tables/{}/fields", self.meta, urlencode(table_id)))
            .json(spec);
        self.send(request).await
    }

    /// `POST /v0/meta/bases/{baseId}/tables`: a new table with these columns (the first is its
    /// primary field).
    pub async fn create_table(&self, name: &str, fields: &[Value]) -> Result<TableSchema, AirtableError> {
        let body = json!({ "name": name, "description": "Leads qualified by leadq", "fields": fields });
        let request = self.http.post(format!("{}/tables", self.meta)).json(&body);
        self.send(request).await
    }

    async fn send<T: for<'de> Deserialize<'de>>(&self, request: reqwest::RequestBuilder) -> Result<T, AirtableError> {
        self.limiter.until_ready().await;
        let response = request
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| AirtableError::Transient(e.to_string()))?;
        read(response).await
    }
}

/// A 2xx answer's body, or the error its status means.
async fn read<T: for<'de> Deserialize<'de>>(response: reqwest::Response) -> Result<T, AirtableError> {
    let status = response.status().as_u16();
    if response.status().is_success() {
        return response
            .json()
            .await
            .map_err(|e| AirtableError::Transient(format!("unreadable answer: {e}")));
    }
    let message = response.text().await.unwrap_or_default();
    match status {
        429 => Err(AirtableError::RateLimited),
        s if s >= 500 => Err(AirtableError::Transient(format!("{s}: {message}"))),
        _ => Err(AirtableError::Rejected { status, message }),
    }
}

fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
