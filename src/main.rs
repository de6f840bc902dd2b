use std::process::ExitCode;

use clap::Parser;
use leadq::app::{self, Role, RuntimeError};
use leadq::cli::{AdminCommand, ApiKeyCommand, CalendlyCommand, Cli, Command, ScriptCommand};
use leadq::config::{ConfigError, Settings};
use tokio_util::sync::CancellationToken;

/// Stack of each async worker thread.
const WORKER_STACK_BYTES: usize = 8 << 20;

/// Exit code for a usage or configuration mistake (as clap uses for bad arguments).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => return fail(&anyhow::Error::new(err)),
    };
    let _telemetry = match leadq::telemetry::init(&settings) {
        Ok(guard) => guard,
        Err(err) => return fail(&anyhow::Error::new(err)),
    };
    // SurrealDB's query executor (embedded, in these threads) needs deep stacks, most in debug
    // builds; 8 MiB per worker, as a main thread has, instead of tokio's 2 MiB.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(WORKER_STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return fail(&anyhow::Error::new(err).context("starting the async runtime")),
    };
    match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

async fn dispatch(command: Command, mut settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let roles: &[Role] = match command {
        Command::All { sandbox } => {
            if sandbox {
                settings.sandbox = Some(true);
            }
            &Role::ALL
        }
        Command::Api => &[Role::Api],
        Command::Poller => &[Role::Poller],
        Command::Caller => &[Role::Caller],
        Command::Finalizer => &[Role::Finalizer],
        Command::Sms => &[Role::Sms],
        Command::Setup => {
            let bus = leadq::bus::Bus::connect(&settings.nats_url, "leadq setup").await?;
            let report = leadq::bus::setup(&bus.js, &settings.bus).await?;
            println!("{report}");
            return Ok(());
        }
        Command::ParseEmail { file } => return parse_email(&file, &settings),
        Command::Script(ScriptCommand::Test {
            question,
            text,
            today,
            language,
        }) => return script_test(&question, &text, today, language.into()),
        Command::Admin(AdminCommand::ApiKey(command)) => return api_key(command, &settings).await,
        Command::Admin(AdminCommand::CreateUser { username, role }) => {
            return create_user(&username, role, &settings).await;
        }
        Command::Admin(AdminCommand::Users) => return list_users(&settings).await,
        Command::Admin(AdminCommand::UnbounceUrl) => return unbounce_url(&settings).await,
        Command::Admin(AdminCommand::RotateKey) => return rotate_key(&settings).await,
        Command::Admin(AdminCommand::Calendly(CalendlyCommand::Subscribe)) => {
            return calendly_subscribe(settings).await;
        }
        Command::Admin(AdminCommand::Activity { limit }) => {
            let store = leadq::store::Store::open(&settings).await?;
            for row in store.recent_activity(limit).await? {
                println!("{}", serde_json::to_string(&row)?);
            }
            return Ok(());
        }
    };
    app::run(settings, roles, shutdown).await?;
    Ok(())
}

/// Prints the lead, or the reason it is none; a non-lead is a usage outcome, not a crash.
fn parse_email(file: &std::path::Path, settings: &Settings) -> anyhow::Result<()> {
    use std::io::Read;
    let mut raw = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut raw)?;
    } else {
        raw = std::fs::read(file).map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
    }
    match leadq::domain::parse_notification(&raw, settings.default_region) {
        Ok(lead) => {
            println!("{}", serde_json::to_string(&lead)?);
            Ok(())
        }
        Err(err) => {
            println!("{}", err.to_json());
            Err(UsageError(err.to_string()).into())
        }
    }
}

/// The token's hash lives in the `config` bucket, so this works while the agent runs.
async fn unbounce_url(settings: &Settings) -> anyhow::Result<()> {
    let bus = leadq::bus::Bus::connect(&settings.nats_url, "leadq admin").await?;
    leadq::bus::setup(&bus.js, &settings.bus).await?;
    let config = bus.js.get_key_value(leadq::bus::bucket::CONFIG).await?;
    let token = leadq::roles::api::unbounce_form::rotate_token(&config).await?;
    eprintln!("Unbounce webhook URL (shown once; the previous one no longer works):");
    println!(
        "{}",
        leadq::roles::api::unbounce_form::webhook_url(&settings.public_url, &token)
    );
    Ok(())
}

