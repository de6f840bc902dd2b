//! A Twilio stand-in: the REST API's `Calls.json` and `Messages.json` (create, list) with Basic
//! auth, form validation and Twilio's error bodies; then it plays the callee. It fetches the call's `Url` with a correct
//! `X-Twilio-Signature`, follows the TwiML (`Say`, `Gather`, `Pause`, `Redirect`, `Hangup`),
//! answers each `Gather` from the number's persona, and sends signed status callbacks with a
//! `SequenceNumber`. Faults (error statuses, slow answers) can be injected per test, and every
//! REST answer can be given a latency, as Twilio's own takes about 150 ms.
//!
//! Answering-machine detection is played as Twilio does it: with `AsyncAmd=true` the call's
//! `Url` is fetched as soon as the callee picks up and the result is posted to
//! `AsyncAmdStatusCallback` a configurable delay later; `POST Calls/{Sid}.json` with `Url`
//! redirects the live call (its current TwiML is abandoned), with `Status=completed` ends it.
//! Without `AsyncAmd`, detection finishes before the `Url` is fetched, which carries `AnsweredBy`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;

use crate::twiml::{self, Verb};

mod dial;

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
    /// Takes the request and places the call only after this delay, then answers: until then
    /// the call is in no list, as with a request Twilio has not acted on yet.
    SlowCreate(Duration),
}

/// A live-call update (`POST Calls/{Sid}.json`).
#[derive(Debug, Clone, PartialEq)]
enum Update {
    Redirect(String),
    Hangup,
}

/// How long an answering machine's greeting keeps a `<Gather>` waiting before it ends in silence.
const MACHINE_GREETING: Duration = Duration::from_secs(2);

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
    /// When the `Calls.json` request came in.
    pub requested_at: Option<std::time::Instant>,
    /// Where the asynchronous detection's result goes (`AsyncAmd=true`).
    pub async_amd_callback: Option<String>,
    /// Everything said to the callee, in order.
    pub heard: Vec<String>,
    /// What the callee said, one entry per `<Gather>` (empty for silence).
    pub said: Vec<String>,
    /// The language each `<Gather>` listened in (`en-US` when it named none).
    pub gather_languages: Vec<String>,
    /// Final status: completed, busy, no-answer or failed.
    pub status: String,
    /// What happened on the call in order: `twiml <url path>`, `amd <AnsweredBy>`, `redirect <path>`, `hangup`.
    pub timeline: Vec<String>,
    /// Application errors met (a bad signature refused, unparsable TwiML...).
    pub errors: Vec<String>,
    pub date_created: String,
    /// Seconds from answer to hang-up, once the call has ended (Twilio's `duration`).
    pub duration: Option<u64>,
    /// What the detection said, when it ran.
    pub answered_by: Option<String>,
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

struct Shared {
    calls: Vec<CallRecord>,
    messages: Vec<MessageRecord>,
    personas: HashMap<String, Persona>,
    faults: VecDeque<Fault>,
    /// The share of creates that fail at random (see `set_fault_rate`).
    fault_rate: f64,
    slow_answer: Duration,
    /// Status callbacks are never delivered (a webhook lost on the way, the api down).
    status_callbacks_lost: bool,
    /// This many TwiML fetches fail as if the api answered 500 (Twilio then says "an application
    /// error has occurred" and hangs up).
    failing_twiml_fetches: usize,
    /// Added to every REST answer.
    latency: Duration,
    /// From pick-up to the asynchronous detection's result.
    amd_delay: Duration,
    /// How long a person takes to answer each question (none by default: tests run fast).
    speaking_time: Duration,
    /// How long a lead and a rep talk once a `<Dial>` bridged them.
    talk_time: Duration,
    /// How a dialled number with no persona of its own answers (none: it rings out).
    dial_default: Option<Persona>,
    /// `Calls.json` requests being answered now, and the most at once.
    calls_open: usize,
    calls_open_peak: usize,
    /// Live calls' update channels, by CallSid.
    live: HashMap<String, tokio::sync::mpsc::UnboundedSender<Update>>,
}

#[derive(Clone)]
struct StandIn {
    account_sid: String,
    auth_token: String,
    shared: Arc<Mutex<Shared>>,
    http: reqwest::Client,
}

