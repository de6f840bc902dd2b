//! A lead on `lead.received` through the real caller, the Twilio stand-in playing the callee, and
//! the real webhooks of the api role.

use std::time::Duration;

use leadq::app::Role;
use leadq::bus::kv::calls::{CallBook, CallPhase, DoNotContact};
use leadq::bus::kv::run_state::{AgentState, AgentStateStore};
use leadq::bus::{self, CallAnswer, CallCompleted, Delivery, IntakeTimestamps, LeadReceived, LeadSource, Outcome};
use leadq::domain::Lead;
use leadq::roles::caller::Caller;
use standins::twilio::{Fault, Persona};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::harness::{
    AIRTABLE_BASE, AIRTABLE_TOKEN, TWILIO_SID as SID, TWILIO_TOKEN as TOKEN, spawn_agent, spawn_agent_with,
};
use crate::helpers::{eventually, free_port, on_stream};

/// A callee who qualifies: a private office for six, next month, $2,000 a month, the decision maker.
pub(crate) fn qualified_callee() -> Persona {
    Persona::answers(&[
        "a private office",
        "six of us",
        "next month",
        "two grand a month",
        "yes",
    ])
}

pub(crate) fn lead(name: &str, phone: &str) -> LeadReceived {
    lead_from_form(&[("fname", name), ("phone", phone)])
}

/// A lead as a landing page's form gives it, queued by the CMO agent.
pub(crate) fn lead_from_form(form: &[(&str, &str)]) -> LeadReceived {
    let form = form.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    LeadReceived::new(
        Uuid::now_v7(),
        LeadSource::CmoTrigger,
        Lead::from_form(form, Default::default(), phonenumber::country::Id::US).expect("lead"),
        IntakeTimestamps {
            inbox_at: None,
            seen_at: OffsetDateTime::now_utc(),
            published_at: OffsetDateTime::now_utc(),
        },
    )
}

