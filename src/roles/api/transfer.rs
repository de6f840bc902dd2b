//! The warm transfer, on Twilio's webhooks under `/webhooks/twilio/transfer/`: after the last
//! question a lead who would be qualified, with a rep on duty, is asked whether to be put through;
//! a yes dials the rep (`<Dial answerOnBridge>`), who first hears a whisper with the lead's name
//! and answers and takes the call or declines it; the `<Dial>`'s end says whether they talked.
//! Each step moves the call's entry by compare-and-set and answers from the entry, so a webhook
//! Twilio repeats gets the same TwiML and changes nothing more.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use uuid::Uuid;

use super::twilio::{TwiML, TwilioRequest, action_url};
use super::{ApiContext, ApiError};
use crate::bus::Activity;
use crate::bus::kv::calls::{CallState, TransferPhase};
use crate::clients::twilio::twiml::{self, Verb};
use crate::domain::answers::interpret;
use crate::domain::qualification::{CallEnd, Verdict, assess};
use crate::domain::script::{AnswerType, Question, Script};

pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/webhooks/twilio/transfer/offer", post(lead_reply))
        .route("/webhooks/twilio/transfer/whisper", post(whisper))
        .route("/webhooks/twilio/transfer/rep", post(rep_reply))
        .route("/webhooks/twilio/transfer/dial-end", post(dial_end))
}

fn closing(script: &Script) -> Vec<Verb> {
    vec![Verb::Say(script.closing.clone()), Verb::Hangup]
}

/// Whether `said` is a yes, read as the script's yes/no answers are.
fn says_yes(said: Option<&str>) -> bool {
    let question = Question {
        id: "transfer".into(),
        prompt: String::new(),
        answer: AnswerType::YesNo,
        hints: Vec::new(),
        reask: None,
        synonyms: Default::default(),
    };
    let today = jiff::ZonedDateTime::now().date();
    said.is_some_and(|said| interpret(&question, said, today).value == serde_json::Value::Bool(true))
}

/// What follows the last answer: the offer of a transfer when the lead would be qualified and a
/// rep is on duty (once per call), else the closing.
pub(super) async fn after_last_question(
    ctx: &ApiContext,
    script: &Script,
    state: &CallState,
) -> Result<Vec<Verb>, ApiError> {
    let lead_id = state.lead_id;
    let offer = || {
        vec![
            Verb::Gather {
                action: action_url(ctx, "transfer/offer", lead_id),
                hints: script.transfer.offer_hints.clone(),
                prompt: vec![script.transfer.offer.clone()],
                keypad: false,
            },
            Verb::Redirect(action_url(ctx, "transfer/offer", lead_id)),
        ]
    };
    match state.transfer.as_ref().map(|t| t.phase) {
        // The last answer's webhook again: the same offer.
        Some(TransferPhase::Offered) => return Ok(offer()),
        Some(_) => return Ok(closing(script)),
        None => {}
    }
    let roster = ctx.config.roster().await;
    let Some(rep) = roster
        .on_duty(jiff::Timestamp::now(), &ctx.settings.calling_hours.fallback)
        .cloned()
    else {
        return Ok(closing(script));
    };
    let rules = ctx.config.rules().await;
    let day = state.call_day(&ctx.settings.calling_hours.fallback, time::OffsetDateTime::now_utc());
    let end = CallEnd {
        status: "completed",
        answered_by: state.answered_by.as_deref(),
        cut_off: false,
    };
    if assess(&rules, &state.read_answers(script, day), end, day).verdict != Verdict::Qualified {
        return Ok(closing(script));
    }
    let offered = ctx
        .calls
        .update(lead_id, |state| ((), state.offer_transfer(&rep)))
        .await?;
    match offered.and_then(|(state, ())| state.transfer) {
        Some(transfer) if transfer.phase == TransferPhase::Offered => {
            tracing::info!(%lead_id, rep = %transfer.rep_name, "warm transfer offered");
            Ok(offer())
        }
        _ => Ok(closing(script)),
    }
}

/// The lead's answer to the offer: a yes rings the rep, anything else (silence too) closes.
async fn lead_reply(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<TwiML, ApiError> {
    let lead_id = request.lead_id()?;
    let yes = says_yes(request.param("SpeechResult"));
    let (script, language) = super::script_of_call(&ctx, lead_id).await?;
    let Some((state, ())) = ctx
        .calls
        .update(lead_id, |state| ((), state.transfer_reply(yes)))
        .await?
    else {
        return Ok(TwiML(twiml::render_in(&[Verb::Hangup], language)));
    };
    let Some(transfer) = state.transfer.filter(|t| t.phase != TransferPhase::LeadDeclined) else {
        return Ok(TwiML(twiml::render_in(&closing(&script), language)));
    };
    let roster = ctx.config.roster().await;
    let caller_id = super::settings_now(&ctx).await?.twilio.from_number;
    tracing::info!(%lead_id, rep = %transfer.rep_name, "putting the lead through");
    Ok(TwiML(twiml::render_in(
        &[
            Verb::Say(script.transfer.connecting.clone()),
            Verb::Dial {
                caller_id,
                timeout_secs: roster.ring_secs,
                action: action_url(&ctx, "transfer/dial-end", lead_id),
                number: transfer.rep_phone,
                whisper: action_url(&ctx, "transfer/whisper", lead_id),
            },
        ],
        language,
    )))
}

/// The lead's answers in a few words for the rep: "Private office, 6 people, $2,000 a month".
fn summary(script: &Script, state: &CallState, ctx: &ApiContext) -> String {
    let day = state.call_day(&ctx.settings.calling_hours.fallback, time::OffsetDateTime::now_utc());
    let answers = state.read_answers(script, day);
    let words: Vec<String> = script
        .questions
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| answer.captured && !answer.value.is_null())
        .map(|(question, answer)| crate::domain::reading::in_words(&question.answer, &answer.value, true))
        .collect();
    if words.is_empty() {
        "no details captured".into()
    } else {
        words.join(", ")
    }
}

