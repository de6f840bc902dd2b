//! An Airtable stand-in: `PATCH /v0/{baseId}/{table}` with `performUpsert` (create, update, and the
//! error when several records match), `GET` to list records, Bearer auth, at most 10 records a
//! request (422 beyond) and 5 requests a second per base (429 with Airtable's error body), plus an
//! outage switch for tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::patch;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub fields: Map<String, Value>,
}

#[derive(Default)]
struct Shared {
    /// Records per `base/table`.
    tables: HashMap<String, Vec<Record>>,
    /// Request times per base, for the 5-per-second limit.
    requests: HashMap<String, Vec<Instant>>,
    /// Accepted requests, for tests that check the pace.
    accepted: Vec<Instant>,
    rate_limited: usize,
    down: bool,
}

#[derive(Clone)]
struct StandIn {
    token: String,
    shared: Arc<Mutex<Shared>>,
}

pub struct AirtableStandIn {
    addr: SocketAddr,
    state: StandIn,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AirtableStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const MAX_RECORDS: usize = 10;
const PER_SECOND: usize = 5;

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "type": kind, "message": message } }))).into_response()
}

impl AirtableStandIn {
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let state = StandIn {
            token: token.into(),
            shared: Arc::default(),
        };
        let app = Router::new()
            .route("/v0/{base}/{table}", patch(upsert).get(list))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "airtable stand-in stopped");
            }
        });
        Ok(Self { addr, state, server })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.lock()
    }

    pub fn records(&self, base: &str, table: &str) -> Vec<Record> {
        self.lock()
            .tables
            .get(&format!("{base}/{table}"))
            .cloned()
            .unwrap_or_default()
    }

    /// While down, every request gets a 503.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The most requests accepted within any one second so far.
    pub fn peak_requests_per_second(&self) -> usize {
        let accepted = self.lock().accepted.clone();
        accepted
            .iter()
            .map(|start| {
                accepted
                    .iter()
                    .filter(|t| **t >= *start && **t < *start + Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn rate_limited(&self) -> usize {
        self.lock().rate_limited
    }
}

impl StandIn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {}", self.token))
    }

    /// Counts the request against the base's limit; false when it is over.
    fn within_rate(&self, base: &str) -> bool {
        let mut shared = self.lock();
        let now = Instant::now();
        let recent = shared.requests.entry(base.to_owned()).or_default();
        recent.retain(|t| now.duration_since(*t) < Duration::from_secs(1));
        if recent.len() >= PER_SECOND {
            shared.rate_limited += 1;
            return false;
        }
        recent.push(now);
        shared.accepted.push(now);
        true
    }
}

async fn list(
    State(standin): State<StandIn>,
    Path((base, table)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !standin.authorized(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_REQUIRED",
            "Authentication required",
        );
    }
    let records: Vec<Value> = standin
        .lock()
        .tables
        .get(&format!("{base}/{table}"))
        .map(|rs| rs.iter().map(|r| json!({ "id": r.id, "fields": r.fields })).collect())
        .unwrap_or_default();
    Json(json!({ "records": records })).into_response()
}

async fn upsert(
    State(standin): State<StandIn>,
    Path((base, table)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !standin.authorized(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_REQUIRED",
            "Authentication required",
        );
    }
    if standin.lock().down {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "Service Unavailable",
        );
    }
    if !standin.within_rate(&base) {
        let body = json!({ "errors": [{ "error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later" }] });
        return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST_UNKNOWN",
            "Invalid request: parameter validation failed",
        );
    };
    let Some(records) = request["records"].as_array() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST_MISSING_FIELDS",
            "Could not find field \"records\"",
        );
    };
    if records.len() > MAX_RECORDS {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_RECORDS",
            &format!(
                "You can update up to {MAX_RECORDS} records per request, got {}",
                records.len()
            ),
        );
    }
    let merge_on: Vec<String> = request["performUpsert"]["fieldsToMergeOn"]
        .as_array()
        .map(|fields| fields.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if merge_on.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST_UNKNOWN",
            "performUpsert.fieldsToMergeOn is required",
        );
    }
    let mut shared = standin.lock();
    let rows = shared.tables.entry(format!("{base}/{table}")).or_default();
    let (mut created, mut updated, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for record in records {
        let Some(fields) = record["fields"].as_object() else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_RECORDS",
                "a record has no fields",
            );
        };
        let key: Vec<&Value> = merge_on.iter().map(|f| fields.get(f).unwrap_or(&Value::Null)).collect();
        let matching: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| {
                merge_on
                    .iter()
                    .zip(&key)
                    .all(|(f, v)| row.fields.get(f).unwrap_or(&Value::Null) == *v)
            })
            .map(|(i, _)| i)
            .collect();
        match matching.as_slice() {
            [] => {
                let id = format!("rec{:014x}", rand::random::<u64>() >> 8);
                rows.push(Record {
                    id: id.clone(),
                    fields: fields.clone(),
                });
                created.push(id.clone());
                out.push(json!({ "id": id, "fields": fields }));
            }
            [one] => {
                let row = &mut rows[*one];
                row.fields.extend(fields.clone());
                updated.push(row.id.clone());
                out.push(json!({ "id": row.id, "fields": row.fields }));
            }
            _ => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "INVALID_VALUE_FOR_COLUMN",
                    "Cannot upsert: more than one record matches the fields to merge on",
                );
            }
        }
    }
    Json(json!({ "records": out, "createdRecords": created, "updatedRecords": updated })).into_response()
}
