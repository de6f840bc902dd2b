//! The caller: `lead.received` to exactly one Twilio call per lead. The lead's entry in the `calls`
//! bucket moves `queued → dialing` by compare-and-set *before* the request and `dialing → dialed`
//! with the CallSid after it. A redelivered lead that finds `dialed` does nothing; one that finds
//! `dialing` (a crash or a timeout after the request) first asks Twilio for recent calls to the
//! number and adopts the call it finds, so an ambiguous request is never simply repeated.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::bus::kv::calls::{CallBook, CallPhase, CallState, Claim, DoNotContact, PhoneClaims, request_in_flight};
use crate::bus::kv::run_state::AgentStateStore;
use crate::bus::{self, Activity, Bus, Delivery, LeadReceived, Outcome};
use crate::clients::twilio::{CallResource, NewCall, TwilioClient, TwilioError};
use crate::config::Settings;

/// Twilio's `date_created` has whole seconds; look a little before the dialing mark.
const RECONCILE_SLACK: time::Duration = time::Duration::seconds(5);

pub use crate::roles::OutboundError as CallerError;

/// What the caller role is given by the composition root.
#[derive(Clone, Debug)]
pub struct Deps {
    pub settings: Arc<Settings>,
    pub bus: Bus,
    pub calls: CallBook,
    pub dnc: DoNotContact,
    /// Calls go to the sandbox's phone network, which rings no one: calling hours do not apply.
    pub sandboxed: bool,
}

pub struct Caller {
    deps: Deps,
    phones: PhoneClaims,
    twilio: TwilioClient,
}

impl Caller {
    pub async fn new(deps: Deps) -> Result<Self, CallerError> {
        let phones = PhoneClaims::open(&deps.bus.js).await?;
        let twilio = TwilioClient::new(&deps.settings.twilio)?;
        Ok(Self { deps, phones, twilio })
    }

    fn webhook(&self, path: &str, lead: &LeadReceived) -> String {
        crate::clients::twilio::webhook_url(&self.deps.settings.public_url, path, lead.lead_id)
    }

    async fn report(&self, lead: &LeadReceived, kind: &str, summary: String, detail: serde_json::Value) {
        let mut entry = Activity::new(kind, "caller", summary);
        entry.lead_id = Some(lead.lead_id);
        entry.detail = detail;
        self.deps.bus.record(&entry).await;
    }

    /// One lead; public so tests can drive it without the consume loop.
    pub async fn handle(&self, delivery: &Delivery<LeadReceived>) -> Outcome {
        let lead = &delivery.payload;
        let span = tracing::info_span!("call", lead_id = %lead.lead_id, attempt = delivery.attempt);
        match self.call_once(lead).instrument(span).await {
            Ok(outcome) => outcome,
            Err(err) => err.retry(),
        }
    }

