//! The Lead: one parse-only type for every way a lead enters (email, CMO trigger, admin test email).
//! A `Lead` exists only if it can be called: its phone is a valid E.164 number and its email, when
//! given, is a valid address. Unknown form fields are kept, never dropped.

use std::collections::BTreeMap;

use phonenumber::country;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Why an input is not a lead we can call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeadError {
    /// Not a form notification at all (an invoice, a person's mail): skipped without alarm.
    #[error("not a lead notification: {0}")]
    NotALead(String),
    /// A form notification that cannot be called; `field` names what is missing or bad.
    #[error("invalid lead: {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
}

impl LeadError {
    fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            detail: detail.into(),
        }
    }

    /// The JSON the CLI and the API answer with.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::NotALead(detail) => {
                serde_json::json!({ "error": "not_a_lead", "detail": detail })
            }
            Self::Invalid { field, detail } => {
                serde_json::json!({ "error": "invalid_lead", "field": field, "detail": detail })
            }
        }
    }
}

/// A phone number in E.164 form, built only by parsing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl TryFrom<String> for Phone {
    type Error = LeadError;

    /// From the bus or the store: already E.164, so no default region applies.
    fn try_from(e164: String) -> Result<Self, LeadError> {
        if !e164.starts_with('+') {
            return Err(LeadError::invalid("phone", format!("`{e164}` is not in E.164 form")));
        }
        Self::parse(&e164, country::Id::US)
    }
}

impl From<Phone> for String {
    fn from(phone: Phone) -> String {
        phone.0
    }
}

impl Phone {
    /// Parses what a person typed (`(415) 555-0142`, `+1 212-555-0199`), reading numbers without a
    /// country code as numbers of `region`.
    pub fn parse(raw: &str, region: country::Id) -> Result<Self, LeadError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(LeadError::invalid("phone", "missing"));
        }
        // The parser reads letters as a keypad's digits (1-800-FLOWERS); a form's phone field
        // with letters in it is a typo, not a vanity number to dial.
        if trimmed.chars().any(|c| c.is_alphabetic()) {
            return Err(LeadError::invalid(
                "phone",
                format!("`{trimmed}` has letters in it; a phone number is digits"),
            ));
        }
        let number = phonenumber::parse(Some(region), trimmed)
            .map_err(|e| LeadError::invalid("phone", format!("`{trimmed}` is not a phone number: {e}")))?;
        if !phonenumber::is_valid(&number) {
            return Err(LeadError::invalid(
                "phone",
                format!("`{trimmed}` is not a valid phone number"),
            ));
        }
        Ok(Self(number.format().mode(phonenumber::Mode::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Loads libphonenumber's metadata, which the parser otherwise reads on first use: over half a
/// second in a debug build, that the first lead after a start would wait.
pub fn load_phone_metadata() {
    let _ = Phone::parse("+14155550100", country::Id::US);
}

/// Parses a region code such as `US` or `GB` (the `LEADQ_DEFAULT_REGION` setting).
pub fn parse_region(code: &str) -> Option<country::Id> {
    code.trim().to_ascii_uppercase().parse().ok()
}

/// A checked email address.
fn parse_email_address(raw: &str) -> Result<String, LeadError> {
    let trimmed = raw.trim();
    email_address::EmailAddress::parse_with_options(trimmed, email_address::Options::default().with_required_tld())
        .map(|address| address.as_str().to_owned())
        .map_err(|e| LeadError::invalid("email", format!("`{trimmed}` is not an email address: {e}")))
}

/// The landing page a lead came from: consent evidence, with the time of the submission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageDetails {
    pub page_name: Option<String>,
    pub page_url: Option<String>,
    pub variant: Option<String>,
}

/// A callable lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Phone,
    pub office_space: Option<String>,
    pub message: Option<String>,
    pub campaign_id: Option<String>,
    #[serde(flatten)]
    pub page: PageDetails,
    /// Message-ID of the notification email, without angle brackets.
    pub message_id: Option<String>,
    /// When the form was submitted, as the notification's Date header says (UTC).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub received_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub extras: BTreeMap<String, String>,
}

/// Form field names (lowercased) that mean each known field; the first is Unbounce's.
const NAME_FIELDS: &[&str] = &["fname", "name", "full_name", "first_name", "firstname"];
const LAST_NAME_FIELDS: &[&str] = &["lname", "last_name", "lastname"];
const EMAIL_FIELDS: &[&str] = &["email", "email_address", "e-mail"];
const PHONE_FIELDS: &[&str] = &["phone", "phone_number", "telephone", "tel", "mobile"];
const OFFICE_FIELDS: &[&str] = &["what_kind_of_office_space_are_you_interested_in", "office_space"];
const MESSAGE_FIELDS: &[&str] = &["message", "comments", "comment"];
const CAMPAIGN_FIELDS: &[&str] = &["campaignid", "campaign_id", "campaign"];

/// The longest name kept: it is spoken on the call and written in the text.
const MAX_NAME_CHARS: usize = 100;
/// The longest one-line value kept (office space, campaign, a form field's name).
const MAX_LINE_CHARS: usize = 200;
/// The longest message or extra form value kept.
const MAX_TEXT_CHARS: usize = 2000;

/// A form value as leadq keeps it: control characters (which make a call's TwiML invalid XML and
/// garble a text) become spaces, runs of spaces one, newlines are kept only in `multiline` text,
/// and the value is cut to `max` characters.
pub fn clean_text(value: &str, max: usize, multiline: bool) -> String {
    let mut out = String::with_capacity(value.len().min(max * 4));
    let mut kept = 0;
    let mut pending_space = false;
    for c in value.trim().chars() {
        if kept >= max {
            break;
        }
        if multiline && c == '\n' {
            // A newline ends the line: spaces before it go.
            while out.ends_with(' ') {
                out.pop();
                kept -= 1;
            }
            out.push('\n');
            kept += 1;
            pending_space = false;
        } else if c.is_whitespace() || c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}') {
            pending_space = !out.is_empty() && !out.ends_with('\n');
        } else {
            if pending_space {
                out.push(' ');
                kept += 1;
                pending_space = false;
                if kept >= max {
                    break;
                }
            }
            out.push(c);
            kept += 1;
        }
    }
    out.trim_end().to_owned()
}

