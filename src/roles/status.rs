//! `agent.status`: every process says who it is and what state the agent is in, every
//! `status_interval` and at once when the state changes. The STATUS stream keeps the last message,
//! so a CMO agent that subscribes late reads the current state at once.

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::kv::run_state::AgentStateStore;
use crate::bus::{AGENT_ID, AgentStatus, Bus, BusError, StatusMetrics};
use crate::store::{Period, Store};

/// What the heartbeat is given by the composition root: who this process is.
#[derive(Clone, Debug)]
pub struct Deps {
    pub bus: Bus,
    pub instance: String,
    pub roles: Vec<String>,
    pub every: std::time::Duration,
    pub started: std::time::Instant,
    /// Where today's figures come from, in a process that has the store.
    pub figures: Option<(Store, jiff::tz::TimeZone)>,
}

/// Today's figures, when this process can read them; a slow or failing store leaves them out
/// rather than holding the heartbeat back.
async fn metrics(figures: Option<&(Store, jiff::tz::TimeZone)>) -> Option<StatusMetrics> {
    let (store, zone) = figures?;
    let since = Period::Today.start(OffsetDateTime::now_utc(), zone);
    match tokio::time::timeout(std::time::Duration::from_secs(2), store.figures(since)).await {
        Ok(Ok(today)) => Some(today.as_status_metrics()),
        Ok(Err(err)) => {
            tracing::debug!(%err, "agent.status without today's figures");
            None
        }
        Err(_) => None,
    }
}

pub async fn run(deps: Deps, shutdown: CancellationToken) -> Result<(), BusError> {
    let mut state = AgentStateStore::open(&deps.bus.js).await?.watch().await?;
    let mut tick = tokio::time::interval(deps.every);
    let mut today = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                // Refreshed on the tick only: a state change goes out at once, with the last figures.
                today = metrics(deps.figures.as_ref()).await;
            }
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
            roles: deps.roles.clone(),
            instance: deps.instance.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: deps.started.elapsed().as_secs(),
            at: OffsetDateTime::now_utc(),
            metrics: today.clone(),
        };
        deps.bus.record(&status).await;
    }
    Ok(())
}
