//! The bus contract against a real JetStream server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::stream::StorageType;
use futures::StreamExt;
use leadq::bus::{self, Bus, IntakeTimestamps, LeadReceived, LeadSource, Outcome};
use leadq::domain::Lead;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{NatsServer, consumer_info, eventually, leadq};

fn lead(n: usize) -> LeadReceived {
    let form = vec![
        ("fname".to_owned(), format!("Lead {n}")),
        ("email".to_owned(), format!("lead{n}@example.com")),
        ("phone".to_owned(), "+14155550123".to_owned()),
    ];
    LeadReceived::new(
        Uuid::now_v7(),
        LeadSource::Email,
        Lead::from_form(form, Default::default(), phonenumber::country::Id::US).expect("lead"),
        IntakeTimestamps {
            inbox_at: None,
            seen_at: OffsetDateTime::now_utc(),
            published_at: OffsetDateTime::now_utc(),
        },
    )
}

#[tokio::test]
async fn setup_twice_creates_everything_then_changes_nothing() {
    let nats = NatsServer::start();
    let url = nats.url();
    let first = leadq(&["setup"], &[("LEADQ_NATS_URL", &url)]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let first = String::from_utf8_lossy(&first.stdout);
    let items = bus::stream::ALL.len() + bus::bucket::ALL.len() + bus::consumer::ALL.len();
    assert!(first.contains(&format!("{items} of {items} changed")), "{first}");

    let second = leadq(&["setup"], &[("LEADQ_NATS_URL", &url)]);
    assert_eq!(second.status.code(), Some(0));
    let second = String::from_utf8_lossy(&second.stdout);
    assert!(second.contains(&format!("0 of {items} changed")), "{second}");
    assert_eq!(second.matches("unchanged").count(), items, "{second}");

    // The configured limits are on the server.
    let bus = nats.bus().await;
    let defaults = nats.settings().bus;
    let leads = bus
        .js
        .get_stream(bus::stream::LEADS)
        .await
        .expect("LEADS")
        .cached_info()
        .config
        .clone();
    assert_eq!(leads.storage, StorageType::File);
    assert_eq!(leads.max_age, defaults.retention);
    assert_eq!(leads.duplicate_window, defaults.duplicate_window);
    assert_eq!(leads.subjects, vec!["lead.received", "lead.finalized", "lead.followup"]);
    let status = bus
        .js
        .get_stream(bus::stream::STATUS)
        .await
        .expect("STATUS")
        .cached_info()
        .config
        .clone();
    assert_eq!(status.max_messages_per_subject, 1);
    let seen = bus
        .js
        .get_key_value(bus::bucket::EMAILS_SEEN)
        .await
        .expect("emails_seen");
    let seen = seen.status().await.expect("status");
    assert_eq!(seen.max_age(), Duration::from_secs(7 * 24 * 3600));
    let calls = bus
        .js
        .get_key_value(bus::bucket::CALLS)
        .await
        .expect("calls")
        .status()
        .await
        .expect("status");
    assert_eq!(calls.max_age(), Duration::from_secs(24 * 3600));
    let info = consumer_info(&bus, bus::stream::LEADS, bus::consumer::CALLER)
        .await
        .expect("caller consumer");
    assert_eq!(info.config.ack_policy, AckPolicy::Explicit);
    assert_eq!(info.config.max_deliver, defaults.max_deliver);
    assert_eq!(info.config.filter_subjects, vec!["lead.received"]);
    // The retry ladder is the loop's (in the consumer's metadata), not the server's back-off.
    assert!(info.config.backoff.is_empty());
    assert_eq!(info.config.ack_wait, defaults.backoff[0]);
    assert_eq!(info.config.metadata["leadq.retry_ladder"], "5s,30s,1m,5m,15m");
}

#[tokio::test]
async fn setup_updates_a_changed_limit_in_place() {
    let nats = NatsServer::start();
    let bus = nats.bus().await;
    let mut settings = nats.settings().bus;
    bus::setup(&bus.js, &settings).await.expect("first setup");
    settings.max_deliver = 20;
    let report = bus::setup(&bus.js, &settings).await.expect("second setup");
    let updated: Vec<_> = report
        .items
        .iter()
        .filter(|i| i.change == bus::Change::Updated)
        .map(|i| i.name.as_str())
        .collect();
    // Every consumer takes the setting but the follow-ups', which waits by redeliveries and
    // keeps its own (far higher) limit.
    let following: Vec<_> = bus::consumer::ALL
        .into_iter()
        .filter(|c| *c != bus::consumer::FOLLOWUP)
        .collect();
    assert_eq!(updated, following, "{report}");
}

#[tokio::test]
async fn the_same_msg_id_published_twice_is_stored_once() {
    let nats = NatsServer::start();
    let bus = nats.ready_bus().await;
    let lead = lead(1);
    let first = bus.publish(&lead).await.expect("first publish");
    let second = bus.publish(&lead).await.expect("second publish");
    assert!(!first.duplicate);
    assert!(second.duplicate, "the server did not see the repeat as a duplicate");
    let mut stream = bus.js.get_stream(bus::stream::LEADS).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
}

/// Nothing left for the caller's consumer: every message delivered and acked.
async fn assert_all_acked(bus: &Bus) {
    let info = consumer_info(bus, bus::stream::LEADS, bus::consumer::CALLER)
        .await
        .expect("consumer");
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "messages left unacked"
    );
}

