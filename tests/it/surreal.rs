//! One SurrealDB server shared by processes, as at scale: an api (in this test process) and two
//! `leadq finalizer` processes write the lead records to it, and what they hold is what the
//! embedded store holds for the same calls.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use standins::twilio::Persona;
use time::OffsetDateTime;

use crate::call::{lead, qualified_callee};
use crate::harness::{AIRTABLE_BASE, TestAgent, spawn_agent, spawn_agent_with};
use crate::helpers::{SURREAL_PASS, SURREAL_USER, SurrealServer};
use leadq::app::Role;

/// Five callees whose verdicts differ.
fn cases() -> Vec<(&'static str, Persona)> {
    vec![
        ("+14155550250", qualified_callee()),
        (
            "+14155550251",
            Persona::answers(&["a hot desk", "just me", "in two years", "fifty dollars", "no"]),
        ),
        (
            "+14155550252",
            Persona::answers(&["a dedicated desk", "three of us", "", "", "yes"]),
        ),
        ("+14155550253", Persona::Machine),
        ("+14155550254", Persona::Busy),
    ]
}

/// What a sales manager reads of each lead (by phone) and of the day.
async fn outcome(agent: &TestAgent, since: OffsetDateTime) -> (Vec<(String, Value, Value, Value)>, Vec<u64>) {
    let mut leads = Vec::new();
    for (phone, persona) in cases() {
        agent.twilio.set_persona(phone, persona);
        let one = lead("Ada", phone);
        agent.bus().publish(&one).await.expect("publish");
        leads.push(one);
    }
    agent.finalized(leads.len()).await;
    let store = agent.ctx.store.clone().expect("store");
    let mut records = Vec::new();
    for one in &leads {
        let record = store.lead(one.lead_id).await.expect("read").expect("a record");
        records.push((
            one.lead.phone.as_str().to_owned(),
            Value::from(record.verdict),
            Value::from(record.score),
            Value::from(record.reasons),
        ));
    }
    let figures = store.figures(since).await.expect("figures");
    (
        records,
        vec![figures.total_leads, figures.qualified_leads, figures.calls_made],
    )
}

/// `leadq finalizer` as its own process against the agent's NATS and the server.
fn finalizer_process(agent: &TestAgent, surreal: &SurrealServer, data: &std::path::Path, n: usize) -> Child {
    let settings = &agent.ctx.settings;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadq"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADQ_")) {
        cmd.env_remove(key);
    }
    cmd.arg("finalizer")
        .env("LEADQ_NATS_URL", &settings.nats_url)
        .env("LEADQ_DB", surreal.url())
        .env("LEADQ_DB_USER", SURREAL_USER)
        .env("LEADQ_DB_PASS", SURREAL_PASS)
        .env("LEADQ_DATA_DIR", data.join(format!("finalizer-{n}")))
        .env("LEADQ_INSTANCE", format!("finalizer-{n}"))
        .env("LEADQ_SANDBOX", "0")
        .env("LEADQ_RETRY_LADDER", "[]")
        .env("LEADQ_TWILIO_API_BASE", agent.twilio.base_url())
        .env(
            "LEADQ_TWILIO__ACCOUNT_SID",
            settings.twilio.account_sid.clone().unwrap_or_default(),
        )
        .env("LEADQ_TWILIO__AUTH_TOKEN", "stand-in-auth-token")
        .env("LEADQ_TWILIO__FROM_NUMBER", "+15005550006")
        .env("LEADQ_AIRTABLE_API_BASE", agent.airtable.base_url())
        .env("LEADQ_AIRTABLE__TOKEN", "pat-stand-in")
        .env("LEADQ_AIRTABLE__BASE_ID", AIRTABLE_BASE)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join(format!("finalizer-{n}.log"))).expect("log file"))
        .spawn()
        .expect("spawn leadq finalizer")
}

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_finalizer_processes_on_one_surrealdb_server_record_what_the_embedded_store_does() {
    let since = OffsetDateTime::now_utc() - Duration::from_secs(60);
    let embedded = spawn_agent(&[Role::Caller]).await;
    embedded.start(Role::Finalizer).await;
    let expected = outcome(&embedded, since).await;
    drop(embedded);

    let surreal = SurrealServer::start();
    let shared = spawn_agent_with(&[Role::Caller], |settings| surreal.configure(settings)).await;
    let data = tempfile::tempdir().expect("temp dir");
    let _finalizers = Killed(
        (0..2)
            .map(|n| finalizer_process(&shared, &surreal, data.path(), n))
            .collect(),
    );
    let seen = outcome(&shared, since).await;
    assert_eq!(
        seen, expected,
        "records and figures on the server are the embedded store's"
    );
    assert_eq!(seen.1[0], 5, "five leads: {:?}", seen.1);
}

