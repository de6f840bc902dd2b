//! What the api role is given: the parts every role shares, and what only the api uses (users,
//! the CMO operations with their API keys, idempotency and agent-state buckets, the sign-in keys,
//! the webhook token), opened only in a process that runs the api, so a worker-only process
//! neither opens those buckets nor writes a `jwt.secret`.

use std::sync::Arc;

use super::Auth;
use crate::cmo::Cmo;
use crate::roles::Context;
use crate::security::users::Users;

#[derive(Clone, Debug)]
pub struct ApiContext {
    /// What every role of the process shares: settings, bus, store, call book, ...
    pub shared: Context,
    /// The CMO operations (with the API keys, the agent state and the idempotency bucket), which
    /// the admin page borrows too.
    pub cmo: Cmo,
    /// The token that signs Twilio's webhooks: saved on the admin page, else configured.
    pub twilio_token: tokio::sync::watch::Receiver<Option<secrecy::SecretString>>,
    /// The key that signs Calendly's webhooks, followed the same way.
    pub calendly_key: tokio::sync::watch::Receiver<Option<secrecy::SecretString>>,
    /// Signed webhook deliveries already taken: a replay is refused.
    pub webhooks_seen: crate::bus::kv::seen::SeenOnce,
    /// Where a booking stops the lead's follow-up texts.
    pub followup_stops: crate::bus::kv::followups::FollowUpStops,
    pub users: Users,
    pub auth: Arc<Auth>,
}

/// The shared handles read as the api's own (`ctx.settings`, `ctx.bus`).
impl std::ops::Deref for ApiContext {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.shared
    }
}
