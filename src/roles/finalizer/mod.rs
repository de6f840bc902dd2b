//! The finalizer: `call.completed` to a verdict, the lead's record in the store, and
//! `lead.finalized`. It reads the answers from the call's `calls` entry, reads each one with the
//! answer types of the script, applies the rules, and writes the lead and its call by upsert on
//! their ids, so a redelivered `call.completed` rewrites the same record and publishes the same
//! `lead.finalized` (deduplicated by the stream) instead of doing anything twice.

pub mod crm;

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::bus::kv::calls::{CallBook, CallPhase, CallState};
use crate::bus::kv::lease::Leases;
use crate::bus::kv::run_state::AgentStateStore;
use crate::bus::{self, Activity, Bus, BusError, CallCompleted, Delivery, LeadFinalized, LeadReceived, Outcome};
use crate::clients::airtable::AirtableClient;
use crate::clients::twilio::TwilioClient;
use crate::config::Settings;
use crate::domain::qualification::{Assessment, CallEnd, assess};
use crate::domain::script::Script;
use crate::roles::finalizer::crm::CrmSync;
use crate::store::shared_config::SharedConfig;
use crate::store::{FinalizedLead, LeadTransfer, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FinalizerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the finalizer role is given by the composition root.
#[derive(Clone, Debug)]
pub struct Deps {
    pub settings: Arc<Settings>,
    pub bus: Bus,
    pub store: Store,
    pub calls: CallBook,
    /// The script and rules the calls were made with.
    pub config: SharedConfig,
}

pub struct Finalizer {
    deps: Deps,
    /// Nudges the CRM sync after each record, so a lead reaches Airtable at once.
    crm_wake: Arc<Notify>,
    /// Where a call whose status callback never came is looked up; None without credentials.
    twilio: Option<TwilioClient>,
}

/// Twilio's final call statuses.
const TERMINAL_STATUSES: [&str; 5] = ["completed", "busy", "no-answer", "failed", "canceled"];

/// Whether a person picked up and leadq let them down: its first words never went out (the
/// call-start webhook failed), or the call's end had to be learnt from Twilio and questions were
/// left unasked. Such a call is tried again, or filed `interrupted`, never `no_answer`.
fn cut_off(completed: &CallCompleted, state: &CallState, script: &Script) -> bool {
    let machine = completed
        .answered_by
        .as_deref()
        .is_some_and(|a| a.starts_with("machine") || a == "fax");
    let person = completed.status == "completed" && !machine;
    let unheard = state.first_words_at.is_none();
    let unfinished = completed.reconciled && state.answers.len() < script.questions.len() && !state.opted_out;
    person && (unheard || unfinished)
}

impl Finalizer {
    pub fn new(deps: Deps) -> Self {
        let twilio = match TwilioClient::new(&deps.settings.twilio) {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::warn!(%err, "calls whose status callback is lost are finalized by the watchdog only");
                None
            }
        };
        Self {
            deps,
            crm_wake: Arc::new(Notify::new()),
            twilio,
        }
    }

    /// One finished call; public so tests can drive it without the consume loop.
    pub async fn handle(&self, delivery: &Delivery<CallCompleted>) -> Outcome {
        let completed = &delivery.payload;
        let span = tracing::info_span!("finalize", lead_id = %completed.lead_id, status = %completed.status);
        match self.finalize(completed).instrument(span).await {
            Ok(outcome) => outcome,
            Err(err) => Outcome::Retry {
                after: Duration::from_secs(5),
                reason: err.to_string(),
            },
        }
    }

    async fn finalize(&self, completed: &CallCompleted) -> Result<Outcome, FinalizerError> {
        let Some((state, _)) = self.deps.calls.get(completed.lead_id).await? else {
            return Ok(Outcome::Poison(format!(
                "no call entry for lead {} (expired or never placed)",
                completed.lead_id
            )));
        };
        let Some(intake) = state.intake.clone().map(|boxed| *boxed) else {
            return Ok(Outcome::Poison(format!(
                "the call entry of lead {} has no lead details",
                completed.lead_id
            )));
        };
        if !state.is_current_call(&completed.call_sid) {
            tracing::info!("a completion of an earlier try, already handled");
            return Ok(Outcome::Done);
        }
        // Its publisher marks the entry after the event is on the stream; this may come first.
        let state = if state.phase == CallPhase::Completed {
            state
        } else {
            let now = OffsetDateTime::now_utc();
            let answered_by = completed.answered_by.as_deref();
            match self
                .deps
                .calls
                .update(completed.lead_id, |s| {
                    ((), s.complete(&completed.call_sid, answered_by, now))
                })
                .await?
            {
                Some((marked, ())) if marked.phase == CallPhase::Completed => marked,
                _ => {
                    tracing::info!("a completion of an earlier try, already handled");
                    return Ok(Outcome::Done);
                }
            }
        };
        let script = self
            .deps
            .config
            .script_for(state.variant.as_deref(), state.language())
            .await;
        let cut_off = cut_off(completed, &state, &script);
        let try_again = matches!(completed.status.as_str(), "busy" | "no-answer") || cut_off;
        if try_again && let Some(wait) = self.deps.settings.retry_ladder.get(state.attempt as usize) {
            let status = if cut_off {
                "interrupted"
            } else {
                completed.status.as_str()
            };
            return self.schedule_retry(&intake, &state, status, *wait).await;
        }
        let rules = self.deps.config.rules().await;
        let finalized_at = OffsetDateTime::now_utc();
        let call_day = state.call_day(&self.deps.settings.calling_hours.fallback, finalized_at);
        let answers = state.read_answers(&script, call_day);
        let end = CallEnd {
            status: &completed.status,
            answered_by: completed.answered_by.as_deref(),
            cut_off,
        };
        let Assessment {
            score,
            verdict,
            reasons,
        } = assess(&rules, &answers, end, call_day);
        let record = FinalizedLead {
            lead: intake.clone(),
            call: completed.clone(),
            answers,
            score,
            verdict: verdict.as_str().to_owned(),
            reasons,
            placed_at: state.placed_at,
            finalized_at,
            answered_to_first_words_ms: state.answered_to_first_words_ms(),
            script_variant: state.variant.clone(),
            language: state.language().as_str().to_owned(),
            transfer: state.transfer.as_ref().map(|t| LeadTransfer {
                outcome: t.outcome().to_owned(),
                rep_name: t.rep_name.clone(),
                rep_phone: t.rep_phone.clone(),
                talked_secs: t.talked_secs,
                dial_status: t.dial_status.clone(),
            }),
        };
        self.deps.store.save_finalized(&record).await?;
        self.crm_wake.notify_one();
        let message = LeadFinalized {
            lead_id: intake.lead_id,
            phone: intake.lead.phone.as_str().to_owned(),
            name: intake.lead.name.clone().unwrap_or_default(),
            email: intake.lead.email.clone(),
            verdict: verdict.as_str().to_owned(),
            score,
            campaign_id: intake.lead.campaign_id.clone(),
            language: state.language(),
        };
        self.deps.bus.publish(&message).await?;
        let mut entry = Activity::new(
            "lead.finalized",
            "finalizer",
            format!("{}: score {score}", verdict.as_str()),
        );
        entry.lead_id = Some(intake.lead_id);
        self.deps.bus.record(&entry).await;
        tracing::info!(verdict = verdict.as_str(), score, "lead finalized");
        Ok(Outcome::Done)
    }
}

