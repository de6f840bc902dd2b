//! The store on the real embedded SurrealDB engines.

use leadq::bus::Activity;
use leadq::config::DbLocation;
use leadq::store::Store;

use crate::helpers::NatsServer;

fn settings_with(db: DbLocation) -> leadq::config::Settings {
    let mut settings = leadq::config::Settings::for_tests("nats://127.0.0.1:1");
    settings.db = db;
    settings
}

/// A real restart: one `leadq api` process writes through the bus into a surrealkv file and stops;
/// a new process (`leadq admin activity`) reads the entry back from the file.
#[tokio::test]
async fn a_surrealkv_store_keeps_its_records_across_a_process_restart() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("surrealkv://{}", dir.path().join("db").display());
    let addr = format!("127.0.0.1:{}", crate::helpers::free_port());
    let env = [
        ("LEADQ_NATS_URL", nats.url()),
        ("LEADQ_DB", db.clone()),
        ("LEADQ_HTTP_ADDR", addr),
    ];
    let mut api = std::process::Command::new(env!("CARGO_BIN_EXE_leadq"))
        .arg("api")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn leadq api");
    let bus = nats.ready_bus().await;
    let entry = Activity::new("test", "store-test", "survives a restart");
    bus.publish(&entry).await.expect("publish");
    crate::helpers::eventually(
        std::time::Duration::from_secs(30),
        "the entry acked by the api role",
        || async {
            crate::helpers::consumer_info(&bus, leadq::bus::stream::AGENT, leadq::bus::consumer::ACTIVITY)
                .await
                .is_ok_and(|info| info.ack_floor.stream_sequence >= 1)
        },
    )
    .await;
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &api.id().to_string()])
        .status();
    assert!(stopped.expect("kill").success());
    assert!(api.wait().expect("wait").success());

    let out = crate::helpers::leadq(&["admin", "activity"], &[("LEADQ_DB", &db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], entry.id.to_string());
    assert_eq!(rows[0]["summary"], "survives a restart");
}

#[tokio::test]
async fn writing_the_same_activity_twice_keeps_one_row_newest_first() {
    let store = Store::open(&settings_with(DbLocation::Memory)).await.expect("open");
    let older = Activity::new("a", "tester", "older");
    let mut newer = Activity::new("b", "tester", "newer");
    newer.at = older.at + time::Duration::seconds(1);
    store.record_activity(&older).await.expect("write");
    store.record_activity(&newer).await.expect("write");
    store.record_activity(&newer).await.expect("redelivered write");
    let rows = store.recent_activity(10).await.expect("read");
    let summaries: Vec<_> = rows.iter().map(|r| r.summary.as_str()).collect();
    assert_eq!(summaries, ["newer", "older"]);
}

#[tokio::test]
async fn activity_published_on_the_bus_lands_in_the_store() {
    let nats = NatsServer::start();
    let settings = nats.settings();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ctx = leadq::app::Context::build(settings, true).await.expect("context");
    let worker = tokio::spawn(leadq::roles::activity::run(
        ctx.activity_deps().expect("the store"),
        shutdown.clone(),
    ));
    let entry = Activity::new("admin.test", "tester", "over the bus");
    ctx.bus.publish(&entry).await.expect("publish");
    ctx.bus.publish(&entry).await.expect("publish again");
    let store = ctx.store.clone().expect("store");
    crate::helpers::eventually(std::time::Duration::from_secs(10), "the entry in the store", || {
        let store = store.clone();
        async move { store.recent_activity(10).await.map(|r| r.len() == 1).unwrap_or(false) }
    })
    .await;
    shutdown.cancel();
    worker.await.expect("join").expect("consume");
    assert_eq!(
        store.recent_activity(10).await.expect("read")[0].summary,
        "over the bus"
    );
}

