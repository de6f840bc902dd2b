//! Settings in layers: embedded defaults, then an optional TOML file, then `LEADQ_*` environment
//! variables (nested keys with `__`, e.g. `LEADQ_BUS__MAX_DELIVER`). Loaded and validated once at
//! start, so a bad value stops the process with one line that names the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

/// What went wrong while reading the settings; always names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {setting}: {reason}")]
    Invalid { setting: &'static str, reason: String },
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
    "twilio.account_sid",
    "twilio.auth_token",
    "airtable.token",
    "airtable.base_id",
    "imap.username",
    "imap.password",
    "db_user",
    "db_pass",
    "instance",
    "master_key",
    "master_key_previous",
    "jwt_secret",
];

/// The raw shape read from the layers, before it is checked.
#[derive(Debug, Serialize, Deserialize)]
struct RawSettings {
    nats_url: String,
    data_dir: PathBuf,
    db: Option<String>,
    db_user: Option<String>,
    db_pass: Option<String>,
    db_query_deadline: String,
    http_addr: String,
    public_url: Option<String>,
    log: String,
    log_format: LogFormat,
    otlp_endpoint: Option<String>,
    instance: Option<String>,
    shutdown_grace: String,
    max_body_bytes: usize,
    default_region: String,
    bus: BusSettings,
    concurrency: Concurrency,
    #[serde(deserialize_with = "switch")]
    sandbox: Option<bool>,
    resubmit_window: String,
    unbounce: UnbounceSettings,
    imap: RawImap,
    twilio_api_base: String,
    twilio: RawTwilio,
    calling_hours: RawCallingHours,
    calendly_url: String,
    sms_template: String,
    airtable_api_base: String,
    airtable: RawAirtable,
    call_watchdog: String,
    call_reconcile_after: String,
    retry_ladder: Vec<String>,
    status_interval: String,
    master_key: Option<String>,
    master_key_previous: Option<String>,
    jwt_secret: Option<String>,
    admin: RawAdmin,
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            data_dir: PathBuf::from("./data"),
            db: None,
            db_user: None,
            db_pass: None,
            db_query_deadline: "15s".into(),
            http_addr: "127.0.0.1:8000".into(),
            public_url: None,
            log: "info,leadq=info".into(),
            log_format: LogFormat::Pretty,
            otlp_endpoint: None,
            instance: None,
            shutdown_grace: "20s".into(),
            max_body_bytes: 1024 * 1024,
            default_region: "US".into(),
            bus: BusSettings::default(),
            concurrency: Concurrency::default(),
            sandbox: None,
            resubmit_window: "24h".into(),
            unbounce: UnbounceSettings::default(),
            imap: RawImap::default(),
            twilio_api_base: "https://api.twilio.com".into(),
            twilio: RawTwilio::default(),
            calling_hours: RawCallingHours::default(),
            calendly_url: "https://calendly.com/meshcowork/tour".into(),
            sms_template: "Hi {name}, thanks for your interest in Mesh Cowork! Book your tour here: {link}".into(),
            airtable_api_base: "https://api.airtable.com".into(),
            airtable: RawAirtable::default(),
            call_watchdog: "2h".into(),
            call_reconcile_after: "3m".into(),
            retry_ladder: vec!["30m".into(), "2h".into()],
            status_interval: "10s".into(),
            master_key: None,
            master_key_previous: None,
            jwt_secret: None,
            admin: RawAdmin::default(),
        }
    }
}

/// The admin page and its API, as read from the layers; validated into [`AdminSettings`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct RawAdmin {
    token_ttl: String,
    login_max_failures: u32,
    login_lockout: String,
    login_per_minute: u32,
    cors_origins: Vec<String>,
    frontend_dir: PathBuf,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            token_ttl: "24h".into(),
            login_max_failures: 10,
            login_lockout: "5m".into(),
            login_per_minute: 30,
            cors_origins: Vec::new(),
            frontend_dir: PathBuf::from("frontend/dist"),
        }
    }
}

