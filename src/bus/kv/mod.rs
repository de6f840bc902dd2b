//! A KV bucket of JSON records of one type: the small repository the API keys, users and
//! credentials share, so each says only what is particular to it.

pub mod calls;
pub mod followups;
pub mod lease;
pub mod run_state;
pub mod seen;

use std::marker::PhantomData;

use async_nats::jetstream::kv;
use futures::TryStreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::BusError;

#[derive(Debug)]
pub struct JsonKv<T> {
    kv: kv::Store,
    /// What the records are, for error messages.
    what: &'static str,
    records: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonKv<T> {
    fn clone(&self) -> Self {
        Self {
            kv: self.kv.clone(),
            what: self.what,
            records: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> JsonKv<T> {
    pub async fn open(
        js: &async_nats::jetstream::Context,
        bucket: &'static str,
        what: &'static str,
    ) -> Result<Self, BusError> {
        let kv = js
            .get_key_value(bucket)
            .await
            .map_err(|e| BusError::jetstream(format!("bucket {bucket}"), e))?;
        Ok(Self {
            kv,
            what,
            records: PhantomData,
        })
    }

    fn encode(&self, record: &T) -> Result<bytes::Bytes, BusError> {
        serde_json::to_vec(record)
            .map(Into::into)
            .map_err(|e| BusError::jetstream(format!("{} encode", self.what), e))
    }

    /// The record under `key`; an unreadable record counts as absent (and is logged).
    pub async fn get(&self, key: &str) -> Result<Option<T>, BusError> {
        let value = super::retrying(self.what, || self.kv.get(key))
            .await
            .map_err(|e| BusError::jetstream(format!("{} get", self.what), e))?;
        Ok(value.and_then(|bytes| {
            serde_json::from_slice(&bytes)
                .inspect_err(|err| tracing::warn!(what = self.what, key, %err, "unreadable record skipped"))
                .ok()
        }))
    }

    pub async fn put(&self, key: &str, record: &T) -> Result<(), BusError> {
        let body = self.encode(record)?;
        super::retrying(self.what, || self.kv.put(key, body.clone()))
            .await
            .map_err(|e| BusError::jetstream(format!("{} put", self.what), e))?;
        Ok(())
    }

    /// Writes only when `key` holds nothing yet; false when it does.
    pub async fn create(&self, key: &str, record: &T) -> Result<bool, BusError> {
        let body = self.encode(record)?;
        match super::retrying(self.what, || self.kv.create(key, body.clone())).await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(BusError::jetstream(format!("{} create", self.what), err)),
        }
    }

    /// Removes the record and its history.
    pub async fn purge(&self, key: &str) -> Result<(), BusError> {
        self.kv
            .purge(key)
            .await
            .map_err(|e| BusError::jetstream(format!("{} purge", self.what), e))
    }

    /// Changes to `key` from now on.
    pub async fn watch(&self, key: &str) -> Result<kv::Watch, BusError> {
        self.kv
            .watch(key)
            .await
            .map_err(|e| BusError::jetstream(format!("{} watch", self.what), e))
    }

    pub async fn keys(&self) -> Result<Vec<String>, BusError> {
        let what = format!("{} list", self.what);
        match self.kv.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(|e| BusError::jetstream(what, e)),
            Err(err) => Err(BusError::jetstream(what, err)),
        }
    }

    pub async fn values(&self) -> Result<Vec<(String, T)>, BusError> {
        let mut records = Vec::new();
        for key in self.keys().await? {
            if let Some(record) = self.get(&key).await? {
                records.push((key, record));
            }
        }
        Ok(records)
    }
}
