//! Settings in layers: embedded defaults, then an optional TOML file, then `LEADQ_*` environment
//! variables (nested keys with `__`, e.g. `LEADQ_BUS__MAX_DELIVER`). Loaded and validated once at
//! start, so a bad value stops the process with one line that names the setting. serde reads each
//! value into its type (durations as `30s`, URLs, addresses); each section's file checks what
//! only makes sense together.

mod admin;
mod airtable;
mod bus;
mod calendly;
mod calling;
mod imap;
mod spanish;
mod store;
mod transfer;
mod twilio;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

pub use admin::AdminSettings;
pub use airtable::{AirtableSettings, default_crm_fields};
pub use bus::{BusSettings, Concurrency, server_addrs};
pub use calendly::CalendlySettings;
pub use calling::PHONE_MEMORY;
pub use imap::{ImapAuth, ImapSettings};
pub use spanish::SpanishSettings;
pub use store::DbLocation;
pub use twilio::TwilioSettings;

/// What went wrong while reading the settings; always names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {setting}: {reason}")]
    Invalid { setting: &'static str, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            setting,
            reason: reason.into(),
        }
    }
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        // Name each bad key as the environment variable that sets it, whichever layer it came from.
        let lines: Vec<String> = err
            .into_iter()
            .map(|e| {
                let source = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
                if e.path.is_empty() {
                    format!("{} ({source})", e.kind)
                } else {
                    let var = format!("LEADQ_{}", e.path.join("__")).to_uppercase();
                    format!("{var}: {} (from {source})", e.kind)
                }
            })
            .collect();
        Self::Parse(lines.join("; "))
    }
}

/// Keys whose values are text even when they look like numbers or booleans (phone numbers, ids,
/// secrets); the environment layer would otherwise parse them.
const VERBATIM: &[&str] = &[
    "twilio.from_number",
    "transfer.roster",
    "transfer.time_zone",
    "twilio.account_sid",
    "twilio.auth_token",
    "airtable.token",
    "airtable.base_id",
    "calendly.signing_key",
    "calendly.token",
    "imap.username",
    "imap.password",
    "db_user",
    "db_pass",
    "instance",
    "master_key",
    "master_key_previous",
    "jwt_secret",
];

/// The shape read from the layers, before the checks that span several values.
#[derive(Debug, Serialize, Deserialize)]
struct RawSettings {
    nats_url: String,
    data_dir: PathBuf,
    db: Option<String>,
    db_user: Option<String>,
    db_pass: Option<String>,
    #[serde(with = "humantime_serde")]
    db_query_deadline: Duration,
    http_addr: String,
    public_url: Option<Url>,
    log: String,
    log_format: LogFormat,
    otlp_endpoint: Option<String>,
    instance: Option<String>,
    #[serde(with = "humantime_serde")]
    shutdown_grace: Duration,
    max_body_bytes: usize,
    default_region: String,
    bus: BusSettings,
    concurrency: Concurrency,
    #[serde(deserialize_with = "switch")]
    sandbox: Option<bool>,
    #[serde(with = "humantime_serde")]
    resubmit_window: Duration,
    unbounce: UnbounceSettings,
    imap: imap::RawImap,
    twilio_api_base: Url,
    twilio: twilio::RawTwilio,
    calling_hours: calling::RawCallingHours,
    transfer: transfer::RawTransfer,
    spanish: SpanishSettings,
    calendly_url: Url,
    calendly: calendly::RawCalendly,
    calendly_api_base: Url,
    sms_template: String,
    airtable_api_base: Url,
    airtable: airtable::RawAirtable,
    #[serde(with = "humantime_serde")]
    call_watchdog: Duration,
    #[serde(with = "humantime_serde")]
    call_reconcile_after: Duration,
    #[serde(with = "bus::duration_list")]
    retry_ladder: Vec<Duration>,
    #[serde(with = "bus::duration_list")]
    followups: Vec<Duration>,
    followup_template: String,
    #[serde(with = "humantime_serde")]
    followup_recheck: Duration,
    #[serde(with = "humantime_serde")]
    status_interval: Duration,
    master_key: Option<String>,
    master_key_previous: Option<String>,
    jwt_secret: Option<String>,
    admin: AdminSettings,
}

