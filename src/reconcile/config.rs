//! The `[[vendor]]` tables of the config file: export source, mapping,
//! policy, guard and schedule per vendor.

use std::path::Path;

use serde::Deserialize;

use crate::config::{ConfigError, TomlSource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVendor {
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct VendorSettings {
    pub name: String,
}

/// Validates `vendor[index]`; `base` is the config file's directory, for relative paths.
pub fn validate(
    src: &TomlSource,
    index: usize,
    raw: RawVendor,
    base: &Path,
) -> Result<VendorSettings, ConfigError> {
    let _ = (src, index, base);
    Ok(VendorSettings { name: raw.name })
}
