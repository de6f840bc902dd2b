//! A Twilio stand-in: the REST API's `Calls.json` and `Messages.json` (create, list) with Basic
//! auth, form validation and Twilio's error bodies; then it plays the callee. It fetches the call's `Url` with a correct
//! `X-Twilio-Signature`, follows the TwiML (`Say`, `Gather`, `Pause`, `Redirect`, `Hangup`),
//! answers each `Gather` from the number's persona, and sends signed status callbacks with a
//! `SequenceNumber`. Faults (error statuses, slow answers) can be injected per test.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;

use crate::twiml::{self, Verb};

/// How the callee behaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Persona {
    /// Picks up and says these, one per question (an empty string is silence).
    Answers(Vec<(String, f32)>),
    /// An answering machine: hears the message after the beep.
    Machine,
    Busy,
    NoAnswer,
    Failed,
}

impl Persona {
    pub fn answers(spoken: &[&str]) -> Self {
        Self::Answers(
            spoken
                .iter()
                .map(|s| ((*s).to_owned(), if s.is_empty() { 0.0 } else { 0.9 }))
                .collect(),
        )
    }
}

/// An injected fault for the next `Calls.json` create.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answers with this status and Twilio's error body; the call is not placed.
    Status(u16),
    /// Places the call, then answers only after this delay (a client timing out sees no answer).
    SlowAnswer(Duration),
}

/// One placed call and what happened on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallRecord {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub url: String,
    pub status_callback: Option<String>,
    pub status_events: Vec<String>,
    pub machine_detection: Option<String>,
    /// Everything said to the callee, in order.
    pub heard: Vec<String>,
    /// Final status: completed, busy, no-answer or failed.
    pub status: String,
    /// Application errors met (a bad signature refused, unparsable TwiML...).
    pub errors: Vec<String>,
    pub date_created: String,
}

/// One accepted SMS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageRecord {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    pub date_created: String,
}

#[derive(Default)]
struct Shared {
    calls: Vec<CallRecord>,
    messages: Vec<MessageRecord>,
    personas: HashMap<String, Persona>,
    faults: VecDeque<Fault>,
}

#[derive(Clone)]
struct StandIn {
    account_sid: String,
    auth_token: String,
    shared: Arc<Mutex<Shared>>,
    http: reqwest::Client,
}

