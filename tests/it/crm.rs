//! The CRM sync against the Airtable stand-in: batches of ten, Airtable's pace, outages replayed.

use std::time::Duration;

use leadq::bus::kv::lease::{self, LEASE_TTL, Leases};
use leadq::bus::{CallCompleted, IntakeTimestamps, LeadReceived, LeadSource};
use leadq::clients::airtable::AirtableClient;
use leadq::config::default_crm_fields;
use leadq::domain::Lead;
use leadq::roles::finalizer::crm::CrmSync;
use leadq::store::{FinalizedLead, Store};
use standins::airtable::AirtableStandIn;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::NatsServer;

const TOKEN: &str = "pat-airtable-test-token";
const BASE: &str = "appLeadqTest00001";

pub(crate) fn finalized(n: usize) -> FinalizedLead {
    let form = vec![
        ("fname".to_owned(), format!("Lead {n}")),
        ("email".to_owned(), format!("lead{n}@example.com")),
        ("phone".to_owned(), format!("+1415555{:04}", n % 10_000)),
    ];
    let lead = LeadReceived::new(
        Uuid::now_v7(),
        LeadSource::Email,
        Lead::from_form(form, Default::default(), phonenumber::country::Id::US).expect("lead"),
        IntakeTimestamps {
            inbox_at: None,
            seen_at: OffsetDateTime::now_utc(),
            published_at: OffsetDateTime::now_utc(),
        },
    );
    let answer = |question: &str, value: serde_json::Value| leadq::domain::answers::Interpretation {
        question: question.into(),
        raw: "said".into(),
        value,
        captured: true,
    };
    FinalizedLead {
        call: CallCompleted {
            lead_id: lead.lead_id,
            call_sid: format!("CA{}", lead.lead_id.simple()),
            status: "completed".into(),
            duration_secs: Some(90),
            answered_by: Some("human".into()),
            reconciled: false,
        },
        lead,
        answers: vec![
            answer("team_size", serde_json::json!({"min": 3, "max": 4})),
            answer("budget", serde_json::json!(2000)),
        ],
        score: 80,
        verdict: "qualified".into(),
        reasons: vec!["team of 3 meets the minimum of 1".into()],
        placed_at: Some(OffsetDateTime::now_utc()),
        finalized_at: OffsetDateTime::now_utc(),
        answered_to_first_words_ms: None,
        transfer: None,
        script_variant: None,
        language: "en".into(),
    }
}

/// What the finalizer publishes for a finished lead (`lead.finalized`): what the SMS role texts.
pub(crate) fn as_finalized(lead: &FinalizedLead) -> leadq::bus::LeadFinalized {
    let contact = &lead.lead.lead;
    leadq::bus::LeadFinalized {
        lead_id: lead.lead.lead_id,
        phone: contact.phone.as_str().to_owned(),
        name: contact.name.clone().unwrap_or_default(),
        email: contact.email.clone(),
        verdict: lead.verdict.clone(),
        score: lead.score,
        campaign_id: None,
        language: Default::default(),
    }
}

async fn sync_to(airtable: &AirtableStandIn, store: &Store, nats: &NatsServer) -> CrmSync {
    sync_of("finalizer-1", airtable, store, nats).await
}

