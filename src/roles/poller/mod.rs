//! The poller: the lead inbox to `lead.received`, within a second. On connect it handles every
//! unseen email, then waits in IMAP IDLE so the server pushes new mail; a periodic search is the
//! fallback (and the only way for servers without IDLE). Emails that are not lead notifications
//! are never touched (the inbox is shared with people); `\Seen` is set only on leads that are on
//! the stream. Connection failures back off exponentially with jitter; the third in a row raises
//! an `agent.alert`, and the recovery is logged.

pub mod intake;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_nats::jetstream::kv;
use futures::TryStreamExt;
use rand::Rng;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{self, Activity, Alert, Bus, BusError};
use crate::clients::imap::{ImapError, Session, open_inbox};
use crate::config::ImapSettings;
use crate::domain::{LeadError, parse_notification};
use intake::{Delivered, deliver, email_identity, remember_invalid};

/// Consecutive connection failures after which an operator is alerted.
const ALERT_AFTER_FAILURES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    #[error(transparent)]
    Inbox(#[from] ImapError),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// What the poller needs besides its session; shared by the scan and the IDLE wait.
struct Poller {
    bus: Bus,
    seen: kv::Store,
    imap: ImapSettings,
    region: phonenumber::country::Id,
}

/// What the poller role is given by the composition root: it runs only with an inbox.
#[derive(Clone, Debug)]
pub struct Deps {
    pub bus: Bus,
    pub imap: ImapSettings,
    /// The region of numbers written without a country code.
    pub region: phonenumber::country::Id,
}

pub async fn run(deps: Deps, shutdown: CancellationToken) -> Result<(), PollerError> {
    let Deps { bus, imap, region } = deps;
    let seen = bus
        .js
        .get_key_value(bus::bucket::EMAILS_SEEN)
        .await
        .map_err(|e| BusError::jetstream("bucket emails_seen", e))?;
    let poller = Arc::new(Poller {
        bus,
        seen,
        imap,
        region,
    });
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        match poller.session(&shutdown, &mut failures).await {
            Ok(()) => break,
            Err(err) => {
                failures += 1;
                tracing::warn!(%err, failures, "poller: connection failed");
                if failures == ALERT_AFTER_FAILURES {
                    poller.alert_down(&err, failures).await;
                }
                let delay = backoff(&poller.imap, failures);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    Ok(())
}

/// Exponential back-off with full jitter, capped at `retry_max`.
fn backoff(imap: &ImapSettings, failures: u32) -> Duration {
    let ceiling = imap
        .retry_base
        .saturating_mul(1 << failures.min(16))
        .min(imap.retry_max);
    let half = ceiling / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

impl Poller {
    /// One connection's life: connect, catch up, then IDLE and scan until shutdown or an error.
    async fn session(&self, shutdown: &CancellationToken, failures: &mut u32) -> Result<(), PollerError> {
        let mut session = self.connect().await?;
        if *failures > 0 {
            tracing::info!(failures = *failures, "poller: IMAP connection recovered");
            self.bus
                .record(&Activity::new(
                    "imap.recovered",
                    "poller",
                    format!("IMAP connection recovered after {failures} failed attempts"),
                ))
                .await;
        }
        *failures = 0;
        let idle = session.capabilities().await?.has_str("IDLE");
        tracing::info!(host = %self.imap.host, mailbox = %self.imap.mailbox, idle, "poller: watching the inbox");
        // Per connection: UIDs of emails that are not leads, so they are read once, not every scan.
        let mut ignored = HashSet::new();
        loop {
            self.scan(&mut session, &mut ignored, shutdown).await?;
            if shutdown.is_cancelled() {
                break;
            }
            session = if idle {
                self.idle(session, shutdown).await?
            } else {
                self.sleep(session, shutdown).await
            };
            if shutdown.is_cancelled() {
                break;
            }
        }
        if let Err(err) = session.logout().await {
            tracing::debug!(%err, "poller: logout failed");
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Session, PollerError> {
        Ok(open_inbox(&self.imap).await?.0)
    }

    /// Handles every unseen email not known to be a non-lead.
    async fn scan(
        &self,
        session: &mut Session,
        ignored: &mut HashSet<u32>,
        shutdown: &CancellationToken,
    ) -> Result<(), PollerError> {
        // What the server reported before this search, the search sees; only later reports count.
        while session.unsolicited_responses.try_recv().is_ok() {}
        let mut uids: Vec<u32> = session
            .uid_search("UNSEEN")
            .await?
            .into_iter()
            .filter(|uid| !ignored.contains(uid))
            .collect();
        uids.sort_unstable();
        for uid in uids {
            if shutdown.is_cancelled() {
                break;
            }
            // PEEK: reading must not set \Seen; only a published lead gets it.
            let fetches: Vec<_> = session
                .uid_fetch(uid.to_string(), "(UID INTERNALDATE BODY.PEEK[])")
                .await?
                .try_collect()
                .await?;
            for fetch in fetches {
                let Some(raw) = fetch.body() else { continue };
                let inbox_at = fetch
                    .internal_date()
                    .and_then(|d| OffsetDateTime::from_unix_timestamp(d.timestamp()).ok());
                let span = tracing::info_span!("email", uid, lead_id = tracing::field::Empty);
                let mark_seen = self.handle_email(raw, inbox_at).instrument(span).await?;
                if mark_seen {
                    let _: Vec<_> = session
                        .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")
                        .await?
                        .try_collect()
                        .await?;
                } else {
                    ignored.insert(uid);
                }
            }
        }
        Ok(())
    }

    /// Returns whether the email is a published lead (and so may be marked seen).
    async fn handle_email(&self, raw: &[u8], inbox_at: Option<OffsetDateTime>) -> Result<bool, PollerError> {
        let seen_at = OffsetDateTime::now_utc();
        match parse_notification(raw, self.region) {
            Ok(lead) => {
                let identity = email_identity(lead.message_id.as_deref(), raw);
                tracing::Span::current().record("lead_id", tracing::field::display(identity));
                match deliver(&self.bus, &self.seen, identity, lead, inbox_at, seen_at).await? {
                    Delivered::Published(id) => tracing::info!(lead_id = %id, "lead published"),
                    Delivered::AlreadyPublished(id) => {
                        tracing::info!(lead_id = %id, "lead was published before")
                    }
                }
                Ok(true)
            }
            Err(LeadError::NotALead(reason)) => {
                tracing::debug!(%reason, "not a lead notification; left untouched");
                Ok(false)
            }
            Err(LeadError::Invalid { field, detail }) => {
                let message_id = mail_parser::MessageParser::default()
                    .parse_headers(raw)
                    .and_then(|m| m.message_id().map(str::to_owned));
                if remember_invalid(&self.seen, email_identity(message_id.as_deref(), raw)).await? {
                    tracing::warn!(field, %detail, "invalid lead; reported and not retried");
                    let detail = serde_json::json!({ "field": field, "detail": detail, "message_id": message_id });
                    let mut entry = Activity::new("lead.invalid", "poller", format!("invalid lead: {field}"));
                    entry.detail = detail.clone();
                    self.bus.record(&entry).await;
                    self.bus
                        .record(&Alert::new(
                            "poller",
                            format!("a lead email cannot be called: {field}"),
                            detail,
                        ))
                        .await;
                }
                Ok(false)
            }
        }
    }

    /// Waits in IDLE until the server reports a change, the fallback interval passes, or shutdown.
    ///
    /// The server reports new mail once, in whatever response it is writing when the mail
    /// arrives. During the scan's FETCH and STORE (and before IDLE's continuation) such a report
    /// goes to the session's unsolicited channel, not to IDLE, and IDLE would then wait for the
    /// *next* change. So the channel is emptied before each scan, and if anything arrived by the
    /// time IDLE is running, IDLE ends at once and the inbox is scanned again.
    async fn idle(&self, session: Session, shutdown: &CancellationToken) -> Result<Session, PollerError> {
        let reported = session.unsolicited_responses.clone();
        let mut handle = session.idle();
        handle.init().await?;
        let mut missed = false;
        while let Ok(response) = reported.try_recv() {
            missed |= reports_new_mail(&response);
        }
        if missed {
            tracing::debug!("IDLE: mail arrived during the scan; scanning again");
            return Ok(handle.done().await?);
        }
        let (wait, interrupt) = handle.wait_with_timeout(self.imap.fallback_interval.min(self.imap.idle_timeout));
        let response = tokio::select! {
            response = wait => Some(response?),
            () = shutdown.cancelled() => None,
        };
        drop(interrupt);
        match response {
            Some(IdleResponse::NewData(_)) => tracing::debug!("IDLE: the server reported a change"),
            Some(IdleResponse::Timeout) => tracing::debug!("IDLE: fallback interval; searching"),
            Some(IdleResponse::ManualInterrupt) | None => {}
        }
        Ok(handle.done().await?)
    }

    async fn sleep(&self, session: Session, shutdown: &CancellationToken) -> Session {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(self.imap.fallback_interval) => {}
        }
        session
    }

    async fn alert_down(&self, err: &PollerError, failures: u32) {
        let summary = format!("IMAP unreachable after {failures} attempts: {err}");
        let mut entry = Activity::new("imap.down", "poller", summary.clone());
        entry.detail = serde_json::json!({ "host": self.imap.host, "failures": failures });
        self.bus.record(&entry).await;
        self.bus
            .record(&Alert::new(
                "poller",
                summary,
                serde_json::json!({ "host": self.imap.host }),
            ))
            .await;
    }
}

/// Whether an untagged response tells of mail that a scan has not seen.
fn reports_new_mail(response: &async_imap::types::UnsolicitedResponse) -> bool {
    use async_imap::types::UnsolicitedResponse;
    matches!(
        response,
        UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
    )
}
