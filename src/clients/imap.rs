//! The lead inbox over IMAP: signing in (password or Gmail's XOAUTH2), over TLS or not, and
//! opening the mailbox; the poller watches the session, the Credentials page tests it.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpStream;
use tokio_util::either::Either;

use crate::config::{ImapAuth, ImapSettings};

type Connection = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;
pub type Session = async_imap::Session<Connection>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("IMAP {host}: {detail}")]
    Connect { host: String, detail: String },
    #[error("IMAP: {0}")]
    Protocol(#[from] async_imap::error::Error),
}

/// Signs in and opens the mailbox; returns the session and how many emails the mailbox holds.
pub async fn open_inbox(imap: &ImapSettings) -> Result<(Session, u32), ImapError> {
    let fail = |detail: String| ImapError::Connect {
        host: format!("{}:{}", imap.host, imap.port),
        detail,
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((imap.host.as_str(), imap.port)))
        .await
        .map_err(|_| fail("connect timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let stream = if imap.tls {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(imap.host.clone()).map_err(|e| fail(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        Either::Right(tls)
    } else {
        Either::Left(tcp)
    };
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await
        .map_err(|e| fail(format!("no greeting: {e}")))?;
    let password = imap.password.expose_secret();
    let mut session = match imap.auth {
        ImapAuth::Password => client.login(&imap.username, password).await,
        ImapAuth::Xoauth2 => {
            client
                .authenticate(
                    "XOAUTH2",
                    XOAuth2 {
                        user: &imap.username,
                        token: password,
                    },
                )
                .await
        }
    }
    .map_err(|(e, _)| fail(format!("sign-in refused for {}: {e}", imap.username)))?;
    let mailbox = session.select(&imap.mailbox).await?;
    Ok((session, mailbox.exists))
}

/// The Credentials page's "test connection": signs in, opens the mailbox, signs out; the answer
/// is how many emails it holds.
pub async fn check_inbox(imap: &ImapSettings) -> Result<u32, ImapError> {
    let (mut session, emails) = open_inbox(imap).await?;
    if let Err(err) = session.logout().await {
        tracing::debug!(%err, "inbox check: logout failed");
    }
    Ok(emails)
}

/// SASL XOAUTH2 for Gmail with an OAuth2 access token.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
}

impl async_imap::Authenticator for XOAuth2<'_> {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token)
    }
}
