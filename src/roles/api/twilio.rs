//! Twilio's webhooks, all under `/webhooks/twilio/`. Every request must carry a valid
//! `X-Twilio-Signature` over the public URL it was sent to and its form parameters; anything else
//! is refused with 403 before it can change anything. Answers move the call's entry in the
//! `calls` bucket by compare-and-set, so a webhook delivered twice is stored once.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::ApiContext;
use super::ApiError;
use crate::bus::kv::calls::{CallState, Hearing, Reask, Step};
use crate::bus::{Activity, CallAnswer, CallCompleted};
use crate::clients::twilio::signature;
use crate::clients::twilio::twiml::{self, Verb};
use crate::domain::answers::{clearly_answers, interpret};
use crate::domain::language::Language;
use crate::domain::script::{Question, Script};

pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/webhooks/twilio/call-start", post(call_start))
        .route("/webhooks/twilio/answer/{n}", post(answer))
        .route("/webhooks/twilio/call-status", post(call_status))
        .route("/webhooks/twilio/amd", post(machine_detection))
        .route("/webhooks/twilio/voicemail", post(voicemail))
        .route("/webhooks/twilio/sms", post(sms_reply))
}

/// A webhook whose signature checked out: its query and form parameters.
pub struct TwilioRequest {
    query: Vec<(String, String)>,
    params: Vec<(String, String)>,
}

impl TwilioRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(super) fn lead_id(&self) -> Result<Uuid, ApiError> {
        self.query
            .iter()
            .find(|(k, _)| k == "lead")
            .and_then(|(_, v)| Uuid::parse_str(v).ok())
            .ok_or_else(|| ApiError::bad_request("the webhook URL has no valid `lead` parameter".into()))
    }
}

impl FromRequest<ApiContext> for TwilioRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, ctx: &ApiContext) -> Result<Self, ApiError> {
        let forbidden = |why: &str| ApiError::forbidden(format!("Twilio signature {why}"));
        // Followed live: a token saved from the admin page counts at once, with no read per request;
        // while Twilio is the sandbox, the sandbox's token.
        let token = match ctx.sandbox.as_ref().and_then(|sandbox| sandbox.webhook_token()) {
            Some(token) => Some(token),
            None => ctx.twilio_token.borrow().clone(),
        };
        let Some(token) = token.as_ref() else {
            return Err(ApiError::forbidden(
                "Twilio is not configured (LEADQ_TWILIO__AUTH_TOKEN)".into(),
            ));
        };
        let given = request
            .headers()
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| forbidden("missing"))?;
        let path_and_query = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let query_string = request.uri().query().unwrap_or("").to_owned();
        // Twilio signs the URL it was given: the public one, not the address we listen on.
        let url = format!(
            "{}{}",
            ctx.settings.public_url.as_str().trim_end_matches('/'),
            path_and_query
        );
        let body = Bytes::from_request(request, ctx)
            .await
            .map_err(|e| ApiError::bad_request(format!("unreadable body: {e}")))?;
        let params: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&body).map_err(|_| forbidden("does not match a malformed body"))?;
        if !signature::verify(token.expose_secret(), &url, &params, &given) {
            return Err(forbidden("invalid"));
        }
        let query = serde_urlencoded::from_str(&query_string).unwrap_or_default();
        Ok(Self { query, params })
    }
}

pub(super) struct TwiML(pub(super) String);

impl IntoResponse for TwiML {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/xml")], self.0).into_response()
    }
}

pub(super) fn action_url(ctx: &ApiContext, path: &str, lead_id: Uuid) -> String {
    crate::clients::twilio::webhook_url(&ctx.settings.public_url, path, lead_id)
}

/// Asks question `n` (1-based), optionally after something said first.
fn ask(ctx: &ApiContext, script: &Script, n: usize, lead_id: Uuid, before: Vec<String>) -> Vec<Verb> {
    let Some(question) = script.question(n) else {
        return vec![Verb::Say(script.closing.clone()), Verb::Hangup];
    };
    let mut prompt = before;
    prompt.push(question.prompt.clone());
    gather(ctx, question, n, lead_id, prompt)
}