/// A delivery of `payload`, as the consume loop hands it to a handler.
fn delivery<P: Clone>(payload: &P, attempt: i64) -> Delivery<P> {
    Delivery {
        payload: payload.clone(),
        attempt,
        stream_sequence: 1,
        msg_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_gets_one_call_five_answers_and_one_completion() {
    let agent = spawn_agent(&[Role::Caller]).await;
    let phone = "+14155550142";
    let spoken = [
        "a private office",
        "five of us",
        "next month",
        "two thousand a month",
        "yes",
    ];
    agent.twilio.set_persona(phone, Persona::answers(&spoken));
    let lead = lead(r#"<Say>& "Bob""#, phone);
    agent.bus().publish(&lead).await.expect("publish");

    let completed = agent.completed(1).await;
    assert_eq!(completed[0].status, "completed");
    assert_eq!(completed[0].lead_id, lead.lead_id);
    let answers = agent.calls_stream::<CallAnswer>().await;
    let heard: Vec<_> = answers.iter().map(|a| a.speech.clone().unwrap_or_default()).collect();
    assert_eq!(heard, spoken);
    let calls = agent.twilio.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].errors.is_empty(), "{:?}", calls[0].errors);
    assert!(
        calls[0].heard[0].starts_with(r#"Hi <Say>& "Bob", this is Mesh Cowork"#),
        "{:?}",
        calls[0].heard
    );
    assert!(
        calls[0].heard.last().is_some_and(|s| s.starts_with("Thank you")),
        "{:?}",
        calls[0].heard
    );
    assert_eq!(
        calls[0].status_events,
        ["initiated", "ringing", "answered", "completed"]
    );
    let book = CallBook::open(&agent.bus().js).await.expect("calls");
    let (state, _) = book.get(lead.lead_id).await.expect("get").expect("entry");
    assert_eq!(state.answers.len(), 5);
    assert_eq!(state.phase, CallPhase::Completed);
    assert_eq!(state.call_sid.as_deref(), Some(calls[0].sid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_then_an_answer_is_asked_twice_and_silence_twice_is_not_captured() {
    let agent = spawn_agent(&[Role::Caller]).await;
    let phone = "+14155550143";
    agent.twilio.set_persona(
        phone,
        Persona::answers(&["", "hot desk", "", "", "three", "soon", "a thousand", "yes"]),
    );
    let lead = lead("Ada", phone);
    agent.bus().publish(&lead).await.expect("publish");
    agent.completed(1).await;
    let book = CallBook::open(&agent.bus().js).await.expect("calls");
    let (state, _) = book.get(lead.lead_id).await.expect("get").expect("entry");
    let captured: Vec<_> = state
        .answers
        .iter()
        .map(|a| (a.question_id.as_str(), a.captured))
        .collect();
    assert_eq!(
        captured,
        [
            ("space_type", true),
            ("team_size", false),
            ("move_in", true),
            ("budget", true),
            ("decision_maker", true)
        ]
    );
    let heard = &agent.twilio.calls()[0].heard;
    let asked_space = heard.iter().filter(|s| s.starts_with("What kind of space")).count();
    assert_eq!(asked_space, 2, "{heard:?}");
    // "three" to the move-in question is heard but no date: asked once more, in its own words.
    let reasked = heard
        .iter()
        .filter(|s| s.starts_with("Sorry, when would you like to move in"))
        .count();
    assert_eq!(reasked, 1, "{heard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_whose_answers_come_one_question_late_is_asked_again_and_read_not_filed_no_answer() {
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer]).await;
    // Hears the greeting late: each answer is to the question before, until the re-asks catch up.
    let late = "+14155550144";
    agent.twilio.set_persona(
        late,
        Persona::answers(&[
            "hello?",
            "sorry, who is this?",
            "a private office",
            "six of us",
            "next month",
            "two grand a month",
            "yes",
        ]),
    );
    // Speaks at every question, but never says anything that answers one.
    let muddled = "+14155550145";
    agent.twilio.set_persona(
        muddled,
        Persona::answers(&[["hello?", "what?", "I can't hear you", "sorry?", "hmm"]; 2].concat()),
    );
    let (late_lead, muddled_lead) = (lead("Ada", late), lead("Alan", muddled));
    agent.bus().publish(&late_lead).await.expect("publish");
    agent.bus().publish(&muddled_lead).await.expect("publish");
    let finalized = agent.finalized(2).await;
    let verdict = |id| finalized.iter().find(|f| f.lead_id == id).map(|f| f.verdict.clone());
    assert_eq!(
        verdict(late_lead.lead_id).as_deref(),
        Some("qualified"),
        "{finalized:?}"
    );
    assert_eq!(
        verdict(muddled_lead.lead_id).as_deref(),
        Some("unclear"),
        "{finalized:?}"
    );
    let heard = |phone: &str| {
        agent
            .twilio
            .calls()
            .into_iter()
            .find(|c| c.to == phone)
            .map(|c| c.heard)
            .unwrap_or_default()
    };
    let late_heard = heard(late);
    assert!(
        late_heard.iter().any(|h| h.starts_with("Sorry, which kind of space"))
            && late_heard
                .iter()
                .any(|h| h == "Sorry, how many people would use the space?"),
        "{late_heard:?}"
    );
    // The muddled callee is asked each question twice, and the record keeps what they said.
    let muddled_heard = heard(muddled);
    assert_eq!(
        muddled_heard.iter().filter(|h| h.starts_with("Sorry,")).count(),
        5,
        "{muddled_heard:?}"
    );
    let store = agent.ctx.store.clone().expect("store");
    let record = store.lead(muddled_lead.lead_id).await.expect("read").expect("record");
    assert_eq!(record.verdict, "unclear");
    assert!(record.answers.iter().all(|a| !a.raw.is_empty()), "{:?}", record.answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_busy_no_answer_and_failed_each_end_in_one_completion() {
    let agent = spawn_agent(&[Role::Caller]).await;
    let cases = [
        ("+14155550150", Persona::Machine, "completed"),
        ("+14155550151", Persona::Busy, "busy"),
        ("+14155550152", Persona::NoAnswer, "no-answer"),
        ("+14155550153", Persona::Failed, "failed"),
    ];
    let mut leads = Vec::new();
    for (phone, persona, _) in &cases {
        agent.twilio.set_persona(phone, persona.clone());
        let lead = lead("Ada", phone);
        agent.bus().publish(&lead).await.expect("publish");
        leads.push(lead);
    }
    let completed = agent.completed(cases.len()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.calls_stream::<CallCompleted>().await.len(), cases.len());
    for (lead, (_, persona, status)) in leads.iter().zip(&cases) {
        let done = completed.iter().find(|c| c.lead_id == lead.lead_id).expect("completed");
        assert_eq!(done.status, *status, "{persona:?}");
    }
    let machine = agent
        .twilio
        .calls()
        .into_iter()
        .find(|c| c.to == "+14155550150")
        .expect("machine call");
    assert!(
        machine.heard.iter().any(|s| s.contains("returning your request")),
        "{:?}",
        machine.heard
    );
    assert_eq!(done_answered_by(&completed, &leads[0]), Some("machine_end_beep".into()));
}

fn done_answered_by(completed: &[CallCompleted], lead: &LeadReceived) -> Option<String> {
    completed
        .iter()
        .find(|c| c.lead_id == lead.lead_id)
        .and_then(|c| c.answered_by.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_failing_twice_with_500_still_gives_one_call() {
    let agent = spawn_agent(&[]).await;
    agent.twilio.inject(Fault::Status(500));
    agent.twilio.inject(Fault::Status(500));
    let caller = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let lead = lead("Ada", "+14155550160");
    assert_eq!(caller.handle(&delivery(&lead, 1)).await, Outcome::Done);
    assert_eq!(agent.twilio.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_twilio_got_the_request_is_reconciled_not_redialed() {
    let agent = spawn_agent(&[]).await;
    agent.twilio.inject(Fault::SlowAnswer(Duration::from_secs(3)));
    let caller = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let lead = lead("Ada", "+14155550161");
    let first = caller.handle(&delivery(&lead, 1)).await;
    assert!(matches!(first, Outcome::Retry { .. }), "{first:?}");
    // The redelivery, as after a crash of the caller between the request and its record.
    assert_eq!(caller.handle(&delivery(&lead, 2)).await, Outcome::Done);
    assert_eq!(caller.handle(&delivery(&lead, 3)).await, Outcome::Done);
    let calls = agent.twilio.calls();
    assert_eq!(calls.len(), 1, "dialed twice");
    let book = CallBook::open(&agent.bus().js).await.expect("calls");
    let (state, _) = book.get(lead.lead_id).await.expect("get").expect("entry");
    assert_eq!(state.call_sid.as_deref(), Some(calls[0].sid.as_str()));
}

/// Another process took the lead over while the first one's `Calls.json` request was still
/// waiting on Twilio (the message delivered again past its deadline): Twilio lists no call yet,
/// and dialing then would ring the person twice. The second waits until that request must have
/// ended, and then finds the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_request_still_in_flight_elsewhere_is_not_placed_a_second_time() {
    let agent = spawn_agent_with(&[], |settings| {
        settings.twilio.request_timeout = Duration::from_secs(10);
    })
    .await;
    agent.twilio.inject(Fault::SlowCreate(Duration::from_secs(3)));
    let first = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let second = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let lead = lead("Ada", "+14155550164");
    let in_flight = tokio::spawn({
        let lead = lead.clone();
        async move { first.handle(&delivery(&lead, 1)).await }
    });
    let book = CallBook::open(&agent.bus().js).await.expect("calls");
    eventually(Duration::from_secs(5), "the first caller dialing", || async {
        book.get(lead.lead_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|(state, _)| state.phase == CallPhase::Dialing)
    })
    .await;
    let took_over = second.handle(&delivery(&lead, 2)).await;
    // As long as a request can take (its tries and their back-off), less what has passed.
    let request_bound = agent.ctx.settings.twilio.slowest_request();
    assert!(
        matches!(&took_over, Outcome::Retry { after, .. } if *after + Duration::from_secs(2) >= request_bound),
        "the second caller did not wait for the first request ({request_bound:?}): {took_over:?}"
    );
    assert_eq!(in_flight.await.expect("first caller"), Outcome::Done);
    assert_eq!(second.handle(&delivery(&lead, 3)).await, Outcome::Done);
    assert_eq!(agent.twilio.calls().len(), 1, "rang twice");
}

/// A request that timed out before Twilio placed the call (seen under load: the create came
/// after the client gave up, and after the 5 s reconcile had listed nothing): no second request
/// until the first must have been acted on; then the call is found, not placed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_request_that_twilio_acts_on_late_rings_once() {
    let agent = spawn_agent(&[]).await;
    let timeout = agent.ctx.settings.twilio.request_timeout;
    agent.twilio.inject(Fault::SlowCreate(timeout * 3));
    let caller = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let lead = lead("Ada", "+14155550166");
    let first = caller.handle(&delivery(&lead, 1)).await;
    assert!(matches!(first, Outcome::Retry { .. }), "{first:?}");
    let redelivered = caller.handle(&delivery(&lead, 2)).await;
    assert!(
        matches!(redelivered, Outcome::Retry { .. }),
        "dialed again while Twilio could still act on the first request: {redelivered:?}"
    );
    eventually(
        Duration::from_secs(10),
        "Twilio placing the first request's call",
        || async { agent.twilio.calls().len() == 1 },
    )
    .await;
    assert_eq!(caller.handle(&delivery(&lead, 3)).await, Outcome::Done);
    assert_eq!(agent.twilio.calls().len(), 1, "rang twice");
}

/// A call request that failed (Twilio's 5xx outlasting the client's quick retries) is over:
/// the next delivery looks the call up and places it at once, without waiting as for a request
/// that might still be in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_request_is_placed_again_at_once_on_the_next_delivery() {
    let agent = spawn_agent(&[]).await;
    for _ in 0..4 {
        agent.twilio.inject(Fault::Status(503));
    }
    let caller = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let lead = lead("Ada", "+14155550165");
    let failed = caller.handle(&delivery(&lead, 1)).await;
    assert!(matches!(failed, Outcome::Retry { .. }), "{failed:?}");
    assert!(agent.twilio.calls().is_empty());
    assert_eq!(caller.handle(&delivery(&lead, 2)).await, Outcome::Done);
    assert_eq!(agent.twilio.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_lead_is_never_dialed_twice() {
    let agent = spawn_agent(&[]).await;
    let caller = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let lead = lead("Ada", "+14155550162");
    assert_eq!(caller.handle(&delivery(&lead, 1)).await, Outcome::Done);
    // Killed after the request and before the ack: JetStream delivers it again.
    assert_eq!(caller.handle(&delivery(&lead, 2)).await, Outcome::Done);
    assert_eq!(agent.twilio.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_on_the_do_not_contact_list_is_never_called() {
    let agent = spawn_agent(&[]).await;
    let dnc = DoNotContact::open(&agent.bus().js).await.expect("dnc");
    dnc.add("+14155550163", "test").await.expect("add");
    let caller = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let lead = lead("Ada", "+14155550163");
    assert_eq!(caller.handle(&delivery(&lead, 1)).await, Outcome::Done);
    assert!(agent.twilio.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_agent_calls_none_of_50_leads_until_it_runs_again_then_each_once() {
    let agent = spawn_agent(&[Role::Caller]).await;
    let state = AgentStateStore::open(&agent.bus().js).await.expect("agent bucket");
    state.set(AgentState::Paused).await.expect("pause");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let phones: Vec<String> = (0..50).map(|i| format!("+1415555{:04}", 3000 + i)).collect();
    for phone in &phones {
        // A busy line ends each call at once; the count of calls is what this test is about.
        agent.twilio.set_persona(phone, Persona::Busy);
        agent.bus().publish(&lead("Ada", phone)).await.expect("publish");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(agent.twilio.calls().is_empty(), "called while paused");
    state.set(AgentState::Running).await.expect("resume");
    assert_eq!(agent.completed(50).await.len(), 50, "one completion per lead");
    let mut called: Vec<String> = agent.twilio.calls().into_iter().map(|call| call.to).collect();
    called.sort();
    assert_eq!(called, phones, "every lead called, none twice");
}

/// The requests the real client sends validate against Twilio's official OpenAPI document, served
/// by Stoplight Prism (installed by scripts/test). Prism wrongly refuses a repeated
/// `StatusCallbackEvent` ("must be array"), so the copy it serves drops that field's type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_requests_validate_against_twilios_openapi_document() {
    let Some(prism) = std::env::var_os("LEADQ_PRISM") else {
        panic!("LEADQ_PRISM is not set: run the tests with scripts/test, which installs Prism");
    };
    let spec_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/twilio_api_v2010.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec_path).expect("the Twilio spec")).expect("json");
    let schema = &mut spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Calls.json"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
        ["schema"]["properties"]["StatusCallbackEvent"];
    let field = schema.as_object_mut().expect("StatusCallbackEvent schema");
    field.remove("type");
    field.remove("items");
    let dir = tempfile::tempdir().expect("temp dir");
    let patched = dir.path().join("twilio.json");
    std::fs::write(&patched, serde_json::to_vec(&spec).expect("json")).expect("write spec");
    let port = free_port();
    let mut child = std::process::Command::new(prism)
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(&patched)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prism");
    let base = format!("http://127.0.0.1:{port}");
    let up = tokio::time::timeout(Duration::from_secs(60), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let result = async {
        up.expect("prism listens");
        let mut settings = leadq::config::Settings::for_tests("nats://127.0.0.1:1").twilio;
        settings.api_base = base.parse().expect("url");
        settings.account_sid = Some(SID.into());
        settings.auth_token = Some(TOKEN.to_owned().into());
        settings.from_number = Some("+15005550006".into());
        let client = leadq::clients::twilio::TwilioClient::new(&settings).expect("client");
        let call = leadq::clients::twilio::NewCall {
            to: "+14155550142",
            url: "https://leads.example.com/webhooks/twilio/call-start?lead=1",
            status_callback: "https://leads.example.com/webhooks/twilio/call-status?lead=1",
            amd_callback: "https://leads.example.com/webhooks/twilio/amd?lead=1",
        };
        let created = client.create_call(&call).await;
        assert!(created.is_ok(), "Calls.json create refused: {created:?}");
        // The live-call update that sends a detected machine to the voicemail, and a hang-up.
        let sid = "CA0123456789abcdef0123456789abcdef";
        let redirected = client
            .redirect_call(sid, "https://leads.example.com/webhooks/twilio/voicemail?lead=1")
            .await;
        assert!(
            redirected.is_ok(),
            "Calls/{{Sid}}.json redirect refused: {redirected:?}"
        );
        let hung_up = client.hang_up(sid).await;
        assert!(hung_up.is_ok(), "Calls/{{Sid}}.json hang-up refused: {hung_up:?}");
        let listed = client.calls_to("+14155550142").await;
        assert!(listed.is_ok(), "Calls.json list refused: {listed:?}");
        // The control: Prism does refuse a request the document forbids (no From).
        let bad = reqwest::Client::new()
            .post(format!("{base}/2010-04-01/Accounts/{SID}/Calls.json"))
            .basic_auth(SID, Some(TOKEN))
            .form(&[("To", "+14155550142"), ("Url", "https://x.test/")])
            .send()
            .await
            .expect("post");
        assert_eq!(bad.status(), 422);
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_outside_its_calling_hours_is_deferred_not_called() {
    // A one-hour window that excludes the lead's local time now (Los Angeles for +1415).
    let hour_there = jiff::Timestamp::now().in_tz("America/Los_Angeles").expect("tz").hour();
    let start = if hour_there < 12 { 14 } else { 3 };
    let agent = spawn_agent_with(&[], |settings| {
        settings.calling_hours.start = jiff::civil::Time::constant(start, 0, 0, 0);
        settings.calling_hours.end = jiff::civil::Time::constant(start + 1, 0, 0, 0);
    })
    .await;
    let mut activity = agent
        .bus()
        .client
        .subscribe(bus::subject::AGENT_ACTIVITY)
        .await
        .expect("sub");
    let caller = Caller::new(agent.ctx.caller_deps()).await.expect("caller");
    let lead = lead("Ada", "+14155550171");
    let outcome = caller.handle(&delivery(&lead, 1)).await;
    let Outcome::Retry { after, reason } = outcome else {
        panic!("not deferred: {outcome:?}")
    };
    assert!(
        after > Duration::ZERO && after < Duration::from_secs(24 * 3600),
        "{after:?}"
    );
    assert!(reason.contains("calling hours"), "{reason}");
    assert!(agent.twilio.calls().is_empty(), "called outside calling hours");
    let entry = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut activity))
        .await
        .expect("activity")
        .expect("message");
    let entry: serde_json::Value = serde_json::from_slice(&entry.payload).expect("json");
    assert_eq!(entry["kind"], "call.deferred");
    let call_after: jiff::Timestamp = entry["detail"]["call_after"]
        .as_str()
        .expect("time")
        .parse()
        .expect("timestamp");
    assert_eq!(
        call_after.in_tz("America/Los_Angeles").expect("tz").hour(),
        start,
        "opens at the window's start there"
    );
}

/// Email-free end to end from the bus: the call, then the finalizer's record and `lead.finalized`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_calls_are_finalized_with_verdicts_records_and_one_lead_finalized_each() {
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer]).await;
    let cases = [
        (
            "+14155550180",
            Persona::answers(&[
                "a private office",
                "six of us",
                "next month",
                "two grand a month",
                "yes that's me",
            ]),
            "qualified",
        ),
        (
            "+14155550181",
            Persona::answers(&[
                "hot desk",
                "just me",
                "in two years",
                "a hundred dollars",
                "no my boss decides",
            ]),
            "unqualified",
        ),
        ("+14155550182", Persona::Machine, "voicemail"),
        ("+14155550183", Persona::Busy, "no_answer"),
        (
            "+14155550184",
            Persona::answers(&["", "", "", "", "", "", "", "", "", ""]),
            "no_answer",
        ),
    ];
    let mut leads = Vec::new();
    for (phone, persona, _) in &cases {
        agent.twilio.set_persona(phone, persona.clone());
        let lead = lead("Ada", phone);
        agent.bus().publish(&lead).await.expect("publish");
        leads.push(lead);
    }
    eventually(Duration::from_secs(30), "every lead finalized", || async {
        on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS)
            .await
            .len()
            >= cases.len()
    })
    .await;
    let finalized = on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS).await;
    assert_eq!(finalized.len(), cases.len(), "{finalized:?}");
    let store = agent.ctx.store.clone().expect("store");
    for (lead, (_, _, verdict)) in leads.iter().zip(&cases) {
        let done = finalized
            .iter()
            .find(|f| f.lead_id == lead.lead_id)
            .expect("lead.finalized");
        assert_eq!(done.verdict, *verdict, "{done:?}");
        let record = store.lead(lead.lead_id).await.expect("read").expect("a record");
        assert_eq!(record.verdict, *verdict);
        assert_eq!(record.contact.phone.as_str(), lead.lead.phone.as_str());
        assert!(!record.reasons.is_empty());
    }
    // The SMS role's reports reach each record (through the activity log the api role writes).
    agent.start(Role::Sms).await;
    for lead in &leads {
        eventually(Duration::from_secs(20), "the record says the SMS went out", || async {
            let record = store.lead(lead.lead_id).await.expect("read").expect("record");
            record.sms_state == "sent"
        })
        .await;
    }
    let qualified = store.lead(leads[0].lead_id).await.expect("read").expect("record");
    let value_of = |id: &str| qualified.answer(id).map(|a| a.value.clone());
    assert_eq!(value_of("space_type"), Some(serde_json::json!("private_office")));
    assert_eq!(value_of("team_size"), Some(serde_json::json!(6)));
    assert_eq!(value_of("budget"), Some(serde_json::json!(2000)));
    assert_eq!(value_of("decision_maker"), Some(serde_json::json!(true)));
    assert_eq!(qualified.score, 100);
    assert!(
        qualified.timestamps.speed_to_lead_secs.is_some_and(|s| s >= 0.0),
        "{qualified:?}"
    );
    eventually(Duration::from_secs(20), "every lead in Airtable", || async {
        agent.airtable.records(AIRTABLE_BASE, "Leads").len() >= cases.len()
    })
    .await;
    let rows = agent.airtable.records(AIRTABLE_BASE, "Leads");
    assert_eq!(rows.len(), cases.len());
    let row = rows
        .iter()
        .find(|r| r.fields["Lead ID"] == leads[0].lead_id.to_string())
        .expect("the qualified lead's row");
    assert_eq!(row.fields["Verdict"], "qualified");
    assert_eq!(row.fields["Space Type"], "private_office");
    assert_eq!(row.fields["Team Size"], 6);
    assert_eq!(row.fields["Score"], 100);
    assert!(row.fields["Reasons"].as_str().is_some_and(|r| r.contains("team of 6")));
    assert!(row.fields["Speed To Lead (s)"].as_f64().is_some());
    eventually(Duration::from_secs(10), "the record marked synced", || async {
        store
            .lead(leads[0].lead_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.crm_sync == "synced")
    })
    .await;

    // A redelivered call.completed rewrites the same record and publishes nothing new.
    let finalizer = leadq::roles::finalizer::Finalizer::new(agent.ctx.finalizer_deps().expect("the store"));
    let completed: Vec<CallCompleted> = agent.calls_stream().await;
    let again = completed
        .iter()
        .find(|c| c.lead_id == leads[0].lead_id)
        .expect("completed")
        .clone();
    let delivery = Delivery {
        payload: again,
        attempt: 2,
        stream_sequence: 1,
        msg_id: None,
    };
    assert_eq!(finalizer.handle(&delivery).await, Outcome::Done);
    assert_eq!(
        on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS)
            .await
            .len(),
        cases.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_finalized_lead_gets_one_text_and_stop_ends_all_contact() {
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer]).await;
    agent.start(Role::Sms).await;
    let phone = "+14155550185";
    let form = vec![
        ("fname".to_owned(), "Renée O'Brien".to_owned()),
        ("email".to_owned(), "renee@example.org".to_owned()),
        ("phone".to_owned(), phone.to_owned()),
        ("campaignid".to_owned(), "fall-2026".to_owned()),
    ];
    let mut renee = lead("x", phone);
    renee.lead = Lead::from_form(form, Default::default(), phonenumber::country::Id::US).expect("lead");
    agent.bus().publish(&renee).await.expect("publish");
    eventually(Duration::from_secs(30), "one SMS", || async {
        !agent.twilio.messages().is_empty()
    })
    .await;
    let text = agent.twilio.messages()[0].clone();
    assert_eq!(text.to, phone);
    assert!(text.body.starts_with("Hi Renée, thanks"), "{}", text.body);
    let link = text
        .body
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .expect("a link");
    let link = url::Url::parse(link).expect("url");
    let query: std::collections::HashMap<_, _> = link.query_pairs().into_owned().collect();
    assert_eq!(query["name"], "Renée O'Brien");
    assert_eq!(query["email"], "renee@example.org");
    assert_eq!(query["a1"], renee.lead_id.to_string());
    assert_eq!(query["utm_campaign"], "fall-2026");

    // The same lead.finalized again (a redelivery after a crash): no second text.
    let finalized = on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS).await;
    let sender = leadq::roles::sms::SmsSender::new(agent.ctx.sms_deps())
        .await
        .expect("sender");
    let again = Delivery {
        payload: finalized[0].clone(),
        attempt: 2,
        stream_sequence: 1,
        msg_id: None,
    };
    assert_eq!(sender.handle(&again).await, Outcome::Done);
    assert_eq!(agent.twilio.messages().len(), 1);

    // STOP by SMS: no more calls or texts to the number; START lifts it.
    let url = format!("{}webhooks/twilio/sms", agent.ctx.settings.public_url);
    let params = vec![
        ("From".to_owned(), phone.to_owned()),
        ("Body".to_owned(), "Stop".to_owned()),
    ];
    let signature = leadq::clients::twilio::signature::sign(TOKEN, &url, &params);
    let response = reqwest::Client::new()
        .post(&url)
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let dnc = DoNotContact::open(&agent.bus().js).await.expect("dnc");
    assert!(dnc.contains(phone).await.expect("dnc"));
    let later = lead("Renée", phone);
    agent.bus().publish(&later).await.expect("publish");
    let skipped = Delivery {
        payload: bus::LeadFinalized {
            lead_id: later.lead_id,
            ..finalized[0].clone()
        },
        attempt: 1,
        stream_sequence: 1,
        msg_id: None,
    };
    assert_eq!(sender.handle(&skipped).await, Outcome::Done);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(agent.twilio.calls().len(), 1, "called after STOP");
    assert_eq!(agent.twilio.messages().len(), 1, "texted after STOP");

    let params = vec![
        ("From".to_owned(), phone.to_owned()),
        ("Body".to_owned(), "START".to_owned()),
    ];
    let signature = leadq::clients::twilio::signature::sign(TOKEN, &url, &params);
    reqwest::Client::new()
        .post(&url)
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .expect("post");
    assert!(!dnc.contains(phone).await.expect("dnc"), "START did not lift the block");
}

/// A text that went out before its process died (the `sms` entry `sending` with the message at
/// Twilio, or `sent` before the report) is confirmed on the next delivery: the lead's record
/// learns it, and the lead is not texted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_sent_before_a_crash_reaches_the_record_without_a_second_text() {
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer]).await;
    let (sending, sent) = (lead("Ada", "+14155550186"), lead("Bo", "+14155550187"));
    for lead in [&sending, &sent] {
        agent.twilio.set_persona(lead.lead.phone.as_str(), qualified_callee());
        agent.bus().publish(lead).await.expect("publish");
    }
    let finalized = agent.finalized(2).await;
    let store = agent.ctx.store.clone().expect("store");
    // What the dead process left: each text at Twilio, one entry `sending`, the other `sent`.
    let twilio = leadq::clients::twilio::TwilioClient::new(&agent.ctx.settings.twilio).expect("client");
    let bucket = agent
        .bus()
        .js
        .get_key_value(bus::bucket::SMS)
        .await
        .expect("sms bucket");
    for (lead, state) in [(&sending, "sending"), (&sent, "sent")] {
        let done = finalized.iter().find(|f| f.lead_id == lead.lead_id).expect("finalized");
        let link = leadq::roles::sms::booking_link(&agent.ctx.settings.calendly_url, done);
        let message = twilio
            .send_sms(lead.lead.phone.as_str(), &format!("Book here: {link}"))
            .await
            .expect("sms");
        let sid = (state == "sent").then_some(message.sid);
        let entry = serde_json::json!({ "state": state, "sid": sid });
        bucket
            .put(lead.lead_id.simple().to_string(), entry.to_string().into())
            .await
            .expect("put");
        let record = store.lead(lead.lead_id).await.expect("read").expect("record");
        assert_eq!(record.sms_state, "pending", "{record:?}");
    }

    let sender = leadq::roles::sms::SmsSender::new(agent.ctx.sms_deps())
        .await
        .expect("sender");
    for done in &finalized {
        assert_eq!(sender.handle(&delivery(done, 2)).await, Outcome::Done);
    }
    for lead in [&sending, &sent] {
        eventually(Duration::from_secs(20), "the record says the text went out", || async {
            let record = store.lead(lead.lead_id).await.expect("read").expect("record");
            record.sms_state == "sent"
        })
        .await;
    }
    assert_eq!(agent.twilio.messages().len(), 2, "a lead texted twice");
}

/// A text whose request another process may still be waiting on (its `sms` entry `sending` a
/// moment ago, nothing at Twilio yet) is not sent beside it; one whose request is known to have
/// done nothing, or is older than any request can take, goes out at once, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_request_still_in_flight_elsewhere_is_not_sent_a_second_time() {
    use time::format_description::well_known::Rfc3339;
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer]).await;
    let leads = [
        lead("Ada", "+14155550188"),
        lead("Bo", "+14155550189"),
        lead("Cy", "+14155550190"),
    ];
    for lead in &leads {
        agent.twilio.set_persona(lead.lead.phone.as_str(), qualified_callee());
        agent.bus().publish(lead).await.expect("publish");
    }
    let finalized = agent.finalized(3).await;
    let bucket = agent
        .bus()
        .js
        .get_key_value(bus::bucket::SMS)
        .await
        .expect("sms bucket");
    let at = |ago: i64| {
        (time::OffsetDateTime::now_utc() - time::Duration::seconds(ago))
            .format(&Rfc3339)
            .expect("time")
    };
    let entries = [
        serde_json::json!({ "state": "sending", "sid": null, "since": at(0) }),
        serde_json::json!({ "state": "sending", "sid": null, "since": at(120) }),
        serde_json::json!({ "state": "sending", "sid": null, "since": at(0), "ended": true }),
    ];
    for (lead, entry) in leads.iter().zip(&entries) {
        bucket
            .put(lead.lead_id.simple().to_string(), entry.to_string().into())
            .await
            .expect("put");
    }
    let sender = leadq::roles::sms::SmsSender::new(agent.ctx.sms_deps())
        .await
        .expect("sender");
    let handle = |lead: &LeadReceived| {
        let done = finalized
            .iter()
            .find(|f| f.lead_id == lead.lead_id)
            .expect("finalized")
            .clone();
        let sender = &sender;
        async move { sender.handle(&delivery(&done, 2)).await }
    };
    let in_flight = handle(&leads[0]).await;
    assert!(
        matches!(in_flight, Outcome::Retry { .. }),
        "texted while another request may still be acted on: {in_flight:?}"
    );
    assert_eq!(
        handle(&leads[1]).await,
        Outcome::Done,
        "a request older than any can take"
    );
    assert_eq!(handle(&leads[2]).await, Outcome::Done, "a request that did nothing");
    let texted: Vec<String> = agent.twilio.messages().into_iter().map(|m| m.to).collect();
    assert_eq!(texted.len(), 2, "{texted:?}");
    assert!(!texted.contains(&leads[0].lead.phone.as_str().to_owned()), "{texted:?}");
}

