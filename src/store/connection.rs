//! The store's connection, and its repair. A query to a SurrealDB server can go unanswered for
//! good: seen in the fault suite, a process's one WebSocket connection stopped answering every
//! query (its `/readyz` store check timing out) while the server answered other processes, and
//! after a server restart the SDK's own reconnect did not always bring it back. So every query
//! has a deadline, and a query that misses it has the connection replaced by a new one (connect,
//! sign in, select the database) in the background; the query's caller gets an error and retries
//! as it would any store failure. The embedded store has nothing to reconnect to and keeps its
//! one handle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use surrealdb::Surreal;
use surrealdb::engine::any::Any;
use surrealdb::opt::auth::Root;

use super::{DATABASE, NAMESPACE, StoreError};
use crate::config::{DbLocation, Settings};

/// How often a query that met a transaction conflict is run again (about 2 s of pauses in all).
const CONFLICT_TRIES: u32 = 8;

/// How long opening the store keeps retrying conflicts: on a fresh server, every process that
/// starts at once defines the namespace, the database and the schema at the same moment, and a
/// whole deployment on a slow server can conflict for several seconds.
pub(super) const OPEN_RETRY_FOR: Duration = Duration::from_secs(60);

/// A transaction conflict: SurrealDB ran nothing of it and says another try can succeed.
pub(super) fn retryable(err: &surrealdb::Error) -> bool {
    err.to_string().contains("can be retried")
}

/// The pause before the `tries`th retry of a conflict: jittered and growing (20 ms, doubling,
/// capped at a second), so the writers fall out of step.
pub(super) async fn conflict_pause(tries: u32) {
    let ceiling = (10u64 << tries.min(7)).min(1_000);
    tokio::time::sleep(Duration::from_millis(rand::random_range(ceiling / 2..=ceiling))).await;
}

/// How long one connection attempt may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// One connection shared by every clone of the store, replaceable while they use it.
#[derive(Clone, Debug)]
pub(super) struct Connection {
    current: Arc<RwLock<Surreal<Any>>>,
    /// How long a query may take before the connection counts as broken (`LEADQ_DB_QUERY_DEADLINE`,
    /// 15 s: far above the slowest query seen, 0.2 s on a loaded debug-build server, far below a
    /// handler's 5-minute limit).
    deadline: Duration,
    /// How to open a new connection; `None` for the embedded store.
    reopen: Option<Arc<Reopen>>,
}

#[derive(Debug)]
struct Reopen {
    endpoint: String,
    credentials: Option<(String, SecretString)>,
    /// Set while a replacement is being opened: one at a time.
    replacing: AtomicBool,
}

impl Connection {
    /// Opens the connection `settings` name (sign-in and database selected).
    pub(super) async fn open(settings: &Settings) -> Result<Self, StoreError> {
        let endpoint = settings.db.endpoint();
        let credentials = match (&settings.db, &settings.db_user, &settings.db_pass) {
            (DbLocation::Server(_), Some(user), Some(pass)) => Some((user.clone(), pass.clone())),
            _ => None,
        };
        let db = connect(&endpoint, credentials.as_ref()).await?;
        let reopen = matches!(settings.db, DbLocation::Server(_)).then(|| {
            Arc::new(Reopen {
                endpoint,
                credentials,
                replacing: AtomicBool::new(false),
            })
        });
        Ok(Self {
            current: Arc::new(RwLock::new(db)),
            deadline: settings.db_query_deadline,
            reopen,
        })
    }

    /// The connection to send a query on now.
    pub(super) fn db(&self) -> Surreal<Any> {
        match self.current.read() {
            Ok(db) => db.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs the query `make` builds with the deadline and checks every statement's result. A
    /// transaction conflict (processes writing the same records at once on a server) is run
    /// again after a short jittered pause: SurrealDB ran none of it and says another try can
    /// succeed, so the callers never see one unless it persists.
    pub(super) async fn run<F>(&self, make: F) -> Result<surrealdb::IndexedResults, StoreError>
    where
        F: for<'d> Fn(&'d Surreal<Any>) -> surrealdb::method::Query<'d, Any>,
    {
        let mut tries = 0;
        loop {
            let db = self.db();
            match self.run_within(self.deadline, make(&db)).await {
                Err(StoreError::Query(err)) if tries < CONFLICT_TRIES && retryable(&err) => {
                    tries += 1;
                    tracing::debug!(%err, tries, "store transaction conflicted with another; running it again");
                    conflict_pause(tries).await;
                }
                other => return other,
            }
        }
    }

    /// [`Connection::run`] with a deadline of its own (a readiness probe's, shorter).
    pub(super) async fn run_within(
        &self,
        deadline: Duration,
        query: surrealdb::method::Query<'_, Any>,
    ) -> Result<surrealdb::IndexedResults, StoreError> {
        match tokio::time::timeout(deadline, query).await {
            Ok(answer) => Ok(answer?.check()?),
            Err(_) => {
                self.replace_soon();
                Err(StoreError::Unanswered(deadline))
            }
        }
    }

    /// Opens a new connection in the background and puts it in place of the current one.
    fn replace_soon(&self) {
        let Some(reopen) = self.reopen.clone() else {
            return;
        };
        if reopen.replacing.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!(endpoint = %reopen.endpoint, "a store query went unanswered; opening a new connection");
        let current = self.current.clone();
        tokio::spawn(async move {
            loop {
                match connect(&reopen.endpoint, reopen.credentials.as_ref()).await {
                    Ok(db) => {
                        match current.write() {
                            Ok(mut slot) => *slot = db,
                            Err(poisoned) => *poisoned.into_inner() = db,
                        }
                        tracing::info!(endpoint = %reopen.endpoint, "store connection replaced");
                        break;
                    }
                    Err(err) => {
                        tracing::debug!(%err, "store connection not reopened yet; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            reopen.replacing.store(false, Ordering::SeqCst);
        });
    }
}

async fn connect(endpoint: &str, credentials: Option<&(String, SecretString)>) -> Result<Surreal<Any>, StoreError> {
    let open_err = |source| StoreError::open(endpoint, source);
    let db = tokio::time::timeout(CONNECT_DEADLINE, surrealdb::engine::any::connect(endpoint))
        .await
        .map_err(|_| {
            open_err(surrealdb::Error::internal(format!(
                "timed out after {CONNECT_DEADLINE:?}"
            )))
        })?
        .map_err(open_err)?;
    // Selecting the namespace and database defines them on a fresh server: processes starting
    // together conflict there as on the schema, and retry.
    let started = tokio::time::Instant::now();
    let mut tries = 0;
    loop {
        let session = async {
            if let Some((username, password)) = credentials {
                db.signin(Root {
                    username: username.clone(),
                    password: password.expose_secret().to_owned(),
                })
                .await?;
            }
            db.use_ns(NAMESPACE).use_db(DATABASE).await
        };
        let selected = tokio::time::timeout(CONNECT_DEADLINE, session).await.map_err(|_| {
            open_err(surrealdb::Error::internal(format!(
                "sign-in timed out after {CONNECT_DEADLINE:?}"
            )))
        })?;
        match selected {
            Ok(_) => return Ok(db),
            Err(err) if started.elapsed() < OPEN_RETRY_FOR && retryable(&err) => {
                tries += 1;
                tracing::debug!(%err, tries, "selecting the database conflicted with another process; retrying");
                conflict_pause(tries).await;
            }
            Err(err) => return Err(open_err(err)),
        }
    }
}