/// What the rep hears on picking up, before the lead is put through: who it is, and a choice.
async fn whisper(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<TwiML, ApiError> {
    let lead_id = request.lead_id()?;
    // The rep hears the whisper in English (the team's language), whatever the lead speaks.
    let (script, _) = super::script_of_call(&ctx, lead_id).await?;
    let Some((state, _)) = ctx.calls.get(lead_id).await? else {
        return Ok(TwiML(twiml::render(&[Verb::Hangup])));
    };
    let name = state
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("no name given");
    let words = script
        .transfer
        .whisper
        .replace("{name}", name)
        .replace("{summary}", &summary(&script, &state, &ctx));
    Ok(TwiML(twiml::render(&[
        Verb::Gather {
            action: rep_url(&ctx, lead_id),
            hints: vec!["yes".into(), "no".into()],
            prompt: vec![words],
            keypad: true,
        },
        Verb::Hangup,
    ])))
}

fn rep_url(ctx: &ApiContext, lead_id: Uuid) -> String {
    action_url(ctx, "transfer/rep", lead_id)
}

/// The rep's answer to the whisper: 1 or a yes bridges the call (an empty document ends the
/// whisper), anything else hangs up the rep's leg and the lead hears they will get a link.
async fn rep_reply(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<TwiML, ApiError> {
    let lead_id = request.lead_id()?;
    let accepts = request.param("Digits") == Some("1") || says_yes(request.param("SpeechResult"));
    let now = time::OffsetDateTime::now_utc();
    let state = ctx
        .calls
        .update(lead_id, |state| ((), state.rep_reply(accepts, now)))
        .await?;
    let taken = state
        .and_then(|(state, ())| state.transfer)
        .is_some_and(|t| matches!(t.phase, TransferPhase::RepAccepted | TransferPhase::Connected));
    if taken {
        return Ok(TwiML(twiml::render(&[])));
    }
    Ok(TwiML(twiml::render(&[
        Verb::Say("Okay, they'll get a link to book instead.".into()),
        Verb::Hangup,
    ])))
}

/// The `<Dial>` ended: a talk is recorded as the transfer (and stops the follow-up texts); a
/// rep who did not answer or declined leaves the lead with the booking link.
async fn dial_end(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<TwiML, ApiError> {
    let lead_id = request.lead_id()?;
    let status = request.param("DialCallStatus").unwrap_or("failed").to_owned();
    let bridged = request.param("DialBridged").map(|b| b == "true");
    let now = time::OffsetDateTime::now_utc();
    let (script, language) = super::script_of_call(&ctx, lead_id).await?;
    let Some((state, ())) = ctx
        .calls
        .update(lead_id, |state| ((), state.transfer_ended(&status, bridged, now)))
        .await?
    else {
        return Ok(TwiML(twiml::render_in(&[Verb::Hangup], language)));
    };
    let Some(transfer) = state.transfer else {
        return Ok(TwiML(twiml::render_in(&closing(&script), language)));
    };
    if transfer.phase != TransferPhase::Connected {
        tracing::info!(%lead_id, dial_status = %status, outcome = transfer.outcome(), "the rep did not take the lead");
        return Ok(TwiML(twiml::render_in(
            &[Verb::Say(script.transfer.unavailable.clone()), Verb::Hangup],
            language,
        )));
    }
    ctx.followup_stops.stop(lead_id, "transferred").await?;
    let mut entry = Activity::new(
        "lead.transferred",
        "api",
        format!(
            "talked with {} for {} s",
            transfer.rep_name,
            transfer.talked_secs.unwrap_or(0)
        ),
    );
    entry.id = Uuid::new_v5(&lead_id, b"lead.transferred");
    entry.lead_id = Some(lead_id);
    entry.detail = serde_json::json!({ "rep": transfer.rep_name, "talked_secs": transfer.talked_secs });
    ctx.bus.record(&entry).await;
    tracing::info!(%lead_id, rep = %transfer.rep_name, talked_secs = ?transfer.talked_secs, "lead transferred");
    Ok(TwiML(twiml::render_in(&[Verb::Hangup], language)))
}
