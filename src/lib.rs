//! leadq, the lead qualification agent. A map of the layout, one line per module; no two modules
//! import each other, even through others, and no role imports another role or the composition
//! root (`tests/it/layout.rs` reads the `use crate::` lines and checks both):
//!
//! - [`domain`]: pure logic, importing nothing of the crate: the `Lead`, notification-email
//!   parsing, answers, qualification, calling hours, the script, the agent's run state.
//! - [`config`]: layered settings (defaults, TOML file, `LEADQ_*`), one file per section, read by
//!   serde into their types and validated once.
//! - [`bus`]: the NATS JetStream contract (subjects, streams, consumers, buckets, payloads; what
//!   `subjects.md` documents), publish-with-ack, the durable consume loop, trace context, and
//!   [`bus::kv`], the typed buckets: the call book with the call's named transitions
//!   (`bus/kv/calls/state.rs`, pure), phone claims, do-not-contact, the run state.
//! - [`store`]: SurrealDB, the system of record, by table; the `config` bucket kept in step
//!   with it (`store::shared_config`).
//! - [`clients`]: the outside services: Twilio (REST, webhook signatures, TwiML, webhook URLs),
//!   Airtable (REST, the table's schema), and the in-process sandbox standing in for both. They
//!   know the settings, never the bus.
//! - [`security`]: the master key and digests, sealed credentials, users, API keys.
//! - [`cmo`]: the CMO agent's operations (status, commands, trigger-lead, reports), for every
//!   transport, with their own error type.
//! - [`roles`]: one room per role, each with its own `Deps`: `poller` (IMAP to `lead.received`),
//!   `caller` (to one Twilio call), `finalizer` (verdict, record, `lead.finalized`, and the CRM
//!   sync in `finalizer::crm`), `sms` (one text), `activity` (the log writer), `status` (the
//!   heartbeat), and `api` (HTTP routes, webhooks, the admin page's API, the CMO NATS service).
//! - [`app`]: the composition root: which roles a process runs, building each role's deps,
//!   restarting them on new credentials, stopping them together. The only module that imports
//!   the roles.
//! - [`cli`]: the command line; [`telemetry`]: logs and OpenTelemetry traces.

pub mod app;
pub mod bus;
pub mod cli;
pub mod clients;
pub mod cmo;
pub mod config;
pub mod domain;
pub mod roles;
pub mod security;
pub mod store;
pub mod telemetry;
