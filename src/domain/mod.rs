//! Pure logic, no I/O: what a lead is and how a notification email becomes one.

pub mod agent_state;
pub mod answers;
pub mod calling_hours;
pub mod clock;
pub mod experiment;
pub mod language;
pub mod lead;
pub mod notification;
pub mod qualification;
pub mod reading;
pub mod roster;
pub mod script;

pub use lead::{Lead, LeadError, Phone};
pub use notification::parse_notification;
