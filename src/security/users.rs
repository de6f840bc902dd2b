//! People who sign in to the admin page. Kept in the `users` bucket (like the API keys) so every
//! api replica sees the same users and `leadq admin create-user` works beside a running agent,
//! whose embedded store is locked to it. Passwords are argon2id PHC strings, hashed and checked on
//! the blocking pool: a hash takes tens of milliseconds of CPU that must not stall the runtime.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bus::{self, BusError, JsonKv};

/// What a signed-in person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Everything: credentials, users' actions, the script, agent commands.
    Admin,
    /// The CMO agent's people: read figures and leads, run agent commands.
    #[value(alias = "cmo_agent")]
    CmoAgent,
    /// Read only.
    Viewer,
}

/// The kinds of access a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Command,
    Manage,
}

impl UserRole {
    pub fn may(self, access: Access) -> bool {
        match self {
            Self::Admin => true,
            Self::CmoAgent => matches!(access, Access::Read | Access::Command),
            Self::Viewer => access == Access::Read,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::CmoAgent => "cmo_agent",
            Self::Viewer => "viewer",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    pub role: UserRole,
    /// argon2id, PHC string format (algorithm, parameters and salt included).
    pub password_hash: String,
    /// When the password was last set; sign-ins from before it are no longer valid.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("username `{0}` must be 1 to 64 characters: lowercase letters, digits, '.', '_' or '-'")]
    BadUsername(String),
    #[error("the password must be at least {MIN_PASSWORD} characters")]
    WeakPassword,
    #[error("hashing the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Bus(#[from] BusError),
}

pub const MIN_PASSWORD: usize = 10;

pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.')
}

/// An argon2id PHC string for `password`, with a fresh salt; CPU-heavy, so callers keep it off the runtime.
fn hash_now(password: &[u8]) -> Result<String, UserError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

async fn hash(password: SecretString) -> Result<String, UserError> {
    tokio::task::spawn_blocking(move || hash_now(password.expose_secret().as_bytes()))
        .await
        .map_err(|e| UserError::Hash(e.to_string()))?
}

/// A hash to check against when the user does not exist, so a wrong name costs what a wrong
/// password costs and the timing does not tell which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_now(b"decoy password, never valid").unwrap_or_default())
}

#[derive(Clone, Debug)]
pub struct Users {
    kv: JsonKv<UserRecord>,
}

impl Users {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, BusError> {
        Ok(Self {
            kv: JsonKv::open(js, bus::bucket::USERS, "user").await?,
        })
    }

    /// Creates the user, or replaces the password and role of an existing one; true when created.
    pub async fn upsert(&self, username: &str, role: UserRole, password: SecretString) -> Result<bool, UserError> {
        if !valid_username(username) {
            return Err(UserError::BadUsername(username.to_owned()));
        }
        if password.expose_secret().chars().count() < MIN_PASSWORD {
            return Err(UserError::WeakPassword);
        }
        let existed = self.kv.get(username).await?.is_some();
        let record = UserRecord {
            username: username.to_owned(),
            role,
            password_hash: hash(password).await?,
            created_at: OffsetDateTime::now_utc(),
        };
        self.kv.put(username, &record).await?;
        Ok(!existed)
    }

    /// Creates `admin` with a generated password when there is no user at all; returns the
    /// password (to be shown once). Two processes racing here create one admin: the write is a create.
    pub async fn ensure_first_admin(&self) -> Result<Option<SecretString>, UserError> {
        if !self.kv.keys().await?.is_empty() {
            return Ok(None);
        }
        let password = SecretString::from(crate::security::secrets::random_token(18));
        let record = UserRecord {
            username: "admin".into(),
            role: UserRole::Admin,
            password_hash: hash(password.clone()).await?,
            created_at: OffsetDateTime::now_utc(),
        };
        Ok(self.kv.create("admin", &record).await?.then_some(password))
    }

    /// The user when the password is theirs.
    pub async fn verify(&self, username: &str, password: SecretString) -> Result<Option<UserRecord>, UserError> {
        let record = if valid_username(username) {
            self.kv.get(username).await?
        } else {
            None
        };
        let stored = record
            .as_ref()
            .map_or_else(|| decoy_hash().to_owned(), |r| r.password_hash.clone());
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .map_err(|e| UserError::Hash(e.to_string()))?;
        Ok(record.filter(|_| matches))
    }

    pub async fn get(&self, username: &str) -> Result<Option<UserRecord>, BusError> {
        self.kv.get(username).await
    }

    pub async fn list(&self) -> Result<Vec<UserRecord>, BusError> {
        let mut users: Vec<_> = self.kv.values().await?.into_iter().map(|(_, u)| u).collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }
}