/// A finalizer process started while its SurrealDB server is down (a restart, say) waits for it,
/// saying so once, and finalizes once it is back, instead of exiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_started_while_the_store_is_down_waits_for_it_then_finalizes() {
    let mut surreal = SurrealServer::start();
    let agent = spawn_agent_with(&[Role::Caller], |settings| surreal.configure(settings)).await;
    surreal.stop();
    let data = tempfile::tempdir().expect("temp dir");
    let mut finalizer = Killed(vec![finalizer_process(&agent, &surreal, data.path(), 0)]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        matches!(finalizer.0[0].try_wait(), Ok(None)),
        "the finalizer gave up on a store that was restarting: {}",
        std::fs::read_to_string(data.path().join("finalizer-0.log")).unwrap_or_default()
    );
    surreal.restart();
    let lead = lead("Ada", "+14155550331");
    agent.twilio.set_persona(lead.lead.phone.as_str(), qualified_callee());
    agent.bus().publish(&lead).await.expect("publish");
    let finalized = agent.finalized(1).await;
    assert_eq!(finalized[0].lead_id, lead.lead_id);
    let log = std::fs::read_to_string(data.path().join("finalizer-0.log")).unwrap_or_default();
    assert_eq!(log.matches("not answering at start").count(), 1, "said once: {log}");
}

/// A loopback TCP relay to the server that can stop answering on the connections it holds, as
/// seen in the fault suite (one process's connection went silent while the server answered
/// others); connections opened after [`Relay::silence`] are relayed as usual.
struct Relay {
    port: u16,
    /// Connections numbered below this get nothing relayed any more.
    silenced_below: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to(port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let relay_port = listener.local_addr().expect("addr").port();
        let silenced_below = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let silenced = silenced_below.clone();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    continue;
                };
                let silenced = silenced.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let live = move || silenced.load(Ordering::SeqCst) <= n;
                    let live_too = live.clone();
                    let up = async move {
                        let mut buf = vec![0; 16 * 1024];
                        while let Ok(read @ 1..) = client_read.read(&mut buf).await {
                            if live() && server_write.write_all(&buf[..read]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async move {
                        let mut buf = vec![0; 16 * 1024];
                        while let Ok(read @ 1..) = server_read.read(&mut buf).await {
                            if live_too() && client_write.write_all(&buf[..read]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Self {
            port: relay_port,
            silenced_below,
            accepted,
            task,
        }
    }

    /// Every connection open now stops relaying (and stays open, unanswered).
    fn silence_open_connections(&self) {
        use std::sync::atomic::Ordering;
        self.silenced_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_connection_that_stops_answering_is_replaced_and_queries_work_again() {
    let server = SurrealServer::start();
    let relay = Relay::to(server.port).await;
    let mut settings = leadq::config::Settings::for_tests("nats://127.0.0.1:1");
    server.configure(&mut settings);
    settings.db = leadq::config::DbLocation::Server(format!("ws://127.0.0.1:{}", relay.port).parse().expect("url"));
    settings.db_query_deadline = Duration::from_secs(1);
    let store = Box::pin(leadq::store::Store::open(&settings))
        .await
        .expect("open through the relay");
    store
        .ping(Duration::from_secs(5))
        .await
        .expect("answers through the relay");

    // The connection the store holds goes silent; the server still answers new ones.
    relay.silence_open_connections();
    let silent = tokio::time::timeout(Duration::from_secs(10), store.setting::<serde_json::Value>("script"))
        .await
        .expect("the query came back (with an error) instead of hanging");
    assert!(
        matches!(silent, Err(leadq::store::StoreError::Unanswered(_))),
        "an unanswered query is an error after the deadline, not a hang: {silent:?}"
    );
    crate::helpers::eventually(Duration::from_secs(20), "queries answered on a new connection", || {
        let store = store.clone();
        async move { store.setting::<serde_json::Value>("script").await.is_ok() }
    })
    .await;
}

/// A whole deployment starting at once on a fresh server: every process defines the schema at
/// the same moment, and all but one meet a transaction conflict. Each must open the store anyway
/// (CI saw `leadq api` exit with "Transaction write conflict" when ten tries ran out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_opening_a_fresh_server_at_once_all_open_the_store() {
    let server = SurrealServer::start();
    let mut settings = leadq::config::Settings::for_tests("nats://127.0.0.1:1");
    server.configure(&mut settings);
    let opens = (0..8).map(|_| {
        let settings = settings.clone();
        tokio::spawn(async move { Box::pin(leadq::store::Store::open(&settings)).await.map(drop) })
    });
    for (n, opened) in futures::future::join_all(opens).await.into_iter().enumerate() {
        opened
            .expect("open task")
            .unwrap_or_else(|err| panic!("open {n} failed: {err}"));
    }
}
