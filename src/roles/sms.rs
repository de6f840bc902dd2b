//! The SMS sender: `lead.finalized` to one text with the booking link, prefilled with the lead's
//! name and email and tagged with the lead id (`a1`) and UTM parameters. The lead's entry in the
//! `sms` bucket is created as `sending` before the request and set `sent` after it; a redelivery
//! that finds `sending` looks for the text among Twilio's recent messages to the number before it
//! sends anything, and sends again only once the earlier request did nothing or is older than any
//! request can take, so a lead is texted once across crashes and across senders. Numbers on the
//! do-not-contact list are never texted.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

use crate::bus::kv::calls::{DoNotContact, request_in_flight};
use crate::bus::kv::run_state::AgentStateStore;
use crate::bus::{self, Activity, Bus, BusError, Delivery, LeadFinalized, Outcome};
use crate::clients::twilio::{TwilioClient, TwilioError};
use crate::config::Settings;

pub use crate::roles::OutboundError as SmsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SmsState {
    Sending,
    Sent,
}

#[derive(Debug, Serialize, Deserialize)]
struct SmsEntry {
    state: SmsState,
    sid: Option<String>,
    /// When `sending` was written or taken over: a request made since may still be acted on.
    #[serde(default, with = "time::serde::rfc3339::option")]
    since: Option<OffsetDateTime>,
    /// The last request did nothing at Twilio (a refused connection, a 5xx or 429): send again
    /// at once.
    #[serde(default)]
    ended: bool,
}

impl SmsEntry {
    fn sending(since: OffsetDateTime, ended: bool) -> Self {
        Self {
            state: SmsState::Sending,
            sid: None,
            since: Some(since),
            ended,
        }
    }
}

/// Twilio refuses a message body longer than this (error 21617).
const MAX_SMS_CHARS: usize = 1600;
/// The first name in a text is cut here: a text is read on a phone.
const MAX_NAME_IN_TEXT: usize = 40;

/// The booking link for one lead.
pub fn booking_link(base: &Url, lead: &LeadFinalized) -> Url {
    let mut link = base.clone();
    {
        let mut query = link.query_pairs_mut();
        if !lead.name.is_empty() {
            query.append_pair("name", &lead.name);
        }
        if let Some(email) = &lead.email {
            query.append_pair("email", email);
        }
        query
            .append_pair("a1", &lead.lead_id.to_string())
            // Calendly carries UTM tags into the booking's `tracking`: how a booking finds its lead.
            .append_pair("utm_content", &lead.lead_id.to_string())
            .append_pair("utm_source", "leadq")
            .append_pair("utm_medium", "sms")
            .append_pair(
                "utm_campaign",
                lead.campaign_id.as_deref().unwrap_or("lead_qualification"),
            );
    }
    link
}

/// What the SMS role is given by the composition root.
#[derive(Clone, Debug)]
pub struct Deps {
    pub settings: Arc<Settings>,
    pub bus: Bus,
    pub dnc: DoNotContact,
}

pub struct SmsSender {
    deps: Deps,
    sent: kv::Store,
    twilio: TwilioClient,
}

impl SmsSender {
    pub async fn new(deps: Deps) -> Result<Self, SmsError> {
        let sent = deps
            .bus
            .js
            .get_key_value(bus::bucket::SMS)
            .await
            .map_err(|e| BusError::jetstream("bucket sms", e))?;
        let twilio = TwilioClient::new(&deps.settings.twilio)?;
        Ok(Self { deps, sent, twilio })
    }

    /// One finalized lead; public so tests can drive it without the consume loop.
    pub async fn handle(&self, delivery: &Delivery<LeadFinalized>) -> Outcome {
        let lead = &delivery.payload;
        let span = tracing::info_span!("sms", lead_id = %lead.lead_id, attempt = delivery.attempt);
        match self.text_once(lead).instrument(span).await {
            Ok(outcome) => outcome,
            Err(err) => err.retry(),
        }
    }

    /// Tells the lead's record what became of its text (`sms.sent`, `sms.skipped`, `sms.failed`):
    /// published, not merely recorded, since the record learns it only from here (a lost report
    /// left it `pending` for good), with one id per lead and kind, however often it is said.
    async fn report(
        &self,
        lead: &LeadFinalized,
        kind: &str,
        summary: String,
        detail: serde_json::Value,
    ) -> Result<(), SmsError> {
        let mut entry = Activity::new(kind, "sms", summary);
        entry.id = uuid::Uuid::new_v5(&lead.lead_id, kind.as_bytes());
        entry.lead_id = Some(lead.lead_id);
        entry.detail = detail;
        self.deps.bus.publish(&entry).await?;
        Ok(())
    }

