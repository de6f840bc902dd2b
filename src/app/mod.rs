//! Starts roles from one [`Context`] and stops them together. Shutdown is a token handed to every
//! role: on SIGINT/SIGTERM each finishes the message it holds (or leaves it unacked) and returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Bus, BusError};
use crate::clients::sandbox::Sandbox;
use crate::config::Settings;
use crate::roles::{activity, api, caller, finalizer, poller, sms, status};
use crate::security::credentials::CredentialError;
use crate::security::secrets::SecretsError;
use crate::security::users::UserError;
use crate::store::shared_config;
use crate::store::{Store, StoreError};

mod deps;
pub use crate::roles::Context;

/// A unit of leadq that can run in its own process or beside the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Role {
    /// HTTP API, webhooks, admin page, and the activity log writer.
    Api,
    /// IMAP IDLE on the lead inbox, publishes lead.received.
    Poller,
    /// Consumes lead.received, places the Twilio call.
    Caller,
    /// Consumes call.completed, scores, records, syncs the CRM.
    Finalizer,
    /// Consumes lead.finalized, sends the Calendly SMS.
    Sms,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Api, Role::Poller, Role::Caller, Role::Finalizer, Role::Sms];

    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Poller => "poller",
            Role::Caller => "caller",
            Role::Finalizer => "finalizer",
            Role::Sms => "sms",
        }
    }

    /// Roles that keep the system of record open; only these may open the embedded store.
    pub fn uses_store(self) -> bool {
        matches!(self, Role::Api | Role::Finalizer)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr} (LEADQ_HTTP_ADDR): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the {role} role stopped: {detail}")]
    RoleFailed { role: &'static str, detail: String },
    #[error("the {role} role needs {setting}")]
    NotConfigured { role: &'static str, setting: &'static str },
    #[error(transparent)]
    Poller(#[from] poller::PollerError),
    /// The caller's or the SMS sender's.
    #[error(transparent)]
    Outbound(#[from] crate::roles::OutboundError),
    #[error(transparent)]
    SharedConfig(#[from] shared_config::SharedConfigError),
    #[error(transparent)]
    Finalizer(#[from] finalizer::FinalizerError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("LEADQ_MASTER_KEY: {0}")]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Users(#[from] UserError),
    #[error("the {role} role needs the store (LEADQ_DB), which this process did not open")]
    NoStore { role: &'static str },
    #[error("the sandbox's stand-ins could not listen on loopback: {0}")]
    Sandbox(std::io::Error),
}

/// Runs `roles` until a signal or `shutdown` fires, or one role fails (which stops the rest).
/// When saved credentials change, the worker roles restart with them; the api keeps serving.
pub async fn run(settings: Settings, roles: &[Role], shutdown: CancellationToken) -> Result<(), RuntimeError> {
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tokio::task::spawn_blocking(crate::domain::lead::load_phone_metadata);
    // Opened once: the embedded store's file stays locked to this process across restarts.
    let with_store = roles.iter().any(|r| r.uses_store());
    let (bus, store) = patiently(&shutdown, || connect(&settings, with_store)).await?;
    let sandbox = match settings.sandbox {
        Some(true) => Some(Arc::new(
            Sandbox::start(&settings).await.map_err(RuntimeError::Sandbox)?,
        )),
        None if roles == Role::ALL => Some(Arc::new(
            Sandbox::start(&settings).await.map_err(RuntimeError::Sandbox)?,
        )),
        _ => None,
    };
    let assemble = || {
        Box::pin(Context::assemble(
            settings.clone(),
            bus.clone(),
            store.clone(),
            sandbox.as_ref(),
            shutdown.child_token(),
        ))
    };
    let workers: Vec<Role> = roles.iter().copied().filter(|r| *r != Role::Api).collect();
    // Watching starts before the credentials are read, so a change in between is not missed.
    let mut generation = shutdown.child_token();
    let mut changes = credential_changes(&bus, &generation, !workers.is_empty()).await?;
    let mut ctx = patiently(&shutdown, assemble).await?;
    check_configured(&ctx.settings, roles)?;
    let mut api = JoinSet::new();
    if roles.contains(&Role::Api) {
        start_role(Role::Api, &ctx, &shutdown, &mut api).await?;
    }
    // Every process says it is there; its end is not a role's failure.
    tokio::spawn(status::run(ctx.status_deps(roles), shutdown.clone()));
    let mut failure = None;
    loop {
        let mut tasks = JoinSet::new();
        for &role in &workers {
            start_role(role, &ctx, &generation, &mut tasks).await?;
        }
        let mut restart = false;
        tokio::select! {
            () = shutdown.cancelled() => {}
            Some(joined) = api.join_next() => record_failure(joined, &mut failure),
            Some(joined) = tasks.join_next() => record_failure(joined, &mut failure),
            Some(()) = changes.recv() => {
                tracing::info!("saved credentials changed: restarting the workers with them");
                restart = true;
            }
        }
        generation.cancel();
        let stopping = !restart || failure.is_some();
        if stopping {
            shutdown.cancel();
        }
        // Bound the wait so a stuck role cannot keep the process alive forever.
        let drain = async {
            while let Some(joined) = tasks.join_next().await {
                record_failure(joined, &mut failure);
            }
            while stopping && let Some(joined) = api.join_next().await {
                record_failure(joined, &mut failure);
            }
        };
        if tokio::time::timeout(ctx.settings.shutdown_grace, drain).await.is_err() {
            tracing::warn!("shutdown grace elapsed; aborting the remaining roles");
        }
        if let Some(err) = failure {
            return Err(err);
        }
        if !restart {
            tracing::info!("stopped");
            return Ok(());
        }
        generation = shutdown.child_token();
        changes = credential_changes(&bus, &generation, true).await?;
        ctx = patiently(&shutdown, assemble).await?;
    }
}

/// How long a starting process waits out a bus or store that does not answer yet: a cluster
/// electing leaders after a node loss, or a SurrealDB server restarting.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds, it fails in a way waiting does not mend (a NATS address
/// that refuses connections, a bad setting), `START_PATIENCE` runs out, or shutdown; says once
/// that it is waiting, and once that it is through.
async fn patiently<T, F, Fut>(shutdown: &CancellationToken, mut attempt: F) -> Result<T, RuntimeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RuntimeError>>,
{
    let deadline = tokio::time::Instant::now() + START_PATIENCE;
    let mut wait = Duration::from_millis(250);
    let mut waiting = false;
    loop {
        match attempt().await {
            Ok(done) => {
                if waiting {
                    tracing::info!("the bus and the store answer; starting");
                }
                return Ok(done);
            }
            Err(err) if passing(&err) && tokio::time::Instant::now() + wait < deadline => {
                if !waiting {
                    tracing::warn!(%err, "not answering at start; trying again for up to {START_PATIENCE:?}");
                    waiting = true;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Err(err),
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

/// A failure at start that may pass by itself: JetStream not answering in time (a leader
/// election), a store refusing or not answering (a restart). Not a NATS address that refuses.
fn passing(err: &RuntimeError) -> bool {
    match err {
        RuntimeError::Bus(BusError::Connect { .. }) => false,
        RuntimeError::Bus(bus) => bus.is_transient(),
        RuntimeError::Store(StoreError::Open { .. } | StoreError::Unanswered(_)) => true,
        _ => false,
    }
}

/// Connects to NATS, makes the topology match (idempotent), and opens the store if asked.
async fn connect(settings: &Settings, with_store: bool) -> Result<(Bus, Option<Store>), RuntimeError> {
    let bus = Bus::connect(&settings.nats_url, &format!("leadq {}", settings.instance)).await?;
    let report = bus::setup(&bus.js, &settings.bus).await?;
    tracing::info!(
        changed = report.changed(),
        items = report.items.len(),
        "bus topology checked"
    );
    // Boxed: the store's futures are large, and callers (tests among them) may run on small stacks.
    let store = if with_store {
        Some(Box::pin(Store::open(settings)).await?)
    } else {
        None
    };
    Ok((bus, store))
}

/// Resolves on the first change to the saved credentials after now (never, when not `wanted`).
async fn credential_changes(
    bus: &Bus,
    until: &CancellationToken,
    wanted: bool,
) -> Result<tokio::sync::mpsc::Receiver<()>, RuntimeError> {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    if !wanted {
        // Keep the sender alive until the generation ends, so `recv` waits instead of closing.
        let until = until.clone();
        tokio::spawn(async move {
            until.cancelled().await;
            drop(tx);
        });
        return Ok(rx);
    }
    let mut watch = bus
        .js
        .get_key_value(bus::bucket::CREDENTIALS)
        .await
        .map_err(|e| BusError::jetstream("bucket credentials", e))?
        .watch_all()
        .await
        .map_err(|e| BusError::jetstream("watching credentials", e))?;
    let until = until.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = until.cancelled() => {}
            Some(Ok(_)) = watch.next() => {
                let _ = tx.send(()).await;
            }
        }
    });
    Ok(rx)
}

fn check_configured(settings: &Settings, roles: &[Role]) -> Result<(), RuntimeError> {
    if roles == [Role::Poller] && settings.imap.is_none() {
        return Err(RuntimeError::NotConfigured {
            role: "poller",
            setting: "LEADQ_IMAP__HOST (the lead inbox), or Gmail credentials saved on the admin page",
        });
    }
    if let [role @ (Role::Caller | Role::Sms)] = roles
        && !twilio_configured(settings)
    {
        return Err(RuntimeError::NotConfigured {
            role: role.name(),
            setting: TWILIO_SETTINGS,
        });
    }
    Ok(())
}

const TWILIO_SETTINGS: &str = "LEADQ_TWILIO__ACCOUNT_SID, LEADQ_TWILIO__AUTH_TOKEN and LEADQ_TWILIO__FROM_NUMBER \
     (or the Twilio credentials saved on the admin page)";

fn twilio_configured(settings: &Settings) -> bool {
    let twilio = &settings.twilio;
    twilio.account_sid.is_some() && twilio.auth_token.is_some() && twilio.from_number.is_some()
}

fn record_failure(
    joined: Result<Result<(), RuntimeError>, tokio::task::JoinError>,
    failure: &mut Option<RuntimeError>,
) {
    let result = joined.unwrap_or_else(|e| {
        Err(RuntimeError::RoleFailed {
            role: "?",
            detail: e.to_string(),
        })
    });
    if let Err(err) = result {
        tracing::error!(%err, "role failed; stopping the others");
        failure.get_or_insert(err);
    }
}

/// The api role as `leadq api` runs it, and as the integration tests start it: the saved script
/// and rules published, a first admin made if there is none, the HTTP routes on
/// `LEADQ_HTTP_ADDR`, the activity writer and the CMO NATS service, each a task in `tasks` that
/// ends with `shutdown`. Returns the api's context.
pub async fn start_api(
    ctx: &Context,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), RuntimeError>>,
) -> Result<api::ApiContext, RuntimeError> {
    if let Some(store) = &ctx.store {
        ctx.config.publish(store, &ctx.settings.transfer).await?;
    }
    let api = ctx.api_context().await?;
    if let Some(password) = api.users.ensure_first_admin().await? {
        announce_first_admin(&password);
    }
    let server = api::HttpServer::bind(api.clone())
        .await
        .map_err(|source| RuntimeError::Listen {
            addr: ctx.settings.http_addr,
            source,
        })?;
    let addr = server.local_addr().map_err(|source| RuntimeError::Listen {
        addr: ctx.settings.http_addr,
        source,
    })?;
    tracing::info!(%addr, "HTTP API listening");
    let token = shutdown.clone();
    tasks.spawn(async move {
        server.serve(token).await.map_err(|e| RuntimeError::RoleFailed {
            role: "api",
            detail: e.to_string(),
        })
    });
    let (deps, token) = (ctx.activity_deps()?, shutdown.clone());
    tasks.spawn(async move { activity::run(deps, token).await.map_err(RuntimeError::from) });
    let (cmo, token) = (api.cmo.clone(), shutdown.clone());
    tasks.spawn(async move { api::nats::run(cmo, token).await.map_err(RuntimeError::from) });
    Ok(api)
}

/// Starts `role` in `tasks`, as `run` does for each role of the process, and as the integration
/// tests start the roles they need; a role whose outside service is not configured is skipped
/// with a warning, as in production.
pub async fn start_role(
    role: Role,
    ctx: &Context,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), RuntimeError>>,
) -> Result<(), RuntimeError> {
    match role {
        Role::Api => {
            start_api(ctx, shutdown, tasks).await?;
        }
        Role::Poller => match ctx.poller_deps() {
            None => tracing::warn!("no inbox configured (LEADQ_IMAP__HOST): the poller is not started"),
            Some(deps) => {
                let token = shutdown.clone();
                tasks.spawn(async move { poller::run(deps, token).await.map_err(RuntimeError::from) });
            }
        },
        Role::Caller if !twilio_configured(&ctx.settings) => {
            tracing::warn!("Twilio is not configured ({TWILIO_SETTINGS}): the caller is not started; leads wait");
        }
        Role::Caller => {
            let (deps, token) = (ctx.caller_deps(), shutdown.clone());
            tasks.spawn(async move { caller::run(deps, token).await.map_err(RuntimeError::from) });
        }
        Role::Finalizer => {
            let (deps, token) = (ctx.finalizer_deps()?, shutdown.clone());
            tasks.spawn(async move { finalizer::run(deps, token).await.map_err(RuntimeError::from) });
        }
        Role::Sms if !twilio_configured(&ctx.settings) => {
            tracing::warn!("Twilio is not configured ({TWILIO_SETTINGS}): the SMS sender is not started; texts wait");
        }
        Role::Sms => {
            let (deps, token) = (ctx.sms_deps(), shutdown.clone());
            tasks.spawn(async move { sms::run(deps, token).await.map_err(RuntimeError::from) });
        }
    }
    Ok(())
}

/// Shown once, on the terminal only (never through the log pipeline): the first admin's password.
fn announce_first_admin(password: &secrecy::SecretString) {
    use secrecy::ExposeSecret;
    eprintln!(
        "\n  No admin-page user existed, so one was made:\n\n    username: admin\n    password: {}\n\n  \
         It is shown only now. Change it with `leadq admin create-user --username admin --role admin`.\n",
        password.expose_secret()
    );
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
        () = shutdown.cancelled() => {}
    }
    shutdown.cancel();
}