/// The caller's durable consumer of `lead.received`, as every test here runs it.
async fn consume_leads<H, F>(
    bus: &Bus,
    lanes: usize,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), bus::BusError>
where
    H: Fn(leadq::bus::Delivery<LeadReceived>) -> F,
    F: std::future::Future<Output = Outcome>,
{
    bus::consume(
        bus,
        bus::stream::LEADS,
        bus::consumer::CALLER,
        None,
        bus::Lanes::new(lanes, Duration::from_secs(60)),
        handler,
        shutdown,
    )
    .await
}

/// Runs one replica of a consumer that records which lead ids it handled.
fn replica(
    bus: Bus,
    name: &'static str,
    seen: Arc<Mutex<HashMap<Uuid, Vec<&'static str>>>>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        consume_leads(
            &bus,
            8,
            |d| {
                seen.lock()
                    .expect("lock")
                    .entry(d.payload.lead_id)
                    .or_default()
                    .push(name);
                async { Outcome::Done }
            },
            shutdown,
        )
        .await
        .expect("consume");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_a_thousand_messages_without_doubles_or_gaps() {
    let nats = NatsServer::start();
    let publisher = nats.ready_bus().await;
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let shutdown = CancellationToken::new();
    let a = replica(nats.bus().await, "a", seen.clone(), shutdown.clone());
    let b = replica(nats.bus().await, "b", seen.clone(), shutdown.clone());
    let mut published = Vec::new();
    for n in 0..1000 {
        let lead = lead(n);
        publisher.publish(&lead).await.expect("publish");
        published.push(lead.lead_id);
    }
    eventually(Duration::from_secs(60), "1000 handled", || {
        let seen = seen.clone();
        async move { seen.lock().expect("lock").len() == 1000 }
    })
    .await;
    // Let any stray redelivery show up before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    a.await.expect("replica a");
    b.await.expect("replica b");

    {
        let seen = seen.lock().expect("lock");
        for id in &published {
            let handlers = seen.get(id).unwrap_or_else(|| panic!("{id} never handled"));
            assert_eq!(handlers.len(), 1, "{id} handled by {handlers:?}");
        }
        let by_a = seen.values().filter(|h| h[0] == "a").count();
        assert!(by_a > 0 && by_a < 1000, "one replica did all the work ({by_a} by a)");
    }
    assert_all_acked(&publisher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_before_it_acks_has_its_message_redelivered_to_the_other() {
    let nats = NatsServer::start();
    let publisher = nats.bus().await;
    let mut settings = nats.settings().bus;
    settings.backoff = vec![Duration::from_secs(1), Duration::from_secs(1)];
    bus::setup(&publisher.js, &settings).await.expect("setup");

    let (got_it, mut holding) = tokio::sync::mpsc::unbounded_channel();
    let doomed_bus = nats.bus().await;
    let doomed = tokio::spawn(async move {
        let _ = consume_leads(
            &doomed_bus,
            4,
            |d| {
                let _ = got_it.send(d.payload.lead_id);
                // Hangs mid-work, as a process does just before it is killed.
                std::future::pending::<Outcome>()
            },
            CancellationToken::new(),
        )
        .await;
    });
    let lead = lead(7);
    publisher.publish(&lead).await.expect("publish");
    let held = tokio::time::timeout(Duration::from_secs(10), holding.recv())
        .await
        .expect("doomed replica got it");
    assert_eq!(held, Some(lead.lead_id));
    doomed.abort();
    let _ = doomed.await;

    let (handled, mut handled_rx) = tokio::sync::mpsc::unbounded_channel();
    let survivor_bus = nats.bus().await;
    let shutdown = CancellationToken::new();
    let survivor = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            consume_leads(
                &survivor_bus,
                4,
                |d| {
                    let _ = handled.send((d.payload.lead_id, d.attempt));
                    async { Outcome::Done }
                },
                shutdown,
            )
            .await
            .expect("consume");
        }
    });
    let (id, attempt) = tokio::time::timeout(Duration::from_secs(15), handled_rx.recv())
        .await
        .expect("redelivered to the survivor")
        .expect("message");
    assert_eq!(id, lead.lead_id);
    assert_eq!(attempt, 2, "it was a redelivery");
    shutdown.cancel();
    survivor.await.expect("survivor");
    assert!(handled_rx.try_recv().is_err(), "handled more than once");
}