/// Listens for the answer to question `n` while `prompt` is said.
fn gather(ctx: &ApiContext, question: &Question, n: usize, lead_id: Uuid, prompt: Vec<String>) -> Vec<Verb> {
    vec![
        Verb::Gather {
            action: action_url(ctx, &format!("answer/{n}"), lead_id),
            hints: question.hints.clone(),
            prompt,
            keypad: false,
        },
        // Reached only if the Gather ends without posting; Twilio then posts nothing, so ask on.
        Verb::Redirect(action_url(ctx, &format!("answer/{n}"), lead_id)),
    ]
}

/// What follows the answer to question `n`: the next question not yet answered (an answer can
/// answer several), or after the last one the transfer offer or the closing.
async fn next_after(ctx: &ApiContext, script: &Script, n: usize, state: &CallState) -> Result<Vec<Verb>, ApiError> {
    if let Some(next) = state.next_unanswered(script, n) {
        return Ok(ask(ctx, script, next, state.lead_id, Vec::new()));
    }
    super::transfer::after_last_question(ctx, script, state).await
}

/// The other questions `said` answers beyond doubt (see `answers::clearly_answers`).
fn answers_elsewhere(script: &Script, asked: &Question, said: &str, day: jiff::civil::Date) -> Vec<String> {
    script
        .questions
        .iter()
        .filter(|q| q.id != asked.id && clearly_answers(q, said, day))
        .map(|q| q.id.clone())
        .collect()
}

