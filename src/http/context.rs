//! What the api role is given: the parts every role shares, and what only the api uses (users,
//! the CMO operations with their API keys, idempotency and agent-state buckets, the sign-in keys,
//! the webhook token), opened only in a process that runs the api, so a worker-only process
//! neither opens those buckets nor writes a `jwt.secret`.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::Auth;
use crate::bus::Bus;
use crate::calls::{CallBook, DoNotContact};
use crate::cmo::Cmo;
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::sandbox::Sandbox;
use crate::shared_config::SharedConfig;
use crate::store::Store;
use crate::users::Users;

#[derive(Clone, Debug)]
pub struct ApiContext {
    pub settings: Arc<Settings>,
    pub bus: Bus,
    /// `None` in a process that keeps no records: the routes that need them answer 503.
    pub store: Option<Store>,
    pub started: Instant,
    pub calls: CallBook,
    pub dnc: DoNotContact,
    /// The `config` bucket: script, rules.
    pub config: SharedConfig,
    pub credentials: Credentials,
    /// The sandbox, when this process runs one (it says which services it stands in for).
    pub sandbox: Option<Arc<Sandbox>>,
    /// Cancelled when the process's roles stop; long-lived responses such as the live event
    /// stream end with it.
    pub stopping: CancellationToken,
    /// The CMO operations (with the API keys, the agent state and the idempotency bucket), which
    /// the admin page borrows too.
    pub cmo: Cmo,
    /// The token that signs Twilio's webhooks: saved on the admin page, else configured.
    pub twilio_token: tokio::sync::watch::Receiver<Option<secrecy::SecretString>>,
    pub users: Users,
    pub auth: Arc<Auth>,
}
