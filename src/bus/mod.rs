//! The bus contract: every subject, stream, durable consumer and KV bucket name, the payloads that
//! travel on them, and the two ways to touch them (publish with a JetStream ack, and a durable
//! consume loop). `subjects.md` documents exactly these names; a test keeps the two in step.

mod consume;
pub mod kv;
mod payload;
mod topology;
mod trace;
mod transient;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;

pub use consume::{Delivery, Lanes, Outcome, consume};
pub use kv::JsonKv;
pub use payload::*;
pub use topology::{Change, SetupItem, SetupReport, setup};
pub(crate) use transient::retrying;

/// The agent's id: in `agent.status`, in the CMO API, and in the NATS service's subjects.
pub const AGENT_ID: &str = "lead-qualification-agent-001";

/// Subjects carried by the streams.
pub mod subject {
    pub const LEAD_RECEIVED: &str = "lead.received";
    pub const LEAD_FINALIZED: &str = "lead.finalized";
    pub const LEAD_FOLLOWUP: &str = "lead.followup";
    pub const CALL_ANSWER: &str = "call.answer";
    pub const CALL_COMPLETED: &str = "call.completed";
    pub const AGENT_STATUS: &str = "agent.status";
    pub const AGENT_ACTIVITY: &str = "agent.activity";
    pub const AGENT_ALERT: &str = "agent.alert";
    pub const ALL: [&str; 8] = [
        LEAD_RECEIVED,
        LEAD_FINALIZED,
        LEAD_FOLLOWUP,
        CALL_ANSWER,
        CALL_COMPLETED,
        AGENT_STATUS,
        AGENT_ACTIVITY,
        AGENT_ALERT,
    ];
}

/// JetStream streams (file storage).
pub mod stream {
    pub const LEADS: &str = "LEADS";
    pub const CALLS: &str = "CALLS";
    pub const AGENT: &str = "AGENT";
    pub const STATUS: &str = "STATUS";
    pub const ALL: [&str; 4] = [LEADS, CALLS, AGENT, STATUS];
}

/// Durable pull consumers; replicas of a role share one and split its messages.
pub mod consumer {
    pub const CALLER: &str = "caller";
    pub const FINALIZER: &str = "finalizer";
    pub const SMS: &str = "sms";
    pub const FOLLOWUP: &str = "followup";
    pub const ACTIVITY: &str = "activity";
    pub const ALL: [&str; 5] = [CALLER, FINALIZER, SMS, FOLLOWUP, ACTIVITY];
}

/// JetStream key-value buckets.
pub mod bucket {
    pub const EMAILS_SEEN: &str = "emails_seen";
    pub const CALLS: &str = "calls";
    pub const AGENT: &str = "agent";
    pub const CONFIG: &str = "config";
    pub const DNC: &str = "dnc";
    pub const SMS: &str = "sms";
    pub const API_KEYS: &str = "api_keys";
    pub const USERS: &str = "users";
    pub const CREDENTIALS: &str = "credentials";
    pub const PHONES: &str = "phones";
    pub const IDEMPOTENCY: &str = "idempotency";
    pub const LEASES: &str = "leases";
    pub const WEBHOOKS_SEEN: &str = "webhooks_seen";
    pub const ALL: [&str; 13] = [
        EMAILS_SEEN,
        CALLS,
        AGENT,
        CONFIG,
        DNC,
        SMS,
        API_KEYS,
        USERS,
        CREDENTIALS,
        PHONES,
        IDEMPOTENCY,
        LEASES,
        WEBHOOKS_SEEN,
    ];
}

/// Header JetStream uses to drop a repeated publish within the stream's duplicate window.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url} (LEADQ_NATS_URL)")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("LEADQ_NATS_URL: {0}")]
    BadUrl(String),
    #[error("publishing to {subject}: {source}")]
    Publish {
        subject: &'static str,
        source: async_nats::jetstream::context::PublishError,
    },
    #[error("encoding a {subject} payload: {source}")]
    Encode {
        subject: &'static str,
        source: serde_json::Error,
    },
    #[error("JetStream {what}: {detail}")]
    JetStream { what: String, detail: String },
}

