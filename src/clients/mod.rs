//! Typed HTTP clients of outside services; each takes its base URL from the settings.

pub mod twilio;
