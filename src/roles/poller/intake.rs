//! From a parsed email to `lead.received`, exactly once. The email's identity (its Message-ID, or
//! a hash of its bytes when it has none) fixes the lead id, so every retry publishes the same
//! `Nats-Msg-Id`; the `emails_seen` bucket remembers, for a week, which emails were published.
//!
//! Order: `create` the key as `pending` (the dedupe test), publish and await the stream's ack, mark
//! the key `published`; only then may the caller set `\Seen`. A crash at any point leaves the email
//! unseen, and the retry either republishes (deduplicated by the stream) or finds it published.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::{self, Bus, BusError, IntakeTimestamps, LeadReceived, LeadSource};
use crate::domain::Lead;

/// Namespace of the lead ids derived from email identities (UUID v5).
const LEAD_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6164_712d_4000_8000_656d_6169_6c73);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenState {
    Pending,
    Published,
    Invalid,
}

#[derive(Debug, Serialize, Deserialize)]
struct SeenEntry {
    state: SeenState,
    lead_id: Uuid,
}

/// What became of one email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Published(Uuid),
    /// Published before (a second copy, or a retry after a crash); nothing sent again.
    AlreadyPublished(Uuid),
}

/// The stable identity of an email: its Message-ID, or its bytes when it has none.
pub fn email_identity(message_id: Option<&str>, raw: &[u8]) -> Uuid {
    match message_id {
        Some(id) if !id.is_empty() => Uuid::new_v5(&LEAD_ID_NAMESPACE, id.as_bytes()),
        _ => Uuid::new_v5(&LEAD_ID_NAMESPACE, raw),
    }
}

fn kv_error(what: &str, err: impl std::fmt::Display) -> BusError {
    BusError::jetstream(format!("emails_seen {what}"), err)
}

async fn state_of(seen: &kv::Store, key: &str) -> Result<Option<SeenEntry>, BusError> {
    let value = bus::retrying("emails_seen get", || seen.get(key))
        .await
        .map_err(|e| kv_error("get", e))?;
    Ok(value.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

async fn mark(seen: &kv::Store, key: &str, state: SeenState, lead_id: Uuid) -> Result<(), BusError> {
    let body = serde_json::to_vec(&SeenEntry { state, lead_id }).map_err(|e| kv_error("encode", e))?;
    let body = bytes::Bytes::from(body);
    bus::retrying("emails_seen put", || seen.put(key, body.clone()))
        .await
        .map_err(|e| kv_error("put", e))?;
    Ok(())
}

/// Publishes `lead` once per email identity; returns when it is on the stream (or was before).
pub async fn deliver(
    bus: &Bus,
    seen: &kv::Store,
    identity: Uuid,
    lead: Lead,
    inbox_at: Option<OffsetDateTime>,
    seen_at: OffsetDateTime,
) -> Result<Delivered, BusError> {
    let key = identity.simple().to_string();
    let lead_id = identity;
    match state_of(seen, &key).await? {
        Some(SeenEntry {
            state: SeenState::Published,
            lead_id,
        }) => return Ok(Delivered::AlreadyPublished(lead_id)),
        Some(_) => {}
        None => {
            let body = serde_json::to_vec(&SeenEntry {
                state: SeenState::Pending,
                lead_id,
            })
            .map_err(|e| kv_error("encode", e))?;
            // Losing this race to another poller is fine: the stream drops its duplicate publish.
            let body = bytes::Bytes::from(body);
            if let Err(err) = bus::retrying("emails_seen create", || seen.create(&key, body.clone())).await
                && err.kind() != kv::CreateErrorKind::AlreadyExists
            {
                return Err(kv_error("create", err));
            }
        }
    }
    let timestamps = IntakeTimestamps {
        inbox_at,
        seen_at,
        published_at: OffsetDateTime::now_utc(),
    };
    let message = LeadReceived::new(lead_id, LeadSource::Email, lead, timestamps);
    let ack = bus.publish(&message).await?;
    mark(seen, &key, SeenState::Published, lead_id).await?;
    Ok(if ack.duplicate {
        Delivered::AlreadyPublished(lead_id)
    } else {
        Delivered::Published(lead_id)
    })
}

/// Records that an email was an invalid lead; `true` the first time, so it is reported once.
pub async fn remember_invalid(seen: &kv::Store, identity: Uuid) -> Result<bool, BusError> {
    let key = identity.simple().to_string();
    let body = serde_json::to_vec(&SeenEntry {
        state: SeenState::Invalid,
        lead_id: identity,
    })
    .map_err(|e| kv_error("encode", e))?;
    let body = bytes::Bytes::from(body);
    match bus::retrying("emails_seen create", || seen.create(&key, body.clone())).await {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(kv_error("create", err)),
    }
}
