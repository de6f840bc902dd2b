//! Riding out a cluster's short absences. While a stream's leader is elected (a node lost, a
//! rolling restart) JetStream answers "no responders" for a second or three, and a request in
//! flight when a connection drops times out. Sent again a moment later, the same request
//! succeeds, so bus operations are retried for a few seconds before their caller hears of it:
//! a webhook answers in time instead of failing the call, a handler keeps its message instead of
//! waiting out a nak's back-off. Every retried operation is safe to repeat (publishes carry their
//! message id, KV writes are compare-and-set).

use std::future::Future;
use std::time::Duration;

/// How long an operation is retried: longer than an R3 leader election (1–3 s measured here),
/// well inside Twilio's 15 s webhook timeout.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(6);

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// Whether a failed request may succeed sent again: what the server or the client says while a
/// leader is elected or a connection is re-established. async-nats reports these as different
/// kinds per operation (and KV errors only as text), so the whole cause chain is read.
pub(crate) fn is_transient(err: &(dyn std::error::Error + 'static)) -> bool {
    const SIGNS: [&str; 7] = [
        "no stream found",
        "no responders",
        "timed out",
        "deadline has elapsed",
        "broken pipe",
        "leadership change",
        "jetstream not enabled",
    ];
    let mut cause = Some(err);
    while let Some(err) = cause {
        let text = err.to_string().to_ascii_lowercase();
        if SIGNS.iter().any(|sign| text.contains(sign)) {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Runs `op` until it succeeds, fails for good, or has been failing transiently for
/// [`RETRY_FOR`]; the last error is returned.
pub(crate) async fn retrying<T, E, F, Fut>(what: &str, mut op: F) -> Result<T, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut pause = FIRST_PAUSE;
    loop {
        match op().await {
            Err(err) if is_transient(&err) && tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(%err, ?pause, what, "bus busy; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Failure(&'static str);

    #[test]
    fn an_election_or_a_timeout_is_transient_a_refusal_is_not() {
        assert!(is_transient(&Failure("no stream found for given subject")));
        assert!(is_transient(&Failure(
            "request error: timed out: request timed out: deadline has elapsed"
        )));
        assert!(is_transient(&Failure("503, Some(\"Leadership Change\")")));
        assert!(!is_transient(&Failure("wrong last sequence: 41")));
        assert!(!is_transient(&Failure("maximum payload exceeded")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_until_it_passes() {
        let tries = AtomicUsize::new(0);
        let result: Result<usize, Failure> = retrying("test", || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0..3 => Err(Failure("no responders")),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.expect("passes on the fourth try"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_is_given_up_after_the_budget_and_a_refusal_at_once() {
        let started = tokio::time::Instant::now();
        let tries = AtomicUsize::new(0);
        let lasting: Result<(), Failure> = retrying("test", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Failure("no responders"))
        })
        .await;
        assert!(lasting.is_err());
        assert!(
            started.elapsed() <= RETRY_FOR,
            "gave up inside the budget: {:?}",
            started.elapsed()
        );
        assert!(tries.load(Ordering::SeqCst) > 3, "retried meanwhile");

        tries.store(0, Ordering::SeqCst);
        let refused: Result<(), Failure> = retrying("test", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Failure("wrong last sequence"))
        })
        .await;
        assert!(refused.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1, "a refusal is not sent again");
    }
}
