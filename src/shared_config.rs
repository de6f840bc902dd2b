//! The `config` bucket, kept in step with the store by the api role: workers in other processes
//! read the call script (and, later, rules and encrypted credentials) from NATS, never from the
//! api's embedded database.

use crate::bus::{self, BusError};
use crate::domain::script::Script;
use crate::runtime::Context;
use crate::store::{Store, StoreError};

/// The key of the call script in the `config` bucket.
pub const SCRIPT_KEY: &str = "script";

#[derive(Debug, thiserror::Error)]
pub enum SharedConfigError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Publishes the saved script (saving the default on a first start) to the `config` bucket.
pub async fn publish_script(ctx: &Context, store: &Store) -> Result<Script, SharedConfigError> {
    let script = match store.script().await? {
        Some(script) => script,
        None => {
            let script = Script::default();
            store.save_script(&script, "leadq (default)").await?;
            script
        }
    };
    let config = ctx
        .bus
        .js
        .get_key_value(bus::bucket::CONFIG)
        .await
        .map_err(|e| BusError::jetstream("bucket config", e))?;
    let body = serde_json::to_vec(&script).map_err(|e| BusError::jetstream("script encode", e))?;
    config
        .put(SCRIPT_KEY, body.into())
        .await
        .map_err(|e| BusError::jetstream("config put", e))?;
    Ok(script)
}
