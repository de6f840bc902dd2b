//! The sandbox: `leadq all` with no Twilio or Airtable account runs the whole job against the
//! in-process stand-ins, through the production roles, and goes live when credentials are saved.

use std::time::Duration;

use serde_json::{Value, json};
use standins::airtable::AirtableStandIn;
use standins::twilio::TwilioStandIn;

use crate::harness::{TestApp, spawn_all};
use crate::helpers::{admin_token, eventually};

/// `leadq all` with an admin signed in and a CMO API key.
struct Running {
    app: TestApp,
    token: String,
    api_key: String,
}

impl Running {
    /// Every role, as `leadq all` runs them, with no outside account configured.
    async fn start(adjust: impl FnOnce(&mut leadq::config::Settings)) -> Self {
        let app = spawn_all(|settings| {
            settings.calling_hours.start = jiff::civil::Time::MIN;
            settings.calling_hours.end = jiff::civil::Time::MAX;
            settings.retry_ladder = Vec::new();
            adjust(settings);
        })
        .await;
        let token = admin_token(app.bus(), &app.http, &app.base).await;
        let keys = leadq::security::api_keys::ApiKeys::open(&app.bus().js)
            .await
            .expect("keys");
        let (api_key, _) = keys.create("cmo", Vec::new(), 600).await.expect("key");
        Self { app, token, api_key }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.app.call(method, path, Some(&self.token), body).await
    }

