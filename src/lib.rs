//! driftwatch keeps a company's view of its vendor orders true when vendors
//! can only tell it things by email.
//!
//! ```text
//! mail source (IMAP | Maildir) ──► raw archive ──► parsers ──► delta log ──► order view
//!                                      └──► quarantine (with a reason)
//! ```
//!
//! - [`ingest`] fetches mail (IMAP with IDLE, or a Maildir) a batch at a time
//!   and hands it to the [`ingest::Pipeline`].
//! - [`parse`] turns one raw email into order deltas or a quarantine reason; no IO.
//! - [`store`] holds every byte fetched, the append-only delta log and the order
//!   view, in SQLite; it is the only module that knows SQL.
//! - [`view`] is the pure fold from deltas to an order's state, shared by the
//!   incremental path and `rebuild`.
//! - [`report`] builds the daily drift report from the store, renders it as
//!   text/HTML/JSON and delivers it once per day and recipient (SMTP or files).
//! - [`http`] serves the log to other systems: the delta feed, a read API, webhook intake,
//!   health and Prometheus metrics; the only module that knows HTTP.
//! - [`app`] builds all of it from a [`config::Config`]: the one composition root.
//!
//! See ARCHITECTURE.md for the invariants each module keeps. The pure parts
//! (model, view fold, number reading, parsing, reconcile planning, report
//! rendering) live in the `driftwatch-core` crate, which does no IO; they are
//! re-exported here under their old paths.

pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod demo;
pub mod fixtures;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod out;
pub mod parse;
pub mod reconcile;
pub mod reparse;
pub mod report;
pub mod secret;
pub mod telemetry;
pub mod tls_mode;

pub use driftwatch_core::{model, number, view};
/// All SQL: the store crate (SQLite and PostgreSQL).
pub use driftwatch_store as store;
pub use driftwatch_store::private_files;
