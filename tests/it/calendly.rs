//! Calendly's webhook on the real api role and store: a booking made through the texted link
//! marks its lead booked, cancels and reschedules move it, and forged, stale, replayed and
//! unsigned deliveries are refused and change nothing.

use leadq::config::default_crm_fields;
use leadq::roles::finalizer::crm::airtable_fields;
use leadq::roles::sms::booking_link;
use leadq::store::{FinalizedLead, Store};
use serde_json::Value;
use standins::calendly::{CalendlyApi, CalendlySender, unix_now};

use crate::crm::{as_finalized, finalized};
use crate::harness::{TestApp, spawn_api};
use crate::helpers::{admin_token, eventually, leadq};

const KEY: &str = "calendly-webhook-signing-key-for-tests";

async fn spawn_with_key() -> TestApp {
    spawn_api(|settings| settings.calendly.signing_key = Some(KEY.to_owned().into())).await
}

fn store(app: &TestApp) -> Store {
    app.ctx.store.clone().expect("the api keeps the store")
}

/// A finished, texted lead, and the booking link its text carried.
async fn texted_lead(app: &TestApp, n: usize) -> (FinalizedLead, String) {
    let lead = finalized(n);
    store(app).save_finalized(&lead).await.expect("save");
    let link = booking_link(&app.ctx.settings.calendly_url, &as_finalized(&lead)).to_string();
    (lead, link)
}

fn url(app: &TestApp) -> String {
    format!("{}/webhooks/calendly", app.base)
}