    async fn trigger(&self, body: Value) -> (u16, Value) {
        let body = body.to_string();
        self.app
            .call_with_key(
                reqwest::Method::POST,
                "/api/cmo/trigger-lead",
                Some(&self.api_key),
                Some(&body),
            )
            .await
    }
    /// The lead's record once it is finished (verdict, text sent, CRM row written).
    async fn finished(&self, lead_id: &str) -> Value {
        let path = format!("/api/admin/leads/{lead_id}");
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let (status, body) = self.admin(reqwest::Method::GET, &path, None).await;
            if status == 200 && body["sms_state"] == "sent" && body["crm_sync"] == "synced" {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lead {lead_id} not finished: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_accounts_the_sandbox_runs_the_whole_job_as_the_callee_chosen() {
    let agent = Box::pin(Running::start(|_| {})).await;
    let (_, sandbox) = agent.admin(reqwest::Method::GET, "/api/admin/sandbox", None).await;
    assert_eq!(sandbox["active"], true);
    assert_eq!(
        sandbox["services"],
        json!({ "twilio": "sandboxed", "airtable": "sandboxed" })
    );

    let cases = [
        ("+14155550701", json!("qualified"), "qualified"),
        ("+14155550702", json!("voicemail"), "voicemail"),
        (
            "+14155550703",
            json!(["a hot desk", "just me", "in two years", "fifty dollars", "no"]),
            "unqualified",
        ),
    ];
    for (phone, callee, verdict) in &cases {
        let (status, queued) = agent
            .trigger(json!({ "fname": "Ada", "phone": phone, "sandbox_callee": callee }))
            .await;
        assert_eq!(status, 200, "{queued}");
        let record = agent.finished(queued["task_id"].as_str().expect("task id")).await;
        assert_eq!(record["verdict"], *verdict, "{phone}: {record}");
        if *verdict == "qualified" {
            the_lead_page_tells_the_call_in_words(&record);
        }
    }
    let (_, sandbox) = agent.admin(reqwest::Method::GET, "/api/admin/sandbox", None).await;
    let outbox = &sandbox["outbox"];
    assert_eq!(outbox["calls"].as_array().map(Vec::len), Some(3), "{outbox}");
    assert_eq!(outbox["texts"].as_array().map(Vec::len), Some(3), "{outbox}");
    assert_eq!(outbox["crm_rows"].as_array().map(Vec::len), Some(3), "{outbox}");
    let qualified = outbox["calls"]
        .as_array()
        .and_then(|calls| calls.iter().find(|c| c["to"] == "+14155550701"))
        .expect("the qualified call");
    assert_eq!(
        qualified["said"][1], "six of us",
        "the callee's answers are in the outbox"
    );

    let bad = agent
        .trigger(json!({ "fname": "Ada", "phone": "+14155550704", "sandbox_callee": "maybe" }))
        .await;
    assert_eq!(bad.0, 400, "an unknown callee: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_sandbox_a_rep_added_on_the_settings_page_takes_a_qualified_lead() {
    let agent = Box::pin(Running::start(|_| {})).await;
    let roster =
        json!({ "reps": [{ "name": "Sam Rivera", "phone": "+12125550199", "days": "daily", "hours": "00:00-24:00" }] });
    let (status, saved) = agent
        .admin(reqwest::Method::PUT, "/api/admin/roster", Some(roster))
        .await;
    assert_eq!(
        (status, &saved["on_duty"]["name"]),
        (200, &json!("Sam Rivera")),
        "{saved}"
    );
    let (status, queued) = agent
        .trigger(json!({ "fname": "Ada", "phone": "+14155550705", "sandbox_callee": "qualified" }))
        .await;
    assert_eq!(status, 200, "{queued}");
    let record = agent.finished(queued["task_id"].as_str().expect("task id")).await;
    assert_eq!(record["transfer"]["outcome"], "transferred", "{record}");
    assert_eq!(record["crm_row"]["fields"]["Transferred To"], "Sam Rivera", "{record}");
    let (_, sandbox) = agent.admin(reqwest::Method::GET, "/api/admin/sandbox", None).await;
    let rep_leg = sandbox["outbox"]["calls"]
        .as_array()
        .and_then(|calls| calls.iter().find(|c| c["to"] == "+12125550199"))
        .cloned()
        .expect("the rep's leg is in the outbox");
    assert!(
        rep_leg["heard"][0].as_str().is_some_and(|w| w.contains("Ada")),
        "{rep_leg}"
    );
}

/// The qualified callee's page: each question by its prompt, what was said, how it was read in
/// words; the text that was sent; the row the sandbox CRM holds.
fn the_lead_page_tells_the_call_in_words(record: &Value) {
    let transcript = record["transcript"].as_array().expect("a transcript");
    let line = |n: usize| (transcript[n]["said"].as_str(), transcript[n]["read_as"].as_str());
    assert_eq!(line(0), (Some("a private office"), Some("Private office")), "{record}");
    assert_eq!(line(1), (Some("six of us"), Some("6 people")), "{record}");
    assert_eq!(
        line(3),
        (Some("about two thousand a month"), Some("$2,000 a month")),
        "{record}"
    );
    assert_eq!(line(4), (Some("yes, I decide"), Some("Yes")), "{record}");
    assert!(
        transcript[1]["question"]
            .as_str()
            .is_some_and(|q| q.starts_with("How many people")),
        "questions by their prompt: {record}"
    );
    let text = record["text_sent"].as_str().expect("the text sent");
    assert!(
        text.contains(record["id"].as_str().expect("id")),
        "the booking link names the lead: {text}"
    );
    let row = &record["crm_row"]["fields"];
    assert_eq!(
        (&row["Verdict"], &row["Name"]),
        (&json!("qualified"), &json!("Ada")),
        "{record}"
    );
    let kinds: Vec<&str> = record["activity"]
        .as_array()
        .expect("activity")
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"call.placed") && kinds.contains(&"sms.sent"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_sandbox_each_connection_test_says_what_answered_and_night_is_no_obstacle() {
    // Calling hours that exclude now (an hour-long window two hours away, in every zone a US
    // number can ring in): a sandboxed test lead is still called at once, since it rings no one.
    let agent = Box::pin(Running::start(|settings| {
        let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).time();
        settings.calling_hours.start = now.wrapping_add(jiff::SignedDuration::from_hours(12));
        settings.calling_hours.end = now.wrapping_add(jiff::SignedDuration::from_hours(13));
    }))
    .await;
    let (status, queued) = agent.trigger(json!({ "fname": "Ada", "phone": "+14155550721" })).await;
    assert_eq!(status, 200, "{queued}");
    agent.finished(queued["task_id"].as_str().expect("id")).await;
    let test = |service: &'static str| {
        let agent = &agent;
        async move {
            let path = format!("/api/admin/connections/{service}/test");
            let (status, body) = agent.admin(reqwest::Method::POST, &path, None).await;
            assert_eq!(status, 200, "{service}: {body}");
            body
        }
    };
    let twilio = test("twilio").await;
    assert_eq!(
        (&twilio["ok"], &twilio["mode"]),
        (&json!(true), &json!("sandboxed")),
        "{twilio}"
    );
    assert!(
        twilio["answer"].as_str().is_some_and(|a| a.contains("is active")),
        "{twilio}"
    );
    let airtable = test("airtable").await;
    assert_eq!(
        (&airtable["ok"], &airtable["mode"]),
        (&json!(true), &json!("sandboxed")),
        "{airtable}"
    );
    let inbox = test("imap").await;
    assert_eq!(
        (&inbox["ok"], &inbox["mode"]),
        (&json!(false), &json!("not_configured")),
        "{inbox}"
    );
    let (status, _) = agent
        .admin(reqwest::Method::POST, "/api/admin/connections/fax/test", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_twilio_credentials_make_calls_live_and_the_sandbox_refuses_callees() {
    const SID: &str = "AC00000000000000000000000000000777";
    const TOKEN: &str = "the-real-accounts-token";
    let real = TwilioStandIn::start(SID, TOKEN, 0).await.expect("the 'real' Twilio");
    let real_base = real.base_url();
    let airtable = AirtableStandIn::start("pat-the-real-one")
        .await
        .expect("the 'real' Airtable");
    let airtable_base = airtable.base_url();
    let agent = Box::pin(Running::start(|settings| {
        // Where live Twilio and Airtable are; the sandbox stands in until credentials exist.
        settings.twilio.api_base = real_base.parse().expect("url");
        settings.airtable.api_base = airtable_base.parse().expect("url");
    }))
    .await;
    let (status, queued) = agent.trigger(json!({ "fname": "Ada", "phone": "+14155550711" })).await;
    assert_eq!(status, 200);
    agent.finished(queued["task_id"].as_str().expect("id")).await;
    assert!(real.calls().is_empty(), "a sandboxed call reached the live service");

    for (key, value) in [
        ("account_sid", SID),
        ("auth_token", TOKEN),
        ("from_number", "+15005550006"),
    ] {
        let (status, body) = agent
            .admin(
                reqwest::Method::POST,
                "/api/admin/credentials",
                Some(json!({ "service": "twilio", "key": key, "value": value })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    eventually(Duration::from_secs(20), "Twilio live", || async {
        let (_, sandbox) = agent.admin(reqwest::Method::GET, "/api/admin/sandbox", None).await;
        sandbox["services"]["twilio"] == "live"
    })
    .await;
    let refused = agent
        .trigger(json!({ "fname": "Ada", "phone": "+14155550712", "sandbox_callee": "qualified" }))
        .await;
    assert_eq!(
        (refused.0, refused.1["field"].as_str()),
        (400, Some("sandbox_callee")),
        "{refused:?}"
    );
    let (status, _) = agent.trigger(json!({ "fname": "Ada", "phone": "+14155550712" })).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(20), "the live call", || async {
        real.calls().iter().any(|c| c.to == "+14155550712")
    })
    .await;
    let (_, sandbox) = agent.admin(reqwest::Method::GET, "/api/admin/sandbox", None).await;
    let sandbox_calls = sandbox["outbox"]["calls"].as_array().map(Vec::len);
    assert_eq!(sandbox_calls, Some(1), "the live lead was not sent to the sandbox");
    assert_eq!(
        sandbox["active"], true,
        "Airtable is still the sandbox: the banner stays"
    );

    // Airtable goes live too: its check finds the columns a hand-made table lacks, makes them,
    // and the banner goes.
    airtable.define_table(
        "appRealBase000001",
        "Leads",
        &[("Lead ID", "singleLineText"), ("Decision Maker", "singleLineText")],
    );
    for (key, value) in [("token", "pat-the-real-one"), ("base_id", "appRealBase000001")] {
        let body = json!({ "service": "airtable", "key": key, "value": value });
        let (status, body) = agent
            .admin(reqwest::Method::POST, "/api/admin/credentials", Some(body))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    eventually(Duration::from_secs(20), "no sandbox left", || async {
        let (_, sandbox) = agent.admin(reqwest::Method::GET, "/api/admin/sandbox", None).await;
        sandbox["active"] == false
    })
    .await;
    let (_, check) = agent
        .admin(reqwest::Method::POST, "/api/admin/connections/airtable/test", None)
        .await;
    assert_eq!(
        (&check["ok"], &check["mode"]),
        (&json!(false), &json!("live")),
        "{check}"
    );
    let missing = check["detail"]["missing"].as_array().map(Vec::len);
    assert_eq!(missing, Some(leadq::config::default_crm_fields().len() - 2), "{check}");
    assert_eq!(check["detail"]["mistyped"][0]["column"], "Decision Maker", "{check}");
    let (status, made) = agent
        .admin(reqwest::Method::POST, "/api/admin/connections/airtable/columns", None)
        .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["created"].as_array().map(Vec::len), missing, "{made}");
    let columns = airtable.columns("appRealBase000001", "Leads").expect("the table");
    assert!(
        columns.contains(&("Email".to_owned(), "email".to_owned())),
        "{columns:?}"
    );
    assert!(
        columns.contains(&("Score".to_owned(), "number".to_owned())),
        "{columns:?}"
    );
    // The mistyped column is named, not changed: it may hold a team's data.
    assert_eq!(made["check"]["mistyped"][0]["column"], "Decision Maker", "{made}");
    // The next lead's row lands in the live base (which refuses any column it lacks).
    let (status, queued) = agent
        .trigger(json!({ "fname": "Grace", "phone": "+14155550713" }))
        .await;
    assert_eq!(status, 200, "{queued}");
    let lead_id = json!(queued["task_id"].as_str().expect("id"));
    eventually(Duration::from_secs(40), "the row in the live CRM", || async {
        airtable
            .records("appRealBase000001", "Leads")
            .iter()
            .any(|row| row.fields.get("Lead ID") == Some(&lead_id))
    })
    .await;
}