/// The whole path on real parts: lead emails appended to Dovecot are read by the poller, called
/// through the Twilio stand-in (each number a different callee), answered through the webhooks,
/// finalized into the store and Airtable, and texted the booking link once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_in_the_inbox_end_as_calls_records_crm_rows_and_one_text_each() {
    let dovecot = crate::dovecot::Dovecot::start();
    let agent = spawn_agent_with(&[Role::Caller], |settings| {
        dovecot.settings(settings, Duration::from_secs(600))
    })
    .await;
    agent.start(Role::Poller).await;
    agent.start(Role::Finalizer).await;
    agent.start(Role::Sms).await;
    let template = String::from_utf8(crate::dovecot::fixture("01-plain-private-office.eml")).expect("utf-8");
    let email = |n: usize, phone: &str| {
        template
            .replace(
                "<20261124140311.1a2b3c@mail.unbounce.com>",
                &format!("<e2e-{n}@leadq.test>"),
            )
            .replace("201-555-0123", phone)
            .replace("john@example.com", &format!("lead{n}@example.com"))
    };
    let personas = [
        (
            "+14155550201",
            Persona::answers(&[
                "a private office",
                "six of us",
                "next month",
                "two grand a month",
                "yes that's me",
            ]),
            "qualified",
        ),
        (
            "+14155550202",
            Persona::answers(&[
                "hot desk",
                "just me",
                "in two years",
                "a hundred dollars",
                "no my boss decides",
            ]),
            "unqualified",
        ),
        ("+14155550203", Persona::Machine, "voicemail"),
        ("+14155550204", Persona::Busy, "no_answer"),
        (
            "+14155550205",
            Persona::answers(&["", "", "", "", "", "", "", "", "", ""]),
            "no_answer",
        ),
    ];
    for (n, (phone, persona, _)) in personas.iter().enumerate() {
        agent.twilio.set_persona(phone, persona.clone());
        dovecot.append(email(n, phone).as_bytes()).await;
    }
    eventually(Duration::from_secs(60), "a text to every lead", || async {
        agent.twilio.messages().len() >= personas.len()
    })
    .await;
    eventually(Duration::from_secs(20), "every lead in Airtable", || async {
        agent.airtable.records(AIRTABLE_BASE, "Leads").len() >= personas.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (calls, texts, rows) = (
        agent.twilio.calls(),
        agent.twilio.messages(),
        agent.airtable.records(AIRTABLE_BASE, "Leads"),
    );
    assert_eq!(
        (calls.len(), texts.len(), rows.len()),
        (5, 5, 5),
        "one call, one text, one row per lead"
    );
    for (n, (phone, _, verdict)) in personas.iter().enumerate() {
        let row = rows
            .iter()
            .find(|r| r.fields["Phone"] == *phone)
            .unwrap_or_else(|| panic!("no row for {phone}"));
        assert_eq!(row.fields["Verdict"], *verdict, "{phone}");
        assert_eq!(row.fields["Name"], "John Doe");
        let text = texts.iter().find(|t| t.to == *phone).expect("a text");
        let link = text
            .body
            .split_whitespace()
            .find(|w| w.starts_with("https://"))
            .expect("a link");
        let query: std::collections::HashMap<_, _> =
            url::Url::parse(link).expect("url").query_pairs().into_owned().collect();
        assert_eq!(query["email"], format!("lead{n}@example.com"));
        assert_eq!(query["name"], "John Doe");
        assert_eq!(query["a1"], row.fields["Lead ID"].as_str().expect("lead id"));
    }
    let qualified = rows.iter().find(|r| r.fields["Phone"] == "+14155550201").expect("row");
    assert!(qualified.fields["Speed To Lead (s)"].as_f64().is_some_and(|s| s >= 0.0));
    assert_eq!(qualified.fields["Landing Page"], "Mesh Cowork - Private Offices");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_finalizes_a_call_whose_status_callback_never_came() {
    let agent = spawn_agent(&[]).await;
    let book = CallBook::open(&agent.bus().js).await.expect("calls");
    let stale_lead = lead("Ada", "+14155550210");
    let mut stale = leadq::bus::kv::calls::CallState::queued(stale_lead.lead_id, "+14155550210", Some("Ada"));
    stale.phase = CallPhase::Dialed;
    stale.call_sid = Some("CAstale".into());
    stale.intake = Some(Box::new(stale_lead.clone()));
    stale.answers.push(leadq::bus::kv::calls::HeardAnswer {
        question_id: "space_type".into(),
        speech: Some("hot desk".into()),
        confidence: Some(0.9),
        captured: true,
        understood: true,
    });
    stale.updated_at = OffsetDateTime::now_utc() - time::Duration::hours(3);
    assert!(book.create(&stale).await.expect("create"));
    let fresh_lead = lead("Bo", "+14155550211");
    let mut fresh = leadq::bus::kv::calls::CallState::queued(fresh_lead.lead_id, "+14155550211", Some("Bo"));
    fresh.phase = CallPhase::Dialed;
    assert!(book.create(&fresh).await.expect("create"));

    let finalizer = leadq::roles::finalizer::Finalizer::new(agent.ctx.finalizer_deps().expect("the store"));
    // The CallSid is unknown to Twilio: after the watchdog's time the call is reported anyway.
    let hour = Duration::from_secs(3600);
    assert_eq!(finalizer.sweep(hour, hour).await.expect("sweep"), 1);
    assert_eq!(finalizer.sweep(hour, hour).await.expect("sweep"), 0, "reported twice");
    let completed = agent.calls_stream::<CallCompleted>().await;
    assert_eq!(completed.len(), 1);
    assert_eq!(
        (completed[0].lead_id, completed[0].status.as_str()),
        (stale_lead.lead_id, "completed")
    );
    let delivery = Delivery {
        payload: completed[0].clone(),
        attempt: 1,
        stream_sequence: 1,
        msg_id: None,
    };
    assert_eq!(finalizer.handle(&delivery).await, Outcome::Done);
    let store = agent.ctx.store.clone().expect("store");
    let record = store.lead(stale_lead.lead_id).await.expect("read").expect("record");
    // One answer of five, and the end never heard: the call broke, the lead did answer.
    assert_eq!(record.verdict, "interrupted", "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_status_callback_is_learnt_from_twilio_in_seconds_not_hours() {
    let agent = spawn_agent_with(&[Role::Caller], |settings| {
        settings.call_reconcile_after = Duration::from_secs(1);
        settings.call_watchdog = Duration::from_secs(7200);
    })
    .await;
    agent.start(Role::Finalizer).await;
    agent.twilio.lose_status_callbacks(true);
    let phone = "+14155550230";
    agent.twilio.set_persona(phone, qualified_callee());
    let ada = lead("Ada", phone);
    agent.bus().publish(&ada).await.expect("publish");
    agent.finalized(1).await;
    let calls = agent.twilio.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].timeline.iter().any(|t| t == "status completed lost"),
        "{:?}",
        calls[0].timeline
    );
    let finalized = on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS).await;
    assert_eq!(
        finalized[0].verdict, "qualified",
        "every answer was heard: the lost callback changes nothing"
    );
    let completed = agent.calls_stream::<CallCompleted>().await;
    assert_eq!(
        (completed.len(), completed[0].duration_secs.is_some()),
        (1, true),
        "{completed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_who_picked_up_while_call_start_failed_is_called_again_not_filed_no_answer() {
    let agent = spawn_agent_with(&[Role::Caller], |settings| {
        settings.retry_ladder = vec![Duration::from_secs(1)]
    })
    .await;
    agent.start(Role::Finalizer).await;
    let phone = "+14155550231";
    agent.twilio.set_persona(phone, qualified_callee());
    // The api answers the first call's TwiML request with a 500: the lead hears Twilio's error.
    agent.twilio.fail_twiml_fetches(1);
    let ada = lead("Ada", phone);
    agent.bus().publish(&ada).await.expect("publish");
    agent.finalized(1).await;
    assert_eq!(agent.twilio.calls().len(), 2, "called once more after the broken call");
    let finalized = on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS).await;
    assert_eq!(finalized[0].verdict, "qualified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_line_is_called_again_after_the_ladder_step_then_finalized_once() {
    let agent = spawn_agent_with(&[Role::Caller], |settings| {
        settings.retry_ladder = vec![Duration::from_secs(2)]
    })
    .await;
    agent.start(Role::Finalizer).await;
    let phone = "+14155550220";
    agent.twilio.set_persona(phone, Persona::Busy);
    let ada = lead("Ada", phone);
    agent.bus().publish(&ada).await.expect("publish");
    eventually(Duration::from_secs(20), "the first (busy) call", || async {
        agent.twilio.calls().first().is_some_and(|c| c.status == "busy")
    })
    .await;
    let first_done = std::time::Instant::now();
    agent.twilio.set_persona(
        phone,
        Persona::answers(&[
            "a private office",
            "six of us",
            "next month",
            "two grand a month",
            "yes that's me",
        ]),
    );
    eventually(Duration::from_secs(30), "finalized after the second call", || async {
        !on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS)
            .await
            .is_empty()
    })
    .await;
    let calls = agent.twilio.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        first_done.elapsed() >= Duration::from_secs(1),
        "called again before the ladder's wait"
    );
    let finalized = on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS).await;
    assert_eq!(finalized.len(), 1);
    assert_eq!(finalized[0].verdict, "qualified");

    // Busy every time: the ladder runs out and the lead is finalized as no_answer, once.
    let stubborn = "+14155550221";
    agent.twilio.set_persona(stubborn, Persona::Busy);
    let again = lead("Bo", stubborn);
    agent.bus().publish(&again).await.expect("publish");
    eventually(Duration::from_secs(30), "finalized as no_answer", || async {
        on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS)
            .await
            .len()
            >= 2
    })
    .await;
    let finalized = on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS).await;
    let bo = finalized
        .iter()
        .find(|f| f.lead_id == again.lead_id)
        .expect("finalized");
    assert_eq!(bo.verdict, "no_answer");
    assert_eq!(
        agent.twilio.calls().iter().filter(|c| c.to == stubborn).count(),
        2,
        "one try plus one retry"
    );
}

