//! The system of record: SurrealDB through the `any` engine, so one type serves the embedded file
//! store (`surrealkv://`), tests (`mem://`) and a SurrealDB server (`ws://`). The schema in
//! `schema.surql` is applied when the store is opened; every query binds its parameters and has a
//! deadline (`connection.rs`: a connection that stops answering is replaced).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use surrealdb::types::RecordId;

mod connection;

use connection::Connection;

use crate::bus::Activity;
use crate::config::{DbLocation, Settings};

const SCHEMA: &str = include_str!("schema.surql");
const NAMESPACE: &str = "leadq";
const DATABASE: &str = "leadq";

/// A lead's resubmissions, from the activity log (`$lead_id`): one list whichever of the
/// finalizer and the activity writer comes first.
const RESUBMISSIONS: &str =
    "(SELECT VALUE detail FROM activity WHERE kind = 'lead.resubmitted' AND lead_id = $lead_id)";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {endpoint} (LEADQ_DB): {source}")]
    Open { endpoint: String, source: surrealdb::Error },
    #[error("store query failed: {0}")]
    Query(#[from] surrealdb::Error),
    #[error("the store did not answer within {0:?}; reconnecting")]
    Unanswered(Duration),
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

/// A handle on the store; clones share one connection.
#[derive(Clone, Debug)]
pub struct Store {
    conn: Connection,
    /// The last figures per period start, reused for a moment: status is asked often and cheaply.
    figures_cache: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Figures)>>>,
}

/// How long computed figures are reused; a CMO agent polling status sees them at most this old.
const FIGURES_FRESH_FOR: Duration = Duration::from_secs(1);

/// A finished lead as the finalizer records it.
#[derive(Debug, Clone)]
pub struct FinalizedLead {
    pub lead: crate::bus::LeadReceived,
    pub call: crate::bus::CallCompleted,
    pub answers: Vec<crate::domain::answers::Interpretation>,
    pub score: u8,
    pub verdict: String,
    pub reasons: Vec<String>,
    pub placed_at: Option<time::OffsetDateTime>,
    pub finalized_at: time::OffsetDateTime,
    /// From Twilio's `answered` event to the first TwiML served: the silence a person heard.
    pub answered_to_first_words_ms: Option<i64>,
}

/// A reporting period, counted in the business's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Today,
    Week,
    Month,
}

impl Period {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "today" => Some(Self::Today),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Today => "today",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The start of the period that contains `now` (weeks start on Monday).
    pub fn start(self, now: time::OffsetDateTime, zone: &jiff::tz::TimeZone) -> time::OffsetDateTime {
        let Ok(instant) = jiff::Timestamp::from_second(now.unix_timestamp()) else {
            return now;
        };
        let today = instant.to_zoned_datetime(zone.clone()).date();
        let first = match self {
            Self::Today => today,
            Self::Week => today
                .checked_sub(jiff::ToSpan::days(i64::from(today.weekday().to_monday_zero_offset())))
                .unwrap_or(today),
            Self::Month => today.first_of_month(),
        };
        first
            .to_zoned_datetime(zone.clone())
            .ok()
            .and_then(|start| time::OffsetDateTime::from_unix_timestamp(start.timestamp().as_second()).ok())
            .unwrap_or(now)
    }
}

/// What the CMO agent is told about a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub total_leads: u64,
    pub qualified_leads: u64,
    pub calls_made: u64,
    pub sms_sent: u64,
    /// Mean seconds from the lead's submission to the call placed; None before any call.
    pub average_speed_to_lead: Option<f64>,
    pub last_activity: Option<String>,
}

impl Figures {
    /// Qualified leads as a percentage of all leads, one decimal.
    pub fn conversion_rate(&self) -> f64 {
        if self.total_leads == 0 {
            return 0.0;
        }
        (self.qualified_leads as f64 * 1000.0 / self.total_leads as f64).round() / 10.0
    }
}

/// Which activity entries to show.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct ActivityFilter {
    pub kind: Option<String>,
    pub actor: Option<String>,
    #[serde(default = "default_page_size")]
    pub limit: u32,
    #[serde(default)]
    pub offset: u32,
}