impl Default for RawSettings {
    fn default() -> Self {
        let url = |text: &str| Url::parse(text).expect("a default URL");
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            data_dir: PathBuf::from("./data"),
            db: None,
            db_user: None,
            db_pass: None,
            db_query_deadline: Duration::from_secs(15),
            http_addr: "127.0.0.1:8000".into(),
            public_url: None,
            log: "info,leadq=info".into(),
            log_format: LogFormat::Pretty,
            otlp_endpoint: None,
            instance: None,
            shutdown_grace: Duration::from_secs(20),
            max_body_bytes: 1024 * 1024,
            default_region: "US".into(),
            bus: BusSettings::default(),
            concurrency: Concurrency::default(),
            sandbox: None,
            resubmit_window: Duration::from_secs(24 * 3600),
            unbounce: UnbounceSettings::default(),
            imap: imap::RawImap::default(),
            twilio_api_base: url("https://api.twilio.com"),
            twilio: twilio::RawTwilio::default(),
            calling_hours: calling::RawCallingHours::default(),
            transfer: transfer::RawTransfer::default(),
            spanish: SpanishSettings::default(),
            calendly_url: url("https://calendly.com/meshcowork/tour"),
            calendly: calendly::RawCalendly::default(),
            calendly_api_base: url("https://api.calendly.com"),
            sms_template: "Hi {name}, thanks for your interest in Mesh Cowork! Book your tour here: {link}".into(),
            airtable_api_base: url("https://api.airtable.com"),
            airtable: airtable::RawAirtable::default(),
            call_watchdog: Duration::from_secs(2 * 3600),
            call_reconcile_after: Duration::from_secs(3 * 60),
            retry_ladder: vec![Duration::from_secs(30 * 60), Duration::from_secs(2 * 3600)],
            followups: vec![Duration::from_secs(24 * 3600), Duration::from_secs(72 * 3600)],
            followup_template: "Hi {name}, still keen to see Mesh Cowork? Pick a time for your tour: {link}".into(),
            followup_recheck: Duration::from_secs(3600),
            status_interval: Duration::from_secs(10),
            master_key: None,
            master_key_previous: None,
            jwt_secret: None,
            admin: AdminSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Unbounce's form-submit webhook (`POST /webhooks/unbounce/{token}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnbounceSettings {
    /// When set, only these networks may post form submissions (Unbounce does not sign them).
    pub allow: Vec<ipnet::IpNet>,
}

/// An on/off setting as people write it in the environment: `1`/`0`, `true`/`false`,
/// `yes`/`no`, `on`/`off` (figment reads `LEADQ_SANDBOX=0` as a number, not a boolean).
fn switch<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Flag(bool),
        Number(u64),
        Word(String),
    }
    let written: Option<Written> = Option::deserialize(deserializer)?;
    match written {
        None => Ok(None),
        Some(Written::Flag(on)) => Ok(Some(on)),
        Some(Written::Number(n @ (0 | 1))) => Ok(Some(n == 1)),
        Some(Written::Word(word)) => match word.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            "" => Ok(None),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not on or off (use 1 or 0)"
            ))),
        },
        Some(Written::Number(n)) => Err(serde::de::Error::custom(format!("`{n}` is not on or off (use 1 or 0)"))),
    }
}