/// The finalizer and the SMS sender run as their own processes and are killed (SIGKILL) at random
/// moments while twenty leads go through; restarted each time, they still leave exactly one
/// record, one Airtable row and one text per lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_and_sms_processes_killed_at_random_still_finish_every_lead_once() {
    use rand::Rng;
    let agent = spawn_agent(&[Role::Caller]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("surrealkv://{}", dir.path().join("db").display());
    let env: Vec<(&str, String)> = vec![
        ("LEADQ_NATS_URL", agent.ctx.settings.nats_url.clone()),
        ("LEADQ_DB", db.clone()),
        ("LEADQ_TWILIO__ACCOUNT_SID", SID.into()),
        ("LEADQ_TWILIO__AUTH_TOKEN", TOKEN.into()),
        ("LEADQ_TWILIO__FROM_NUMBER", "+15005550006".into()),
        ("LEADQ_TWILIO_API_BASE", agent.twilio.base_url()),
        ("LEADQ_AIRTABLE_API_BASE", agent.airtable.base_url()),
        ("LEADQ_AIRTABLE__TOKEN", AIRTABLE_TOKEN.into()),
        ("LEADQ_AIRTABLE__BASE_ID", AIRTABLE_BASE.into()),
        ("LEADQ_AIRTABLE__POLL", "500ms".into()),
        ("LEADQ_RETRY_LADDER", "[]".into()),
        ("LEADQ_LOG", "warn".into()),
    ];
    let spawn = |role: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_leadq"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join(format!("{role}.log")))
            .expect("log file");
        command.arg(role).stdout(std::process::Stdio::null()).stderr(log);
        for (key, value) in &env {
            command.env(key, value);
        }
        command.spawn().expect("spawn a role")
    };
    let leads: Vec<LeadReceived> = (0..20)
        .map(|n| lead(&format!("Lead {n}"), &format!("+1415555{:04}", 300 + n)))
        .collect();
    for lead in &leads {
        agent.twilio.set_persona(
            lead.lead.phone.as_str(),
            Persona::answers(&["hot desk", "three", "next month", "a thousand a month", "yes"]),
        );
        agent.bus().publish(lead).await.expect("publish");
    }
    let done = || {
        agent.twilio.messages().len() >= leads.len()
            && agent.airtable.records(AIRTABLE_BASE, "Leads").len() >= leads.len()
    };
    for _ in 0..6 {
        let mut children = [spawn("finalizer"), spawn("sms")];
        let alive = rand::rng().random_range(200..1200);
        tokio::time::sleep(Duration::from_millis(alive)).await;
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if done() {
            break;
        }
    }
    // Then left alone to finish.
    let mut children = [spawn("finalizer"), spawn("sms")];
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for child in &mut children {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    if finished.is_err() {
        let logs: Vec<String> = ["finalizer", "sms"]
            .iter()
            .map(|role| std::fs::read_to_string(dir.path().join(format!("{role}.log"))).unwrap_or_default())
            .collect();
        panic!(
            "not finished: {} texts, {} rows, {} calls\nfinalizer log:\n{}\nsms log:\n{}",
            agent.twilio.messages().len(),
            agent.airtable.records(AIRTABLE_BASE, "Leads").len(),
            agent.twilio.calls().len(),
            logs[0].lines().rev().take(15).collect::<Vec<_>>().join("\n"),
            logs[1].lines().rev().take(15).collect::<Vec<_>>().join("\n"),
        );
    }

    let texts = agent.twilio.messages();
    let mut texted: Vec<&str> = texts.iter().map(|t| t.to.as_str()).collect();
    texted.sort();
    texted.dedup();
    assert_eq!(
        (texts.len(), texted.len()),
        (leads.len(), leads.len()),
        "a lead texted twice or not at all"
    );
    let rows = agent.airtable.records(AIRTABLE_BASE, "Leads");
    assert_eq!(rows.len(), leads.len(), "Airtable rows");
    let mut settings = leadq::config::Settings::for_tests("nats://127.0.0.1:1");
    settings.db = leadq::config::DbLocation::File(dir.path().join("db"));
    let store = leadq::store::Store::open(&settings)
        .await
        .expect("the finalizer's store");
    for lead in &leads {
        let record = store
            .lead(lead.lead_id)
            .await
            .expect("read")
            .expect("a record per lead");
        assert_eq!(record.verdict, "qualified");
    }
    assert_eq!(agent.twilio.calls().len(), leads.len(), "one call per lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_status_callback_beats_the_callers_record_still_counts_as_made() {
    let agent = spawn_agent(&[Role::Caller, Role::Finalizer]).await;
    let since = OffsetDateTime::now_utc() - Duration::from_secs(60);
    let phones = ["+14155550190", "+14155550191", "+14155550192"];
    for phone in phones {
        agent.twilio.set_persona(phone, Persona::Busy);
        // Twilio answers Calls.json after the busy line's callback was delivered.
        agent.twilio.inject(Fault::SlowAnswer(Duration::from_millis(600)));
    }
    for phone in phones {
        agent.bus().publish(&lead("Ada", phone)).await.expect("publish");
    }
    agent.finalized(phones.len()).await;
    assert_eq!(agent.twilio.calls().len(), phones.len());
    let store = agent.ctx.store.clone().expect("store");
    let figures = store.figures(since).await.expect("figures");
    assert_eq!(
        figures.calls_made,
        phones.len() as u64,
        "every placed call counts as made"
    );
}