    async fn call_once(&self, lead: &LeadReceived) -> Result<Outcome, CallerError> {
        let phone = lead.lead.phone.as_str();
        if self.deps.dnc.contains(phone).await? {
            tracing::info!("on the do-not-contact list; not calling");
            self.report(
                lead,
                "call.skipped",
                "not called: on the do-not-contact list".into(),
                serde_json::json!({}),
            )
            .await;
            return Ok(Outcome::Done);
        }
        let window = self.deps.settings.resubmit_window;
        if let Claim::Taken { first } = self.phones.claim(phone, lead.lead_id, window, lead.force).await? {
            return self.record_resubmission(lead, first).await;
        }
        let queued = CallState {
            intake: Some(Box::new(lead.clone())),
            attempt: lead.attempt,
            ..CallState::queued(lead.lead_id, phone, lead.lead.name.as_deref())
        };
        self.deps.calls.create(&queued).await?;
        let Some((state, _)) = self.deps.calls.get(lead.lead_id).await? else {
            return Ok(Outcome::Retry {
                after: Duration::from_secs(1),
                reason: "call entry vanished".into(),
            });
        };
        if lead.attempt < state.attempt {
            tracing::info!(
                entry = state.attempt,
                message = lead.attempt,
                "a message for an earlier try; nothing to do"
            );
            return Ok(Outcome::Done);
        }
        if lead.attempt > state.attempt {
            // The finalizer publishes the retry before it resets the entry: wait for the reset.
            return Ok(Outcome::Retry {
                after: Duration::from_secs(2),
                reason: "the call entry is not reset yet".into(),
            });
        }
        match state.phase {
            CallPhase::Dialed | CallPhase::Completed => {
                tracing::info!(call_sid = ?state.call_sid, "already called; nothing to do");
                return Ok(Outcome::Done);
            }
            CallPhase::Dialing => {
                if let Some(call) = self.reconcile(phone, state.updated_at).await? {
                    tracing::info!(call_sid = %call.sid, "found the call an earlier attempt placed");
                    self.mark_dialed(lead, &call).await?;
                    return Ok(Outcome::Done);
                }
                // Twilio lists none: place it, unless an earlier request may still create one.
                let in_flight_for = self.deps.settings.twilio.slowest_request();
                let now = OffsetDateTime::now_utc();
                let moved = self
                    .deps
                    .calls
                    .update(lead.lead_id, |s| {
                        let ours = s.redial(now, in_flight_for);
                        (ours, ours)
                    })
                    .await?;
                let current = match moved {
                    Some((_, true)) => None,
                    Some((current, false)) => Some(current),
                    None => {
                        return Ok(Outcome::Retry {
                            after: Duration::from_secs(1),
                            reason: "call entry vanished".into(),
                        });
                    }
                };
                if let Some(current) = current {
                    // Still dialing: wait out the earlier request; moved on meanwhile (placed by
                    // the other attempt): decide again at once.
                    let left = (current.phase == CallPhase::Dialing)
                        .then(|| {
                            request_in_flight(current.updated_at, current.dial_ended_at.is_some(), now, in_flight_for)
                        })
                        .flatten();
                    let wait = left.unwrap_or_default().max(Duration::from_secs(1));
                    tracing::info!(
                        ?wait,
                        "an earlier attempt's call request may still be in flight; looking again then"
                    );
                    return Ok(Outcome::Retry {
                        after: wait,
                        reason: "an earlier attempt's call request may still be in flight".into(),
                    });
                }
            }
            CallPhase::Queued => {
                if let Some(outcome) = self.defer_outside_calling_hours(lead).await {
                    return Ok(outcome);
                }
                let moved = self
                    .deps
                    .calls
                    .update(lead.lead_id, |s| {
                        let ours = s.start_dialing();
                        (ours, ours)
                    })
                    .await?;
                if !matches!(moved, Some((_, true))) {
                    // Another replica moved it first; decide again on the next delivery.
                    return Ok(Outcome::Retry {
                        after: Duration::from_secs(2),
                        reason: "raced another caller".into(),
                    });
                }
            }
        }
        self.dial(lead).await
    }

    /// The same person submitted again inside the resubmit window: no second call. The new
    /// submission is recorded on the first lead: the activity entry is what the lead's record
    /// (its `resubmissions`, and the fields the first submission lacked) is made from.
    async fn record_resubmission(&self, lead: &LeadReceived, first: Uuid) -> Result<Outcome, CallerError> {
        tracing::info!(%first, "the number has a lead inside the resubmit window; not calling again");
        let mut entry = Activity::new(
            "lead.resubmitted",
            "caller",
            format!("submitted again ({}); not called twice", source_name(lead.source)),
        );
        // One entry per resubmission, however often it is delivered.
        entry.id = Uuid::new_v5(&first, lead.lead_id.as_bytes());
        entry.lead_id = Some(first);
        entry.detail = serde_json::json!({
            "resubmitted_lead_id": lead.lead_id,
            "source": lead.source,
            "at": lead.timestamps.published_at.unix_timestamp(),
            "lead": lead.lead,
        });
        self.deps.bus.publish(&entry).await?;
        Ok(Outcome::Done)
    }

