//! SQL for the reconcile module.
