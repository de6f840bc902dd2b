//! The one durable consume loop every worker runs. A handler returns an [`Outcome`]; the loop
//! turns it into ack, nak-with-delay or term. It acks only after the handler returned `Done`,
//! which a handler does only once its effect is durable, so a crash anywhere means redelivery.
//!
//! Up to [`Lanes::concurrency`] messages are handled at once. The loop pulls only as many messages
//! as it has free lanes (so none waits in a client buffer while its ack wait runs out), and while
//! a handler works it keeps the message's deadline extended with in-progress acks, so a slow
//! outside service never makes JetStream hand the same message to another replica.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use futures::stream::{BoxStream, FuturesUnordered, SelectAll};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use super::payload::{Alert, Payload, decode};
use super::{Bus, BusError, MSG_ID_HEADER, trace};
use crate::domain::agent_state::AgentState;

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

/// How one consume loop spreads its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lanes {
    /// Messages handled at once by this process.
    pub concurrency: usize,
    /// A handler still working after this is abandoned and its message delivered again: the
    /// bound that keeps a stuck request from holding a message (and its deadline) forever.
    pub max_handling: Duration,
}

impl Lanes {
    pub fn new(concurrency: usize, max_handling: Duration) -> Self {
        Self {
            concurrency: concurrency.max(1),
            max_handling,
        }
    }
}

/// How long a message waits after the handler panicked: a bug, perhaps only under some condition.
const PANIC_RETRY: Duration = Duration::from_secs(5);
/// A pull request lives this long on the server; the loop then asks again (and a request lost
/// with a connection is noticed by the client's own timeout, this plus 5 s). No idle heartbeat:
/// async-nats 0.51's `Batch` swallows a heartbeat without arranging to be woken again, so a
/// message arriving after one would wait for the request's end.
const PULL_EXPIRES: Duration = Duration::from_secs(3);

/// The pause before the first pull after a refused one; it doubles up to [`PULL_RETRY_MOST`].
const PULL_RETRY_FIRST: Duration = Duration::from_millis(100);
const PULL_RETRY_MOST: Duration = Duration::from_secs(2);

/// Pull requests the server refused or could not route (no responders while a stream's leader
/// moves, a leadership change). A refused request ends at once, so without a pause the loop
/// would ask thousands of times a second; and it says so once per change, not per attempt.
#[derive(Default)]
struct PullTrouble {
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

impl PullTrouble {
    fn failed(&mut self, stream: &str, durable: &str, err: &dyn std::fmt::Display) {
        if self.failures == 0 {
            tracing::warn!(stream, consumer = durable, %err, "pull requests failing; retrying until they are answered");
        } else {
            tracing::debug!(stream, consumer = durable, %err, failures = self.failures, "pull request failed again");
        }
        self.failures += 1;
        let pause = PULL_RETRY_FIRST * 2u32.pow(self.failures.min(5) - 1);
        self.retry_at = Some(tokio::time::Instant::now() + pause.min(PULL_RETRY_MOST));
    }

    fn answered(&mut self, stream: &str, durable: &str) {
        if self.failures > 0 {
            tracing::info!(
                stream,
                consumer = durable,
                failures = self.failures,
                "pull requests answered again"
            );
        }
        *self = Self::default();
    }

