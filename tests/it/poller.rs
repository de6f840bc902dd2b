//! The poller against a real Dovecot and a real nats-server.

use std::time::Duration;

use futures::StreamExt;
use leadq::app::Role;
use leadq::bus::{self, Bus, LeadReceived};

use crate::dovecot::{Dovecot, fixture};
use crate::harness::{TestWorkers, spawn_workers};
use crate::helpers::{NatsServer, eventually, on_stream};

const FIXTURES: [&str; 5] = [
    "01-plain-private-office.eml",
    "02-multipart-html-qp.eml",
    "03-html-only.eml",
    "04-missing-phone.eml",
    "05-not-a-lead.eml",
];

/// The poller alone, as `leadq poller` runs it, on the inbox with the given fallback scan.
async fn spawn_poller(nats: &NatsServer, dovecot: &Dovecot, fallback: Duration) -> TestWorkers {
    let mut settings = nats.settings();
    dovecot.settings(&mut settings, fallback);
    spawn_workers(settings, &[Role::Poller]).await
}

async fn leads_on_stream(bus: &Bus) -> Vec<LeadReceived> {
    on_stream(bus, bus::stream::LEADS).await
}

async fn wait_for_leads(bus: &Bus, count: usize, within: Duration) -> Vec<LeadReceived> {
    eventually(within, &format!("{count} lead.received"), || {
        let bus = bus.clone();
        async move { leads_on_stream(&bus).await.len() >= count }
    })
    .await;
    leads_on_stream(bus).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_emails_in_the_inbox_become_leads_and_the_rest_stay_unread() {
    let nats = NatsServer::start();
    let dovecot = Dovecot::start();
    for name in FIXTURES {
        dovecot.append(&fixture(name)).await;
    }
    let mut activity = nats
        .bus()
        .await
        .client
        .subscribe(bus::subject::AGENT_ACTIVITY)
        .await
        .expect("sub");
    let poller = spawn_poller(&nats, &dovecot, Duration::from_secs(600)).await;
    let leads = wait_for_leads(&poller.ctx.bus, 3, Duration::from_secs(20)).await;

    let expected: serde_json::Value = serde_json::from_slice(&fixture("expected.json")).expect("expected.json");
    for name in &FIXTURES[..3] {
        let want = &expected[*name]["lead"];
        let got = leads
            .iter()
            .find(|l| l.lead.message_id.as_deref() == want["message_id"].as_str())
            .unwrap_or_else(|| panic!("{name} not published"));
        let got = serde_json::to_value(&got.lead).expect("json");
        for (key, value) in want.as_object().expect("object") {
            assert_eq!(got[key], *value, "{name}: {key}");
        }
    }
    let invalid = tokio::time::timeout(Duration::from_secs(10), activity.next())
        .await
        .expect("activity")
        .expect("msg");
    let invalid: serde_json::Value = serde_json::from_slice(&invalid.payload).expect("json");
    assert_eq!(invalid["kind"], "lead.invalid");
    assert_eq!(invalid["detail"]["field"], "phone");

    eventually(Duration::from_secs(10), "leads marked seen", || async {
        let flags = dovecot.seen_flags().await;
        flags.get("html-only-7781@mail.unbounce.com") == Some(&true)
    })
    .await;
    let flags = dovecot.seen_flags().await;
    assert_eq!(flags.get("20261124140311.1a2b3c@mail.unbounce.com"), Some(&true));
    assert_eq!(flags.get("CAF=k2x9v+Q@mail.unbounce.com"), Some(&true));
    assert_eq!(
        flags.get("invoice-2026-11@mail.unbounce.com"),
        Some(&false),
        "a non-lead was touched"
    );
    assert_eq!(
        flags.get("no-phone-1@mail.unbounce.com"),
        Some(&false),
        "an invalid lead was marked read"
    );
    poller.stop().await;
    assert_eq!(leads_on_stream(&nats.bus().await).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_arriving_while_idle_is_pushed_not_found_by_the_fallback_timer() {
    let nats = NatsServer::start();
    let dovecot = Dovecot::start();
    // The fallback search would come only after ten minutes: anything sooner is IDLE's push.
    let poller = spawn_poller(&nats, &dovecot, Duration::from_secs(600)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let appended = std::time::Instant::now();
    dovecot.append(&fixture("01-plain-private-office.eml")).await;
    let leads = wait_for_leads(&poller.ctx.bus, 1, Duration::from_secs(15)).await;
    assert!(appended.elapsed() < Duration::from_secs(15));
    assert_eq!(leads[0].lead.phone.as_str(), "+12015550123");
    let timestamps = &leads[0].timestamps;
    assert!(timestamps.inbox_at.is_some(), "INTERNALDATE kept");
    assert!(timestamps.seen_at <= timestamps.published_at);
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_email_delivered_twice_gives_one_lead() {
    let nats = NatsServer::start();
    let dovecot = Dovecot::start();
    dovecot.append(&fixture("02-multipart-html-qp.eml")).await;
    dovecot.append(&fixture("02-multipart-html-qp.eml")).await;
    let poller = spawn_poller(&nats, &dovecot, Duration::from_secs(600)).await;
    wait_for_leads(&poller.ctx.bus, 1, Duration::from_secs(20)).await;
    // A third copy while it watches.
    dovecot.append(&fixture("02-multipart-html-qp.eml")).await;
    eventually(Duration::from_secs(15), "all three copies seen", || async {
        let mut session_flags = dovecot.seen_flags().await;
        session_flags.remove("CAF=k2x9v+Q@mail.unbounce.com") == Some(true)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    poller.stop().await;
    assert_eq!(leads_on_stream(&nats.bus().await).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_killed_between_publish_and_seen_does_not_publish_again() {
    let nats = NatsServer::start();
    let dovecot = Dovecot::start();
    let raw = fixture("01-plain-private-office.eml");
    dovecot.append(&raw).await;
    // The first poller's life up to its crash: the lead is published, \Seen is never set.
    let bus = nats.ready_bus().await;
    let seen = bus.js.get_key_value(bus::bucket::EMAILS_SEEN).await.expect("bucket");
    let lead = leadq::domain::parse_notification(&raw, phonenumber::country::Id::US).expect("lead");
    let identity = leadq::roles::poller::intake::email_identity(lead.message_id.as_deref(), &raw);
    let now = time::OffsetDateTime::now_utc();
    leadq::roles::poller::intake::deliver(&bus, &seen, identity, lead, None, now)
        .await
        .expect("publish");
    assert_eq!(
        dovecot
            .seen_flags()
            .await
            .get("20261124140311.1a2b3c@mail.unbounce.com"),
        Some(&false)
    );

    let poller = spawn_poller(&nats, &dovecot, Duration::from_secs(600)).await;
    eventually(
        Duration::from_secs(15),
        "the email marked seen by the restarted poller",
        || async {
            dovecot
                .seen_flags()
                .await
                .get("20261124140311.1a2b3c@mail.unbounce.com")
                == Some(&true)
        },
    )
    .await;
    poller.stop().await;
    let leads = leads_on_stream(&bus).await;
    assert_eq!(leads.len(), 1, "published twice");
    assert_eq!(leads[0].lead_id, identity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_restarted_the_poller_reconnects_alerts_and_catches_up() {
    let nats = NatsServer::start();
    let mut dovecot = Dovecot::start();
    let mut alerts = nats
        .bus()
        .await
        .client
        .subscribe(bus::subject::AGENT_ALERT)
        .await
        .expect("sub");
    let mut activity = nats
        .bus()
        .await
        .client
        .subscribe(bus::subject::AGENT_ACTIVITY)
        .await
        .expect("sub");
    let poller = spawn_poller(&nats, &dovecot, Duration::from_secs(600)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    dovecot.stop();
    let alert = tokio::time::timeout(Duration::from_secs(30), alerts.next())
        .await
        .expect("an alert")
        .expect("msg");
    let alert: serde_json::Value = serde_json::from_slice(&alert.payload).expect("json");
    assert_eq!(alert["source"], "poller");
    assert!(
        alert["message"].as_str().unwrap_or("").contains("after 3 attempts"),
        "{alert}"
    );

    // Mail that lands while the poller cannot connect.
    dovecot.deliver_file(&fixture("03-html-only.eml"), "while-down");
    dovecot.restart();
    let leads = wait_for_leads(&poller.ctx.bus, 1, Duration::from_secs(30)).await;
    assert_eq!(
        leads[0].lead.message_id.as_deref(),
        Some("html-only-7781@mail.unbounce.com")
    );
    let mut kinds = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(5), activity.next()).await {
        let entry: serde_json::Value = serde_json::from_slice(&message.payload).expect("json");
        kinds.push(entry["kind"].as_str().unwrap_or("").to_owned());
        if kinds.iter().any(|k| k == "imap.recovered") {
            break;
        }
    }
    assert!(kinds.contains(&"imap.down".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"imap.recovered".to_owned()), "{kinds:?}");
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mail_never_stops_the_poller() {
    let nats = NatsServer::start();
    let dovecot = Dovecot::start();
    let mut huge = b"Subject: huge\r\nMessage-ID: <huge@x>\r\nContent-Type: text/plain\r\n\r\nSubmitted Form Data\r\n\r\nmessage\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 20 * 1024 * 1024));
    let junk: Vec<u8> = (1..=255u8).cycle().take(8192).collect();
    for raw in [
        junk,
        b"Subject: header only\r\nMessage-ID: <hdr@x>\r\n".to_vec(),
        b"Subject: broken\r\nMessage-ID: <mime@x>\r\nContent-Type: multipart/mixed; boundary=\"a\"\r\n\r\n--b\r\nSubmitted Form Data\r\n--a".to_vec(),
        huge,
    ] {
        dovecot.append(&raw).await;
    }
    dovecot.append(&fixture("01-plain-private-office.eml")).await;
    let mut poller = spawn_poller(&nats, &dovecot, Duration::from_secs(600)).await;
    let leads = wait_for_leads(&poller.ctx.bus, 1, Duration::from_secs(60)).await;
    assert_eq!(leads[0].lead.name.as_deref(), Some("John Doe"));
    assert!(poller.all_running(), "the poller stopped");
    poller.stop().await;
}

/// The moment that lost mail: an email that arrives while the poller is working through a scan
/// (after its SEARCH, before IDLE). The server reports it in a FETCH or STORE response, which IDLE
/// never sees. Each round puts ten emails in, and the eleventh in while the poller is halfway
/// through them; with a fallback of ten minutes, an eleventh whose report was dropped waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_arriving_during_a_scan_is_not_left_for_the_fallback() {
    let nats = NatsServer::start();
    let dovecot = Dovecot::start();
    let poller = spawn_poller(&nats, &dovecot, Duration::from_secs(600)).await;
    let mut received = poller
        .ctx
        .bus
        .client
        .subscribe(bus::subject::LEAD_RECEIVED)
        .await
        .expect("sub");
    let template = String::from_utf8(fixture("01-plain-private-office.eml")).expect("utf-8");
    let email = |id: &str| {
        template.replace(
            "<20261124140311.1a2b3c@mail.unbounce.com>",
            &format!("<{id}@leadq.test>"),
        )
    };
    let mut appender = dovecot.session().await;
    for round in 0..3 {
        for n in 0..10 {
            let raw = email(&format!("r{round}-{n}"));
            appender
                .append("INBOX", None, None, raw.as_bytes())
                .await
                .expect("append");
        }
        let mut seen = std::collections::HashSet::new();
        let late = format!("r{round}-late@leadq.test");
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(message) = received.next().await {
                let lead: LeadReceived = bus::decode(&message.payload).expect("lead");
                seen.insert(lead.lead.message_id.clone().unwrap_or_default());
                if seen.len() == 5 {
                    // The poller is in the middle of this round's scan.
                    let raw = email(&format!("r{round}-late"));
                    appender
                        .append("INBOX", None, None, raw.as_bytes())
                        .await
                        .expect("append");
                }
                if seen.len() == 11 {
                    return;
                }
            }
        })
        .await;
        assert!(
            outcome.is_ok() && seen.contains(&late),
            "round {round}: {} of 11 emails arrived; the one appended during the scan was not pushed \
             (it would wait for the fallback search)",
            seen.len()
        );
    }
    poller.stop().await;
}
