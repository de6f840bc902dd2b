//! What replication costs: the latency of the two bus operations on every lead's path — a publish
//! that waits for the stream's ack (`lead.received`, ~1 KB), and a compare-and-set write to the
//! `calls` bucket — on one nats-server with R1, and on a three-node loopback cluster with R3.
//! One operation at a time, so the figure is the round trip a handler waits for.
//! `LEADQ_BENCH_OPS` sets the count (1,000 each by default).

#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use leadq::bus::{self, Bus};
use leadq::config::Settings;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let ops: usize = std::env::var("LEADQ_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    println!("| bus operation, one at a time ({ops} each) | R1, one node: p50 / p99 | R3, three nodes: p50 / p99 |");
    println!("|---|---|---|");
    let single = helpers::NatsServer::start();
    let r1 = measure(&single.bus().await, &single.settings(), ops).await?;
    drop(single);
    let cluster = helpers::NatsCluster::start();
    let r3 = measure(&cluster.bus().await, &cluster.settings(), ops).await?;
    for (what, one, three) in [
        ("publish `lead.received` (stream ack)", &r1.0, &r3.0),
        ("`calls` bucket compare-and-set write", &r1.1, &r3.1),
    ] {
        println!("| {what} | {} | {} |", figures(one), figures(three));
    }
    Ok(())
}

/// Publish and KV-update latencies, after the topology is set up at `settings`' replicas.
async fn measure(bus: &Bus, settings: &Settings, ops: usize) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    bus::setup(&bus.js, &settings.bus).await?;
    let body = bytes::Bytes::from(vec![b'x'; 1_024]);
    let mut publishes = Vec::with_capacity(ops);
    for n in 0..ops {
        let started = Instant::now();
        let publish = PublishMessage::build()
            .message_id(format!("bench-{n}"))
            .payload(body.clone());
        bus.js.send_publish(bus::subject::LEAD_RECEIVED, publish).await?.await?;
        publishes.push(started.elapsed());
    }
    let calls = bus.js.get_key_value(bus::bucket::CALLS).await?;
    let mut revision = calls.put("bench", body.clone()).await?;
    let mut updates = Vec::with_capacity(ops);
    for _ in 0..ops {
        let started = Instant::now();
        revision = calls.update("bench", body.clone(), revision).await?;
        updates.push(started.elapsed());
    }
    Ok((publishes, updates))
}

fn figures(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    format!(
        "{:.2} ms / {:.2} ms",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    )
}
