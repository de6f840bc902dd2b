//! Typed HTTP clients of outside services (Twilio, Airtable); each takes its base URL from the settings.

pub mod airtable;
pub mod twilio;
