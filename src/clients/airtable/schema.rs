//! The Airtable table leadq writes to: which columns it needs, of which types, and what an
//! existing table lacks. Airtable refuses a record naming a column the table does not have, so a
//! new user's first sync failed until they had made 22 columns by hand; the Credentials page now
//! reads the table's schema (Airtable's Meta API) and makes what is missing.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

pub use crate::clients::airtable::{FieldSchema, TableSchema};

/// A column's type as leadq writes it; each accepts the Airtable types its values fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    LongText,
    Email,
    Phone,
    /// A whole number, or one with `precision` decimals.
    Number(u8),
    DateTime,
    Date,
    Checkbox,
    /// The verdict, as a single select so a sales team can filter and colour by it.
    Verdict,
}

fn kind_of(field: &str) -> Kind {
    match field {
        "email" => Kind::Email,
        "phone" => Kind::Phone,
        "message" | "reasons" => Kind::LongText,
        "score" | "resubmissions" => Kind::Number(0),
        "speed_to_lead_secs" => Kind::Number(1),
        "submitted_at" | "call_placed_at" | "booked_at" | "meeting_at" => Kind::DateTime,
        "move_in" => Kind::Date,
        "decision_maker" => Kind::Checkbox,
        "verdict" => Kind::Verdict,
        // Ids, names, choices and answers that may be a range ("3-4"): text takes them all.
        _ => Kind::Text,
    }
}

impl Kind {
    /// The `type` and `options` Airtable's create-field request takes for this column.
    fn spec(self) -> (&'static str, Option<Value>) {
        match self {
            Self::Text => ("singleLineText", None),
            Self::LongText => ("multilineText", None),
            Self::Email => ("email", None),
            Self::Phone => ("phoneNumber", None),
            Self::Number(precision) => ("number", Some(json!({ "precision": precision }))),
            Self::DateTime => (
                "dateTime",
                Some(json!({ "dateFormat": { "name": "iso" }, "timeFormat": { "name": "24hour" }, "timeZone": "utc" })),
            ),
            Self::Date => ("date", Some(json!({ "dateFormat": { "name": "iso" } }))),
            Self::Checkbox => ("checkbox", Some(json!({ "icon": "check", "color": "greenBright" }))),
            Self::Verdict => (
                "singleSelect",
                Some(
                    json!({ "choices": crate::domain::qualification::Verdict::ALL.iter().map(|v| json!({ "name": v.as_str() })).collect::<Vec<_>>() }),
                ),
            ),
        }
    }

    /// Whether a column of Airtable `kind` takes this column's values (sent with `typecast`).
    fn accepts(self, kind: &str) -> bool {
        const TEXT: &[&str] = &["singleLineText", "multilineText", "richText", "singleSelect"];
        match self {
            Self::Text | Self::LongText => TEXT.contains(&kind),
            Self::Email => kind == "email" || TEXT.contains(&kind),
            Self::Phone => kind == "phoneNumber" || TEXT.contains(&kind),
            Self::Number(_) => {
                matches!(kind, "number" | "currency" | "percent" | "duration" | "rating") || TEXT.contains(&kind)
            }
            Self::DateTime | Self::Date => matches!(kind, "dateTime" | "date") || TEXT.contains(&kind),
            Self::Checkbox => kind == "checkbox",
            Self::Verdict => TEXT.contains(&kind),
        }
    }
}

/// A column leadq needs, in the create-field request's shape (`name`, `type`, `options`).
pub fn column_spec(column: &str, field: &str) -> Value {
    let (kind, options) = kind_of(field).spec();
    let mut spec = json!({ "name": column, "type": kind });
    if let Some(options) = options {
        spec["options"] = options;
    }
    spec
}

/// Every column leadq writes (`columns`: lead field → column name), the merge column first: a
/// new table's first column is its primary field.
pub fn wanted_columns(columns: &BTreeMap<String, String>) -> Vec<Value> {
    let mut specs: Vec<Value> = columns
        .iter()
        .map(|(field, column)| column_spec(column, field))
        .collect();
    if let Some(merge) = columns.get("lead_id") {
        specs.sort_by_key(|spec| spec["name"] != merge.as_str());
    }
    specs
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mistyped {
    pub column: String,
    pub found: String,
    pub expected: String,
}

/// What the configured table has of what leadq writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaCheck {
    pub table: String,
    /// None when the base has no table of that name (or id).
    pub table_id: Option<String>,
    /// The base's tables, to tell a misspelt table name from a missing one.
    pub tables_in_base: Vec<String>,
    /// Columns to create, as create-field requests.
    pub missing: Vec<Value>,
    pub mistyped: Vec<Mistyped>,
}