impl Finalizer {
    /// Busy or no answer with tries left: the lead goes back on `lead.received` as the next try,
    /// due after `wait`. The retry is published before the entry is reset, so a crash between the
    /// two repeats the (deduplicated) publish on redelivery instead of losing the lead.
    async fn schedule_retry(
        &self,
        intake: &LeadReceived,
        tried: &CallState,
        status: &str,
        wait: Duration,
    ) -> Result<Outcome, FinalizerError> {
        let next_attempt = tried.attempt + 1;
        let due = OffsetDateTime::now_utc() + wait;
        let retry = LeadReceived {
            attempt: next_attempt,
            not_before: Some(due),
            ..intake.clone()
        };
        self.deps.bus.publish(&retry).await?;
        self.deps
            .calls
            .update(intake.lead_id, |s| ((), s.requeue(tried, next_attempt)))
            .await?;
        tracing::info!(status, attempt = next_attempt, ?wait, "calling again later");
        let mut entry = Activity::new(
            "call.retry_scheduled",
            "finalizer",
            format!("{status}: calling again at {due}"),
        );
        entry.lead_id = Some(intake.lead_id);
        self.deps.bus.record(&entry).await;
        Ok(Outcome::Done)
    }

    /// The watchdog's sweep over `dialed` calls. One with no news for `reconcile_after` is looked
    /// up at Twilio (`GET Calls/{Sid}.json`): if Twilio has ended it, its end is reported on
    /// `call.completed` as the lost status callback would have; a live one is left. One with no
    /// news for `give_up_after` (Twilio unreachable all along) is reported anyway, completed if
    /// the lead picked up, no-answer otherwise. The end goes on the stream first, then the entry
    /// is marked completed: a sweep that fails between the two reports it again on its next
    /// pass, and the stream drops the repeat (and a late real callback) by its message id.
    pub async fn sweep(&self, reconcile_after: Duration, give_up_after: Duration) -> Result<usize, FinalizerError> {
        let now = OffsetDateTime::now_utc();
        let mut reported = 0;
        for lead_id in self.deps.calls.lead_ids().await? {
            let Some((state, _)) = self.deps.calls.get(lead_id).await? else {
                continue;
            };
            if state.phase != CallPhase::Dialed || state.updated_at > now - reconcile_after {
                continue;
            }
            let Some(end) = self.learn_end(&state, state.updated_at < now - give_up_after).await else {
                continue;
            };
            tracing::warn!(%lead_id, status = %end.status, "no status callback from Twilio; finalizing from what Twilio says");
            self.deps.bus.publish(&end).await?;
            let now = OffsetDateTime::now_utc();
            self.deps
                .calls
                .update(lead_id, |s| {
                    ((), s.complete(&end.call_sid, end.answered_by.as_deref(), now))
                })
                .await?;
            reported += 1;
        }
        Ok(reported)
    }

