//! Twilio's wire formats: request signatures and TwiML.

pub mod signature;
pub mod twiml;

/// The URL of one of leadq's Twilio webhooks for a lead's call: the caller hands these to Twilio
/// and the webhooks hand on to the next ones, so both build them here. Twilio signs its requests
/// over exactly this URL.
pub fn webhook_url(public_url: &url::Url, path: &str, lead_id: uuid::Uuid) -> String {
    format!(
        "{}/webhooks/twilio/{path}?lead={lead_id}",
        public_url.as_str().trim_end_matches('/')
    )
}