impl SchemaCheck {
    pub fn ready(&self) -> bool {
        self.table_id.is_some() && self.missing.is_empty() && self.mistyped.is_empty()
    }

    /// One sentence for the page.
    pub fn summary(&self) -> String {
        if self.table_id.is_none() {
            return format!(
                "the base has no table named \"{}\" (it has: {}); leadq can create it with its {} columns",
                self.table,
                if self.tables_in_base.is_empty() {
                    "none".into()
                } else {
                    self.tables_in_base.join(", ")
                },
                self.missing.len()
            );
        }
        if self.ready() {
            return format!("table \"{}\" has every column leadq writes", self.table);
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            let names: Vec<&str> = self.missing.iter().filter_map(|m| m["name"].as_str()).collect();
            parts.push(format!("{} missing ({})", names.len(), names.join(", ")));
        }
        for m in &self.mistyped {
            parts.push(format!("\"{}\" is {}, leadq writes {}", m.column, m.found, m.expected));
        }
        format!("table \"{}\": {}", self.table, parts.join("; "))
    }
}

/// Compares the base's tables with the columns leadq writes to `table` (a name or a `tbl` id).
pub fn check(tables: &[TableSchema], table: &str, columns: &BTreeMap<String, String>) -> SchemaCheck {
    let found = tables.iter().find(|t| t.name == table || t.id == table);
    let tables_in_base = tables.iter().map(|t| t.name.clone()).collect();
    let Some(found) = found else {
        return SchemaCheck {
            table: table.to_owned(),
            table_id: None,
            tables_in_base,
            missing: wanted_columns(columns),
            mistyped: Vec::new(),
        };
    };
    let (mut missing, mut mistyped) = (Vec::new(), Vec::new());
    for (field, column) in columns {
        let kind = kind_of(field);
        match found.fields.iter().find(|f| f.name == *column) {
            None => missing.push(column_spec(column, field)),
            Some(existing) if !kind.accepts(&existing.kind) => mistyped.push(Mistyped {
                column: column.clone(),
                found: existing.kind.clone(),
                expected: kind.spec().0.to_owned(),
            }),
            Some(_) => {}
        }
    }
    SchemaCheck {
        table: table.to_owned(),
        table_id: Some(found.id.clone()),
        tables_in_base,
        missing,
        mistyped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_crm_fields as default_fields;

    fn field(name: &str, kind: &str) -> FieldSchema {
        FieldSchema {
            id: format!("fld{name}"),
            name: name.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn a_table_missing_columns_lists_them_and_a_wrong_type_is_named() {
        let tables = vec![TableSchema {
            id: "tblLeads".into(),
            name: "Leads".into(),
            fields: vec![
                field("Lead ID", "singleLineText"),
                field("Score", "number"),
                field("Decision Maker", "singleLineText"),
                field("Submitted At", "dateTime"),
            ],
        }];
        let result = check(&tables, "Leads", &default_fields());
        assert_eq!(result.table_id.as_deref(), Some("tblLeads"));
        assert_eq!(result.missing.len(), default_fields().len() - 4);
        assert!(
            result
                .missing
                .iter()
                .any(|m| m["name"] == "Email" && m["type"] == "email")
        );
        assert_eq!(
            result.mistyped,
            vec![Mistyped {
                column: "Decision Maker".into(),
                found: "singleLineText".into(),
                expected: "checkbox".into()
            }]
        );
        assert!(!result.ready());
        assert!(
            result.summary().contains("\"Decision Maker\" is singleLineText"),
            "{}",
            result.summary()
        );
    }

    #[test]
    fn a_missing_table_is_told_apart_and_its_primary_column_is_the_lead_id() {
        let tables = vec![TableSchema {
            id: "tblOther".into(),
            name: "Contacts".into(),
            fields: vec![],
        }];
        let result = check(&tables, "Leads", &default_fields());
        assert_eq!(result.table_id, None);
        assert_eq!(result.missing[0]["name"], "Lead ID");
        assert!(result.summary().contains("it has: Contacts"), "{}", result.summary());
    }

    #[test]
    fn a_complete_table_is_ready_and_found_by_id_too() {
        let fields = wanted_columns(&default_fields())
            .iter()
            .map(|spec| {
                field(
                    spec["name"].as_str().unwrap_or_default(),
                    spec["type"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        let tables = vec![TableSchema {
            id: "tblLeads".into(),
            name: "Leads".into(),
            fields,
        }];
        assert!(check(&tables, "tblLeads", &default_fields()).ready());
    }
}
