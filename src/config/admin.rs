//! The admin page and its API: sign-in tokens, login limits, allowed origins, the built page.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The admin page and its API (`LEADQ_ADMIN__*`), read by serde as it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminSettings {
    /// How long a login token is valid.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Wrong passwords in a row (per user and per address) before logins are refused for `login_lockout`.
    pub login_max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub login_lockout: Duration,
    /// Login attempts one address may make per minute, right or wrong.
    pub login_per_minute: u32,
    /// Browser origins allowed to call the API from another site; none by default.
    #[serde(with = "origins")]
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// The built admin page, served at `/`.
    pub frontend_dir: PathBuf,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(24 * 3600),
            login_max_failures: 10,
            login_lockout: Duration::from_secs(5 * 60),
            login_per_minute: 30,
            cors_origins: Vec::new(),
            frontend_dir: PathBuf::from("frontend/dist"),
        }
    }
}

impl AdminSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.login_max_failures == 0 || self.login_per_minute == 0 {
            return Err(ConfigError::invalid(
                "LEADQ_ADMIN__LOGIN_MAX_FAILURES",
                "login limits must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Origins as written (`https://admin.example.com`), kept as the header value CORS answers with.
mod origins {
    use axum::http::HeaderValue;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(origins: &[HeaderValue], serializer: S) -> Result<S::Ok, S::Error> {
        origins
            .iter()
            .map(|origin| origin.to_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<HeaderValue>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|origin| {
                Url::parse(origin)
                    .ok()
                    .filter(|url| url.origin().is_tuple())
                    .and_then(|url| HeaderValue::from_str(&url.origin().ascii_serialization()).ok())
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "`{origin}` is not an origin such as https://admin.example.com"
                        ))
                    })
            })
            .collect()
    }
}
