//! The streams, durable consumers and buckets leadq needs, and `setup`, which makes the server match
//! them. Setup compares what the server has with what it returns after the change, so it can say
//! per item whether it created, updated or left it, and a second run changes nothing.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{Context, kv};

use super::{BusError, bucket, consume, consumer, stream, subject};
use crate::config::BusSettings;

const DAY: Duration = Duration::from_secs(24 * 3600);
/// Enough hourly looks at the clock for a follow-up weeks away.
const FOLLOWUP_MAX_DELIVER: i64 = 10_000;

fn streams(settings: &BusSettings) -> Vec<StreamConfig> {
    let base = |name: &str, subjects: &[&str]| StreamConfig {
        name: name.into(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        max_age: settings.retention,
        ..Default::default()
    };
    vec![
        StreamConfig {
            description: Some("Leads received, finalized and followed up; Nats-Msg-Id is the lead id".into()),
            ..base(
                stream::LEADS,
                &[subject::LEAD_RECEIVED, subject::LEAD_FINALIZED, subject::LEAD_FOLLOWUP],
            )
        },
        StreamConfig {
            description: Some("Answers and terminal statuses of calls".into()),
            ..base(stream::CALLS, &[subject::CALL_ANSWER, subject::CALL_COMPLETED])
        },
        StreamConfig {
            description: Some("Activity log entries and alerts".into()),
            max_age: 30 * DAY,
            ..base(stream::AGENT, &[subject::AGENT_ACTIVITY, subject::AGENT_ALERT])
        },
        StreamConfig {
            description: Some("Latest agent.status, so a late subscriber sees the state at once".into()),
            max_messages_per_subject: 1,
            max_age: DAY,
            duplicate_window: Duration::from_secs(60),
            ..base(stream::STATUS, &[subject::AGENT_STATUS])
        },
    ]
}

fn consumers(settings: &BusSettings) -> Vec<(&'static str, pull::Config)> {
    let durable = |name: &str, filter_subjects: &[&str]| pull::Config {
        durable_name: Some(name.into()),
        filter_subjects: filter_subjects.iter().map(|s| (*s).to_owned()).collect(),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        max_deliver: settings.max_deliver,
        ack_wait: settings.backoff.first().copied().unwrap_or(Duration::from_secs(30)),
        // No server-side back-off: with one, nats-server measures a negative ack's delay on a
        // later delivery against that delivery's back-off step (a 100 ms retry came back after
        // 25 s). The consume loop grows the delays itself, from the ladder kept here.
        backoff: Vec::new(),
        metadata: [(
            consume::RETRY_LADDER.to_owned(),
            consume::write_ladder(&settings.backoff),
        )]
        .into(),
        max_ack_pending: 1000,
        ..Default::default()
    };
    vec![
        (stream::LEADS, durable(consumer::CALLER, &[subject::LEAD_RECEIVED])),
        (stream::CALLS, durable(consumer::FINALIZER, &[subject::CALL_COMPLETED])),
        (stream::LEADS, durable(consumer::SMS, &[subject::LEAD_FINALIZED])),
        (
            stream::LEADS,
            pull::Config {
                // A follow-up waits for its time by being delivered again (at most hourly), for
                // days: its deliveries are not a failing message's, and each waits exactly as
                // long as it asks (no retry ladder).
                max_deliver: FOLLOWUP_MAX_DELIVER,
                metadata: Default::default(),
                ..durable(consumer::FOLLOWUP, &[subject::LEAD_FOLLOWUP])
            },
        ),
        (stream::AGENT, durable(consumer::ACTIVITY, &[subject::AGENT_ACTIVITY])),
    ]
}

fn buckets(settings: &BusSettings) -> Vec<kv::Config> {
    let base = |name: &str, description: &str| kv::Config {
        bucket: name.into(),
        description: description.into(),
        history: 1,
        storage: StorageType::File,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    vec![
        kv::Config {
            max_age: 7 * DAY,
            ..base(
                bucket::EMAILS_SEEN,
                "Message-IDs of lead emails already published (create = dedupe)",
            )
        },
        kv::Config {
            max_age: DAY,
            ..base(bucket::CALLS, "Call state per lead id, moved by compare-and-set")
        },
        kv::Config {
            history: 5,
            ..base(bucket::AGENT, "Agent state: running, paused or stopped")
        },
        kv::Config {
            history: 5,
            ..base(
                bucket::CONFIG,
                "Question script, rules and encrypted credentials for the workers",
            )
        },
        base(
            bucket::DNC,
            "Do-not-contact numbers (E.164 digits): never called or texted again",
        ),
        kv::Config {
            max_age: 30 * DAY,
            ..base(bucket::SMS, "SMS state per lead id: sending, then sent with its sid")
        },
        base(
            bucket::API_KEYS,
            "CMO API keys by id: name, SHA-256 of the secret, allowed networks, revoked",
        ),
        base(
            bucket::USERS,
            "Admin page users by name: role and argon2id password hash",
        ),
        kv::Config {
            max_age: crate::config::PHONE_MEMORY,
            ..base(
                bucket::PHONES,
                "The first lead of each phone number (E.164 digits): one call per person",
            )
        },
        kv::Config {
            max_age: DAY,
            ..base(
                bucket::IDEMPOTENCY,
                "Answers to POSTs made with an Idempotency-Key, by caller and key",
            )
        },
        kv::Config {
            max_age: crate::bus::kv::lease::LEASE_TTL,
            ..base(
                bucket::LEASES,
                "Work one process of the cluster does at a time (the CRM sync), by name: its holder",
            )
        },
        kv::Config {
            max_age: crate::bus::kv::seen::REMEMBERED,
            ..base(
                bucket::WEBHOOKS_SEEN,
                "Signed webhook deliveries already received (create = replay refused), by signature digest",
            )
        },
        // History 1: after a key rotation no value under the old key is left behind.
        base(
            bucket::CREDENTIALS,
            "Outside-service credentials, AES-256-GCM sealed, by service.key",
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupItem {
    pub kind: &'static str,
    pub name: String,
    pub change: Change,
}

#[derive(Debug, Default, Clone)]
pub struct SetupReport {
    pub items: Vec<SetupItem>,
}

impl SetupReport {
    pub fn changed(&self) -> usize {
        self.items.iter().filter(|i| i.change != Change::Unchanged).count()
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            let change = match item.change {
                Change::Created => "created",
                Change::Updated => "updated",
                Change::Unchanged => "unchanged",
            };
            writeln!(f, "{:<9} {:<24} {change}", item.kind, item.name)?;
        }
        write!(f, "{} of {} changed", self.changed(), self.items.len())
    }
}

fn change_of<T: PartialEq>(before: Option<T>, after: &T) -> Change {
    match before {
        None => Change::Created,
        Some(before) if &before == after => Change::Unchanged,
        Some(_) => Change::Updated,
    }
}

/// Creates or updates every stream, durable consumer and bucket; safe to run any number of times.
pub async fn setup(js: &Context, settings: &BusSettings) -> Result<SetupReport, BusError> {
    let mut report = SetupReport::default();
    for config in streams(settings) {
        let name = config.name.clone();
        let before = existing_stream(js, &name).await?;
        let after = js
            .create_or_update_stream(config)
            .await
            .map_err(|e| BusError::jetstream(format!("stream {name}"), e))?
            .config;
        report.items.push(SetupItem {
            kind: "stream",
            name,
            change: change_of(before, &after),
        });
    }
    for config in buckets(settings) {
        let name = config.bucket.clone();
        let before = existing_stream(js, &format!("KV_{name}")).await?;
        let store = js
            .create_or_update_key_value(config)
            .await
            .map_err(|e| BusError::jetstream(format!("bucket {name}"), e))?;
        let after = existing_stream(js, &store.stream_name).await?;
        let change = match (before, after) {
            (None, _) => Change::Created,
            (Some(before), Some(after)) if before == after => Change::Unchanged,
            _ => Change::Updated,
        };
        report.items.push(SetupItem {
            kind: "bucket",
            name,
            change,
        });
    }
    for (stream_name, config) in consumers(settings) {
        let name = config.durable_name.clone().unwrap_or_default();
        let stream = js
            .get_stream(stream_name)
            .await
            .map_err(|e| BusError::jetstream(format!("stream {stream_name}"), e))?;
        let before = stream.consumer_info(&name).await.ok().map(|info| info.config);
        let what = || format!("consumer {stream_name}/{name}");
        let consumer = match before {
            None => stream
                .create_consumer(config)
                .await
                .map_err(|e| BusError::jetstream(what(), e))?,
            Some(_) => stream
                .update_consumer(config)
                .await
                .map_err(|e| BusError::jetstream(what(), e))?,
        };
        let after = consumer.cached_info().config.clone();
        report.items.push(SetupItem {
            kind: "consumer",
            name,
            change: change_of(before, &after),
        });
    }
    Ok(report)
}

async fn existing_stream(js: &Context, name: &str) -> Result<Option<StreamConfig>, BusError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
        Err(err) => match err.kind() {
            GetStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NOT_FOUND => Ok(None),
            _ => Err(BusError::jetstream(format!("stream {name}"), err)),
        },
    }
}
