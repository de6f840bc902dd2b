//! Calendly, where leads book their tour (`LEADQ_CALENDLY_URL` for the booking page,
//! `LEADQ_CALENDLY__*` for its webhooks, `LEADQ_CALENDLY_API_BASE` for its API): the signing key
//! its webhooks are checked with, how far a webhook's signing time may be from now, and the API
//! token `leadq admin calendly subscribe` uses.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RawCalendly {
    signing_key: Option<String>,
    token: Option<String>,
    #[serde(with = "humantime_serde")]
    tolerance: Duration,
}

impl Default for RawCalendly {
    fn default() -> Self {
        Self {
            signing_key: None,
            token: None,
            // Calendly's own advice: refuse a webhook signed more than three minutes away.
            tolerance: Duration::from_secs(180),
        }
    }
}

/// Calendly's webhooks (`POST /webhooks/calendly`).
#[derive(Debug, Clone)]
pub struct CalendlySettings {
    /// The webhook subscription's signing key; without one, bookings are not received.
    pub signing_key: Option<SecretString>,
    /// A webhook signed further than this from now is refused (a replay, or a clock far off).
    pub tolerance: Duration,
    /// `LEADQ_CALENDLY_API_BASE`: Calendly's API, or a stand-in in tests.
    pub api_base: Url,
    /// A personal access token: what creates the webhook subscription.
    pub token: Option<SecretString>,
}

impl CalendlySettings {
    pub(super) fn from_raw(api_base: Url, raw: RawCalendly) -> Result<Self, ConfigError> {
        if raw.tolerance.is_zero() || raw.tolerance > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "LEADQ_CALENDLY__TOLERANCE",
                "must be between 1s and 1h",
            ));
        }
        Ok(Self {
            signing_key: raw.signing_key.filter(|k| !k.is_empty()).map(SecretString::from),
            tolerance: raw.tolerance,
            api_base,
            token: raw.token.filter(|t| !t.is_empty()).map(SecretString::from),
        })
    }
}
