//! `Idempotency-Key` on the POSTs that queue a lead (trigger-lead, the test email): a client that
//! retries after a dropped connection gets the first answer back and queues nothing new. The
//! lead id is derived from the caller and the key, so even a retry that races the first request,
//! or follows a crash between queueing and remembering the answer, publishes the same lead (the
//! stream drops the repeat) and never makes a second call.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::CmoError;
use crate::security::secrets::sha256_hex;

pub const HEADER: &str = "idempotency-key";

/// One remembered request: what it asked, and its answer once there is one.
#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    request_sha256: String,
    answer: Option<Value>,
}

/// A key given by a client, checked.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The bucket key: SHA-256 of who asked and their key (hex), so clients cannot collide.
    slot: String,
}

impl IdempotencyKey {
    /// A key as the client sent it (the `Idempotency-Key` header); one that is empty, over 255
    /// characters or not printable ASCII is refused.
    pub fn new(key: &str, actor: &str) -> Result<Self, CmoError> {
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(CmoError::BadRequest(
                "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
            ));
        }
        Ok(Self {
            slot: sha256_hex(format!("{actor}\u{0}{key}").as_bytes()),
        })
    }

    /// The lead id every request with this key queues.
    pub fn lead_id(&self) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, self.slot.as_bytes())
    }
}

/// Runs `work` once per key: a repeat with the same body gets the remembered answer, one with
/// another body is refused (422), and without a key `work` simply runs.
pub async fn once<F, Fut, E>(
    bucket: &kv::Store,
    key: Option<&IdempotencyKey>,
    request: &[u8],
    work: F,
) -> Result<Value, E>
where
    F: FnOnce(Option<Uuid>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, E>>,
    E: From<CmoError>,
{
    let Some(key) = key else {
        return work(None).await;
    };
    let request_sha256 = sha256_hex(request);
    let unavailable = |e: &dyn std::fmt::Display| CmoError::Unavailable(format!("idempotency keys: {e}"));
    if let Some(entry) = bucket.get(&key.slot).await.map_err(|e| unavailable(&e))?
        && let Ok(remembered) = serde_json::from_slice::<Remembered>(&entry)
    {
        if remembered.request_sha256 != request_sha256 {
            return Err(CmoError::KeyReused.into());
        }
        if let Some(answer) = remembered.answer {
            tracing::info!("repeated request answered from its Idempotency-Key");
            return Ok(answer);
        }
    }
    // No answer yet (first try, a racing retry, or one after a crash): the work is idempotent
    // through the derived lead id, so doing it again is safe.
    let answer = work(Some(key.lead_id())).await?;
    let remembered = Remembered {
        request_sha256,
        answer: Some(answer.clone()),
    };
    let body = serde_json::to_vec(&remembered).map_err(|e| unavailable(&e))?;
    if let Err(err) = bucket.put(&key.slot, body.into()).await {
        // The lead is queued; a retry would queue the same lead id again and be dropped.
        tracing::warn!(%err, "answer to an Idempotency-Key not remembered");
    }
    Ok(answer)
}