/// Subscribes the public webhook URL to Calendly's bookings, with a signing key the api knows:
/// the configured one, else one made here and saved with the credentials.
async fn calendly_subscribe(mut settings: Settings) -> anyhow::Result<()> {
    use leadq::clients::calendly::{CalendlyClient, CalendlyError, EVENTS};
    use leadq::security::credentials::{self, Credentials, Vault};
    use leadq::security::secrets;
    use secrecy::ExposeSecret;
    let bus = admin_bus(&settings).await?;
    let vault = Vault::new(
        &secrets::master_key(&settings, false)?,
        secrets::previous_master_key(&settings)?.as_ref(),
    )?;
    let saved = Credentials::open(&bus.js, vault).await?;
    credentials::apply(&mut settings, &saved.plain_values().await?);
    let token = settings.calendly.token.clone().ok_or_else(|| {
        UsageError(
            "no Calendly token: set LEADQ_CALENDLY__TOKEN, or save calendly.token on the Credentials page".into(),
        )
    })?;
    let signing_key = match settings.calendly.signing_key.clone() {
        Some(key) => key,
        None => {
            let key = secrets::new_master_key();
            saved
                .set("calendly", "signing_key", &key, "leadq admin calendly subscribe")
                .await?;
            eprintln!("made a signing key and saved it as calendly.signing_key");
            key
        }
    };
    let callback = format!(
        "{}/webhooks/calendly",
        settings.public_url.as_str().trim_end_matches('/')
    );
    let client = CalendlyClient::new(&settings.calendly.api_base, token)?;
    let refused = |err: CalendlyError| -> anyhow::Error {
        match err {
            CalendlyError::Refused { .. } | CalendlyError::AlreadySubscribed(_) => UsageError(err.to_string()).into(),
            other => other.into(),
        }
    };
    let organization = client.organization().await.map_err(refused)?;
    let subscription = client
        .subscribe(&callback, &organization, signing_key.expose_secret())
        .await
        .map_err(refused)?;
    println!("{callback} subscribed to {} ({subscription})", EVENTS.join(", "));
    Ok(())
}