#[tokio::test]
async fn a_poison_message_is_terminated_with_an_alert() {
    let nats = NatsServer::start();
    let bus = nats.ready_bus().await;
    let mut alerts = bus
        .client
        .subscribe(bus::subject::AGENT_ALERT)
        .await
        .expect("subscribe");
    bus.js
        .publish(bus::subject::LEAD_RECEIVED, "not json at all".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let shutdown = CancellationToken::new();
    let handled = Arc::new(Mutex::new(0));
    let worker = tokio::spawn({
        let (bus, shutdown, handled) = (bus.clone(), shutdown.clone(), handled.clone());
        async move {
            consume_leads(
                &bus,
                4,
                |_| {
                    *handled.lock().expect("lock") += 1;
                    async { Outcome::Done }
                },
                shutdown,
            )
            .await
        }
    });
    let alert = tokio::time::timeout(Duration::from_secs(10), alerts.next())
        .await
        .expect("alert")
        .expect("message");
    let alert: serde_json::Value = serde_json::from_slice(&alert.payload).expect("alert json");
    assert_eq!(alert["source"], "caller");
    assert!(
        alert["message"].as_str().unwrap_or("").contains("undecodable"),
        "{alert}"
    );
    shutdown.cancel();
    worker.await.expect("join").expect("consume");
    assert_eq!(*handled.lock().expect("lock"), 0, "the handler saw a poison message");
    let info = consumer_info(&bus, bus::stream::LEADS, bus::consumer::CALLER)
        .await
        .expect("consumer");
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "the poison message is still pending"
    );
}