async fn booking_state(app: &TestApp, lead: &FinalizedLead) -> Option<(String, Option<String>)> {
    let record = store(app).lead(lead.lead.lead_id).await.expect("read").expect("record");
    record.booking.map(|b| (b.state, b.meeting_at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_through_the_texted_link_marks_the_lead_booked_and_cancels_move_it() {
    let app = spawn_with_key().await;
    let calendly = CalendlySender::new(KEY);
    let (lead, link) = texted_lead(&app, 1).await;
    let id = lead.lead.lead_id.to_string();
    store(&app)
        .mark_crm(std::slice::from_ref(&id), "synced")
        .await
        .expect("synced");
    let created = CalendlySender::invitee_created(&link, None, "2026-12-10T17:00:00.000000Z");
    let (status, body) = calendly.deliver(&url(&app), &created).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["matched"], true);
    assert_eq!(answer["lead_id"], lead.lead.lead_id.to_string());
    assert_eq!(
        booking_state(&app, &lead).await,
        Some(("booked".into(), Some("2026-12-10T17:00:00.000000Z".into())))
    );
    // The CRM row is written again with the tour.
    let record = store(&app)
        .lead(lead.lead.lead_id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        record.crm_sync, "pending",
        "a booked lead already in the CRM is synced again"
    );
    let row = airtable_fields(&record, &default_crm_fields());
    assert_eq!(
        (row["Tour"].as_str(), row["Tour At"].as_str()),
        (Some("booked"), Some("2026-12-10T17:00:00.000000Z"))
    );
    // The CMO agent's report counts the tour: one lead today, booked.
    let (status, report) = app.cmo_get("report/today").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["booked_leads"].as_u64(), report["booking_rate"].as_f64()),
        (Some(1), Some(100.0)),
        "{report}"
    );
    // Booked straight after the form (the report's created_at is now): a median of seconds.
    assert!(
        report["median_secs_to_booking"]
            .as_f64()
            .is_some_and(|s| (0.0..3600.0).contains(&s)),
        "{report}"
    );
    let (_, status) = app.cmo_get("status").await;
    assert_eq!(status["metrics"]["booked_today"], 1, "{status}");
    // And the dashboard's figures: tours booked today, and how long from form to booking.
    let token = admin_token(app.bus(), &app.http, &app.base).await;
    let (_, stats) = app
        .call(reqwest::Method::GET, "/api/admin/stats", Some(&token), None)
        .await;
    assert_eq!(
        (
            stats["today"]["booked"].as_u64(),
            stats["today"]["booking_rate"].as_f64()
        ),
        (Some(1), Some(100.0)),
        "{stats}"
    );
    assert!(stats["today"]["median_secs_to_booking"].as_f64().is_some(), "{stats}");

    // Rescheduled: the new time's booking may come before the old one's cancel; either way the
    // lead holds the new time.
    let moved = CalendlySender::invitee_created(&link, None, "2026-12-11T09:30:00.000000Z");
    assert_eq!(calendly.deliver(&url(&app), &moved).await.0, 200);
    let old_canceled = CalendlySender::invitee_canceled(&created, true);
    assert_eq!(calendly.deliver(&url(&app), &old_canceled).await.0, 200);
    assert_eq!(
        booking_state(&app, &lead).await,
        Some(("booked".into(), Some("2026-12-11T09:30:00.000000Z".into()))),
        "a cancel of the earlier time left the new one"
    );

    let canceled = CalendlySender::invitee_canceled(&moved, false);
    assert_eq!(calendly.deliver(&url(&app), &canceled).await.0, 200);
    assert_eq!(
        booking_state(&app, &lead).await.map(|(state, _)| state).as_deref(),
        Some("canceled")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_unsigned_and_replayed_deliveries_are_refused_and_change_nothing() {
    let app = spawn_with_key().await;
    let calendly = CalendlySender::new(KEY);
    let (lead, link) = texted_lead(&app, 2).await;
    let created = CalendlySender::invitee_created(&link, None, "2026-12-10T17:00:00Z");
    let raw = created.to_string();
    let now = unix_now();
    let forger = CalendlySender::new("not-the-signing-key");
    let mut altered = created.clone();
    altered["payload"]["scheduled_event"]["start_time"] = "2027-01-01T00:00:00Z".into();
    let refusals = [
        ("unsigned", None, raw.clone(), 401),
        ("malformed", Some("v1=abc".to_owned()), raw.clone(), 401),
        (
            "another key",
            Some(forger.signature(now, raw.as_bytes())),
            raw.clone(),
            403,
        ),
        (
            "signed ten minutes ago",
            Some(calendly.signature(now - 600, raw.as_bytes())),
            raw.clone(),
            403,
        ),
        (
            "altered after signing",
            Some(calendly.signature(now, raw.as_bytes())),
            altered.to_string(),
            403,
        ),
    ];
    for (what, signature, body, want) in refusals {
        let (status, answer) = calendly.post(&url(&app), body, signature).await;
        assert_eq!(status, want, "{what}: {answer}");
        let error: Value = serde_json::from_str(&answer).expect("json error");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains("Calendly")),
            "{what}: {answer}"
        );
    }
    assert_eq!(
        booking_state(&app, &lead).await,
        None,
        "a refused delivery changed the lead"
    );
    assert!(store(&app).bookings(false, 10).await.expect("bookings").is_empty());

    let signature = calendly.signature(unix_now(), raw.as_bytes());
    let (status, answer) = calendly.post(&url(&app), raw.clone(), Some(signature.clone())).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = calendly.post(&url(&app), raw, Some(signature)).await;
    assert_eq!(status, 403, "a replay: {answer}");
    assert!(answer.contains("replay"), "{answer}");
    assert_eq!(store(&app).bookings(false, 10).await.expect("bookings").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_nobody_matches_is_kept_unmatched_and_listed() {
    let app = spawn_with_key().await;
    let calendly = CalendlySender::new(KEY);
    // A lead on file, and a booking from someone else through the bare booking page.
    let (_lead, _) = texted_lead(&app, 3).await;
    let bare = app.ctx.settings.calendly_url.to_string();
    let stranger = CalendlySender::invitee_created(&bare, Some("stranger@example.com"), "2026-12-12T15:00:00Z");
    let (status, body) = calendly.deliver(&url(&app), &stranger).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["matched"], false);
    // Booked through the bare page but with the lead's email: matched by email.
    let by_email = CalendlySender::invitee_created(&bare, Some("lead3@example.com"), "2026-12-12T16:00:00Z");
    let (_, body) = calendly.deliver(&url(&app), &by_email).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["matched"],
        true,
        "{body}"
    );

    let token = admin_token(app.bus(), &app.http, &app.base).await;
    let (status, listed) = app
        .call(
            reqwest::Method::GET,
            "/api/admin/bookings?unmatched=true",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["email"], "stranger@example.com");
    assert_eq!(items[0]["lead_id"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_signing_key_bookings_are_refused_as_not_set_up() {
    let app = spawn_api(|_| {}).await;
    let (_, link) = texted_lead(&app, 4).await;
    let created = CalendlySender::invitee_created(&link, None, "2026-12-10T17:00:00Z");
    let (status, body) = CalendlySender::new(KEY).deliver(&url(&app), &created).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("LEADQ_CALENDLY__SIGNING_KEY"), "{body}");
    assert!(store(&app).bookings(false, 10).await.expect("bookings").is_empty());
}

/// `leadq admin calendly subscribe` against Calendly's API (the stand-in): the subscription names
/// the public webhook URL and both events, a signing key is made and saved, the running api
/// takes it at once, and a booking Calendly then delivers is received; asked again, or with a
/// wrong token, it says why and exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_makes_a_key_the_running_api_takes_and_calendly_delivers_with() {
    use secrecy::ExposeSecret;
    let calendly = CalendlyApi::start("calendly-pat").await.expect("stand-in");
    let app = spawn_api(|_| {}).await;
    let data = tempfile::tempdir().expect("data dir");
    let master_key = app
        .ctx
        .settings
        .master_key
        .as_ref()
        .expect("a test key")
        .expose_secret()
        .to_owned();
    let nats = app.nats.url();
    let api_base = calendly.base_url();
    let subscribe = |token: &str| {
        let env = [
            ("LEADQ_NATS_URL", nats.as_str()),
            ("LEADQ_MASTER_KEY", master_key.as_str()),
            ("LEADQ_PUBLIC_URL", app.base.as_str()),
            ("LEADQ_DATA_DIR", data.path().to_str().expect("utf-8 path")),
            ("LEADQ_CALENDLY_API_BASE", api_base.as_str()),
            ("LEADQ_CALENDLY__TOKEN", token),
        ];
        leadq(&["admin", "calendly", "subscribe"], &env)
    };
    let out = subscribe("calendly-pat");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let subscriptions = calendly.subscriptions();
    assert_eq!(subscriptions.len(), 1);
    let subscription = &subscriptions[0];
    assert_eq!(subscription.callback_url, url(&app));
    assert_eq!(subscription.events, ["invitee.created", "invitee.canceled"]);
    assert_eq!(subscription.scope, "organization");
    assert!(
        subscription.signing_key.as_deref().is_some_and(|k| k.len() >= 32),
        "a strong key"
    );

    eventually(
        std::time::Duration::from_secs(10),
        "the api takes the saved key",
        || async { app.ctx.calendly_key.borrow().is_some() },
    )
    .await;
    let (lead, link) = texted_lead(&app, 5).await;
    let answers = calendly.book(&link, None, "2026-12-14T10:00:00Z").await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert_eq!(
        booking_state(&app, &lead).await.map(|(state, _)| state).as_deref(),
        Some("booked")
    );

    let again = subscribe("calendly-pat");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let wrong = subscribe("not-the-token");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("refused the token"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert_eq!(calendly.subscriptions().len(), 1, "nothing more subscribed");
}
