//! Key material from the environment, or from files in the data directory that the one-process
//! agent makes on its first start (mode 0600), so `scripts/run` needs no set-up; processes of a
//! cluster get theirs from the environment (LEADQ_MASTER_KEY, LEADQ_JWT_SECRET).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Settings;

pub const MASTER_KEY_FILE: &str = "master.key";
pub const PREVIOUS_MASTER_KEY_FILE: &str = "master.key.previous";
pub const JWT_SECRET_FILE: &str = "jwt.secret";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{setting} is not set and {} does not exist (the one-process agent makes it on its first start)", path.display())]
    Missing { setting: &'static str, path: PathBuf },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `bytes` random bytes as URL-safe base64: passwords, secrets.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(buffer.as_mut_slice());
    URL_SAFE_NO_PAD.encode(buffer)
}

/// SHA-256 of `bytes` as 64 lowercase hex digits: how secrets shown once (API keys, webhook
/// tokens) are kept.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two digests are equal, comparing every byte so the timing says nothing.
pub fn same_digest(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A new AES-256 key as 64 hex digits.
pub fn new_master_key() -> SecretString {
    let key: [u8; 32] = rand::random();
    SecretString::from(key.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The master key: the setting, else the data directory's file (made when `create`).
pub fn master_key(settings: &Settings, create: bool) -> Result<SecretString, SecretsError> {
    setting_or_file(
        settings.master_key.as_ref(),
        "LEADQ_MASTER_KEY",
        &settings.data_dir.join(MASTER_KEY_FILE),
        create.then_some(new_master_key),
    )
}

/// The key before the last rotation, when there is one.
pub fn previous_master_key(settings: &Settings) -> Result<Option<SecretString>, SecretsError> {
    if let Some(key) = &settings.master_key_previous {
        return Ok(Some(key.clone()));
    }
    let path = settings.data_dir.join(PREVIOUS_MASTER_KEY_FILE);
    if settings.master_key.is_some() || !path.exists() {
        return Ok(None);
    }
    read(&path).map(Some)
}

/// The token-signing secret: the setting, else the data directory's file (made when `create`).
pub fn jwt_secret(settings: &Settings, create: bool) -> Result<SecretString, SecretsError> {
    setting_or_file(
        settings.jwt_secret.as_ref(),
        "LEADQ_JWT_SECRET",
        &settings.data_dir.join(JWT_SECRET_FILE),
        create.then_some(|| SecretString::from(random_token(32))),
    )
}

fn setting_or_file(
    setting: Option<&SecretString>,
    name: &'static str,
    path: &Path,
    make: Option<fn() -> SecretString>,
) -> Result<SecretString, SecretsError> {
    if let Some(value) = setting {
        return Ok(value.clone());
    }
    if path.exists() {
        return read(path);
    }
    let Some(make) = make else {
        return Err(SecretsError::Missing {
            setting: name,
            path: path.to_owned(),
        });
    };
    let value = make();
    write_private(path, &value)?;
    tracing::info!(path = %path.display(), "{name} not set: made one in the data directory (mode 0600)");
    Ok(value)
}

fn read(path: &Path) -> Result<SecretString, SecretsError> {
    std::fs::read_to_string(path)
        .map(|text| SecretString::from(text.trim().to_owned()))
        .map_err(|source| SecretsError::Io {
            what: "reading",
            path: path.to_owned(),
            source,
        })
}

/// Writes a file only its owner can read; replaces an existing one atomically.
pub fn write_private(path: &Path, value: &SecretString) -> Result<(), SecretsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SecretsError::Io {
        what: "writing",
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    writeln!(file, "{}", value.expose_secret()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}
