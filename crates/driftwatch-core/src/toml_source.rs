//! A TOML document kept with its source text, so every error can name the
//! file, the line and the key. Shared by the config file and the parser rule
//! files. No IO: the caller reads the file and passes its text.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration problem, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A TOML document kept with its source, so later checks can point at a line.
pub struct TomlSource {
    pub file: PathBuf,
    pub text: String,
}

impl TomlSource {
    /// A document read by the caller; `file` names it in errors.
    pub fn new(file: &Path, text: String) -> TomlSource {
        TomlSource {
            file: file.to_path_buf(),
            text,
        }
    }

    /// Deserialises the document; an error carries the key path and line.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let de = toml::Deserializer::parse(&self.text).map_err(|e| self.toml_error(None, &e))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = (path != "." && !path.is_empty()).then_some(path);
            let inner = e.into_inner();
            self.toml_error(key, &inner)
        })
    }

    fn toml_error(&self, key: Option<String>, e: &toml::de::Error) -> ConfigError {
        let line = e
            .span()
            .map(|s| line_of(&self.text, s.start))
            .or_else(|| key.as_deref().and_then(|k| self.line_of_key(k)));
        ConfigError {
            file: self.file.clone(),
            line,
            key,
            message: e.message().trim().to_string(),
        }
    }

    /// An error about a key found valid by serde but wrong for driftwatch.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line_of_key(key),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// The line of a dotted key path such as `mailbox[1].tls` or `status_map`;
    /// for a missing key, the line of the nearest table that exists.
    pub fn line_of_key(&self, key: &str) -> Option<usize> {
        let doc = toml::de::DeTable::parse(&self.text).ok()?;
        let mut span = doc.span();
        let mut table = doc.get_ref();
        let mut value: Option<&toml::de::DeValue<'_>> = None;
        for seg in key.split('.') {
            let (name, index) = match seg.split_once('[') {
                Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (seg, None),
            };
            if let Some(v) = value {
                match v {
                    toml::de::DeValue::Table(t) => table = t,
                    _ => break,
                }
            }
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
                break;
            };
            span = k.span();
            let mut v = v;
            if let (Some(i), toml::de::DeValue::Array(a)) = (index, v.get_ref()) {
                match a.get(i) {
                    Some(item) => {
                        v = item;
                        span = item.span();
                    }
                    None => break,
                }
            }
            value = Some(v.get_ref());
        }
        Some(line_of(&self.text, span.start))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
