//! The roles, one room each: every role takes its own `Deps` (the api its `ApiContext`), runs
//! one consume loop or server, and imports no other role and not the composition root
//! (`tests/it/layout.rs` checks it). What they share sits here: the handles a process opens once
//! ([`Context`]) and the error of the two roles that reach people.

pub mod activity;
pub mod api;
pub mod caller;
pub mod finalizer;
pub mod poller;
pub mod sms;
pub mod status;

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::bus::kv::calls::{CallBook, DoNotContact};
use crate::bus::{self, Bus, BusError};
use crate::clients::sandbox::Sandbox;
use crate::config::Settings;
use crate::security::credentials::Credentials;
use crate::store::Store;
use crate::store::shared_config::SharedConfig;

/// What stops a worker that talks to Twilio and keeps its state on the bus (the caller, the SMS
/// sender): both kinds are worth another delivery.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Twilio(#[from] crate::clients::twilio::TwilioError),
}

impl OutboundError {
    /// The bus is back in seconds; Twilio's own retries are spent, so it waits longer.
    pub fn retry(self) -> bus::Outcome {
        let after = match &self {
            Self::Bus(_) => std::time::Duration::from_secs(5),
            Self::Twilio(err) => err.retry_after(),
        };
        bus::Outcome::Retry {
            after,
            reason: self.to_string(),
        }
    }
}

/// What every role gets: settings, the bus, the store when the role keeps records, the clock,
/// and the buckets several roles share. What only the api uses is in `http::ApiContext`.
#[derive(Clone, Debug)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub bus: Bus,
    pub store: Option<Store>,
    pub started: Instant,
    pub calls: CallBook,
    pub dnc: DoNotContact,
    /// The `config` bucket: script, rules.
    pub config: SharedConfig,
    pub credentials: Credentials,
    /// The sandbox, when this process runs one (it says which services it stands in for).
    pub sandbox: Option<Arc<Sandbox>>,
    /// The time follow-ups are judged by: the system's, or a test's.
    pub clock: crate::domain::clock::Clock,
    /// Cancelled when this context's roles stop (a shutdown, or a restart for new credentials);
    /// long-lived responses such as the live event stream end with it.
    pub stopping: CancellationToken,
}
