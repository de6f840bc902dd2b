//! The command line: one binary, a subcommand per role, and the operator's commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "leadq",
    version,
    about = "Lead qualification agent: reads landing-page leads from IMAP, calls them through Twilio, \
             scores the answers, records them in the CRM and texts a booking link",
    after_help = "Settings come from embedded defaults, then --config FILE (TOML), then LEADQ_* \
                  environment variables; see leadq.example.toml."
)]
pub struct Cli {
    /// A TOML settings file (see leadq.example.toml); environment variables override it.
    #[arg(long, global = true, env = "LEADQ_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role (api, poller, caller, finalizer, sms) in one process. Outside services with
    /// no account configured (Twilio, Airtable) run as an in-process sandbox unless LEADQ_SANDBOX=0.
    All {
        /// Use the sandbox for every service without a live configuration (as LEADQ_SANDBOX=1).
        #[arg(long)]
        sandbox: bool,
    },
    /// Run the HTTP API: CMO and admin routes, Twilio webhooks, the admin page, the activity log writer.
    Api,
    /// Run the IMAP poller: lead emails to lead.received, within a second (IMAP IDLE).
    Poller,
    /// Run the caller: lead.received to one Twilio call per lead.
    Caller,
    /// Run the finalizer: call.completed to verdict, lead record and CRM row.
    Finalizer,
    /// Run the SMS sender: lead.finalized to one SMS with the booking link, and the follow-up
    /// texts (lead.followup) of leads who have not booked.
    Sms,
    /// Create or update the NATS streams, consumers and KV buckets; safe to repeat (also done on start).
    Setup,
    /// Parse a lead notification email (FILE, or - for stdin) and print the lead as JSON; exit 2
    /// with {"error": "not_a_lead" | "invalid_lead", ...} when it is not a callable lead.
    ParseEmail {
        /// The raw email (RFC 5322), or - to read standard input.
        file: PathBuf,
    },
    /// Work with the call script: try how a spoken answer is read.
    #[command(subcommand)]
    Script(ScriptCommand),
    /// Operator commands: the activity log, API keys, admin-page users, the master key.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
pub enum ScriptCommand {
    /// Print how an answer to a question of the default script is read, as JSON:
    /// {"question", "raw", "value", "captured"}.
    Test {
        /// The question id: space_type, team_size, move_in, budget or decision_maker.
        question: String,
        /// What the lead said, as speech recognition wrote it.
        text: String,
        /// The day of the call, for relative dates ("next month"); default today.
        #[arg(long, value_name = "YYYY-MM-DD")]
        today: Option<jiff::civil::Date>,
        /// Read the answer as this language only; by default English and Spanish are both read.
        #[arg(long, value_enum, default_value_t = Language::Either)]
        language: Language,
    },
}

/// The languages `leadq script test` reads an answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// English or Spanish, without being told.
    Either,
    #[value(alias = "english")]
    En,
    #[value(alias = "spanish")]
    Es,
}

impl From<Language> for crate::domain::answers::Reading {
    fn from(language: Language) -> Self {
        match language {
            Language::Either => Self::Either,
            Language::En => Self::English,
            Language::Es => Self::Spanish,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print the newest activity-log entries as JSON lines (opens the store directly: with the
    /// embedded store, stop the agent first).
    Activity {
        /// How many entries to print.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Manage the CMO agent's API keys (kept in NATS, so this works beside a running agent).
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Create an admin-page user, or set an existing one's role and password. The password is
    /// read from a prompt, or from the first line of standard input when it is not a terminal.
    /// Users are kept in NATS, so this works beside a running agent.
    CreateUser {
        /// 1 to 64 characters: lowercase letters, digits, '.', '_' or '-'.
        #[arg(long)]
        username: String,
        #[arg(long, value_enum)]
        role: crate::security::users::UserRole,
    },
    /// List the admin-page users and their roles.
    Users,
    /// Make a new secret URL for Unbounce's form-submit webhook and print it once (paste it in
    /// Unbounce: page > Integrations > Webhooks). The previous URL stops working at once.
    UnbounceUrl,
    /// Calendly: who books a tour.
    #[command(subcommand)]
    Calendly(CalendlyCommand),
    /// Re-encrypt every saved credential under a new master key. The new key is
    /// LEADQ_NEW_MASTER_KEY, or made here; with the data directory's key file, the new key
    /// replaces it and the old one is kept as master.key.previous. Restart the agent's
    /// processes with the new key afterwards (they open old values with the previous key
    /// until then).
    RotateKey,
}

#[derive(Debug, Subcommand)]
pub enum CalendlyCommand {
    /// Subscribe this agent's `/webhooks/calendly` (on LEADQ_PUBLIC_URL) to Calendly's bookings
    /// and cancels in the token's organization (LEADQ_CALENDLY__TOKEN, or calendly.token saved
    /// on the Credentials page). Without a signing key configured, one is made and saved as
    /// calendly.signing_key, which running api processes take at once.
    Subscribe,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it once (only its hash is kept).
    Create {
        /// Who the key is for, e.g. the CMO agent's name.
        #[arg(long)]
        name: String,
        /// Accept the key only from this network (CIDR, e.g. 10.0.0.0/8); repeat for several.
        #[arg(long = "allow-ip", value_name = "CIDR")]
        allow_ip: Vec<ipnet::IpNet>,
        /// Requests per minute the key may make (to each api process).
        #[arg(long, default_value_t = crate::security::api_keys::DEFAULT_RATE_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..))]
        rate_per_minute: u32,
    },
    /// List the keys (id, name, networks, created, revoked); never the keys themselves.
    List,
    /// Revoke a key by its id: it is refused from then on.
    Revoke {
        /// The key's id, as `list` shows it.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_role_and_operator_command_is_a_subcommand_with_help() {
        let cli = Cli::command();
        for name in [
            "all",
            "api",
            "poller",
            "caller",
            "finalizer",
            "sms",
            "setup",
            "admin",
            "parse-email",
            "script",
        ] {
            let sub = cli
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no `{name}` subcommand"));
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(about.len() > 20, "`{name}` has no useful --help: {about:?}");
        }
    }

    #[test]
    fn config_flag_is_global() {
        let cli = Cli::try_parse_from(["leadq", "setup", "--config", "x.toml"]).expect("parses");
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
    }
}
