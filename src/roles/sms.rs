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
use crate::bus::kv::followups::FollowUpStops;
use crate::bus::kv::run_state::AgentStateStore;
use crate::bus::{self, Activity, Bus, BusError, Delivery, FollowUp, LeadFinalized, Outcome};
use crate::clients::twilio::{TwilioClient, TwilioError};
use crate::config::Settings;
use crate::domain::clock::Clock;

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
    /// When it went out (`sent`): the follow-ups are counted from the first text's.
    #[serde(default, with = "time::serde::rfc3339::option")]
    sent_at: Option<OffsetDateTime>,
}

impl SmsEntry {
    fn sending(since: OffsetDateTime, ended: bool) -> Self {
        Self {
            state: SmsState::Sending,
            sid: None,
            since: Some(since),
            ended,
            sent_at: None,
        }
    }
}

/// One text to one lead, sent once: the first (the booking link), or follow-up `step`.
#[derive(Debug, Clone, Copy)]
struct Text<'a> {
    lead: &'a LeadFinalized,
    /// 0 for the first text.
    step: u32,
}

impl Text<'_> {
    /// Its entry in the `sms` bucket.
    fn key(&self) -> String {
        match self.step {
            0 => self.lead.lead_id.simple().to_string(),
            step => format!("{}-f{step}", self.lead.lead_id.simple()),
        }
    }

    /// The link it carries: a follow-up's says which one it is (`utm_term`), so each text can
    /// be told apart among Twilio's messages to the number.
    fn link(&self, base: &Url) -> Url {
        let mut link = booking_link(base, self.lead);
        if self.step > 0 {
            link.query_pairs_mut()
                .append_pair("utm_term", &format!("followup-{}", self.step));
        }
        link
    }

    /// Whether a message Twilio lists is this text.
    fn is_in(&self, body: &str) -> bool {
        body.contains(&format!("a1={}", self.lead.lead_id))
            && match self.step {
                0 => !body.contains("utm_term=followup-"),
                step => body.contains(&format!("utm_term=followup-{step}")),
            }
    }

    /// The activity kind of what became of it: `sms.*` for the first (the lead's record keeps
    /// its state), `followup.*` for the others.
    fn kind(&self, outcome: &str) -> String {
        match self.step {
            0 => format!("sms.{outcome}"),
            _ => format!("followup.{outcome}"),
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
    /// What a follow-up's time is judged by.
    pub clock: Clock,
}

pub struct SmsSender {
    deps: Deps,
    sent: kv::Store,
    stops: FollowUpStops,
    twilio: TwilioClient,
}

/// What became of a text.
enum Sent {
    /// It went out (now, or earlier): when.
    At(OffsetDateTime),
    /// Not (yet): what to do with the message.
    Not(Outcome),
}

impl From<Sent> for Outcome {
    fn from(sent: Sent) -> Self {
        match sent {
            Sent::At(_) => Outcome::Done,
            Sent::Not(outcome) => outcome,
        }
    }
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
        let stops = FollowUpStops::open(&deps.bus.js).await?;
        Ok(Self {
            deps,
            sent,
            stops,
            twilio,
        })
    }

    /// Follow-up `step` on the bus, due its wait after the first text; none past the last.
    async fn schedule(&self, lead: &LeadFinalized, step: u32, first_sent_at: OffsetDateTime) -> Result<(), SmsError> {
        let Some(wait) = self.deps.settings.followups.get(step as usize - 1) else {
            return Ok(());
        };
        let followup = FollowUp {
            lead: lead.clone(),
            step,
            first_sent_at,
            due_at: first_sent_at + *wait,
        };
        self.deps.bus.publish(&followup).await?;
        Ok(())
    }

    /// One follow-up: sent once its time has come and the number may be texted, then the next
    /// scheduled; dropped when the lead booked, was handed over, or is on the do-not-contact list.
    pub async fn handle_followup(&self, delivery: &Delivery<FollowUp>) -> Outcome {
        let followup = &delivery.payload;
        let span = tracing::info_span!("followup", lead_id = %followup.lead.lead_id, step = followup.step);
        match self.follow_up(followup).instrument(span).await {
            Ok(outcome) => outcome,
            Err(err) => err.retry(),
        }
    }

    async fn follow_up(&self, followup: &FollowUp) -> Result<Outcome, SmsError> {
        let settings = &self.deps.settings;
        let now = self.deps.clock.now();
        let wait_until = |at: OffsetDateTime, why: &str| {
            let left = Duration::try_from(at - now).unwrap_or_default();
            Outcome::Retry {
                // Looked at again at most this often, so a clock moved on is seen soon.
                after: left.clamp(Duration::from_millis(50), settings.followup_recheck),
                reason: why.into(),
            }
        };
        if now < followup.due_at {
            return Ok(wait_until(followup.due_at, "not due yet"));
        }
        let text = Text {
            lead: &followup.lead,
            step: followup.step,
        };
        if let Some(reason) = self.stops.reason(followup.lead.lead_id).await? {
            tracing::info!(%reason, "follow-ups stopped");
            self.report(
                text,
                "stopped",
                format!("no follow-up: {reason}"),
                serde_json::Value::Null,
            )
            .await?;
            return Ok(Outcome::Done);
        }
        let opens = jiff::Timestamp::from_second(now.unix_timestamp())
            .ok()
            .and_then(|t| settings.calling_hours.next_allowed(&followup.lead.phone, t))
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.as_second()).ok());
        if let Some(opens) = opens {
            return Ok(wait_until(opens, "outside calling hours"));
        }
        match self.text_once(text).await? {
            Sent::At(_) => {
                self.schedule(&followup.lead, followup.step + 1, followup.first_sent_at)
                    .await?;
                Ok(Outcome::Done)
            }
            Sent::Not(outcome) => Ok(outcome),
        }
    }

    /// One finalized lead; public so tests can drive it without the consume loop.
    pub async fn handle(&self, delivery: &Delivery<LeadFinalized>) -> Outcome {
        let lead = &delivery.payload;
        let span = tracing::info_span!("sms", lead_id = %lead.lead_id, attempt = delivery.attempt);
        let text = Text { lead, step: 0 };
        let sent = async {
            let outcome = self.text_once(text).await?;
            if let Sent::At(at) = outcome {
                self.schedule(lead, 1, at).await?;
            }
            Ok::<_, SmsError>(outcome.into())
        };
        match sent.instrument(span).await {
            Ok(outcome) => outcome,
            Err(err) => err.retry(),
        }
    }

    /// Tells the lead's record what became of its text (`sms.sent`, `sms.skipped`, `sms.failed`):
    /// published, not merely recorded, since the record learns it only from here (a lost report
    /// left it `pending` for good), with one id per lead and kind, however often it is said.
    async fn report(
        &self,
        text: Text<'_>,
        outcome: &str,
        summary: String,
        detail: serde_json::Value,
    ) -> Result<(), SmsError> {
        let kind = text.kind(outcome);
        let mut entry = Activity::new(&kind, "sms", summary);
        entry.id = uuid::Uuid::new_v5(&text.lead.lead_id, format!("{kind}:{}", text.step).as_bytes());
        entry.lead_id = Some(text.lead.lead_id);
        entry.detail = detail;
        self.deps.bus.publish(&entry).await?;
        Ok(())
    }

    /// Marks the text sent at `at`.
    async fn mark_sent(&self, key: &str, sid: String, at: OffsetDateTime) -> Result<(), SmsError> {
        let entry = SmsEntry {
            state: SmsState::Sent,
            sid: Some(sid),
            since: None,
            ended: false,
            sent_at: Some(at),
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

    /// The words of this text: its template with the first name (bounded) and the link.
    fn words(&self, text: Text<'_>, link: &Url) -> String {
        let settings = &self.deps.settings;
        let spanish = text.lead.language == crate::domain::language::Language::Es;
        let template = match (text.step, spanish) {
            (0, false) => &settings.sms_template,
            (0, true) => &settings.spanish.sms_template,
            (_, false) => &settings.followup_template,
            (_, true) => &settings.spanish.followup_template,
        };
        let fallback = if spanish { "" } else { "there" };
        let first_name: String = text
            .lead
            .name
            .split_whitespace()
            .next()
            .unwrap_or(fallback)
            .chars()
            .take(MAX_NAME_IN_TEXT)
            .collect();
        let words = template.replace("{link}", link.as_str());
        if first_name.is_empty() {
            // "Hola {name}, ..." without a name: "Hola, ...".
            return words.replace(" {name}", "").replace("{name}", "");
        }
        words.replace("{name}", &first_name)
    }

    async fn confirm_sent(&self, text: Text<'_>, sid: &str, body: &str) -> Result<(), SmsError> {
        let summary = match text.step {
            0 => format!("texted the booking link to {}", text.lead.phone),
            step => format!("texted follow-up {step} to {}", text.lead.phone),
        };
        self.report(text, "sent", summary, serde_json::json!({ "sid": sid, "body": body }))
            .await
    }

    /// Sends `text` once across crashes and senders; `Sent::At` says when it went out.
    async fn text_once(&self, text: Text<'_>) -> Result<Sent, SmsError> {
        let lead = text.lead;
        if self.deps.dnc.contains(&lead.phone).await? {
            tracing::info!("on the do-not-contact list; not texting");
            self.report(
                text,
                "skipped",
                "not texted: on the do-not-contact list".into(),
                serde_json::Value::Null,
            )
            .await?;
            return Ok(Sent::Not(Outcome::Done));
        }
        let key = text.key();
        let link = text.link(&self.deps.settings.calendly_url);
        let existing = bus::retrying("sms get", || self.sent.entry(&key))
            .await
            .map_err(|e| BusError::jetstream("sms get", e))?
            .filter(|entry| entry.operation == kv::Operation::Put);
        let revision = existing.as_ref().map(|entry| entry.revision);
        match existing.and_then(|entry| serde_json::from_slice::<SmsEntry>(&entry.value).ok()) {
            Some(SmsEntry {
                state: SmsState::Sent,
                sid,
                sent_at,
                ..
            }) => {
                // Texted, perhaps by a process that died before the lead's record heard of it.
                tracing::info!("already texted; confirming");
                self.confirm_sent(text, sid.as_deref().unwrap_or_default(), &self.words(text, &link))
                    .await?;
                return Ok(Sent::At(sent_at.unwrap_or_else(|| self.deps.clock.now())));
            }
            Some(SmsEntry {
                state: SmsState::Sending,
                since,
                ended,
                ..
            }) => {
                // An earlier attempt may have sent it: the link carries the lead id (and a
                // follow-up's, its step).
                let earlier = self.twilio.messages_to(&lead.phone).await?;
                if let Some(message) = earlier.into_iter().find(|m| text.is_in(&m.body)) {
                    let at = self.deps.clock.now();
                    self.mark_sent(&key, message.sid.clone(), at).await?;
                    self.confirm_sent(text, &message.sid, &message.body).await?;
                    return Ok(Sent::At(at));
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
                    return Ok(Sent::Not(Outcome::Retry {
                        after: wait,
                        reason: "an earlier attempt's SMS request may still be in flight".into(),
                    }));
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
                        return Ok(Sent::Not(Outcome::Retry {
                            after: Duration::from_secs(2),
                            reason: "another sender took the text over".into(),
                        }));
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
        let words = self.words(text, &link);
        if words.chars().count() > MAX_SMS_CHARS {
            // Twilio refuses it (error 21617); a request that cannot succeed is not sent.
            let reason = format!(
                "the text would be {} characters; Twilio takes {MAX_SMS_CHARS}",
                words.chars().count()
            );
            self.report(text, "failed", reason.clone(), serde_json::Value::Null)
                .await?;
            return Ok(Sent::Not(Outcome::Poison(reason)));
        }
        match self.twilio.send_sms(&lead.phone, &words).await {
            Ok(message) => {
                let at = self.deps.clock.now();
                self.mark_sent(&key, message.sid.clone(), at).await?;
                tracing::info!(sid = %message.sid, step = text.step, "booking link texted");
                self.confirm_sent(text, &message.sid, &words).await?;
                Ok(Sent::At(at))
            }
            Err(TwilioError::Rejected { status, code, message }) => {
                let reason = format!("Twilio refused the SMS ({status}, code {code}): {message}");
                self.report(text, "failed", reason.clone(), serde_json::json!({ "code": code }))
                    .await?;
                Ok(Sent::Not(Outcome::Poison(reason)))
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
                Ok(Sent::Not(Outcome::Retry {
                    after: err.retry_after(),
                    reason: err.to_string(),
                }))
            }
        }
    }
}

/// The first texts and the follow-ups, each from its own durable consumer.
pub async fn run(deps: Deps, shutdown: CancellationToken) -> Result<(), SmsError> {
    let sender = &SmsSender::new(deps.clone()).await?;
    let gate = AgentStateStore::open(&deps.bus.js).await?.watch().await?;
    let lanes = || bus::Lanes::new(deps.settings.concurrency.sms, deps.settings.bus.max_handling);
    let first = |delivery: Delivery<LeadFinalized>| async move { sender.handle(&delivery).await };
    let later = |delivery: Delivery<FollowUp>| async move { sender.handle_followup(&delivery).await };
    let (texts, followups) = tokio::join!(
        bus::consume(
            &deps.bus,
            bus::stream::LEADS,
            bus::consumer::SMS,
            Some(gate.clone()),
            lanes(),
            first,
            shutdown.clone(),
        ),
        bus::consume(
            &deps.bus,
            bus::stream::LEADS,
            bus::consumer::FOLLOWUP,
            Some(gate),
            lanes(),
            later,
            shutdown,
        ),
    );
    texts?;
    followups?;
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
            language: Default::default(),
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
