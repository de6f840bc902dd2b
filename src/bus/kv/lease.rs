//! Leases in the `leases` bucket, for work that one process of the cluster does at a time: the
//! CRM sync, whose Airtable limit (5 requests a second) is per base, so two finalizers syncing
//! at once draw 429s and 30 s pauses, and both send the same batch. A lease is an entry created
//! only where there is none and renewed by compare-and-set; the bucket's max age lets the lease
//! of a holder that died lapse.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bus::{self, BusError};

/// How long a lease outlives its last renewal: the `leases` bucket's max age, so the work of a
/// holder that died resumes elsewhere within this.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// A holder renews this often, well inside the TTL even when a renewal is slow.
const RENEW_EVERY: Duration = Duration::from_secs(3);

/// The CRM sync's lease.
pub const CRM_SYNC: &str = "crm-sync";

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    holder: String,
}

/// The leases of one process, which signs every lease it takes with its own id.
#[derive(Clone, Debug)]
pub struct Leases {
    kv: kv::Store,
    holder: String,
}

impl Leases {
    pub async fn open(js: &async_nats::jetstream::Context, holder: impl Into<String>) -> Result<Self, BusError> {
        let kv = js
            .get_key_value(bus::bucket::LEASES)
            .await
            .map_err(|e| BusError::jetstream("bucket leases", e))?;
        Ok(Self {
            kv,
            holder: holder.into(),
        })
    }

    /// Takes the lease `name` when nobody holds it; `None` while another holder's lease lives.
    pub async fn try_take(&self, name: &str) -> Result<Option<Held>, BusError> {
        let body = serde_json::to_vec(&Holder {
            holder: self.holder.clone(),
        })
        .map_err(|e| BusError::jetstream("lease encode", e))?;
        match self.kv.create(name, body.clone().into()).await {
            Ok(revision) => Ok(Some(Held {
                kv: self.kv.clone(),
                name: name.to_owned(),
                body: body.into(),
                revision,
            })),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(err) => Err(BusError::jetstream(format!("lease {name}"), err)),
        }
    }

    /// Who holds the lease `name` now, if anyone.
    pub async fn holder(&self, name: &str) -> Result<Option<String>, BusError> {
        let value = self
            .kv
            .get(name)
            .await
            .map_err(|e| BusError::jetstream(format!("lease {name}"), e))?;
        Ok(value
            .and_then(|v| serde_json::from_slice::<Holder>(&v).ok())
            .map(|h| h.holder))
    }
}

/// A lease this process holds.
#[derive(Debug)]
pub struct Held {
    kv: kv::Store,
    name: String,
    body: bytes::Bytes,
    revision: u64,
}

impl Held {
    /// Runs `work` while renewing the lease, then gives the lease up. `stop` is what `work`
    /// watches: it is cancelled when a renewal fails (the lease lapsed and may be another's, or
    /// NATS is away), so the work ends at its next step instead of running beside a new holder.
    pub async fn hold_while<F: Future>(mut self, stop: CancellationToken, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        let mut renewing = true;
        let output = loop {
            tokio::select! {
                output = &mut work => break output,
                () = tokio::time::sleep(RENEW_EVERY), if renewing => {
                    match self.kv.update(&self.name, self.body.clone(), self.revision).await {
                        Ok(revision) => self.revision = revision,
                        Err(err) => {
                            tracing::warn!(lease = %self.name, %err, "lease lost; its work stops at its next step");
                            renewing = false;
                            stop.cancel();
                        }
                    }
                }
            }
        };
        if renewing {
            // Given up so another process can take it at once; if this fails it lapses.
            if let Err(err) = self.kv.delete_expect_revision(&self.name, Some(self.revision)).await {
                tracing::debug!(lease = %self.name, %err, "lease not given up; it lapses");
            }
        }
        output
    }
}
