//! leadq on a three-node JetStream cluster, as production runs it: R3 streams and buckets, a node
//! lost while leads come in, and compare-and-set writers racing on replicated buckets.

use std::time::Duration;

use leadq::bus::kv::calls::{CallBook, CallState, HeardAnswer};
use leadq::bus::{self, CallCompleted};

use crate::call::{lead, qualified_callee};
use crate::harness::spawn_agent_with;
use crate::helpers::{NatsCluster, eventually, leadq, on_stream};
use leadq::app::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_with_three_replicas_makes_every_stream_and_bucket_r3() {
    let cluster = NatsCluster::start();
    let bus = cluster.bus().await;
    let done = leadq(
        &["setup"],
        &[("LEADQ_NATS_URL", &cluster.url()), ("LEADQ_BUS__REPLICAS", "3")],
    );
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let streams = bus::stream::ALL.iter().map(|s| (*s).to_owned());
    let buckets = bus::bucket::ALL.iter().map(|b| format!("KV_{b}"));
    for name in streams.chain(buckets) {
        let mut stream = bus.js.get_stream(&name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.config.num_replicas, 3, "{name}");
        let followers = info.cluster.as_ref().map(|c| c.replicas.len());
        assert_eq!(followers, Some(2), "{name}: a leader and two followers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_on_a_replicated_call_entry_all_land() {
    let cluster = NatsCluster::start();
    let bus = cluster.bus().await;
    bus::setup(&bus.js, &cluster.settings().bus).await.expect("setup");
    let book = CallBook::open(&bus.js).await.expect("calls");
    let ada = lead("Ada", "+14155550240");
    assert!(
        book.create(&CallState::queued(ada.lead_id, "+14155550240", Some("Ada")))
            .await
            .expect("create")
    );
    // Eight webhooks at once, each adding its answer: on R3 a lost race is JetStream error 10164.
    let writers = (0..8).map(|n| {
        let book = book.clone();
        tokio::spawn(async move {
            book.update(ada.lead_id, |state| {
                state.answers.push(HeardAnswer {
                    question_id: format!("q{n}"),
                    speech: Some("yes".into()),
                    confidence: Some(0.9),
                    captured: true,
                    understood: true,
                });
                ((), true)
            })
            .await
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer
            .expect("task")
            .expect("every write lands, re-read after a lost race");
    }
    let (state, _) = book.get(ada.lead_id).await.expect("get").expect("entry");
    assert_eq!(state.answers.len(), 8, "{:?}", state.answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_node_of_three_down_a_lead_is_called_and_the_node_catches_up() {
    let mut cluster = NatsCluster::start();
    cluster.bus().await;
    let url = cluster.url();
    let agent = spawn_agent_with(&[Role::Caller], |settings| {
        settings.nats_url = url;
        settings.bus.replicas = 3;
        // A webhook lost while the streams' leaders move is learnt from Twilio in seconds.
        settings.call_reconcile_after = Duration::from_secs(2);
    })
    .await;
    agent.start(Role::Finalizer).await;
    let before = lead("Ada", "+14155550241");
    agent.twilio.set_persona("+14155550241", qualified_callee());
    agent.bus().publish(&before).await.expect("publish");
    agent.completed(1).await;

    cluster.kill_node(0);
    let during = lead("Bo", "+14155550242");
    agent.twilio.set_persona("+14155550242", qualified_callee());
    // The client moves to a live node; JetStream answers again once the streams' leaders moved.
    eventually(
        Duration::from_secs(30),
        "the lead published with a node down",
        || async { agent.bus().publish(&during).await.is_ok() },
    )
    .await;
    // Under a full test run the streams' leaders can take a while to move: wait long.
    eventually(Duration::from_secs(120), "both leads finalized", || async {
        on_stream::<bus::LeadFinalized>(agent.bus(), bus::stream::LEADS)
            .await
            .len()
            >= 2
    })
    .await;
    assert_eq!(agent.twilio.calls().len(), 2, "each lead called once");
    assert_eq!(
        on_stream::<CallCompleted>(agent.bus(), bus::stream::CALLS).await.len(),
        2
    );

    // The node comes back with its old store and is brought up to date by the others.
    cluster.start_node(0);
    let mut stream = agent.bus().js.get_stream(bus::stream::LEADS).await.expect("LEADS");
    let messages = stream.info().await.expect("info").state.messages;
    eventually(Duration::from_secs(30), "node n0 caught up", || async {
        cluster.messages_on_node(0, bus::stream::LEADS).await == Some(messages)
    })
    .await;
}
