//! The whole pipeline on real parts: a real nats-server, the real `leadq all` binary (embedded
//! store in memory), and the Twilio and Airtable stand-ins answering REST with Twilio's latency
//! (`LEADQ_BENCH_LATENCY_MS`, default 150) and playing every callee.
//! Run with `scripts/bench pipeline` (or `cargo bench --profile dev --bench pipeline`).
//!
//! It measures speed to lead one lead at a time (Unbounce webhook POST to the `Calls.json`
//! request, and to `lead.received`), then a burst of `LEADQ_BENCH_BURST` leads (default 1000):
//! until the last call is requested and the last SMS is sent, and leads per hour. It checks that
//! every lead got exactly one call, one SMS and one CRM row, and reports the agent's RSS idle and
//! at its peak (VmRSS, VmHWM of the leadq process).

#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use standins::airtable::AirtableStandIn;
use standins::twilio::TwilioStandIn;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-auth-token";
const AIRTABLE_TOKEN: &str = "pat-bench";
const AIRTABLE_BASE: &str = "appLeadqBench0001";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The `leadq all` process, killed if the benchmark stops early.
struct Agent(std::process::Child);

impl Agent {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn form(phone: &str, n: u64) -> String {
    let data = serde_json::json!({
        "fname": [format!("Lead {n}")], "email": [format!("lead{n}@example.com")], "phone": [phone],
        "what_kind_of_office_space_are_you_interested_in": ["Private Office"],
        "date_submitted": ["2026-12-01"], "time_submitted": ["10:57 PM UTC"],
    });
    serde_urlencoded::to_string([("page_id", "bench"), ("data.json", &data.to_string())]).expect("form")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let latency = Duration::from_millis(setting("LEADQ_BENCH_LATENCY_MS", 150));
    let (singles, burst) = (setting("LEADQ_BENCH_SINGLE", 50), setting("LEADQ_BENCH_BURST", 1000));
    let nats = helpers::NatsServer::start();
    let twilio = TwilioStandIn::start(SID, TOKEN, 0).await?;
    twilio.set_latency(latency);
    let airtable = AirtableStandIn::start(AIRTABLE_TOKEN).await?;
    let data = tempfile::tempdir()?;
    let port = helpers::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env: Vec<(&str, String)> = vec![
        ("LEADQ_NATS_URL", nats.url()),
        ("LEADQ_DB", "mem://".into()),
        ("LEADQ_DATA_DIR", data.path().display().to_string()),
        ("LEADQ_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("LEADQ_LOG", "warn".into()),
        ("LEADQ_TWILIO_API_BASE", twilio.base_url()),
        ("LEADQ_TWILIO__ACCOUNT_SID", SID.into()),
        ("LEADQ_TWILIO__AUTH_TOKEN", TOKEN.into()),
        ("LEADQ_TWILIO__FROM_NUMBER", "+15005550006".into()),
        ("LEADQ_AIRTABLE_API_BASE", airtable.base_url()),
        ("LEADQ_AIRTABLE__TOKEN", AIRTABLE_TOKEN.into()),
        ("LEADQ_AIRTABLE__BASE_ID", AIRTABLE_BASE.into()),
        ("LEADQ_CALLING_HOURS__START", "00:00".into()),
        ("LEADQ_CALLING_HOURS__END", "23:59:59".into()),
    ];
    let leadq = env!("CARGO_BIN_EXE_leadq");
    let url_out = Command::new(leadq)
        .args(["admin", "unbounce-url"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()?;
    let webhook = String::from_utf8(url_out.stdout)?.trim().to_owned();
    anyhow::ensure!(
        webhook.starts_with(&base),
        "no webhook URL: {}",
        String::from_utf8_lossy(&url_out.stderr)
    );
    let mut agent = Agent(
        Command::new(leadq)
            .arg("all")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(60), "leadq did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(setting("LEADQ_BENCH_SETTLE", 2))).await;
    let (idle_rss, _) = memory(agent.id());
    let bus = nats.bus().await;
    let mut received = bus.client.subscribe(leadq::bus::subject::LEAD_RECEIVED).await?;
    let post = |body: String| {
        http.post(&webhook)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };

    eprintln!(
        "pipeline benchmark: {singles} leads one at a time, then a burst of {burst}; Twilio answers in {latency:?}"
    );
    let (mut to_call, mut to_bus) = (Vec::new(), Vec::new());
    for n in 0..singles {
        let phone = format!("+1415{:07}", 2_000_000 + n);
        let started = Instant::now();
        let answer = post(form(&phone, n)).await?;
        anyhow::ensure!(answer.status().is_success(), "webhook answered {}", answer.status());
        let message = tokio::time::timeout(Duration::from_secs(10), received.next()).await?;
        anyhow::ensure!(message.is_some(), "no lead.received");
        to_bus.push(started.elapsed());
        loop {
            if let Some(at) = twilio
                .calls()
                .iter()
                .find(|c| c.to == phone)
                .and_then(|c| c.requested_at)
            {
                if std::env::var_os("LEADQ_BENCH_VERBOSE").is_some() {
                    eprintln!(
                        "  lead {n}: on the bus {:?}, called {:?}",
                        to_bus.last(),
                        at.duration_since(started)
                    );
                }
                to_call.push(at.duration_since(started));
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "lead {n} was not called");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // A burst of 100 first: until its last call is requested.
    let before = twilio.calls().len();
    let small_start = Instant::now();
    let small: Vec<_> = futures::stream::iter(0..100u64)
        .map(|n| post(form(&format!("+1332{:07}", 4_000_000 + n), n)))
        .buffer_unordered(100)
        .collect()
        .await;
    anyhow::ensure!(
        small.iter().all(|r| r.as_ref().is_ok_and(|r| r.status().is_success())),
        "a webhook post failed"
    );
    while twilio.calls().len() < before + 100 {
        anyhow::ensure!(
            small_start.elapsed() < Duration::from_secs(120),
            "the burst of 100 was not called"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let hundred = twilio
        .calls()
        .iter()
        .skip(before)
        .filter_map(|c| c.requested_at)
        .map(|t| t.duration_since(small_start))
        .max()
        .unwrap_or_default();
    // Let those calls play out before the big burst.
    while twilio.messages().len() < (singles + 100) as usize {
        anyhow::ensure!(
            small_start.elapsed() < Duration::from_secs(300),
            "the burst of 100 was not texted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let before = twilio.calls().len();
    let burst_start = Instant::now();
    let posts = futures::stream::iter(0..burst)
        .map(|n| {
            let phone = format!("+1646{:07}", 3_000_000 + n);
            post(form(&phone, n))
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    anyhow::ensure!(
        posts.iter().all(|r| r.as_ref().is_ok_and(|r| r.status().is_success())),
        "a webhook post failed"
    );
    let posted = burst_start.elapsed();
    let wanted = (singles + 100 + burst) as usize;
    while twilio.calls().len() < before + burst as usize {
        anyhow::ensure!(
            burst_start.elapsed() < Duration::from_secs(900),
            "the burst was not called"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut requested: Vec<Duration> = twilio
        .calls()
        .iter()
        .skip(before)
        .filter_map(|c| c.requested_at)
        .map(|t| t.duration_since(burst_start))
        .collect();
    requested.sort();
    let last_call = requested.last().copied().unwrap_or_default();
    let hundredth = requested.get(99).copied().unwrap_or(last_call);
    while twilio.messages().len() < wanted {
        anyhow::ensure!(
            burst_start.elapsed() < Duration::from_secs(1800),
            "not every lead was texted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_sms = burst_start.elapsed();
    while airtable.records(AIRTABLE_BASE, "Leads").len() < wanted {
        anyhow::ensure!(
            burst_start.elapsed() < Duration::from_secs(1800),
            "not every lead reached the CRM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, peak_rss) = memory(agent.id());
    let per = |keys: Vec<String>| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for key in keys {
            *counts.entry(key).or_default() += 1;
        }
        (counts.len(), counts.values().copied().max().unwrap_or(0))
    };
    let (called, calls_max) = per(twilio.calls().into_iter().map(|c| c.to).collect());
    let (texted, sms_max) = per(twilio.messages().into_iter().map(|m| m.to).collect());
    let (rows, rows_max) = per(airtable
        .records(AIRTABLE_BASE, "Leads")
        .into_iter()
        .map(|r| r.fields["Phone"].to_string())
        .collect());
    let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    let _ = agent.0.wait();

    to_call.sort();
    to_bus.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    println!();
    println!(
        "| pipeline ({singles} single leads, burst of {burst}, Twilio latency {} ) | figure | goal |",
        ms(latency)
    );
    println!("|---|---|---|");
    for (name, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
        println!(
            "| webhook -> Calls.json request, {name} | {} | < 1 s |",
            ms(percentile(&to_call, p))
        );
    }
    println!(
        "| webhook -> lead.received, p99 | {} | < 50 ms |",
        ms(percentile(&to_bus, 99.0))
    );
    println!("| burst: all {burst} webhooks answered | {} | |", secs(posted));
    println!("| burst of 100: last Calls.json request | {} | < 2 s |", secs(hundred));
    println!("| burst of {burst}: 100th Calls.json request | {} | |", secs(hundredth));
    println!("| burst of {burst}: last Calls.json request | {} | |", secs(last_call));
    println!("| burst: last SMS sent | {} | |", secs(last_sms));
    println!(
        "| burst: leads per hour (calls requested) | {:.0} | |",
        burst as f64 / last_call.as_secs_f64().max(0.001) * 3600.0
    );
    println!("| leads called / texted / in the CRM | {called} / {texted} / {rows} of {wanted} | all |");
    println!("| calls, SMS, CRM rows per lead (max) | {calls_max}, {sms_max}, {rows_max} | 1, 1, 1 |");
    println!("| RSS of leadq all: idle / peak | {idle_rss:.0} MiB / {peak_rss:.0} MiB | |");
    anyhow::ensure!(
        (called, texted, rows) == (wanted, wanted, wanted) && (calls_max, sms_max, rows_max) == (1, 1, 1),
        "not exactly once per lead"
    );
    Ok(())
}
