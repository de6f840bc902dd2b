//! The handles every role of a process shares, opened once by the composition root: its own
//! module so that the api's context can hold it without importing the root.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::calls::{CallBook, DoNotContact};
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::sandbox::Sandbox;
use crate::shared_config::SharedConfig;
use crate::store::Store;

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
    /// Cancelled when this context's roles stop (a shutdown, or a restart for new credentials);
    /// long-lived responses such as the live event stream end with it.
    pub stopping: CancellationToken,
}
