//! API keys for the CMO agent, kept in the `api_keys` bucket so every api replica sees a new or
//! revoked key at once and `leadq admin api-key` works beside a running agent. A key is
//! `lq_<id>_<secret>`: the id finds the record, and only a SHA-256 of the secret is stored (the
//! secret is 256 random bits, so a fast hash is enough; nothing can be guessed from it). The key
//! is shown once, at creation.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bus::{self, BusError, JsonKv};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// Empty: any address.
    #[serde(default)]
    pub allow: Vec<IpNet>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default)]
    pub revoked: bool,
    /// Requests per minute this key may make to each api process (REST and NATS together).
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
}

pub const DEFAULT_RATE_PER_MINUTE: u32 = 600;

fn default_rate() -> u32 {
    DEFAULT_RATE_PER_MINUTE
}

/// Why a key was refused: the HTTP edge maps these to 401 and 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    Valid(String),
    Unknown,
    Revoked,
    AddressNotAllowed,
    /// Over the key's rate; the wait until the next request is allowed.
    RateLimited(std::time::Duration),
}

fn digest(secret: &str) -> String {
    crate::security::secrets::sha256_hex(secret.as_bytes())
}

/// Each key's budget in this process, rebuilt when its rate changes.
type Budgets = std::collections::HashMap<String, (u32, governor::DefaultDirectRateLimiter)>;

#[derive(Clone, Debug)]
pub struct ApiKeys {
    kv: JsonKv<ApiKeyRecord>,
    budgets: std::sync::Arc<std::sync::Mutex<Budgets>>,
}

impl ApiKeys {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        Ok(Self {
            kv: JsonKv::open(js, bus::bucket::API_KEYS, "api key").await?,
            budgets: Default::default(),
        })
    }

    /// Creates a key; returns it (shown once) and its record.
    pub async fn create(
        &self,
        name: &str,
        allow: Vec<IpNet>,
        rate_per_minute: u32,
    ) -> Result<(String, ApiKeyRecord), BusError> {
        let id = format!("{:016x}", rand::random::<u64>());
        let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let record = ApiKeyRecord {
            id: id.clone(),
            name: name.to_owned(),
            secret_sha256: digest(&secret),
            allow,
            created_at: OffsetDateTime::now_utc(),
            revoked: false,
            rate_per_minute: rate_per_minute.max(1),
        };
        self.kv.put(&record.id, &record).await?;
        Ok((format!("lq_{id}_{secret}"), record))
    }

    async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, BusError> {
        self.kv.get(id).await
    }

    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>, BusError> {
        let mut records: Vec<_> = self.kv.values().await?.into_iter().map(|(_, r)| r).collect();
        records.sort_by_key(|r| r.created_at);
        Ok(records)
    }

    /// Revokes by id; false when there is no such key.
    pub async fn revoke(&self, id: &str) -> Result<bool, BusError> {
        let Some(mut record) = self.get(id).await? else {
            return Ok(false);
        };
        record.revoked = true;
        self.kv.put(id, &record).await?;
        Ok(true)
    }

    /// Checks a presented key from `address` (None: not over HTTP, no allowlist applies).
    pub async fn check(&self, presented: &str, address: Option<IpAddr>) -> Result<KeyCheck, BusError> {
        let Some((id, secret)) = presented.strip_prefix("lq_").and_then(|rest| rest.split_once('_')) else {
            return Ok(KeyCheck::Unknown);
        };
        let valid_id = id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit());
        let Some(record) = (if valid_id { self.get(id).await? } else { None }) else {
            return Ok(KeyCheck::Unknown);
        };
        let same = crate::security::secrets::same_digest(&record.secret_sha256, &digest(secret));
        Ok(if !same {
            KeyCheck::Unknown
        } else if record.revoked {
            KeyCheck::Revoked
        } else if let Some(address) = address
            && !record.allow.is_empty()
            && !record.allow.iter().any(|net| net.contains(&address))
        {
            KeyCheck::AddressNotAllowed
        } else if let Err(wait) = self.spend(&record) {
            KeyCheck::RateLimited(wait)
        } else {
            KeyCheck::Valid(record.name)
        })
    }

    /// Takes one request from the key's budget, or says how long until there is one.
    fn spend(&self, record: &ApiKeyRecord) -> Result<(), std::time::Duration> {
        use governor::clock::{Clock, DefaultClock};
        let rate = std::num::NonZeroU32::new(record.rate_per_minute).unwrap_or(std::num::NonZeroU32::MIN);
        let mut budgets = self.budgets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let budget = budgets
            .entry(record.id.clone())
            .and_modify(|budget| {
                if budget.0 != rate.get() {
                    *budget = (
                        rate.get(),
                        governor::RateLimiter::direct(governor::Quota::per_minute(rate)),
                    );
                }
            })
            .or_insert_with(|| {
                (
                    rate.get(),
                    governor::RateLimiter::direct(governor::Quota::per_minute(rate)),
                )
            });
        budget
            .1
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}
