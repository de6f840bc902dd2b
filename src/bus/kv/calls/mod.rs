//! Call state in the `calls` bucket, one entry per lead, moved only by compare-and-set: two
//! webhook deliveries (or a webhook and the caller) racing on one call cannot both win, and the
//! loser re-reads and decides again. Also the do-not-contact list in the `dnc` bucket and the
//! phone claims.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::{self, BusError};

mod state;
mod transfer;
pub use state::{CallPhase, CallState, HeardAnswer, Hearing, Reask, Step, request_in_flight};
pub use transfer::{Transfer, TransferPhase};

fn kv_error(what: &str, err: impl std::fmt::Display) -> BusError {
    BusError::jetstream(format!("calls {what}"), err)
}

/// A compare-and-set loop can lose only to another writer of the same call (a few webhooks of one
/// call at once); with a short jittered pause between tries, this many always suffice.
const CAS_TRIES: usize = 32;

/// The pause after the `n`th lost race: the racers spread out instead of colliding again.
async fn after_lost_race(n: usize) {
    let most = 2 * (n as u64 + 1);
    tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(0..most))).await;
}

#[derive(Clone, Debug)]
pub struct CallBook {
    kv: kv::Store,
}

impl CallBook {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        let kv = js
            .get_key_value(bus::bucket::CALLS)
            .await
            .map_err(|e| kv_error("bucket", e))?;
        Ok(Self { kv })
    }

    fn key(lead_id: Uuid) -> String {
        lead_id.simple().to_string()
    }

    pub async fn get(&self, lead_id: Uuid) -> Result<Option<(CallState, u64)>, BusError> {
        let key = Self::key(lead_id);
        let Some(entry) = bus::retrying("calls get", || self.kv.entry(&key))
            .await
            .map_err(|e| kv_error("get", e))?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let state = serde_json::from_slice(&entry.value).map_err(|e| kv_error("decode", e))?;
        Ok(Some((state, entry.revision)))
    }

    /// Every lead with a call entry (a scan: for the watchdog, not for hot paths).
    pub async fn lead_ids(&self) -> Result<Vec<Uuid>, BusError> {
        use futures::TryStreamExt;
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(|e| kv_error("keys", e))?
            .try_collect()
            .await
            .map_err(|e| kv_error("keys", e))?;
        Ok(keys.iter().filter_map(|k| Uuid::parse_str(k).ok()).collect())
    }

    /// Calls being dialed or talking now, for the dashboard: one pass over the bucket's current
    /// entries on a single watch, not a read per call.
    pub async fn in_progress(&self) -> Result<Vec<CallState>, BusError> {
        use futures::StreamExt;
        // Fresh from the server (the bucket handle's own status is what it saw when opened).
        let mut stream = self.kv.stream.clone();
        let info = stream.info().await.map_err(|e| kv_error("status", e))?;
        let mut live = Vec::new();
        if info.state.messages == 0 {
            return Ok(live);
        }
        let mut entries = self
            .kv
            .watch_with_history(">")
            .await
            .map_err(|e| kv_error("snapshot", e))?;
        // Bounded: entries that expire between the count and the watch would never arrive.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while let Ok(Some(entry)) = tokio::time::timeout_at(deadline, entries.next()).await {
            let entry = entry.map_err(|e| kv_error("snapshot", e))?;
            if entry.operation == kv::Operation::Put
                && let Ok(state) = serde_json::from_slice::<CallState>(&entry.value)
                && matches!(state.phase, CallPhase::Dialing | CallPhase::Dialed)
            {
                live.push(state);
            }
            // The last entry that existed when the watch began: the snapshot is complete.
            if entry.delta == 0 {
                break;
            }
        }
        Ok(live)
    }

    /// Creates the entry if there is none; returns whether this call created it.
    pub async fn create(&self, state: &CallState) -> Result<bool, BusError> {
        let body = serde_json::to_vec(state).map_err(|e| kv_error("encode", e))?;
        let (key, body) = (Self::key(state.lead_id), bytes::Bytes::from(body));
        match bus::retrying("calls create", || self.kv.create(&key, body.clone())).await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(kv_error("create", err)),
        }
    }

    /// Applies `change` by compare-and-set, re-reading and re-deciding when another writer got
    /// there first. `change` returns its decision and whether the state changed; an unchanged state
    /// is not written. `None` when the lead has no call entry.
    pub async fn update<T>(
        &self,
        lead_id: Uuid,
        mut change: impl FnMut(&mut CallState) -> (T, bool),
    ) -> Result<Option<(CallState, T)>, BusError> {
        for n in 0..CAS_TRIES {
            if n > 0 {
                after_lost_race(n).await;
            }
            let Some((mut state, revision)) = self.get(lead_id).await? else {
                return Ok(None);
            };
            let (decision, changed) = change(&mut state);
            if !changed {
                return Ok(Some((state, decision)));
            }
            state.updated_at = OffsetDateTime::now_utc();
            let body = bytes::Bytes::from(serde_json::to_vec(&state).map_err(|e| kv_error("encode", e))?);
            let key = Self::key(lead_id);
            // A write that landed before its answer was lost reads as a lost race next time:
            // `change` then decides again on what is stored.
            match bus::retrying("calls update", || self.kv.update(&key, body.clone(), revision)).await {
                Ok(_) => return Ok(Some((state, decision))),
                Err(err) if bus::lost_race(&err) => continue,
                Err(err) => return Err(kv_error("update", err)),
            }
        }
        Err(kv_error(
            "update",
            format!("lead {lead_id}: too many concurrent writers"),
        ))
    }
}

