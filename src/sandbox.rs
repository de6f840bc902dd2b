//! The sandbox: a phone network and a CRM inside the process, for a machine with no Twilio or
//! Airtable account. The Twilio and Airtable stand-ins (the same ones the tests use) listen on
//! loopback ports, and every outside service that has no live configuration is pointed at them by
//! its base URL and generated credentials. Nothing else is simulated: the caller, the webhooks and
//! their signatures, TwiML, answer reading, rules, the CRM sync and the SMS sender run as in
//! production. A service becomes live as soon as its credentials are configured (environment,
//! file or the Credentials page); the sandbox never receives a request meant for a live one.

use secrecy::SecretString;
use standins::airtable::AirtableStandIn;
use standins::twilio::TwilioStandIn;

use crate::config::Settings;

/// The sandbox account: a well-formed Account SID, and Twilio's magic test number as the caller ID.
const ACCOUNT_SID: &str = "AC5a4db0c05a4db0c05a4db0c05a4db0c0";
const FROM_NUMBER: &str = "+15005550006";
const AIRTABLE_BASE: &str = "appLeadqSandbox01";

/// Whether each outside service is live or sandboxed, as said once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Sandboxed,
}

pub struct Sandbox {
    twilio: TwilioStandIn,
    airtable: AirtableStandIn,
    twilio_token: String,
    airtable_token: String,
}

impl Sandbox {
    /// Starts the stand-ins on free loopback ports.
    pub async fn start() -> std::io::Result<Self> {
        let twilio_token = crate::secrets::random_token(24);
        let airtable_token = format!("pat{}", crate::secrets::random_token(24));
        let twilio = TwilioStandIn::start(ACCOUNT_SID, &twilio_token, 0).await?;
        let airtable = AirtableStandIn::start(&airtable_token).await?;
        Ok(Self {
            twilio,
            airtable,
            twilio_token,
            airtable_token,
        })
    }

    /// Points each service without a live configuration at the sandbox; returns the modes of
    /// Twilio and Airtable.
    pub fn apply(&self, settings: &mut Settings) -> (Mode, Mode) {
        let twilio = &mut settings.twilio;
        let twilio_mode = if twilio.account_sid.is_some() && twilio.auth_token.is_some() && twilio.from_number.is_some()
        {
            Mode::Live
        } else {
            twilio.api_base = self.twilio.base_url().parse().expect("a loopback URL");
            twilio.account_sid = Some(ACCOUNT_SID.into());
            twilio.auth_token = Some(SecretString::from(self.twilio_token.clone()));
            twilio.from_number = Some(FROM_NUMBER.into());
            Mode::Sandboxed
        };
        let airtable = &mut settings.airtable;
        let airtable_mode = if airtable.token.is_some() && airtable.base_id.is_some() {
            Mode::Live
        } else {
            airtable.api_base = self.airtable.base_url().parse().expect("a loopback URL");
            airtable.token = Some(SecretString::from(self.airtable_token.clone()));
            airtable.base_id = Some(AIRTABLE_BASE.into());
            Mode::Sandboxed
        };
        (twilio_mode, airtable_mode)
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