    /// How a silent call ended: Twilio's own record of it, or (`giving_up`) a best guess when
    /// Twilio cannot tell; None while the call is still live or Twilio may yet answer.
    async fn learn_end(&self, state: &CallState, giving_up: bool) -> Option<CallCompleted> {
        let call_sid = state.call_sid.clone().unwrap_or_default();
        let looked_up = match (&self.twilio, call_sid.is_empty()) {
            (Some(twilio), false) => match twilio.call(&call_sid).await {
                Ok(call) => Some(call),
                Err(err) => {
                    tracing::warn!(lead_id = %state.lead_id, %err, "could not look the call up at Twilio");
                    None
                }
            },
            _ => None,
        };
        match looked_up {
            Some(call) if TERMINAL_STATUSES.contains(&call.status.as_str()) => Some(CallCompleted {
                lead_id: state.lead_id,
                call_sid,
                status: call.status,
                duration_secs: call.duration.and_then(|d| d.parse().ok()),
                answered_by: call.answered_by.or_else(|| state.answered_by.clone()),
                reconciled: true,
            }),
            // Still ringing or talking at Twilio: not ours to end, however long.
            Some(_) => None,
            None if giving_up => {
                let picked_up =
                    state.answered_at.is_some() || state.first_words_at.is_some() || !state.answers.is_empty();
                Some(CallCompleted {
                    lead_id: state.lead_id,
                    call_sid,
                    status: if picked_up { "completed" } else { "no-answer" }.into(),
                    duration_secs: None,
                    answered_by: state.answered_by.clone(),
                    reconciled: true,
                })
            }
            None => None,
        }
    }

    async fn watchdog(&self, shutdown: CancellationToken) {
        let every =
            (self.deps.settings.call_reconcile_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            let settings = &self.deps.settings;
            if let Err(err) = self.sweep(settings.call_reconcile_after, settings.call_watchdog).await {
                tracing::warn!(%err, "call watchdog sweep failed");
            }
        }
    }
}

pub async fn run(deps: Deps, shutdown: CancellationToken) -> Result<(), FinalizerError> {
    let finalizer = &Finalizer::new(deps.clone());
    let airtable = &deps.settings.airtable;
    let merge_on = airtable.fields.get("lead_id").map(String::as_str).unwrap_or("Lead ID");
    match AirtableClient::new(
        &airtable.api_base,
        airtable.token.as_ref(),
        airtable.base_id.as_deref(),
        &airtable.table,
        merge_on,
    ) {
        Ok(client) => {
            let sync = CrmSync {
                store: deps.store.clone(),
                bus: deps.bus.clone(),
                airtable: client,
                columns: airtable.fields.clone(),
                leases: Leases::open(&deps.bus.js, deps.settings.instance.clone()).await?,
                poll: airtable.poll,
            };
            tokio::spawn(sync.run(finalizer.crm_wake.clone(), shutdown.clone()));
        }
        Err(err) => tracing::warn!(%err, "no CRM sync: finalized leads stay `pending` in the store"),
    }
    let gate = AgentStateStore::open(&deps.bus.js).await?.watch().await?;
    let handler = |delivery: Delivery<CallCompleted>| async move { finalizer.handle(&delivery).await };
    let consume = bus::consume(
        &deps.bus,
        bus::stream::CALLS,
        bus::consumer::FINALIZER,
        Some(gate),
        bus::Lanes::new(deps.settings.concurrency.finalizer, deps.settings.bus.max_handling),
        handler,
        shutdown.clone(),
    );
    let (consumed, ()) = tokio::join!(consume, finalizer.watchdog(shutdown));
    consumed?;
    Ok(())
}
