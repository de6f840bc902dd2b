//! Credentials for the outside services, saved from the admin page. Each value is sealed with
//! AES-256-GCM under the master key: a fresh 96-bit nonce per write, the credential's identity
//! (`service.key`) as associated data so a sealed value cannot be moved to another credential,
//! and the key's version (a short digest of the key) so a rotation can tell old from new. The
//! sealed records live in the `credentials` bucket, where every process of the agent can read
//! them; only a process holding the master key can open them, and plain values go nowhere but to
//! the service they are for.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::bus::{self, BusError, JsonKv};
use crate::config::{ImapSettings, Settings};

/// The credentials leadq uses, by service; anything else is refused with this list.
pub const KNOWN: &[(&str, &[&str])] = &[
    ("twilio", &["account_sid", "auth_token", "from_number"]),
    ("airtable", &["token", "base_id"]),
    ("gmail", &["username", "password"]),
    ("calendly", &["url", "signing_key", "token"]),
];

const MAX_VALUE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the master key must be 64 hex digits (32 bytes), as `openssl rand -hex 32` prints")]
    BadKey,
    #[error("unknown credential `{service}.{key}`; known: {}", known_list())]
    Unknown { service: String, key: String },
    #[error("the value must be 1 to {MAX_VALUE_BYTES} bytes")]
    BadValue,
    #[error("{identity} is sealed under key version {version}, which this process does not hold")]
    KeyNotHeld { identity: String, version: String },
    #[error("{identity} does not open under its key: the record or the key is damaged")]
    Damaged { identity: String },
    #[error(transparent)]
    Bus(#[from] BusError),
}

fn known_list() -> String {
    KNOWN
        .iter()
        .flat_map(|(service, keys)| keys.iter().map(move |key| format!("{service}.{key}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `service.key`, once both are known names.
pub fn identity(service: &str, key: &str) -> Result<String, CredentialError> {
    let known = KNOWN.iter().any(|(s, keys)| *s == service && keys.contains(&key));
    if known {
        Ok(format!("{service}.{key}"))
    } else {
        Err(CredentialError::Unknown {
            service: service.to_owned(),
            key: key.to_owned(),
        })
    }
}

/// One AES-256 key and its version.
#[derive(Clone)]
struct SealingKey {
    version: String,
    cipher: Aes256Gcm,
}

impl SealingKey {
    fn parse(hex: &SecretString) -> Result<Self, CredentialError> {
        let text = hex.expose_secret().trim();
        if text.len() != 64 {
            return Err(CredentialError::BadKey);
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| CredentialError::BadKey)?;
        }
        let version = Sha256::digest(bytes)[..4].iter().map(|b| format!("{b:02x}")).collect();
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| CredentialError::BadKey)?;
        Ok(Self { version, cipher })
    }
}

/// Seals with the current key; opens with the current or the previous one.
#[derive(Clone)]
pub struct Vault {
    current: SealingKey,
    previous: Option<SealingKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("version", &self.current.version)
            .finish_non_exhaustive()
    }
}

impl Vault {
    pub fn new(current: &SecretString, previous: Option<&SecretString>) -> Result<Self, CredentialError> {
        Ok(Self {
            current: SealingKey::parse(current)?,
            previous: previous.map(SealingKey::parse).transpose()?,
        })
    }

    pub fn version(&self) -> &str {
        &self.current.version
    }

    fn seal(&self, identity: &str, plain: &str) -> Sealed {
        let nonce: [u8; 12] = rand::random();
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: identity.as_bytes(),
        };
        // Encryption fails only for inputs of many gigabytes; values are capped at 4 KiB.
        let ciphertext = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        Sealed {
            key_version: self.current.version.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        }
    }

    fn open(&self, identity: &str, sealed: &Sealed) -> Result<SecretString, CredentialError> {
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.version == sealed.key_version)
            .ok_or_else(|| CredentialError::KeyNotHeld {
                identity: identity.to_owned(),
                version: sealed.key_version.clone(),
            })?;
        let damaged = || CredentialError::Damaged {
            identity: identity.to_owned(),
        };
        let nonce = STANDARD.decode(&sealed.nonce).map_err(|_| damaged())?;
        let ciphertext = STANDARD.decode(&sealed.ciphertext).map_err(|_| damaged())?;
        if nonce.len() != 12 {
            return Err(damaged());
        }
        let payload = Payload {
            msg: &ciphertext,
            aad: identity.as_bytes(),
        };
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| damaged())?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| damaged())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    key_version: String,
    /// Base64 of the 96-bit nonce.
    nonce: String,
    /// Base64 of the ciphertext and its tag.
    ciphertext: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub service: String,
    pub key: String,
    #[serde(flatten)]
    sealed: Sealed,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub updated_by: String,
}