    /// Outside the lead's calling window: record the decision and hold the lead until it opens.
    async fn defer_outside_calling_hours(&self, lead: &LeadReceived) -> Option<Outcome> {
        let now = jiff::Timestamp::now();
        // A retry waits for its time, then for the calling window.
        let not_before = lead
            .not_before
            .and_then(|t| jiff::Timestamp::from_second(t.unix_timestamp()).ok())
            .filter(|t| *t > now);
        let earliest = not_before.unwrap_or(now);
        let outside = self
            .deps
            .settings
            .calling_hours
            .next_allowed(lead.lead.phone.as_str(), earliest);
        let outside = match outside {
            // Calling hours keep real people from being rung at night; the sandbox rings no one,
            // so a test lead at 2 a.m. is called at once (the decision is still logged).
            Some(next) if self.deps.sandboxed => {
                tracing::info!(%next, "outside calling hours, but Twilio is the sandbox: calling now");
                None
            }
            other => other,
        };
        let next = match outside {
            Some(next) => next,
            None if not_before.is_some() => earliest,
            None => return None,
        };
        let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::from_secs(60));
        tracing::info!(%next, "outside calling hours; deferred");
        let detail = serde_json::json!({ "call_after": next.to_string() });
        self.report(
            lead,
            "call.deferred",
            format!("outside calling hours; will call after {next}"),
            detail,
        )
        .await;
        Some(Outcome::Retry {
            after: wait,
            reason: format!("outside calling hours until {next}"),
        })
    }

    /// Places the call (the client retries 429/5xx at once, which Twilio guarantees did nothing).
    async fn dial(&self, lead: &LeadReceived) -> Result<Outcome, CallerError> {
        let (url, status_callback) = (self.webhook("call-start", lead), self.webhook("call-status", lead));
        let amd_callback = self.webhook("amd", lead);
        let request = NewCall {
            to: lead.lead.phone.as_str(),
            url: &url,
            status_callback: &status_callback,
            amd_callback: &amd_callback,
        };
        match self.twilio.create_call(&request).await {
            Ok(call) => {
                self.mark_dialed(lead, &call).await?;
                let placed_in = OffsetDateTime::now_utc() - lead.timestamps.published_at;
                tracing::info!(call_sid = %call.sid, placed_after_ms = placed_in.whole_milliseconds(), "call placed");
                let detail = serde_json::json!({ "call_sid": call.sid, "placed_at": OffsetDateTime::now_utc().unix_timestamp() });
                self.report(
                    lead,
                    "call.placed",
                    format!("called {}", lead.lead.phone.as_str()),
                    detail,
                )
                .await;
                Ok(Outcome::Done)
            }
            Err(TwilioError::Rejected { status, code, message }) => {
                let reason = format!("Twilio refused the call ({status}, code {code}): {message}");
                self.report(lead, "call.failed", reason.clone(), serde_json::json!({ "code": code }))
                    .await;
                Ok(Outcome::Poison(reason))
            }
            // The entry stays `dialing`, and the next delivery reconciles with Twilio before any
            // new request. Unreachable or busy (a 5xx, 429), the request did nothing: marked as
            // over, so the call is placed again at once. Unanswered, Twilio may still act on it
            // (a timeout is seen under load before the create): not marked, so no new request
            // goes out until this one must have been acted on.
            Err(err) => {
                if matches!(err, TwilioError::Unreachable(_) | TwilioError::Transient { .. }) {
                    let ended = OffsetDateTime::now_utc();
                    if let Err(e) = self
                        .deps
                        .calls
                        .update(lead.lead_id, |s| ((), s.dial_ended(ended)))
                        .await
                    {
                        tracing::warn!(err = %e, "the end of the call request not recorded");
                    }
                }
                Ok(Outcome::Retry {
                    after: err.retry_after(),
                    reason: err.to_string(),
                })
            }
        }
    }

    async fn reconcile(&self, phone: &str, dialing_since: OffsetDateTime) -> Result<Option<CallResource>, CallerError> {
        let since = dialing_since - RECONCILE_SLACK;
        let calls = self.twilio.calls_to(phone).await?;
        Ok(calls.into_iter().find(|call| {
            call.date_created
                .as_deref()
                .and_then(|d| OffsetDateTime::parse(d, &time::format_description::well_known::Rfc2822).ok())
                .is_some_and(|created| created >= since)
        }))
    }

    async fn mark_dialed(&self, lead: &LeadReceived, call: &CallResource) -> Result<(), CallerError> {
        let placed_at = OffsetDateTime::now_utc();
        self.deps
            .calls
            .update(lead.lead_id, |s| ((), s.dialed(&call.sid, placed_at)))
            .await?;
        Ok(())
    }
}

fn source_name(source: bus::LeadSource) -> &'static str {
    match source {
        bus::LeadSource::Email => "email",
        bus::LeadSource::CmoTrigger => "CMO trigger",
        bus::LeadSource::AdminTestEmail => "test email",
        bus::LeadSource::UnbounceWebhook => "Unbounce webhook",
    }
}

pub async fn run(deps: Deps, shutdown: CancellationToken) -> Result<(), CallerError> {
    let caller = &Caller::new(deps.clone()).await?;
    let handler = |delivery: Delivery<LeadReceived>| async move { caller.handle(&delivery).await };
    let gate = AgentStateStore::open(&deps.bus.js).await?.watch().await?;
    bus::consume(
        &deps.bus,
        bus::stream::LEADS,
        bus::consumer::CALLER,
        Some(gate),
        bus::Lanes::new(deps.settings.concurrency.caller, deps.settings.bus.max_handling),
        handler,
        shutdown,
    )
    .await?;
    Ok(())
}
