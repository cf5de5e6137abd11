//! SQL for the health module.