/// A handler's retry is a nak with its delay: the message comes back
/// as the next delivery, and is acked once handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_message_is_delivered_again_and_then_acked() {
    crate::helpers::capture_logs();
    let nats = NatsServer::start();
    let bus = nats.ready_bus().await;
    bus.publish(&lead(1)).await.expect("publish");
    let shutdown = CancellationToken::new();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let worker = tokio::spawn({
        let (bus, shutdown, attempts) = (bus.clone(), shutdown.clone(), attempts.clone());
        async move {
            consume_leads(
                &bus,
                4,
                |delivery| {
                    attempts.lock().expect("lock").push(delivery.attempt);
                    async move {
                        match delivery.attempt {
                            1 => Outcome::Retry {
                                after: Duration::from_millis(100),
                                reason: "the outside service is down".into(),
                            },
                            _ => Outcome::Done,
                        }
                    }
                },
                shutdown,
            )
            .await
        }
    });
    eventually(Duration::from_secs(20), "the second delivery", || async {
        attempts.lock().expect("lock").len() >= 2
    })
    .await;
    shutdown.cancel();
    worker.await.expect("join").expect("consume");
    assert_eq!(*attempts.lock().expect("lock"), [1, 2]);
    assert_all_acked(&bus).await;
}

#[test]
fn subjects_md_documents_every_name_of_the_bus_module() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/subjects.md")).expect("subjects.md");
    let names = bus::subject::ALL
        .iter()
        .chain(&bus::stream::ALL)
        .chain(&bus::consumer::ALL)
        .chain(&bus::bucket::ALL);
    for name in names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "subjects.md does not document `{name}`"
        );
    }
    assert!(
        doc.contains(&format!("cmo.{}.status", bus::AGENT_ID)),
        "subjects.md names the CMO service's subjects with another agent id"
    );
}

/// One lead is one trace: the publisher's trace id travels in `traceparent` and the consumer's
/// span continues it. (A current-thread runtime, so the test's subscriber covers both sides.)
#[tokio::test]
async fn the_trace_context_crosses_the_bus() {
    use opentelemetry::trace::{TraceContextExt, TracerProvider};
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    let trace_of = |span: &tracing::Span| span.context().span().span_context().trace_id();

    let nats = NatsServer::start();
    let bus = nats.ready_bus().await;
    let span = tracing::info_span!("intake");
    let published_in = trace_of(&span);
    assert_ne!(published_in, opentelemetry::trace::TraceId::INVALID);
    bus.publish(&lead(1)).instrument(span).await.expect("publish");

    let stream = bus.js.get_stream(bus::stream::LEADS).await.expect("LEADS");
    let stored = stream.get_raw_message(1).await.expect("message");
    let traceparent = stored
        .headers
        .get("traceparent")
        .map(|v| v.to_string())
        .expect("traceparent header");
    assert!(traceparent.contains(&published_in.to_string()), "{traceparent}");

    let seen = Arc::new(Mutex::new(None));
    let shutdown = CancellationToken::new();
    let (record, stop) = (seen.clone(), shutdown.clone());
    consume_leads(
        &bus,
        4,
        move |_| {
            *record.lock().expect("lock") = Some(trace_of(&tracing::Span::current()));
            stop.cancel();
            async { Outcome::Done }
        },
        shutdown,
    )
    .await
    .expect("consume");
    assert_eq!(
        *seen.lock().expect("lock"),
        Some(published_in),
        "the consumer started a new trace"
    );
}

/// A handler slower than the ack wait (5 s here) is not handed to the other replica meanwhile:
/// the loop extends the message's deadline while it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_the_ack_wait_keeps_its_message() {
    let nats = NatsServer::start();
    let publisher = nats.ready_bus().await;
    let info = consumer_info(&publisher, bus::stream::LEADS, bus::consumer::CALLER)
        .await
        .expect("consumer");
    assert_eq!(
        info.config.ack_wait,
        Duration::from_secs(5),
        "the ack wait this test outlasts"
    );
    let handled = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let (bus, handled, shutdown) = (nats.bus().await, handled.clone(), shutdown.clone());
        replicas.push(tokio::spawn(async move {
            consume_leads(
                &bus,
                4,
                |d| {
                    let handled = handled.clone();
                    async move {
                        tokio::time::sleep(Duration::from_secs(7)).await;
                        handled.lock().expect("lock").push((d.payload.lead_id, d.attempt));
                        Outcome::Done
                    }
                },
                shutdown,
            )
            .await
            .expect("consume");
        }));
    }
    for n in 0..4 {
        publisher.publish(&lead(n)).await.expect("publish");
    }
    eventually(Duration::from_secs(30), "4 handled", || {
        let handled = handled.clone();
        async move { handled.lock().expect("lock").len() >= 4 }
    })
    .await;
    // A redelivery would have started at 5 s and end 7 s later.
    tokio::time::sleep(Duration::from_secs(8)).await;
    shutdown.cancel();
    for replica in replicas {
        replica.await.expect("replica");
    }
    let handled = handled.lock().expect("lock");
    assert_eq!(handled.len(), 4, "handled more than once: {handled:?}");
    assert!(
        handled.iter().all(|(_, attempt)| *attempt == 1),
        "redelivered: {handled:?}"
    );
}

