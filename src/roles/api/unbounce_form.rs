//! Unbounce's form-submit webhook, read into a [`Lead`], and the secret URL it posts to. Unbounce
//! does not sign its webhooks, so the path's token is the secret: generated here, kept only as
//! its SHA-256 in the `config` bucket, and rotated from the CLI or the admin page.

use std::collections::BTreeMap;

use async_nats::jetstream::kv;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::BusError;
use crate::domain::lead::{Lead, LeadError, PageDetails};
use crate::security::secrets::{same_digest, sha256_hex};

/// The `config` bucket key holding the token's hash.
const TOKEN_KEY: &str = "unbounce_token";

/// A form submission as Unbounce posts it, before it is a lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The form's fields, multi-valued ones (checkboxes) joined with ", ".
    pub fields: Vec<(String, String)>,
    pub page: PageDetails,
    /// `date_submitted` + `time_submitted` (Unbounce sends UTC).
    pub submitted_at: Option<OffsetDateTime>,
    /// Stable across Unbounce's retries of one submission: the same body is the same lead.
    pub identity: Uuid,
}

/// Why a body is not a form submission; `field` names the part at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct SubmissionError {
    pub field: &'static str,
    pub detail: String,
}

fn bad(field: &'static str, detail: impl Into<String>) -> SubmissionError {
    SubmissionError {
        field,
        detail: detail.into(),
    }
}

/// Fields of `data.json` that describe the page, not the person.
const PAGE_FIELDS: [&str; 3] = ["page_url", "page_name", "variant"];

impl Submission {
    /// `application/x-www-form-urlencoded`: `page_id`, `page_name`, `page_url`, `variant` and
    /// `data.json`, a JSON object whose values are arrays of strings.
    pub fn from_form(body: &[u8]) -> Result<Self, SubmissionError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|e| bad("body", format!("not a form body: {e}")))?;
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let data = get("data.json").ok_or_else(|| bad("data.json", "missing"))?;
        let object: Value = serde_json::from_str(&data).map_err(|e| bad("data.json", format!("not JSON: {e}")))?;
        let outer = PageDetails {
            page_name: get("page_name"),
            page_url: get("page_url"),
            variant: get("variant"),
        };
        Self::from_data(&object, outer, get("page_id").as_deref().unwrap_or(""), data.as_bytes())
    }

    /// The JSON variant: either the `data.json` object itself, or an object with the page fields
    /// and `data.json` (as an object or a JSON string).
    pub fn from_json(body: &[u8]) -> Result<Self, SubmissionError> {
        let object: Value = serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        match object.get("data.json") {
            Some(data) => {
                let data = match data {
                    Value::String(s) => {
                        serde_json::from_str(s).map_err(|e| bad("data.json", format!("not JSON: {e}")))?
                    }
                    other => other.clone(),
                };
                let outer = PageDetails {
                    page_name: object.get("page_name").and_then(text),
                    page_url: object.get("page_url").and_then(text),
                    variant: object.get("variant").and_then(text),
                };
                let page_id = object.get("page_id").and_then(text).unwrap_or_default();
                Self::from_data(&data, outer, &page_id, body)
            }
            None => Self::from_data(&object, PageDetails::default(), "", body),
        }
    }

    fn from_data(
        data: &Value,
        outer: PageDetails,
        page_id: &str,
        identity_bytes: &[u8],
    ) -> Result<Self, SubmissionError> {
        let Some(object) = data.as_object() else {
            return Err(bad("data.json", "must be a JSON object of form fields"));
        };
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        let mut fields = Vec::new();
        for (name, value) in object {
            let joined = match value {
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            values.insert(name.as_str(), joined.clone());
            if !PAGE_FIELDS.contains(&name.as_str()) {
                fields.push((name.clone(), joined));
            }
        }
        let from_data = |name: &str| values.get(name).filter(|v| !v.is_empty()).cloned();
        let page = PageDetails {
            page_name: outer.page_name.or_else(|| from_data("page_name")),
            page_url: outer.page_url.or_else(|| from_data("page_url")),
            variant: outer.variant.or_else(|| from_data("variant")),
        };
        let submitted_at = match (from_data("date_submitted"), from_data("time_submitted")) {
            (Some(date), Some(time)) => Some(submitted_at(&date, &time)?),
            _ => None,
        };
        let mut identity = Vec::with_capacity(page_id.len() + identity_bytes.len() + 1);
        identity.extend_from_slice(page_id.as_bytes());
        identity.push(0);
        identity.extend_from_slice(identity_bytes);
        Ok(Self {
            fields,
            page,
            submitted_at,
            identity: Uuid::new_v5(&Uuid::NAMESPACE_URL, &identity),
        })
    }

    /// The lead, by the same rules as every other intake.
    pub fn into_lead(self, region: phonenumber::country::Id) -> Result<Lead, LeadError> {
        let mut lead = Lead::from_form(self.fields, self.page, region)?;
        lead.received_at = self.submitted_at;
        Ok(lead)
    }
}

