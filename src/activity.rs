//! The activity log writer: `agent.activity` from every role, into the store's `activity` table.
//! Runs in the api role, the one process that owns the store.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{self, Activity, BusError, Outcome};
use crate::runtime::Context;
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

pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), BusError> {
    let Some(store) = ctx.store.clone() else {
        return Ok(());
    };
    bus::consume(
        &ctx.bus,
        bus::stream::AGENT,
        bus::consumer::ACTIVITY,
        None,
        bus::Lanes::new(ctx.settings.concurrency.activity, ctx.settings.bus.max_handling),
        |d| {
            let store = store.clone();
            async move { handle(&store, &d.payload).await }
        },
        shutdown,
    )
    .await
}
