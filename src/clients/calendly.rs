//! Calendly: the `Calendly-Webhook-Signature` its webhooks carry (`t=<unix>,v1=<hex>`, an
//! HMAC-SHA256 of `"<t>." + body` under the subscription's signing key) and the webhook envelope.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use time::OffsetDateTime;

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
