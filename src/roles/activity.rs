//! The activity log writer: `agent.activity` from every role, into the store's `activity` table.
//! Runs in the api role, the one process that owns the store.
//!
//! Every role reports each step, about ten entries a lead, so the writer commits in groups: each
//! lane hands its entry to one batching task, which writes whatever the lanes hold in one query
//! while the next group gathers, and answers each lane with the group's result (acked only once
//! written, as before).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Activity, Bus, BusError, Outcome};
use crate::store::Store;

/// What one group write answers each of its entries: `Err` carries the store's reason.
type Written = Result<(), String>;

/// What the activity writer is given by the composition root.
#[derive(Clone, Debug)]
pub struct Deps {
    pub bus: Bus,
    pub store: Store,
    pub lanes: bus::Lanes,
}

/// Hands entries to the batching task; cheap to clone into every lane.
#[derive(Clone, Debug)]
struct Writer {
    entries: mpsc::Sender<(Activity, oneshot::Sender<Written>)>,
}

impl Writer {
    /// Starts the batching task, which writes at most `group` entries per query.
    fn start(store: Store, group: usize) -> Self {
        let (entries, mut waiting) = mpsc::channel::<(Activity, oneshot::Sender<Written>)>(group);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(group);
            while waiting.recv_many(&mut batch, group).await > 0 {
                let (group, answers): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let written = store.record_activities(&group).await.map_err(|err| err.to_string());
                tracing::debug!(entries = group.len(), ok = written.is_ok(), "activity group written");
                for answer in answers {
                    // A lane that stopped waiting (shutdown) leaves its entry unacked: redelivered.
                    let _ = answer.send(written.clone());
                }
            }
        });
        Self { entries }
    }

    /// Stores one entry with whichever others are waiting; the upsert on the entry's id makes a
    /// redelivery harmless.
    async fn handle(&self, entry: Activity) -> Outcome {
        let (answer, written) = oneshot::channel();
        let result = match self.entries.send((entry, answer)).await {
            Ok(()) => written
                .await
                .unwrap_or_else(|_| Err("the activity writer stopped".into())),
            Err(_) => Err("the activity writer stopped".into()),
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(reason) => Outcome::Retry {
                after: Duration::from_secs(2),
                reason,
            },
        }
    }
}

pub async fn run(deps: Deps, shutdown: CancellationToken) -> Result<(), BusError> {
    let writer = Writer::start(deps.store.clone(), deps.lanes.concurrency.max(1));
    bus::consume(
        &deps.bus,
        bus::stream::AGENT,
        bus::consumer::ACTIVITY,
        None,
        deps.lanes,
        |d| {
            let writer = writer.clone();
            async move { writer.handle(d.payload).await }
        },
        shutdown,
    )
    .await
}