/// `2026-12-01` and `10:57 PM UTC` as one instant.
fn submitted_at(date: &str, time: &str) -> Result<OffsetDateTime, SubmissionError> {
    let date =
        time::Date::parse(date.trim(), time::macros::format_description!("[year]-[month]-[day]")).map_err(|e| {
            bad(
                "date_submitted",
                format!("`{date}` is not a date such as 2026-12-01: {e}"),
            )
        })?;
    let clock = time.trim().trim_end_matches("UTC").trim().to_ascii_uppercase();
    let parsed = time::Time::parse(
        &clock,
        time::macros::format_description!("[hour repr:12 padding:none]:[minute] [period]"),
    )
    .or_else(|_| time::Time::parse(&clock, time::macros::format_description!("[hour]:[minute]")))
    .map_err(|e| {
        bad(
            "time_submitted",
            format!("`{time}` is not a time such as 10:57 PM UTC: {e}"),
        )
    })?;
    Ok(date.with_time(parsed).assume_utc())
}

/// Makes a new webhook token, keeps its hash (the old URL stops working at once), and returns
/// the token: shown once, never stored.
pub async fn rotate_token(config: &kv::Store) -> Result<String, BusError> {
    let token = crate::security::secrets::random_token(24);
    let body = serde_json::json!({
        "sha256": sha256_hex(token.as_bytes()),
        "created_at": OffsetDateTime::now_utc().unix_timestamp(),
    });
    config
        .put(TOKEN_KEY, body.to_string().into())
        .await
        .map_err(|e| BusError::jetstream("config put unbounce_token", e))?;
    Ok(token)
}

/// Whether `token` is the current one; `None` when no token was ever made.
pub async fn check_token(config: &kv::Store, token: &str) -> Result<Option<bool>, BusError> {
    let Some(entry) = config
        .get(TOKEN_KEY)
        .await
        .map_err(|e| BusError::jetstream("config get unbounce_token", e))?
    else {
        return Ok(None);
    };
    let stored: Value = serde_json::from_slice(&entry).unwrap_or_default();
    let expected = stored["sha256"].as_str().unwrap_or_default();
    Ok(Some(same_digest(expected, &sha256_hex(token.as_bytes()))))
}

/// The URL to paste into Unbounce for `token`.
pub fn webhook_url(public_url: &url::Url, token: &str) -> String {
    format!(
        "{}/webhooks/unbounce/{token}",
        public_url.as_str().trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = include_str!("../../../tests/fixtures/unbounce/form-submit.urlencoded");
    const JSON: &str = include_str!("../../../tests/fixtures/unbounce/form-submit.json");

    #[test]
    fn the_form_body_becomes_the_documented_lead() {
        let submission = Submission::from_form(FORM.trim().as_bytes()).expect("submission");
        let lead = submission
            .clone()
            .into_lead(phonenumber::country::Id::US)
            .expect("lead");
        assert_eq!(lead.name.as_deref(), Some("Maria"));
        assert_eq!(lead.email.as_deref(), Some("maria@example.com"));
        assert_eq!(lead.phone.as_str(), "+16465550142");
        assert_eq!(lead.office_space.as_deref(), Some("Dedicated Desk"));
        assert_eq!(lead.campaign_id.as_deref(), Some("winter-2026"));
        assert_eq!(lead.page.variant.as_deref(), Some("b"));
        assert_eq!(lead.page.page_name.as_deref(), Some("Mesh Cowork - Private Offices"));
        assert_eq!(
            lead.received_at,
            Some(time::macros::datetime!(2026-12-01 22:57 UTC)),
            "date_submitted + time_submitted"
        );
        // Consent evidence stays with the lead.
        assert_eq!(lead.extras.get("ip_address").map(String::as_str), Some("203.0.113.7"));
        assert_eq!(
            Submission::from_form(FORM.trim().as_bytes()).expect("again").identity,
            submission.identity,
            "a retried post is the same lead"
        );
    }

    #[test]
    fn the_json_body_reads_the_same() {
        let from_json = Submission::from_json(JSON.as_bytes())
            .expect("submission")
            .into_lead(phonenumber::country::Id::US)
            .expect("lead");
        let from_form = Submission::from_form(FORM.trim().as_bytes())
            .expect("submission")
            .into_lead(phonenumber::country::Id::US)
            .expect("lead");
        assert_eq!(from_json, from_form);
    }

    #[test]
    fn bad_bodies_name_what_is_wrong() {
        let cases: [(&[u8], &str); 4] = [
            (b"page_id=1&page_name=x", "data.json"),
            (b"data.json=%7Bnot+json", "data.json"),
            (b"data.json=%5B1%2C2%5D", "data.json"),
            (
                b"data.json=%7B%22phone%22%3A%5B%22%2B16465550142%22%5D%2C%22date_submitted%22%3A%5B%22yesterday%22%5D%2C%22time_submitted%22%3A%5B%2210%3A57+PM+UTC%22%5D%7D",
                "date_submitted",
            ),
        ];
        for (body, field) in cases {
            let err = Submission::from_form(body).expect_err(std::str::from_utf8(body).unwrap_or("?"));
            assert_eq!(err.field, field, "{err}");
        }
    }
}
