//! Reconcile's decisions, without IO: how an export row maps onto an order
//! ([`mapping`]), what counts as known at a key frame ([`cutoff`]), the
//! our view's stored fields read fast ([`stored_fields`]), the
//! structure check on an export's bytes ([`whole`]), why a drift happened
//! ([`attribute`]), whether a key frame is trusted ([`guard`]), the drift
//! types ([`drift`]) and the per-vendor settings they read ([`settings`]).
//! The binary fetches, reads the store and writes; it decides nothing.

pub mod attribute;
pub mod cutoff;
pub mod drift;
pub mod guard;
pub mod mapping;
pub mod plan;
pub mod settings;
mod stored_fields;
pub mod whole;
