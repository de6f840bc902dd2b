//! The CRM sync: finalized leads from the store to Airtable, upserted on the lead id. It runs
//! beside the finalizer and drains every lead whose `crm_sync` is not `synced`, ten records a
//! request and never faster than Airtable allows, so a burst is batched and an outage is caught up
//! when Airtable is back. Three failed tries in a row raise one `agent.alert` per outage. Only
//! the process holding the `crm-sync` lease syncs: Airtable's limit is per base, so finalizers
//! syncing side by side would draw 429s (and their 30 s pauses) and send the same batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::kv::lease::{self, Leases};
use crate::bus::{Activity, Alert, Bus};
use crate::clients::airtable::{AirtableClient, AirtableError, MAX_RECORDS_PER_REQUEST};
use crate::store::{LeadBooking, LeadRecord, Store};

/// Airtable asks for 30 seconds of quiet after a 429.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(30);
const TRIES: u32 = 3;
/// How soon a process that found the lease taken looks again: the holder gives it up when its
/// drain ends, and what was finalized here meanwhile must not wait a whole poll.
const LEASE_RETRY: Duration = Duration::from_secs(1);

/// A stored lead record as Airtable fields, named by `columns`; absent values are left out.
pub fn airtable_fields(record: &LeadRecord, columns: &BTreeMap<String, String>) -> Map<String, Value> {
    let answer = |id: &str| -> Value {
        let value = record.answer(id).map_or(Value::Null, |a| a.value.clone());
        // A range reads as "3-4" in a spreadsheet cell.
        match (&value["min"], &value["max"]) {
            (Value::Number(min), Value::Number(max)) => Value::String(format!("{min}-{max}")),
            _ => value,
        }
    };
    let text = |value: &Option<String>| value.clone().map_or(Value::Null, Value::String);
    let contact = &record.contact;
    let times = &record.timestamps;
    // Submitted again by the same person: how many times (the record keeps each one's fields).
    let resubmissions = (!record.resubmissions.is_empty()).then(|| Value::from(record.resubmissions.len()));
    let booking = record.booking.as_ref();
    let booked = |value: fn(&LeadBooking) -> &Option<String>| booking.map_or(Value::Null, |b| text(value(b)));
    let transfer = record.transfer.as_ref();
    let values: [(&str, Value); 27] = [
        ("lead_id", Value::String(record.id.clone())),
        ("name", text(&contact.name)),
        ("email", text(&contact.email)),
        ("phone", Value::String(contact.phone.as_str().to_owned())),
        ("office_space", text(&contact.office_space)),
        ("message", text(&contact.message)),
        ("campaign_id", text(&contact.campaign_id)),
        ("page_name", text(&contact.page.page_name)),
        ("variant", text(&contact.page.variant)),
        ("space_type", answer("space_type")),
        ("team_size", answer("team_size")),
        ("move_in", answer("move_in")),
        ("budget", answer("budget")),
        ("decision_maker", answer("decision_maker")),
        ("score", Value::from(record.score)),
        ("verdict", Value::String(record.verdict.clone())),
        ("reasons", Value::String(record.reasons.join("; "))),
        (
            "speed_to_lead_secs",
            times.speed_to_lead_secs.map_or(Value::Null, Value::from),
        ),
        ("call_status", text(&record.call_status)),
        ("submitted_at", text(&times.submitted_at)),
        ("call_placed_at", text(&times.call_placed_at)),
        ("resubmissions", resubmissions.unwrap_or(Value::Null)),
        // The tour, once Calendly reported one (a booking marks the record for another sync).
        (
            "booking",
            booking.map_or(Value::Null, |b| Value::String(b.state.clone())),
        ),
        ("booked_at", booked(|b| &b.booked_at)),
        ("meeting_at", booked(|b| &b.meeting_at)),
        // The warm transfer: what became of it, and the rep who talked with the lead.
        (
            "transfer",
            transfer.map_or(Value::Null, |t| Value::String(t.outcome.clone())),
        ),
        (
            "transferred_to",
            transfer
                .filter(|t| t.outcome == "transferred")
                .map_or(Value::Null, |t| Value::String(t.rep_name.clone())),
        ),
    ];
    values
        .into_iter()
        .filter(|(_, value)| !value.is_null())
        .filter_map(|(field, value)| columns.get(field).map(|column| (column.clone(), value)))
        .collect()
}

