//! Twilio (`LEADQ_TWILIO__*`, `LEADQ_TWILIO_API_BASE`): the REST API the caller and SMS roles use,
//! and the token that signs its webhooks.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RawTwilio {
    account_sid: Option<String>,
    auth_token: Option<String>,
    from_number: Option<String>,
    confidence_threshold: f32,
    #[serde(with = "humantime_serde")]
    request_timeout: Duration,
    max_in_flight: usize,
}

impl Default for RawTwilio {
    fn default() -> Self {
        Self {
            account_sid: None,
            auth_token: None,
            from_number: None,
            confidence_threshold: 0.4,
            request_timeout: Duration::from_secs(15),
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

impl TwilioSettings {
    pub(super) fn from_raw(api_base: Url, raw: RawTwilio) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&raw.confidence_threshold) {
            return Err(ConfigError::invalid(
                "LEADQ_TWILIO__CONFIDENCE_THRESHOLD",
                "must be between 0 and 1",
            ));
        }
        Ok(Self {
            api_base,
            account_sid: raw.account_sid.filter(|s| !s.is_empty()),
            auth_token: raw.auth_token.filter(|s| !s.is_empty()).map(SecretString::from),
            from_number: raw.from_number.filter(|s| !s.is_empty()),
            confidence_threshold: raw.confidence_threshold,
            request_timeout: raw.request_timeout,
            max_in_flight: raw.max_in_flight.max(1),
        })
    }

    /// The longest a handler's Twilio request may take with the client's retries (four tries
    /// and their back-off): the consume loop's handling bound must leave room for all of them.
    pub fn slowest_request(&self) -> Duration {
        self.request_timeout * 4 + Duration::from_secs(5)
    }
}
