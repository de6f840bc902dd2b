//! The one durable consume loop every worker runs. A handler returns an [`Outcome`]; the loop
//! turns it into ack, nak-with-delay or term. It acks only after the handler returned `Done`,
//! which a handler does only once its effect is durable, so a crash anywhere means redelivery.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use super::payload::{Alert, Payload, decode};
use super::{Bus, BusError, MSG_ID_HEADER, trace};
use crate::agent::AgentState;

/// What the handler made of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The effect is durable: ack.
    Done,
    /// A transient failure: deliver again after `after` (until `max_deliver` runs out).
    Retry { after: Duration, reason: String },
    /// The message can never succeed: stop redelivery and raise an `agent.alert`.
    Poison(String),
}

/// A decoded message and what JetStream knows of its delivery.
#[derive(Debug, Clone)]
pub struct Delivery<P> {
    pub payload: P,
    /// 1 on the first delivery.
    pub attempt: i64,
    pub stream_sequence: u64,
    pub msg_id: Option<String>,
}

/// How long a message waits after the handler panicked: a bug, perhaps only under some condition.
const PANIC_RETRY: Duration = Duration::from_secs(5);

/// Runs `handler` on every message of the durable consumer until `shutdown` fires; with a `gate`,
/// only while the agent is running (paused, it stops pulling and the messages wait). A message in
/// the handler when shutdown comes is finished and settled; prefetched ones are left unacked and
/// come back to another replica after the ack wait.
pub async fn consume<P, H, F>(
    bus: &Bus,
    stream: &str,
    durable: &str,
    gate: Option<watch::Receiver<AgentState>>,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), BusError>
where
    P: Payload,
    H: Fn(Delivery<P>) -> F,
    F: Future<Output = Outcome>,
{
    let mut consumer: PullConsumer = bus
        .js
        .get_consumer_from_stream(durable, stream)
        .await
        .map_err(|e| BusError::jetstream(format!("consumer {stream}/{durable} (run `leadq setup`)"), e))?;
    let max_deliver = consumer
        .info()
        .await
        .map_err(|e| BusError::jetstream(format!("consumer {stream}/{durable} info"), e))?
        .config
        .max_deliver;
    let mut gate = gate;
    loop {
        if let Some(state) = gate.as_mut() {
            let orphaned = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                running = state.wait_for(|s| s.is_running()) => running.is_err(),
            };
            if orphaned {
                gate = None; // Nobody updates the state any more: run.
            }
        }
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(4)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| BusError::jetstream(format!("pulling from {stream}/{durable}"), e))?;
        tracing::info!(stream, consumer = durable, "consuming");
        let paused = loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => break false,
                () = until_paused(&mut gate) => break true,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    // Missed heartbeats and reconnects surface here; the stream re-pulls by itself.
                    tracing::warn!(stream, consumer = durable, %err, "pull interrupted");
                    continue;
                }
                None => break false,
            };
            handle_one(bus, durable, max_deliver, &message, &handler).await;
        };
        // Dropping the pull ends it; prefetched messages come back after the ack wait.
        drop(messages);
        if !paused {
            break;
        }
        tracing::info!(stream, consumer = durable, "agent paused: not pulling");
    }
    tracing::info!(stream, consumer = durable, "stopped consuming");
    Ok(())
}

/// Resolves when the agent leaves the running state; never without a gate.
async fn until_paused(gate: &mut Option<watch::Receiver<AgentState>>) {
    if let Some(state) = gate
        && state.wait_for(|s| !s.is_running()).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

async fn handle_one<P, H, F>(
    bus: &Bus,
    durable: &str,
    max_deliver: i64,
    message: &async_nats::jetstream::Message,
    handler: &H,
) where
    P: Payload,
    H: Fn(Delivery<P>) -> F,
    F: Future<Output = Outcome>,
{
    let (attempt, stream_sequence) = match message.info() {
        Ok(info) => (info.delivered, info.stream_sequence),
        Err(err) => {
            tracing::warn!(%err, subject = %message.subject, "message without JetStream metadata");
            return;
        }
    };
    let msg_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(MSG_ID_HEADER))
        .map(|v| v.to_string());
    let span = tracing::info_span!(
        "consume",
        subject = %message.subject,
        consumer = durable,
        stream_sequence,
        attempt,
        msg_id = msg_id.as_deref().unwrap_or(""),
        outcome = field::Empty,
    );
    trace::adopt(&span, message.headers.as_ref());
    async {
        let outcome = match decode::<P>(&message.payload) {
            Err(err) => Outcome::Poison(format!("undecodable {}: {err}", P::SUBJECT)),
            Ok(payload) => {
                let delivery = Delivery {
                    payload,
                    attempt,
                    stream_sequence,
                    msg_id,
                };
                // Boxed: a handler's future can be large, and the loop's stack should not carry it.
                AssertUnwindSafe(Box::pin(handler(delivery)))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Outcome::Retry {
                        after: PANIC_RETRY,
                        reason: "handler panicked".into(),
                    })
            }
        };
        let outcome = match outcome {
            Outcome::Retry { reason, .. } if attempt >= max_deliver => {
                Outcome::Poison(format!("gave up after {attempt} deliveries: {reason}"))
            }
            other => other,
        };
        tracing::Span::current().record("outcome", field::debug(&outcome));
        settle(bus, durable, message, outcome).await;
    }
    .instrument(span)
    .await;
}

async fn settle(bus: &Bus, durable: &str, message: &async_nats::jetstream::Message, outcome: Outcome) {
    let result = match outcome {
        Outcome::Done => message.double_ack().await,
        Outcome::Retry { after, reason } => {
            tracing::warn!(%reason, retry_in = ?after, "handler failed; will retry");
            message.ack_with(AckKind::Nak(Some(after))).await
        }
        Outcome::Poison(reason) => {
            tracing::error!(%reason, "poison message terminated");
            let alert = Alert::new(
                durable,
                format!("message on {} dropped: {reason}", message.subject),
                serde_json::json!({
                    "subject": message.subject.as_str(),
                    "payload": String::from_utf8_lossy(&message.payload),
                }),
            );
            match bus.publish(&alert).await {
                Ok(_) => message.ack_with(AckKind::Term).await,
                // Without the alert nobody would know; keep the message for another try.
                Err(err) => {
                    tracing::error!(%err, "alert not published; message kept");
                    message.ack_with(AckKind::Nak(Some(PANIC_RETRY))).await
                }
            }
        }
    };
    if let Err(err) = result {
        // The server will redeliver after the ack wait; handlers are idempotent for this.
        tracing::warn!(%err, "settling the message failed");
    }
}
