//! `agent.status`: every process says who it is and what state the agent is in, every
//! `status_interval` and at once when the state changes. The STATUS stream keeps the last message,
//! so a CMO agent that subscribes late reads the current state at once.

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::agent::AgentStateStore;
use crate::bus::{AgentStatus, BusError};
use crate::http::AGENT_ID;
use crate::runtime::Context;

pub async fn run(ctx: Context, roles: Vec<String>, shutdown: CancellationToken) -> Result<(), BusError> {
    let mut state = AgentStateStore::open(&ctx.bus.js).await?.watch().await?;
    let mut tick = tokio::time::interval(ctx.settings.status_interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        let now = *state.borrow();
        let status = AgentStatus {
            agent_id: AGENT_ID.into(),
            state: now.as_status().into(),
            roles: roles.clone(),
            instance: ctx.settings.instance.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: ctx.started.elapsed().as_secs(),
            at: OffsetDateTime::now_utc(),
        };
        ctx.bus.record(&status).await;
    }
    Ok(())
}