/// Validated settings; every role reads only these.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nats_url: String,
    pub data_dir: PathBuf,
    pub db: DbLocation,
    pub db_user: Option<String>,
    pub db_pass: Option<SecretString>,
    /// How long a store query may go unanswered before its server connection is replaced.
    pub db_query_deadline: Duration,
    pub http_addr: SocketAddr,
    pub public_url: Url,
    pub log: String,
    pub log_format: LogFormat,
    pub otlp_endpoint: Option<Url>,
    /// Names this process in `agent.status` and logs; several replicas of a role differ here.
    pub instance: String,
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
    /// Country whose numbering a phone number without a country code is read in.
    pub default_region: phonenumber::country::Id,
    pub bus: BusSettings,
    pub concurrency: Concurrency,
    /// `LEADQ_SANDBOX`: `true` points every outside service without a live configuration at the
    /// in-process stand-ins, `false` never does; unset, `leadq all` does.
    pub sandbox: Option<bool>,
    /// A phone number that already has a lead this recently is not called again; the new
    /// submission is recorded on the first lead.
    pub resubmit_window: Duration,
    pub unbounce: UnbounceSettings,
    /// `None` until `LEADQ_IMAP__HOST` is set: the poller has no inbox to read.
    pub imap: Option<ImapSettings>,
    pub twilio: TwilioSettings,
    /// Leads are called only inside this window of their local time.
    pub calling_hours: crate::domain::calling_hours::CallingHours,
    /// The reps a qualified lead may be put through to, as first given; the saved one (Settings
    /// page) wins once there is one.
    pub transfer: crate::domain::roster::Roster,
    /// Which leads are called in Spanish, and their texts.
    pub spanish: SpanishSettings,
    /// The booking page the SMS links to, prefilled with the lead's name and email.
    pub calendly_url: Url,
    /// Calendly's webhooks: who booked.
    pub calendly: CalendlySettings,
    /// The SMS text; `{name}` and `{link}` are filled in.
    pub sms_template: String,
    pub airtable: AirtableSettings,
    /// A placed call with no final status callback after this long is finalized anyway.
    pub call_watchdog: Duration,
    /// A placed call with no news for this long is looked up at Twilio (`GET Calls/{Sid}.json`):
    /// its end is learnt there when the status callback was lost.
    pub call_reconcile_after: Duration,
    /// Waits before calling again after a busy line or no answer; when they run out, `no_answer`.
    pub retry_ladder: Vec<Duration>,
    /// `LEADQ_FOLLOWUPS`: after the first text, a follow-up text this long after it, for each
    /// step (inside calling hours), until the lead books, says STOP or is handed to a person.
    pub followups: Vec<Duration>,
    /// The follow-up text (`{name}`, `{link}`, as `LEADQ_SMS_TEMPLATE`).
    pub followup_template: String,
    /// How often a waiting follow-up looks at the clock again, at most.
    pub followup_recheck: Duration,
    /// How often every process publishes `agent.status` (and at once on a state change).
    pub status_interval: Duration,
    /// AES-256-GCM key for credentials (64 hex digits); `None`: read or made in the data directory.
    pub master_key: Option<SecretString>,
    /// The key before the last rotation, so values not yet re-encrypted stay readable.
    pub master_key_previous: Option<SecretString>,
    /// HS256 secret for login tokens; `None`: read or made in the data directory.
    pub jwt_secret: Option<SecretString>,
    pub admin: AdminSettings,
}

