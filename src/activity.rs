//! The activity log writer: `agent.activity` from every role, into the store's `activity` table.
//! Runs in the api role, the one process that owns the store.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{self, Activity, Bus, BusError, Outcome};
use crate::store::Store;

/// Stores one entry; the upsert on the entry's id makes a redelivery harmless.
pub async fn handle(store: &Store, entry: &Activity) -> Outcome {
    match store.record_activity(entry).await {
        Ok(()) => Outcome::Done,
        Err(err) => Outcome::Retry {
            after: Duration::from_secs(2),
            reason: err.to_string(),
        },
    }
}

/// What the activity writer is given by the composition root.
#[derive(Clone, Debug)]
pub struct Deps {
    pub bus: Bus,
    pub store: Store,
    pub lanes: bus::Lanes,
}

pub async fn run(deps: Deps, shutdown: CancellationToken) -> Result<(), BusError> {
    bus::consume(
        &deps.bus,
        bus::stream::AGENT,
        bus::consumer::ACTIVITY,
        None,
        deps.lanes,
        |d| {
            let store = deps.store.clone();
            async move { handle(&store, &d.payload).await }
        },
        shutdown,
    )
    .await
}
