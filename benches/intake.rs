//! Speed to lead, intake leg: from an IMAP APPEND of a lead email to its `lead.received` on the
//! stream, over a real Dovecot, a real nats-server and the real poller (IDLE push).
//! Run with `scripts/bench` (or `cargo bench --profile dev --bench intake`); `LEADQ_BENCH_EMAILS`
//! sets the count (default 200). Goal on a 2-core machine: p50 < 100 ms, p99 < 500 ms.
//!
//! The table splits the total in two: the wait for the IMAP server's IDLE push (APPEND to the
//! poller reading the email), and leadq's own part (reading it to the stream's ack). Dovecot holds
//! every change notification for 500 ms before it tells IDLE clients (NOTIFY_DELAY_MSECS in its
//! index-mailbox-check.c), so against Dovecot the push alone is about half a second.

#[path = "../tests/it/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;
#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use futures::StreamExt;
use leadq::bus::{self, LeadReceived};
use tokio_util::sync::CancellationToken;

/// Emails sent first and not measured: the first publish and the first IDLE round set things up.
const WARM_UP: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn email(n: usize, template: &str) -> Vec<u8> {
    template
        .replace(
            "<20261124140311.1a2b3c@mail.unbounce.com>",
            &format!("<bench-{n}@leadq.bench>"),
        )
        .into_bytes()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::var("LEADQ_BENCH_EMAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let nats = helpers::NatsServer::start();
    let dovecot = dovecot::Dovecot::start();
    let mut settings = nats.settings();
    dovecot.settings(&mut settings, Duration::from_secs(600));
    let ctx = leadq::app::Context::build(settings, false).await?;
    let shutdown = CancellationToken::new();
    let poller = tokio::spawn(leadq::roles::poller::run(
        ctx.poller_deps().expect("an inbox"),
        shutdown.clone(),
    ));
    let mut received = ctx.bus.client.subscribe(bus::subject::LEAD_RECEIVED).await?;
    let template = String::from_utf8(dovecot::fixture("01-plain-private-office.eml"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut appender = dovecot.session().await;
    let (mut totals, mut pushes, mut own) = (Vec::new(), Vec::new(), Vec::new());
    eprintln!("intake benchmark: {count} emails, one at a time, after {WARM_UP} to warm up");
    for n in 0..count + WARM_UP {
        let raw = email(n, &template);
        let appended = Instant::now();
        let appended_at = time::OffsetDateTime::now_utc();
        appender.append("INBOX", None, None, &raw).await?;
        let want = format!("bench-{n}@leadq.bench");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), received.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("subscription closed"))?;
            let lead: LeadReceived = bus::decode(&message.payload)?;
            if lead.lead.message_id.as_deref() == Some(want.as_str()) {
                if n < WARM_UP {
                    break;
                }
                totals.push(appended.elapsed());
                let seen = lead.timestamps.seen_at - appended_at;
                pushes.push(Duration::try_from(seen).unwrap_or_default());
                own.push(
                    appended
                        .elapsed()
                        .saturating_sub(Duration::try_from(seen).unwrap_or_default()),
                );
                break;
            }
        }
        if (n + 1) % 50 == 0 {
            eprintln!("  {} / {count}", n + 1);
        }
    }
    shutdown.cancel();
    poller.await??;

    for list in [&mut totals, &mut pushes, &mut own] {
        list.sort();
    }
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!();
    println!("| {count} emails | total: APPEND -> lead.received | IMAP server push | leadq: read -> on the stream |");
    println!("|---|---|---|---|");
    for (name, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)] {
        println!(
            "| {name} | {} ms | {} ms | {} ms |",
            ms(percentile(&totals, p)),
            ms(percentile(&pushes, p)),
            ms(percentile(&own, p))
        );
    }
    let met = |list: &[Duration]| {
        percentile(list, 50.0) < Duration::from_millis(100) && percentile(list, 99.0) < Duration::from_millis(500)
    };
    println!(
        "\ngoal p50 < 100 ms and p99 < 500 ms: total {}, leadq's own part {}",
        if met(&totals) { "met" } else { "NOT met" },
        if met(&own) { "met" } else { "NOT met" }
    );
    Ok(())
}