/// A starved process (its one thread blocked past the 5 s ack wait, so no in-progress ack went
/// out) gets its message delivered again while the first handler is still inside: the loop must
/// not start a second handler beside it, as a caller would then dial the same lead twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_again_while_still_in_hand_is_not_handled_twice_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let nats = NatsServer::start();
    let publisher = nats.ready_bus().await;
    let bus = nats.bus().await;
    let (inside, most_inside, runs) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let shutdown = CancellationToken::new();
    let (loop_inside, loop_most, loop_runs, loop_shutdown) =
        (inside.clone(), most_inside.clone(), runs.clone(), shutdown.clone());
    // A runtime of one thread, so blocking it stops the loop's in-progress acks as starvation would.
    let starved = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            consume_leads(
                &bus,
                4,
                |_| {
                    let (inside, most, runs) = (loop_inside.clone(), loop_most.clone(), loop_runs.clone());
                    async move {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                            std::thread::sleep(Duration::from_secs(7));
                            // Awake again: the loop pulls what the server delivered meanwhile.
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        Outcome::Done
                    }
                },
                loop_shutdown,
            )
            .await
            .expect("consume");
        });
    });
    publisher.publish(&lead(0)).await.expect("publish");
    eventually(Duration::from_secs(30), "the lead handled and acked", || {
        let (publisher, inside, runs) = (publisher.clone(), inside.clone(), runs.clone());
        async move {
            let info = consumer_info(&publisher, bus::stream::LEADS, bus::consumer::CALLER).await;
            runs.load(Ordering::SeqCst) >= 1
                && inside.load(Ordering::SeqCst) == 0
                && info.is_ok_and(|i| i.num_ack_pending == 0 && i.num_pending == 0)
        }
    })
    .await;
    let info = consumer_info(&publisher, bus::stream::LEADS, bus::consumer::CALLER)
        .await
        .expect("consumer");
    assert!(
        info.delivered.consumer_sequence >= 2,
        "the server did not deliver again while the thread was blocked, so this proves nothing"
    );
    shutdown.cancel();
    starved.join().expect("the starved loop");
    assert_eq!(
        most_inside.load(Ordering::SeqCst),
        1,
        "two handlers ran on one message at once"
    );
}

/// One loop handles up to its lanes at once, never more, and acks each message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_handles_up_to_its_lanes_at_once() {
    let nats = NatsServer::start();
    let publisher = nats.ready_bus().await;
    for n in 0..60 {
        publisher.publish(&lead(n)).await.expect("publish");
    }
    let now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let bus = nats.bus().await;
    let (now2, peak2, done2, stop) = (now.clone(), peak.clone(), done.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        consume_leads(
            &bus,
            16,
            |_| {
                let (now, peak, done) = (now2.clone(), peak2.clone(), done2.clone());
                async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    let running = now.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(running, SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    now.fetch_sub(1, SeqCst);
                    done.fetch_add(1, SeqCst);
                    Outcome::Done
                }
            },
            stop,
        )
        .await
        .expect("consume");
    });
    eventually(Duration::from_secs(30), "60 handled", || {
        let done = done.clone();
        async move { done.load(std::sync::atomic::Ordering::SeqCst) == 60 }
    })
    .await;
    shutdown.cancel();
    task.await.expect("loop");
    assert_eq!(
        peak.load(std::sync::atomic::Ordering::SeqCst),
        16,
        "lanes in use at the busiest"
    );
    assert_all_acked(&publisher).await;
}

