//! Opening the shared [`Context`] (the bus, the store, the shared buckets, the saved credentials
//! laid over the settings) and building from it, for each role, exactly what that role takes.
//! The api's own context is opened only where the api runs.

use crate::bus::kv::followups::FollowUpStops;
use crate::bus::kv::seen::SeenOnce;
use crate::domain::clock::Clock;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{Role, RuntimeError, connect};
use crate::bus::kv::calls::{CallBook, DoNotContact};
use crate::bus::kv::run_state::AgentStateStore;
use crate::bus::{self, Bus, BusError};
use crate::clients::sandbox::{self, Sandbox};
use crate::cmo::Cmo;
use crate::config::Settings;
use crate::roles::Context;
use crate::roles::{activity, api, caller, finalizer, poller, sms, status};
use crate::security::api_keys::ApiKeys;
use crate::security::credentials::{self, Credentials, Vault};
use crate::security::secrets;
use crate::security::users::Users;
use crate::store::Store;
use crate::store::shared_config::SharedConfig;

impl Context {
    /// Connects to NATS, makes the topology match (idempotent), and opens the store if needed.
    pub async fn build(settings: Settings, with_store: bool) -> Result<Self, RuntimeError> {
        let (bus, store) = connect(&settings, with_store).await?;
        Box::pin(Self::assemble(settings, bus, store, None, CancellationToken::new())).await
    }

    /// Opens the buckets and lays the saved credentials over `settings`, then the sandbox over
    /// what is still not configured.
    pub(super) async fn assemble(
        mut settings: Settings,
        bus: Bus,
        store: Option<Store>,
        sandbox: Option<&Arc<Sandbox>>,
        stopping: CancellationToken,
    ) -> Result<Self, RuntimeError> {
        let vault = Vault::new(
            &secrets::master_key(&settings, true)?,
            secrets::previous_master_key(&settings)?.as_ref(),
        )?;
        let credentials = Credentials::open(&bus.js, vault).await?;
        credentials::apply(&mut settings, &credentials.plain_values().await?);
        if let Some(sandbox) = sandbox {
            let modes = sandbox.apply(&mut settings);
            sandbox::announce(&settings, modes);
        }
        let sandbox = sandbox.cloned();
        Ok(Self {
            calls: CallBook::open(&bus.js).await?,
            dnc: DoNotContact::open(&bus.js).await?,
            config: SharedConfig::open(&bus.js).await?,
            settings: Arc::new(settings),
            bus,
            store,
            started: Instant::now(),
            credentials,
            sandbox,
            stopping,
            clock: Clock::System,
        })
    }

    /// The api role's context: opens the buckets only the api uses, and the sign-in keys.
    pub async fn api_context(&self) -> Result<api::ApiContext, RuntimeError> {
        let bus = &self.bus;
        Ok(api::ApiContext {
            shared: self.clone(),
            cmo: self.cmo().await?,
            twilio_token: self
                .credentials
                .follow("twilio", "auth_token", self.settings.twilio.auth_token.clone())
                .await?,
            calendly_key: self
                .credentials
                .follow("calendly", "signing_key", self.settings.calendly.signing_key.clone())
                .await?,
            webhooks_seen: SeenOnce::open(&bus.js).await?,
            followup_stops: FollowUpStops::open(&bus.js).await?,
            users: Users::open(&bus.js).await?,
            auth: Arc::new(api::Auth::new(
                &secrets::jwt_secret(&self.settings, true)?,
                &self.settings.admin,
            )),
        })
    }

    /// The CMO operations, for the REST routes and the NATS service.
    async fn cmo(&self) -> Result<Cmo, RuntimeError> {
        let js = &self.bus.js;
        let agent_state = AgentStateStore::open(js).await?;
        Ok(Cmo {
            settings: self.settings.clone(),
            bus: self.bus.clone(),
            store: self.store.clone(),
            started: self.started,
            sandbox: self.sandbox.clone(),
            api_keys: ApiKeys::open(js).await?,
            agent_now: agent_state.watch().await?,
            agent_state,
            idempotency: js
                .get_key_value(bus::bucket::IDEMPOTENCY)
                .await
                .map_err(|e| BusError::jetstream("bucket idempotency", e))?,
        })
    }
}

/// Each role's deps, built here so that no role knows of the others or of this context.
impl Context {
    pub fn caller_deps(&self) -> caller::Deps {
        caller::Deps {
            settings: self.settings.clone(),
            bus: self.bus.clone(),
            calls: self.calls.clone(),
            dnc: self.dnc.clone(),
            sandboxed: self
                .sandbox
                .as_ref()
                .is_some_and(|sandbox| sandbox.modes().0 == sandbox::Mode::Sandboxed),
        }
    }

    pub fn sms_deps(&self) -> sms::Deps {
        sms::Deps {
            settings: self.settings.clone(),
            bus: self.bus.clone(),
            dnc: self.dnc.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The finalizer keeps the records: it runs only where the store is open.
    pub fn finalizer_deps(&self) -> Result<finalizer::Deps, RuntimeError> {
        Ok(finalizer::Deps {
            settings: self.settings.clone(),
            bus: self.bus.clone(),
            store: self.store.clone().ok_or(RuntimeError::NoStore { role: "finalizer" })?,
            calls: self.calls.clone(),
            config: self.config.clone(),
        })
    }

    /// None without an inbox to watch.
    pub fn poller_deps(&self) -> Option<poller::Deps> {
        Some(poller::Deps {
            bus: self.bus.clone(),
            imap: self.settings.imap.clone()?,
            region: self.settings.default_region,
        })
    }

    pub fn activity_deps(&self) -> Result<activity::Deps, RuntimeError> {
        Ok(activity::Deps {
            bus: self.bus.clone(),
            store: self.store.clone().ok_or(RuntimeError::NoStore { role: "api" })?,
            lanes: bus::Lanes::new(self.settings.concurrency.activity, self.settings.bus.max_handling),
        })
    }

    pub fn status_deps(&self, roles: &[Role]) -> status::Deps {
        status::Deps {
            bus: self.bus.clone(),
            instance: self.settings.instance.clone(),
            roles: roles.iter().map(|r| r.name().to_owned()).collect(),
            every: self.settings.status_interval,
            started: self.started,
            figures: self
                .store
                .clone()
                .map(|store| (store, self.settings.calling_hours.fallback.clone())),
        }
    }
}
