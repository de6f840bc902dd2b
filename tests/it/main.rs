//! One integration-test binary (one link step for all tests). Each test starts the real services
//! it needs on free loopback ports.

mod admin;
mod answers;
mod bus;
mod calendly;
mod call;
mod chaos;
mod cli;
mod cluster;
mod cmo;
mod crm;
mod dovecot;
mod experiment;
mod followups;
mod harness;
mod helpers;
mod intake;
mod layout;
mod poller;
mod sandbox;
mod spanish;
mod speed;
mod store;
mod surreal;
mod transfer;
mod webhooks;