impl Lead {
    /// Builds a lead from submitted form fields in the order they came; the same rules for email
    /// intake, the CMO trigger and the admin test email.
    pub fn from_form(fields: Vec<(String, String)>, page: PageDetails, region: country::Id) -> Result<Self, LeadError> {
        let mut known: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut extras = BTreeMap::new();
        for (key, value) in fields {
            let lower = key.trim().to_ascii_lowercase();
            let slot = [
                ("name", NAME_FIELDS),
                ("last_name", LAST_NAME_FIELDS),
                ("email", EMAIL_FIELDS),
                ("phone", PHONE_FIELDS),
                ("office_space", OFFICE_FIELDS),
                ("message", MESSAGE_FIELDS),
                ("campaign_id", CAMPAIGN_FIELDS),
            ]
            .into_iter()
            .find(|(_, names)| names.contains(&lower.as_str()))
            .map(|(slot, _)| slot);
            match slot {
                Some(slot) if !known.contains_key(slot) => {
                    known.insert(slot, value);
                }
                _ => {
                    extras.insert(
                        clean_text(&key, MAX_LINE_CHARS, false),
                        clean_text(&value, MAX_TEXT_CHARS, true),
                    );
                }
            }
        }
        let line = |v: Option<String>, max| v.map(|s| clean_text(&s, max, false)).filter(|s| !s.is_empty());
        let phone = Phone::parse(known.get("phone").map(String::as_str).unwrap_or(""), region)?;
        let email = known
            .remove("email")
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .map(|e| parse_email_address(&e))
            .transpose()?;
        let name = match (
            line(known.remove("name"), MAX_NAME_CHARS),
            line(known.remove("last_name"), MAX_NAME_CHARS),
        ) {
            (Some(first), Some(last)) => Some(clean_text(&format!("{first} {last}"), MAX_NAME_CHARS, false)),
            (first, last) => first.or(last),
        };
        let message = known
            .remove("message")
            .map(|m| clean_text(&m, MAX_TEXT_CHARS, true))
            .filter(|m| !m.is_empty());
        Ok(Self {
            name,
            email,
            phone,
            office_space: line(known.remove("office_space"), MAX_LINE_CHARS),
            message,
            campaign_id: line(known.remove("campaign_id"), MAX_LINE_CHARS),
            page,
            message_id: None,
            received_at: None,
            extras,
        })
    }
}