    /// When the next pull may be made; None: now.
    fn waiting_until(&self) -> Option<tokio::time::Instant> {
        self.retry_at.filter(|at| *at > tokio::time::Instant::now())
    }
}

/// One pull request's messages, tagged with the request, then its end.
type Pulled = (u64, Option<Result<async_nats::jetstream::Message, async_nats::Error>>);

/// The consumer metadata key holding its retry ladder (`5s,30s,60s`), written by `setup`.
pub(super) const RETRY_LADDER: &str = "leadq.retry_ladder";

/// Failures retried after the handler's own wait before the ladder's waits apply: a blip (an
/// election, a process restarting) is over within them.
const QUICK_RETRIES: i64 = 3;

pub(super) fn write_ladder(ladder: &[Duration]) -> String {
    ladder
        .iter()
        .map(|step| humantime::format_duration(*step).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn read_ladder(config: &async_nats::jetstream::consumer::Config) -> Vec<Duration> {
    config
        .metadata
        .get(RETRY_LADDER)
        .map(|ladder| {
            ladder
                .split(',')
                .filter_map(|step| humantime::parse_duration(step.trim()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The wait before the next delivery of a message whose delivery `attempt` failed and asked
/// for `asked`: that, for the first quick tries, then at least each step of the ladder in turn
/// (its last step from then on), so an outage does not use the delivery limit up in a minute.
fn retry_delay(ladder: &[Duration], attempt: i64, asked: Duration) -> Duration {
    let past_quick = attempt - QUICK_RETRIES;
    if past_quick < 1 {
        return asked;
    }
    let step = ladder
        .get(past_quick as usize - 1)
        .or(ladder.last())
        .copied()
        .unwrap_or_default();
    asked.max(step)
}

/// Runs `handler` on every message of the durable consumer until `shutdown` fires; with a `gate`,
/// only while the agent is running (paused, it stops pulling and the messages wait). Messages in
/// the handlers when shutdown or a pause comes are finished and settled.
pub async fn consume<P, H, F>(
    bus: &Bus,
    stream: &str,
    durable: &str,
    gate: Option<watch::Receiver<AgentState>>,
    lanes: Lanes,
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
    let config = consumer
        .info()
        .await
        .map_err(|e| BusError::jetstream(format!("consumer {stream}/{durable} info"), e))?
        .config
        .clone();
    let settle = Settle {
        bus,
        durable,
        ladder: read_ladder(&config),
        max_deliver: config.max_deliver,
        progress_every: progress_interval(&config),
        max_handling: lanes.max_handling,
    };
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
        tracing::info!(stream, consumer = durable, lanes = lanes.concurrency, "consuming");
        let mut working = FuturesUnordered::new();
        // Stream sequences of the messages in the handlers: one the server delivers again while
        // it is still being handled (its deadline lapsed, a starved process's in-progress acks
        // late) must not start a second handler beside the first (the caller would dial twice).
        let mut in_hand: HashSet<u64> = HashSet::new();
        let mut pulls: SelectAll<BoxStream<'static, Pulled>> = SelectAll::new();
        // Messages asked for and not yet come, per pull request.
        let mut asked: HashMap<u64, usize> = HashMap::new();
        let mut refused: HashSet<u64> = HashSet::new();
        let mut trouble = PullTrouble::default();
        let mut next_pull = 0u64;
        let paused = loop {
            let free = lanes
                .concurrency
                .saturating_sub(working.len() + asked.values().sum::<usize>());
            let wanted = free > 0 && (asked.is_empty() || free * 2 >= lanes.concurrency || working.is_empty());
            let pause = trouble.waiting_until().filter(|_| wanted);
            if wanted && pause.is_none() {
                match consumer
                    .batch()
                    .max_messages(free)
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await
                {
                    Ok(batch) => {
                        let id = next_pull;
                        next_pull += 1;
                        asked.insert(id, free);
                        let tagged = batch
                            .map(move |m| (id, Some(m)))
                            .chain(futures::stream::once(async move { (id, None) }));
                        pulls.push(tagged.boxed());
                    }
                    Err(err) => {
                        trouble.failed(stream, durable, &err);
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break false,
                () = until_paused(&mut gate) => break true,
                () = tokio::time::sleep_until(pause.unwrap_or_else(tokio::time::Instant::now)), if pause.is_some() => {}
                Some(done) = working.next(), if !working.is_empty() => {
                    if let Some(sequence) = done {
                        in_hand.remove(&sequence);
                    }
                }
                Some((id, pulled)) = pulls.next(), if !pulls.is_empty() => match pulled {
                    Some(Ok(message)) => {
                        if let Some(left) = asked.get_mut(&id) {
                            *left = left.saturating_sub(1);
                        }
                        let sequence = message.info().map(|info| info.stream_sequence).ok();
                        match sequence {
                            Some(sequence) if !in_hand.insert(sequence) => {
                                settle.still_in_hand(&message, sequence).await;
                            }
                            _ => working.push(settle.handle_one(message, &handler).map(move |()| sequence)),
                        }
                    }
                    Some(Err(err)) => {
                        // A status the server ended the request with (503 no responders, 409
                        // leadership change): the request is over and is made again after a pause.
                        refused.insert(id);
                        trouble.failed(stream, durable, &err);
                    }
                    None => {
                        asked.remove(&id);
                        if !refused.remove(&id) {
                            trouble.answered(stream, durable);
                        }
                    }
                },
            }
        };
        // No more pulls; what is in the handlers is finished and settled.
        drop(pulls);
        if !working.is_empty() {
            tracing::info!(
                stream,
                consumer = durable,
                in_flight = working.len(),
                "finishing messages in hand"
            );
        }
        while working.next().await.is_some() {}
        if !paused {
            break;
        }
        tracing::info!(stream, consumer = durable, "agent paused: not pulling");
    }
    tracing::info!(stream, consumer = durable, "stopped consuming");
    Ok(())
}

/// In-progress acks often enough that the shortest deadline the consumer gives is never reached.
fn progress_interval(config: &async_nats::jetstream::consumer::Config) -> Duration {
    let shortest = config
        .backoff
        .iter()
        .copied()
        .chain(std::iter::once(config.ack_wait))
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(30));
    (shortest / 3).max(Duration::from_millis(100))
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

/// What every message of one loop is handled and settled with.
struct Settle<'a> {
    bus: &'a Bus,
    durable: &'a str,
    /// The retry ladder (none: each retry waits what its handler asks).
    ladder: Vec<Duration>,
    max_deliver: i64,
    progress_every: Duration,
    max_handling: Duration,
}

impl Settle<'_> {
    async fn handle_one<P, H, F>(&self, message: async_nats::jetstream::Message, handler: &H)
    where
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
            consumer = self.durable,
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
                    let work = AssertUnwindSafe(Box::pin(handler(delivery))).catch_unwind().map(|r| {
                        r.unwrap_or_else(|_| Outcome::Retry {
                            after: PANIC_RETRY,
                            reason: "handler panicked".into(),
                        })
                    });
                    self.keeping_deadline(&message, work).await
                }
            };
            let outcome = match outcome {
                Outcome::Retry { reason, .. } if attempt >= self.max_deliver => {
                    Outcome::Poison(format!("gave up after {attempt} deliveries: {reason}"))
                }
                other => other,
            };
            let outcome = match outcome {
                Outcome::Retry { after, reason } => Outcome::Retry {
                    after: retry_delay(&self.ladder, attempt, after),
                    reason,
                },
                other => other,
            };
            tracing::Span::current().record("outcome", field::debug(&outcome));
            self.settle(&message, outcome).await;
        }
        .instrument(span)
        .await;
    }

    /// Runs `work`, telling the server every `progress_every` that the message is still being
    /// handled, up to `max_handling`.
    async fn keeping_deadline(
        &self,
        message: &async_nats::jetstream::Message,
        work: impl Future<Output = Outcome>,
    ) -> Outcome {
        let mut work = std::pin::pin!(tokio::time::timeout(self.max_handling, work));
        let mut ticks = tokio::time::interval(self.progress_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // The first tick is immediate: the delivery itself set the deadline.
        loop {
            tokio::select! {
                done = &mut work => {
                    return done.unwrap_or_else(|_| Outcome::Retry {
                        after: PANIC_RETRY,
                        reason: format!("handler still working after {:?}; abandoned", self.max_handling),
                    });
                }
                _ = ticks.tick() => {
                    if let Err(err) = message.ack_with(AckKind::Progress).await {
                        tracing::debug!(%err, "in-progress ack not sent");
                    }
                }
            }
        }
    }

    /// A delivery of a message a handler here is still working on: the server is told it is in
    /// progress, and the first handler's outcome settles it.
    async fn still_in_hand(&self, message: &async_nats::jetstream::Message, sequence: u64) {
        tracing::warn!(
            consumer = self.durable,
            stream_sequence = sequence,
            "delivered again while still being handled; not handled twice at once"
        );
        if let Err(err) = message.ack_with(AckKind::Progress).await {
            tracing::debug!(%err, "in-progress ack not sent");
        }
    }

    async fn settle(&self, message: &async_nats::jetstream::Message, outcome: Outcome) {
        let (bus, durable) = (self.bus, self.durable);
        let kind = match outcome {
            Outcome::Done => AckKind::Ack,
            Outcome::Retry { after, reason } => {
                tracing::warn!(%reason, retry_in = ?after, "handler failed; will retry");
                AckKind::Nak(Some(after))
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
                    Ok(_) => AckKind::Term,
                    // Without the alert nobody would know; keep the message for another try.
                    Err(err) => {
                        tracing::error!(%err, "alert not published; message kept");
                        AckKind::Nak(Some(PANIC_RETRY))
                    }
                }
            }
        };
        // Only the ack waits for the server's word: a nak or term sent again after a slow
        // answer could reach a later delivery of the same message.
        let settled = match kind {
            AckKind::Ack => message.double_ack().await,
            other => message.ack_with(other).await,
        };
        if let Err(err) = settled {
            // The server redelivers after the ack wait; handlers are idempotent for this.
            tracing::warn!(%err, ?kind, "settling the message failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_what_they_ask_at_first_then_at_least_each_ladder_step() {
        let ladder = [5, 30, 60].map(Duration::from_secs);
        let asked = Duration::from_millis(100);
        let waits: Vec<Duration> = (1..=7).map(|attempt| retry_delay(&ladder, attempt, asked)).collect();
        assert_eq!(&waits[..3], [asked; 3], "quick tries: the handler's own wait");
        assert_eq!(&waits[3..], [5, 30, 60, 60].map(Duration::from_secs), "then the ladder");
        assert_eq!(
            retry_delay(&ladder, 5, Duration::from_secs(90)),
            Duration::from_secs(90),
            "a longer ask stands"
        );
        assert_eq!(retry_delay(&[], 9, asked), asked, "no ladder: as asked");
    }

    #[test]
    fn the_ladder_reads_back_as_written() {
        let ladder = vec![Duration::from_secs(5), Duration::from_secs(900)];
        let config = async_nats::jetstream::consumer::Config {
            metadata: [(RETRY_LADDER.to_owned(), write_ladder(&ladder))].into(),
            ..Default::default()
        };
        assert_eq!(read_ladder(&config), ladder);
    }
}