    async fn mark(&self, key: &str, state: SmsState, sid: Option<String>) -> Result<(), SmsError> {
        let entry = SmsEntry {
            state,
            sid,
            since: None,
            ended: false,
        };
        self.put(key, &entry).await
    }

    async fn put(&self, key: &str, entry: &SmsEntry) -> Result<(), SmsError> {
        let body = serde_json::to_vec(entry).map_err(|e| BusError::jetstream("sms encode", e))?;
        let body = bytes::Bytes::from(body);
        bus::retrying("sms put", || self.sent.put(key, body.clone()))
            .await
            .map_err(|e| BusError::jetstream("sms put", e))?;
        Ok(())
    }

    /// The text for this lead: the template with the first name (bounded) and the link.
    fn text_for(&self, lead: &LeadFinalized, link: &Url) -> String {
        let first_name: String = lead
            .name
            .split_whitespace()
            .next()
            .unwrap_or("there")
            .chars()
            .take(MAX_NAME_IN_TEXT)
            .collect();
        self.deps
            .settings
            .sms_template
            .replace("{name}", &first_name)
            .replace("{link}", link.as_str())
    }

    async fn confirm_sent(&self, lead: &LeadFinalized, sid: &str, body: &str) -> Result<(), SmsError> {
        let summary = format!("texted the booking link to {}", lead.phone);
        self.report(
            lead,
            "sms.sent",
            summary,
            serde_json::json!({ "sid": sid, "body": body }),
        )
        .await
    }

    async fn text_once(&self, lead: &LeadFinalized) -> Result<Outcome, SmsError> {
        if self.deps.dnc.contains(&lead.phone).await? {
            tracing::info!("on the do-not-contact list; not texting");
            self.report(
                lead,
                "sms.skipped",
                "not texted: on the do-not-contact list".into(),
                serde_json::Value::Null,
            )
            .await?;
            return Ok(Outcome::Done);
        }
        let key = lead.lead_id.simple().to_string();
        let link = booking_link(&self.deps.settings.calendly_url, lead);
        let existing = bus::retrying("sms get", || self.sent.entry(&key))
            .await
            .map_err(|e| BusError::jetstream("sms get", e))?
            .filter(|entry| entry.operation == kv::Operation::Put);
        let revision = existing.as_ref().map(|entry| entry.revision);
        match existing.and_then(|entry| serde_json::from_slice::<SmsEntry>(&entry.value).ok()) {
            Some(SmsEntry {
                state: SmsState::Sent,
                sid,
                ..
            }) => {
                // Texted, perhaps by a process that died before the lead's record heard of it.
                tracing::info!("already texted; confirming");
                self.confirm_sent(lead, sid.as_deref().unwrap_or_default(), &self.text_for(lead, &link))
                    .await?;
                return Ok(Outcome::Done);
            }
            Some(SmsEntry {
                state: SmsState::Sending,
                since,
                ended,
                ..
            }) => {
                // An earlier attempt may have sent it: the link carries the lead id.
                let marker = format!("a1={}", lead.lead_id);
                let earlier = self.twilio.messages_to(&lead.phone).await?;
                if let Some(message) = earlier.into_iter().find(|m| m.body.contains(&marker)) {
                    self.mark(&key, SmsState::Sent, Some(message.sid.clone())).await?;
                    self.confirm_sent(lead, &message.sid, &message.body).await?;
                    return Ok(Outcome::Done);
                }
                // Twilio lists none: send it, unless an earlier request may still be acted on
                // (another process's still in flight, or one whose answer was lost), and only
                // one process takes it over.
                let now = OffsetDateTime::now_utc();
                let in_flight_for = self.deps.settings.twilio.slowest_request();
                if let Some(left) = since.and_then(|since| request_in_flight(since, ended, now, in_flight_for)) {
                    let wait = left.max(Duration::from_secs(1));
                    tracing::info!(
                        ?wait,
                        "an earlier attempt's SMS request may still be in flight; looking again then"
                    );
                    return Ok(Outcome::Retry {
                        after: wait,
                        reason: "an earlier attempt's SMS request may still be in flight".into(),
                    });
                }
                let body = serde_json::to_vec(&SmsEntry::sending(now, false))
                    .map_err(|e| BusError::jetstream("sms encode", e))?;
                let taken = bus::retrying("sms update", || {
                    self.sent
                        .update(&key, body.clone().into(), revision.unwrap_or_default())
                })
                .await;
                match taken {
                    Ok(_) => {}
                    // Another sender wrote first (or an earlier try of this write landed): the
                    // next delivery reads what is there and decides again.
                    Err(err) if bus::lost_race(&err) => {
                        return Ok(Outcome::Retry {
                            after: Duration::from_secs(2),
                            reason: "another sender took the text over".into(),
                        });
                    }
                    Err(err) => return Err(BusError::jetstream("sms update", err).into()),
                }
            }
            None => {
                let body = serde_json::to_vec(&SmsEntry::sending(OffsetDateTime::now_utc(), false))
                    .map_err(|e| BusError::jetstream("sms encode", e))?;
                let body = bytes::Bytes::from(body);
                if let Err(err) = bus::retrying("sms create", || self.sent.create(&key, body.clone())).await
                    && err.kind() != kv::CreateErrorKind::AlreadyExists
                {
                    return Err(BusError::jetstream("sms create", err).into());
                }
            }
        }
        let text = self.text_for(lead, &link);
        if text.chars().count() > MAX_SMS_CHARS {
            // Twilio refuses it (error 21617); a request that cannot succeed is not sent.
            let reason = format!(
                "the text would be {} characters; Twilio takes {MAX_SMS_CHARS}",
                text.chars().count()
            );
            self.report(lead, "sms.failed", reason.clone(), serde_json::Value::Null)
                .await?;
            return Ok(Outcome::Poison(reason));
        }
        match self.twilio.send_sms(&lead.phone, &text).await {
            Ok(message) => {
                self.mark(&key, SmsState::Sent, Some(message.sid.clone())).await?;
                tracing::info!(sid = %message.sid, "booking link texted");
                self.confirm_sent(lead, &message.sid, &text).await?;
                Ok(Outcome::Done)
            }
            Err(TwilioError::Rejected { status, code, message }) => {
                let reason = format!("Twilio refused the SMS ({status}, code {code}): {message}");
                self.report(lead, "sms.failed", reason.clone(), serde_json::json!({ "code": code }))
                    .await?;
                Ok(Outcome::Poison(reason))
            }
            // The entry stays `sending`; the next delivery reconciles. Unreachable or busy, the
            // request did nothing: marked as over, so the text goes out again at once. Unanswered,
            // Twilio may still act on it: no new request until it must have.
            Err(err) => {
                if matches!(err, TwilioError::Unreachable(_) | TwilioError::Transient { .. })
                    && let Err(e) = self
                        .put(&key, &SmsEntry::sending(OffsetDateTime::now_utc(), true))
                        .await
                {
                    tracing::warn!(err = %e, "the end of the SMS request not recorded");
                }
                Ok(Outcome::Retry {
                    after: err.retry_after(),
                    reason: err.to_string(),
                })
            }
        }
    }
}

