//! The activity log (`activity`): written in groups by the activity writer, read by the page
//! and the CLI, newest first.

use serde::{Deserialize, Serialize};
use surrealdb::types::RecordId;

use super::leads::RESUBMISSIONS;
use super::{Page, Store, StoreError};
use crate::bus::Activity;

/// Which activity entries to show.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct ActivityFilter {
    pub kind: Option<String>,
    pub actor: Option<String>,
    #[serde(default = "default_page_size")]
    pub limit: u32,
    #[serde(default)]
    pub offset: u32,
}

fn default_page_size() -> u32 {
    50
}

/// The columns of an [`ActivityRow`], as a query selects them.
const ACTIVITY_COLUMNS: &str = "record::id(id) AS id, kind, actor, summary, lead_id, detail, <string>at AS at";

/// Rows of an activity query; a row that does not read as one is left out.
fn activity_rows(rows: Vec<serde_json::Value>) -> Vec<ActivityRow> {
    rows.into_iter()
        .filter_map(|row| serde_json::from_value(row).ok())
        .collect()
}

/// An activity log row as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRow {
    pub id: String,
    pub kind: String,
    pub actor: String,
    pub summary: String,
    pub lead_id: Option<String>,
    pub detail: serde_json::Value,
    pub at: String,
}

impl Store {
    /// Writes an activity entry; writing the same entry again (a redelivery) changes nothing.
    pub async fn record_activity(&self, entry: &Activity) -> Result<(), StoreError> {
        self.record_activities(std::slice::from_ref(entry)).await
    }

    /// Writes several activity entries in one round trip: the activity writer takes every entry
    /// its lanes hold at once, since one query per entry left a 1,000-lead burst's texts (whose
    /// entries set the lead's `sms_state`) waiting minutes behind ten thousand other entries.
    pub async fn record_activities(&self, entries: &[Activity]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut statements = String::new();
        for (i, entry) in entries.iter().enumerate() {
            statements.push_str(&format!(
                "UPSERT $id{i} SET kind = $kind{i}, actor = $actor{i}, summary = $summary{i}, \
                 lead_id = $lead_id{i}, detail = $detail{i}, at = <datetime>$at{i};\n"
            ));
            // The SMS role keeps no records; its report is how a lead's record learns the text went out.
            if entry.kind.starts_with("sms.") && entry.lead_id.is_some() {
                statements.push_str(&format!("UPDATE $lead{i} SET sms_state = $sms_state{i};\n"));
            }
        }
        self.conn
            .run(|db| {
                entries
                    .iter()
                    .enumerate()
                    .fold(db.query(statements.clone()), |query, (i, entry)| {
                        let at = entry
                            .at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default();
                        let query = query
                            .bind((format!("id{i}"), RecordId::new("activity", entry.id.to_string())))
                            .bind((format!("kind{i}"), entry.kind.clone()))
                            .bind((format!("actor{i}"), entry.actor.clone()))
                            .bind((format!("summary{i}"), entry.summary.clone()))
                            .bind((format!("lead_id{i}"), entry.lead_id.map(|id| id.to_string())))
                            .bind((format!("detail{i}"), entry.detail.clone()))
                            .bind((format!("at{i}"), at));
                        match (entry.kind.strip_prefix("sms."), entry.lead_id) {
                            (Some(state), Some(lead_id)) => query
                                .bind((format!("lead{i}"), RecordId::new("lead", lead_id.to_string())))
                                .bind((format!("sms_state{i}"), state.to_owned())),
                            _ => query,
                        }
                    })
            })
            .await?;
        for entry in entries {
            if entry.kind == "lead.resubmitted"
                && let Some(lead_id) = entry.lead_id
            {
                self.note_resubmission(lead_id).await?;
            }
        }
        Ok(())
    }

    /// Once the lead is finalized its record lists the resubmission (before that, finalizing
    /// does), and the CRM row is written again with it.
    async fn note_resubmission(&self, lead_id: uuid::Uuid) -> Result<(), StoreError> {
        self.conn
            .run(|db| {
                db.query(format!(
                    "UPDATE $lead SET resubmissions = {RESUBMISSIONS}; \
                     UPDATE $lead SET crm_sync = 'pending' WHERE crm_sync = 'synced'"
                ))
                .bind(("lead", RecordId::new("lead", lead_id.to_string())))
                .bind(("lead_id", lead_id.to_string()))
            })
            .await?;
        self.merge_resubmissions(lead_id).await
    }

    /// What happened to one lead, oldest first (the lead's page); at most 200 entries.
    pub async fn lead_activity(&self, lead_id: uuid::Uuid) -> Result<Vec<ActivityRow>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(format!(
                    "SELECT {ACTIVITY_COLUMNS} FROM activity WHERE lead_id = $lead_id ORDER BY at ASC LIMIT 200"
                ))
                .bind(("lead_id", lead_id.to_string()))
            })
            .await?;
        Ok(activity_rows(response.take(0)?))
    }

    /// The newest entries first.
    pub async fn recent_activity(&self, limit: u32) -> Result<Vec<ActivityRow>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(format!(
                    "SELECT {ACTIVITY_COLUMNS} FROM activity ORDER BY at DESC LIMIT $limit"
                ))
                .bind(("limit", i64::from(limit)))
            })
            .await?;
        Ok(activity_rows(response.take(0)?))
    }

    /// One page of the activity log, newest first, optionally of one kind and one actor.
    pub async fn activity_page(&self, filter: &ActivityFilter) -> Result<Page<ActivityRow>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(format!(
                    "LET $rows = SELECT * FROM activity \
                   WHERE ($kind = NONE OR kind = $kind) AND ($actor = NONE OR actor = $actor); \
                 RETURN count($rows); \
                 SELECT {ACTIVITY_COLUMNS} \
                   FROM activity WHERE ($kind = NONE OR kind = $kind) AND ($actor = NONE OR actor = $actor) \
                   ORDER BY at DESC LIMIT $limit START $offset"
                ))
                .bind(("kind", filter.kind.clone()))
                .bind(("actor", filter.actor.clone()))
                .bind(("limit", i64::from(filter.limit)))
                .bind(("offset", i64::from(filter.offset)))
            })
            .await?;
        let total: Option<u64> = response.take(1)?;
        Ok(Page {
            items: activity_rows(response.take(2)?),
            total: total.unwrap_or(0),
            limit: filter.limit,
            offset: filter.offset,
        })
    }
}
