//! Twilio's wire formats: request signatures and TwiML.

pub mod signature;
pub mod twiml;
