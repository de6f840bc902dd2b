//! The system of record: SurrealDB through the `any` engine, so one type serves the embedded file
//! store (`surrealkv://`), tests (`mem://`) and a SurrealDB server (`ws://`). The schema in
//! `schema.surql` is applied when the store is opened; every query binds its parameters and has a
//! deadline (`connection.rs`: a connection that stops answering is replaced).

use std::time::Duration;

use serde::Serialize;

mod activity;
mod bookings;
mod connection;
mod experiment;
mod leads;
mod reports;
mod settings;
pub mod shared_config;

pub use activity::{ActivityFilter, ActivityRow};
pub use bookings::{Booking, BookingEvent};
pub use leads::{FinalizedLead, LeadBooking, LeadRecord, LeadTimestamps, LeadTransfer};
pub use reports::{Figures, Period};

use connection::Connection;

use crate::config::{DbLocation, Settings};

const SCHEMA: &str = include_str!("schema.surql");
const NAMESPACE: &str = "leadq";
const DATABASE: &str = "leadq";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {endpoint} (LEADQ_DB): {source}")]
    Open {
        endpoint: String,
        source: Box<surrealdb::Error>,
    },
    /// Boxed: SurrealDB's error is large, and every result of the store carries this type.
    #[error("store query failed: {0}")]
    Query(Box<surrealdb::Error>),
    #[error("the store did not answer within {0:?}; reconnecting")]
    Unanswered(Duration),
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

impl StoreError {
    fn open(endpoint: &str, source: surrealdb::Error) -> Self {
        Self::Open {
            endpoint: endpoint.to_owned(),
            source: Box::new(source),
        }
    }
}

impl From<surrealdb::Error> for StoreError {
    fn from(err: surrealdb::Error) -> Self {
        Self::Query(Box::new(err))
    }
}

/// A handle on the store; clones share one connection.
#[derive(Clone, Debug)]
pub struct Store {
    conn: Connection,
    /// The last figures per period start, reused for a moment: status is asked often and cheaply.
    figures_cache: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Figures)>>>,
}

/// A page of results and how many there are in all.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
}

impl Store {
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        if let DbLocation::File(path) = &settings.db
            && let Some(parent) = path.parent()
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::DataDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let endpoint = settings.db.endpoint();
        let open_err = |source| StoreError::open(&endpoint, source);
        let conn = Connection::open(settings).await?;
        let db = conn.db();
        // Defining the schema runs deep in SurrealDB's executor: a task of its own starts it at the
        // bottom of a thread's stack, not on top of whatever is opening the store.
        // Processes starting together on one server define it at once, and all but one of them
        // meet a transaction conflict that SurrealDB says can be retried: so they retry.
        let started = tokio::time::Instant::now();
        let mut tries: u32 = 0;
        loop {
            let schema_db = db.clone();
            let defined = tokio::spawn(async move { schema_db.query(SCHEMA).await.and_then(|r| r.check()).map(drop) })
                .await
                .map_err(|e| open_err(surrealdb::Error::internal(format!("schema task: {e}"))))?;
            match defined {
                Ok(()) => break,
                Err(err) if started.elapsed() < connection::OPEN_RETRY_FOR && connection::retryable(&err) => {
                    tries += 1;
                    tracing::debug!(%err, tries, "schema definition conflicted with another process's; retrying");
                    connection::conflict_pause(tries).await;
                }
                Err(err) => return Err(open_err(err)),
            }
        }
        Ok(Self {
            conn,
            figures_cache: Default::default(),
        })
    }

    /// Whether the store answers a query within `deadline`; a probe that goes unanswered has the
    /// connection replaced, so a silent connection is noticed even while no other query runs.
    pub async fn ping(&self, deadline: Duration) -> Result<(), StoreError> {
        self.conn.run_within(deadline, self.conn.db().query("RETURN 1")).await?;
        Ok(())
    }
}
