//! The `config` bucket, kept in step with the store by the api role: workers in other processes
//! read the call script and the qualification rules (and, later, encrypted credentials) from NATS,
//! never from the api's embedded database.

use async_nats::jetstream::kv;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::{BusError, bucket};
use crate::domain::experiment::Experiment;
use crate::domain::language::Language;
use crate::domain::qualification::Rules;
use crate::domain::roster::Roster;
use crate::domain::script::Script;
use crate::store::{Store, StoreError};

/// Keys in the `config` bucket, and of the settings in the store.
pub const SCRIPT_KEY: &str = "script";
/// The script of Spanish calls.
pub const SCRIPT_ES_KEY: &str = "script_es";
pub const RULES_KEY: &str = "rules";
pub const ROSTER_KEY: &str = "roster";
pub const EXPERIMENT_KEY: &str = "experiment";

#[derive(Debug, thiserror::Error)]
pub enum SharedConfigError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The `config` bucket: the script and rules every process reads, and the api's own keys.
#[derive(Clone, Debug)]
pub struct SharedConfig {
    bucket: kv::Store,
}

impl SharedConfig {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        let bucket = js
            .get_key_value(bucket::CONFIG)
            .await
            .map_err(|e| BusError::jetstream("bucket config", e))?;
        Ok(Self { bucket })
    }

    /// The bucket itself, for the api's other keys in it (the Unbounce webhook token).
    pub fn bucket(&self) -> &kv::Store {
        &self.bucket
    }

    /// Publishes the saved script, rules and roster to the bucket, saving on a first start the
    /// defaults and the roster the settings give (`first_roster`).
    pub async fn publish(&self, store: &Store, first_roster: &Roster) -> Result<(), SharedConfigError> {
        self.publish_one(store, SCRIPT_KEY, Script::default).await?;
        self.publish_one(store, SCRIPT_ES_KEY, Script::spanish).await?;
        self.publish_one(store, RULES_KEY, Rules::default).await?;
        self.publish_one(store, ROSTER_KEY, || first_roster.clone()).await?;
        self.publish_one(store, EXPERIMENT_KEY, Experiment::default).await?;
        Ok(())
    }

    async fn publish_one<T>(&self, store: &Store, key: &str, first: impl FnOnce() -> T) -> Result<T, SharedConfigError>
    where
        T: Serialize + DeserializeOwned,
    {
        let value = match store.setting::<T>(key).await? {
            Some(value) => value,
            None => {
                let value = first();
                store.save_setting(key, &value, "leadq (default)").await?;
                value
            }
        };
        self.put(key, &value).await?;
        Ok(value)
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), BusError> {
        let body = serde_json::to_vec(value).map_err(|e| BusError::jetstream(format!("{key} encode"), e))?;
        self.bucket
            .put(key, body.into())
            .await
            .map_err(|e| BusError::jetstream("config put", e))?;
        Ok(())
    }

    /// Saves an admin's script and rules to the store, then to the bucket the workers read; the
    /// next call uses them.
    pub async fn save(&self, store: &Store, script: &Script, rules: &Rules, by: &str) -> Result<(), SharedConfigError> {
        store.save_setting(SCRIPT_KEY, script, by).await?;
        store.save_setting(RULES_KEY, rules, by).await?;
        self.put(SCRIPT_KEY, script).await?;
        self.put(RULES_KEY, rules).await?;
        Ok(())
    }

    /// The value in the bucket, or the default when none was published (or it is unreadable).
    async fn current<T: Default + DeserializeOwned>(&self, key: &str) -> T {
        self.current_or(key, T::default).await
    }

    async fn current_or<T: DeserializeOwned>(&self, key: &str, fallback: impl FnOnce() -> T) -> T {
        let stored = self.bucket.get(key).await.unwrap_or_else(|err| {
            tracing::warn!(%err, key, "config bucket unreadable; using the default");
            None
        });
        stored
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(fallback)
    }

    pub async fn script(&self) -> Script {
        self.current(SCRIPT_KEY).await
    }

    pub async fn rules(&self) -> Rules {
        self.current(RULES_KEY).await
    }

    /// The A/B test of the script, if one runs.
    pub async fn experiment(&self) -> Experiment {
        self.current(EXPERIMENT_KEY).await
    }

    /// The script of Spanish calls.
    pub async fn spanish_script(&self) -> Script {
        self.current_or(SCRIPT_ES_KEY, Script::spanish).await
    }

    /// Saves an admin's Spanish script.
    pub async fn save_spanish_script(&self, store: &Store, script: &Script, by: &str) -> Result<(), SharedConfigError> {
        store.save_setting(SCRIPT_ES_KEY, script, by).await?;
        self.put(SCRIPT_ES_KEY, script).await?;
        Ok(())
    }

    /// The script a call is made with: in Spanish for a Spanish call, else the A/B test's variant
    /// `b` while it has one, else the script.
    pub async fn script_for(&self, variant: Option<&str>, language: Language) -> Script {
        if language == Language::Es {
            return self.spanish_script().await;
        }
        if variant == Some("b")
            && let Some(script) = self.experiment().await.variant_b
        {
            return script;
        }
        self.script().await
    }

    pub async fn save_experiment(
        &self,
        store: &Store,
        experiment: &Experiment,
        by: &str,
    ) -> Result<(), SharedConfigError> {
        store.save_setting(EXPERIMENT_KEY, experiment, by).await?;
        self.put(EXPERIMENT_KEY, experiment).await?;
        Ok(())
    }

    /// The reps a qualified lead may be put through to.
    pub async fn roster(&self) -> Roster {
        self.current(ROSTER_KEY).await
    }

    /// Saves an admin's roster; the next offer uses it.
    pub async fn save_roster(&self, store: &Store, roster: &Roster, by: &str) -> Result<(), SharedConfigError> {
        store.save_setting(ROSTER_KEY, roster, by).await?;
        self.put(ROSTER_KEY, roster).await?;
        Ok(())
    }
}
