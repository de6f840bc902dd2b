//! The fault suite: leadq in its production shape — `leadq api`, two callers, two finalizers, two
//! SMS senders and a poller, each its own process, on a three-node JetStream cluster (R3) and a
//! SurrealDB server — while leads come in by email, Unbounce webhook and trigger-lead, Twilio fails
//! a fifth of its requests (half after doing them), Airtable refuses some and is down for a while,
//! role processes are SIGKILLed and restarted, a NATS node is killed and restarted, and (with
//! `LEADQ_CHAOS_RESTART_STORE=1`) the SurrealDB server is restarted. Then every lead must be
//! finished: called once, recorded, synced and texted once. `LEADQ_CHAOS_LEADS` sets the size (150
//! by default; `scripts/chaos` runs 1,000); `LEADQ_CHAOS_KEEP_LOGS=1` keeps every process's log.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use leadq::config::Settings;
use leadq::store::Store;
use serde_json::json;
use standins::airtable::AirtableStandIn;
use standins::twilio::TwilioStandIn;

use crate::dovecot::{Dovecot, PASSWORD as IMAP_PASSWORD, USER as IMAP_USER};
use crate::helpers::{NatsCluster, SURREAL_PASS, SURREAL_USER, SurrealServer, free_port};

const SID: &str = "AC00000000000000000000000000c4a05";
const TOKEN: &str = "chaos-auth-token";
const AIRTABLE_TOKEN: &str = "pat-chaos";
const AIRTABLE_BASE: &str = "appChaos000000001";

/// One leadq role process, restarted by the harness after each kill.
struct RoleProcess {
    name: String,
    role: &'static str,
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl RoleProcess {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("role log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadq"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADQ_")) {
            cmd.env_remove(key);
        }
        let child = cmd
            .arg(self.role)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn a leadq role");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again if it exited on its own (as systemd's `Restart=always` would):
    /// a role that cannot reach NATS or the store at start exits with the reason. True if it did.
    fn supervise(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|child| !matches!(child.try_wait(), Ok(None)));
        if exited {
            println!("chaos: {} exited on its own; restarted", self.name);
            self.child = None;
            self.start();
        }
        exited
    }
}

