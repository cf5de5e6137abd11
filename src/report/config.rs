//! The `[report]` table of the config file.

use std::path::Path;

use serde::Deserialize;

use crate::config::{ConfigError, TomlSource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {}

#[derive(Debug, Clone)]
pub struct ReportSettings {}

pub fn validate(
    src: &TomlSource,
    raw: RawReport,
    base: &Path,
) -> Result<ReportSettings, ConfigError> {
    let _ = (src, raw, base);
    Ok(ReportSettings {})
}