impl BusError {
    /// Whether the same request may succeed soon: NATS or a stream leader is away for now.
    pub fn is_transient(&self) -> bool {
        transient::is_transient(self)
    }

    pub(crate) fn jetstream(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::JetStream {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// Whether a compare-and-set write lost to another writer, and must re-read. async-nats maps only
/// JetStream's error 10071 to `WrongLastRevision`; a replicated (clustered) stream refuses the
/// same write with 10164, "wrong last sequence" without the number.
pub fn lost_race(err: &jetstream::kv::UpdateError) -> bool {
    if err.kind() == jetstream::kv::UpdateErrorKind::WrongLastRevision {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<jetstream::Error>() {
            return refusal.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
                || refusal.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE;
        }
        source = cause.source();
    }
    false
}

/// One connection to NATS and its JetStream context; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Bus {
    /// Connects once (no retry loop), so a wrong URL fails fast at start with the setting named.
    pub async fn connect(url: &str, name: &str) -> Result<Self, BusError> {
        let servers = crate::config::server_addrs(url).map_err(BusError::BadUrl)?;
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            // With several seeds, any that answers; a node lost later is left for another.
            .connect(servers)
            .await
            .map_err(|source| BusError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let js = jetstream::new(client.clone());
        Ok(Self { client, js })
    }

    /// Publishes a payload with its idempotency key and the current trace, and waits for the
    /// stream's ack: once this returns, the message is stored (or was a duplicate). A cluster's
    /// short absence (a leader election) is ridden out, not returned.
    pub async fn publish<P: Payload>(&self, payload: &P) -> Result<jetstream::publish::PublishAck, BusError> {
        let body = payload::encode(payload).map_err(|source| BusError::Encode {
            subject: P::SUBJECT,
            source,
        })?;
        let body = bytes::Bytes::from(body);
        let mut headers = HeaderMap::new();
        trace::inject(&mut headers);
        // Sent again with the same message id while the stream elects a leader: the duplicate
        // window makes a publish that did land count once.
        retrying(P::SUBJECT, || async {
            let publish = PublishMessage::build()
                .headers(headers.clone())
                .message_id(payload.msg_id())
                .payload(body.clone());
            self.js.send_publish(P::SUBJECT, publish).await?.await
        })
        .await
        .map_err(|source| BusError::Publish {
            subject: P::SUBJECT,
            source,
        })
    }

    /// Publishes a record of work already done (an activity entry, an alert): a failure is logged,
    /// not returned, since the work stands either way.
    pub async fn record<P: Payload>(&self, entry: &P) {
        if let Err(err) = self.publish(entry).await {
            tracing::warn!(%err, subject = P::SUBJECT, "not published");
        }
    }

    /// Whether the server answers JetStream API requests right now.
    pub async fn ping(&self) -> Result<(), BusError> {
        self.js
            .query_account()
            .await
            .map(|_| ())
            .map_err(|e| BusError::jetstream("account info", e))
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    use async_nats::jetstream::kv::UpdateError;

    use super::*;

    /// A kv update refused by the server with this JetStream error code, as async-nats reports it.
    fn refused_with(code: u64) -> UpdateError {
        let refusal: jetstream::Error = serde_json::from_value(serde_json::json!({
            "code": 400, "err_code": code, "description": "wrong last sequence"
        }))
        .expect("a JetStream error body");
        PublishError::with_source(PublishErrorKind::Other, refusal).into()
    }

    #[test]
    fn a_clustered_streams_wrong_last_sequence_is_a_lost_race_too() {
        assert!(lost_race(&refused_with(10164)), "R3: 10164");
        assert!(lost_race(&refused_with(10071)));
        assert!(!lost_race(&refused_with(10077)), "another refusal is an error");
    }
}
