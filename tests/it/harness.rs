//! The one way the integration tests start leadq: `spawn_api` (the api role on a fresh NATS
//! server, through `app::start_api` as `leadq api` starts it), `spawn_agent` (the api and the
//! roles a test names, each through `app::start_role`, against the Twilio and Airtable
//! stand-ins) and `spawn_all` (`app::run` with every role, as `leadq all`), each with request
//! helpers that speak to the process over HTTP as a client would.

use std::time::Duration;

use leadq::app::Role;
use leadq::bus::{self, Bus, CallCompleted};
use leadq::clients::twilio::signature;
use leadq::config::Settings;
use leadq::domain::clock::Clock;
use leadq::roles::api::ApiContext;
use reqwest::Method;
use serde_json::{Value, json};
use standins::airtable::AirtableStandIn;
use standins::twilio::TwilioStandIn;
use tokio_util::sync::CancellationToken;

use crate::helpers::{NatsServer, capture_logs, eventually, on_free_port, on_stream};

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "stand-in-auth-token";
pub const AIRTABLE_TOKEN: &str = "pat-stand-in";
pub const AIRTABLE_BASE: &str = "appLeadqCalls0001";

/// A running leadq: its HTTP base URL, the api's context (the same buckets and store the
/// process uses), and its NATS server; everything stops when it is dropped.
pub struct TestApp {
    pub base: String,
    pub ctx: ApiContext,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub nats: NatsServer,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The api role alone, with the store, on settings `adjust` may change.
pub async fn spawn_api(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let nats = NatsServer::start();
    let mut settings = nats.settings();
    on_free_port(&mut settings);
    adjust(&mut settings);
    Box::pin(spawn_roles(nats, settings, &[], Clock::System)).await
}

/// Starts the api role as `leadq api` does, then `roles` beside it as `leadq all` does, all on
/// `clock`'s time.
async fn spawn_roles(nats: NatsServer, settings: Settings, roles: &[Role], clock: Clock) -> TestApp {
    capture_logs();
    let base = settings.public_url.as_str().trim_end_matches('/').to_owned();
    let shutdown = CancellationToken::new();
    // Boxed: the store's connect future is large, and tests run on small thread stacks.
    let mut ctx = Box::pin(leadq::app::Context::build(settings, true))
        .await
        .expect("context");
    ctx.clock = clock;
    let mut tasks = tokio::task::JoinSet::new();
    let api = Box::pin(leadq::app::start_api(&ctx, &shutdown, &mut tasks))
        .await
        .expect("the api role");
    keep_until_done(tasks);
    let app = TestApp {
        base,
        ctx: api,
        http: reqwest::Client::new(),
        shutdown,
        nats,
    };
    for &role in roles {
        app.start(role).await;
    }
    app
}

/// A set aborts its tasks when dropped: this keeps them until they end (with the shutdown),
/// logging a role that failed.
fn keep_until_done(mut tasks: tokio::task::JoinSet<Result<(), leadq::app::RuntimeError>>) {
    tokio::spawn(async move {
        while let Some(ended) = tasks.join_next().await {
            if let Ok(Err(err)) = ended {
                tracing::warn!(%err, "a role failed");
            }
        }
    });
}

/// Every role through `app::run`, as `leadq all` runs them (the sandbox too when no outside
/// account is configured), once `/readyz` answers; `ctx` is a second view on its buckets.
pub async fn spawn_all(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    capture_logs();
    let nats = NatsServer::start();
    let mut settings = nats.settings();
    let base = on_free_port(&mut settings);
    adjust(&mut settings);
    let shutdown = CancellationToken::new();
    tokio::spawn(leadq::app::run(settings.clone(), &Role::ALL, shutdown.clone()));
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "the api", || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let shared = Box::pin(leadq::app::Context::build(settings, false))
        .await
        .expect("context");
    let ctx = shared.api_context().await.expect("the api's buckets");
    TestApp {
        base,
        ctx,
        http,
        shutdown,
        nats,
    }
}

impl TestApp {
    pub fn bus(&self) -> &Bus {
        &self.ctx.bus
    }

    /// What the CMO agent reads: `GET /api/cmo/<path>` with a fresh API key; status and body.
    pub async fn cmo_get(&self, path: &str) -> (u16, Value) {
        let keys = leadq::security::api_keys::ApiKeys::open(&self.bus().js)
            .await
            .expect("keys");
        let (key, _) = keys.create("cmo", Vec::new(), 600).await.expect("key");
        self.call_with_key(Method::GET, &format!("/api/cmo/{path}"), Some(&key), None)
            .await
    }

    /// A request to the process; `bearer` signs it in as the admin page does; a JSON body.
    pub async fn call(&self, method: Method, path: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request).await
    }

    /// A request as the CMO agent sends it: its `X-API-Key`, and a body sent as it is (so a
    /// test can send malformed JSON).
    pub async fn call_with_key(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_owned());
        }
        answer(request).await
    }

    /// Signs in on the admin page's API: the status and the answer (with `access_token`).
    pub async fn login(&self, username: &str, password: &str) -> (u16, Value) {
        let body = json!({ "username": username, "password": password });
        self.call(Method::POST, "/api/auth/login", None, Some(body)).await
    }

    /// POSTs a Twilio webhook form, signed with `token` as Twilio signs it when given one.
    pub async fn twilio_webhook(
        &self,
        path_and_query: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
    ) -> (u16, String) {
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let url = format!("{}{path_and_query}", self.base);
        let mut request = self.http.post(&url).form(&params);
        if let Some(token) = token {
            request = request.header("X-Twilio-Signature", signature::sign(token, &url, &params));
        }
        let response = request.send().await.expect("webhook");
        (response.status().as_u16(), response.text().await.expect("body"))
    }
}