/// The admin page and its API.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// How long a login token is valid.
    pub token_ttl: Duration,
    /// Wrong passwords in a row (per user and per address) before logins are refused for `login_lockout`.
    pub login_max_failures: u32,
    pub login_lockout: Duration,
    /// Login attempts one address may make per minute, right or wrong.
    pub login_per_minute: u32,
    /// Browser origins allowed to call the API from another site; none by default.
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// The built admin page, served at `/`.
    pub frontend_dir: PathBuf,
}

/// The lead inbox as read from the layers; validated into [`ImapSettings`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct RawImap {
    host: Option<String>,
    port: Option<u16>,
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    auth: ImapAuth,
    mailbox: String,
    fallback_interval: String,
    idle_timeout: String,
    retry_base: String,
    retry_max: String,
}

impl Default for RawImap {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: true,
            username: None,
            password: None,
            auth: ImapAuth::Password,
            mailbox: "INBOX".into(),
            fallback_interval: "30s".into(),
            idle_timeout: "25m".into(),
            retry_base: "1s".into(),
            retry_max: "60s".into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct RawAirtable {
    token: Option<String>,
    base_id: Option<String>,
    table: String,
    fields: std::collections::BTreeMap<String, String>,
    poll: String,
}

impl Default for RawAirtable {
    fn default() -> Self {
        Self {
            token: None,
            base_id: None,
            table: "Leads".into(),
            fields: Default::default(),
            poll: "5s".into(),
        }
    }
}

/// Airtable, the CRM: where finalized leads are upserted on their lead id.
#[derive(Debug, Clone)]
pub struct AirtableSettings {
    /// `LEADQ_AIRTABLE_API_BASE`: Airtable's API, or a stand-in in tests.
    pub api_base: Url,
    /// A personal access token with write access to the base.
    pub token: Option<SecretString>,
    pub base_id: Option<String>,
    pub table: String,
    /// Column name for each lead field, the defaults overridden by `LEADQ_AIRTABLE__FIELDS__<FIELD>`.
    pub fields: std::collections::BTreeMap<String, String>,
    /// How often unsynced leads are looked for, besides after each finalized lead.
    pub poll: Duration,
}

/// The calling window, in each lead's own time zone.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct RawCallingHours {
    start: String,
    end: String,
    timezone: String,
}

impl Default for RawCallingHours {
    fn default() -> Self {
        Self {
            start: "08:00".into(),
            end: "21:00".into(),
            timezone: "America/New_York".into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct RawTwilio {
    account_sid: Option<String>,
    auth_token: Option<String>,
    from_number: Option<String>,
    confidence_threshold: f32,
    request_timeout: String,
    max_in_flight: usize,
}

impl Default for RawTwilio {
    fn default() -> Self {
        Self {
            account_sid: None,
            auth_token: None,
            from_number: None,
            confidence_threshold: 0.4,
            request_timeout: "15s".into(),
            max_in_flight: 32,
        }
    }
}

/// Twilio: the REST API the caller and SMS roles use, and the token that signs its webhooks.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// `LEADQ_TWILIO_API_BASE`: Twilio's API, or a stand-in in tests.
    pub api_base: Url,
    pub account_sid: Option<String>,
    /// Signs every webhook; without it every webhook is refused.
    pub auth_token: Option<SecretString>,
    pub from_number: Option<String>,
    /// Speech recognised with less confidence than this counts as not heard.
    pub confidence_threshold: f32,
    /// A REST request unanswered after this is ambiguous (Twilio may have acted).
    pub request_timeout: Duration,
    /// `Calls.json` requests one process keeps in flight at once; Twilio queues calls above the
    /// account's calls-per-second itself, so this only bounds the open connections.
    pub max_in_flight: usize,
}

/// How the poller signs in: an app password (LOGIN) or an OAuth2 access token (XOAUTH2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapAuth {
    Password,
    Xoauth2,
}

/// The lead inbox (Gmail: imap.gmail.com:993 over TLS with an app password or an OAuth2 token).
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    /// Plain TCP is allowed only to a loopback host (a local test server).
    pub tls: bool,
    pub username: String,
    /// The app password, or the OAuth2 access token with `auth = "xoauth2"`.
    pub password: SecretString,
    pub auth: ImapAuth,
    pub mailbox: String,
    /// How often to search for unseen mail besides IDLE pushes (and instead of them without IDLE).
    pub fallback_interval: Duration,
    /// Re-issue IDLE this often; servers drop an IDLE after 30 minutes.
    pub idle_timeout: Duration,
    /// First reconnect delay; doubles per failure (with jitter) up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Delivery limits of the durable consumers and storage of the streams; what `leadq setup` applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BusSettings {
    /// How many times JetStream delivers a message before the consumer gives up on it.
    pub max_deliver: i64,
    /// Wait before each redelivery of a message that was not acked (the first also serves as ack wait).
    #[serde(with = "duration_list")]
    pub backoff: Vec<Duration>,
    /// Stream and bucket copies kept by a JetStream cluster (1 for a single server, 3 in production).
    pub replicas: usize,
    /// How long `lead.*` and `call.*` messages are kept in their streams.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped by the server.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// The longest one handler may work on a message (its deadline is extended meanwhile); past
    /// it the message is delivered again. Must exceed the outside requests' own timeouts.
    #[serde(with = "humantime_serde")]
    pub max_handling: Duration,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            max_deliver: 10,
            backoff: [5, 30, 60, 300, 900].map(Duration::from_secs).to_vec(),
            replicas: 1,
            retention: Duration::from_secs(14 * 24 * 3600),
            duplicate_window: Duration::from_secs(24 * 3600),
            max_handling: Duration::from_secs(300),
        }
    }
}

