//! Calendly: the `Calendly-Webhook-Signature` its webhooks carry (`t=<unix>,v1=<hex>`, an
//! HMAC-SHA256 of `"<t>." + body` under the subscription's signing key), the webhook envelope,
//! and the two API calls that subscribe leadq to its bookings (`GET /users/me` for the
//! organization, `POST /webhook_subscriptions`).

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use url::Url;

/// The header Calendly signs its webhooks in.
pub const SIGNATURE_HEADER: &str = "Calendly-Webhook-Signature";

/// Why a webhook's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no {SIGNATURE_HEADER} header")]
    Missing,
    #[error("{SIGNATURE_HEADER} is not `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error("the signature does not match the body under the signing key")]
    Mismatch,
    #[error("signed {age_secs} s from now, outside the {tolerance_secs} s allowed (a replay, or a clock far off)")]
    Stale { age_secs: i64, tolerance_secs: u64 },
}

/// The signature header's value for `body` signed at `t` (what Calendly sends; the stand-in
/// signs with it).
pub fn sign(signing_key: &str, t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(signing_key, t, body).finalize().into_bytes())
    )
}

fn mac(signing_key: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // An HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key.as_bytes()).expect("an HMAC key of any length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac
}

/// Checks `header` over `body` at `now`: the digest in constant time, then the age. Returns the
/// signing time.
pub fn verify(
    signing_key: &str,
    header: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    mac(signing_key, t, body)
        .verify_slice(&v1)
        .map_err(|_| SignatureError::Mismatch)?;
    let age_secs = now.unix_timestamp() - t;
    if age_secs.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            age_secs,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(t)
}

/// A webhook Calendly posts: what happened, when, and to whom.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEnvelope {
    /// `invitee.created`, `invitee.canceled`, or another event leadq does not subscribe to.
    pub event: String,
    pub created_at: String,
    pub payload: Invitee,
}

/// The invitee: one booking of one meeting.
#[derive(Debug, Clone, Deserialize)]
pub struct Invitee {
    /// The invitee's URI: one booking (a reschedule is a new invitee).
    pub uri: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// On a cancel: the invitee picked another time, and its `invitee.created` follows.
    #[serde(default)]
    pub rescheduled: bool,
    pub scheduled_event: Option<ScheduledEvent>,
    #[serde(default)]
    pub tracking: Tracking,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScheduledEvent {
    pub start_time: Option<String>,
}

/// The UTM parameters of the booking link, as Calendly carried them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Tracking {
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    /// leadq puts the lead id here.
    pub utm_content: Option<String>,
}

/// The events leadq subscribes to.
pub const EVENTS: [&str; 2] = ["invitee.created", "invitee.canceled"];

#[derive(Debug, thiserror::Error)]
pub enum CalendlyError {
    /// The token was refused (401/403): fixing it is the operator's part.
    #[error("Calendly refused the token ({status}): {message}")]
    Refused { status: u16, message: String },
    /// A subscription for this URL exists already.
    #[error("Calendly already sends this URL its webhooks: {0}")]
    AlreadySubscribed(String),
    #[error("Calendly answered {status}: {message}")]
    Failed { status: u16, message: String },
    #[error("Calendly could not be reached: {0}")]
    Unreachable(String),
}

/// Calendly's API, with a personal access token.
pub struct CalendlyClient {
    http: reqwest::Client,
    base: Url,
    token: SecretString,
}

impl CalendlyClient {
    pub fn new(base: &Url, token: SecretString) -> Result<Self, CalendlyError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| CalendlyError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base: base.clone(),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// The organization of the token's user: where the subscription is made.
    pub async fn organization(&self) -> Result<String, CalendlyError> {
        let request = self.http.get(self.url("/users/me"));
        let me = self.send(request).await?;
        me["resource"]["current_organization"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CalendlyError::Failed {
                status: 200,
                message: "no current_organization in /users/me".into(),
            })
    }

    /// Subscribes `callback` to bookings and cancels in `organization`, signed with
    /// `signing_key`; the subscription's URI.
    pub async fn subscribe(
        &self,
        callback: &str,
        organization: &str,
        signing_key: &str,
    ) -> Result<String, CalendlyError> {
        let body = json!({
            "url": callback,
            "events": EVENTS,
            "organization": organization,
            "scope": "organization",
            "signing_key": signing_key,
        });
        let request = self.http.post(self.url("/webhook_subscriptions")).json(&body);
        let created = self.send(request).await?;
        Ok(created["resource"]["uri"].as_str().unwrap_or_default().to_owned())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CalendlyError> {
        let response = request
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| CalendlyError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        let message = || {
            body["message"]
                .as_str()
                .or(body["title"].as_str())
                .unwrap_or("no message")
                .to_owned()
        };
        match status {
            200..=299 => Ok(body),
            401 | 403 => Err(CalendlyError::Refused {
                status,
                message: message(),
            }),
            409 => Err(CalendlyError::AlreadySubscribed(message())),
            _ => Err(CalendlyError::Failed {
                status,
                message: message(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "calendly-signing-key";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_764_064_800).expect("time")
    }

    #[test]
    fn a_signature_made_with_the_key_checks_and_any_change_is_refused() {
        let body = br#"{"event":"invitee.created"}"#;
        let t = now().unix_timestamp() - 10;
        let header = sign(KEY, t, body);
        let tolerance = Duration::from_secs(180);
        assert_eq!(verify(KEY, Some(&header), body, now(), tolerance), Ok(t));
        let altered = br#"{"event":"invitee.canceled"}"#;
        assert_eq!(
            verify(KEY, Some(&header), altered, now(), tolerance),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("another-key", Some(&header), body, now(), tolerance),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replace(&format!("t={t}"), &format!("t={}", t + 1));
        assert_eq!(
            verify(KEY, Some(&moved), body, now(), tolerance),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(KEY, None, body, now(), tolerance), Err(SignatureError::Missing));
        for malformed in ["", "t=abc,v1=00", "v1=00", "t=1", "t=1,v1=zz"] {
            assert_eq!(
                verify(KEY, Some(malformed), body, now(), tolerance),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn a_signature_from_long_ago_or_far_ahead_is_refused_though_it_matches() {
        let body = b"{}";
        let tolerance = Duration::from_secs(180);
        for offset in [-181, 181, -86_400] {
            let t = now().unix_timestamp() + offset;
            let header = sign(KEY, t, body);
            assert!(
                matches!(
                    verify(KEY, Some(&header), body, now(), tolerance),
                    Err(SignatureError::Stale { .. })
                ),
                "{offset}"
            );
        }
        let t = now().unix_timestamp() - 180;
        assert_eq!(verify(KEY, Some(&sign(KEY, t, body)), body, now(), tolerance), Ok(t));
    }
}
