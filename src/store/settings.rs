//! Saved settings (`setting`: script, rules) and the admin's test emails (`test_email`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use surrealdb::types::RecordId;

use super::{Store, StoreError};

impl Store {
    /// A saved setting (`script`, `rules`), if an admin (or the first start) saved one.
    pub async fn setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query("SELECT VALUE body FROM $id")
                    .bind(("id", RecordId::new("setting", key.to_owned())))
            })
            .await?;
        let bodies: Vec<serde_json::Value> = response.take(0)?;
        Ok(bodies
            .into_iter()
            .next()
            .and_then(|body| serde_json::from_value(body).ok()))
    }

    pub async fn save_setting<T: Serialize>(&self, key: &str, value: &T, by: &str) -> Result<(), StoreError> {
        let body = serde_json::to_value(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.conn
            .run(|db| {
                db.query("UPSERT $id SET body = $body, updated_at = time::now(), updated_by = $by")
                    .bind(("id", RecordId::new("setting", key.to_owned())))
                    .bind(("body", body.clone()))
                    .bind(("by", by.to_owned()))
            })
            .await?;
        Ok(())
    }

    /// The newest pasted test emails and what became of each.
    pub async fn recent_test_emails(&self, limit: u32) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(
                    "SELECT record::id(id) AS id, raw, result, submitted_by, <string>at AS at \
                 FROM test_email ORDER BY at DESC LIMIT $limit",
                )
                .bind(("limit", i64::from(limit)))
            })
            .await?;
        Ok(response.take(0)?)
    }

    /// Keeps a pasted test email and what became of it.
    pub async fn save_test_email(&self, raw: &str, result: &serde_json::Value, by: &str) -> Result<(), StoreError> {
        self.conn
            .run(|db| {
                db.query("CREATE test_email SET raw = $raw, result = $result, submitted_by = $by, at = time::now()")
                    .bind(("raw", raw.to_owned()))
                    .bind(("result", result.clone()))
                    .bind(("by", by.to_owned()))
            })
            .await?;
        Ok(())
    }
}
