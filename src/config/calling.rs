//! When and how often a lead may be called: the calling window in the lead's own time zone
//! (`LEADQ_CALLING_HOURS__*`), and how long a number counts as the same person.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::calling_hours::CallingHours;

/// How long the `phones` bucket keeps a number's first lead; the resubmit window can be at most this.
pub const PHONE_MEMORY: Duration = Duration::from_secs(90 * 24 * 3600);

/// The calling window as written: times of day and a fallback IANA time zone.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RawCallingHours {
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

impl RawCallingHours {
    pub(super) fn read(&self) -> Result<CallingHours, ConfigError> {
        let time = |setting: &'static str, value: &str| {
            value
                .parse::<jiff::civil::Time>()
                .map_err(|e| ConfigError::invalid(setting, format!("`{value}` is not a time such as 08:00: {e}")))
        };
        let start = time("LEADQ_CALLING_HOURS__START", &self.start)?;
        let end = time("LEADQ_CALLING_HOURS__END", &self.end)?;
        if start >= end {
            return Err(ConfigError::invalid(
                "LEADQ_CALLING_HOURS__END",
                format!("{end} is not after the start {start}"),
            ));
        }
        let fallback = jiff::tz::TimeZone::get(&self.timezone).map_err(|e| {
            ConfigError::invalid(
                "LEADQ_CALLING_HOURS__TIMEZONE",
                format!("`{}` is not an IANA time zone: {e}", self.timezone),
            )
        })?;
        Ok(CallingHours { start, end, fallback })
    }
}

/// The `phones` bucket remembers a number for [`PHONE_MEMORY`]; a longer window could not be kept.
pub(super) fn check_resubmit_window(window: Duration) -> Result<(), ConfigError> {
    if window > PHONE_MEMORY {
        return Err(ConfigError::invalid(
            "LEADQ_RESUBMIT_WINDOW",
            format!(
                "{} days is longer than the 90 days a number is remembered",
                window.as_secs() / (24 * 3600)
            ),
        ));
    }
    Ok(())
}
