use std::process::ExitCode;

use clap::Parser;
use leadq::cli::{AdminCommand, ApiKeyCommand, Cli, Command, ScriptCommand};
use leadq::config::{ConfigError, Settings};
use leadq::runtime::{self, Role, RuntimeError};
use tokio_util::sync::CancellationToken;

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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => return fail(&anyhow::Error::new(err).context("starting the async runtime")),
    };
    match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let roles: &[Role] = match command {
        Command::All => &Role::ALL,
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
        Command::Script(ScriptCommand::Test { question, text, today }) => return script_test(&question, &text, today),
        Command::Admin(AdminCommand::ApiKey(command)) => return api_key(command, &settings).await,
        Command::Admin(AdminCommand::Activity { limit }) => {
            let store = leadq::store::Store::open(&settings).await?;
            for row in store.recent_activity(limit).await? {
                println!("{}", serde_json::to_string(&row)?);
            }
            return Ok(());
        }
    };
    runtime::run(settings, roles, shutdown).await?;
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

/// API keys live in NATS, so these work while the agent runs.
async fn api_key(command: ApiKeyCommand, settings: &Settings) -> anyhow::Result<()> {
    let bus = leadq::bus::Bus::connect(&settings.nats_url, "leadq admin").await?;
    leadq::bus::setup(&bus.js, &settings.bus).await?;
    let keys = leadq::api_keys::ApiKeys::open(&bus.js).await?;
    match command {
        ApiKeyCommand::Create { name, allow_ip } => {
            let (key, record) = keys.create(&name, allow_ip).await?;
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
                    "{}  {:<24} {:<8} {}  {}",
                    record.id,
                    record.name,
                    if record.revoked { "revoked" } else { "active" },
                    record
                        .created_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
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

/// Reads one answer the way the finalizer will.
fn script_test(question_id: &str, text: &str, today: Option<jiff::civil::Date>) -> anyhow::Result<()> {
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
    let answer = leadq::domain::answers::interpret(question, text, today);
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
        || matches!(
            err.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::NotConfigured { .. })
        );
    ExitCode::from(if usage { EXIT_USAGE } else { 1 })
}
