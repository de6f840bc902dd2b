//! leadq, the lead qualification agent. A map of the parts; each role (`caller`, `sms`,
//! `finalizer`, `poller`, `activity`, `status`, and the api in `http`) takes its own `Deps`
//! (the api its `ApiContext`), and no two modules import each other, even through others
//! (`tests/it/layout.rs` reads the `use crate::` lines and checks both):
//!
//! - [`config`]: layered settings (defaults, TOML file, `LEADQ_*`), one file per section, read by
//!   serde into their types and validated once.
//! - [`telemetry`]: logs and OpenTelemetry traces.
//! - [`context`]: the handles every role of a process shares (settings, bus, store, call book...).
//! - [`bus`]: the NATS JetStream contract (subjects, streams, consumers, buckets, payloads),
//!   publish-with-ack and the durable consume loop. `subjects.md` documents it.
//! - [`domain`]: pure logic, importing nothing of the crate: the `Lead` type, notification-email
//!   parsing, answers, qualification, calling hours, the script, the agent's run state.
//! - [`store`]: SurrealDB, the system of record.
//! - [`runtime`]: the composition root: builds each role's deps, starts the roles, stops them
//!   together. The only module that knows every role; no role imports it (`tests/it/layout.rs`).
//! - [`sandbox`]: the Twilio and Airtable stand-ins in the process, for a machine with no accounts.
//! - [`http`]: the api role's routes and its `ApiContext` (the buckets only the api opens).
//! - [`poller`]: the IMAP inbox to `lead.received`, exactly once.
//! - [`calls`]: the call state and its named transitions (`calls/state.rs`, pure), the
//!   compare-and-set book that applies them, phone claims, the do-not-contact list, and the
//!   error of the two roles that reach people (`OutboundError`).
//! - [`twilio`]: webhook signatures, TwiML, and the webhook URLs.
//! - [`caller`]: `lead.received` to exactly one Twilio call.
//! - [`clients`]: typed HTTP clients (Twilio, Airtable); they know the settings, never the bus.
//! - [`agent`]: the run state (running, paused, stopped) every role watches.
//! - [`shared_config`]: the `config` bucket kept in step with the store (script and rules).
//! - [`finalizer`]: `call.completed` to verdict, the lead's record and `lead.finalized`.
//! - [`sms`]: `lead.finalized` to one SMS with the booking link.
//! - [`crm`]: finalized leads to Airtable, batched, rate limited, replayed after outages.
//! - [`status`]: the `agent.status` heartbeat of every process.
//! - [`cmo`]: the CMO agent's operations (status, commands, trigger-lead, reports), for every
//!   transport, with their own error type; how a lead that skipped the inbox is queued.
//! - [`cmo_service`]: the CMO interface as a NATS service.
//! - [`activity`]: the activity log writer.
//! - [`cli`]: the command line.

pub mod activity;
pub mod agent;
pub mod api_keys;
pub mod bus;
pub mod caller;
pub mod calls;
pub mod cli;
pub mod clients;
pub mod cmo;
pub mod cmo_service;
pub mod config;
pub mod context;
pub mod credentials;
pub mod crm;
pub mod domain;
pub mod finalizer;
pub mod http;
pub mod poller;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod shared_config;
pub mod sms;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod twilio;
pub mod unbounce;
pub mod users;