/// A running stand-in; stops when dropped.
pub struct TwilioStandIn {
    addr: SocketAddr,
    state: StandIn,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TwilioStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TwilioStandIn {
    /// Listens on `127.0.0.1:port` (0 for any free port).
    pub async fn start(account_sid: &str, auth_token: &str, port: u16) -> std::io::Result<Self> {
        let state = StandIn {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            shared: Arc::default(),
            http: reqwest::Client::new(),
        };
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Calls.json",
                post(create_call).get(list_calls),
            )
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(create_message).get(list_messages),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "twilio stand-in stopped");
            }
        });
        Ok(Self { addr, state, server })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_persona(&self, to: &str, persona: Persona) {
        self.shared().personas.insert(to.into(), persona);
    }

    pub fn inject(&self, fault: Fault) {
        self.shared().faults.push_back(fault);
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared().calls.clone()
    }

    pub fn messages(&self) -> Vec<MessageRecord> {
        self.shared().messages.clone()
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn twilio_error(status: u16, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

impl StandIn {
    fn authorized(&self, headers: &HeaderMap, sid: &str) -> bool {
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.account_sid, self.auth_token));
        sid == self.account_sid
            && headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == format!("Basic {expected}"))
    }

    /// The form of an authenticated create request, or Twilio's refusal.
    fn authorized_form(&self, headers: &HeaderMap, sid: &str, body: &[u8]) -> Result<Vec<(String, String)>, Response> {
        if !self.authorized(headers, sid) {
            return Err(twilio_error(401, 20003, "Authenticate"));
        }
        serde_urlencoded::from_bytes(body).map_err(|_| twilio_error(400, 20001, "Could not parse the request body"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        let mut sorted = params.to_vec();
        sorted.sort();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.auth_token.as_bytes()).expect("any key length");
        mac.update(url.as_bytes());
        for (k, v) in &sorted {
            mac.update(k.as_bytes());
            mac.update(v.as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// POSTs signed form parameters to a webhook; returns the body of a 2xx answer.
    async fn webhook(&self, url: &str, params: &[(String, String)]) -> Result<String, String> {
        let response = self
            .http
            .post(url)
            .header("X-Twilio-Signature", self.sign(url, params))
            .form(params)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{url} answered {status}: {body}"))
        }
    }

    fn record<F: FnOnce(&mut CallRecord)>(&self, sid: &str, change: F) {
        if let Some(call) = self.lock().calls.iter_mut().find(|c| c.sid == sid) {
            change(call);
        }
    }
}

fn is_e164(number: &str) -> bool {
    number.len() >= 8
        && number.len() <= 16
        && number.starts_with('+')
        && number[1..].chars().all(|c| c.is_ascii_digit())
}

async fn create_call(
    State(standin): State<StandIn>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = match standin.authorized_form(&headers, &sid, &body) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let one = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let Some(to) = one("To") else {
        return twilio_error(400, 21201, "No 'To' number is specified");
    };
    let Some(from) = one("From") else {
        return twilio_error(400, 21603, "A 'From' phone number is required.");
    };
    let Some(url) = one("Url") else {
        return twilio_error(400, 21205, "Url parameter is required.");
    };
    if !is_e164(&to) {
        return twilio_error(400, 21211, &format!("Invalid 'To' Phone Number: {to}"));
    }
    if !is_e164(&from) {
        return twilio_error(400, 21212, &format!("Invalid 'From' Phone Number: {from}"));
    }
    if reqwest::Url::parse(&url).is_err() {
        return twilio_error(400, 21205, &format!("Url is not a valid URL: {url}"));
    }
    let fault = standin.lock().faults.pop_front();
    if let Some(Fault::Status(status)) = fault {
        return twilio_error(status, 20500, "An internal server error has occurred");
    }
    let call_sid = format!("CA{:032x}", rand::random::<u128>());
    let date_created = now_rfc2822();
    let record = CallRecord {
        sid: call_sid.clone(),
        to: to.clone(),
        from: from.clone(),
        url,
        status_callback: one("StatusCallback"),
        status_events: form
            .iter()
            .filter(|(k, _)| k == "StatusCallbackEvent")
            .map(|(_, v)| v.clone())
            .collect(),
        machine_detection: one("MachineDetection"),
        status: "queued".into(),
        date_created: date_created.clone(),
        ..CallRecord::default()
    };
    let persona = {
        let mut shared = standin.lock();
        shared.calls.push(record);
        shared
            .personas
            .get(&to)
            .cloned()
            .unwrap_or_else(|| Persona::answers(&["yes"; 5]))
    };
    tokio::spawn(play(standin.clone(), call_sid.clone(), persona));
    let body = json!({
        "sid": call_sid, "account_sid": standin.account_sid, "to": to, "from": from,
        "status": "queued", "date_created": date_created, "direction": "outbound-api",
        "uri": format!("/2010-04-01/Accounts/{}/Calls/{call_sid}.json", standin.account_sid),
    });
    if let Some(Fault::SlowAnswer(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    (StatusCode::CREATED, Json(body)).into_response()
}

fn now_rfc2822() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

/// Twilio's limit on one message body (it splits longer texts into segments of 153).
const MAX_BODY_CHARS: usize = 1600;

async fn create_message(
    State(standin): State<StandIn>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = match standin.authorized_form(&headers, &sid, &body) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let one = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let Some(to) = one("To") else {
        return twilio_error(400, 21604, "A 'To' phone number is required.");
    };
    let Some(from) = one("From").or_else(|| one("MessagingServiceSid")) else {
        return twilio_error(400, 21603, "A 'From' phone number is required.");
    };
    let Some(text) = one("Body").filter(|b| !b.is_empty()) else {
        return twilio_error(400, 21602, "Message body is required.");
    };
    if !is_e164(&to) {
        return twilio_error(400, 21211, &format!("Invalid 'To' Phone Number: {to}"));
    }
    if text.chars().count() > MAX_BODY_CHARS {
        return twilio_error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    let fault = standin.lock().faults.pop_front();
    if let Some(Fault::Status(status)) = fault {
        return twilio_error(status, 20500, "An internal server error has occurred");
    }
    let record = MessageRecord {
        sid: format!("SM{:032x}", rand::random::<u128>()),
        to,
        from,
        body: text,
        date_created: now_rfc2822(),
    };
    standin.lock().messages.push(record.clone());
    let segments = record.body.chars().count().div_ceil(153).max(1);
    let body = json!({
        "sid": record.sid, "account_sid": standin.account_sid, "to": record.to, "from": record.from,
        "body": record.body, "status": "queued", "num_segments": segments.to_string(),
        "direction": "outbound-api", "date_created": record.date_created,
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn list_messages(
    State(standin): State<StandIn>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !standin.authorized(&headers, &sid) {
        return twilio_error(401, 20003, "Authenticate");
    }
    let messages: Vec<_> = standin
        .lock()
        .messages
        .iter()
        .rev()
        .filter(|m| query.get("To").is_none_or(|to| &m.to == to))
        .map(|m| {
            json!({ "sid": m.sid, "to": m.to, "from": m.from, "body": m.body, "status": "delivered",
                    "date_created": m.date_created })
        })
        .collect();
    Json(json!({ "messages": messages, "page": 0, "page_size": messages.len() })).into_response()
}

async fn list_calls(
    State(standin): State<StandIn>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !standin.authorized(&headers, &sid) {
        return twilio_error(401, 20003, "Authenticate");
    }
    let calls: Vec<_> = standin
        .lock()
        .calls
        .iter()
        .rev()
        .filter(|c| query.get("To").is_none_or(|to| &c.to == to))
        .map(
            |c| json!({ "sid": c.sid, "to": c.to, "from": c.from, "status": c.status, "date_created": c.date_created }),
        )
        .collect();
    Json(json!({ "calls": calls, "page": 0, "page_size": calls.len() })).into_response()
}

/// Plays one call to its end, as the callee and the phone network would.
async fn play(standin: StandIn, sid: String, persona: Persona) {
    let Some(call) = standin.lock().calls.iter().find(|c| c.sid == sid).cloned() else {
        return;
    };
    let base = vec![
        ("CallSid".to_owned(), sid.clone()),
        ("AccountSid".to_owned(), standin.account_sid.clone()),
        ("From".to_owned(), call.from.clone()),
        ("To".to_owned(), call.to.clone()),
        ("Direction".to_owned(), "outbound-api".to_owned()),
    ];
    let mut sequence = 0;
    let mut status = |standin: StandIn, event: &'static str, status: &'static str, extra: Vec<(String, String)>| {
        let (call, base, seq) = (call.clone(), base.clone(), sequence);
        sequence += 1;
        async move {
            let Some(callback) = call.status_callback.as_deref() else {
                return;
            };
            if event != "completed" && !call.status_events.iter().any(|e| e == event) {
                return;
            }
            let mut params = base;
            params.push(("CallStatus".into(), status.into()));
            params.push(("SequenceNumber".into(), seq.to_string()));
            params.extend(extra);
            if let Err(err) = standin.webhook(callback, &params).await {
                standin.record(&call.sid, |c| c.errors.push(err));
            }
        }
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    status(standin.clone(), "initiated", "initiated", vec![]).await;
    status(standin.clone(), "ringing", "ringing", vec![]).await;
    let terminal = match &persona {
        Persona::Busy => Some("busy"),
        Persona::NoAnswer => Some("no-answer"),
        Persona::Failed => Some("failed"),
        _ => None,
    };
    if let Some(terminal) = terminal {
        standin.record(&sid, |c| c.status = terminal.into());
        status(
            standin.clone(),
            "completed",
            terminal,
            vec![("CallDuration".into(), "0".into())],
        )
        .await;
        return;
    }
    let answered_by = match (&persona, call.machine_detection.is_some()) {
        (_, false) => None,
        (Persona::Machine, true) => Some("machine_end_beep"),
        (_, true) => Some("human"),
    };
    let mut params = base.clone();
    params.push(("CallStatus".into(), "in-progress".into()));
    if let Some(by) = answered_by {
        params.push(("AnsweredBy".into(), by.into()));
    }
    status(standin.clone(), "answered", "in-progress", vec![]).await;
    let started = std::time::Instant::now();
    let mut answers: VecDeque<(String, f32)> = match persona {
        Persona::Answers(answers) => answers.into(),
        _ => VecDeque::new(),
    };
    let mut next = Some((call.url.clone(), params));
    // A bound on webhook round trips, as a long call would end anyway.
    for _ in 0..64 {
        let Some((url, params)) = next.take() else { break };
        let document = match standin.webhook(&url, &params).await.and_then(|xml| twiml::parse(&xml)) {
            Ok(verbs) => verbs,
            Err(err) => {
                standin.record(&sid, |c| c.errors.push(err));
                break;
            }
        };
        for verb in document {
            match verb {
                Verb::Say(text) => standin.record(&sid, |c| c.heard.push(text)),
                Verb::Pause => {}
                Verb::Hangup => break,
                Verb::Redirect(target) => {
                    let mut p = base.clone();
                    p.push(("CallStatus".into(), "in-progress".into()));
                    next = Some((target, p));
                    break;
                }
                Verb::Gather { action, prompt, .. } => {
                    standin.record(&sid, |c| c.heard.extend(prompt));
                    let (speech, confidence) = answers.pop_front().unwrap_or_default();
                    let mut p = base.clone();
                    p.push(("CallStatus".into(), "in-progress".into()));
                    p.push(("SpeechResult".into(), speech));
                    p.push(("Confidence".into(), confidence.to_string()));
                    next = Some((action.unwrap_or_else(|| url.clone()), p));
                    break;
                }
            }
        }
    }
    let duration = started.elapsed().as_secs().max(1).to_string();
    standin.record(&sid, |c| c.status = "completed".into());
    let mut extra = vec![("CallDuration".to_owned(), duration)];
    if let Some(by) = answered_by {
        extra.push(("AnsweredBy".into(), by.into()));
    }
    status(standin.clone(), "completed", "completed", extra).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    async fn post(base: &str, auth: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{base}/2010-04-01/Accounts/{SID}/Messages.json"))
            .basic_auth(SID, Some(auth))
            .form(form)
            .send()
            .await
            .expect("post");
        (response.status().as_u16(), response.json().await.unwrap_or_default())
    }

    #[tokio::test]
    async fn messages_are_validated_like_twilio_and_recorded() {
        let standin = TwilioStandIn::start(SID, "token", 0).await.expect("start");
        let base = standin.base_url();
        let ok = [
            ("To", "+14155550142"),
            ("From", "+15005550006"),
            ("Body", "Book your tour"),
        ];
        let (status, body) = post(&base, "token", &ok).await;
        assert_eq!(status, 201, "{body}");
        assert!(body["sid"].as_str().is_some_and(|s| s.starts_with("SM")));
        assert_eq!(post(&base, "wrong", &ok).await.0, 401);
        let (status, body) = post(&base, "token", &[("To", "+14155550142"), ("From", "+15005550006")]).await;
        assert_eq!((status, body["code"].as_i64()), (400, Some(21602)), "{body}");
        let long = "x".repeat(1601);
        let (status, body) = post(
            &base,
            "token",
            &[("To", "+14155550142"), ("From", "+15005550006"), ("Body", &long)],
        )
        .await;
        assert_eq!((status, body["code"].as_i64()), (400, Some(21617)));
        standin.inject(Fault::Status(503));
        assert_eq!(post(&base, "token", &ok).await.0, 503);
        assert_eq!(standin.messages().len(), 1);
    }

    #[tokio::test]
    async fn a_call_without_from_is_refused_with_twilios_code() {
        let standin = TwilioStandIn::start(SID, "token", 0).await.expect("start");
        let response = reqwest::Client::new()
            .post(format!("{}/2010-04-01/Accounts/{SID}/Calls.json", standin.base_url()))
            .basic_auth(SID, Some("token"))
            .form(&[("To", "+14155550142"), ("Url", "https://x.test/")])
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["code"], 21603);
        assert!(body["more_info"].as_str().is_some_and(|m| m.contains("21603")));
        assert!(standin.calls().is_empty());
    }
}
