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
    let ctx = leadq::runtime::Context::build(settings, true).await.expect("context");
    let worker = tokio::spawn(leadq::activity::run(
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

#[tokio::test]
async fn saved_settings_reach_the_config_bucket_and_a_first_start_saves_the_defaults() {
    use leadq::domain::qualification::Rules;
    use leadq::domain::script::Script;
    use leadq::shared_config::{RULES_KEY, SCRIPT_KEY};
    let nats = NatsServer::start();
    let ctx = leadq::runtime::Context::build(nats.settings(), true)
        .await
        .expect("context");
    let store = ctx.store.clone().expect("store");

    ctx.config.publish(&store).await.expect("publish");
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

    let mut edited = Script::default();
    edited.greeting = "Hello {name}, Mesh Cowork here.".into();
    store.save_setting(SCRIPT_KEY, &edited, "admin").await.expect("save");
    let rules = Rules {
        min_team_size: 3,
        ..Rules::default()
    };
    store.save_setting(RULES_KEY, &rules, "admin").await.expect("save");
    ctx.config.publish(&store).await.expect("publish again");
    assert_eq!(ctx.config.script().await.greeting, "Hello {name}, Mesh Cowork here.");
    assert_eq!(ctx.config.rules().await.min_team_size, 3);
}
