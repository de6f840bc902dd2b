//! Bookings Calendly reported (`booking`), each matched to its lead (whose `booking` says booked,
//! canceled or rescheduled) or kept unmatched, so a tour nobody can place is seen, not dropped.

use serde::{Deserialize, Serialize};
use surrealdb::types::RecordId;

use super::{Store, StoreError};
use crate::security::secrets::sha256_hex;

/// What Calendly reported of one invitee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookingEvent {
    #[serde(rename = "invitee.created")]
    Created,
    #[serde(rename = "invitee.canceled")]
    Canceled,
}

/// One report, as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Booking {
    /// Calendly's invitee URI: one booking of one meeting.
    pub invitee: String,
    pub event: BookingEvent,
    pub email: Option<String>,
    pub name: Option<String>,
    /// When the tour is (RFC 3339), as Calendly said.
    pub meeting_at: Option<String>,
    /// When Calendly says it happened (the webhook's `created_at`).
    pub reported_at: String,
    /// On a cancel: another time was picked instead.
    pub rescheduled: bool,
    /// The lead it was matched to; none when no lead has the link's id or the email.
    pub lead_id: Option<String>,
}

impl Store {
    /// The lead a booking belongs to: the one whose id the booking link carried, if it is
    /// recorded, else the newest lead with the booking's email.
    pub async fn match_booking(
        &self,
        tracked: Option<uuid::Uuid>,
        email: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        if let Some(lead_id) = tracked
            && self.lead(lead_id).await?.is_some()
        {
            return Ok(Some(lead_id.to_string()));
        }
        let Some(email) = email.map(str::trim).filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let mut response = self
            .conn
            .run(|db| {
                db.query(
                    "SELECT VALUE record::id(id) FROM lead WHERE string::lowercase(contact.email ?? '') = $email \
                     ORDER BY timestamps.finalized_at DESC LIMIT 1",
                )
                .bind(("email", email.to_lowercase()))
            })
            .await?;
        let ids: Vec<String> = response.take(0)?;
        Ok(ids.into_iter().next())
    }

    /// Keeps the report (one record per invitee and event: a report received twice is kept
    /// once) and moves its lead's booking: booked on a booking; canceled or rescheduled on a
    /// cancel of the booking the lead holds (a cancel of an earlier time leaves a newer one). A
    /// lead already in the CRM is synced again, so its row shows the tour.
    pub async fn record_booking(&self, booking: &Booking) -> Result<(), StoreError> {
        let event = serde_json::to_value(booking.event).map_err(|e| StoreError::Encode(e.to_string()))?;
        let key = sha256_hex(format!("{event}|{}", booking.invitee).as_bytes());
        let lead = booking.lead_id.clone().map(|id| RecordId::new("lead", id));
        let lead_change = match booking.event {
            BookingEvent::Created => {
                "UPDATE $lead SET booking = { state: 'booked', invitee: $invitee, booked_at: $reported_at, \
                 meeting_at: $meeting_at }, crm_sync = IF crm_sync = 'synced' THEN 'pending' ELSE crm_sync END"
            }
            BookingEvent::Canceled => {
                "UPDATE $lead SET booking.state = IF $rescheduled THEN 'rescheduled' ELSE 'canceled' END, \
                 booking.canceled_at = $reported_at, \
                 crm_sync = IF crm_sync = 'synced' THEN 'pending' ELSE crm_sync END WHERE booking.invitee = $invitee"
            }
        };
        let statements = format!(
            "UPSERT $id SET invitee = $invitee, event = $event, email = $email, name = $name, \
             meeting_at = $meeting_at, reported_at = $reported_at, rescheduled = $rescheduled, \
             lead_id = $lead_id, received_at = time::now(); {}",
            if lead.is_some() { lead_change } else { "RETURN NONE" }
        );
        self.conn
            .run(|db| {
                db.query(statements.clone())
                    .bind(("id", RecordId::new("booking", key.clone())))
                    .bind(("invitee", booking.invitee.clone()))
                    .bind(("event", event.clone()))
                    .bind(("email", booking.email.clone()))
                    .bind(("name", booking.name.clone()))
                    .bind(("meeting_at", booking.meeting_at.clone()))
                    .bind(("reported_at", booking.reported_at.clone()))
                    .bind(("rescheduled", booking.rescheduled))
                    .bind(("lead_id", booking.lead_id.clone()))
                    .bind(("lead", lead.clone()))
            })
            .await?;
        Ok(())
    }

    /// The newest reports, or only those matched to no lead.
    pub async fn bookings(&self, unmatched_only: bool, limit: u32) -> Result<Vec<Booking>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(
                    "SELECT invitee, event, email, name, meeting_at, reported_at, rescheduled, lead_id FROM booking \
                     WHERE !$unmatched_only OR lead_id = NONE ORDER BY received_at DESC LIMIT $limit",
                )
                .bind(("unmatched_only", unmatched_only))
                .bind(("limit", i64::from(limit)))
            })
            .await?;
        let rows: Vec<serde_json::Value> = response.take(0)?;
        rows.into_iter()
            .map(|row| {
                serde_json::from_value(row).map_err(|e| StoreError::Encode(format!("a booking does not read: {e}")))
            })
            .collect()
    }
}