async fn call_start(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<TwiML, ApiError> {
    let lead_id = request.lead_id()?;
    let book = &ctx.calls;
    let answered_by = request.param("AnsweredBy").map(str::to_owned);
    let machine = answered_by
        .as_deref()
        .is_some_and(|a| a.starts_with("machine") || a == "fax");
    // Only while an A/B test runs does a call get a variant (and its record one).
    let experiment = ctx.config.experiment().await;
    let variant = experiment.running().then(|| experiment.variant_for(lead_id));
    let spanish = &ctx.settings.spanish;
    let Some((state, ())) = book
        .update(lead_id, |state| {
            let now = time::OffsetDateTime::now_utc();
            let language = state.intake.as_ref().map_or(Language::En, |intake| {
                Language::of_lead(&intake.lead, &spanish.form_fields, &spanish.page_markers)
            });
            let chosen = variant.is_some_and(|v| state.choose_variant(v)) | state.speak(language, false);
            (
                (),
                state.first_words(answered_by.as_deref(), request.param("CallSid"), now) | chosen,
            )
        })
        .await?
    else {
        tracing::warn!(%lead_id, "call-start for a call leadq does not know; hanging up");
        return Ok(TwiML(twiml::render(&[Verb::Hangup])));
    };
    let language = state.language();
    let script = ctx.config.script_for(state.variant.as_deref(), language).await;
    let verbs = if machine {
        vec![Verb::Pause(1), Verb::Say(script.voicemail.clone()), Verb::Hangup]
    } else {
        ask(
            &ctx,
            &script,
            1,
            lead_id,
            vec![script.greeting_for(state.name.as_deref())],
        )
    };
    Ok(TwiML(twiml::render_in(&verbs, language)))
}

/// Phrases that mean "do not call me again", matched as whole words in what was said.
const OPT_OUT_PHRASES: &[&str] = &[
    "stop calling",
    "don't call",
    "do not call",
    "dont call",
    "remove me",
    "take me off",
    "unsubscribe",
    "never call",
];

fn asks_to_opt_out(speech: &str) -> bool {
    let words: Vec<String> = speech
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let said = format!(" {} ", words.join(" "));
    OPT_OUT_PHRASES
        .iter()
        .any(|phrase| said.contains(&format!(" {phrase} ")))
}

async fn answer(
    State(ctx): State<ApiContext>,
    Path(n): Path<String>,
    request: TwilioRequest,
) -> Result<TwiML, ApiError> {
    let lead_id = request.lead_id()?;
    let n: usize = n.parse().map_err(|_| ApiError::NotFound)?;
    let (script, language) = super::script_of_call(&ctx, lead_id).await?;
    let question = script.question(n).ok_or(ApiError::NotFound)?.clone();
    let speech = request
        .param("SpeechResult")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    // "¿En español?": the call goes on in the language asked for, with this question again.
    if let Some(asked) = speech
        .as_deref()
        .and_then(Language::asked_for)
        .filter(|l| *l != language)
        && let Some((state, ())) = ctx
            .calls
            .update(lead_id, |state| ((), state.speak(asked, true)))
            .await?
    {
        tracing::info!(%lead_id, language = asked.as_str(), "the lead asked for another language");
        let script = ctx.config.script_for(state.variant.as_deref(), asked).await;
        let verbs = ask(&ctx, &script, n, lead_id, vec![script.language_switch.clone()]);
        return Ok(TwiML(twiml::render_in(&verbs, asked)));
    }
    let confidence = request.param("Confidence").and_then(|c| c.parse::<f32>().ok());
    let heard = speech.is_some() && confidence.unwrap_or(0.0) >= ctx.settings.twilio.confidence_threshold;
    let day = jiff::Timestamp::now()
        .to_zoned_datetime(ctx.settings.calling_hours.fallback.clone())
        .date();
    let hearing = Hearing {
        speech: speech.as_deref(),
        confidence,
        heard,
        understood: speech
            .as_deref()
            .is_some_and(|said| interpret(&question, said, day).captured),
        also_answers: speech
            .as_deref()
            .map(|said| answers_elsewhere(&script, &question, said, day))
            .unwrap_or_default(),
        opt_out: speech.as_deref().is_some_and(asks_to_opt_out),
    };
    let book = &ctx.calls;
    let Some((state, step)) = book.update(lead_id, |state| state.hear(&question.id, &hearing)).await? else {
        return Ok(TwiML(twiml::render(&[Verb::Hangup])));
    };
    let verbs = match step {
        Step::Stored(heard_answer) => {
            let call_sid = state
                .call_sid
                .clone()
                .or_else(|| request.param("CallSid").map(str::to_owned));
            let message = CallAnswer {
                lead_id,
                call_sid: call_sid.unwrap_or_default(),
                question_id: heard_answer.question_id,
                speech: heard_answer.speech,
                confidence: heard_answer.confidence,
            };
            ctx.bus.publish(&message).await?;
            next_after(&ctx, &script, n, &state).await?
        }
        Step::AlreadyStored => next_after(&ctx, &script, n, &state).await?,
        Step::AskAgain(Reask::Unheard) => ask(&ctx, &script, n, lead_id, vec![script.reprompt.clone()]),
        Step::AskAgain(Reask::Unread) => {
            tracing::info!(%lead_id, question = %question.id, "the answer did not read; asking once more");
            gather(&ctx, &question, n, lead_id, vec![question.reask_words()])
        }
        Step::OptOut => {
            ctx.dnc.add(&state.phone, "asked on the call").await?;
            let mut entry = Activity::new("lead.opted_out", "api", "asked not to be called again");
            entry.lead_id = Some(lead_id);
            ctx.bus.publish(&entry).await?;
            vec![Verb::Say(script.opt_out.clone()), Verb::Hangup]
        }
    };
    Ok(TwiML(twiml::render_in(&verbs, language)))
}

/// Twilio's terminal call statuses; the others (queued, initiated, ringing, in-progress) pass.
const TERMINAL: &[&str] = &["completed", "busy", "no-answer", "failed", "canceled"];

async fn call_status(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<Response, ApiError> {
    let lead_id = request.lead_id()?;
    let status = request.param("CallStatus").unwrap_or("").to_owned();
    if status == "in-progress" {
        // The `answered` event: the start of the wait for the first words.
        ctx.calls
            .update(lead_id, |state| ((), state.answered(time::OffsetDateTime::now_utc())))
            .await?;
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    if !TERMINAL.contains(&status.as_str()) {
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    let book = &ctx.calls;
    let known = book.get(lead_id).await?.map(|(state, _)| state);
    // The asynchronous detection's verdict, when the final callback does not repeat it.
    let answered_by = request
        .param("AnsweredBy")
        .map(str::to_owned)
        .or_else(|| known.and_then(|state| state.answered_by));
    let completed = CallCompleted {
        lead_id,
        call_sid: request.param("CallSid").unwrap_or_default().to_owned(),
        status,
        duration_secs: request.param("CallDuration").and_then(|d| d.parse().ok()),
        answered_by,
        reconciled: false,
    };
    // On the stream first (its id is the CallSid: a repeated or late callback is dropped there);
    // a failure here leaves the entry dialed, and the watchdog learns the end from Twilio.
    ctx.bus.publish(&completed).await?;
    let now = time::OffsetDateTime::now_utc();
    let marked = book
        .update(lead_id, |state| {
            (
                (),
                state.complete(&completed.call_sid, completed.answered_by.as_deref(), now),
            )
        })
        .await;
    // The end is durable; the finalizer marks the entry if this could not.
    if let Err(err) = marked {
        tracing::warn!(%lead_id, %err, "call.completed published; its entry not marked (the finalizer will)");
    }
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// Asynchronous answering-machine detection's result, after the greeting already began. A
/// machine (after its beep, silence or other end of message) gets the voicemail: the live call
/// is redirected to it, once per call; a fax is hung up; a person or `unknown` goes on.
async fn machine_detection(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<Response, ApiError> {
    let lead_id = request.lead_id()?;
    let answered_by = request.param("AnsweredBy").unwrap_or("unknown").to_owned();
    let fax = answered_by == "fax";
    let Some((state, act)) = ctx
        .calls
        .update(lead_id, |state| state.machine_detected(&answered_by))
        .await?
    else {
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    };
    tracing::info!(%lead_id, answered_by, "answering-machine detection");
    if !act {
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    let call_sid = state
        .call_sid
        .clone()
        .or_else(|| request.param("CallSid").map(str::to_owned))
        .unwrap_or_default();
    let client = crate::clients::twilio::TwilioClient::new(&super::settings_now(&ctx).await?.twilio)
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let sent = if fax {
        client.hang_up(&call_sid).await
    } else {
        client
            .redirect_call(&call_sid, &action_url(&ctx, "voicemail", lead_id))
            .await
    };
    if let Err(err) = sent {
        // Unmarked, so Twilio's retry of this callback tries again.
        ctx.calls
            .update(lead_id, |state| ((), state.voicemail_failed()))
            .await?;
        return Err(ApiError::unavailable(format!(
            "the call could not be redirected: {err}"
        )));
    }
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// The voicemail, for a call redirected here after the machine's beep.
async fn voicemail(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<TwiML, ApiError> {
    let (script, language) = super::script_of_call(&ctx, request.lead_id()?).await?;
    Ok(TwiML(twiml::render_in(
        &[Verb::Say(script.voicemail.clone()), Verb::Hangup],
        language,
    )))
}

/// Replies that opt a number out of every later call and text, as carriers and Twilio define them.
const OPT_OUT_WORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const OPT_IN_WORDS: &[&str] = &["START", "UNSTOP"];

/// An SMS reply: STOP and its synonyms list the number at once; START takes it off again.
async fn sms_reply(State(ctx): State<ApiContext>, request: TwilioRequest) -> Result<TwiML, ApiError> {
    let from = request.param("From").unwrap_or_default().to_owned();
    let word = request
        .param("Body")
        .unwrap_or_default()
        .trim()
        .trim_end_matches(['.', '!'])
        .to_uppercase();
    let dnc = &ctx.dnc;
    let change = if OPT_OUT_WORDS.contains(&word.as_str()) {
        dnc.add(&from, "replied STOP by SMS").await?;
        Some(("lead.opted_out", "replied STOP: no more calls or texts"))
    } else if OPT_IN_WORDS.contains(&word.as_str()) {
        dnc.remove(&from).await?;
        Some(("lead.opted_in", "replied START: may be contacted again"))
    } else {
        None
    };
    if let Some((kind, summary)) = change {
        let mut entry = Activity::new(kind, "api", summary);
        entry.detail = serde_json::json!({ "phone": from });
        ctx.bus.publish(&entry).await?;
        tracing::info!(kind, "SMS reply handled");
    }
    // Twilio answers STOP/START itself; leadq adds nothing to the conversation.
    Ok(TwiML(twiml::render(&[])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_is_heard_in_whole_words_only() {
        assert!(asks_to_opt_out("Please stop calling me"));
        assert!(asks_to_opt_out("DON'T CALL this number again"));
        assert!(asks_to_opt_out("just remove me from your list"));
        assert!(!asks_to_opt_out("a private office please"));
        assert!(!asks_to_opt_out("nonstop calling is fine"), "a word inside another");
    }
}
