//! Why a lead's follow-up texts stopped, in the `sms` bucket (`<lead id>-stop`): a booking or a
//! hand-over to a person writes it; the SMS role reads it before each follow-up. (A STOP reply
//! stops them through the do-not-contact list.)

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bus::{self, BusError};

#[derive(Debug, Serialize, Deserialize)]
struct Stopped {
    reason: String,
}

#[derive(Clone, Debug)]
pub struct FollowUpStops {
    kv: kv::Store,
}

fn key(lead_id: Uuid) -> String {
    format!("{}-stop", lead_id.simple())
}

impl FollowUpStops {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        let kv = js
            .get_key_value(bus::bucket::SMS)
            .await
            .map_err(|e| BusError::jetstream("bucket sms", e))?;
        Ok(Self { kv })
    }

    /// No more follow-ups for this lead, because of `reason` (`booked`, `transferred`).
    pub async fn stop(&self, lead_id: Uuid, reason: &str) -> Result<(), BusError> {
        let body =
            serde_json::to_vec(&Stopped { reason: reason.into() }).map_err(|e| BusError::jetstream("sms encode", e))?;
        let body = bytes::Bytes::from(body);
        bus::retrying("sms stop", || self.kv.put(key(lead_id), body.clone()))
            .await
            .map_err(|e| BusError::jetstream("sms stop", e))?;
        Ok(())
    }

    /// Why this lead's follow-ups stopped, if they did.
    pub async fn reason(&self, lead_id: Uuid) -> Result<Option<String>, BusError> {
        let value = bus::retrying("sms stop get", || self.kv.get(key(lead_id)))
            .await
            .map_err(|e| BusError::jetstream("sms stop get", e))?;
        Ok(value
            .and_then(|v| serde_json::from_slice::<Stopped>(&v).ok())
            .map(|s| s.reason))
    }
}