fn supervise(processes: &mut [RoleProcess]) -> usize {
    processes
        .iter_mut()
        .map(RoleProcess::supervise)
        .filter(|restarted| *restarted)
        .count()
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What each outside service saw, per lead (by phone).
#[derive(Debug, Default)]
struct Tally {
    leads_in: usize,
    calls: usize,
    max_calls: usize,
    max_texts: usize,
    max_rows: usize,
    unfinished: Vec<String>,
    /// Per phone: its record's verdict, CRM and SMS state.
    states: BTreeMap<String, String>,
    /// Why the store could not be read, if it could not.
    store_error: Option<String>,
}

/// What the outside world has seen so far (calls placed, texts sent, CRM rows written), sampled
/// every half second from the stand-ins, so that a stall shows even while the store is away.
struct Progress {
    started: Instant,
    /// Leads the intake has begun to send (counted before the send, so a refused intake counts).
    submitted: Arc<AtomicUsize>,
    seen: usize,
    last_change: Instant,
    calls: usize,
    /// Since when a submitted lead has been waiting and no call was placed.
    calls_stalled_since: Option<Instant>,
    /// Every gap between two changes: when it began, how long it lasted.
    gaps: Vec<(Instant, Duration)>,
    /// Every time leads waited with no call placed: when it began, how long it lasted.
    call_stalls: Vec<(Instant, Duration)>,
    last_print: Instant,
}

impl Progress {
    fn new(started: Instant, submitted: Arc<AtomicUsize>) -> Self {
        Self {
            started,
            submitted,
            seen: 0,
            last_change: started,
            calls: 0,
            calls_stalled_since: None,
            gaps: Vec::new(),
            call_stalls: Vec::new(),
            last_print: started,
        }
    }

    fn sample(&mut self, twilio: &TwilioStandIn, airtable: &AirtableStandIn) {
        let called: BTreeSet<String> = twilio.calls().into_iter().map(|call| call.to).collect();
        let (calls, texts, rows) = (
            called.len(),
            twilio.messages().len(),
            airtable.records(AIRTABLE_BASE, "Leads").len(),
        );
        let now = Instant::now();
        if calls + texts + rows > self.seen {
            self.gaps.push((self.last_change, now - self.last_change));
            self.seen = calls + texts + rows;
            self.last_change = now;
        }
        let waiting = self.submitted.load(Ordering::SeqCst) > calls;
        if (calls > self.calls || !waiting)
            && let Some(since) = self.calls_stalled_since.take()
        {
            self.call_stalls.push((since, now - since));
        }
        if waiting && self.calls_stalled_since.is_none() {
            self.calls_stalled_since = Some(now);
        }
        self.calls = calls;
        if now - self.last_print >= Duration::from_secs(10) {
            self.last_print = now;
            println!(
                "chaos t={:>4}s: {} submitted, {calls} called, {texts} texts, {rows} CRM rows",
                (now - self.started).as_secs(),
                self.submitted.load(Ordering::SeqCst),
            );
        }
    }

    /// The longest gap between two changes (the quiet after the last one is not a stall).
    fn longest_stall(&self) -> Duration {
        self.gaps.iter().map(|(_, gap)| *gap).max().unwrap_or_default()
    }

    /// The longest time between `from` and `to` that submitted leads waited with no call placed.
    fn longest_call_stall_between(&self, from: Instant, to: Instant) -> Duration {
        self.call_stalls
            .iter()
            .filter(|(began, gap)| *began + *gap >= from && *began <= to)
            .map(|(_, gap)| *gap)
            .max()
            .unwrap_or_default()
    }
}

fn most(counts: &BTreeMap<String, usize>) -> usize {
    counts.values().copied().max().unwrap_or(0)
}

/// The lead's email: a notification as Unbounce sends it, for `phone`.
fn notification(n: usize, phone: &str) -> String {
    let template = include_str!("../fixtures/emails/01-plain-private-office.eml");
    template.replace("201-555-0123", phone).replace(
        "<20261124140311.1a2b3c@mail.unbounce.com>",
        &format!("<chaos-{n}@leadq.test>"),
    )
}

fn env_of(settings: &[(&str, String)]) -> Vec<(String, String)> {
    settings.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long, so not in every `cargo test`: scripts/test runs it short (30 leads), \
            scripts/chaos at 1,000 leads"]
async fn every_lead_is_finished_once_through_kills_node_loss_and_outside_faults() {
    let leads: usize = std::env::var("LEADQ_CHAOS_LEADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150);
    let work = tempfile::tempdir().expect("temp dir");
    let mut cluster = NatsCluster::start();
    let bus = cluster.bus().await;
    leadq::bus::setup(&bus.js, &cluster.settings().bus)
        .await
        .expect("R3 setup");
    let mut surreal = SurrealServer::start_on_disk(&work.path().join("surreal"));
    let dovecot = Dovecot::start();
    let twilio = TwilioStandIn::start(SID, TOKEN, 0).await.expect("twilio stand-in");
    let airtable = AirtableStandIn::start(AIRTABLE_TOKEN).await.expect("airtable stand-in");
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");

    let common = [
        ("LEADQ_NATS_URL", cluster.url()),
        ("LEADQ_BUS__REPLICAS", "3".into()),
        ("LEADQ_DB", surreal.url()),
        ("LEADQ_DB_USER", SURREAL_USER.into()),
        ("LEADQ_DB_PASS", SURREAL_PASS.into()),
        (
            "LEADQ_MASTER_KEY",
            secrecy::ExposeSecret::expose_secret(&leadq::security::secrets::new_master_key()).to_owned(),
        ),
        ("LEADQ_JWT_SECRET", leadq::security::secrets::random_token(32)),
        ("LEADQ_SANDBOX", "0".into()),
        ("LEADQ_PUBLIC_URL", api.clone()),
        ("LEADQ_TWILIO_API_BASE", twilio.base_url()),
        ("LEADQ_TWILIO__ACCOUNT_SID", SID.into()),
        ("LEADQ_TWILIO__AUTH_TOKEN", TOKEN.into()),
        ("LEADQ_TWILIO__FROM_NUMBER", "+15005550006".into()),
        ("LEADQ_TWILIO__REQUEST_TIMEOUT", "3s".into()),
        ("LEADQ_AIRTABLE_API_BASE", airtable.base_url()),
        ("LEADQ_AIRTABLE__TOKEN", AIRTABLE_TOKEN.into()),
        ("LEADQ_AIRTABLE__BASE_ID", AIRTABLE_BASE.into()),
        ("LEADQ_AIRTABLE__POLL", "2s".into()),
        ("LEADQ_CALLING_HOURS__START", "00:00".into()),
        ("LEADQ_CALLING_HOURS__END", "23:59".into()),
        ("LEADQ_RETRY_LADDER", "[]".into()),
        ("LEADQ_CALL_RECONCILE_AFTER", "10s".into()),
        ("LEADQ_CALL_WATCHDOG", "2m".into()),
        ("LEADQ_SHUTDOWN_GRACE", "2s".into()),
        ("LEADQ_IMAP__HOST", "127.0.0.1".into()),
        ("LEADQ_IMAP__PORT", dovecot.port.to_string()),
        ("LEADQ_IMAP__TLS", "false".into()),
        ("LEADQ_IMAP__USERNAME", IMAP_USER.into()),
        ("LEADQ_IMAP__PASSWORD", IMAP_PASSWORD.into()),
    ];
    let roles = [
        ("api", "api"),
        ("caller-1", "caller"),
        ("caller-2", "caller"),
        ("finalizer-1", "finalizer"),
        ("finalizer-2", "finalizer"),
        ("sms-1", "sms"),
        ("sms-2", "sms"),
        ("poller", "poller"),
    ];
    let mut processes: Vec<RoleProcess> = roles
        .iter()
        .map(|(name, role)| {
            let mut env = env_of(&common);
            env.push(("LEADQ_INSTANCE".into(), (*name).into()));
            env.push(("LEADQ_DATA_DIR".into(), work.path().join(name).display().to_string()));
            env.push(("LEADQ_HTTP_ADDR".into(), format!("127.0.0.1:{api_port}")));
            RoleProcess {
                name: (*name).into(),
                role,
                env,
                log: work.path().join(format!("{name}.log")),
                child: None,
            }
        })
        .collect();
    for process in &mut processes {
        process.start();
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http");
    let ready = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = match http.get(format!("{api}/readyz")).send().await {
            Ok(response) if response.status().is_success() => break,
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(err) => err.to_string(),
        };
        if Instant::now() > ready {
            eprintln!("logs kept in {}", work.keep().display());
            panic!(
                "leadq api did not become ready: {answer}\n{}",
                std::fs::read_to_string(&processes[0].log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let keys = leadq::security::api_keys::ApiKeys::open(&bus.js).await.expect("keys");
    let (api_key, _) = keys.create("chaos", Vec::new(), 100_000).await.expect("api key");
    let config = bus
        .js
        .get_key_value(leadq::bus::bucket::CONFIG)
        .await
        .expect("config bucket");
    let token = leadq::roles::api::unbounce_form::rotate_token(&config)
        .await
        .expect("unbounce token");
    let webhook = format!("{api}/webhooks/unbounce/{token}");

    // Faults from the start: Twilio fails a fifth of creates (half after doing them), Airtable
    // refuses a tenth of upserts.
    twilio.set_fault_rate(0.2, Duration::from_secs(5));
    airtable.set_refusal_rate(0.1);

    let phones: Vec<String> = (0..leads).map(|n| format!("+1415{:07}", 5_000_000 + n)).collect();
    let started = Instant::now();
    let submitted = Arc::new(AtomicUsize::new(0));
    let intake = {
        let (http, phones, dovecot_inbox) = (http.clone(), phones.clone(), dovecot.inbox());
        let (api, api_key, webhook) = (api.clone(), api_key.clone(), webhook.clone());
        let submitted = submitted.clone();
        tokio::spawn(async move {
            let spacing = Duration::from_millis(60);
            for (n, phone) in phones.iter().enumerate() {
                submitted.fetch_add(1, Ordering::SeqCst);
                match n % 3 {
                    0 => deliver_email(&dovecot_inbox, n, phone),
                    1 => {
                        let body = json!({ "fname": format!("Lead {n}"), "phone": phone });
                        send_until_accepted(|| {
                            http.post(format!("{api}/api/cmo/trigger-lead"))
                                .header("X-API-Key", &api_key)
                                .header("Idempotency-Key", format!("chaos-{n}"))
                                .json(&body)
                        })
                        .await;
                    }
                    _ => {
                        // Unbounce's form-urlencoded body: the fields as arrays in `data.json`.
                        let data = json!({
                            "fname": [format!("Lead {n}")],
                            "phone": [phone],
                            "email": [format!("lead{n}@example.com")],
                        });
                        let form = [
                            ("page_id", "chaos-page".to_owned()),
                            ("page_name", "Chaos".to_owned()),
                            ("variant", "a".to_owned()),
                            ("data.json", data.to_string()),
                        ];
                        send_until_accepted(|| http.post(&webhook).form(&form)).await;
                    }
                }
                tokio::time::sleep(spacing).await;
            }
        })
    };

    // Kills while the leads come in: a role every 3 s, a NATS node at 8 s for 10 s, the SurrealDB
    // server at 20 s, Airtable down from 5 s for the configured outage.
    let outage = Duration::from_secs(
        std::env::var("LEADQ_CHAOS_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
    );
    // Long enough for both node events below, and for 60 ms between leads.
    let fault_window = Duration::from_secs(45).max(Duration::from_millis(60) * leads as u32);
    // Restarting the SurrealDB server mid-run: `scripts/test` and `scripts/chaos` turn it on.
    let restart_store = std::env::var("LEADQ_CHAOS_RESTART_STORE").is_ok_and(|v| v == "1");
    // The NATS node events: node 1 crashes (SIGKILL) at 8 s and is back 10 s later; once it is
    // current again, node 2 is stopped as planned (lame duck) for 10 s, as in a rolling restart.
    let mut node_killed_at = None;
    let mut node_back = false;
    let mut leaders_back = None;
    let mut planned_stop_at = None;
    let mut planned_back = false;
    let mut surreal_restarted = false;
    let mut airtable_down_since = None;
    let mut kills = 0;
    let mut progress = Progress::new(started, submitted.clone());
    let mut exits = 0;
    while started.elapsed() < fault_window {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            exits += supervise(&mut processes);
            progress.sample(&twilio, &airtable);
        }
        let victim = rand::random_range(0..processes.len());
        processes[victim].kill();
        kills += 1;
        println!(
            "chaos t={:>4.1}s: killed {}",
            started.elapsed().as_secs_f64(),
            processes[victim].name
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        processes[victim].start();
        let t = started.elapsed();
        if t > Duration::from_secs(5) && airtable_down_since.is_none() {
            airtable.set_down(true);
            airtable_down_since = Some(Instant::now());
        }
        end_outage_when_due(&airtable, airtable_down_since, outage);
        if t > Duration::from_secs(8) && node_killed_at.is_none() {
            cluster.kill_node(1);
            node_killed_at = Some(Instant::now());
            leaders_back = Some(tokio::spawn(call_path_leaders_back(bus.js.clone(), "n1")));
            println!("chaos t={:>4.1}s: NATS node 1 crashed (SIGKILL)", t.as_secs_f64());
        }
        if node_killed_at.is_some_and(|at| at.elapsed() > Duration::from_secs(10)) && !node_back {
            cluster.start_node(1);
            node_back = true;
            println!("chaos t={:>4.1}s: NATS node 1 back", started.elapsed().as_secs_f64());
        }
        if node_back
            && planned_stop_at.is_none()
            && node_killed_at.is_some_and(|at| at.elapsed() > Duration::from_secs(20))
            && cluster.is_current(1).await
        {
            cluster.stop_node_planned(2);
            planned_stop_at = Some(Instant::now());
            println!(
                "chaos t={:>4.1}s: NATS node 2 stopped as planned (lame duck)",
                started.elapsed().as_secs_f64()
            );
        }
        if planned_stop_at.is_some_and(|at| at.elapsed() > Duration::from_secs(10)) && !planned_back {
            cluster.start_node(2);
            planned_back = true;
            println!("chaos t={:>4.1}s: NATS node 2 back", started.elapsed().as_secs_f64());
        }
        if restart_store && t > Duration::from_secs(20) && !surreal_restarted {
            surreal.restart();
            surreal_restarted = true;
            println!("chaos t={:>4.1}s: SurrealDB restarted", started.elapsed().as_secs_f64());
        }
    }
    while !intake.is_finished() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        exits += supervise(&mut processes);
        progress.sample(&twilio, &airtable);
        // The intake can outlast the fault window; the outage still ends on time.
        end_outage_when_due(&airtable, airtable_down_since, outage);
    }
    intake.await.expect("intake");
    // The faults end: what is left must drain.
    if !planned_back && planned_stop_at.is_some() {
        cluster.start_node(2);
    }
    if !node_back {
        cluster.start_node(1);
    }
    airtable.set_down(false);
    twilio.set_fault_rate(0.0, Duration::ZERO);
    airtable.set_refusal_rate(0.0);
    let faults_over = Instant::now();

    let mut settings = Settings::for_tests(&cluster.url());
    surreal.configure(&mut settings);
    let store = Box::pin(Store::open(&settings)).await.expect("the store");
    let wanted: BTreeSet<String> = phones.iter().cloned().collect();
    let deadline = Duration::from_secs(300);
    let mut last_report = Instant::now();
    let tally = loop {
        let tally = tally(&store, &twilio, &airtable, &wanted).await;
        if tally.unfinished.is_empty() || faults_over.elapsed() > deadline {
            break tally;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let example = tally.unfinished.first().map(|phone| {
                format!(
                    "{phone}: {}",
                    tally.states.get(phone).map_or("no record", String::as_str)
                )
            });
            println!(
                "chaos drain {:>4}s: {} of {leads} finished in the store{}; first unfinished {example:?}",
                faults_over.elapsed().as_secs(),
                leads - tally.unfinished.len(),
                tally
                    .store_error
                    .as_ref()
                    .map(|e| format!(" (store: {e})"))
                    .unwrap_or_default(),
            );
        }
        // Reading every record is work for the store too: every 2 s, the rest sampled between.
        for _ in 0..4 {
            exits += supervise(&mut processes);
            progress.sample(&twilio, &airtable);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let drain = faults_over.elapsed();
    let election = match leaders_back {
        Some(waiting) => waiting.await.expect("leader watch"),
        None => Duration::ZERO,
    };
    let after = |at: Option<Instant>, until: Option<Instant>| {
        at.map_or(Duration::ZERO, |at| {
            progress.longest_call_stall_between(at, until.unwrap_or(at + Duration::from_secs(30)))
        })
    };
    let crash_stall = after(node_killed_at, planned_stop_at);
    let planned_stall = after(planned_stop_at, None);
    let table = format!(
        "\n| chaos ({} role kills, NATS node 1 crashed for 10 s, node 2 stopped as planned for 10 s, SurrealDB restarted: {}, Airtable down {} s, Twilio 20% faults) | |\n|---|---|\n\
         | role processes that exited on their own (restarted) | {} |\n\
         | leads in | {} |\n| calls placed | {} |\n| calls per lead (max) | {} |\n| SMS per lead (max) | {} |\n\
         | CRM rows per lead (max) | {} |\n| leads not finished | {} |\n| longest stall in progress (calls, texts, CRM rows) | {:.1} s |\n\
         | after the node crash: time until the cluster had elected leaders for the call path | {:.1} s |\n\
         | after the node crash: longest wait with leads waiting and no call placed | {:.1} s |\n\
         | after the planned node stop: longest wait with leads waiting and no call placed | {:.1} s |\n\
         | time to drain after the last fault | {:.1} s |\n",
        kills,
        if surreal_restarted { "yes" } else { "no" },
        outage.as_secs(),
        exits,
        tally.leads_in,
        tally.calls,
        tally.max_calls,
        tally.max_texts,
        tally.max_rows,
        tally.unfinished.len(),
        progress.longest_stall().as_secs_f64(),
        election.as_secs_f64(),
        crash_stall.as_secs_f64(),
        planned_stall.as_secs_f64(),
        drain.as_secs_f64(),
    );
    println!("{table}");
    for (began, gap) in progress
        .call_stalls
        .iter()
        .filter(|(_, gap)| *gap > Duration::from_secs(2))
    {
        println!(
            "calls stalled at t={:.1}s for {:.1} s",
            (*began - started).as_secs_f64(),
            gap.as_secs_f64()
        );
    }
    // Why processes exited on their own, for the record: a role that cannot start says why.
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for process in &processes {
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        for line in log.lines().filter(|l| l.starts_with("leadq: error")) {
            *reasons.entry(format!("{}: {line}", process.role)).or_insert(0) += 1;
        }
    }
    for (reason, count) in &reasons {
        println!("exited {count}x: {reason}");
    }
    if !tally.unfinished.is_empty() {
        for phone in tally.unfinished.iter().take(5) {
            eprintln!(
                "unfinished {phone}: {}",
                tally.states.get(phone).map_or("no record", String::as_str)
            );
        }
        eprintln!("logs kept in {}", work.keep().display());
        for process in &processes {
            let log = std::fs::read_to_string(&process.log).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .rev()
                .take(5)
                .collect();
            eprintln!("--- {} ---\n{}", process.name, tail.join("\n"));
        }
    } else if std::env::var_os("LEADQ_CHAOS_KEEP_LOGS").is_some() {
        println!("logs kept in {}", work.keep().display());
    }
    assert_eq!(tally.leads_in, leads, "every lead reached the store{table}");
    assert!(
        tally.unfinished.is_empty(),
        "not finished: {:?}{table}",
        &tally.unfinished[..tally.unfinished.len().min(10)]
    );
    assert_eq!(tally.max_calls, 1, "a lead called twice{table}");
    assert_eq!(tally.max_texts, 1, "a lead texted twice{table}");
    assert_eq!(tally.max_rows, 1, "a lead in the CRM twice{table}");
}

/// How long after a node's crash every stream, bucket and consumer on the call path has a leader
/// on another node again: the part of the call stall that is the cluster's own election, which
/// leadq cannot shorten (nats-server waits 4-9 s before it elects anew after a crash).
async fn call_path_leaders_back(js: async_nats::jetstream::Context, dead: &str) -> Duration {
    use leadq::bus::{bucket, consumer, stream};
    let crashed = Instant::now();
    let streams = [
        stream::LEADS.to_string(),
        format!("KV_{}", bucket::CALLS),
        format!("KV_{}", bucket::PHONES),
        format!("KV_{}", bucket::DNC),
        format!("KV_{}", bucket::EMAILS_SEEN),
    ];
    let led_elsewhere = |cluster: Option<&async_nats::jetstream::stream::ClusterInfo>| {
        cluster
            .and_then(|c| c.leader.as_deref())
            .is_some_and(|leader| leader != dead)
    };
    while crashed.elapsed() < Duration::from_secs(60) {
        let mut all_led = true;
        for name in &streams {
            let info = tokio::time::timeout(Duration::from_secs(1), js.get_stream(name)).await;
            all_led &= matches!(&info, Ok(Ok(s)) if led_elsewhere(s.cached_info().cluster.as_ref()));
        }
        let caller = tokio::time::timeout(
            Duration::from_secs(1),
            js.get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                consumer::CALLER,
                stream::LEADS,
            ),
        )
        .await;
        all_led &= matches!(&caller, Ok(Ok(c)) if led_elsewhere(c.cached_info().cluster.as_ref()));
        if all_led {
            return crashed.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crashed.elapsed()
}

/// Puts the lead's notification in the inbox as the mail server's delivery would.
fn deliver_email(inbox: &std::path::Path, n: usize, phone: &str) {
    let new = inbox.join("new");
    std::fs::create_dir_all(&new).expect("mkdir new");
    std::fs::write(new.join(format!("chaos-{n}.leadq-test")), notification(n, phone)).expect("mail");
    let _ = Command::new("chown")
        .args(["-R", "dovecot:dovecot"])
        .arg(inbox)
        .status();
}

/// Posts until the api takes it (it may be down between a kill and its restart): what a form
/// provider or the CMO agent does with an answer that did not come.
async fn send_until_accepted(request: impl Fn() -> reqwest::RequestBuilder) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = match request().send().await {
            Ok(answer) if answer.status().is_success() => return,
            Ok(answer) => format!("{} {}", answer.status(), answer.text().await.unwrap_or_default()),
            Err(err) => err.to_string(),
        };
        assert!(Instant::now() < deadline, "the api never took a lead; last: {last}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Per phone: the lead records in the store (finished = a verdict, the CRM synced, the text
/// settled), the calls and texts Twilio took, the rows Airtable holds.
async fn tally(store: &Store, twilio: &TwilioStandIn, airtable: &AirtableStandIn, wanted: &BTreeSet<String>) -> Tally {
    let mut finished = BTreeSet::new();
    let mut recorded = BTreeSet::new();
    let mut states = BTreeMap::new();
    let mut offset = 0;
    let mut store_error = None;
    loop {
        let page = match store.leads_page(None, 200, offset).await {
            Ok(page) => page,
            Err(err) => {
                store_error = Some(err.to_string());
                break;
            }
        };
        for item in &page.items {
            let value = serde_json::to_value(item).unwrap_or_default();
            let phone = value["contact"]["phone"].as_str().unwrap_or_default().to_owned();
            recorded.insert(phone.clone());
            states.insert(
                phone.clone(),
                format!(
                    "{} crm {} sms {}",
                    value["verdict"], value["crm_sync"], value["sms_state"]
                ),
            );
            let settled = matches!(value["sms_state"].as_str(), Some("sent" | "skipped" | "failed"));
            if value["crm_sync"] == "synced" && settled {
                finished.insert(phone);
            }
        }
        offset += 200;
        if page.items.len() < 200 {
            break;
        }
    }
    let mut calls = BTreeMap::new();
    for call in twilio.calls() {
        *calls.entry(call.to).or_insert(0) += 1;
    }
    let mut texts = BTreeMap::new();
    for message in twilio.messages() {
        *texts.entry(message.to).or_insert(0) += 1;
    }
    let mut rows = BTreeMap::new();
    for row in airtable.records(AIRTABLE_BASE, "Leads") {
        let phone = row
            .fields
            .get("Phone")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_owned();
        *rows.entry(phone).or_insert(0) += 1;
    }
    Tally {
        leads_in: recorded.intersection(wanted).count(),
        calls: calls.values().sum(),
        max_calls: most(&calls),
        max_texts: most(&texts),
        max_rows: most(&rows),
        unfinished: wanted.difference(&finished).cloned().collect(),
        states,
        store_error,
    }
}

/// Airtable comes back once it has been down for the outage's length.
fn end_outage_when_due(airtable: &AirtableStandIn, down_since: Option<Instant>, outage: Duration) {
    if down_since.is_some_and(|since| since.elapsed() > outage) {
        airtable.set_down(false);
    }
}