/// A burst of entries (ten a lead, as a 1,000-lead run makes) is written in groups: every entry
/// once however often it is delivered, and each text report sets its lead's `sms_state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_activity_lands_once_each_and_text_reports_reach_their_leads() {
    let nats = NatsServer::start();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ctx = leadq::app::Context::build(nats.settings(), true)
        .await
        .expect("context");
    let store = ctx.store.clone().expect("store");
    let leads: Vec<_> = (0..20).map(crate::crm::finalized).collect();
    for lead in &leads {
        store.save_finalized(lead).await.expect("save");
    }
    let mut entries: Vec<Activity> = (0..380)
        .map(|n| Activity::new("call.heard", "tester", format!("entry {n}")))
        .collect();
    for (n, lead) in leads.iter().enumerate() {
        let mut report = Activity::new(if n % 2 == 0 { "sms.sent" } else { "sms.skipped" }, "sms", "text");
        report.lead_id = Some(lead.lead.lead_id);
        entries.push(report);
    }
    for entry in &entries {
        ctx.bus.publish(entry).await.expect("publish");
    }
    // The same entries again past the duplicate window (no message id), as a redelivery is.
    for entry in entries.iter().step_by(7) {
        let mut again = serde_json::to_value(entry).expect("json");
        again["v"] = 1.into();
        ctx.bus
            .js
            .publish(leadq::bus::subject::AGENT_ACTIVITY, again.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let worker = tokio::spawn(leadq::roles::activity::run(
        ctx.activity_deps().expect("the store"),
        shutdown.clone(),
    ));
    crate::helpers::eventually(std::time::Duration::from_secs(60), "every entry in the store", || {
        let store = store.clone();
        async move { store.recent_activity(1000).await.is_ok_and(|rows| rows.len() >= 400) }
    })
    .await;
    for (n, lead) in leads.iter().enumerate() {
        let want = if n % 2 == 0 { "sent" } else { "skipped" };
        crate::helpers::eventually(
            std::time::Duration::from_secs(10),
            "the text's state on the lead",
            || {
                let store = store.clone();
                async move {
                    store
                        .lead(lead.lead.lead_id)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|record| record.sms_state == want)
                }
            },
        )
        .await;
    }
    shutdown.cancel();
    worker.await.expect("join").expect("consume");
    let rows = store.recent_activity(1000).await.expect("read");
    assert_eq!(rows.len(), 400, "each entry once");
    let mut summaries: Vec<_> = rows.iter().map(|r| r.summary.clone()).collect();
    summaries.sort();
    summaries.dedup();
    assert_eq!(summaries.len(), 381, "380 distinct entries and the text reports");
}

#[tokio::test]
async fn saved_settings_reach_the_config_bucket_and_a_first_start_saves_the_defaults() {
    use leadq::domain::qualification::Rules;
    use leadq::domain::script::Script;
    use leadq::store::shared_config::{RULES_KEY, SCRIPT_KEY};
    let nats = NatsServer::start();
    let ctx = leadq::app::Context::build(nats.settings(), true)
        .await
        .expect("context");
    let store = ctx.store.clone().expect("store");

    ctx.config
        .publish(&store, &ctx.settings.transfer)
        .await
        .expect("publish");
    assert_eq!(ctx.config.script().await, Script::default());
    assert_eq!(
        store.setting::<Script>(SCRIPT_KEY).await.expect("load"),
        Some(Script::default()),
        "saved"
    );
    assert_eq!(
        store.setting::<Rules>(RULES_KEY).await.expect("load"),
        Some(Rules::default()),
        "saved"
    );

    let edited = Script {
        greeting: "Hello {name}, Mesh Cowork here.".into(),
        ..Script::default()
    };
    store.save_setting(SCRIPT_KEY, &edited, "admin").await.expect("save");
    let rules = Rules {
        min_team_size: 3,
        ..Rules::default()
    };
    store.save_setting(RULES_KEY, &rules, "admin").await.expect("save");
    ctx.config
        .publish(&store, &ctx.settings.transfer)
        .await
        .expect("publish again");
    assert_eq!(ctx.config.script().await.greeting, "Hello {name}, Mesh Cowork here.");
    assert_eq!(ctx.config.rules().await.min_team_size, 3);
}
