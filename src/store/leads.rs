//! Finalized leads (`lead`): their records, resubmissions, and the CRM sync state.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use surrealdb::types::RecordId;

use super::{Page, Store, StoreError};
use crate::domain::Lead;
use crate::domain::answers::Interpretation;

/// A lead's resubmissions, from the activity log (`$lead_id`): one list whichever of the
/// finalizer and the activity writer comes first.
pub(super) const RESUBMISSIONS: &str =
    "(SELECT VALUE detail FROM activity WHERE kind = 'lead.resubmitted' AND lead_id = $lead_id)";

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
    /// The warm transfer, when one was offered.
    pub transfer: Option<LeadTransfer>,
    /// The A/B script variant the call was made with.
    pub script_variant: Option<String>,
    /// `en` or `es`.
    pub language: String,
}

/// A warm transfer as the lead's and the call's records keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadTransfer {
    /// `transferred`, `lead_declined`, `rep_declined`, `rep_no_answer` or `abandoned`.
    pub outcome: String,
    pub rep_name: String,
    pub rep_phone: String,
    /// How long the lead and the rep talked, for a transfer.
    pub talked_secs: Option<u64>,
    /// Twilio's `DialCallStatus`, when the rep was dialled.
    pub dial_status: Option<String>,
}

/// A finished lead's record as stored, read by name where the CRM sync and the admin page use
/// it; what else the record holds is kept as it is (`other`) and written back out with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeadRecord {
    pub id: String,
    pub contact: Lead,
    #[serde(default)]
    pub answers: Vec<Interpretation>,
    pub score: u8,
    pub verdict: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub timestamps: LeadTimestamps,
    pub call_status: Option<String>,
    /// `pending`, `synced`, `unsynced` (after a failure) or `rejected`.
    pub crm_sync: String,
    /// `pending`, then what the SMS sender reported (`sent`, `skipped`, ...).
    pub sms_state: String,
    /// The details of each later submission by the same person.
    #[serde(default)]
    pub resubmissions: Vec<Value>,
    /// The tour, once Calendly reported one.
    #[serde(default)]
    pub booking: Option<LeadBooking>,
    #[serde(default)]
    pub transfer: Option<LeadTransfer>,
    #[serde(default)]
    pub script_variant: Option<String>,
    /// The call's language (`en`, `es`); records from before it was kept have none.
    #[serde(default)]
    pub language: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// When each step of a lead happened (RFC 3339), and the two speeds the dashboard shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeadTimestamps {
    pub submitted_at: Option<String>,
    pub inbox_at: Option<String>,
    pub seen_at: Option<String>,
    pub published_at: Option<String>,
    pub call_placed_at: Option<String>,
    pub finalized_at: Option<String>,
    pub speed_to_lead_secs: Option<f64>,
    pub answered_to_first_words_ms: Option<i64>,
    /// How long the call lasted (Twilio's `CallDuration`).
    #[serde(default)]
    pub call_secs: Option<u64>,
}

/// A lead's tour as Calendly reported it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeadBooking {
    /// `booked`, `canceled`, or `rescheduled` (a new time's booking follows).
    pub state: String,
    /// Calendly's invitee URI of the booking the lead holds.
    pub invitee: String,
    pub booked_at: Option<String>,
    pub meeting_at: Option<String>,
    pub canceled_at: Option<String>,
}

impl LeadRecord {
    /// The answer to question `id`, if the script asked it.
    pub fn answer(&self, id: &str) -> Option<&Interpretation> {
        self.answers.iter().find(|a| a.question == id)
    }
}

/// Rows read as lead records; a row that does not read as one is a store fault, named.
fn lead_records(rows: Vec<Value>) -> Result<Vec<LeadRecord>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let id = row["id"].as_str().unwrap_or("?").to_owned();
            serde_json::from_value(row)
                .map_err(|e| StoreError::Encode(format!("lead {id} does not read as a record: {e}")))
        })
        .collect()
}

impl Store {
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
            "call_secs": record.call.duration_secs,
        });
        let lead_id = RecordId::new("lead", lead.lead_id.to_string());
        let contact = serde_json::to_value(&lead.lead).map_err(encode)?;
        let answers = serde_json::to_value(&record.answers).map_err(encode)?;
        let source = serde_json::to_value(lead.source).map_err(encode)?;
        let transfer = serde_json::to_value(&record.transfer).map_err(encode)?;
        self.conn
            .run(|db| {
                db.query(format!(
                    "UPSERT $lead SET contact = $contact, answers = $answers, score = $score, verdict = $verdict, \
                 reasons = $reasons, timestamps = $timestamps, source = $source, call_status = $status, \
                 resubmissions = {RESUBMISSIONS}, transfer = $transfer ?? NONE, script_variant = $variant ?? NONE, language = $language, \
                 crm_sync = crm_sync ?? 'pending', sms_state = sms_state ?? 'pending'; \
                 UPSERT $call SET lead = $lead, call_sid = $call_sid, status = $status, \
                 duration_secs = $duration, answered_by = $answered_by, transfer = $transfer ?? NONE"
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
                .bind(("transfer", transfer.clone()))
                .bind(("variant", record.script_variant.clone()))
                .bind(("language", record.language.clone()))
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
    pub(super) async fn merge_resubmissions(&self, lead_id: uuid::Uuid) -> Result<(), StoreError> {
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
    pub async fn unsynced_leads(&self, limit: u32) -> Result<Vec<LeadRecord>, StoreError> {
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
        lead_records(response.take(0)?)
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

    /// A finished lead's record as stored, for the API and tests.
    pub async fn lead(&self, lead_id: uuid::Uuid) -> Result<Option<LeadRecord>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query("SELECT *, record::id(id) AS id FROM $lead")
                    .bind(("lead", RecordId::new("lead", lead_id.to_string())))
            })
            .await?;
        Ok(lead_records(response.take(0)?)?.into_iter().next())
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
}