/// The status and the body: JSON, else its text as a JSON string.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A running leadq whose outside services are the Twilio and Airtable stand-ins.
pub struct TestAgent {
    pub app: TestApp,
    pub twilio: TwilioStandIn,
    pub airtable: AirtableStandIn,
}

impl std::ops::Deref for TestAgent {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// The api and `roles`, against the stand-ins, on the settings every call test shares.
pub async fn spawn_agent(roles: &[Role]) -> TestAgent {
    Box::pin(spawn_agent_with(roles, |_| {})).await
}

/// As `spawn_agent`, with the settings adjusted first (an inbox, a retry ladder, ...).
pub async fn spawn_agent_with(roles: &[Role], adjust: impl FnOnce(&mut Settings)) -> TestAgent {
    Box::pin(spawn_agent_at(Clock::System, roles, adjust)).await
}

/// As `spawn_agent_with`, with the roles judging time by `clock` (a test's, moved by hand).
pub async fn spawn_agent_at(clock: Clock, roles: &[Role], adjust: impl FnOnce(&mut Settings)) -> TestAgent {
    let nats = NatsServer::start();
    let twilio = TwilioStandIn::start(TWILIO_SID, TWILIO_TOKEN, 0)
        .await
        .expect("stand-in");
    let airtable = AirtableStandIn::start(AIRTABLE_TOKEN).await.expect("airtable stand-in");
    let mut settings = nats.settings();
    on_free_port(&mut settings);
    settings.twilio.api_base = twilio.base_url().parse().expect("url");
    settings.twilio.account_sid = Some(TWILIO_SID.into());
    settings.twilio.auth_token = Some(TWILIO_TOKEN.to_owned().into());
    settings.twilio.from_number = Some("+15005550006".into());
    settings.twilio.request_timeout = Duration::from_secs(1);
    settings.airtable.api_base = airtable.base_url().parse().expect("url");
    settings.airtable.token = Some(AIRTABLE_TOKEN.to_owned().into());
    settings.airtable.base_id = Some(AIRTABLE_BASE.into());
    // Tests run at any hour: the whole day is calling time unless a test says otherwise.
    settings.calling_hours.start = jiff::civil::Time::MIN;
    settings.calling_hours.end = jiff::civil::Time::MAX;
    // Busy and unanswered calls are final unless a test sets a retry ladder.
    settings.retry_ladder = Vec::new();
    adjust(&mut settings);
    let app = Box::pin(spawn_roles(nats, settings, roles, clock)).await;
    TestAgent { app, twilio, airtable }
}

impl TestAgent {
    pub async fn calls_stream<P: bus::Payload>(&self) -> Vec<P> {
        on_stream(self.bus(), bus::stream::CALLS).await
    }

    /// Every `lead.finalized`, once there are at least `count`.
    pub async fn finalized(&self, count: usize) -> Vec<bus::LeadFinalized> {
        eventually(Duration::from_secs(60), "leads finalized", || async {
            on_stream::<bus::LeadFinalized>(self.bus(), bus::stream::LEADS)
                .await
                .len()
                >= count
        })
        .await;
        on_stream(self.bus(), bus::stream::LEADS).await
    }

    /// Every `call.completed`, once there are at least `count`.
    pub async fn completed(&self, count: usize) -> Vec<CallCompleted> {
        eventually(Duration::from_secs(20), "call.completed", || async {
            self.calls_stream::<CallCompleted>().await.len() >= count
        })
        .await;
        self.calls_stream().await
    }
}

impl TestApp {
    /// Starts one more role in this process, through `app::start_role` as production does; it
    /// stops with the others.
    pub async fn start(&self, role: Role) {
        self.start_stoppable(role).await;
    }

    /// As `start`; cancelling the token stops this role alone (as its process ending would).
    pub async fn start_stoppable(&self, role: Role) -> CancellationToken {
        let stop = self.shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        Box::pin(leadq::app::start_role(role, &self.ctx, &stop, &mut tasks))
            .await
            .expect("a role");
        keep_until_done(tasks);
        stop
    }
}

/// Worker roles alone, no api, as `leadq poller` or `leadq caller` runs them (the store opened
/// only when a role needs it), on the settings given.
pub struct TestWorkers {
    pub ctx: leadq::app::Context,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<Result<(), leadq::app::RuntimeError>>,
}

pub async fn spawn_workers(settings: Settings, roles: &[Role]) -> TestWorkers {
    capture_logs();
    let with_store = roles.iter().any(|r| r.uses_store());
    let ctx = Box::pin(leadq::app::Context::build(settings, with_store))
        .await
        .expect("context");
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for &role in roles {
        Box::pin(leadq::app::start_role(role, &ctx, &shutdown, &mut tasks))
            .await
            .expect("a role");
    }
    TestWorkers { ctx, shutdown, tasks }
}

impl TestWorkers {
    /// Whether every role is still at work (none has ended, well or not).
    pub fn all_running(&mut self) -> bool {
        self.tasks.try_join_next().is_none()
    }

    /// Stops the roles as a shutdown does: each must end, and end well, within 20 s.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(joined) = self.tasks.join_next().await {
                joined.expect("join").expect("a role's result");
            }
        });
        ended.await.expect("the roles stop on shutdown");
    }
}

impl Drop for TestWorkers {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
