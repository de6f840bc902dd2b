//! The `config` bucket, kept in step with the store by the api role: workers in other processes
//! read the call script and the qualification rules (and, later, encrypted credentials) from NATS,
//! never from the api's embedded database.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::BusError;
use crate::domain::qualification::Rules;
use crate::domain::script::Script;
use crate::runtime::Context;
use crate::store::{Store, StoreError};

/// Keys in the `config` bucket, and of the settings in the store.
pub const SCRIPT_KEY: &str = "script";
pub const RULES_KEY: &str = "rules";

#[derive(Debug, thiserror::Error)]
pub enum SharedConfigError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Publishes the saved script and rules (saving the defaults on a first start) to the bucket.
pub async fn publish(ctx: &Context, store: &Store) -> Result<(), SharedConfigError> {
    publish_one::<Script>(ctx, store, SCRIPT_KEY).await?;
    publish_one::<Rules>(ctx, store, RULES_KEY).await?;
    Ok(())
}

async fn publish_one<T>(ctx: &Context, store: &Store, key: &str) -> Result<T, SharedConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let value = match store.setting::<T>(key).await? {
        Some(value) => value,
        None => {
            let value = T::default();
            store.save_setting(key, &value, "leadq (default)").await?;
            value
        }
    };
    put(ctx, key, &value).await?;
    Ok(value)
}

async fn put<T: Serialize>(ctx: &Context, key: &str, value: &T) -> Result<(), BusError> {
    let body = serde_json::to_vec(value).map_err(|e| BusError::jetstream(format!("{key} encode"), e))?;
    ctx.config
        .put(key, body.into())
        .await
        .map_err(|e| BusError::jetstream("config put", e))?;
    Ok(())
}

/// Saves an admin's script and rules to the store, then to the bucket the workers read; the next
/// call uses them.
pub async fn save(
    ctx: &Context,
    store: &Store,
    script: &Script,
    rules: &Rules,
    by: &str,
) -> Result<(), SharedConfigError> {
    store.save_setting(SCRIPT_KEY, script, by).await?;
    store.save_setting(RULES_KEY, rules, by).await?;
    put(ctx, SCRIPT_KEY, script).await?;
    put(ctx, RULES_KEY, rules).await?;
    Ok(())
}

/// The value in the bucket, or the default when none was published (or it is unreadable).
async fn current<T: Default + DeserializeOwned>(ctx: &Context, key: &str) -> T {
    let stored = ctx.config.get(key).await.unwrap_or_else(|err| {
        tracing::warn!(%err, key, "config bucket unreadable; using the default");
        None
    });
    stored
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

pub async fn current_script(ctx: &Context) -> Script {
    current(ctx, SCRIPT_KEY).await
}

pub async fn current_rules(ctx: &Context) -> Rules {
    current(ctx, RULES_KEY).await
}
