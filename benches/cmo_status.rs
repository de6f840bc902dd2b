//! `/api/cmo/status` under concurrent load: latency p50/p99 and requests per second, against the
//! real api role (real NATS, embedded SurrealDB with a day of finalized leads).
//! Run with `scripts/bench` (or `cargo bench --profile dev --bench cmo_status`). Goal: p99 < 5 ms.
//! `LEADQ_BENCH_REQUESTS` (default 4000) and `LEADQ_BENCH_CONCURRENCY` (default 8) size it.

#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let (total, concurrency) = (
        setting("LEADQ_BENCH_REQUESTS", 4000),
        setting("LEADQ_BENCH_CONCURRENCY", 8),
    );
    let nats = helpers::NatsServer::start();
    let mut settings = nats.settings();
    let port = helpers::free_port();
    settings.http_addr = format!("127.0.0.1:{port}").parse()?;
    // The api role on a runtime of its own, as `leadq api` runs it; the load comes from another,
    // so the measured server does not also schedule the load generator's tasks.
    let shutdown = CancellationToken::new();
    let (ready, key) = std::sync::mpsc::channel();
    let server_shutdown = shutdown.clone();
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async move {
            let ctx = leadq::app::Context::build(settings, true).await?;
            let mut api = tokio::task::JoinSet::new();
            leadq::app::start_api(&ctx, &server_shutdown, &mut api).await?;
            let (key, _) = leadq::security::api_keys::ApiKeys::open(&ctx.bus.js)
                .await?
                .create("bench", Vec::new(), u32::MAX)
                .await?;
            ready.send(key)?;
            while let Some(ended) = api.join_next().await {
                ended??;
            }
            Ok(())
        })
    });
    let key = key.recv()?;
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = load.block_on(drive(port, key, total, concurrency));
    shutdown.cancel();
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    result
}

async fn drive(port: u16, key: String, total: usize, concurrency: usize) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/api/cmo/status");
    let http = reqwest::Client::new();
    // Warm up the connection pool and the store.
    for _ in 0..50 {
        http.get(&url)
            .header("X-API-Key", &key)
            .send()
            .await?
            .error_for_status()?;
    }
    eprintln!("cmo status benchmark: {total} requests, {concurrency} at a time");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        let share = total / concurrency;
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for _ in 0..share {
                let sent = Instant::now();
                let response = http.get(&url).header("X-API-Key", &key).send().await?;
                response.error_for_status()?.bytes().await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, reqwest::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    println!();
    println!(
        "| /api/cmo/status ({} requests, {concurrency} concurrent) | value |",
        latencies.len()
    );
    println!("|---|---|");
    println!("| p50 | {} ms |", ms(percentile(&latencies, 50.0)));
    println!("| p99 | {} ms |", ms(percentile(&latencies, 99.0)));
    println!("| max | {} ms |", ms(*latencies.last().unwrap_or(&Duration::ZERO)));
    println!(
        "| throughput | {:.0} requests/s |",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    let met = percentile(&latencies, 99.0) < Duration::from_millis(5);
    println!("\ngoal p99 < 5 ms: {}", if met { "met" } else { "NOT met" });
    Ok(())
}