struct OpenRequest(Arc<Mutex<Shared>>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let mut shared = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        shared.calls_open -= 1;
    }
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
        let shared = Shared {
            calls: Vec::new(),
            messages: Vec::new(),
            personas: HashMap::new(),
            faults: VecDeque::new(),
            fault_rate: 0.0,
            slow_answer: Duration::ZERO,
            status_callbacks_lost: false,
            failing_twiml_fetches: 0,
            latency: Duration::ZERO,
            amd_delay: Duration::from_millis(200),
            speaking_time: Duration::ZERO,
            talk_time: dial::TALK_TIME,
            dial_default: None,
            live: HashMap::new(),
            calls_open: 0,
            calls_open_peak: 0,
        };
        let state = StandIn {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            shared: Arc::new(Mutex::new(shared)),
            http: reqwest::Client::new(),
        };
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Calls.json",
                post(create_call).get(list_calls),
            )
            .route("/2010-04-01/Accounts/{account_file}", get(fetch_account))
            .route(
                "/2010-04-01/Accounts/{sid}/Calls/{call_sid}",
                post(update_call).get(fetch_call),
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

    /// Every REST answer from now on takes this long (Twilio's own: about 150 ms).
    pub fn set_latency(&self, latency: Duration) {
        self.shared().latency = latency;
    }

    /// How long after pick-up the asynchronous detection's result is posted.
    pub fn set_amd_delay(&self, delay: Duration) {
        self.shared().amd_delay = delay;
    }

    /// While set, no status callback is delivered; the calls still end (see `GET Calls/{Sid}.json`).
    pub fn lose_status_callbacks(&self, lost: bool) {
        self.shared().status_callbacks_lost = lost;
    }

    /// The next `count` TwiML fetches fail as if the webhook answered 500.
    pub fn fail_twiml_fetches(&self, count: usize) {
        self.shared().failing_twiml_fetches = count;
    }

    /// Each answer comes this long after its question, as a person's would.
    pub fn set_speaking_time(&self, time: Duration) {
        self.shared().speaking_time = time;
    }

    /// How long a lead and a rep talk once a `<Dial>` put them through.
    pub fn set_talk_time(&self, time: Duration) {
        self.shared().talk_time = time;
    }

    /// How a number put through to by `<Dial>` answers when no persona was set for it.
    pub fn set_dial_default(&self, persona: Persona) {
        self.shared().dial_default = Some(persona);
    }

    pub fn inject(&self, fault: Fault) {
        self.shared().faults.push_back(fault);
    }

    /// From now on, this share of `Calls.json` and `Messages.json` creates fails at random: half
    /// answer 500 having done nothing, half are done and answered only after `slow` (a client that
    /// times out first does not know it went through). 0 turns it off.
    pub fn set_fault_rate(&self, rate: f64, slow: Duration) {
        let mut shared = self.shared();
        shared.fault_rate = rate;
        shared.slow_answer = slow;
    }

    /// The most `Calls.json` requests that were open at once.
    pub fn peak_call_requests(&self) -> usize {
        self.shared().calls_open_peak
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

    /// The form of an authenticated create request, or Twilio's refusal (a whole response, as
    /// the handlers return it at once).
    #[allow(clippy::result_large_err)]
    fn authorized_form(&self, headers: &HeaderMap, sid: &str, body: &[u8]) -> Result<Vec<(String, String)>, Response> {
        if !self.authorized(headers, sid) {
            return Err(twilio_error(401, 20003, "Authenticate"));
        }
        serde_urlencoded::from_bytes(body).map_err(|_| twilio_error(400, 20001, "Could not parse the request body"))
    }

    /// Counts a `Calls.json` request as open until the guard drops; keeps the peak.
    fn open_call_request(&self) -> OpenRequest {
        let mut shared = self.lock();
        shared.calls_open += 1;
        shared.calls_open_peak = shared.calls_open_peak.max(shared.calls_open);
        OpenRequest(self.shared.clone())
    }

    async fn delay(&self) {
        let latency = self.lock().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The fault for this create: an injected one first, else one drawn at the fault rate.
    fn next_fault(&self) -> Option<Fault> {
        let mut shared = self.lock();
        if let Some(fault) = shared.faults.pop_front() {
            return Some(fault);
        }
        let draw = rand::random::<f64>();
        if draw < shared.fault_rate / 2.0 {
            Some(Fault::Status(500))
        } else if draw < shared.fault_rate {
            Some(Fault::SlowAnswer(shared.slow_answer))
        } else {
            None
        }
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
    let _open = standin.open_call_request();
    standin.delay().await;
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
    let fault = standin.next_fault();
    if let Some(Fault::Status(status)) = fault {
        return twilio_error(status, 20500, "An internal server error has occurred");
    }
    if let Some(Fault::SlowCreate(delay)) = fault {
        // Taken, and acted on later whether or not the client still waits (Twilio does not drop
        // a request whose connection closed): a task of its own, not the request's future.
        let later = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            place_call(standin, form, to, from, url, None).await
        });
        return later
            .await
            .unwrap_or_else(|_| twilio_error(500, 20500, "An internal server error has occurred"));
    }
    place_call(standin, form, to, from, url, fault).await
}

/// Records the call, starts its persona, and answers Twilio's `201 Created` body.
async fn place_call(
    standin: StandIn,
    form: Vec<(String, String)>,
    to: String,
    from: String,
    url: String,
    fault: Option<Fault>,
) -> Response {
    let one = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
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
        requested_at: Some(std::time::Instant::now()),
        async_amd_callback: one("AsyncAmd")
            .filter(|v| v == "true")
            .and_then(|_| one("AsyncAmdStatusCallback")),
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
    let (updates, updated) = tokio::sync::mpsc::unbounded_channel();
    standin.lock().live.insert(call_sid.clone(), updates);
    tokio::spawn(play(standin.clone(), call_sid.clone(), persona, updated));
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

/// `GET Accounts/{Sid}.json`: the account, for credentials that open it.
async fn fetch_account(
    State(standin): State<StandIn>,
    Path(account_file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(sid) = account_file.strip_suffix(".json") else {
        return twilio_error(404, 20404, "The requested resource was not found");
    };
    if !standin.authorized(&headers, sid) {
        return twilio_error(401, 20003, "Authenticate");
    }
    Json(json!({
        "sid": sid, "friendly_name": "leadq stand-in account", "status": "active", "type": "Full",
        "uri": format!("/2010-04-01/Accounts/{sid}.json"),
    }))
    .into_response()
}

/// `GET Calls/{Sid}.json`: one call as Twilio keeps it (how leadq learns the end of a call whose
/// status callback never came).
async fn fetch_call(
    State(standin): State<StandIn>,
    Path((sid, call_file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !standin.authorized(&headers, &sid) {
        return twilio_error(401, 20003, "Authenticate");
    }
    standin.delay().await;
    let call = call_file
        .strip_suffix(".json")
        .and_then(|call_sid| standin.lock().calls.iter().find(|c| c.sid == call_sid).cloned());
    let Some(c) = call else {
        return twilio_error(404, 20404, "The requested resource was not found");
    };
    Json(json!({
        "sid": c.sid, "account_sid": sid, "to": c.to, "from": c.from, "status": c.status,
        "date_created": c.date_created, "direction": "outbound-api",
        "duration": c.duration.map(|d| d.to_string()), "answered_by": c.answered_by,
    }))
    .into_response()
}

/// `POST Calls/{Sid}.json`: redirect a live call to new TwiML (`Url`) or end it (`Status=completed`).
async fn update_call(
    State(standin): State<StandIn>,
    Path((sid, call_file)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = match standin.authorized_form(&headers, &sid, &body) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    standin.delay().await;
    let Some(call_sid) = call_file.strip_suffix(".json").map(str::to_owned) else {
        return twilio_error(404, 20404, "The requested resource was not found");
    };
    let one = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let update = match (one("Url"), one("Status").as_deref()) {
        (Some(url), _) if reqwest::Url::parse(&url).is_ok() => Update::Redirect(url),
        (Some(url), _) => return twilio_error(400, 21205, &format!("Url is not a valid URL: {url}")),
        (None, Some("completed" | "canceled")) => Update::Hangup,
        _ => return twilio_error(400, 20001, "Url, Twiml or Status is required"),
    };
    let (live, record) = {
        let shared = standin.lock();
        (
            shared.live.get(&call_sid).cloned(),
            shared.calls.iter().find(|c| c.sid == call_sid).cloned(),
        )
    };
    let Some(record) = record else {
        return twilio_error(404, 20404, "The requested resource was not found");
    };
    // Twilio refuses to redirect a call that is no longer in progress.
    if live.is_none_or(|live| live.send(update).is_err()) {
        return twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.");
    }
    let body = json!({
        "sid": record.sid, "account_sid": standin.account_sid, "to": record.to, "from": record.from,
        "status": "in-progress", "date_created": record.date_created,
    });
    Json(body).into_response()
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
    standin.delay().await;
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
    let fault = standin.next_fault();
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
    if let Some(Fault::SlowAnswer(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
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
    standin.delay().await;
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
    standin.delay().await;
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
async fn play(
    standin: StandIn,
    sid: String,
    persona: Persona,
    mut updates: tokio::sync::mpsc::UnboundedReceiver<Update>,
) {
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
    let sequence = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let status = |standin: StandIn, event: &'static str, status: &'static str, extra: Vec<(String, String)>| {
        let (call, base, sequence) = (call.clone(), base.clone(), sequence.clone());
        async move {
            let Some(callback) = call.status_callback.as_deref() else {
                return;
            };
            if event != "completed" && !call.status_events.iter().any(|e| e == event) {
                return;
            }
            if standin.lock().status_callbacks_lost {
                standin.record(&call.sid, |c| c.timeline.push(format!("status {status} lost")));
                return;
            }
            let seq = sequence.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
        standin.record(&sid, |c| {
            c.status = terminal.into();
            c.duration = Some(0);
        });
        status(
            standin.clone(),
            "completed",
            terminal,
            vec![("CallDuration".into(), "0".into())],
        )
        .await;
        standin.lock().live.remove(&sid);
        return;
    }
    let machine = persona == Persona::Machine;
    let detected = match (machine, call.machine_detection.as_deref()) {
        (_, None) => None,
        (true, Some("DetectMessageEnd")) => Some("machine_end_beep"),
        (true, Some(_)) => Some("machine_start"),
        (false, Some(_)) => Some("human"),
    };
    let mut params = base.clone();
    params.push(("CallStatus".into(), "in-progress".into()));
    match (&call.async_amd_callback, detected) {
        // Asynchronous: the TwiML now, the detection's result later, beside the call.
        (Some(callback), Some(by)) => {
            let (standin, callback, mut amd) = (standin.clone(), callback.clone(), base.clone());
            let delay = standin.lock().amd_delay;
            let sid = sid.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                amd.push(("AnsweredBy".into(), by.into()));
                amd.push(("MachineDetectionDuration".into(), delay.as_millis().to_string()));
                standin.record(&sid, |c| c.timeline.push(format!("amd {by}")));
                if let Err(err) = standin.webhook(&callback, &amd).await {
                    standin.record(&sid, |c| c.errors.push(err));
                }
            });
        }
        // Synchronous: detection is over before the TwiML is fetched.
        (None, Some(by)) => params.push(("AnsweredBy".into(), by.into())),
        _ => {}
    }
    let answered = status(standin.clone(), "answered", "in-progress", vec![]);
    let started = std::time::Instant::now();
    let mut answers: VecDeque<(String, f32)> = match persona {
        Persona::Answers(answers) => answers.into(),
        _ => VecDeque::new(),
    };
    // Twilio fetches the TwiML and posts the `answered` event side by side.
    let (fetch_first, ()) = tokio::join!(fetch(&standin, &sid, &call.url, &params), answered);
    let mut document = fetch_first;
    // A bound on webhook round trips, as a long call would end anyway.
    'call: for _ in 0..64 {
        let Some(verbs) = document.take() else { break };
        let mut next: Option<(String, Vec<(String, String)>)> = None;
        for verb in verbs {
            // A live-call update abandons the current document at once.
            match updates.try_recv() {
                Ok(Update::Redirect(url)) => {
                    next = Some((url, in_progress(&base)));
                    standin.record(&sid, |c| {
                        c.timeline.push(format!(
                            "redirect {}",
                            path_of(&next.as_ref().map(|n| n.0.clone()).unwrap_or_default())
                        ))
                    });
                    break;
                }
                Ok(Update::Hangup) => {
                    standin.record(&sid, |c| c.timeline.push("hangup".into()));
                    break 'call;
                }
                Err(_) => {}
            }
            match verb {
                Verb::Say(text) => standin.record(&sid, |c| c.heard.push(text)),
                Verb::Pause => {}
                Verb::Hangup => break 'call,
                Verb::Redirect(target) => {
                    next = Some((target, in_progress(&base)));
                    break;
                }
                Verb::Dial {
                    action,
                    caller_id,
                    number,
                    url,
                    ..
                } => {
                    standin.record(&sid, |c| c.timeline.push(format!("dial {number}")));
                    let caller_id = caller_id.unwrap_or_else(|| call.from.clone());
                    let end = dial::dial(&standin, &call, &number, &caller_id, url.as_deref()).await;
                    standin.record(&sid, |c| c.timeline.push(format!("dial-end {}", end.status)));
                    // Without an action, Twilio goes on with the document (here: ends the call).
                    let Some(action) = action else { break 'call };
                    let mut p = in_progress(&base);
                    p.extend(end.params());
                    next = Some((action, p));
                    break;
                }
                Verb::Gather {
                    action,
                    prompt,
                    language,
                    ..
                } => {
                    let language = language.unwrap_or_else(|| "en-US".into());
                    standin.record(&sid, |c| {
                        c.heard.extend(prompt);
                        c.gather_languages.push(language);
                    });
                    let (speech, confidence) = answers.pop_front().unwrap_or_default();
                    let speaking = standin.lock().speaking_time;
                    if !machine && !speaking.is_zero() {
                        tokio::time::sleep(speaking).await;
                    }
                    standin.record(&sid, |c| c.said.push(speech.clone()));
                    if machine {
                        // A machine's greeting plays over the question; an update may come meanwhile.
                        tokio::select! {
                            update = updates.recv() => {
                                match update {
                                    Some(Update::Redirect(url)) => {
                                        standin.record(&sid, |c| c.timeline.push(format!("redirect {}", path_of(&url))));
                                        next = Some((url, in_progress(&base)));
                                        break;
                                    }
                                    Some(Update::Hangup) | None => {
                                        standin.record(&sid, |c| c.timeline.push("hangup".into()));
                                        break 'call;
                                    }
                                }
                            }
                            () = tokio::time::sleep(MACHINE_GREETING) => {}
                        }
                    }
                    let mut p = in_progress(&base);
                    p.push(("SpeechResult".into(), speech));
                    p.push(("Confidence".into(), confidence.to_string()));
                    next = Some((action.unwrap_or_else(|| call.url.clone()), p));
                    break;
                }
            }
        }
        let Some((url, params)) = next else { break };
        document = fetch(&standin, &sid, &url, &params).await;
    }
    standin.lock().live.remove(&sid);
    let seconds = started.elapsed().as_secs().max(1);
    let duration = seconds.to_string();
    standin.record(&sid, |c| {
        c.status = "completed".into();
        c.duration = Some(seconds);
        c.answered_by = detected.map(str::to_owned);
    });
    let mut extra = vec![("CallDuration".to_owned(), duration)];
    if let Some(by) = detected {
        extra.push(("AnsweredBy".into(), by.into()));
    }
    status(standin.clone(), "completed", "completed", extra).await;
}

fn in_progress(base: &[(String, String)]) -> Vec<(String, String)> {
    let mut params = base.to_vec();
    params.push(("CallStatus".into(), "in-progress".into()));
    params
}

fn path_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| url.to_owned())
}

/// Fetches TwiML as Twilio does; `None` (recorded as an error) ends the call.
async fn fetch(standin: &StandIn, sid: &str, url: &str, params: &[(String, String)]) -> Option<Vec<Verb>> {
    standin.record(sid, |c| c.timeline.push(format!("twiml {}", path_of(url))));
    let failing = {
        let mut shared = standin.lock();
        let failing = shared.failing_twiml_fetches > 0;
        shared.failing_twiml_fetches = shared.failing_twiml_fetches.saturating_sub(1);
        failing
    };
    if failing {
        standin.record(sid, |c| c.errors.push(format!("{url} answered 500 (injected)")));
        return None;
    }
    match standin.webhook(url, params).await.and_then(|xml| twiml::parse(&xml)) {
        Ok(verbs) => Some(verbs),
        Err(err) => {
            standin.record(sid, |c| c.errors.push(err));
            None
        }
    }
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