/// A message published while the loop waits on its pull request is handled at once, not when
/// the request runs out (3 s) and the loop asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arriving_while_the_loop_waits_is_handled_at_once() {
    let nats = NatsServer::start();
    let publisher = nats.ready_bus().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let bus = nats.bus().await;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        consume_leads(
            &bus,
            32,
            |_| {
                let _ = tx.send(std::time::Instant::now());
                async { Outcome::Done }
            },
            stop,
        )
        .await
    });
    for (n, idle) in [2, 1].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let published = std::time::Instant::now();
        publisher.publish(&lead(n)).await.expect("publish");
        let handled = rx.recv().await.expect("handled");
        let waited = handled.duration_since(published);
        assert!(
            waited < Duration::from_secs(1),
            "message {n} waited {waited:?} for the next pull request"
        );
    }
    shutdown.cancel();
}

/// Told to stop, the loop pulls nothing more but finishes and acks what its lanes hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_and_acks_the_messages_in_hand() {
    let nats = NatsServer::start();
    let publisher = nats.ready_bus().await;
    for n in 0..6 {
        publisher.publish(&lead(n)).await.expect("publish");
    }
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Counts handlers begun; the stop comes once all four lanes hold a message, as a
    // stop in a busy process would (cancelling after the first one raced the pulls).
    let (begun_tx, mut begun_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let shutdown = CancellationToken::new();
    let bus = nats.bus().await;
    let (count, stop) = (finished.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        consume_leads(
            &bus,
            4,
            |_| {
                let (count, begun) = (count.clone(), begun_tx.clone());
                async move {
                    let _ = begun.send(());
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Outcome::Done
                }
            },
            stop,
        )
        .await
        .expect("consume");
    });
    for _ in 0..4 {
        begun_rx.recv().await.expect("a lane began");
    }
    shutdown.cancel();
    task.await.expect("loop");
    let done = finished.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(done, 4, "the four lanes' messages were finished, no more were taken");
    let info = consumer_info(&publisher, bus::stream::LEADS, bus::consumer::CALLER)
        .await
        .expect("consumer");
    assert_eq!(info.num_ack_pending, 0, "a finished message was left unacked");
    assert_eq!(info.num_pending, 2, "the two never taken wait for the next replica");
}

/// A handler's quick retry comes back as quickly as it asked on the second and third delivery
/// too (with a server-side back-off, nats-server held the third for about 25 s), then the ladder
/// spaces a failing message out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_retries_come_back_when_asked_then_the_ladder_spaces_them() {
    let nats = NatsServer::start();
    let publisher = nats.ready_bus().await;
    let deliveries = Arc::new(Mutex::new(Vec::<(i64, std::time::Instant)>::new()));
    let shutdown = CancellationToken::new();
    let consumer_bus = nats.bus().await;
    let seen = deliveries.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = consume_leads(
            &consumer_bus,
            1,
            move |d| {
                let seen = seen.clone();
                async move {
                    seen.lock().expect("lock").push((d.attempt, std::time::Instant::now()));
                    Outcome::Retry {
                        after: Duration::from_millis(100),
                        reason: "the outside service is down".into(),
                    }
                }
            },
            stop,
        )
        .await;
    });
    let sent = std::time::Instant::now();
    publisher.publish(&lead(11)).await.expect("publish");
    eventually(Duration::from_secs(10), "three quick tries and the fourth", || async {
        deliveries.lock().expect("lock").len() >= 4
    })
    .await;
    // The fourth failure waits the ladder's first step (5 s) before the fifth delivery.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = deliveries.lock().expect("lock").clone();
    shutdown.cancel();
    assert_eq!(
        seen.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "{seen:?}"
    );
    assert!(
        seen[3].1 - sent < Duration::from_secs(5),
        "quick tries took {:?}",
        seen[3].1 - sent
    );
}
