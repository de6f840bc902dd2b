//! The agent's run state (running, paused, stopped) in the `agent` bucket. Every role in every
//! process watches it: paused or stopped workers stop pulling, and their messages wait in the
//! stream until the agent runs again.

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::watch;

use crate::bus::{self, BusError};
pub use crate::domain::agent_state::AgentState;

const STATE_KEY: &str = "state";

#[derive(Clone, Debug)]
pub struct AgentStateStore {
    kv: kv::Store,
}

impl AgentStateStore {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        let kv = js
            .get_key_value(bus::bucket::AGENT)
            .await
            .map_err(|e| BusError::jetstream("bucket agent", e))?;
        Ok(Self { kv })
    }

    /// The state now; an agent nobody paused is running.
    pub async fn get(&self) -> Result<AgentState, BusError> {
        let value = self
            .kv
            .get(STATE_KEY)
            .await
            .map_err(|e| BusError::jetstream("agent get", e))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default())
    }

    pub async fn set(&self, state: AgentState) -> Result<(), BusError> {
        let body = serde_json::to_vec(&state).map_err(|e| BusError::jetstream("agent encode", e))?;
        self.kv
            .put(STATE_KEY, body.into())
            .await
            .map_err(|e| BusError::jetstream("agent put", e))?;
        Ok(())
    }

    /// A receiver that always holds the current state; the watch ends when every receiver is gone.
    pub async fn watch(&self) -> Result<watch::Receiver<AgentState>, BusError> {
        let mut updates = self
            .kv
            .watch(STATE_KEY)
            .await
            .map_err(|e| BusError::jetstream("agent watch", e))?;
        let (sender, receiver) = watch::channel(self.get().await?);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = sender.closed() => break,
                    update = updates.next() => match update {
                        Some(Ok(entry)) => {
                            let state = match entry.operation {
                                kv::Operation::Put => serde_json::from_slice(&entry.value).unwrap_or_default(),
                                kv::Operation::Delete | kv::Operation::Purge => AgentState::Running,
                            };
                            tracing::info!(?state, "agent state");
                            sender.send_replace(state);
                        }
                        Some(Err(err)) => tracing::warn!(%err, "agent state watch interrupted"),
                        None => break,
                    },
                }
            }
        });
        Ok(receiver)
    }
}
