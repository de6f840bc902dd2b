//! The sandbox: a phone network and a CRM inside the process, for a machine with no Twilio or
//! Airtable account. The Twilio and Airtable stand-ins (the same ones the tests use) listen on
//! loopback ports, and every outside service that has no live configuration is pointed at them by
//! its base URL and generated credentials. Nothing else is simulated: the caller, the webhooks and
//! their signatures, TwiML, answer reading, rules, the CRM sync and the SMS sender run as in
//! production. A service becomes live as soon as its credentials are configured (environment,
//! file or the Credentials page); the sandbox never receives a request meant for a live one.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use standins::airtable::AirtableStandIn;
use standins::twilio::{Persona, TwilioStandIn};

use crate::config::Settings;

/// The sandbox account: a well-formed Account SID, and Twilio's magic test number as the caller ID.
const ACCOUNT_SID: &str = "AC5a4db0c05a4db0c05a4db0c05a4db0c0";
const FROM_NUMBER: &str = "+15005550006";
const AIRTABLE_BASE: &str = "appLeadqSandbox01";
/// The simulated lead takes this long over each answer, so a call can be watched on the
/// dashboard question by question (five answers: a call of about four seconds).
const CALLEE_SPEAKING_TIME: std::time::Duration = std::time::Duration::from_millis(700);

/// Whether each outside service is live or sandboxed, as said once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Live,
    Sandboxed,
}

