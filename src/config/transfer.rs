//! The warm transfer's roster as first given (`LEADQ_TRANSFER__ROSTER`, `__TIME_ZONE`,
//! `__RING_SECS`): the api saves it on a first start, after which the Settings page edits it.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::roster::Roster;

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RawTransfer {
    /// `Sam Rivera +15550001111 mon-fri 09:00-17:00; Kim Lee +15550002222 sat,sun 10:00-16:00`.
    roster: String,
    time_zone: String,
    ring_secs: u32,
}

impl Default for RawTransfer {
    fn default() -> Self {
        let roster = Roster::default();
        Self {
            roster: String::new(),
            time_zone: roster.time_zone,
            ring_secs: roster.ring_secs,
        }
    }
}

impl RawTransfer {
    pub(super) fn read(&self) -> Result<Roster, ConfigError> {
        let reps =
            Roster::parse(&self.roster).map_err(|e| ConfigError::invalid("LEADQ_TRANSFER__ROSTER", e.to_string()))?;
        let roster = Roster {
            reps,
            time_zone: self.time_zone.clone(),
            ring_secs: self.ring_secs,
        };
        roster.checked().map_err(|e| {
            let setting = if e.reason.contains("ring_secs") {
                "LEADQ_TRANSFER__RING_SECS"
            } else {
                "LEADQ_TRANSFER__TIME_ZONE"
            };
            ConfigError::invalid(setting, e.reason)
        })
    }
}
