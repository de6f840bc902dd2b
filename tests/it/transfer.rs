//! The warm transfer end to end: the real caller, api webhooks, finalizer and SMS role, the
//! Twilio stand-in playing both the lead and the rep (who answers and takes the call, declines
//! after the whisper, or never answers), and the roster from the settings or the admin API.

use std::time::Duration;

use leadq::app::Role;
use leadq::bus::kv::followups::FollowUpStops;
use leadq::domain::roster::Roster;
use leadq::store::LeadRecord;
use reqwest::Method;
use serde_json::json;
use standins::twilio::{CallRecord, Persona};

use crate::call::{lead, qualified_callee};
use crate::harness::{TestAgent, spawn_agent_with};
use crate::helpers::{admin_token, eventually};

const REP: &str = "+12125550199";
const AGENT_NUMBER: &str = "+15005550006";

/// A callee who qualifies, then answers the offer with `reply`.
fn qualified_then(reply: &str) -> Persona {
    match qualified_callee() {
        Persona::Answers(mut said) => {
            said.push((reply.to_owned(), 0.9));
            Persona::Answers(said)
        }
        other => other,
    }
}

/// Caller, finalizer and SMS roles, with Sam Rivera on duty at every hour.
async fn agent() -> TestAgent {
    spawn_agent_with(&[Role::Caller, Role::Finalizer, Role::Sms], |settings| {
        settings.transfer = Roster {
            reps: Roster::parse(&format!("Sam Rivera {REP} daily 00:00-24:00")).expect("roster"),
            ..Roster::default()
        };
    })
    .await
}

/// Calls `phone` (the lead's persona already set) and waits for its record and its text.
async fn call_and_finish(agent: &TestAgent, name: &str, phone: &str) -> LeadRecord {
    let lead = lead(name, phone);
    agent.bus().publish(&lead).await.expect("publish");
    let store = agent.ctx.store.clone().expect("store");
    eventually(Duration::from_secs(30), "the lead finalized and texted", || async {
        store
            .lead(lead.lead_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|record| record.sms_state != "pending")
    })
    .await;
    store.lead(lead.lead_id).await.expect("read").expect("record")
}

fn call_to(agent: &TestAgent, number: &str) -> Vec<CallRecord> {
    agent.twilio.calls().into_iter().filter(|c| c.to == number).collect()
}

