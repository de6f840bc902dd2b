//! Where the store lives (`LEADQ_DB`): in memory, a surrealkv directory, or a SurrealDB server.

use std::path::PathBuf;

use url::Url;

/// Where the store lives; parsed from `LEADQ_DB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    Memory,
    File(PathBuf),
    Server(Url),
}

impl DbLocation {
    /// The endpoint string SurrealDB's `any` engine understands.
    pub fn endpoint(&self) -> String {
        match self {
            Self::Memory => "mem://".into(),
            Self::File(path) => format!("surrealkv://{}", path.display()),
            Self::Server(url) => url.to_string(),
        }
    }

    pub(super) fn parse(raw: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(format!(
                "`{raw}` is not a URL; use mem://, surrealkv://PATH or ws://HOST:PORT"
            ));
        };
        match scheme {
            "mem" | "memory" => Ok(Self::Memory),
            "surrealkv" if rest.is_empty() => Err("surrealkv:// needs a path".into()),
            "surrealkv" => Ok(Self::File(PathBuf::from(rest))),
            "ws" | "wss" => Url::parse(raw).map(Self::Server).map_err(|e| format!("`{raw}`: {e}")),
            other => Err(format!(
                "unsupported scheme `{other}`; use mem://, surrealkv://PATH, ws:// or wss://"
            )),
        }
    }
}