/// How the sandbox's simulated lead answers the call: a kind, or five answers of one's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Callee {
    Kind(CalleeKind),
    /// Said one per question, through the same `<Gather>`/`SpeechResult` exchange Twilio uses.
    Answers(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalleeKind {
    Qualified,
    Unqualified,
    Voicemail,
    Busy,
    NoAnswer,
    Silence,
}

impl Callee {
    fn persona(&self) -> Persona {
        match self {
            Self::Kind(CalleeKind::Qualified) => Persona::answers(&[
                "a private office",
                "six of us",
                "next month",
                "about two thousand a month",
                "yes, I decide",
                // Asked only when a rep is on duty: yes, put me through.
                "yes please",
            ]),
            Self::Kind(CalleeKind::Unqualified) => Persona::answers(&[
                "a hot desk",
                "just me",
                "in two years",
                "a hundred dollars",
                "no, my boss decides",
            ]),
            Self::Kind(CalleeKind::Voicemail) => Persona::Machine,
            Self::Kind(CalleeKind::Busy) => Persona::Busy,
            Self::Kind(CalleeKind::NoAnswer) => Persona::NoAnswer,
            Self::Kind(CalleeKind::Silence) => Persona::answers(&[""; 10]),
            Self::Answers(answers) => {
                let said: Vec<&str> = answers.iter().map(String::as_str).collect();
                Persona::answers(&said)
            }
        }
    }
}

pub struct Sandbox {
    twilio: TwilioStandIn,
    airtable: AirtableStandIn,
    twilio_token: String,
    airtable_token: String,
    /// Where the stand-ins listen.
    twilio_base: url::Url,
    airtable_base: url::Url,
    /// The configured (live) base URLs, which settings sandboxed before get back once their
    /// service's credentials exist.
    live_twilio_base: url::Url,
    live_airtable_base: url::Url,
    /// Twilio's and Airtable's modes as the last [`Sandbox::apply`] found them: the workers
    /// re-apply on a credential change, and the api (which keeps running) reads it from here.
    modes: std::sync::Mutex<(Mode, Mode)>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (twilio, airtable) = self.modes();
        f.debug_struct("Sandbox")
            .field("twilio", &twilio)
            .field("airtable", &airtable)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts the stand-ins on free loopback ports, for a process configured with `settings`.
    pub async fn start(settings: &Settings) -> std::io::Result<Self> {
        let twilio_token = crate::security::secrets::random_token(24);
        let airtable_token = format!("pat{}", crate::security::secrets::random_token(24));
        let twilio = TwilioStandIn::start(ACCOUNT_SID, &twilio_token, 0).await?;
        twilio.set_speaking_time(CALLEE_SPEAKING_TIME);
        // A rep on the roster (the Settings page) picks up and takes the lead after the whisper.
        twilio.set_dial_default(Persona::answers(&["1"]));
        let airtable = AirtableStandIn::start(&airtable_token).await?;
        // The sandbox CRM's table has every column leadq writes, and refuses any other, as a
        // table made by the Credentials page's "create the missing columns" would.
        let columns = crate::clients::airtable::schema::wanted_columns(&settings.airtable.fields);
        let columns: Vec<(&str, &str)> = columns
            .iter()
            .filter_map(|spec| Some((spec["name"].as_str()?, spec["type"].as_str()?)))
            .collect();
        airtable.define_table(AIRTABLE_BASE, &settings.airtable.table, &columns);
        let loopback = |base: String| {
            url::Url::parse(&base).map_err(|e| std::io::Error::other(format!("stand-in address {base}: {e}")))
        };
        Ok(Self {
            twilio_base: loopback(twilio.base_url())?,
            airtable_base: loopback(airtable.base_url())?,
            twilio,
            airtable,
            twilio_token,
            airtable_token,
            live_twilio_base: settings.twilio.api_base.clone(),
            live_airtable_base: settings.airtable.api_base.clone(),
            modes: std::sync::Mutex::new((Mode::Sandboxed, Mode::Sandboxed)),
        })
    }

    /// Points each service without a live configuration at the sandbox; returns (and keeps) the
    /// modes of Twilio and Airtable.
    pub fn apply(&self, settings: &mut Settings) -> (Mode, Mode) {
        let twilio = &mut settings.twilio;
        // Settings sandboxed before (the api's, from its start) still carry the sandbox account.
        let ours = twilio.account_sid.as_deref() == Some(ACCOUNT_SID);
        let configured =
            !ours && twilio.account_sid.is_some() && twilio.auth_token.is_some() && twilio.from_number.is_some();
        let twilio_mode = if configured {
            // Once live credentials are saved over them, they get the live URL back.
            if twilio.api_base == self.twilio_base {
                twilio.api_base = self.live_twilio_base.clone();
            }
            Mode::Live
        } else {
            twilio.api_base = self.twilio_base.clone();
            twilio.account_sid = Some(ACCOUNT_SID.into());
            twilio.auth_token = Some(SecretString::from(self.twilio_token.clone()));
            twilio.from_number = Some(FROM_NUMBER.into());
            Mode::Sandboxed
        };
        let airtable = &mut settings.airtable;
        let ours = airtable.base_id.as_deref() == Some(AIRTABLE_BASE);
        let airtable_mode = if !ours && airtable.token.is_some() && airtable.base_id.is_some() {
            if airtable.api_base == self.airtable_base {
                airtable.api_base = self.live_airtable_base.clone();
            }
            Mode::Live
        } else {
            airtable.api_base = self.airtable_base.clone();
            airtable.token = Some(SecretString::from(self.airtable_token.clone()));
            airtable.base_id = Some(AIRTABLE_BASE.into());
            Mode::Sandboxed
        };
        let modes = (twilio_mode, airtable_mode);
        *self.modes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = modes;
        modes
    }

    /// The token the sandbox signs its webhooks with, while Twilio is sandboxed: what the api
    /// checks them against then, whatever partial Twilio credentials are saved.
    pub fn webhook_token(&self) -> Option<SecretString> {
        (self.modes().0 == Mode::Sandboxed).then(|| SecretString::from(self.twilio_token.clone()))
    }

    /// Twilio's and Airtable's modes now.
    pub fn modes(&self) -> (Mode, Mode) {
        *self.modes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether any service is simulated (the page shows its banner).
    pub fn any(&self) -> bool {
        let (twilio, airtable) = self.modes();
        twilio == Mode::Sandboxed || airtable == Mode::Sandboxed
    }
}

impl Sandbox {
    /// The next call to `phone` is answered as `callee` says.
    pub fn set_callee(&self, phone: &str, callee: &Callee) {
        self.twilio.set_persona(phone, callee.persona());
    }

    /// The sandbox CRM's row for a lead (its `column` holds the lead id), while Airtable is
    /// sandboxed.
    pub fn crm_row(&self, table: &str, column: &str, lead_id: &str) -> Option<Value> {
        if self.modes().1 != Mode::Sandboxed {
            return None;
        }
        self.airtable
            .records(AIRTABLE_BASE, table)
            .into_iter()
            .find(|r| r.fields.get(column).and_then(Value::as_str) == Some(lead_id))
            .map(|r| json!({ "id": r.id, "fields": r.fields }))
    }

    /// What the sandbox's network and CRM hold, newest first: the Outbox page.
    pub fn outbox(&self, table: &str) -> Value {
        let calls: Vec<Value> = self
            .twilio
            .calls()
            .into_iter()
            .rev()
            .map(|c| {
                json!({ "sid": c.sid, "to": c.to, "status": c.status, "at": c.date_created,
                        "heard": c.heard, "said": c.said })
            })
            .collect();
        let texts: Vec<Value> = self
            .twilio
            .messages()
            .into_iter()
            .rev()
            .map(|m| json!({ "sid": m.sid, "to": m.to, "body": m.body, "at": m.date_created }))
            .collect();
        let rows: Vec<Value> = self
            .airtable
            .records(AIRTABLE_BASE, table)
            .into_iter()
            .rev()
            .map(|r| json!({ "id": r.id, "fields": r.fields }))
            .collect();
        json!({ "calls": calls, "texts": texts, "crm_rows": rows })
    }
}

/// One line per outside service: what is live, what is the sandbox, what is off.
pub fn announce(settings: &Settings, (twilio, airtable): (Mode, Mode)) {
    let say = |service: &str, mode: Mode, how: &str| match mode {
        Mode::Live => tracing::info!(service, "live"),
        Mode::Sandboxed => tracing::warn!(service, "sandbox: no real calls or texts leave this machine; {how}"),
    };
    say(
        "twilio",
        twilio,
        "set LEADQ_TWILIO__ACCOUNT_SID, __AUTH_TOKEN and __FROM_NUMBER, or save them on the Credentials page",
    );
    say(
        "airtable",
        airtable,
        "set LEADQ_AIRTABLE__TOKEN and __BASE_ID, or save them on the Credentials page",
    );
    if settings.imap.is_none() {
        tracing::warn!(
            service = "imap",
            "off: no inbox configured (LEADQ_IMAP__HOST); leads come from the form webhook, the CMO agent and test emails"
        );
    }
}
