//! Follow-up texts on the real SMS role, the Twilio stand-in and a clock the test moves: an
//! unbooked lead gets exactly the configured follow-ups, inside its calling hours, across a
//! restart of the SMS role; a STOP reply or a booking stops them.

use std::time::Duration;

use leadq::app::Role;
use leadq::bus::LeadFinalized;
use leadq::domain::clock::Clock;
use leadq::roles::sms::booking_link;
use standins::calendly::CalendlySender;
use time::OffsetDateTime;

use crate::crm::{as_finalized, finalized};
use crate::harness::{TWILIO_TOKEN, TestAgent, spawn_agent_at};
use crate::helpers::eventually;

const HOUR: Duration = Duration::from_secs(3600);
const SIGNING_KEY: &str = "calendly-key-for-follow-up-tests";

/// 10:00 in Los Angeles (where +1415 numbers ring) on a Tuesday.
fn tuesday_morning() -> OffsetDateTime {
    OffsetDateTime::parse("2026-12-08T18:00:00Z", &time::format_description::well_known::Rfc3339).expect("time")
}

/// The SMS role (stoppable) and the api, calling hours 9:00 to 20:00, follow-ups 24 h and 72 h
/// after the first text, on `clock`.
async fn agent(clock: &Clock) -> (TestAgent, tokio_util::sync::CancellationToken) {
    let agent = spawn_agent_at(clock.clone(), &[], |settings| {
        settings.followups = vec![24 * HOUR, 72 * HOUR];
        settings.followup_recheck = Duration::from_millis(100);
        settings.calling_hours.start = jiff::civil::Time::constant(9, 0, 0, 0);
        settings.calling_hours.end = jiff::civil::Time::constant(20, 0, 0, 0);
        settings.calendly.signing_key = Some(SIGNING_KEY.to_owned().into());
    })
    .await;
    let sms = agent.start_stoppable(Role::Sms).await;
    (agent, sms)
}

/// A finished lead (recorded, so a booking can find it) put on `lead.finalized`.
async fn finalize(agent: &TestAgent, n: usize) -> LeadFinalized {
    let lead = finalized(n);
    agent
        .ctx
        .store
        .as_ref()
        .expect("store")
        .save_finalized(&lead)
        .await
        .expect("save");
    let done = as_finalized(&lead);
    agent.bus().publish(&done).await.expect("publish");
    done
}

fn texts_to(agent: &TestAgent, phone: &str) -> Vec<String> {
    agent
        .twilio
        .messages()
        .into_iter()
        .filter(|m| m.to == phone)
        .map(|m| m.body)
        .collect()
}

async fn texted(agent: &TestAgent, phone: &str, count: usize, what: &str) {
    eventually(Duration::from_secs(15), what, || async {
        texts_to(agent, phone).len() >= count
    })
    .await;
}

/// Long enough for the role to have looked at the clock several times.
async fn a_moment() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbooked_lead_gets_each_follow_up_once_inside_calling_hours_across_a_restart() {
    let clock = Clock::manual(tuesday_morning());
    let (agent, sms) = agent(&clock).await;
    let lead = finalize(&agent, 11).await;
    texted(&agent, &lead.phone, 1, "the first text").await;

    clock.advance(23 * HOUR);
    a_moment().await;
    assert_eq!(texts_to(&agent, &lead.phone).len(), 1, "a follow-up before its time");

    // 24 h after is 10:00 the next day: inside the hours.
    clock.advance(HOUR);
    texted(&agent, &lead.phone, 2, "the first follow-up").await;
    let texts = texts_to(&agent, &lead.phone);
    assert!(texts[1].contains("still keen"), "the follow-up's words: {}", texts[1]);
    assert!(texts[1].contains("utm_term=followup-1"), "{}", texts[1]);

    // The SMS role restarts; the second follow-up is 72 h after the first text, 10:00 Friday.
    sms.cancel();
    a_moment().await;
    let _sms = agent.start_stoppable(Role::Sms).await;
    // Friday 21:30 there: past the hours, so it waits for Saturday 9:00.
    clock.advance(59 * HOUR + HOUR / 2);
    a_moment().await;
    assert_eq!(
        texts_to(&agent, &lead.phone).len(),
        2,
        "a follow-up outside calling hours"
    );
    clock.advance(12 * HOUR);
    texted(&agent, &lead.phone, 3, "the second follow-up").await;

    // No third: the sequence had two.
    clock.advance(7 * 24 * HOUR);
    a_moment().await;
    let texts = texts_to(&agent, &lead.phone);
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(texts[2].contains("utm_term=followup-2"), "{}", texts[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_reply_or_a_booking_ends_the_follow_ups() {
    let clock = Clock::manual(tuesday_morning());
    let (agent, _sms) = agent(&clock).await;
    let stopper = finalize(&agent, 12).await;
    let booker = finalize(&agent, 13).await;
    texted(&agent, &stopper.phone, 1, "the first text").await;
    texted(&agent, &booker.phone, 1, "the first text").await;

    let (status, _) = agent
        .twilio_webhook(
            "/webhooks/twilio/sms",
            &[
                ("From", stopper.phone.as_str()),
                ("To", "+15005550006"),
                ("Body", "STOP"),
            ],
            Some(TWILIO_TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let link = booking_link(&agent.ctx.settings.calendly_url, &booker).to_string();
    let booking = CalendlySender::invitee_created(&link, None, "2026-12-09T17:00:00Z");
    let (status, body) = CalendlySender::new(SIGNING_KEY)
        .deliver(&format!("{}/webhooks/calendly", agent.base), &booking)
        .await;
    assert_eq!(status, 200, "{body}");

    clock.advance(24 * HOUR);
    a_moment().await;
    clock.advance(48 * HOUR);
    a_moment().await;
    assert_eq!(texts_to(&agent, &stopper.phone).len(), 1, "texted after STOP");
    assert_eq!(
        texts_to(&agent, &booker.phone).len(),
        1,
        "reminded to book after booking"
    );

    // Someone who neither booked nor stopped is followed up meanwhile: the role was at work.
    let waiting = finalize(&agent, 14).await;
    texted(&agent, &waiting.phone, 1, "the first text").await;
    clock.advance(24 * HOUR);
    texted(&agent, &waiting.phone, 2, "the follow-up of a lead who did neither").await;
}
