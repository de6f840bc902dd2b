//! Payloads on the bus. Each is JSON with a `v` field naming its schema version; a consumer refuses
//! (and terminates) a message from a newer schema it does not know rather than misreading it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::subject;
use crate::domain::Lead;

/// A message type bound to its subject. `msg_id` becomes `Nats-Msg-Id`, so publishing the same
/// fact twice is stored once.
pub trait Payload: Serialize + DeserializeOwned + Send + Sync + 'static {
    const SUBJECT: &'static str;
    const VERSION: u16;
    fn msg_id(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no `v` schema version")]
    NoVersion,
    #[error("schema version {found} is newer than the {known} this build reads")]
    NewerVersion { found: u64, known: u16 },
}

pub(crate) fn encode<P: Payload>(payload: &P) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(payload)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("v".into(), P::VERSION.into());
    }
    serde_json::to_vec(&value)
}

pub fn decode<P: Payload>(bytes: &[u8]) -> Result<P, DecodeError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    let version = value
        .as_object_mut()
        .and_then(|o| o.remove("v"))
        .and_then(|v| v.as_u64())
        .ok_or(DecodeError::NoVersion)?;
    if version > u64::from(P::VERSION) {
        return Err(DecodeError::NewerVersion {
            found: version,
            known: P::VERSION,
        });
    }
    Ok(serde_json::from_value(value)?)
}

/// Where a lead entered the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadSource {
    Email,
    CmoTrigger,
    AdminTestEmail,
    /// Unbounce's form-submit webhook.
    UnbounceWebhook,
}

/// A lead ready to be called. Published by the poller, the CMO trigger and the admin test email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadReceived {
    pub lead_id: Uuid,
    pub source: LeadSource,
    #[serde(flatten)]
    pub lead: Lead,
    pub timestamps: IntakeTimestamps,
    /// 0 for the first call; a busy or unanswered call is tried again as attempt 1, 2, ...
    #[serde(default)]
    pub attempt: u32,
    /// A retry waits until then (and for the calling window).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// Called even when the number had a lead inside the resubmit window: an admin's deliberate
    /// test, recorded in the activity log by whoever set it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

impl LeadReceived {
    /// A lead's first call.
    pub fn new(lead_id: Uuid, source: LeadSource, lead: Lead, timestamps: IntakeTimestamps) -> Self {
        Self {
            lead_id,
            source,
            lead,
            timestamps,
            attempt: 0,
            not_before: None,
            force: false,
        }
    }
}

/// The speed-to-lead clock up to the bus; the form's submission time is the lead's `received_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeTimestamps {
    /// IMAP INTERNALDATE: when the email reached the inbox.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub inbox_at: Option<OffsetDateTime>,
    /// When leadq first read it.
    #[serde(with = "time::serde::rfc3339")]
    pub seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
}

impl Payload for LeadReceived {
    const SUBJECT: &'static str = subject::LEAD_RECEIVED;
    const VERSION: u16 = 1;
    fn msg_id(&self) -> String {
        match self.attempt {
            0 => self.lead_id.to_string(),
            n => format!("{}:attempt:{n}", self.lead_id),
        }
    }
}

/// One answered question of a call, as Twilio's speech recognition heard it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallAnswer {
    pub lead_id: Uuid,
    pub call_sid: String,
    pub question_id: String,
    pub speech: Option<String>,
    pub confidence: Option<f32>,
}

impl Payload for CallAnswer {
    const SUBJECT: &'static str = subject::CALL_ANSWER;
    const VERSION: u16 = 1;
    fn msg_id(&self) -> String {
        format!("{}:answer:{}", self.call_sid, self.question_id)
    }
}

/// A call reached a terminal Twilio status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallCompleted {
    pub lead_id: Uuid,
    pub call_sid: String,
    /// Twilio `CallStatus`: completed, busy, no-answer, failed or canceled.
    pub status: String,
    pub duration_secs: Option<u32>,
    pub answered_by: Option<String>,
    /// The end was learnt from Twilio's call resource by the watchdog, not from the status
    /// callback: this call's webhooks may have failed, so unasked questions mean it was cut off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconciled: bool,
}

impl Payload for CallCompleted {
    const SUBJECT: &'static str = subject::CALL_COMPLETED;
    const VERSION: u16 = 1;
    fn msg_id(&self) -> String {
        format!("{}:completed", self.call_sid)
    }
}