impl Lead {
    /// Fills what this lead lacks from a later submission by the same person (a field left
    /// empty the first time, a form field only the second form had); returns whether anything
    /// changed. What the first submission said is never overwritten.
    pub fn merge_missing(&mut self, later: &Lead) -> bool {
        let mut changed = false;
        let mut fill = |mine: &mut Option<String>, theirs: &Option<String>| {
            if mine.is_none() && theirs.is_some() {
                mine.clone_from(theirs);
                changed = true;
            }
        };
        fill(&mut self.name, &later.name);
        fill(&mut self.email, &later.email);
        fill(&mut self.office_space, &later.office_space);
        fill(&mut self.message, &later.message);
        fill(&mut self.campaign_id, &later.campaign_id);
        for (key, value) in &later.extras {
            if !self.extras.contains_key(key) {
                self.extras.insert(key.clone(), value.clone());
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_lose_control_characters_and_are_bounded() {
        let long = "Ada ".repeat(2500);
        let lead = Lead::from_form(
            form(&[
                ("fname", "Ada\u{1}\u{7}\r\nLovelace\u{0}"),
                ("phone", "4155550142"),
                ("message", "line one  \r\n\tline\u{1b}two"),
            ]),
            PageDetails::default(),
            country::Id::US,
        )
        .expect("a lead");
        assert_eq!(lead.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(lead.message.as_deref(), Some("line one\nline two"));
        let lead = Lead::from_form(
            form(&[("fname", &long), ("phone", "4155550142")]),
            PageDetails::default(),
            country::Id::US,
        )
        .expect("a lead");
        let name = lead.name.expect("a name");
        assert!(
            name.chars().count() <= MAX_NAME_CHARS && name.starts_with("Ada Ada"),
            "{name}"
        );
        assert_eq!(clean_text("\u{1}\u{2}", 10, false), "");
    }

    use super::*;

    #[test]
    fn a_later_submission_fills_gaps_and_overwrites_nothing() {
        let form = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut first = Lead::from_form(
            form(&[("fname", "Ada"), ("phone", "4155550142")]),
            PageDetails::default(),
            country::Id::US,
        )
        .expect("lead");
        let later = Lead::from_form(
            form(&[
                ("fname", "Ada L."),
                ("phone", "4155550142"),
                ("email", "ada@example.com"),
                ("company", "Engines"),
            ]),
            PageDetails::default(),
            country::Id::US,
        )
        .expect("lead");
        assert!(first.merge_missing(&later));
        assert_eq!(first.name.as_deref(), Some("Ada"), "the first answer stands");
        assert_eq!(first.email.as_deref(), Some("ada@example.com"));
        assert_eq!(first.extras.get("company").map(String::as_str), Some("Engines"));
        assert!(!first.merge_missing(&later), "nothing new the second time");
    }

    fn us(raw: &str) -> Result<String, LeadError> {
        Phone::parse(raw, country::Id::US).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(us("201-555-0123").as_deref(), Ok("+12015550123"));
        assert_eq!(us("(415) 555-0142").as_deref(), Ok("+14155550142"));
        assert_eq!(us("+1 212-555-0199").as_deref(), Ok("+12125550199"));
        assert_eq!(us("+44 20 7946 0958").as_deref(), Ok("+442079460958"));
        assert_eq!(
            Phone::parse("020 7946 0958", country::Id::GB)
                .map(|p| p.as_str().to_owned())
                .as_deref(),
            Ok("+442079460958")
        );
    }

    #[test]
    fn bad_phones_name_the_field() {
        for raw in [
            "",
            "12345",
            "not a number",
            "+1 000 000 0000",
            "555-0123",
            "+1212555ABCD",
        ] {
            match us(raw) {
                Err(LeadError::Invalid { field: "phone", .. }) => {}
                other => panic!("{raw:?} gave {other:?}"),
            }
        }
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn known_fields_map_and_unknown_ones_are_kept() {
        let lead = Lead::from_form(
            form(&[
                ("fname", "Ada"),
                ("email", "ada@example.com"),
                ("phone", "415 555 0142"),
                ("company", "Engines Ltd"),
                ("how_did_you_hear", "a friend"),
            ]),
            PageDetails::default(),
            country::Id::US,
        )
        .expect("lead");
        assert_eq!(lead.name.as_deref(), Some("Ada"));
        assert_eq!(lead.phone.as_str(), "+14155550142");
        assert_eq!(lead.extras.get("company").map(String::as_str), Some("Engines Ltd"));
        assert_eq!(lead.extras.len(), 2);
    }

    #[test]
    fn a_bad_email_is_named_and_a_missing_one_is_allowed() {
        let bad = Lead::from_form(
            form(&[("fname", "A"), ("email", "not-an-email"), ("phone", "4155550142")]),
            PageDetails::default(),
            country::Id::US,
        );
        assert!(matches!(bad, Err(LeadError::Invalid { field: "email", .. })), "{bad:?}");
        let none = Lead::from_form(
            form(&[("phone", "4155550142")]),
            PageDetails::default(),
            country::Id::US,
        );
        assert!(none.expect("lead").email.is_none());
    }
}
