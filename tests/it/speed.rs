//! Speed to lead held under real conditions: one call per person, direct form intake, retried
//! POSTs, handlers slower than the ack wait, a burst of leads, and a person who picks up hearing
//! the greeting at once. Real caller, finalizer and SMS roles, the api's webhooks, the stand-ins.

use std::time::Duration;

use leadq::bus::{self, LeadReceived};
use standins::twilio::Persona;

use crate::call::lead;
use crate::harness::{AIRTABLE_BASE, TestAgent, spawn_agent_with};
use crate::helpers::{eventually, on_stream};
use leadq::app::Role;

/// The api role, the caller, the finalizer and the SMS sender, with `adjust` applied first.
async fn whole_agent(adjust: impl FnOnce(&mut leadq::config::Settings)) -> TestAgent {
    let agent = Box::pin(spawn_agent_with(&[Role::Caller], adjust)).await;
    agent.start(Role::Finalizer).await;
    agent.start(Role::Sms).await;
    agent
}

/// The activity log's entries of one kind, as the api's writer stored them.
async fn activity_of(agent: &TestAgent, kind: &str) -> Vec<leadq::store::ActivityRow> {
    let store = agent.ctx.store.clone().expect("store");
    let rows = store.recent_activity(500).await.unwrap_or_default();
    rows.into_iter().filter(|r| r.kind == kind).collect()
}

fn base(agent: &TestAgent) -> String {
    agent.ctx.settings.public_url.as_str().trim_end_matches('/').to_owned()
}