pub struct CrmSync {
    pub store: Store,
    pub bus: Bus,
    pub airtable: AirtableClient,
    pub columns: BTreeMap<String, String>,
    pub leases: Leases,
    /// How often to look for unsynced leads besides the finalizer's nudges.
    pub poll: Duration,
}

impl CrmSync {
    /// Runs until shutdown: drains after every nudge and every `poll`, when it holds the lease.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let mut alerted = false;
        loop {
            let next = match self.leases.try_take(lease::CRM_SYNC).await {
                Ok(Some(held)) => {
                    let stop = shutdown.child_token();
                    let drained = held.hold_while(stop.clone(), self.drain(&stop)).await;
                    self.report(drained, &mut alerted).await;
                    self.poll
                }
                Ok(None) => LEASE_RETRY.min(self.poll),
                Err(err) => {
                    tracing::warn!(%err, "CRM sync: lease unavailable; trying again");
                    LEASE_RETRY.min(self.poll)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    /// One alert per outage and one line when Airtable is back.
    async fn report(&self, drained: Result<(), AirtableError>, alerted: &mut bool) {
        match drained {
            Ok(()) if *alerted => {
                *alerted = false;
                self.bus
                    .record(&Activity::new(
                        "crm.recovered",
                        "finalizer",
                        "Airtable is back; unsynced leads synced",
                    ))
                    .await;
            }
            Ok(()) => {}
            Err(err) => {
                tracing::warn!(%err, "CRM sync stopped for now; leads stay unsynced");
                if !*alerted {
                    *alerted = true;
                    let message = format!("Airtable sync failing ({err}); leads are kept and will be replayed");
                    if let Err(e) = self.bus.publish(&Alert::new("finalizer", message, Value::Null)).await {
                        tracing::warn!(%e, "alert not published");
                    }
                }
            }
        }
    }

    /// Syncs every unsynced lead, ten a request; stops at the first batch that fails three times.
    pub async fn drain(&self, shutdown: &CancellationToken) -> Result<(), AirtableError> {
        while !shutdown.is_cancelled() {
            let batch = match self.store.unsynced_leads(MAX_RECORDS_PER_REQUEST as u32).await {
                Ok(batch) if batch.is_empty() => return Ok(()),
                Ok(batch) => batch,
                Err(err) => return Err(AirtableError::Transient(format!("store: {err}"))),
            };
            let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
            let records: Vec<Map<String, Value>> = batch.iter().map(|r| airtable_fields(r, &self.columns)).collect();
            match self.upsert_with_tries(&records).await {
                Ok(_) => {
                    if let Err(err) = self.store.mark_crm(&ids, "synced").await {
                        return Err(AirtableError::Transient(format!("store: {err}")));
                    }
                    tracing::info!(count = ids.len(), "leads synced to Airtable");
                }
                Err(AirtableError::Rejected { status, message }) => {
                    // These records will not go in as they are: set them aside for a person.
                    if let Err(err) = self.store.mark_crm(&ids, "rejected").await {
                        tracing::error!(%err, "could not mark rejected records");
                    }
                    return Err(AirtableError::Rejected { status, message });
                }
                Err(err) => {
                    if let Err(e) = self.store.mark_crm(&ids, "unsynced").await {
                        tracing::error!(%e, "could not mark unsynced records");
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    async fn upsert_with_tries(&self, records: &[Map<String, Value>]) -> Result<Vec<String>, AirtableError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.airtable.upsert(records).await {
                Ok(ids) => return Ok(ids),
                Err(AirtableError::RateLimited) => {
                    tracing::warn!("Airtable rate limit: waiting 30 s as it requires");
                    tokio::time::sleep(RATE_LIMIT_PAUSE).await;
                }
                Err(AirtableError::Transient(reason)) if tries < TRIES => {
                    tracing::warn!(%reason, tries, "Airtable unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(tries)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
}
