//! Turning a raw email into order deltas, or into a reason it could not be.
//!
//! `parse` does no IO once the registry is loaded: it takes bytes and returns
//! an [`Outcome`]. It never panics on input (the fuzz and corpus tests hold it
//! to that) and never guesses: a vendor word missing from the status map, a
//! pattern that no longer matches, a sender nobody configured, each becomes a
//! quarantine reason a human can act on.

mod auth;
mod builtin;
mod html;
mod mail;
mod rules;
mod time;

use std::path::Path;
use std::sync::Arc;

pub use auth::AuthPolicy;
pub use html::html_to_text;
pub use mail::{Attachment, Mail};
pub use rules::RuleParser;

use crate::config::ConfigError;
use crate::model::DeltaDraft;

/// Why a recognised message yielded no deltas. Each variant reads as the
/// quarantine reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("pattern {index} over {place} did not match")]
    NoMatch { index: usize, place: String },
    #[error("repeated pattern matched nothing: no order found in the message")]
    NoRows,
    #[error("no order_ref captured")]
    MissingOrderRef,
    #[error("vendor status `{0}` is not in the status map")]
    UnmappedStatus(String),
    #[error("attachment: {0}")]
    Csv(String),
    #[error("{0}")]
    Engine(String),
    #[error("`{field}`: {reason}")]
    Time { field: String, reason: String },
    #[error("field `{field}`: cannot read `{value}` as {expected}")]
    BadValue {
        field: String,
        value: String,
        expected: String,
    },
}

/// A vendor's parser: a rule file, or Rust code for what a rule file cannot say.
pub trait Parser: Send + Sync {
    /// The vendor id deltas are recorded under.
    fn vendor(&self) -> &str;
    /// Recorded on every delta, with the version, so `reparse` knows what
    /// produced what.
    fn name(&self) -> &str;
    fn version(&self) -> u32;
    /// Whether this vendor sends from this (lower-cased) address.
    fn accepts_sender(&self, sender: &str) -> bool;
    /// Whether the message is one this parser handles (subject/body checks);
    /// the sender was already accepted.
    fn recognises(&self, mail: &Mail<'_>) -> bool;
    fn extract(&self, mail: &Mail<'_>) -> Result<Vec<DeltaDraft>, ExtractError>;
    /// How strictly this vendor's Authentication-Results are checked.
    fn auth_policy(&self) -> AuthPolicy {
        AuthPolicy::Prefer
    }
    /// The field names this parser can produce; format-change detection
    /// watches how often each comes back empty.
    fn declared_fields(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Settings that apply across vendors.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Sender patterns whose mail is archived as ignored.
    pub ignore_senders: Vec<String>,
    /// authserv-ids of our own receiving servers, whose Authentication-Results
    /// are trusted; empty = trust only the topmost header.
    pub authserv_ids: Vec<String>,
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Parsed {
        vendor: String,
        parser: String,
        version: u32,
        deltas: Vec<DeltaDraft>,
    },
    Quarantined {
        vendor: Option<String>,
        reason: String,
    },
    Ignored {
        reason: String,
    },
}

/// All parsers, tried in a fixed order (rule files sorted by file name).
pub struct Registry {
    parsers: Vec<Arc<dyn Parser>>,
    options: RegistryOptions,
}

impl Registry {
    pub fn new(parsers: Vec<Arc<dyn Parser>>, options: RegistryOptions) -> Registry {
        Registry { parsers, options }
    }

    /// Loads every `*.toml` rule file in `dir`. Returns every invalid file's
    /// error, not just the first, so one run shows all that needs fixing.
    pub fn load_dir(dir: &Path, options: RegistryOptions) -> Result<Registry, Vec<ConfigError>> {
        let mut files: Vec<_> = match std::fs::read_dir(dir) {
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
        files.sort();
        let mut parsers: Vec<Arc<dyn Parser>> = Vec::new();
        let mut errors = Vec::new();
        for f in files {
            match RuleParser::load(&f).map(builtin::wrap) {
                Ok(p) => {
                    if let Some(other) = parsers.iter().find(|o| o.vendor() == p.vendor()) {
                        errors.push(ConfigError {
                            file: f.clone(),
                            line: Some(1),
                            key: Some("vendor".into()),
                            message: format!(
                                "vendor `{}` is already defined by parser `{}`",
                                p.vendor(),
                                other.name()
                            ),
                        });
                    } else {
                        parsers.push(p);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Registry::new(parsers, options))
        } else {
            Err(errors)
        }
    }

    pub fn parsers(&self) -> &[Arc<dyn Parser>] {
        &self.parsers
    }

    /// Decides what a message is. The sender picks the candidate vendors, the
    /// first of those whose subject/body checks pass extracts.
    pub fn classify(&self, mail: &Mail<'_>) -> Outcome {
        let Some(sender) = mail.from_address() else {
            return Outcome::Quarantined {
                vendor: None,
                reason: "no sender address (From, Sender and Return-Path are all missing or empty)"
                    .into(),
            };
        };
        if let Some(p) = self
            .options
            .ignore_senders
            .iter()
            .find(|p| glob_match(p, &sender))
        {
            return Outcome::Ignored {
                reason: format!("sender {sender} matches ignore rule `{p}`"),
            };
        }
        let candidates: Vec<&Arc<dyn Parser>> = self
            .parsers
            .iter()
            .filter(|p| p.accepts_sender(&sender))
            .collect();
        let Some(first) = candidates.first() else {
            return Outcome::Quarantined {
                vendor: None,
                reason: format!("unknown sender {sender}: no vendor parser accepts it"),
            };
        };
        let Some(parser) = candidates.iter().find(|p| p.recognises(mail)) else {
            return Outcome::Quarantined {
                vendor: Some(first.vendor().to_string()),
                reason: format!(
                    "sender {sender} belongs to vendor {} but the message does not look like its status mail (subject/body patterns did not match)",
                    first.vendor()
                ),
            };
        };
        let domain = sender.rsplit('@').next().unwrap_or(&sender);
        if let auth::Verdict::Reject(reason) = auth::check(
            parser.auth_policy(),
            &mail.header_raw_all("Authentication-Results"),
            domain,
            &self.options.authserv_ids,
        ) {
            return Outcome::Quarantined {
                vendor: Some(parser.vendor().to_string()),
                reason,
            };
        }
        match parser.extract(mail) {
            Ok(deltas) => Outcome::Parsed {
                vendor: parser.vendor().to_string(),
                parser: parser.name().to_string(),
                version: parser.version(),
                deltas,
            },
            Err(e) => Outcome::Quarantined {
                vendor: Some(parser.vendor().to_string()),
                reason: format!("{}: {e}", parser.name()),
            },
        }
    }
}

/// Case-insensitive glob over an address: `*` matches any run of characters.
/// `*@acme.example` matches one domain; `*@*.acme.example` its subdomains.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    // Iterative wildcard match with one backtrack point: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn sender_globs() {
        assert!(glob_match("*@acme.example", "Status@ACME.example"));
        assert!(!glob_match(
            "*@acme.example",
            "status@evil-acme.example.com"
        ));
        assert!(!glob_match("*@acme.example", "x@notacme.example"));
        assert!(glob_match("*@*.acme.example", "a@mail.acme.example"));
        assert!(!glob_match("*@*.acme.example", "a@acme.example"));
        assert!(glob_match("orders@acme.example", "orders@acme.example"));
        assert!(!glob_match(
            "orders@acme.example",
            "orders@acme.example.evil"
        ));
    }
}
