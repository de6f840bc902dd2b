//! Calendly's side of a booking: the webhook it posts when someone books or cancels through a
//! booking link (`invitee.created`, `invitee.canceled`), with the name, email and UTM tracking
//! read from the link as Calendly prefills them, signed as Calendly signs
//! (`Calendly-Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>`).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Posts Calendly's webhooks to a subscriber, signed with the subscription's signing key.
pub struct CalendlySender {
    signing_key: String,
    http: reqwest::Client,
}

/// The UTM parameters Calendly carries from a booking link into the invitee's `tracking`.
const TRACKED: [&str; 5] = ["utm_campaign", "utm_source", "utm_medium", "utm_content", "utm_term"];

impl CalendlySender {
    pub fn new(signing_key: &str) -> Self {
        Self {
            signing_key: signing_key.into(),
            http: reqwest::Client::new(),
        }
    }

    /// The `invitee.created` body for a booking made through `link` for a meeting at `start_time`;
    /// `email` is what the invitee typed when the link did not prefill it.
    pub fn invitee_created(link: &str, email: Option<&str>, start_time: &str) -> Value {
        let query: Vec<(String, String)> = link
            .split_once('?')
            .map(|(_, q)| serde_urlencoded::from_str(q).unwrap_or_default())
            .unwrap_or_default();
        let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let tracking: serde_json::Map<String, Value> = TRACKED
            .iter()
            .map(|name| ((*name).to_owned(), param(name).map_or(Value::Null, Value::String)))
            .collect();
        let event_id = random_id();
        let now = now_rfc3339();
        json!({
            "event": "invitee.created",
            "created_at": now,
            "created_by": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA",
            "payload": {
                "uri": format!("https://api.calendly.com/scheduled_events/{event_id}/invitees/{}", random_id()),
                "email": param("email").or(email.map(str::to_owned)),
                "name": param("name"),
                "status": "active",
                "rescheduled": false,
                "created_at": now,
                "updated_at": now,
                "timezone": "America/Los_Angeles",
                "tracking": tracking,
                "scheduled_event": {
                    "uri": format!("https://api.calendly.com/scheduled_events/{event_id}"),
                    "name": "Tour of the space",
                    "status": "active",
                    "start_time": start_time,
                },
            },
        })
    }

    /// The `invitee.canceled` body for an earlier `invitee.created` (`rescheduled`: the
    /// invitee picked another time, and an `invitee.created` for it follows).
    pub fn invitee_canceled(created: &Value, rescheduled: bool) -> Value {
        let mut body = created.clone();
        body["event"] = "invitee.canceled".into();
        body["created_at"] = now_rfc3339().into();
        body["payload"]["status"] = "canceled".into();
        body["payload"]["rescheduled"] = rescheduled.into();
        body["payload"]["cancellation"] = json!({ "canceled_by": "invitee", "reason": null });
        body
    }

    /// The signature header for `body` signed at unix time `t`.
    pub fn signature(&self, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.signing_key.as_bytes()).expect("any key length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},v1={digest}")
    }

    /// Posts `body` to `url` signed now, as Calendly delivers it: the status and the answer.
    pub async fn deliver(&self, url: &str, body: &Value) -> (u16, String) {
        let raw = body.to_string();
        let signature = self.signature(unix_now(), raw.as_bytes());
        self.post(url, raw, Some(signature)).await
    }

    /// Posts `raw` with the signature header given (or none): for forged, stale and replayed
    /// deliveries.
    pub async fn post(&self, url: &str, raw: String, signature: Option<String>) -> (u16, String) {
        let mut request = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .header("User-Agent", "Calendly-Webhooks")
            .body(raw);
        if let Some(signature) = signature {
            request = request.header("Calendly-Webhook-Signature", signature);
        }
        match request.send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(err) => (0, err.to_string()),
        }
    }
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn random_id() -> String {
    (0..16).map(|_| (b'A' + rand::random_range(0..26u8)) as char).collect()
}
