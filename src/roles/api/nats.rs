//! The CMO interface as a NATS service (`$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` discover it):
//! `cmo.lead-qualification-agent-001.{status,command,trigger-lead,report,capabilities}` take the
//! same JSON bodies as the REST routes and answer the same JSON, with the API key in the
//! `X-API-Key` header. Errors answer `{"error": ...}` and set the service error headers.

use async_nats::service::ServiceExt;
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bus::BusError;
use crate::cmo::{Cmo, CmoError, IdempotencyKey};

const OPERATIONS: [&str; 5] = ["status", "command", "trigger-lead", "report", "capabilities"];

pub fn subject(operation: &str) -> String {
    format!("cmo.{}.{operation}", crate::bus::AGENT_ID)
}

fn body<T: DeserializeOwned>(payload: &Bytes) -> Result<T, CmoError> {
    serde_json::from_slice(payload).map_err(|e| CmoError::BadRequest(format!("malformed request body: {e}")))
}

async fn answer(cmo: &Cmo, operation: &str, message: &async_nats::Message) -> Result<Value, CmoError> {
    let presented = message
        .headers
        .as_ref()
        .and_then(|h| h.get("X-API-Key"))
        .map(|v| v.as_str().to_owned());
    let key = cmo.check_key(presented.as_deref(), None).await?;
    let actor = format!("cmo-nats:{key}");
    match operation {
        "status" => Ok(serde_json::to_value(cmo.status().await?).unwrap_or_default()),
        "command" => cmo.command(&actor, body(&message.payload)?).await,
        "trigger-lead" => {
            let key = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Idempotency-Key"))
                .map(|v| IdempotencyKey::new(v.as_str(), &actor))
                .transpose()?;
            cmo.trigger(&actor, key.as_ref(), &message.payload).await
        }
        "report" => {
            let request: Value = if message.payload.is_empty() {
                json!({})
            } else {
                body(&message.payload)?
            };
            cmo.report(request["period"].as_str().unwrap_or("today")).await
        }
        _ => Ok(Cmo::capabilities()),
    }
}

pub async fn run(cmo: Cmo, shutdown: CancellationToken) -> Result<(), BusError> {
    let service = cmo
        .bus
        .client
        .service_builder()
        .description("Mesh Cowork Lead Qualifier: the CMO agent's interface")
        .start("leadq-cmo", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| BusError::jetstream("CMO service", e))?;
    let mut endpoints = Vec::new();
    for operation in OPERATIONS {
        let endpoint = service
            .endpoint_builder()
            .name(operation)
            .add(subject(operation))
            .await
            .map_err(|e| BusError::jetstream("CMO service endpoint", e))?;
        endpoints.push(endpoint.map(move |request| (operation, request)));
    }
    let requests = futures::stream::select_all(endpoints).take_until(shutdown.cancelled_owned());
    // Requests are answered side by side: a burst of trigger-leads does not queue behind one.
    requests
        .for_each_concurrent(CONCURRENT_REQUESTS, |(operation, request)| {
            respond(&cmo, operation, request)
        })
        .await;
    Ok(())
}

/// Requests one api process answers at once over NATS.
const CONCURRENT_REQUESTS: usize = 64;

async fn respond(cmo: &Cmo, operation: &'static str, request: async_nats::service::Request) {
    {
        let (payload, headers) = match answer(cmo, operation, &request.message).await {
            Ok(value) => (value, async_nats::HeaderMap::new()),
            Err(err) => {
                let message = err.public_message();
                tracing::info!(code = err.code(), error = %message, operation, "CMO request refused");
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Service-Error", message.as_str());
                headers.insert("Nats-Service-Error-Code", err.code().to_string().as_str());
                (json!({ "error": message }), headers)
            }
        };
        let bytes = Bytes::from(serde_json::to_vec(&payload).unwrap_or_default());
        if let Err(err) = request.respond_with_headers(Ok(bytes), headers).await {
            tracing::warn!(%err, operation, "CMO service reply not sent");
        }
    }
}