/// The CRM sync of the finalizer process `instance`.
async fn sync_of(instance: &str, airtable: &AirtableStandIn, store: &Store, nats: &NatsServer) -> CrmSync {
    let bus = nats.ready_bus().await;
    let client = AirtableClient::new(
        &airtable.base_url().parse().expect("url"),
        Some(&TOKEN.to_owned().into()),
        Some(BASE),
        "Leads",
        "Lead ID",
    )
    .expect("client");
    CrmSync {
        store: store.clone(),
        leases: Leases::open(&bus.js, instance).await.expect("leases"),
        bus,
        airtable: client,
        columns: default_crm_fields(),
        poll: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_leads_reaches_airtable_in_batches_within_its_rate_limit() {
    let nats = NatsServer::start();
    let store = Store::open(&nats.settings()).await.expect("store");
    let airtable = AirtableStandIn::start(TOKEN).await.expect("stand-in");
    for n in 0..500 {
        store.save_finalized(&finalized(n)).await.expect("save");
    }
    let sync = sync_to(&airtable, &store, &nats).await;
    sync.drain(&CancellationToken::new()).await.expect("drain");
    let records = airtable.records(BASE, "Leads");
    assert_eq!(records.len(), 500, "lost or doubled records");
    assert!(
        airtable.peak_requests_per_second() <= 5,
        "{} requests in one second",
        airtable.peak_requests_per_second()
    );
    assert_eq!(airtable.rate_limited(), 0, "Airtable had to refuse requests");
    assert!(store.unsynced_leads(10).await.expect("unsynced").is_empty());
    let sample = &records[0].fields;
    assert_eq!(sample["Team Size"], "3-4");
    assert_eq!(sample["Monthly Budget"], 2000);
    assert_eq!(sample["Verdict"], "qualified");
    assert!(sample["Lead ID"].as_str().is_some_and(|id| id.len() == 36));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_airtable_outage_keeps_the_leads_and_replays_them_once_without_duplicates() {
    let nats = NatsServer::start();
    let store = Store::open(&nats.settings()).await.expect("store");
    let airtable = AirtableStandIn::start(TOKEN).await.expect("stand-in");
    let leads: Vec<FinalizedLead> = (0..25).map(finalized).collect();
    for lead in &leads {
        store.save_finalized(lead).await.expect("save");
    }
    let sync = sync_to(&airtable, &store, &nats).await;
    airtable.set_down(true);
    assert!(
        sync.drain(&CancellationToken::new()).await.is_err(),
        "an outage is reported"
    );
    assert!(airtable.records(BASE, "Leads").is_empty());
    assert_eq!(
        store.unsynced_leads(100).await.expect("unsynced").len(),
        25,
        "leads kept for the replay"
    );

    airtable.set_down(false);
    sync.drain(&CancellationToken::new()).await.expect("replay");
    // A lead finalized again (a redelivery) is updated in place, not added.
    store.save_finalized(&leads[0]).await.expect("save again");
    store
        .mark_crm(&[leads[0].lead.lead_id.to_string()], "pending")
        .await
        .expect("mark");
    sync.drain(&CancellationToken::new()).await.expect("again");
    let records = airtable.records(BASE, "Leads");
    let mut ids: Vec<_> = records
        .iter()
        .map(|r| r.fields["Lead ID"].as_str().unwrap_or("").to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((records.len(), ids.len()), (25, 25));
}

/// Two finalizer processes each run a CRM sync; Airtable's limit is per base, so if both synced
/// at once they would go at twice its pace and be refused. One holds the lease at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_finalizers_sync_one_at_a_time_within_airtables_limit_and_each_lead_once() {
    let nats = NatsServer::start();
    let store = Store::open(&nats.settings()).await.expect("store");
    let airtable = AirtableStandIn::start(TOKEN).await.expect("stand-in");
    for n in 0..300 {
        store.save_finalized(&finalized(n)).await.expect("save");
    }
    let shutdown = CancellationToken::new();
    let mut runs = Vec::new();
    for instance in ["finalizer-1", "finalizer-2"] {
        let sync = sync_of(instance, &airtable, &store, &nats).await;
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        runs.push(tokio::spawn(sync.run(wake, shutdown.clone())));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !store.unsynced_leads(1).await.expect("unsynced").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the leads were not synced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    for run in runs {
        run.await.expect("sync ends");
    }
    assert_eq!(airtable.records(BASE, "Leads").len(), 300, "lost or doubled records");
    assert_eq!(airtable.rate_limited(), 0, "Airtable had to refuse requests");
    assert!(
        airtable.peak_requests_per_second() <= 5,
        "{} requests in one second",
        airtable.peak_requests_per_second()
    );
}

/// A lease is one holder's while it lives, given up when the work ends, and lapses when its
/// holder dies without giving it up (here: the work never ends and nothing renews it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_one_holders_given_up_after_the_work_and_lapses_when_its_holder_dies() {
    let nats = NatsServer::start();
    let bus = nats.ready_bus().await;
    let first = Leases::open(&bus.js, "one").await.expect("leases");
    let second = Leases::open(&bus.js, "two").await.expect("leases");
    let held = first.try_take(lease::CRM_SYNC).await.expect("take").expect("free");
    assert!(
        second.try_take(lease::CRM_SYNC).await.expect("take").is_none(),
        "taken twice"
    );
    assert_eq!(
        first.holder(lease::CRM_SYNC).await.expect("holder").as_deref(),
        Some("one")
    );
    held.hold_while(CancellationToken::new(), async {}).await;
    let held = second.try_take(lease::CRM_SYNC).await.expect("take").expect("given up");
    assert_eq!(
        second.holder(lease::CRM_SYNC).await.expect("holder").as_deref(),
        Some("two")
    );
    // The holder dies: nothing renews the lease or gives it up.
    drop(held);
    assert!(
        first.try_take(lease::CRM_SYNC).await.expect("take").is_none(),
        "lapsed at once"
    );
    let deadline = tokio::time::Instant::now() + LEASE_TTL + Duration::from_secs(5);
    loop {
        if first.try_take(lease::CRM_SYNC).await.expect("take").is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dead holder's lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
