//! Local stand-ins for the outside services leadq talks to, speaking their real HTTP APIs, so
//! tests and benchmarks run leadq's production clients against them by base URL. Dev-only.

pub mod airtable;
pub mod calendly;
pub mod twilio;
pub mod twiml;