/// What the API shows of a credential: never its value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CredentialView {
    pub service: String,
    pub key: String,
    /// The first and last four characters of a long value (`AC12…89ab`); nothing of a short one.
    pub masked: String,
    pub key_version: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    pub updated_by: String,
}

pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 12 {
        return "••••".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[derive(Clone, Debug)]
pub struct Credentials {
    kv: JsonKv<CredentialRecord>,
    vault: Vault,
}

impl Credentials {
    pub async fn open(js: &async_nats::jetstream::Context, vault: Vault) -> Result<Self, BusError> {
        Ok(Self {
            kv: JsonKv::open(js, bus::bucket::CREDENTIALS, "credential").await?,
            vault,
        })
    }

    pub async fn set(&self, service: &str, key: &str, value: &SecretString, by: &str) -> Result<(), CredentialError> {
        let identity = identity(service, key)?;
        let plain = value.expose_secret();
        if plain.is_empty() || plain.len() > MAX_VALUE_BYTES {
            return Err(CredentialError::BadValue);
        }
        let record = CredentialRecord {
            service: service.to_owned(),
            key: key.to_owned(),
            sealed: self.vault.seal(&identity, plain),
            updated_at: OffsetDateTime::now_utc(),
            updated_by: by.to_owned(),
        };
        Ok(self.kv.put(&identity, &record).await?)
    }

    /// False when there was nothing to delete.
    pub async fn delete(&self, service: &str, key: &str) -> Result<bool, CredentialError> {
        let identity = identity(service, key)?;
        if self.kv.get(&identity).await?.is_none() {
            return Ok(false);
        }
        self.kv.purge(&identity).await?;
        Ok(true)
    }

    /// Every credential, masked; one that does not open is listed with its error as the mask.
    pub async fn list(&self) -> Result<Vec<CredentialView>, CredentialError> {
        let mut views = Vec::new();
        for (identity, record) in self.kv.values().await? {
            let masked = match self.vault.open(&identity, &record.sealed) {
                Ok(plain) => mask(plain.expose_secret()),
                Err(err) => format!("(unreadable: {err})"),
            };
            views.push(CredentialView {
                service: record.service,
                key: record.key,
                masked,
                key_version: record.sealed.key_version,
                updated_at: record.updated_at,
                updated_by: record.updated_by,
            });
        }
        views.sort_by(|a, b| (&a.service, &a.key).cmp(&(&b.service, &b.key)));
        Ok(views)
    }

    /// One plain value, when it is saved.
    pub async fn get(&self, service: &str, key: &str) -> Result<Option<SecretString>, CredentialError> {
        let identity = identity(service, key)?;
        match self.kv.get(&identity).await? {
            Some(record) => self.vault.open(&identity, &record.sealed).map(Some),
            None => Ok(None),
        }
    }

    /// A receiver holding one credential as saved now, or `fallback` (the configured value) while
    /// none is saved; a watch keeps it current, so readers on a hot path pay no round trip.
    pub async fn follow(
        &self,
        service: &str,
        key: &str,
        fallback: Option<SecretString>,
    ) -> Result<tokio::sync::watch::Receiver<Option<SecretString>>, CredentialError> {
        use futures::StreamExt;
        let identity = identity(service, key)?;
        // Watching starts before the read, so a change in between is not missed.
        let mut updates = self.kv.watch(&identity).await?;
        let now = self.get(service, key).await?.or_else(|| fallback.clone());
        let (sender, receiver) = tokio::sync::watch::channel(now);
        let vault = self.vault.clone();
        tokio::spawn(async move {
            loop {
                let entry = tokio::select! {
                    () = sender.closed() => return,
                    entry = updates.next() => match entry {
                        Some(Ok(entry)) => entry,
                        Some(Err(err)) => {
                            tracing::warn!(%err, identity, "credential watch interrupted");
                            continue;
                        }
                        None => return,
                    },
                };
                let saved = match entry.operation {
                    async_nats::jetstream::kv::Operation::Put => {
                        serde_json::from_slice::<CredentialRecord>(&entry.value)
                            .ok()
                            .and_then(|record| {
                                vault
                                    .open(&identity, &record.sealed)
                                    .inspect_err(|err| tracing::warn!(%err, "saved credential not used"))
                                    .ok()
                            })
                    }
                    _ => None,
                };
                sender.send_replace(saved.or_else(|| fallback.clone()));
            }
        });
        Ok(receiver)
    }

    /// Every value that opens, by identity; the others are logged and left out.
    pub async fn plain_values(&self) -> Result<BTreeMap<String, SecretString>, CredentialError> {
        let mut values = BTreeMap::new();
        for (identity, record) in self.kv.values().await? {
            match self.vault.open(&identity, &record.sealed) {
                Ok(plain) => {
                    values.insert(identity, plain);
                }
                Err(err) => tracing::warn!(%err, "credential skipped"),
            }
        }
        Ok(values)
    }

    /// Re-seals every credential under `next`'s current key; returns how many. Stops at the
    /// first that does not open, before writing anything, so a wrong old key changes nothing.
    pub async fn rotate(&self, next: &Vault) -> Result<usize, CredentialError> {
        let mut resealed = Vec::new();
        for (identity, record) in self.kv.values().await? {
            let plain = self.vault.open(&identity, &record.sealed)?;
            let sealed = next.seal(&identity, plain.expose_secret());
            resealed.push((identity, CredentialRecord { sealed, ..record }));
        }
        for (identity, record) in &resealed {
            self.kv.put(identity, record).await?;
        }
        Ok(resealed.len())
    }
}

/// Lays saved credentials over the settings from the environment and file: what an admin saved
/// on the page wins, so a key can be replaced without a redeploy.
pub fn apply(settings: &mut Settings, values: &BTreeMap<String, SecretString>) {
    let text = |id: &str| values.get(id).map(|v| v.expose_secret().to_owned());
    if let Some(sid) = text("twilio.account_sid") {
        settings.twilio.account_sid = Some(sid);
    }
    if let Some(token) = values.get("twilio.auth_token") {
        settings.twilio.auth_token = Some(token.clone());
    }
    if let Some(number) = text("twilio.from_number") {
        settings.twilio.from_number = Some(number);
    }
    if let Some(token) = values.get("airtable.token") {
        settings.airtable.token = Some(token.clone());
    }
    if let Some(base) = text("airtable.base_id") {
        settings.airtable.base_id = Some(base);
    }
    if let Some(key) = values.get("calendly.signing_key") {
        settings.calendly.signing_key = Some(key.clone());
    }
    if let Some(token) = values.get("calendly.token") {
        settings.calendly.token = Some(token.clone());
    }
    if let Some(url) = text("calendly.url") {
        match url::Url::parse(&url) {
            Ok(url) => settings.calendly_url = url,
            Err(err) => tracing::warn!(%err, "saved calendly.url is not a URL; keeping the configured one"),
        }
    }
    match (&mut settings.imap, text("gmail.username"), text("gmail.password")) {
        (Some(imap), username, password) => {
            if let Some(username) = username {
                imap.username = username;
            }
            if let Some(password) = password {
                imap.password = SecretString::from(password);
            }
        }
        (None, Some(username), Some(password)) => match ImapSettings::gmail(username, password) {
            Ok(gmail) => settings.imap = Some(gmail),
            Err(err) => tracing::warn!(%err, "saved Gmail credentials not used"),
        },
        (None, _, _) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::new(&crate::security::secrets::new_master_key(), None).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_as_itself() {
        let vault = vault();
        let sealed = vault.seal("twilio.auth_token", "sk_secret_value");
        assert!(!sealed.ciphertext.contains("sk_secret"));
        assert_eq!(
            vault.open("twilio.auth_token", &sealed).unwrap().expose_secret(),
            "sk_secret_value"
        );
        // Moved to another credential, the associated data no longer matches.
        assert!(matches!(
            vault.open("airtable.token", &sealed),
            Err(CredentialError::Damaged { .. })
        ));
    }

    #[test]
    fn every_write_has_a_fresh_nonce() {
        let vault = vault();
        let a = vault.seal("twilio.auth_token", "same");
        let b = vault.seal("twilio.auth_token", "same");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn another_key_is_told_apart_from_damage() {
        let sealed = vault().seal("gmail.password", "app password");
        assert!(matches!(
            vault().open("gmail.password", &sealed),
            Err(CredentialError::KeyNotHeld { .. })
        ));
    }

    #[test]
    fn the_previous_key_still_opens_old_values() {
        let (old, new) = (
            crate::security::secrets::new_master_key(),
            crate::security::secrets::new_master_key(),
        );
        let sealed = Vault::new(&old, None).unwrap().seal("airtable.token", "pat123");
        let rotated = Vault::new(&new, Some(&old)).unwrap();
        assert_eq!(
            rotated.open("airtable.token", &sealed).unwrap().expose_secret(),
            "pat123"
        );
    }

    #[test]
    fn keys_that_are_not_32_hex_bytes_are_refused() {
        for bad in ["", "abc", &"zz".repeat(32), &"ab".repeat(31)] {
            assert!(matches!(
                Vault::new(&SecretString::from(bad), None),
                Err(CredentialError::BadKey)
            ));
        }
    }

    #[test]
    fn masks_show_little() {
        assert_eq!(mask("AC1234567890abcdef89ab"), "AC12…89ab");
        assert_eq!(mask("short"), "••••");
    }

    #[test]
    fn only_known_credentials_are_taken() {
        assert_eq!(identity("twilio", "auth_token").unwrap(), "twilio.auth_token");
        let err = identity("twilio", "password").unwrap_err().to_string();
        assert!(err.contains("twilio.auth_token"), "{err}");
    }
}
