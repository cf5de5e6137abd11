//! SQL for the report module.
