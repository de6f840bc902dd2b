//! The CMO agent's REST interface on the real api role: the seed's contract, keys, bad input.

use leadq::bus::kv::run_state::{AgentState, AgentStateStore};
use leadq::bus::{self, LeadReceived};
use leadq::security::api_keys::ApiKeys;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{TestApp, spawn_api};
use crate::helpers::{NatsServer, on_stream};

/// The api role and one CMO API key, as the CMO agent is given one.
async fn spawn_with_key() -> (TestApp, String) {
    let api = spawn_api(|_| {}).await;
    let (key, _) = ApiKeys::open(&api.ctx.bus.js)
        .await
        .expect("keys")
        .create("cmo", Vec::new(), leadq::security::api_keys::DEFAULT_RATE_PER_MINUTE)
        .await
        .expect("key");
    (api, key)
}

/// The state in the agent bucket now.
async fn agent_state(api: &TestApp) -> AgentState {
    let store = AgentStateStore::open(&api.ctx.bus.js).await.expect("agent bucket");
    store.get().await.expect("agent state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_the_seeds_contract() {
    let (api, key) = spawn_with_key().await;
    let (code, status) = api
        .call_with_key(reqwest::Method::GET, "/api/cmo/status", Some(&key), None)
        .await;
    assert_eq!(code, 200, "{status}");
    for (field, value) in [
        ("agent_id", json!("lead-qualification-agent-001")),
        ("agent_name", json!("Mesh Cowork Lead Qualifier")),
        ("agent_type", json!("lead_qualification")),
        ("role", json!("account_executive")),
        ("department", json!("cmo")),
        ("status", json!("active")),
    ] {
        assert_eq!(status[field], value, "{field}");
    }
    for metric in ["calls_today", "sms_today", "leads_today"] {
        assert!(status["metrics"][metric].is_u64(), "{metric}: {status}");
    }
    assert!(status["uptime_hours"].is_f64() || status["uptime_hours"].is_u64());
    assert!(status.get("last_activity").is_some());

    let (code, caps) = api
        .call_with_key(reqwest::Method::GET, "/api/cmo/capabilities", Some(&key), None)
        .await;
    assert_eq!(code, 200);
    for command in ["start", "stop", "pause", "resume", "get_status", "get_metrics"] {
        assert!(caps["commands"].as_array().expect("commands").contains(&json!(command)));
    }
    assert!(
        caps["capabilities"]
            .as_array()
            .expect("capabilities")
            .contains(&json!("outbound_calling"))
    );

    for period in ["today", "week", "month"] {
        let (code, report) = api
            .call_with_key(
                reqwest::Method::GET,
                &format!("/api/cmo/report/{period}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(code, 200);
        assert_eq!(report["period"], period);
        for field in [
            "total_leads",
            "qualified_leads",
            "calls_made",
            "sms_sent",
            "conversion_rate",
        ] {
            assert!(report[field].is_number(), "{field}: {report}");
        }
        assert!(report.get("average_speed_to_lead").is_some(), "{report}");
    }

    let (code, body) = api.call_with_key(reqwest::Method::POST, "/api/cmo/trigger-lead", Some(&key), Some(r#"{"fname":"John","email":"john@example.com","phone":"+12015550123","what_kind_of_office_space_are_you_interested_in":"Private Office","message":"m","campaignid":"1"}"#))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["message"].as_str()),
        (Some("success"), Some("Lead queued for processing"))
    );
    assert_eq!(body["lead"], json!({ "name": "John", "phone": "+12015550123" }));
    let leads = on_stream::<LeadReceived>(&api.ctx.bus, bus::stream::LEADS).await;
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0].lead_id.to_string(), body["task_id"].as_str().expect("task id"));
    assert_eq!(leads[0].source, bus::LeadSource::CmoTrigger);

    let (code, openapi) = api
        .call_with_key(reqwest::Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(code, 200);
    for path in [
        "/api/cmo/status",
        "/api/cmo/command",
        "/api/cmo/trigger-lead",
        "/api/cmo/report/{period}",
        "/api/cmo/capabilities",
    ] {
        assert!(
            openapi["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_move_the_agent_state_every_role_watches() {
    let (api, key) = spawn_with_key().await;
    let state = AgentStateStore::open(&api.ctx.bus.js).await.expect("agent");
    for (command, expected, word) in [
        ("pause", AgentState::Paused, "paused"),
        ("resume", AgentState::Running, "active"),
        ("stop", AgentState::Stopped, "stopped"),
        ("start", AgentState::Running, "active"),
    ] {
        let (code, body) = api
            .call_with_key(
                reqwest::Method::POST,
                "/api/cmo/command",
                Some(&key),
                Some(&format!(r#"{{"command":"{command}","parameters":{{}}}}"#)),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            (body["status"].as_str(), body["command"].as_str()),
            (Some("success"), Some(command))
        );
        assert_eq!(state.get().await.expect("state"), expected);
        assert_eq!(
            api.call_with_key(reqwest::Method::GET, "/api/cmo/status", Some(&key), None)
                .await
                .1["status"],
            word
        );
    }
    let (code, body) = api
        .call_with_key(
            reqwest::Method::POST,
            "/api/cmo/command",
            Some(&key),
            Some(r#"{"command":"get_metrics"}"#),
        )
        .await;
    assert_eq!(code, 200);
    assert!(body["data"]["total_leads"].is_number(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_bad_input_get_clear_errors_and_change_nothing() {
    let (api, key) = spawn_with_key().await;
    let no_key = api
        .call_with_key(reqwest::Method::GET, "/api/cmo/status", None, None)
        .await;
    assert_eq!(no_key.0, 401);
    assert!(no_key.1["error"].is_string());
    assert_eq!(
        api.call_with_key(reqwest::Method::GET, "/api/cmo/status", Some("nope"), None)
            .await
            .0,
        401
    );
    let forged = format!("{}x", &key[..key.len() - 1]);
    assert_eq!(
        api.call_with_key(reqwest::Method::GET, "/api/cmo/status", Some(&forged), None)
            .await
            .0,
        401
    );

    let keys = ApiKeys::open(&api.ctx.bus.js).await.expect("keys");
    let (revoked, record) = keys.create("old", Vec::new(), 60).await.expect("key");
    assert!(keys.revoke(&record.id).await.expect("revoke"));
    let (code, body) = api
        .call_with_key(reqwest::Method::GET, "/api/cmo/status", Some(&revoked), None)
        .await;
    assert_eq!(code, 401);
    assert!(body["error"].as_str().unwrap_or("").contains("revoked"));
    let (elsewhere, _) = keys
        .create("office only", vec!["10.0.0.0/8".parse().expect("cidr")], 60)
        .await
        .expect("key");
    assert_eq!(
        api.call_with_key(reqwest::Method::GET, "/api/cmo/status", Some(&elsewhere), None)
            .await
            .0,
        403
    );

    let state = AgentStateStore::open(&api.ctx.bus.js).await.expect("agent");
    let (code, body) = api
        .call_with_key(
            reqwest::Method::POST,
            "/api/cmo/command",
            Some(&key),
            Some(r#"{"command":"explode","parameters":{}}"#),
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap_or("").contains("pause"),
        "lists the valid commands: {body}"
    );
    assert_eq!(state.get().await.expect("state"), AgentState::Running);
    assert_eq!(
        api.call_with_key(reqwest::Method::GET, "/api/cmo/report/decade", Some(&key), None)
            .await
            .0,
        400
    );
    let (code, body) = api
        .call_with_key(
            reqwest::Method::POST,
            "/api/cmo/trigger-lead",
            Some(&key),
            Some(r#"{"fname":"Bob","email":"bob@example.com","phone":"12345"}"#),
        )
        .await;
    assert_eq!((code, body["field"].as_str()), (422, Some("phone")), "{body}");
    let (code, body) = api
        .call_with_key(
            reqwest::Method::POST,
            "/api/cmo/trigger-lead",
            Some(&key),
            Some("{not json"),
        )
        .await;
    assert_eq!(code, 400);
    assert!(body["error"].is_string());
    assert!(
        on_stream::<LeadReceived>(&api.ctx.bus, bus::stream::LEADS)
            .await
            .is_empty(),
        "a bad request queued a lead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_status_is_published_on_change_and_kept_for_late_subscribers() {
    let nats = NatsServer::start();
    let mut settings = nats.settings();
    settings.status_interval = std::time::Duration::from_secs(30);
    let ctx = leadq::app::Context::build(settings, false).await.expect("context");
    let mut updates = ctx
        .bus
        .client
        .subscribe(bus::subject::AGENT_STATUS)
        .await
        .expect("subscribe");
    let shutdown = CancellationToken::new();
    tokio::spawn(leadq::roles::status::run(
        ctx.status_deps(&[leadq::app::Role::Caller]),
        shutdown.clone(),
    ));
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures::StreamExt::next(&mut updates),
    )
    .await
    .expect("a status at start")
    .expect("message");
    let first: leadq::bus::AgentStatus = bus::decode(&first.payload).expect("status");
    assert_eq!(
        (first.state.as_str(), first.roles.as_slice()),
        ("active", &["caller".to_owned()][..])
    );

    // A change goes out at once, not at the next 30-second tick.
    AgentStateStore::open(&ctx.bus.js)
        .await
        .expect("agent")
        .set(AgentState::Paused)
        .await
        .expect("pause");
    let changed = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        futures::StreamExt::next(&mut updates),
    )
    .await
    .expect("the change within a second")
    .expect("message");
    let changed: leadq::bus::AgentStatus = bus::decode(&changed.payload).expect("status");
    assert_eq!(changed.state, "paused");

    // A CMO agent that starts now reads the current state from the stream at once.
    let stream = ctx.bus.js.get_stream(bus::stream::STATUS).await.expect("STATUS");
    let last = stream
        .get_last_raw_message_by_subject(bus::subject::AGENT_STATUS)
        .await
        .expect("last status");
    let last: leadq::bus::AgentStatus = bus::decode(&last.payload).expect("status");
    assert_eq!(last.state, "paused");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_service_answers_like_rest_and_is_discoverable() {
    let (api, key) = spawn_with_key().await;
    let client = &api.ctx.bus.client;
    let ask = |operation: &str, key: Option<&str>, body: &str| {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(key) = key {
            headers.insert("X-API-Key", key);
        }
        let subject = leadq::roles::api::nats::subject(operation);
        let body = body.to_owned();
        async move {
            let reply = client
                .request_with_headers(subject, headers, body.into())
                .await
                .expect("reply");
            let code = reply
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Service-Error-Code"))
                .map(|v| v.to_string());
            (code, serde_json::from_slice::<Value>(&reply.payload).expect("json"))
        }
    };
    // Discoverable before any request.
    let ping = client.request("$SRV.PING.leadq-cmo", "".into()).await.expect("ping");
    let ping: Value = serde_json::from_slice(&ping.payload).expect("json");
    assert_eq!(ping["name"], "leadq-cmo");

    let (code, over_nats) = ask("status", Some(&key), "").await;
    assert_eq!(code, None, "{over_nats}");
    let (_, over_rest) = api
        .call_with_key(reqwest::Method::GET, "/api/cmo/status", Some(&key), None)
        .await;
    for field in [
        "agent_id",
        "agent_name",
        "agent_type",
        "status",
        "role",
        "department",
        "metrics",
    ] {
        assert_eq!(over_nats[field], over_rest[field], "{field}");
    }
    let (_, caps) = ask("capabilities", Some(&key), "").await;
    assert_eq!(
        caps,
        api.call_with_key(reqwest::Method::GET, "/api/cmo/capabilities", Some(&key), None)
            .await
            .1
    );
    let (_, report) = ask("report", Some(&key), r#"{"period":"week"}"#).await;
    assert_eq!(
        report,
        api.call_with_key(reqwest::Method::GET, "/api/cmo/report/week", Some(&key), None)
            .await
            .1
    );

    let (code, body) = ask("status", Some("lq_0000000000000000_nope"), "").await;
    assert_eq!(code.as_deref(), Some("401"));
    assert!(body["error"].is_string());
    let (code, _) = ask("command", Some(&key), r#"{"command":"explode"}"#).await;
    assert_eq!(code.as_deref(), Some("400"));
    let (code, body) = ask("command", Some(&key), r#"{"command":"pause","parameters":{}}"#).await;
    assert_eq!((code, body["status"].as_str()), (None, Some("success")));
    assert_eq!(agent_state(&api).await, AgentState::Paused);
    let (code, body) = ask("trigger-lead", Some(&key), r#"{"fname":"Ann","phone":"+12015550123"}"#).await;
    assert_eq!(code, None, "{body}");
    assert_eq!(body["lead"]["phone"], "+12015550123");
}

/// The client's JSON answer, after checking it succeeded over `via`.
fn answered(output: std::process::Output, via: &str) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("answered over {via}")), "{stderr}");
    serde_json::from_slice(&output.stdout).expect("json")
}

/// The reference client in examples/, built by `cargo test` next to this binary.
fn cmo_client() -> std::path::PathBuf {
    let deps = std::env::current_exe().expect("test binary");
    deps.parent()
        .and_then(|d| d.parent())
        .map(|debug| debug.join("examples").join("cmo_client"))
        .expect("target dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_uses_nats_and_falls_back_to_rest() {
    let (api, key) = spawn_with_key().await;
    let run = |nats: String, args: &[&str]| {
        std::process::Command::new(cmo_client())
            .args([
                "--nats",
                &nats,
                "--api",
                &api.base,
                "--key",
                &key,
                "--timeout",
                "1s",
            ])
            .args(args)
            .output()
            .expect("the reference client (examples/cmo_client.rs; `cargo test` builds it, `cargo test --test it` does not)")
    };
    let over_nats = answered(run(api.nats.url(), &["status"]), "NATS");
    assert_eq!(over_nats["agent_id"], "lead-qualification-agent-001");

    // NATS gone (a port nobody listens on): the command goes over REST.
    let dead = format!("nats://127.0.0.1:{}", crate::helpers::free_port());
    let over_rest = answered(run(dead, &["command", "pause"]), "REST");
    assert_eq!(over_rest["status"], "success");
    assert_eq!(agent_state(&api).await, AgentState::Paused);

    // A refusal is the server's error and a failing exit, by either path.
    let refused = run(api.nats.url(), &["command", "explode"]);
    assert!(!refused.status.success());
    let body: Value = serde_json::from_slice(&refused.stdout).expect("json");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("start")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_reaches_a_caller_in_another_process_within_a_second() {
    let nats = NatsServer::start();
    let twilio = standins::twilio::TwilioStandIn::start("AC00000000000000000000000000000007", "t0ken", 0)
        .await
        .expect("stand-in");
    let bus = nats.ready_bus().await;
    let mut statuses = bus
        .client
        .subscribe(bus::subject::AGENT_STATUS)
        .await
        .expect("subscribe");
    let url = nats.url();
    let base = twilio.base_url();
    let mut caller = std::process::Command::new(env!("CARGO_BIN_EXE_leadq"))
        .arg("caller")
        .envs([
            ("LEADQ_NATS_URL", url.as_str()),
            ("LEADQ_TWILIO_API_BASE", base.as_str()),
            ("LEADQ_TWILIO__ACCOUNT_SID", "AC00000000000000000000000000000007"),
            ("LEADQ_TWILIO__AUTH_TOKEN", "t0ken"),
            ("LEADQ_TWILIO__FROM_NUMBER", "+15005550006"),
            ("LEADQ_MASTER_KEY", &"ab".repeat(32)),
            ("LEADQ_STATUS_INTERVAL", "30s"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("leadq caller");
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        next_from_caller(&mut statuses, "active"),
    )
    .await
    .expect("the caller process says it runs");
    let agent = AgentStateStore::open(&bus.js).await.expect("agent");
    agent.set(AgentState::Paused).await.expect("pause");
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        next_from_caller(&mut statuses, "paused"),
    )
    .await
    .expect("the caller process saw the pause within a second");
    agent.set(AgentState::Running).await.expect("resume");
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        next_from_caller(&mut statuses, "active"),
    )
    .await
    .expect("and the resume");
    let _ = caller.kill();
    let _ = caller.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_is_told_when_to_come_back() {
    let (api, key) = spawn_with_key().await;
    let (slow, _) = ApiKeys::open(&api.ctx.bus.js)
        .await
        .expect("keys")
        .create("slow", Vec::new(), 3)
        .await
        .expect("key");
    for _ in 0..3 {
        let (status, _) = api
            .call_with_key(reqwest::Method::GET, "/api/cmo/capabilities", Some(&slow), None)
            .await;
        assert_eq!(status, 200);
    }
    let response = api
        .http
        .get(format!("{}/api/cmo/capabilities", api.base))
        .header("X-API-Key", &slow)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=20).contains(&wait), "retry after {wait} s");
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("rate limit")),
        "{body}"
    );
    // Other keys keep their own budget.
    let (status, _) = api
        .call_with_key(reqwest::Method::GET, "/api/cmo/capabilities", Some(&key), None)
        .await;
    assert_eq!(status, 200);
}

/// The next status the caller-only process publishes with the state `want`.
async fn next_from_caller(statuses: &mut async_nats::Subscriber, want: &str) -> leadq::bus::AgentStatus {
    loop {
        let message = futures::StreamExt::next(statuses).await.expect("status");
        let status: leadq::bus::AgentStatus = bus::decode(&message.payload).expect("status");
        if status.roles == ["caller"] && status.state == want {
            return status;
        }
    }
}