/// API keys live in NATS, so these work while the agent runs.
async fn api_key(command: ApiKeyCommand, settings: &Settings) -> anyhow::Result<()> {
    let bus = leadq::bus::Bus::connect(&settings.nats_url, "leadq admin").await?;
    leadq::bus::setup(&bus.js, &settings.bus).await?;
    let keys = leadq::security::api_keys::ApiKeys::open(&bus.js).await?;
    match command {
        ApiKeyCommand::Create {
            name,
            allow_ip,
            rate_per_minute,
        } => {
            let (key, record) = keys.create(&name, allow_ip, rate_per_minute).await?;
            eprintln!(
                "API key `{}` (id {}) created. It is shown once; keep it safe:",
                record.name, record.id
            );
            println!("{key}");
        }
        ApiKeyCommand::List => {
            for record in keys.list().await? {
                let networks: Vec<String> = record.allow.iter().map(ToString::to_string).collect();
                println!(
                    "{}  {:<24} {:<8} {}  {:>6}/min  {}",
                    record.id,
                    record.name,
                    if record.revoked { "revoked" } else { "active" },
                    record
                        .created_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    record.rate_per_minute,
                    if networks.is_empty() {
                        "any address".to_owned()
                    } else {
                        networks.join(",")
                    },
                );
            }
        }
        ApiKeyCommand::Revoke { id } => {
            if !keys.revoke(&id).await? {
                return Err(UsageError(format!("no API key with id `{id}` (see `leadq admin api-key list`)")).into());
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn admin_bus(settings: &Settings) -> anyhow::Result<leadq::bus::Bus> {
    let bus = leadq::bus::Bus::connect(&settings.nats_url, "leadq admin").await?;
    leadq::bus::setup(&bus.js, &settings.bus).await?;
    Ok(bus)
}

/// Users live in NATS, so this works while the agent runs.
async fn create_user(
    username: &str,
    role: leadq::security::users::UserRole,
    settings: &Settings,
) -> anyhow::Result<()> {
    use leadq::security::users::{UserError, Users};
    use std::io::IsTerminal;
    if !leadq::security::users::valid_username(username) {
        return Err(UsageError(UserError::BadUsername(username.to_owned()).to_string()).into());
    }
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {username}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            return Err(UsageError("the two passwords differ".into()).into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let users = Users::open(&admin_bus(settings).await?.js).await?;
    match users.upsert(username, role, password.into()).await {
        Ok(created) => {
            let verb = if created { "created" } else { "updated" };
            println!("user `{username}` {verb} with role {}", role.as_str());
            Ok(())
        }
        Err(err @ (UserError::BadUsername(_) | UserError::WeakPassword)) => Err(UsageError(err.to_string()).into()),
        Err(err) => Err(err.into()),
    }
}

async fn list_users(settings: &Settings) -> anyhow::Result<()> {
    let users = leadq::security::users::Users::open(&admin_bus(settings).await?.js).await?;
    for user in users.list().await? {
        println!("{:<24} {}", user.username, user.role.as_str());
    }
    Ok(())
}

/// Re-seals every credential; nothing is written when the current key cannot open them all.
async fn rotate_key(settings: &Settings) -> anyhow::Result<()> {
    use leadq::security::credentials::{Credentials, Vault};
    use leadq::security::secrets;
    let current = secrets::master_key(settings, false)?;
    let next = match std::env::var("LEADQ_NEW_MASTER_KEY") {
        Ok(key) if !key.is_empty() => secrecy::SecretString::from(key),
        _ => secrets::new_master_key(),
    };
    let bad_key = |e: leadq::security::credentials::CredentialError| UsageError(format!("LEADQ_NEW_MASTER_KEY: {e}"));
    let next_vault = Vault::new(&next, Some(&current)).map_err(bad_key)?;
    let vault = Vault::new(&current, secrets::previous_master_key(settings)?.as_ref())?;
    let credentials = Credentials::open(&admin_bus(settings).await?.js, vault).await?;
    let count = credentials.rotate(&next_vault).await?;
    if settings.master_key.is_none() {
        let dir = &settings.data_dir;
        secrets::write_private(&dir.join(secrets::PREVIOUS_MASTER_KEY_FILE), &current)?;
        secrets::write_private(&dir.join(secrets::MASTER_KEY_FILE), &next)?;
        println!(
            "{count} credential(s) re-encrypted under key version {}; {} holds the new key",
            next_vault.version(),
            dir.join(secrets::MASTER_KEY_FILE).display()
        );
    } else {
        use secrecy::ExposeSecret;
        eprintln!(
            "{count} credential(s) re-encrypted under key version {}. Set LEADQ_MASTER_KEY to the new key \
             below (and LEADQ_MASTER_KEY_PREVIOUS to the old one until every process has restarted):",
            next_vault.version()
        );
        println!("{}", next.expose_secret());
    }
    Ok(())
}

/// Reads one answer the way the finalizer will.
fn script_test(
    question_id: &str,
    text: &str,
    today: Option<jiff::civil::Date>,
    reading: leadq::domain::answers::Reading,
) -> anyhow::Result<()> {
    let script = leadq::domain::script::Script::default();
    let Some(question) = script.questions.iter().find(|q| q.id == question_id) else {
        let ids: Vec<_> = script.questions.iter().map(|q| q.id.as_str()).collect();
        return Err(UsageError(format!(
            "no question `{question_id}`; the script asks {}",
            ids.join(", ")
        ))
        .into());
    };
    let today = today.unwrap_or_else(|| jiff::ZonedDateTime::now().date());
    let answer = leadq::domain::answers::interpret_as(question, text, today, reading);
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

/// A mistake in what the user gave (a file, an argument): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// One line on stderr, the whole cause chain, no backtrace; usage mistakes exit 2.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("leadq: error: {err:#}");
    let usage = err.downcast_ref::<ConfigError>().is_some()
        || err.downcast_ref::<UsageError>().is_some()
        || err.downcast_ref::<leadq::security::secrets::SecretsError>().is_some()
        || err
            .downcast_ref::<leadq::security::credentials::CredentialError>()
            .is_some_and(|e| matches!(e, leadq::security::credentials::CredentialError::BadKey))
        || matches!(
            err.downcast_ref::<RuntimeError>(),
            Some(
                RuntimeError::NotConfigured { .. }
                    | RuntimeError::Secrets(_)
                    | RuntimeError::Credential(leadq::security::credentials::CredentialError::BadKey)
            )
        );
    ExitCode::from(if usage { EXIT_USAGE } else { 1 })
}
