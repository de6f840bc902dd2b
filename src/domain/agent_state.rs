//! The agent's run state, as the CMO agent sets it: workers pull only while it is running.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    #[default]
    Running,
    Paused,
    Stopped,
}

impl AgentState {
    pub fn is_running(self) -> bool {
        self == Self::Running
    }

    /// The word the CMO contract uses: `active`, `paused` or `stopped`.
    pub fn as_status(self) -> &'static str {
        match self {
            Self::Running => "active",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }
}