impl Settings {
    /// Reads the layers; `file` is the `--config` path (a missing explicit file is an error).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Invalid {
                    setting: "--config",
                    reason: format!("{} is not a readable file", path.display()),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = || Env::prefixed("LEADQ_").split("__");
        figment = figment.merge(env().ignore(VERBATIM));
        // Text by nature: kept as typed, so `+15005550006` is not read as the number 15005550006.
        for (key, value) in env().only(VERBATIM).iter() {
            figment = figment.merge(Serialized::default(key.as_str(), value));
        }
        let raw: RawSettings = figment.extract()?;
        Self::validate(raw)
    }

    /// Defaults with an in-memory store and the given NATS server; for tests and tools.
    pub fn for_tests(nats_url: &str) -> Self {
        let mut settings = Self::validate(RawSettings::default()).expect("the embedded defaults are valid");
        settings.nats_url = nats_url.into();
        settings.db = DbLocation::Memory;
        // Keys of its own, so tests never touch a data directory's key files.
        let random_hex = || {
            rand::random::<[u8; 32]>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        settings.master_key = Some(SecretString::from(random_hex()));
        settings.jwt_secret = Some(SecretString::from(random_hex()));
        settings
    }

    fn validate(raw: RawSettings) -> Result<Self, ConfigError> {
        let http_addr: SocketAddr = raw.http_addr.parse().map_err(|_| {
            ConfigError::invalid(
                "LEADQ_HTTP_ADDR",
                format!("`{}` is not an address such as 127.0.0.1:8000", raw.http_addr),
            )
        })?;
        server_addrs(&raw.nats_url).map_err(|reason| ConfigError::invalid("LEADQ_NATS_URL", reason))?;
        let db = match raw.db.as_deref() {
            Some(db) => DbLocation::parse(db).map_err(|reason| ConfigError::invalid("LEADQ_DB", reason))?,
            None => DbLocation::File(raw.data_dir.join("db")),
        };
        let public_url = match raw.public_url {
            Some(url) => url,
            None => Url::parse(&format!("http://{http_addr}"))
                .map_err(|e| ConfigError::invalid("LEADQ_HTTP_ADDR", e.to_string()))?,
        };
        let otlp_endpoint = raw
            .otlp_endpoint
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| Url::parse(s).map_err(|e| ConfigError::invalid("LEADQ_OTLP_ENDPOINT", format!("`{s}`: {e}"))))
            .transpose()?;
        tracing_subscriber::EnvFilter::try_new(&raw.log)
            .map_err(|e| ConfigError::invalid("LEADQ_LOG", format!("`{}`: {e}", raw.log)))?;
        let default_region = crate::domain::lead::parse_region(&raw.default_region).ok_or_else(|| {
            ConfigError::invalid(
                "LEADQ_DEFAULT_REGION",
                format!("`{}` is not a region code such as US or GB", raw.default_region),
            )
        })?;
        for (setting, template) in [
            ("LEADQ_SMS_TEMPLATE", &raw.sms_template),
            ("LEADQ_FOLLOWUP_TEMPLATE", &raw.followup_template),
            ("LEADQ_SPANISH__SMS_TEMPLATE", &raw.spanish.sms_template),
            ("LEADQ_SPANISH__FOLLOWUP_TEMPLATE", &raw.spanish.followup_template),
        ] {
            if !template.contains("{link}") {
                return Err(ConfigError::invalid(
                    setting,
                    "must contain {link}, where the booking link goes",
                ));
            }
        }
        // Each step waits on the LEADS stream, which forgets messages older than its retention.
        if raw.followups.windows(2).any(|w| w[0] >= w[1])
            || raw.followups.iter().any(|d| d.is_zero() || *d >= raw.bus.retention)
        {
            return Err(ConfigError::invalid(
                "LEADQ_FOLLOWUPS",
                format!(
                    "must be increasing waits after the first text, each under the bus retention ({})",
                    humantime::format_duration(raw.bus.retention)
                ),
            ));
        }
        if raw.followup_recheck.is_zero() {
            return Err(ConfigError::invalid("LEADQ_FOLLOWUP_RECHECK", "must be more than 0s"));
        }
        calling::check_resubmit_window(raw.resubmit_window)?;
        let twilio = TwilioSettings::from_raw(raw.twilio_api_base, raw.twilio)?;
        raw.bus.check(twilio.slowest_request())?;
        raw.admin.check()?;
        let secret = |value: Option<String>| value.filter(|s| !s.is_empty()).map(SecretString::from);
        Ok(Self {
            nats_url: raw.nats_url,
            data_dir: raw.data_dir,
            db,
            db_user: raw.db_user,
            db_pass: raw.db_pass.map(SecretString::from),
            db_query_deadline: raw.db_query_deadline,
            http_addr,
            public_url,
            log: raw.log,
            log_format: raw.log_format,
            otlp_endpoint,
            instance: raw.instance.unwrap_or_else(default_instance),
            shutdown_grace: raw.shutdown_grace,
            max_body_bytes: raw.max_body_bytes,
            default_region,
            bus: raw.bus,
            concurrency: raw.concurrency,
            sandbox: raw.sandbox,
            resubmit_window: raw.resubmit_window,
            unbounce: raw.unbounce,
            imap: ImapSettings::from_raw(raw.imap)?,
            twilio,
            calling_hours: raw.calling_hours.read()?,
            transfer: raw.transfer.read()?,
            spanish: raw.spanish,
            calendly_url: raw.calendly_url,
            calendly: CalendlySettings::from_raw(raw.calendly_api_base, raw.calendly)?,
            sms_template: raw.sms_template,
            airtable: AirtableSettings::from_raw(raw.airtable_api_base, raw.airtable)?,
            call_watchdog: raw.call_watchdog,
            call_reconcile_after: raw.call_reconcile_after,
            retry_ladder: raw.retry_ladder,
            followups: raw.followups,
            followup_template: raw.followup_template,
            followup_recheck: raw.followup_recheck,
            status_interval: raw.status_interval,
            master_key: secret(raw.master_key),
            master_key_previous: secret(raw.master_key_previous),
            jwt_secret: secret(raw.jwt_secret),
            admin: raw.admin,
        })
    }
}

fn default_instance() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests;