/// A lead's record is written and its verdict known; the SMS follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadFinalized {
    pub lead_id: Uuid,
    pub phone: String,
    pub name: String,
    pub email: Option<String>,
    pub verdict: String,
    pub score: u8,
    /// For the booking link's UTM campaign.
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// The call's language: the texts are written in it.
    #[serde(default)]
    pub language: crate::domain::language::Language,
}

impl Payload for LeadFinalized {
    const SUBJECT: &'static str = subject::LEAD_FINALIZED;
    const VERSION: u16 = 1;
    /// Apart from `lead.received`'s id: the stream deduplicates across its subjects.
    fn msg_id(&self) -> String {
        format!("{}:finalized", self.lead_id)
    }
}

/// A follow-up text to send when its time comes, unless the lead booked, said STOP, or was
/// handed to a person; the SMS role schedules the first after the first text, and each the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The lead, as the first text had it.
    pub lead: LeadFinalized,
    /// 1 for the first follow-up.
    pub step: u32,
    /// When the first text went out: every step's time is counted from it.
    #[serde(with = "time::serde::rfc3339")]
    pub first_sent_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
}

impl Payload for FollowUp {
    const SUBJECT: &'static str = subject::LEAD_FOLLOWUP;
    const VERSION: u16 = 1;
    fn msg_id(&self) -> String {
        format!("{}:followup:{}", self.lead.lead_id, self.step)
    }
}

/// Heartbeat and state of one leadq process; the STATUS stream keeps the latest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub agent_id: String,
    pub state: String,
    pub roles: Vec<String>,
    pub instance: String,
    pub version: String,
    pub uptime_secs: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Today's figures, from a process that has the store (the api's; none from a worker alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<StatusMetrics>,
}

/// Today's figures as the CMO agent reads them, in `agent.status` and `GET /api/cmo/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusMetrics {
    pub calls_today: u64,
    pub sms_today: u64,
    pub leads_today: u64,
    /// Of today's leads, those with a tour booked (Calendly's reports).
    pub booked_today: u64,
    /// Of today's leads, those put through to a rep on the call.
    pub transferred_today: u64,
}

impl Payload for AgentStatus {
    const SUBJECT: &'static str = subject::AGENT_STATUS;
    const VERSION: u16 = 1;
    fn msg_id(&self) -> String {
        format!("{}:{}", self.instance, self.at.unix_timestamp_nanos())
    }
}

/// An entry for the activity log: who did what. The api role writes these to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub id: Uuid,
    pub kind: String,
    pub actor: String,
    pub summary: String,
    pub lead_id: Option<Uuid>,
    #[serde(default)]
    pub detail: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Activity {
    pub fn new(kind: &str, actor: &str, summary: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind: kind.into(),
            actor: actor.into(),
            summary: summary.into(),
            lead_id: None,
            detail: serde_json::Value::Null,
            at: OffsetDateTime::now_utc(),
        }
    }
}

impl Payload for Activity {
    const SUBJECT: &'static str = subject::AGENT_ACTIVITY;
    const VERSION: u16 = 1;
    fn msg_id(&self) -> String {
        self.id.to_string()
    }
}

/// Something an operator must look at: a poison message, a service down, a lead that cannot be called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: Uuid,
    pub source: String,
    pub message: String,
    #[serde(default)]
    pub detail: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Alert {
    pub fn new(source: &str, message: impl Into<String>, detail: serde_json::Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            source: source.into(),
            message: message.into(),
            detail,
            at: OffsetDateTime::now_utc(),
        }
    }
}

impl Payload for Alert {
    const SUBJECT: &'static str = subject::AGENT_ALERT;
    const VERSION: u16 = 1;
    fn msg_id(&self) -> String {
        self.id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_carries_the_version_and_round_trips() {
        let activity = Activity::new("test", "tester", "hello");
        let bytes = encode(&activity).expect("encode");
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["v"], 1);
        assert_eq!(decode::<Activity>(&bytes).expect("decode"), activity);
    }

    #[test]
    fn a_newer_schema_is_refused_not_misread() {
        let bytes = br#"{"v":2,"id":"0190a1a0-0000-7000-8000-000000000000"}"#;
        assert!(matches!(
            decode::<Activity>(bytes),
            Err(DecodeError::NewerVersion { found: 2, known: 1 })
        ));
        assert!(matches!(decode::<Activity>(b"{}"), Err(DecodeError::NoVersion)));
        assert!(matches!(decode::<Activity>(b"\x00junk"), Err(DecodeError::Json(_))));
    }
}