fn default_page_size() -> u32 {
    50
}

/// A page of results and how many there are in all.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
}

/// The columns of an [`ActivityRow`], as a query selects them.
const ACTIVITY_COLUMNS: &str = "record::id(id) AS id, kind, actor, summary, lead_id, detail, <string>at AS at";

/// Rows of an activity query; a row that does not read as one is left out.
fn activity_rows(rows: Vec<serde_json::Value>) -> Vec<ActivityRow> {
    rows.into_iter()
        .filter_map(|row| serde_json::from_value(row).ok())
        .collect()
}

/// An activity log row as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRow {
    pub id: String,
    pub kind: String,
    pub actor: String,
    pub summary: String,
    pub lead_id: Option<String>,
    pub detail: serde_json::Value,
    pub at: String,
}

impl Store {
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        if let DbLocation::File(path) = &settings.db
            && let Some(parent) = path.parent()
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::DataDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let endpoint = settings.db.endpoint();
        let open_err = |source| StoreError::Open {
            endpoint: endpoint.clone(),
            source,
        };
        let conn = Connection::open(settings).await?;
        let db = conn.db();
        // Defining the schema runs deep in SurrealDB's executor: a task of its own starts it at the
        // bottom of a thread's stack, not on top of whatever is opening the store.
        // Processes starting together on one server define it at once, and all but one of them
        // meet a transaction conflict that SurrealDB says can be retried: so they retry.
        let started = tokio::time::Instant::now();
        let mut tries: u32 = 0;
        loop {
            let schema_db = db.clone();
            let defined = tokio::spawn(async move { schema_db.query(SCHEMA).await.and_then(|r| r.check()).map(drop) })
                .await
                .map_err(|e| open_err(surrealdb::Error::internal(format!("schema task: {e}"))))?;
            match defined {
                Ok(()) => break,
                Err(err) if started.elapsed() < connection::OPEN_RETRY_FOR && connection::retryable(&err) => {
                    tries += 1;
                    tracing::debug!(%err, tries, "schema definition conflicted with another process's; retrying");
                    connection::conflict_pause(tries).await;
                }
                Err(err) => return Err(open_err(err)),
            }
        }
        Ok(Self {
            conn,
            figures_cache: Default::default(),
        })
    }

    /// Whether the store answers a query within `deadline`; a probe that goes unanswered has the
    /// connection replaced, so a silent connection is noticed even while no other query runs.
    pub async fn ping(&self, deadline: Duration) -> Result<(), StoreError> {
        self.conn.run_within(deadline, self.conn.db().query("RETURN 1")).await?;
        Ok(())
    }

    /// Writes an activity entry; writing the same entry again (a redelivery) changes nothing.
    pub async fn record_activity(&self, entry: &Activity) -> Result<(), StoreError> {
        self.record_activities(std::slice::from_ref(entry)).await
    }

    /// Writes several activity entries in one round trip: the activity writer takes every entry
    /// its lanes hold at once, since one query per entry left a 1,000-lead burst's texts (whose
    /// entries set the lead's `sms_state`) waiting minutes behind ten thousand other entries.
    pub async fn record_activities(&self, entries: &[Activity]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut statements = String::new();
        for (i, entry) in entries.iter().enumerate() {
            statements.push_str(&format!(
                "UPSERT $id{i} SET kind = $kind{i}, actor = $actor{i}, summary = $summary{i}, \
                 lead_id = $lead_id{i}, detail = $detail{i}, at = <datetime>$at{i};\n"
            ));
            // The SMS role keeps no records; its report is how a lead's record learns the text went out.
            if entry.kind.starts_with("sms.") && entry.lead_id.is_some() {
                statements.push_str(&format!("UPDATE $lead{i} SET sms_state = $sms_state{i};\n"));
            }
        }
        self.conn
            .run(|db| {
                entries
                    .iter()
                    .enumerate()
                    .fold(db.query(statements.clone()), |query, (i, entry)| {
                        let at = entry
                            .at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default();
                        let query = query
                            .bind((format!("id{i}"), RecordId::new("activity", entry.id.to_string())))
                            .bind((format!("kind{i}"), entry.kind.clone()))
                            .bind((format!("actor{i}"), entry.actor.clone()))
                            .bind((format!("summary{i}"), entry.summary.clone()))
                            .bind((format!("lead_id{i}"), entry.lead_id.map(|id| id.to_string())))
                            .bind((format!("detail{i}"), entry.detail.clone()))
                            .bind((format!("at{i}"), at));
                        match (entry.kind.strip_prefix("sms."), entry.lead_id) {
                            (Some(state), Some(lead_id)) => query
                                .bind((format!("lead{i}"), RecordId::new("lead", lead_id.to_string())))
                                .bind((format!("sms_state{i}"), state.to_owned())),
                            _ => query,
                        }
                    })
            })
            .await?;
        for entry in entries {
            if entry.kind == "lead.resubmitted"
                && let Some(lead_id) = entry.lead_id
            {
                self.note_resubmission(lead_id).await?;
            }
        }
        Ok(())
    }

    /// Once the lead is finalized its record lists the resubmission (before that, finalizing
    /// does), and the CRM row is written again with it.
    async fn note_resubmission(&self, lead_id: uuid::Uuid) -> Result<(), StoreError> {
        self.conn
            .run(|db| {
                db.query(format!(
                    "UPDATE $lead SET resubmissions = {RESUBMISSIONS}; \
                     UPDATE $lead SET crm_sync = 'pending' WHERE crm_sync = 'synced'"
                ))
                .bind(("lead", RecordId::new("lead", lead_id.to_string())))
                .bind(("lead_id", lead_id.to_string()))
            })
            .await?;
        self.merge_resubmissions(lead_id).await
    }

    /// A saved setting (`script`, `rules`), if an admin (or the first start) saved one.
    pub async fn setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query("SELECT VALUE body FROM $id")
                    .bind(("id", RecordId::new("setting", key.to_owned())))
            })
            .await?;
        let bodies: Vec<serde_json::Value> = response.take(0)?;
        Ok(bodies
            .into_iter()
            .next()
            .and_then(|body| serde_json::from_value(body).ok()))
    }

    pub async fn save_setting<T: Serialize>(&self, key: &str, value: &T, by: &str) -> Result<(), StoreError> {
        let body = serde_json::to_value(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.conn
            .run(|db| {
                db.query("UPSERT $id SET body = $body, updated_at = time::now(), updated_by = $by")
                    .bind(("id", RecordId::new("setting", key.to_owned())))
                    .bind(("body", body.clone()))
                    .bind(("by", by.to_owned()))
            })
            .await?;
        Ok(())
    }

    /// Writes the lead and its call by upsert on their ids: finalizing again rewrites, never adds.
    pub async fn save_finalized(&self, record: &FinalizedLead) -> Result<(), StoreError> {
        let encode = |e: serde_json::Error| StoreError::Encode(e.to_string());
        let rfc3339 = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).ok();
        let lead = &record.lead;
        let intake = &lead.timestamps;
        // Speed to lead: from the submission (or the inbox) to the call placed, in seconds.
        let clock_start = lead.lead.received_at.or(intake.inbox_at).unwrap_or(intake.seen_at);
        let speed_to_lead = record.placed_at.map(|placed| (placed - clock_start).as_seconds_f64());
        let timestamps = serde_json::json!({
            "submitted_at": lead.lead.received_at.and_then(rfc3339),
            "inbox_at": intake.inbox_at.and_then(rfc3339),
            "seen_at": rfc3339(intake.seen_at),
            "published_at": rfc3339(intake.published_at),
            "call_placed_at": record.placed_at.and_then(rfc3339),
            "finalized_at": rfc3339(record.finalized_at),
            "speed_to_lead_secs": speed_to_lead,
            "answered_to_first_words_ms": record.answered_to_first_words_ms,
        });
        let lead_id = RecordId::new("lead", lead.lead_id.to_string());
        let contact = serde_json::to_value(&lead.lead).map_err(encode)?;
        let answers = serde_json::to_value(&record.answers).map_err(encode)?;
        let source = serde_json::to_value(lead.source).map_err(encode)?;
        self.conn
            .run(|db| {
                db.query(format!(
                    "UPSERT $lead SET contact = $contact, answers = $answers, score = $score, verdict = $verdict, \
                 reasons = $reasons, timestamps = $timestamps, source = $source, call_status = $status, \
                 resubmissions = {RESUBMISSIONS}, \
                 crm_sync = crm_sync ?? 'pending', sms_state = sms_state ?? 'pending'; \
                 UPSERT $call SET lead = $lead, call_sid = $call_sid, status = $status, \
                 duration_secs = $duration, answered_by = $answered_by"
                ))
                .bind(("lead", lead_id.clone()))
                .bind(("lead_id", lead.lead_id.to_string()))
                .bind(("contact", contact.clone()))
                .bind(("answers", answers.clone()))
                .bind(("score", i64::from(record.score)))
                .bind(("verdict", record.verdict.clone()))
                .bind(("reasons", record.reasons.clone()))
                .bind(("timestamps", timestamps.clone()))
                .bind(("source", source.clone()))
                .bind(("call", RecordId::new("call", record.call.call_sid.clone())))
                .bind(("call_sid", record.call.call_sid.clone()))
                .bind(("status", record.call.status.clone()))
                .bind(("duration", record.call.duration_secs.map(i64::from)))
                .bind(("answered_by", record.call.answered_by.clone()))
            })
            .await?;
        self.merge_resubmissions(lead.lead_id).await
    }

    /// Fills what the lead's record lacks from its resubmissions' fields. Run after either of
    /// the two writes it depends on (the record, a resubmission's activity entry), so the later
    /// run sees both.
    async fn merge_resubmissions(&self, lead_id: uuid::Uuid) -> Result<(), StoreError> {
        let record = RecordId::new("lead", lead_id.to_string());
        let mut response = self
            .conn
            .run(|db| {
                db.query(
                    "SELECT VALUE contact FROM $lead; \
                 SELECT VALUE detail.lead FROM activity WHERE kind = 'lead.resubmitted' AND lead_id = $lead_id",
                )
                .bind(("lead", record.clone()))
                .bind(("lead_id", lead_id.to_string()))
            })
            .await?;
        let contacts: Vec<serde_json::Value> = response.take(0)?;
        let later: Vec<serde_json::Value> = response.take(1)?;
        let Some(Ok(mut contact)) = contacts
            .into_iter()
            .next()
            .map(serde_json::from_value::<crate::domain::Lead>)
        else {
            return Ok(());
        };
        let mut changed = false;
        for lead in later.into_iter().filter_map(|v| serde_json::from_value(v).ok()) {
            changed |= contact.merge_missing(&lead);
        }
        if changed {
            let contact = serde_json::to_value(&contact).map_err(|e| StoreError::Encode(e.to_string()))?;
            self.conn
                .run(|db| {
                    db.query("UPDATE $lead SET contact = $contact")
                        .bind(("lead", record.clone()))
                        .bind(("contact", contact.clone()))
                })
                .await?;
        }
        Ok(())
    }

    /// Finalized leads not yet in the CRM (pending, or unsynced after a failure), oldest first.
    pub async fn unsynced_leads(&self, limit: u32) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(
                    "SELECT *, record::id(id) AS id FROM lead WHERE crm_sync IN ['pending', 'unsynced'] \
                 ORDER BY timestamps.finalized_at LIMIT $limit",
                )
                .bind(("limit", i64::from(limit)))
            })
            .await?;
        Ok(response.take(0)?)
    }

    /// Sets the CRM sync state of these leads (`synced`, `unsynced`, `rejected`).
    pub async fn mark_crm(&self, lead_ids: &[String], state: &str) -> Result<(), StoreError> {
        let ids: Vec<RecordId> = lead_ids.iter().map(|id| RecordId::new("lead", id.clone())).collect();
        self.conn
            .run(|db| {
                db.query("UPDATE $ids SET crm_sync = $state")
                    .bind(("ids", ids.clone()))
                    .bind(("state", state.to_owned()))
            })
            .await?;
        Ok(())
    }

    /// The period's figures, from indexed counts (never a scan of every lead per request).
    pub async fn figures(&self, since: time::OffsetDateTime) -> Result<Figures, StoreError> {
        let since = since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let cached = self.figures_cache.lock().ok().and_then(|cache| {
            cache
                .get(&since)
                .filter(|(at, _)| at.elapsed() < FIGURES_FRESH_FOR)
                .map(|(_, f)| f.clone())
        });
        if let Some(figures) = cached {
            return Ok(figures);
        }
        let figures = self.compute_figures(&since).await?;
        if let Ok(mut cache) = self.figures_cache.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < FIGURES_FRESH_FOR);
            cache.insert(since, (std::time::Instant::now(), figures.clone()));
        }
        Ok(figures)
    }

    async fn compute_figures(&self, since: &str) -> Result<Figures, StoreError> {
        let since = since.to_owned();
        let mut response = self.conn.run(|db| db.query(
                "LET $leads = SELECT verdict, timestamps FROM lead WHERE timestamps.finalized_at >= $since; \
                 RETURN { \
                   total: count($leads), \
                   qualified: count($leads[WHERE verdict = 'qualified']), \
                   calls: count($leads[WHERE timestamps.call_placed_at != NONE AND timestamps.call_placed_at != NULL]), \
                   speed: math::mean($leads[WHERE timestamps.speed_to_lead_secs != NONE AND timestamps.speed_to_lead_secs != NULL].timestamps.speed_to_lead_secs), \
                   sms: count(SELECT id FROM activity WHERE kind = 'sms.sent' AND at >= <datetime>$since), \
                   last: (SELECT VALUE <string>at FROM activity ORDER BY at DESC LIMIT 1)[0] \
                 };",
            )
            .bind(("since", since.clone()))
            ).await?;
        let row: Option<serde_json::Value> = response.take(1)?;
        let row = row.unwrap_or_default();
        let count = |key: &str| row[key].as_u64().unwrap_or(0);
        Ok(Figures {
            total_leads: count("total"),
            qualified_leads: count("qualified"),
            calls_made: count("calls"),
            sms_sent: count("sms"),
            average_speed_to_lead: row["speed"]
                .as_f64()
                .filter(|s| s.is_finite())
                .map(|s| (s * 10.0).round() / 10.0),
            last_activity: row["last"].as_str().map(str::to_owned),
        })
    }

    /// A finished lead's record as stored, for the API and tests.
    pub async fn lead(&self, lead_id: uuid::Uuid) -> Result<Option<serde_json::Value>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query("SELECT *, record::id(id) AS id FROM $lead")
                    .bind(("lead", RecordId::new("lead", lead_id.to_string())))
            })
            .await?;
        let rows: Vec<serde_json::Value> = response.take(0)?;
        Ok(rows.into_iter().next())
    }

    /// Whether any lead was ever finished: a fresh install's dashboard says what to do first.
    pub async fn has_leads(&self) -> Result<bool, StoreError> {
        let mut response = self
            .conn
            .run(|db| db.query("RETURN count(SELECT VALUE id FROM lead LIMIT 1) > 0"))
            .await?;
        let any: Option<bool> = response.take(0)?;
        Ok(any.unwrap_or(false))
    }

    /// What happened to one lead, oldest first (the lead's page); at most 200 entries.
    pub async fn lead_activity(&self, lead_id: uuid::Uuid) -> Result<Vec<ActivityRow>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(format!(
                    "SELECT {ACTIVITY_COLUMNS} FROM activity WHERE lead_id = $lead_id ORDER BY at ASC LIMIT 200"
                ))
                .bind(("lead_id", lead_id.to_string()))
            })
            .await?;
        Ok(activity_rows(response.take(0)?))
    }

    /// The newest entries first.
    pub async fn recent_activity(&self, limit: u32) -> Result<Vec<ActivityRow>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(format!(
                    "SELECT {ACTIVITY_COLUMNS} FROM activity ORDER BY at DESC LIMIT $limit"
                ))
                .bind(("limit", i64::from(limit)))
            })
            .await?;
        Ok(activity_rows(response.take(0)?))
    }

    /// One page of the activity log, newest first, optionally of one kind and one actor.
    pub async fn activity_page(&self, filter: &ActivityFilter) -> Result<Page<ActivityRow>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(format!(
                    "LET $rows = SELECT * FROM activity \
                   WHERE ($kind = NONE OR kind = $kind) AND ($actor = NONE OR actor = $actor); \
                 RETURN count($rows); \
                 SELECT {ACTIVITY_COLUMNS} \
                   FROM activity WHERE ($kind = NONE OR kind = $kind) AND ($actor = NONE OR actor = $actor) \
                   ORDER BY at DESC LIMIT $limit START $offset"
                ))
                .bind(("kind", filter.kind.clone()))
                .bind(("actor", filter.actor.clone()))
                .bind(("limit", i64::from(filter.limit)))
                .bind(("offset", i64::from(filter.offset)))
            })
            .await?;
        let total: Option<u64> = response.take(1)?;
        Ok(Page {
            items: activity_rows(response.take(2)?),
            total: total.unwrap_or(0),
            limit: filter.limit,
            offset: filter.offset,
        })
    }

    /// One page of finished leads, newest first, optionally of one verdict.
    pub async fn leads_page(
        &self,
        verdict: Option<String>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<serde_json::Value>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(
                    "RETURN count(SELECT id FROM lead WHERE $verdict = NONE OR verdict = $verdict); \
                 SELECT record::id(id) AS id, contact, verdict, score, call_status, crm_sync, sms_state, timestamps \
                   FROM lead WHERE $verdict = NONE OR verdict = $verdict \
                   ORDER BY timestamps.finalized_at DESC LIMIT $limit START $offset",
                )
                .bind(("verdict", verdict.clone()))
                .bind(("limit", i64::from(limit)))
                .bind(("offset", i64::from(offset)))
            })
            .await?;
        let total: Option<u64> = response.take(0)?;
        Ok(Page {
            items: response.take(1)?,
            total: total.unwrap_or(0),
            limit,
            offset,
        })
    }

    /// Verdict counts and speed-to-lead percentiles of the leads finished since `since`.
    pub async fn dashboard(&self, since: time::OffsetDateTime) -> Result<serde_json::Value, StoreError> {
        let since = since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut response = self.conn.run(|db| db.query(
                "LET $leads = SELECT verdict, timestamps FROM lead WHERE timestamps.finalized_at >= $since; \
                 LET $speeds = $leads[WHERE timestamps.speed_to_lead_secs != NONE AND timestamps.speed_to_lead_secs != NULL].timestamps.speed_to_lead_secs; \
                 RETURN { \
                   verdicts: (SELECT verdict, count() AS count FROM $leads GROUP BY verdict), \
                   p50: IF count($speeds) > 0 THEN math::percentile($speeds, 50) ELSE NULL END, \
                   p95: IF count($speeds) > 0 THEN math::percentile($speeds, 95) ELSE NULL END, \
                   samples: count($speeds) \
                 };",
            )
            .bind(("since", since.clone()))
            ).await?;
        let row: Option<serde_json::Value> = response.take(2)?;
        Ok(row.unwrap_or_default())
    }

    /// The newest pasted test emails and what became of each.
    pub async fn recent_test_emails(&self, limit: u32) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(
                    "SELECT record::id(id) AS id, raw, result, submitted_by, <string>at AS at \
                 FROM test_email ORDER BY at DESC LIMIT $limit",
                )
                .bind(("limit", i64::from(limit)))
            })
            .await?;
        Ok(response.take(0)?)
    }

    /// Keeps a pasted test email and what became of it.
    pub async fn save_test_email(&self, raw: &str, result: &serde_json::Value, by: &str) -> Result<(), StoreError> {
        self.conn
            .run(|db| {
                db.query("CREATE test_email SET raw = $raw, result = $result, submitted_by = $by, at = time::now()")
                    .bind(("raw", raw.to_owned()))
                    .bind(("result", result.clone()))
                    .bind(("by", by.to_owned()))
            })
            .await?;
        Ok(())
    }
}
