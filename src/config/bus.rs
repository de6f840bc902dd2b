//! The bus section: NATS servers, delivery limits, stream storage, and how many messages each
//! role handles at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Delivery limits of the durable consumers and storage of the streams; what `leadq setup` applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BusSettings {
    /// How many times JetStream delivers a message before the consumer gives up on it.
    pub max_deliver: i64,
    /// The retry ladder of a failing message: after its first quick tries (the handler's own
    /// waits), each later delivery waits at least the next step. The first step is also the ack
    /// wait: how soon a message whose process died is delivered again.
    #[serde(with = "duration_list")]
    pub backoff: Vec<Duration>,
    /// Stream and bucket copies kept by a JetStream cluster (1 for a single server, 3 in production).
    pub replicas: usize,
    /// How long `lead.*` and `call.*` messages are kept in their streams.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped by the server.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// The longest one handler may work on a message (its deadline is extended meanwhile); past
    /// it the message is delivered again. Must exceed the outside requests' own timeouts.
    #[serde(with = "humantime_serde")]
    pub max_handling: Duration,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            max_deliver: 10,
            backoff: [5, 30, 60, 300, 900].map(Duration::from_secs).to_vec(),
            replicas: 1,
            retention: Duration::from_secs(14 * 24 * 3600),
            duplicate_window: Duration::from_secs(24 * 3600),
            max_handling: Duration::from_secs(300),
        }
    }
}

impl BusSettings {
    /// The limits that only make sense together; `slowest_request` is the longest a handler's
    /// outside requests may take with their retries, which the handling bound must exceed.
    pub(super) fn check(&self, slowest_request: Duration) -> Result<(), ConfigError> {
        if self.max_deliver < 1 || (self.max_deliver as usize) <= self.backoff.len() {
            return Err(ConfigError::invalid(
                "LEADQ_BUS__MAX_DELIVER",
                format!(
                    "{} must be greater than the number of back-off steps ({})",
                    self.max_deliver,
                    self.backoff.len()
                ),
            ));
        }
        if self.replicas == 0 || self.replicas > 5 {
            return Err(ConfigError::invalid(
                "LEADQ_BUS__REPLICAS",
                format!("{} is not 1 to 5", self.replicas),
            ));
        }
        if self.max_handling <= slowest_request {
            return Err(ConfigError::invalid(
                "LEADQ_BUS__MAX_HANDLING",
                format!(
                    "{} must exceed {} (four tries of LEADQ_TWILIO__REQUEST_TIMEOUT and their back-off)",
                    humantime::format_duration(self.max_handling),
                    humantime::format_duration(slowest_request)
                ),
            ));
        }
        if self
            .backoff
            .first()
            .is_some_and(|first| *first < Duration::from_secs(1))
        {
            return Err(ConfigError::invalid(
                "LEADQ_BUS__BACKOFF",
                "the first step is the ack wait and must be at least 1s",
            ));
        }
        Ok(())
    }
}

/// Messages each role's consume loop handles at once, per process (`LEADQ_CONCURRENCY__CALLER`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Concurrency {
    pub caller: usize,
    pub finalizer: usize,
    pub sms: usize,
    pub activity: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            caller: 32,
            finalizer: 32,
            sms: 32,
            activity: 32,
        }
    }
}

/// The servers of `LEADQ_NATS_URL`: one URL, or several separated by commas (the nodes of a
/// cluster), so a process whose first seed is down still connects through another.
pub fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            if url.contains(char::is_whitespace) {
                return Err(format!("`{url}` is not a NATS URL"));
            }
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("`{url}` is not a NATS URL: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(format!("`{urls}` names no NATS server"));
    }
    Ok(addrs)
}

/// A list of human-readable durations (`["5s", "1m"]`), as humantime-serde does for one.
pub(super) mod duration_list {
    use std::time::Duration;

    use humantime_serde::Serde;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(list: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        list.iter()
            .map(|d| Serde::from(*d))
            .collect::<Vec<_>>()
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<Serde<Duration>>::deserialize(deserializer)?
            .into_iter()
            .map(Serde::into_inner)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_nats_servers_are_taken_and_a_bad_one_is_named() {
        let servers =
            server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://127.0.0.1:4224").expect("three");
        assert_eq!(servers.len(), 3);
        assert_eq!(server_addrs("nats://127.0.0.1:4222").map(|s| s.len()), Ok(1));
        let bad = server_addrs("nats://127.0.0.1:1,nats://127.0.0.1:port").expect_err("a bad port");
        assert!(bad.contains("nats://127.0.0.1:port"), "{bad}");
        assert!(server_addrs(" , ").is_err());
        assert!(server_addrs("nats://a b:4222").is_err());
    }
}
