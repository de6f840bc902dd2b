//! An Airtable stand-in: `PATCH /v0/{baseId}/{table}` with `performUpsert` (create, update, and the
//! error when several records match), `GET` to list records, Bearer auth, at most 10 records a
//! request (422 beyond) and 5 requests a second per base (429 with Airtable's error body), plus an
//! outage switch for tests. The Meta API too: `GET /v0/meta/bases/{baseId}/tables`, and `POST` of a
//! table or of a field (`.../tables/{tableId}/fields`); a table made that way (or with
//! [`AirtableStandIn::define_table`]) refuses records naming a column it does not have, as
//! Airtable does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
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
    /// The share of upserts answered 429 at random, beside the real 5-a-second limit.
    refusal_rate: f64,
    /// Table schemas per base, for the Meta API; a table without one takes any column.
    schemas: HashMap<String, Vec<Table>>,
}

/// A table's schema: its id, name and fields (`{id, name, type, options?}`).
#[derive(Debug, Clone)]
struct Table {
    id: String,
    name: String,
    fields: Vec<Value>,
}

impl Table {
    fn json(&self) -> Value {
        let primary = self.fields.first().map(|f| f["id"].clone()).unwrap_or(Value::Null);
        json!({ "id": self.id, "name": self.name, "primaryFieldId": primary, "fields": self.fields, "views": [] })
    }

    fn has_column(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f["name"] == name)
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{:014x}", rand::random::<u64>() >> 8)
}

/// The field types Airtable takes in a create request, and the options each must have.
fn field_problem(spec: &Value) -> Option<String> {
    let kind = spec["type"].as_str().unwrap_or_default();
    let options = &spec["options"];
    let needs: &[&str] = match kind {
        "singleLineText" | "multilineText" | "email" | "phoneNumber" | "url" | "richText" => &[],
        "number" | "percent" => &["precision"],
        "currency" => &["precision", "symbol"],
        "dateTime" => &["dateFormat", "timeFormat", "timeZone"],
        "date" => &["dateFormat"],
        "checkbox" => &["icon", "color"],
        "singleSelect" | "multipleSelects" => &["choices"],
        "" => return Some("field type is missing".into()),
        other => return Some(format!("Unsupported field type for create: {other}")),
    };
    needs
        .iter()
        .find(|option| options.get(**option).is_none())
        .map(|option| format!("Field type {kind} needs options.{option}"))
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
            .route("/v0/meta/bases/{base}/tables", get(list_tables).post(create_table))
            .route("/v0/meta/bases/{base}/tables/{table}/fields", post(create_field))
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

    /// From now on, this share of upserts is answered 429 whatever the pace.
    pub fn set_refusal_rate(&self, rate: f64) {
        self.lock().refusal_rate = rate;
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

    /// Gives `base` a table named `name` with these columns (`(name, type)`), as if made in
    /// Airtable's own page; records naming other columns are then refused.
    pub fn define_table(&self, base: &str, name: &str, columns: &[(&str, &str)]) {
        let fields = columns
            .iter()
            .map(|(column, kind)| json!({ "id": new_id("fld"), "name": column, "type": kind }))
            .collect();
        self.lock().schemas.entry(base.to_owned()).or_default().push(Table {
            id: new_id("tbl"),
            name: name.to_owned(),
            fields,
        });
    }

    /// The column names and types of a table, when it has a schema.
    pub fn columns(&self, base: &str, table: &str) -> Option<Vec<(String, String)>> {
        let shared = self.lock();
        let found = shared
            .schemas
            .get(base)?
            .iter()
            .find(|t| t.name == table || t.id == table)?;
        Some(
            found
                .fields
                .iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or_default().to_owned(),
                        f["type"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        )
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
    let refused = rand::random::<f64>() < standin.lock().refusal_rate;
    if refused || !standin.within_rate(&base) {
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
    let schema = shared
        .schemas
        .get(&base)
        .and_then(|tables| tables.iter().find(|t| t.name == table || t.id == table))
        .cloned();
    if let Some(schema) = schema {
        let unknown = records
            .iter()
            .filter_map(|r| r["fields"].as_object())
            .flat_map(|fields| fields.keys())
            .find(|column| !schema.has_column(column));
        if let Some(column) = unknown {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNKNOWN_FIELD_NAME",
                &format!("Unknown field name: \"{column}\""),
            );
        }
    }
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
                let id = new_id("rec");
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

/// Airtable's answer to a token it does not know, or to a base it cannot see.
fn refused(standin: &StandIn, headers: &HeaderMap) -> Option<Response> {
    if !standin.authorized(headers) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_REQUIRED",
            "Authentication required",
        ));
    }
    standin.lock().down.then(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "Service Unavailable",
        )
    })
}

fn no_base() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
        "Invalid permissions, or the requested model was not found. Check that both your user and your token have the required permissions, and that the model names and/or ids are correct.",
    )
}

async fn list_tables(State(standin): State<StandIn>, Path(base): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&standin, &headers) {
        return refusal;
    }
    match standin.lock().schemas.get(&base) {
        Some(tables) => Json(json!({ "tables": tables.iter().map(Table::json).collect::<Vec<_>>() })).into_response(),
        None => no_base(),
    }
}

async fn create_table(
    State(standin): State<StandIn>,
    Path(base): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = refused(&standin, &headers) {
        return refusal;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST_UNKNOWN",
            "Invalid request: parameter validation failed",
        );
    };
    let Some(name) = request["name"].as_str().filter(|n| !n.trim().is_empty()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST_MISSING_FIELDS",
            "Could not find field \"name\"",
        );
    };
    let Some(specs) = request["fields"].as_array().filter(|f| !f.is_empty()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST_MISSING_FIELDS",
            "A table needs at least one field",
        );
    };
    if let Some(problem) = specs.iter().find_map(field_problem) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE",
            &problem,
        );
    }
    let mut shared = standin.lock();
    let tables = shared.schemas.entry(base).or_default();
    if tables.iter().any(|t| t.name == name) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "DUPLICATE_TABLE_NAME",
            &format!("A table named \"{name}\" already exists"),
        );
    }
    let fields = specs
        .iter()
        .map(|spec| {
            let mut field = spec.clone();
            field["id"] = json!(new_id("fld"));
            field
        })
        .collect();
    let table = Table {
        id: new_id("tbl"),
        name: name.to_owned(),
        fields,
    };
    let answer = table.json();
    tables.push(table);
    Json(answer).into_response()
}

async fn create_field(
    State(standin): State<StandIn>,
    Path((base, table)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = refused(&standin, &headers) {
        return refusal;
    }
    let Ok(mut spec) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST_UNKNOWN",
            "Invalid request: parameter validation failed",
        );
    };
    if let Some(problem) = field_problem(&spec) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE",
            &problem,
        );
    }
    let mut shared = standin.lock();
    let Some(tables) = shared.schemas.get_mut(&base) else {
        return no_base();
    };
    let Some(found) = tables.iter_mut().find(|t| t.id == table || t.name == table) else {
        return error(
            StatusCode::NOT_FOUND,
            "TABLE_NOT_FOUND",
            &format!("Could not find table {table} in this base"),
        );
    };
    let name = spec["name"].as_str().unwrap_or_default().trim().to_owned();
    if name.is_empty() || found.has_column(&name) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "DUPLICATE_OR_EMPTY_FIELD_NAME",
            &format!("Field name \"{name}\" is empty or already used in this table"),
        );
    }
    spec["id"] = json!(new_id("fld"));
    found.fields.push(spec.clone());
    Json(spec).into_response()
}
