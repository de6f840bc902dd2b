//! Webhook deliveries already received, in the `webhooks_seen` bucket: a signed delivery sent
//! again (a replay) is refused, whoever sends it. The key is the SHA-256 of the delivery's
//! signature; the bucket forgets a key after a while longer than the signature's tolerance,
//! after which the signature is refused as stale anyway.

use std::time::Duration;

use async_nats::jetstream::kv;

use crate::bus::{self, BusError};

/// How long a delivery is remembered: longer than any signature tolerance leadq accepts (1 h).
pub const REMEMBERED: Duration = Duration::from_secs(2 * 3600);

#[derive(Clone, Debug)]
pub struct SeenOnce {
    kv: kv::Store,
}

impl SeenOnce {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        let kv = js
            .get_key_value(bus::bucket::WEBHOOKS_SEEN)
            .await
            .map_err(|e| BusError::jetstream("bucket webhooks_seen", e))?;
        Ok(Self { kv })
    }

    /// Marks `key` received; false when it already was.
    pub async fn first_time(&self, key: &str) -> Result<bool, BusError> {
        match self.kv.create(key, bytes::Bytes::from_static(b"1")).await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(BusError::jetstream("webhooks_seen create", err)),
        }
    }

    /// Forgets `key`, so a delivery whose handling failed can be sent again and handled.
    pub async fn forget(&self, key: &str) -> Result<(), BusError> {
        self.kv
            .purge(key)
            .await
            .map_err(|e| BusError::jetstream("webhooks_seen purge", e))
    }
}