pub async fn run(deps: Deps, shutdown: CancellationToken) -> Result<(), SmsError> {
    let sender = &SmsSender::new(deps.clone()).await?;
    let gate = AgentStateStore::open(&deps.bus.js).await?.watch().await?;
    let handler = |delivery: Delivery<LeadFinalized>| async move { sender.handle(&delivery).await };
    bus::consume(
        &deps.bus,
        bus::stream::LEADS,
        bus::consumer::SMS,
        Some(gate),
        bus::Lanes::new(deps.settings.concurrency.sms, deps.settings.bus.max_handling),
        handler,
        shutdown,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_is_prefilled_and_tagged() {
        let lead = LeadFinalized {
            lead_id: uuid::Uuid::nil(),
            phone: "+14155550142".into(),
            name: "Renée O'Brien".into(),
            email: Some("renee@example.org".into()),
            verdict: "qualified".into(),
            score: 100,
            campaign_id: Some("fall-2026".into()),
        };
        let link = booking_link(&Url::parse("https://calendly.com/meshcowork/tour").expect("url"), &lead);
        let query: std::collections::HashMap<_, _> = link.query_pairs().into_owned().collect();
        assert_eq!(query["name"], "Renée O'Brien");
        assert_eq!(query["email"], "renee@example.org");
        assert_eq!(query["a1"], uuid::Uuid::nil().to_string());
        assert_eq!(
            query["utm_content"],
            uuid::Uuid::nil().to_string(),
            "the lead a booking belongs to"
        );
        assert_eq!(
            (query["utm_source"].as_str(), query["utm_medium"].as_str()),
            ("leadq", "sms")
        );
        assert_eq!(query["utm_campaign"], "fall-2026");
    }
}