async fn received(agent: &TestAgent) -> Vec<LeadReceived> {
    on_stream(agent.bus(), bus::stream::LEADS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_submitting_twice_is_called_texted_and_recorded_once() {
    let agent = whole_agent(|_| {}).await;
    let phone = "+14155550301";
    let first = lead("Ada", phone);
    agent.bus().publish(&first).await.expect("publish");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Again, from another form and with an email the first one lacked.
    let mut again = lead("Ada Lovelace", phone);
    again.lead.email = Some("ada@example.com".into());
    again.lead.extras.insert("company".into(), "Engines".into());
    agent.bus().publish(&again).await.expect("publish");

    eventually(Duration::from_secs(30), "the text", || async {
        !agent.twilio.messages().is_empty()
    })
    .await;
    eventually(Duration::from_secs(20), "the CRM row", || async {
        !agent.airtable.records(AIRTABLE_BASE, "Leads").is_empty()
    })
    .await;
    let store = agent.ctx.store.clone().expect("store");
    eventually(Duration::from_secs(20), "the resubmission on the record", || async {
        store
            .lead(first.lead_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.resubmissions.len() == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls: Vec<_> = agent.twilio.calls().into_iter().filter(|c| c.to == phone).collect();
    assert_eq!(calls.len(), 1, "one call for one person");
    assert_eq!(agent.twilio.messages().len(), 1, "one text");
    let rows = agent.airtable.records(AIRTABLE_BASE, "Leads");
    assert_eq!(rows.len(), 1, "one CRM row");
    // A row written before the resubmission is written again with it (on the CRM sync's next pass).
    eventually(
        Duration::from_secs(20),
        "the CRM row to say it was submitted again",
        || async {
            let rows = agent.airtable.records(AIRTABLE_BASE, "Leads");
            rows.len() == 1 && rows[0].fields.get("Resubmissions") == Some(&serde_json::json!(1))
        },
    )
    .await;
    let record = store.lead(first.lead_id).await.expect("read").expect("record");
    assert_eq!(
        record.resubmissions[0]["resubmitted_lead_id"],
        again.lead_id.to_string()
    );
    assert_eq!(
        record.contact.name.as_deref(),
        Some("Ada"),
        "the first submission's name stands"
    );
    assert_eq!(
        record.contact.email.as_deref(),
        Some("ada@example.com"),
        "the missing email was merged"
    );
    assert!(
        store.lead(again.lead_id).await.expect("read").is_none(),
        "no second lead record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_or_forced_the_same_number_is_called_again() {
    let agent = whole_agent(|settings| settings.resubmit_window = Duration::from_secs(1)).await;
    let phone = "+14155550302";
    agent.bus().publish(&lead("Ada", phone)).await.expect("publish");
    agent.completed(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.bus().publish(&lead("Ada", phone)).await.expect("publish");
    agent.completed(2).await;
    let mut forced = lead("Ada", phone);
    forced.force = true;
    agent.bus().publish(&forced).await.expect("publish");
    agent.completed(3).await;
    assert_eq!(agent.twilio.calls().iter().filter(|c| c.to == phone).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_trigger_lead_posted_twice_at_once_or_retried_calls_once() {
    let agent = whole_agent(|_| {}).await;
    let keys = leadq::security::api_keys::ApiKeys::open(&agent.bus().js)
        .await
        .expect("keys");
    let (key, _) = keys.create("cmo", Vec::new(), 600).await.expect("key");
    let http = reqwest::Client::new();
    let url = format!("{}/api/cmo/trigger-lead", base(&agent));
    let body = serde_json::json!({ "fname": "Grace", "phone": "+14155550303" });
    let post = |idempotency: Option<&'static str>, body: serde_json::Value| {
        let mut request = http.post(&url).header("X-API-Key", &key).json(&body);
        if let Some(k) = idempotency {
            request = request.header("Idempotency-Key", k);
        }
        async move {
            let response = request.send().await.expect("post");
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.expect("json"))
        }
    };
    // The same POST twice at once, with no key: two leads, one call.
    let (a, b) = tokio::join!(post(None, body.clone()), post(None, body.clone()));
    assert_eq!((a.0, b.0), (200, 200));
    // A retry with a key: the first answer, and nothing new queued.
    let keyed = serde_json::json!({ "fname": "Alan", "phone": "+14155550304" });
    let first = post(Some("retry-1"), keyed.clone()).await;
    let retried = post(Some("retry-1"), keyed.clone()).await;
    assert_eq!(first, retried, "a retry gets the first answer");
    let reused = post(
        Some("retry-1"),
        serde_json::json!({ "fname": "Eve", "phone": "+14155550305" }),
    )
    .await;
    assert_eq!(reused.0, 422, "a key reused for another body: {reused:?}");
    let malformed = post(None, serde_json::json!({ "fname": "Eve", "phone": "+1212555ABCD" })).await;
    assert_eq!(malformed.0, 422);

    agent.completed(2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = agent.twilio.calls();
    assert_eq!(
        calls.iter().filter(|c| c.to == "+14155550303").count(),
        1,
        "the doubled POST"
    );
    assert_eq!(
        calls.iter().filter(|c| c.to == "+14155550304").count(),
        1,
        "the retried POST"
    );
    assert_eq!(calls.len(), 2, "{calls:?}");
    let queued = received(&agent).await;
    assert_eq!(
        queued
            .iter()
            .filter(|l| l.lead.phone.as_str() == "+14155550304")
            .count(),
        1,
        "the retry queued nothing new"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounce_form_webhook_is_one_lead_and_its_email_makes_no_second_call() {
    let agent = whole_agent(|_| {}).await;
    let token = leadq::roles::api::unbounce_form::rotate_token(agent.ctx.config.bucket())
        .await
        .expect("token");
    let url = leadq::roles::api::unbounce_form::webhook_url(&agent.ctx.settings.public_url, &token);
    let form = std::fs::read_to_string("tests/fixtures/unbounce/form-submit.urlencoded").expect("fixture");
    let http = reqwest::Client::new();
    let send = |url: String, content_type: &'static str, body: String| {
        let http = http.clone();
        async move {
            let response = http
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("post");
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    // Refused, and nothing queued: a wrong token, no data.json, a bad phone.
    let form_type = "application/x-www-form-urlencoded";
    let wrong = send(
        format!("{}/webhooks/unbounce/not-the-token", base(&agent)),
        form_type,
        form.clone(),
    )
    .await;
    assert_eq!(wrong.0, 403, "{wrong:?}");
    let no_data = send(url.clone(), form_type, "page_id=1&page_name=x".into()).await;
    assert_eq!(
        (no_data.0, no_data.1["field"].as_str()),
        (400, Some("data.json")),
        "{no_data:?}"
    );
    let bad_phone = send(url.clone(), form_type, form.replace("%28646%29+555-0142", "12")).await;
    assert_eq!(
        (bad_phone.0, bad_phone.1["field"].as_str()),
        (422, Some("phone")),
        "{bad_phone:?}"
    );
    assert!(received(&agent).await.is_empty(), "a refused post queued a lead");

    let first = send(url.clone(), form_type, form.clone()).await;
    assert_eq!(first.0, 200, "{first:?}");
    let retried = send(url.clone(), form_type, form.clone()).await;
    assert_eq!(
        retried.1["lead_id"], first.1["lead_id"],
        "Unbounce's retry is the same lead"
    );
    let queued = received(&agent).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].source, bus::LeadSource::UnbounceWebhook);
    assert_eq!(queued[0].lead.phone.as_str(), "+16465550142");
    assert_eq!(queued[0].lead.page.variant.as_deref(), Some("b"));

    // The notification email of the same submission comes later, with its own Message-ID.
    let mut email = lead("Maria", "+16465550142");
    email.source = bus::LeadSource::Email;
    agent.bus().publish(&email).await.expect("publish");
    // And the JSON variant of the webhook, as another page would send it.
    let json = std::fs::read_to_string("tests/fixtures/unbounce/form-submit.json").expect("fixture");
    let by_json = send(url.clone(), "application/json", json).await;
    assert_eq!(by_json.0, 200, "{by_json:?}");
    agent.completed(1).await;
    eventually(Duration::from_secs(20), "both resubmissions handled", || async {
        activity_of(&agent, "lead.resubmitted").await.len() >= 2
    })
    .await;
    assert_eq!(
        agent.twilio.calls().len(),
        1,
        "one call for the webhook, its email and the JSON post"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_and_a_twilio_taking_seven_seconds_place_one_call_per_lead() {
    let agent = Box::pin(spawn_agent_with(&[Role::Caller], |settings| {
        settings.twilio.request_timeout = Duration::from_secs(15);
    }))
    .await;
    // The second replica.
    agent.start(Role::Caller).await;
    agent.twilio.set_latency(Duration::from_secs(7));
    for n in 0..20 {
        agent
            .bus()
            .publish(&lead("Ada", &format!("+1415555{:04}", 400 + n)))
            .await
            .expect("publish");
    }
    agent.completed(20).await;
    // A message handed to the other replica at the 5 s ack wait would be dialled by now.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls = agent.twilio.calls();
    let distinct: std::collections::HashSet<_> = calls.iter().map(|c| c.to.clone()).collect();
    assert_eq!((calls.len(), distinct.len()), (20, 20), "one call per lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_hundred_leads_is_dialled_side_by_side_each_once() {
    let agent = Box::pin(spawn_agent_with(&[Role::Caller], |_| {})).await;
    agent.twilio.set_latency(Duration::from_millis(150));
    for n in 0..100 {
        agent
            .bus()
            .publish(&lead("Ada", &format!("+1415555{:04}", 500 + n)))
            .await
            .expect("publish");
    }
    eventually(Duration::from_secs(60), "100 calls", || async {
        agent.twilio.calls().len() >= 100
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = agent.twilio.calls();
    let distinct: std::collections::HashSet<_> = calls.iter().map(|c| c.to.clone()).collect();
    assert_eq!((calls.len(), distinct.len()), (100, 100), "each lead dialled once");
    let peak = agent.twilio.peak_call_requests();
    let bound = agent.ctx.settings.twilio.max_in_flight;
    assert!(peak > 1, "the requests went one at a time");
    assert!(
        peak <= bound,
        "{peak} Calls.json requests at once, over the bound of {bound}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_hears_the_greeting_on_answer_and_a_machine_gets_the_voicemail_once() {
    let agent = whole_agent(|_| {}).await;
    agent.twilio.set_amd_delay(Duration::from_secs(3));
    let (person, machine) = ("+14155550601", "+14155550602");
    agent.twilio.set_persona(
        person,
        Persona::answers(&["a private office", "five of us", "next month", "two thousand", "yes"]),
    );
    agent.twilio.set_persona(machine, Persona::Machine);
    let (p, m) = (lead("Ada", person), lead("Bob", machine));
    agent.bus().publish(&p).await.expect("publish");
    agent.bus().publish(&m).await.expect("publish");
    agent.completed(2).await;
    let calls = agent.twilio.calls();
    let of = |to: &str| calls.iter().find(|c| c.to == to).cloned().expect("call");
    let human = of(person);
    assert_eq!(
        human.timeline.first().map(String::as_str),
        Some("twiml /webhooks/twilio/call-start")
    );
    let first_amd = human
        .timeline
        .iter()
        .position(|e| e.starts_with("amd"))
        .expect("detection came");
    assert!(
        first_amd > 1,
        "the greeting and questions went on before the detection: {:?}",
        human.timeline
    );
    assert!(
        human.heard.iter().any(|h| h.contains("Ada")),
        "the greeting: {:?}",
        human.heard
    );

    let robot = of(machine);
    let script = leadq::domain::script::Script::default();
    let voicemails = robot.heard.iter().filter(|h| **h == script.voicemail).count();
    assert_eq!(voicemails, 1, "the voicemail once: {:?}", robot.heard);
    let redirects = robot.timeline.iter().filter(|e| e.starts_with("redirect")).count();
    assert_eq!(redirects, 1, "{:?}", robot.timeline);
    assert!(robot.errors.is_empty(), "{:?}", robot.errors);

    let store = agent.ctx.store.clone().expect("store");
    eventually(Duration::from_secs(20), "both records", || async {
        store.lead(m.lead_id).await.ok().flatten().is_some() && store.lead(p.lead_id).await.ok().flatten().is_some()
    })
    .await;
    let record = store.lead(m.lead_id).await.expect("read").expect("record");
    assert_eq!(record.verdict, "voicemail");
    let record = store.lead(p.lead_id).await.expect("read").expect("record");
    assert!(
        record.timestamps.answered_to_first_words_ms.is_some(),
        "{:?}",
        record.timestamps
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_email_pasted_twice_as_a_test_is_called_once_unless_called_again_on_purpose() {
    let agent = whole_agent(|_| {}).await;
    let http = reqwest::Client::new();
    let token = crate::helpers::admin_token(agent.bus(), &http, &base(&agent)).await;
    let email = std::fs::read_to_string("tests/fixtures/emails/01-plain-private-office.eml").expect("fixture");
    // Another email of the same person: a new Message-ID, the same phone.
    let other = email.replace(
        "<20261124140311.1a2b3c@mail.unbounce.com>",
        "<second-form@mail.unbounce.com>",
    );
    let paste = |raw: String, force: bool| {
        let request = http
            .post(format!("{}/api/admin/test-email", base(&agent)))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "raw": raw, "force": force }));
        async move { request.send().await.expect("post").status().as_u16() }
    };
    assert_eq!(paste(email.clone(), false).await, 200);
    assert_eq!(paste(email.clone(), false).await, 200);
    assert_eq!(paste(other, false).await, 200);
    agent.completed(1).await;
    eventually(Duration::from_secs(20), "two resubmissions", || async {
        activity_of(&agent, "lead.resubmitted").await.len() >= 2
    })
    .await;
    assert_eq!(agent.twilio.calls().len(), 1, "three pastes of one person: one call");
    // "Call again anyway": a deliberate second call, in the activity log.
    assert_eq!(paste(email, true).await, 200);
    agent.completed(2).await;
    assert_eq!(agent.twilio.calls().len(), 2);
    eventually(Duration::from_secs(10), "the override in the activity log", || async {
        activity_of(&agent, "lead.forced")
            .await
            .iter()
            .any(|r| r.actor == "boss")
    })
    .await;
}

/// A thousand leads through caller, webhooks, finalizer, CRM sync and SMS, with Twilio answering
/// in 150 ms: every one called, recorded and texted, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_leads_through_the_whole_pipeline_each_once() {
    const LEADS: usize = 1000;
    let agent = whole_agent(|_| {}).await;
    agent.twilio.set_latency(Duration::from_millis(150));
    let phones: Vec<String> = (0..LEADS).map(|n| format!("+1646{:07}", 3_000_000 + n)).collect();
    for phone in &phones {
        agent.bus().publish(&lead("Ada", phone)).await.expect("publish");
    }
    eventually(Duration::from_secs(300), "every lead texted", || async {
        agent.twilio.messages().len() >= LEADS
    })
    .await;
    eventually(Duration::from_secs(120), "every lead in the CRM", || async {
        agent.airtable.records(AIRTABLE_BASE, "Leads").len() >= LEADS
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = |items: Vec<String>| {
        let mut per: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for item in items {
            *per.entry(item).or_default() += 1;
        }
        (per.len(), per.values().copied().max().unwrap_or(0))
    };
    let calls = count(agent.twilio.calls().into_iter().map(|c| c.to).collect());
    let texts = count(agent.twilio.messages().into_iter().map(|m| m.to).collect());
    let rows = count(
        agent
            .airtable
            .records(AIRTABLE_BASE, "Leads")
            .into_iter()
            .map(|r| r.fields["Phone"].to_string())
            .collect(),
    );
    assert_eq!(calls, (LEADS, 1), "(leads called, most calls to one lead)");
    assert_eq!(texts, (LEADS, 1), "(leads texted, most texts to one lead)");
    assert_eq!(rows, (LEADS, 1), "(leads in the CRM, most rows for one lead)");
}
