//! The lead inbox (`LEADQ_IMAP__*`): none until a host is set.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The inbox as written: every field optional, since no host means no inbox.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RawImap {
    host: Option<String>,
    port: Option<u16>,
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    auth: ImapAuth,
    mailbox: String,
    #[serde(with = "humantime_serde")]
    fallback_interval: Duration,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    retry_base: Duration,
    #[serde(with = "humantime_serde")]
    retry_max: Duration,
}

impl Default for RawImap {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: true,
            username: None,
            password: None,
            auth: ImapAuth::Password,
            mailbox: "INBOX".into(),
            fallback_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(25 * 60),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// How the poller signs in: an app password (LOGIN) or an OAuth2 access token (XOAUTH2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapAuth {
    Password,
    Xoauth2,
}

/// The lead inbox (Gmail: imap.gmail.com:993 over TLS with an app password or an OAuth2 token).
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    /// Plain TCP is allowed only to a loopback host (a local test server).
    pub tls: bool,
    pub username: String,
    /// The app password, or the OAuth2 access token with `auth = "xoauth2"`.
    pub password: SecretString,
    pub auth: ImapAuth,
    pub mailbox: String,
    /// How often to search for unseen mail besides IDLE pushes (and instead of them without IDLE).
    pub fallback_interval: Duration,
    /// Re-issue IDLE this often; servers drop an IDLE after 30 minutes.
    pub idle_timeout: Duration,
    /// First reconnect delay; doubles per failure (with jitter) up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl ImapSettings {
    /// Gmail's inbox over TLS with an app password, the other settings at their defaults: what
    /// credentials saved from the admin page mean when no inbox is configured otherwise.
    pub fn gmail(username: String, password: String) -> Result<Self, ConfigError> {
        let raw = RawImap {
            host: Some("imap.gmail.com".into()),
            username: Some(username),
            password: Some(password),
            ..RawImap::default()
        };
        Self::from_raw(raw)?.ok_or(ConfigError::invalid("LEADQ_IMAP__HOST", "missing"))
    }

    /// The inbox the settings name, or `None` without a host.
    pub(super) fn from_raw(raw: RawImap) -> Result<Option<Self>, ConfigError> {
        let Some(host) = raw.host.filter(|h| !h.trim().is_empty()) else {
            return Ok(None);
        };
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !raw.tls && !loopback {
            return Err(ConfigError::invalid(
                "LEADQ_IMAP__TLS",
                format!("plain IMAP is allowed only to a loopback host, not {host}"),
            ));
        }
        let username = raw
            .username
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ConfigError::invalid("LEADQ_IMAP__USERNAME", "missing (the inbox's login)"))?;
        let password = raw
            .password
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ConfigError::invalid("LEADQ_IMAP__PASSWORD", "missing (app password or OAuth2 token)"))?;
        Ok(Some(Self {
            port: raw.port.unwrap_or(if raw.tls { 993 } else { 143 }),
            host,
            tls: raw.tls,
            username,
            password: SecretString::from(password),
            auth: raw.auth,
            mailbox: raw.mailbox,
            fallback_interval: raw.fallback_interval,
            idle_timeout: raw.idle_timeout,
            retry_base: raw.retry_base,
            retry_max: raw.retry_max,
        }))
    }
}
