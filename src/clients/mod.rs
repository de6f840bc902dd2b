//! The outside services: typed HTTP clients (Twilio, Airtable; each takes its base URL from the
//! settings), Twilio's wire formats, the lead inbox over IMAP, and the in-process sandbox.

pub mod airtable;
pub mod calendly;
pub mod imap;
pub mod sandbox;
pub mod twilio;
