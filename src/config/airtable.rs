//! Airtable, the CRM (`LEADQ_AIRTABLE__*`, `LEADQ_AIRTABLE_API_BASE`): where finalized leads are
//! upserted on their lead id, under column names an admin may change.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RawAirtable {
    token: Option<String>,
    base_id: Option<String>,
    table: String,
    fields: BTreeMap<String, String>,
    #[serde(with = "humantime_serde")]
    poll: Duration,
}

impl Default for RawAirtable {
    fn default() -> Self {
        Self {
            token: None,
            base_id: None,
            table: "Leads".into(),
            fields: BTreeMap::new(),
            poll: Duration::from_secs(5),
        }
    }
}

/// Airtable, the CRM: where finalized leads are upserted on their lead id.
#[derive(Debug, Clone)]
pub struct AirtableSettings {
    /// `LEADQ_AIRTABLE_API_BASE`: Airtable's API, or a stand-in in tests.
    pub api_base: Url,
    /// A personal access token with write access to the base.
    pub token: Option<SecretString>,
    pub base_id: Option<String>,
    pub table: String,
    /// Column name for each lead field, the defaults overridden by `LEADQ_AIRTABLE__FIELDS__<FIELD>`.
    pub fields: BTreeMap<String, String>,
    /// How often unsynced leads are looked for, besides after each finalized lead.
    pub poll: Duration,
}

impl AirtableSettings {
    pub(super) fn from_raw(api_base: Url, raw: RawAirtable) -> Result<Self, ConfigError> {
        let mut fields = default_crm_fields();
        for (field, column) in raw.fields {
            if !fields.contains_key(&field) {
                return Err(ConfigError::invalid(
                    "LEADQ_AIRTABLE__FIELDS",
                    format!("`{field}` is not a lead field"),
                ));
            }
            fields.insert(field, column);
        }
        Ok(Self {
            api_base,
            token: raw.token.filter(|t| !t.is_empty()).map(SecretString::from),
            base_id: raw.base_id.filter(|b| !b.is_empty()),
            table: raw.table,
            fields,
            poll: raw.poll,
        })
    }
}

/// Column names in Airtable for each field of a lead record (`LEADQ_AIRTABLE__FIELDS__<FIELD>`).
pub fn default_crm_fields() -> BTreeMap<String, String> {
    [
        ("lead_id", "Lead ID"),
        ("name", "Name"),
        ("email", "Email"),
        ("phone", "Phone"),
        ("office_space", "Office Space"),
        ("message", "Message"),
        ("campaign_id", "Campaign"),
        ("page_name", "Landing Page"),
        ("variant", "Variant"),
        ("space_type", "Space Type"),
        ("team_size", "Team Size"),
        ("move_in", "Move In"),
        ("budget", "Monthly Budget"),
        ("decision_maker", "Decision Maker"),
        ("score", "Score"),
        ("verdict", "Verdict"),
        ("reasons", "Reasons"),
        ("speed_to_lead_secs", "Speed To Lead (s)"),
        ("call_status", "Call Status"),
        ("submitted_at", "Submitted At"),
        ("call_placed_at", "Called At"),
        ("resubmissions", "Resubmissions"),
        ("booking", "Tour"),
        ("booked_at", "Booked At"),
        ("meeting_at", "Tour At"),
        ("transfer", "Transfer"),
        ("transferred_to", "Transferred To"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