fn dials(call: &CallRecord) -> usize {
    call.timeline.iter().filter(|t| t.starts_with("dial ")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qualified_lead_who_says_yes_talks_with_the_rep_who_heard_the_whisper_first() {
    let agent = agent().await;
    let phone = "+14155550190";
    agent.twilio.set_persona(phone, qualified_then("yes please"));
    agent.twilio.set_persona(REP, Persona::answers(&["1"]));
    let record = call_and_finish(&agent, "Ada Lovelace", phone).await;

    let lead_call = &call_to(&agent, phone)[0];
    assert!(lead_call.errors.is_empty(), "{:?}", lead_call.errors);
    assert!(
        lead_call
            .heard
            .iter()
            .any(|h| h.contains("connect you to our community manager")),
        "{:?}",
        lead_call.heard
    );
    assert_eq!(dials(lead_call), 1, "{:?}", lead_call.timeline);
    assert!(
        lead_call.timeline.iter().any(|t| t == "bridged"),
        "{:?}",
        lead_call.timeline
    );
    // The rep's leg: from the agent's number, and the whisper names the lead and their needs.
    let rep_leg = call_to(&agent, REP);
    assert_eq!(rep_leg.len(), 1);
    assert_eq!(rep_leg[0].from, AGENT_NUMBER);
    assert!(rep_leg[0].errors.is_empty(), "{:?}", rep_leg[0].errors);
    let whisper = rep_leg[0].heard.join(" ");
    assert!(
        whisper.contains("Ada Lovelace") && whisper.contains("Private office"),
        "{whisper}"
    );

    let transfer = record.transfer.expect("the record has the transfer");
    assert_eq!(transfer.outcome, "transferred");
    assert_eq!(
        (transfer.rep_name.as_str(), transfer.rep_phone.as_str()),
        ("Sam Rivera", REP)
    );
    assert!(transfer.talked_secs.is_some_and(|s| s >= 1), "{transfer:?}");
    assert_eq!(record.verdict, "qualified");
    // Handed to a person: the booking link still goes out, the follow-ups do not.
    assert_eq!(record.sms_state, "sent");
    let stops = FollowUpStops::open(&agent.bus().js).await.expect("stops");
    let lead_id = record.id.parse().expect("uuid");
    assert_eq!(
        stops.reason(lead_id).await.expect("read").as_deref(),
        Some("transferred")
    );

    // The CMO agent's report and status count it.
    let (status, report) = agent.cmo_get("report/today").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["transferred_leads"], 1, "{report}");
    assert!(report.get("ab_test").is_none(), "no A/B test runs: {report}");
    let (_, status) = agent.cmo_get("status").await;
    assert_eq!(status["metrics"]["transferred_today"], 1, "{status}");
    // So does the `agent.status` heartbeat of a process that has the store.
    let mut heartbeats = agent
        .bus()
        .client
        .subscribe(leadq::bus::subject::AGENT_STATUS)
        .await
        .expect("subscribe");
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(leadq::roles::status::run(
        agent.ctx.status_deps(&[Role::Api]),
        stop.clone(),
    ));
    let beat = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut heartbeats))
        .await
        .expect("a heartbeat at start")
        .expect("message");
    let beat: leadq::bus::AgentStatus = leadq::bus::decode(&beat.payload).expect("status");
    stop.cancel();
    let metrics = beat.metrics.expect("today's figures in agent.status");
    assert_eq!(
        (metrics.transferred_today, metrics.leads_today, metrics.sms_today),
        (1, 1, 1),
        "{metrics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_who_declines_or_does_not_answer_leaves_the_lead_with_the_link() {
    let agent = agent().await;
    // Declines after the whisper.
    let phone = "+14155550191";
    agent.twilio.set_persona(phone, qualified_then("sure"));
    agent
        .twilio
        .set_persona(REP, Persona::answers(&["no, I'm with someone"]));
    let declined = call_and_finish(&agent, "Grace", phone).await;
    let lead_call = &call_to(&agent, phone)[0];
    assert_eq!(dials(lead_call), 1, "{:?}", lead_call.timeline);
    assert!(
        !lead_call.timeline.iter().any(|t| t == "bridged"),
        "{:?}",
        lead_call.timeline
    );
    assert!(
        lead_call.heard.last().is_some_and(|h| h.contains("text you a link")),
        "{:?}",
        lead_call.heard
    );
    assert_eq!(declined.transfer.map(|t| t.outcome).as_deref(), Some("rep_declined"));
    assert_eq!(declined.sms_state, "sent");
    let texts: Vec<_> = agent.twilio.messages().into_iter().filter(|m| m.to == phone).collect();
    assert_eq!(texts.len(), 1, "one text with the booking link");
    let stops = FollowUpStops::open(&agent.bus().js).await.expect("stops");
    let lead_id = declined.id.parse().expect("uuid");
    assert_eq!(stops.reason(lead_id).await.expect("read"), None, "follow-ups go on");

    // Never answers: the phone rings out.
    let phone = "+14155550192";
    agent.twilio.set_persona(phone, qualified_then("yes"));
    agent.twilio.set_persona(REP, Persona::NoAnswer);
    let missed = call_and_finish(&agent, "Alan", phone).await;
    let transfer = missed.transfer.expect("transfer");
    assert_eq!(
        (transfer.outcome.as_str(), transfer.dial_status.as_deref()),
        ("rep_no_answer", Some("no-answer"))
    );
    assert!(
        call_to(&agent, phone)[0]
            .heard
            .last()
            .is_some_and(|h| h.contains("text you a link")),
        "the lead is told a link is coming"
    );
    assert_eq!(missed.sms_state, "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_is_made_only_to_a_qualified_lead_with_a_rep_on_duty_and_a_no_is_kept() {
    let agent = agent().await;
    agent.twilio.set_persona(REP, Persona::answers(&["1"]));
    let offered = |call: &CallRecord| call.heard.iter().any(|h| h.contains("community manager"));
    // A no: no dial, the usual closing.
    let phone = "+14155550193";
    agent.twilio.set_persona(phone, qualified_then("no thanks"));
    let said_no = call_and_finish(&agent, "Edsger", phone).await;
    let call = &call_to(&agent, phone)[0];
    assert!(offered(call) && dials(call) == 0, "{:?}", call.timeline);
    assert!(
        call.heard.last().is_some_and(|h| h.starts_with("Thank you")),
        "{:?}",
        call.heard
    );
    assert_eq!(said_no.transfer.map(|t| t.outcome).as_deref(), Some("lead_declined"));
    // Unqualified: never asked.
    let phone = "+14155550194";
    agent.twilio.set_persona(
        phone,
        Persona::answers(&["hot desk", "just me", "in two years", "fifty dollars", "no", "yes"]),
    );
    let unqualified = call_and_finish(&agent, "Barbara", phone).await;
    assert!(!offered(&call_to(&agent, phone)[0]));
    assert!(unqualified.transfer.is_none());
    // Nobody on duty now (the roster saved from the Settings page): not asked either.
    let token = admin_token(agent.bus(), &agent.http, &agent.base).await;
    let tomorrow = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get("America/New_York").expect("tz"))
        .date()
        .tomorrow()
        .expect("date")
        .tomorrow()
        .expect("date");
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][tomorrow.weekday().to_monday_zero_offset() as usize];
    let body = json!({ "reps": [{ "name": "Sam", "phone": REP, "days": day, "hours": "09:00-17:00" }],
                       "time_zone": "America/New_York", "ring_secs": 20 });
    let (status, saved) = agent
        .call(Method::PUT, "/api/admin/roster", Some(&token), Some(body))
        .await;
    assert_eq!(status, 200, "{saved}");
    assert!(saved["on_duty"].is_null(), "{saved}");
    let phone = "+14155550195";
    agent.twilio.set_persona(phone, qualified_then("yes"));
    let off_duty = call_and_finish(&agent, "Katherine", phone).await;
    assert!(!offered(&call_to(&agent, phone)[0]));
    assert!(off_duty.transfer.is_none());
    assert_eq!(off_duty.verdict, "qualified");
    assert!(call_to(&agent, REP).is_empty(), "the rep was never rung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roster_is_checked_before_it_is_saved_and_shows_who_is_on_duty() {
    let agent = agent().await;
    let token = admin_token(agent.bus(), &agent.http, &agent.base).await;
    let (status, first) = agent.call(Method::GET, "/api/admin/roster", Some(&token), None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["roster"]["reps"][0]["name"], "Sam Rivera",
        "the settings' roster, saved on the first start"
    );
    assert_eq!(first["on_duty"]["phone"], REP);
    for (bad, why) in [
        (
            json!({ "reps": [{ "name": "Sam", "phone": "555", "days": "mon-fri", "hours": "09:00-17:00" }] }),
            "phone",
        ),
        (
            json!({ "reps": [{ "name": "Sam", "phone": REP, "days": "someday", "hours": "09:00-17:00" }] }),
            "day",
        ),
        (
            json!({ "reps": [{ "name": "Sam", "phone": REP, "days": "mon", "hours": "17:00-09:00" }] }),
            "ends before",
        ),
        (json!({ "reps": [], "time_zone": "Mars/Olympus" }), "time zone"),
        (json!({ "reps": [], "ring_secs": 600 }), "ring_secs"),
    ] {
        let (status, body) = agent
            .call(Method::PUT, "/api/admin/roster", Some(&token), Some(bad))
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(why)), "{why}: {body}");
    }
    let (_, still) = agent.call(Method::GET, "/api/admin/roster", Some(&token), None).await;
    assert_eq!(still, first, "a refused roster changes nothing");
    let (status, body) = agent
        .call(Method::PUT, "/api/admin/roster", None, Some(json!({ "reps": [] })))
        .await;
    assert_eq!(status, 401, "{body}");
    let typed =
        json!({ "reps": [{ "name": " Kim ", "phone": "(212) 555-0123", "days": "Sat,Sun", "hours": "10:00-16:00" }] });
    let (status, saved) = agent
        .call(Method::PUT, "/api/admin/roster", Some(&token), Some(typed))
        .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["roster"]["reps"][0]["phone"], "+12125550123");
    assert_eq!(saved["roster"]["reps"][0]["name"], "Kim");
}
