//! driftwatch's pure core: everything that decides, nothing that does IO.
//!
//! - [`model`]: the types that pass between stages (`RawMessage`, `Delta`,
//!   `OrderState`, `Status`); [`view`]: the pure fold from deltas to an order.
//! - [`number`]: exact decimals read under a declared format.
//! - [`parse`]: one raw email → deltas or a quarantine reason (rule files are
//!   parsed from their text; the binary reads the directory).
//! - [`reconcile`]: mapping an export row, the cutoff, the diff, attribution,
//!   the guard, and [`reconcile::plan`], which turns them into one `RunPlan`.
//! - [`report`]: the report model and its text and HTML renderers.
//!
//! No module here reads a file, a socket, the environment or the clock: the
//! crate's Cargo.toml has no IO dependency and its clippy.toml bans std's IO
//! entry points (ARCHITECTURE.md, "Crate graph"). Time is passed in.

pub mod clean;
pub mod model;
pub mod number;
pub mod parse;
pub mod reconcile;
pub mod report;
pub mod toml_source;
pub mod view;