/// The do-not-contact list: E.164 numbers that are never called or texted again.
#[derive(Clone, Debug)]
pub struct DoNotContact {
    kv: kv::Store,
}

impl DoNotContact {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        let kv = js
            .get_key_value(bus::bucket::DNC)
            .await
            .map_err(|e| BusError::jetstream("bucket dnc", e))?;
        Ok(Self { kv })
    }

    pub(crate) fn key(phone: &str) -> String {
        phone.chars().filter(char::is_ascii_digit).collect()
    }

    pub async fn add(&self, phone: &str, reason: &str) -> Result<(), BusError> {
        let body =
            serde_json::json!({ "phone": phone, "reason": reason, "at": OffsetDateTime::now_utc().unix_timestamp() });
        let (key, body) = (Self::key(phone), bytes::Bytes::from(body.to_string()));
        bus::retrying("dnc put", || self.kv.put(&key, body.clone()))
            .await
            .map_err(|e| BusError::jetstream("dnc put", e))?;
        Ok(())
    }

    /// START: the number may be contacted again.
    pub async fn remove(&self, phone: &str) -> Result<(), BusError> {
        self.kv
            .purge(Self::key(phone))
            .await
            .map_err(|e| BusError::jetstream("dnc purge", e))?;
        Ok(())
    }

    pub async fn contains(&self, phone: &str) -> Result<bool, BusError> {
        let key = Self::key(phone);
        let entry = bus::retrying("dnc get", || self.kv.get(&key))
            .await
            .map_err(|e| BusError::jetstream("dnc get", e))?;
        Ok(entry.is_some())
    }
}

/// Which lead a phone number belongs to, in the `phones` bucket: the decision "is this person
/// already being called?" made once, by create-if-absent, for every caller replica and restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PhoneOwner {
    lead_id: Uuid,
    /// Unix seconds of the claim: a claim older than the resubmit window is given up.
    at: i64,
}

/// The answer to "may this lead be called?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The number is this lead's (first claim, a redelivery, or the window had passed).
    Ours,
    /// The number belongs to an earlier lead inside the window: this is a resubmission.
    Taken { first: Uuid },
}

#[derive(Clone, Debug)]
pub struct PhoneClaims {
    kv: kv::Store,
}

impl PhoneClaims {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        let kv = js
            .get_key_value(bus::bucket::PHONES)
            .await
            .map_err(|e| BusError::jetstream("bucket phones", e))?;
        Ok(Self { kv })
    }

    /// Claims `phone` for `lead_id` unless another lead holds it and claimed it less than
    /// `window` ago; `force` takes it over all the same (an admin's deliberate test).
    pub async fn claim(
        &self,
        phone: &str,
        lead_id: Uuid,
        window: std::time::Duration,
        force: bool,
    ) -> Result<Claim, BusError> {
        let key = DoNotContact::key(phone);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let body = serde_json::to_vec(&PhoneOwner { lead_id, at: now })
            .map_err(|e| BusError::jetstream("phones encode", e))?;
        for n in 0..CAS_TRIES {
            if n > 0 {
                after_lost_race(n).await;
            }
            match bus::retrying("phones create", || self.kv.create(&key, body.clone().into())).await {
                Ok(_) => return Ok(Claim::Ours),
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(err) => return Err(BusError::jetstream("phones create", err)),
            }
            let Some(entry) = bus::retrying("phones get", || self.kv.entry(&key))
                .await
                .map_err(|e| BusError::jetstream("phones get", e))?
            else {
                continue; // Expired between the two calls: create again.
            };
            let owner: Option<PhoneOwner> = serde_json::from_slice(&entry.value).ok();
            let expired = owner
                .as_ref()
                .is_none_or(|o| now.saturating_sub(o.at) > window.as_secs() as i64);
            match owner {
                Some(owner) if owner.lead_id == lead_id => return Ok(Claim::Ours),
                Some(owner) if !expired && !force => return Ok(Claim::Taken { first: owner.lead_id }),
                _ => {}
            }
            match bus::retrying("phones update", || {
                self.kv.update(&key, body.clone().into(), entry.revision)
            })
            .await
            {
                Ok(_) => return Ok(Claim::Ours),
                Err(err) if bus::lost_race(&err) => continue,
                Err(err) => return Err(BusError::jetstream("phones update", err)),
            }
        }
        Err(BusError::jetstream(
            "phones",
            format!("{key}: too many concurrent claims"),
        ))
    }
}
