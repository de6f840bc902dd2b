//! The system of record: SurrealDB through the `any` engine, so one type serves the embedded file
//! store (`surrealkv://`), tests (`mem://`) and a SurrealDB server (`ws://`). The schema in
//! `schema.surql` is applied at every connect; every query binds its parameters.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use surrealdb::Surreal;
use surrealdb::engine::any::Any;
use surrealdb::opt::auth::Root;
use surrealdb::types::RecordId;

use crate::bus::Activity;
use crate::config::{DbLocation, Settings};
use crate::domain::script::Script;

const SCHEMA: &str = include_str!("schema.surql");
const NAMESPACE: &str = "leadq";
const DATABASE: &str = "leadq";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {endpoint} (LEADQ_DB): {source}")]
    Open { endpoint: String, source: surrealdb::Error },
    #[error("store query failed: {0}")]
    Query(#[from] surrealdb::Error),
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

/// A handle on the store; clones share one connection.
#[derive(Clone, Debug)]
pub struct Store {
    db: Surreal<Any>,
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
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        if let DbLocation::File(path) = &settings.db
            && let Some(parent) = path.parent()
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::DataDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let endpoint = settings.db.endpoint();
        let open_err = |source| StoreError::Open {
            endpoint: endpoint.clone(),
            source,
        };
        let db = tokio::time::timeout(Duration::from_secs(10), surrealdb::engine::any::connect(&endpoint))
            .await
            .map_err(|_| open_err(surrealdb::Error::internal("timed out after 10 s".into())))?
            .map_err(open_err)?;
        if let (DbLocation::Server(_), Some(user), Some(pass)) = (&settings.db, &settings.db_user, &settings.db_pass) {
            db.signin(Root {
                username: user.clone(),
                password: pass.expose_secret().to_owned(),
            })
            .await
            .map_err(open_err)?;
        }
        db.use_ns(NAMESPACE).use_db(DATABASE).await.map_err(open_err)?;
        db.query(SCHEMA).await.and_then(|r| r.check()).map_err(open_err)?;
        Ok(Self { db })
    }

    /// Whether the store answers a query now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.query("RETURN 1").await?.check()?;
        Ok(())
    }

    /// Writes an activity entry; writing the same entry again (a redelivery) changes nothing.
    pub async fn record_activity(&self, entry: &Activity) -> Result<(), StoreError> {
        let at = entry
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        self.db
            .query(
                "UPSERT $id SET kind = $kind, actor = $actor, summary = $summary, lead_id = $lead_id, \
                 detail = $detail, at = <datetime>$at",
            )
            .bind(("id", RecordId::new("activity", entry.id.to_string())))
            .bind(("kind", entry.kind.clone()))
            .bind(("actor", entry.actor.clone()))
            .bind(("summary", entry.summary.clone()))
            .bind(("lead_id", entry.lead_id.map(|id| id.to_string())))
            .bind(("detail", entry.detail.clone()))
            .bind(("at", at))
            .await?
            .check()?;
        Ok(())
    }

    /// The saved call script, if an admin (or the first start) saved one.
    pub async fn script(&self) -> Result<Option<Script>, StoreError> {
        let mut response = self.db.query("SELECT VALUE body FROM script:current").await?.check()?;
        let bodies: Vec<serde_json::Value> = response.take(0)?;
        Ok(bodies
            .into_iter()
            .next()
            .and_then(|body| serde_json::from_value(body).ok()))
    }

    pub async fn save_script(&self, script: &Script, by: &str) -> Result<(), StoreError> {
        let body = serde_json::to_value(script).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.db
            .query("UPSERT script:current SET body = $body, updated_at = time::now(), updated_by = $by")
            .bind(("body", body))
            .bind(("by", by.to_owned()))
            .await?
            .check()?;
        Ok(())
    }

    /// The newest entries first.
    pub async fn recent_activity(&self, limit: u32) -> Result<Vec<ActivityRow>, StoreError> {
        let mut response = self
            .db
            .query(
                "SELECT record::id(id) AS id, kind, actor, summary, lead_id, detail, <string>at AS at \
                 FROM activity ORDER BY at DESC LIMIT $limit",
            )
            .bind(("limit", i64::from(limit)))
            .await?
            .check()?;
        let rows: Vec<serde_json::Value> = response.take(0)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| serde_json::from_value(row).ok())
            .collect())
    }
}
