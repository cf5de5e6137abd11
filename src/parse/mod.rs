//! Parsing lives in `driftwatch_core::parse` (no IO); this module re-exports
//! it under its old path and adds the one thing that does IO: reading the
//! parsers directory.

use std::path::Path;

pub use driftwatch_core::parse::*;

use crate::config::ConfigError;

/// Loads every `*.toml` rule file in `dir`. Returns every invalid file's
/// error (unreadable ones included), not just the first, so one run shows
/// all that needs fixing.
pub fn load_dir(dir: &Path, options: RegistryOptions) -> Result<Registry, Vec<ConfigError>> {
    let paths: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            return Err(vec![ConfigError {
                file: dir.to_path_buf(),
                line: None,
                key: None,
                message: format!("cannot read parsers directory: {e}"),
            }]);
        }
    };
    let mut files = Vec::with_capacity(paths.len());
    let mut unreadable = Vec::new();
    for p in paths {
        match crate::config::read_toml(&p) {
            Ok(src) => files.push((src.file, src.text)),
            Err(e) => unreadable.push(e),
        }
    }
    match Registry::from_rule_files(files, options) {
        Ok(r) if unreadable.is_empty() => Ok(r),
        Ok(_) => Err(unreadable),
        Err(mut errors) => {
            unreadable.append(&mut errors);
            Err(unreadable)
        }
    }
}