/// Messages each role's consume loop handles at once, per process (`LEADQ_CONCURRENCY__CALLER`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Concurrency {
    pub caller: usize,
    pub finalizer: usize,
    pub sms: usize,
    pub activity: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            caller: 32,
            finalizer: 32,
            sms: 32,
            activity: 32,
        }
    }
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

/// Where the store lives; parsed from `LEADQ_DB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    Memory,
    File(PathBuf),
    Server(Url),
}

impl DbLocation {
    /// The endpoint string SurrealDB's `any` engine understands.
    pub fn endpoint(&self) -> String {
        match self {
            Self::Memory => "mem://".into(),
            Self::File(path) => format!("surrealkv://{}", path.display()),
            Self::Server(url) => url.to_string(),
        }
    }

    fn parse(raw: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(format!(
                "`{raw}` is not a URL; use mem://, surrealkv://PATH or ws://HOST:PORT"
            ));
        };
        match scheme {
            "mem" | "memory" => Ok(Self::Memory),
            "surrealkv" if rest.is_empty() => Err("surrealkv:// needs a path".into()),
            "surrealkv" => Ok(Self::File(PathBuf::from(rest))),
            "ws" | "wss" => Url::parse(raw).map(Self::Server).map_err(|e| format!("`{raw}`: {e}")),
            other => Err(format!(
                "unsupported scheme `{other}`; use mem://, surrealkv://PATH, ws:// or wss://"
            )),
        }
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
    /// The booking page the SMS links to, prefilled with the lead's name and email.
    pub calendly_url: Url,
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
        let invalid = |setting, reason: String| ConfigError::Invalid { setting, reason };
        let http_addr: SocketAddr = raw.http_addr.parse().map_err(|_| {
            invalid(
                "LEADQ_HTTP_ADDR",
                format!("`{}` is not an address such as 127.0.0.1:8000", raw.http_addr),
            )
        })?;
        server_addrs(&raw.nats_url).map_err(|reason| invalid("LEADQ_NATS_URL", reason))?;
        let db = match raw.db.as_deref() {
            Some(db) => DbLocation::parse(db).map_err(|reason| invalid("LEADQ_DB", reason))?,
            None => DbLocation::File(raw.data_dir.join("db")),
        };
        let public_url = match raw.public_url.as_deref() {
            Some(url) => Url::parse(url).map_err(|e| invalid("LEADQ_PUBLIC_URL", format!("`{url}`: {e}")))?,
            None => {
                Url::parse(&format!("http://{http_addr}")).map_err(|e| invalid("LEADQ_HTTP_ADDR", e.to_string()))?
            }
        };
        let otlp_endpoint = raw
            .otlp_endpoint
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| Url::parse(s).map_err(|e| invalid("LEADQ_OTLP_ENDPOINT", format!("`{s}`: {e}"))))
            .transpose()?;
        let shutdown_grace = duration("LEADQ_SHUTDOWN_GRACE", &raw.shutdown_grace)?;
        if raw.bus.max_deliver < 1 || (raw.bus.max_deliver as usize) <= raw.bus.backoff.len() {
            return Err(invalid(
                "LEADQ_BUS__MAX_DELIVER",
                format!(
                    "{} must be greater than the number of back-off steps ({})",
                    raw.bus.max_deliver,
                    raw.bus.backoff.len()
                ),
            ));
        }
        if raw.bus.replicas == 0 || raw.bus.replicas > 5 {
            return Err(invalid(
                "LEADQ_BUS__REPLICAS",
                format!("{} is not 1 to 5", raw.bus.replicas),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&raw.log)
            .map_err(|e| invalid("LEADQ_LOG", format!("`{}`: {e}", raw.log)))?;
        let default_region = crate::domain::lead::parse_region(&raw.default_region).ok_or_else(|| {
            invalid(
                "LEADQ_DEFAULT_REGION",
                format!("`{}` is not a region code such as US or GB", raw.default_region),
            )
        })?;
        let imap = validate_imap(raw.imap)?;
        let calling_hours = validate_calling_hours(&raw.calling_hours)?;
        let calendly_url = Url::parse(&raw.calendly_url)
            .map_err(|e| invalid("LEADQ_CALENDLY_URL", format!("`{}`: {e}", raw.calendly_url)))?;
        let mut fields = default_crm_fields();
        for (field, column) in raw.airtable.fields {
            if !fields.contains_key(&field) {
                return Err(invalid(
                    "LEADQ_AIRTABLE__FIELDS",
                    format!("`{field}` is not a lead field"),
                ));
            }
            fields.insert(field, column);
        }
        let airtable = AirtableSettings {
            api_base: Url::parse(&raw.airtable_api_base)
                .map_err(|e| invalid("LEADQ_AIRTABLE_API_BASE", format!("`{}`: {e}", raw.airtable_api_base)))?,
            token: raw.airtable.token.filter(|t| !t.is_empty()).map(SecretString::from),
            base_id: raw.airtable.base_id.filter(|b| !b.is_empty()),
            table: raw.airtable.table,
            fields,
            poll: duration("LEADQ_AIRTABLE__POLL", &raw.airtable.poll)?,
        };
        if !raw.sms_template.contains("{link}") {
            return Err(invalid(
                "LEADQ_SMS_TEMPLATE",
                "must contain {link}, where the booking link goes".into(),
            ));
        }
        let twilio = TwilioSettings {
            api_base: Url::parse(&raw.twilio_api_base)
                .map_err(|e| invalid("LEADQ_TWILIO_API_BASE", format!("`{}`: {e}", raw.twilio_api_base)))?,
            account_sid: raw.twilio.account_sid.filter(|s| !s.is_empty()),
            auth_token: raw.twilio.auth_token.filter(|s| !s.is_empty()).map(SecretString::from),
            from_number: raw.twilio.from_number.filter(|s| !s.is_empty()),
            confidence_threshold: raw.twilio.confidence_threshold,
            request_timeout: duration("LEADQ_TWILIO__REQUEST_TIMEOUT", &raw.twilio.request_timeout)?,
            max_in_flight: raw.twilio.max_in_flight.max(1),
        };
        // A handler may retry a Twilio request a few times (the Twilio client's QUICK_RETRIES);
        // the loop's bound must leave room for all of them, or slow answers would be cut short.
        let slowest_request = twilio.request_timeout * 4 + Duration::from_secs(5);
        if raw.bus.max_handling <= slowest_request {
            return Err(invalid(
                "LEADQ_BUS__MAX_HANDLING",
                format!(
                    "{} must exceed {} (four tries of LEADQ_TWILIO__REQUEST_TIMEOUT and their back-off)",
                    humantime::format_duration(raw.bus.max_handling),
                    humantime::format_duration(slowest_request)
                ),
            ));
        }
        if raw
            .bus
            .backoff
            .first()
            .is_some_and(|first| *first < Duration::from_secs(1))
        {
            return Err(invalid(
                "LEADQ_BUS__BACKOFF",
                "the first step is the ack wait and must be at least 1s".into(),
            ));
        }
        if !(0.0..=1.0).contains(&twilio.confidence_threshold) {
            return Err(invalid(
                "LEADQ_TWILIO__CONFIDENCE_THRESHOLD",
                "must be between 0 and 1".into(),
            ));
        }
        let instance = raw.instance.unwrap_or_else(default_instance);
        let secret = |value: Option<String>| value.filter(|s| !s.is_empty()).map(SecretString::from);
        let cors_origins = raw
            .admin
            .cors_origins
            .iter()
            .map(|origin| {
                Url::parse(origin)
                    .ok()
                    .filter(|url| url.origin().is_tuple())
                    .and_then(|url| axum::http::HeaderValue::from_str(&url.origin().ascii_serialization()).ok())
                    .ok_or_else(|| {
                        invalid(
                            "LEADQ_ADMIN__CORS_ORIGINS",
                            format!("`{origin}` is not an origin such as https://admin.example.com"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        if raw.admin.login_max_failures == 0 || raw.admin.login_per_minute == 0 {
            return Err(invalid(
                "LEADQ_ADMIN__LOGIN_MAX_FAILURES",
                "login limits must be at least 1".into(),
            ));
        }
        let admin = AdminSettings {
            token_ttl: duration("LEADQ_ADMIN__TOKEN_TTL", &raw.admin.token_ttl)?,
            login_max_failures: raw.admin.login_max_failures,
            login_lockout: duration("LEADQ_ADMIN__LOGIN_LOCKOUT", &raw.admin.login_lockout)?,
            login_per_minute: raw.admin.login_per_minute,
            cors_origins,
            frontend_dir: raw.admin.frontend_dir,
        };
        Ok(Self {
            nats_url: raw.nats_url,
            data_dir: raw.data_dir,
            db,
            db_user: raw.db_user,
            db_pass: raw.db_pass.map(SecretString::from),
            db_query_deadline: duration("LEADQ_DB_QUERY_DEADLINE", &raw.db_query_deadline)?,
            http_addr,
            public_url,
            log: raw.log,
            log_format: raw.log_format,
            otlp_endpoint,
            instance,
            shutdown_grace,
            max_body_bytes: raw.max_body_bytes,
            default_region,
            bus: raw.bus,
            concurrency: raw.concurrency,
            sandbox: raw.sandbox,
            resubmit_window: resubmit_window(&raw.resubmit_window)?,
            unbounce: raw.unbounce,
            imap,
            twilio,
            calling_hours,
            calendly_url,
            sms_template: raw.sms_template,
            airtable,
            call_watchdog: duration("LEADQ_CALL_WATCHDOG", &raw.call_watchdog)?,
            call_reconcile_after: duration("LEADQ_CALL_RECONCILE_AFTER", &raw.call_reconcile_after)?,
            retry_ladder: raw
                .retry_ladder
                .iter()
                .map(|step| duration("LEADQ_RETRY_LADDER", step))
                .collect::<Result<_, _>>()?,
            status_interval: duration("LEADQ_STATUS_INTERVAL", &raw.status_interval)?,
            master_key: secret(raw.master_key),
            master_key_previous: secret(raw.master_key_previous),
            jwt_secret: secret(raw.jwt_secret),
            admin,
        })
    }
}

fn duration(setting: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(raw).map_err(|e| ConfigError::Invalid {
        setting,
        reason: format!("`{raw}`: {e}"),
    })
}

/// Column names in Airtable for each field of a lead record (`LEADQ_AIRTABLE__FIELDS__<FIELD>`).
pub fn default_crm_fields() -> std::collections::BTreeMap<String, String> {
    [
        ("lead_id", "Lead ID"),
        ("name", "Name"),
        ("email", "Email"),
        ("phone", "Phone"),
        ("office_space", "Office Space"),
        ("message", "Message"),
        ("campaign_id", "Campaign"),
        ("page_name", "Landing Page"),
        ("variant", "Variant"),
        ("space_type", "Space Type"),
        ("team_size", "Team Size"),
        ("move_in", "Move In"),
        ("budget", "Monthly Budget"),
        ("decision_maker", "Decision Maker"),
        ("score", "Score"),
        ("verdict", "Verdict"),
        ("reasons", "Reasons"),
        ("speed_to_lead_secs", "Speed To Lead (s)"),
        ("call_status", "Call Status"),
        ("submitted_at", "Submitted At"),
        ("call_placed_at", "Called At"),
        ("resubmissions", "Resubmissions"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The servers of `LEADQ_NATS_URL`: one URL, or several separated by commas (the nodes of a
/// cluster), so a process whose first seed is down still connects through another.
pub fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            if url.contains(char::is_whitespace) {
                return Err(format!("`{url}` is not a NATS URL"));
            }
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("`{url}` is not a NATS URL: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(format!("`{urls}` names no NATS server"));
    }
    Ok(addrs)
}

/// How long the `phones` bucket keeps a number's first lead; the resubmit window can be at most this.
pub const PHONE_MEMORY: Duration = Duration::from_secs(90 * 24 * 3600);

/// The `phones` bucket remembers a number for [`PHONE_MEMORY`]; a longer window could not be kept.
fn resubmit_window(raw: &str) -> Result<Duration, ConfigError> {
    let window = duration("LEADQ_RESUBMIT_WINDOW", raw)?;
    if window > PHONE_MEMORY {
        return Err(ConfigError::Invalid {
            setting: "LEADQ_RESUBMIT_WINDOW",
            reason: format!("`{raw}` is longer than the 90 days a number is remembered"),
        });
    }
    Ok(window)
}

fn validate_calling_hours(raw: &RawCallingHours) -> Result<crate::domain::calling_hours::CallingHours, ConfigError> {
    let time = |setting: &'static str, value: &str| {
        value.parse::<jiff::civil::Time>().map_err(|e| ConfigError::Invalid {
            setting,
            reason: format!("`{value}` is not a time such as 08:00: {e}"),
        })
    };
    let start = time("LEADQ_CALLING_HOURS__START", &raw.start)?;
    let end = time("LEADQ_CALLING_HOURS__END", &raw.end)?;
    if start >= end {
        return Err(ConfigError::Invalid {
            setting: "LEADQ_CALLING_HOURS__END",
            reason: format!("{end} is not after the start {start}"),
        });
    }
    let fallback = jiff::tz::TimeZone::get(&raw.timezone).map_err(|e| ConfigError::Invalid {
        setting: "LEADQ_CALLING_HOURS__TIMEZONE",
        reason: format!("`{}` is not an IANA time zone: {e}", raw.timezone),
    })?;
    Ok(crate::domain::calling_hours::CallingHours { start, end, fallback })
}

impl ImapSettings {
    /// Gmail's inbox over TLS with an app password, the other settings at their defaults: what
    /// credentials saved from the admin page mean when no inbox is configured otherwise.
    pub fn gmail(username: String, password: String) -> Result<Self, ConfigError> {
        let raw = RawImap {
            host: Some("imap.gmail.com".into()),
            username: Some(username),
            password: Some(password),
            ..RawImap::default()
        };
        validate_imap(raw)?.ok_or(ConfigError::Invalid {
            setting: "LEADQ_IMAP__HOST",
            reason: "missing".into(),
        })
    }
}

fn validate_imap(raw: RawImap) -> Result<Option<ImapSettings>, ConfigError> {
    let Some(host) = raw.host.filter(|h| !h.trim().is_empty()) else {
        return Ok(None);
    };
    let invalid = |setting, reason: String| ConfigError::Invalid { setting, reason };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !raw.tls && !loopback {
        return Err(invalid(
            "LEADQ_IMAP__TLS",
            format!("plain IMAP is allowed only to a loopback host, not {host}"),
        ));
    }
    let username = raw
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid("LEADQ_IMAP__USERNAME", "missing (the inbox's login)".into()))?;
    let password = raw
        .password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid("LEADQ_IMAP__PASSWORD", "missing (app password or OAuth2 token)".into()))?;
    Ok(Some(ImapSettings {
        port: raw.port.unwrap_or(if raw.tls { 993 } else { 143 }),
        host,
        tls: raw.tls,
        username,
        password: SecretString::from(password),
        auth: raw.auth,
        mailbox: raw.mailbox,
        fallback_interval: duration("LEADQ_IMAP__FALLBACK_INTERVAL", &raw.fallback_interval)?,
        idle_timeout: duration("LEADQ_IMAP__IDLE_TIMEOUT", &raw.idle_timeout)?,
        retry_base: duration("LEADQ_IMAP__RETRY_BASE", &raw.retry_base)?,
        retry_max: duration("LEADQ_IMAP__RETRY_MAX", &raw.retry_max)?,
    }))
}

/// A list of human-readable durations (`["5s", "1m"]`), as humantime-serde does for one.
mod duration_list {
    use std::time::Duration;

    use humantime_serde::Serde;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(list: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        list.iter()
            .map(|d| Serde::from(*d))
            .collect::<Vec<_>>()
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<Serde<Duration>>::deserialize(deserializer)?
            .into_iter()
            .map(Serde::into_inner)
            .collect())
    }
}

fn default_instance() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;
    use secrecy::ExposeSecret;

    fn load_with(jail_setup: impl FnOnce(&mut Jail)) -> Result<Settings, ConfigError> {
        let mut out = None;
        Jail::expect_with(|jail| {
            jail_setup(jail);
            out = Some(Settings::load(None));
            Ok(())
        });
        out.expect("jail ran")
    }

    #[test]
    fn defaults_are_valid_and_use_the_data_dir() {
        let s = load_with(|_| {}).expect("defaults load");
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(s.db, DbLocation::File(PathBuf::from("./data/db")));
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8000/");
    }

    #[test]
    fn the_sandbox_switch_reads_as_people_write_it() {
        for (written, expected) in [
            ("0", Some(false)),
            ("1", Some(true)),
            ("true", Some(true)),
            ("off", Some(false)),
        ] {
            let s = load_with(|jail| jail.set_env("LEADQ_SANDBOX", written)).expect("loads");
            assert_eq!(s.sandbox, expected, "LEADQ_SANDBOX={written}");
        }
        assert_eq!(load_with(|_| {}).expect("loads").sandbox, None);
        let refused = load_with(|jail| jail.set_env("LEADQ_SANDBOX", "maybe")).expect_err("not a switch");
        assert!(refused.to_string().contains("LEADQ_SANDBOX"), "{refused}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut out = None;
        Jail::expect_with(|jail| {
            jail.create_file("leadq.toml", "http_addr = \"0.0.0.0:9000\"\n[bus]\nmax_deliver = 7\n")?;
            jail.set_env("LEADQ_DB", "mem://");
            jail.set_env("LEADQ_HTTP_ADDR", "127.0.0.1:9100");
            out = Some(Settings::load(Some(Path::new("leadq.toml"))));
            Ok(())
        });
        let s = out.expect("jail ran").expect("settings load");
        assert_eq!(s.http_addr.port(), 9100);
        assert_eq!(s.bus.max_deliver, 7);
        assert_eq!(s.db, DbLocation::Memory);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            ("LEADQ_HTTP_ADDR", "not-an-address", "LEADQ_HTTP_ADDR"),
            ("LEADQ_DB", "postgres://x", "LEADQ_DB"),
            ("LEADQ_DB", "nonsense", "LEADQ_DB"),
            ("LEADQ_PUBLIC_URL", "::", "LEADQ_PUBLIC_URL"),
            ("LEADQ_BUS__MAX_DELIVER", "2", "LEADQ_BUS__MAX_DELIVER"),
            ("LEADQ_BUS__MAX_DELIVER", "many", "LEADQ_BUS__MAX_DELIVER"),
            ("LEADQ_LOG_FORMAT", "xml", "LEADQ_LOG_FORMAT"),
            ("LEADQ_DEFAULT_REGION", "Atlantis", "LEADQ_DEFAULT_REGION"),
            // Shorter than four tries of the 15 s Twilio timeout: slow answers would be cut short.
            ("LEADQ_BUS__MAX_HANDLING", "30s", "LEADQ_BUS__MAX_HANDLING"),
            ("LEADQ_RESUBMIT_WINDOW", "365days", "LEADQ_RESUBMIT_WINDOW"),
            ("LEADQ_RESUBMIT_WINDOW", "soon", "LEADQ_RESUBMIT_WINDOW"),
            ("LEADQ_IMAP__HOST", "imap.example.com", "LEADQ_IMAP__USERNAME"),
            ("LEADQ_CALLING_HOURS__START", "8 o'clock", "LEADQ_CALLING_HOURS__START"),
            ("LEADQ_CALLING_HOURS__END", "07:00", "LEADQ_CALLING_HOURS__END"),
            (
                "LEADQ_CALLING_HOURS__TIMEZONE",
                "Mars/Olympus",
                "LEADQ_CALLING_HOURS__TIMEZONE",
            ),
        ];
        for (var, value, named) in cases {
            let err = load_with(|jail| jail.set_env(var, value)).expect_err(var);
            let line = err.to_string();
            assert!(line.contains(named), "{var}={value}: `{line}` does not name {named}");
            assert!(!line.contains('\n'), "{var}: error spans lines: {line}");
        }
    }

    #[test]
    fn numbers_and_secrets_that_look_numeric_stay_text() {
        let s = load_with(|jail| {
            jail.set_env("LEADQ_TWILIO__FROM_NUMBER", "+15005550006");
            jail.set_env("LEADQ_TWILIO__AUTH_TOKEN", "12345");
            jail.set_env("LEADQ_DB_PASS", "true");
        })
        .expect("load");
        assert_eq!(s.twilio.from_number.as_deref(), Some("+15005550006"));
        assert_eq!(
            s.twilio
                .auth_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned())
                .as_deref(),
            Some("12345")
        );
    }

    #[test]
    fn plain_imap_is_refused_to_a_remote_host() {
        let err = load_with(|jail| {
            jail.set_env("LEADQ_IMAP__HOST", "imap.gmail.com");
            jail.set_env("LEADQ_IMAP__TLS", "false");
            jail.set_env("LEADQ_IMAP__USERNAME", "leads@example.com");
            jail.set_env("LEADQ_IMAP__PASSWORD", "app-password");
        })
        .expect_err("plain to gmail");
        assert!(err.to_string().contains("LEADQ_IMAP__TLS"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = load_with(|jail| jail.set_env("LEADQ_DB_PASS", "hunter2-very-secret")).expect("load");
        assert!(!format!("{s:?}").contains("hunter2-very-secret"));
    }

    #[test]
    fn several_nats_servers_are_taken_and_a_bad_one_is_named() {
        let servers =
            server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://127.0.0.1:4224").expect("three");
        assert_eq!(servers.len(), 3);
        assert_eq!(server_addrs("nats://127.0.0.1:4222").map(|s| s.len()), Ok(1));
        let bad = server_addrs("nats://127.0.0.1:1,nats://127.0.0.1:port").expect_err("a bad port");
        assert!(bad.contains("nats://127.0.0.1:port"), "{bad}");
        assert!(server_addrs(" , ").is_err());
        assert!(server_addrs("nats://a b:4222").is_err());
    }
}
