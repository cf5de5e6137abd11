//! Turning a raw email into order deltas, or into a reason it could not be.
//!
//! `parse` does no IO once the registry is loaded: it takes bytes and returns
//! an [`Outcome`]. It never panics on input (the fuzz and corpus tests hold it
//! to that) and never guesses: a vendor word missing from the status map, a
//! pattern that no longer matches, a sender nobody configured, each becomes a
//! quarantine reason a human can act on.

mod auth;
mod builtin;
pub mod documents;
mod explain;
mod html;
mod mail;
mod rules;
mod time;

use std::path::PathBuf;
use std::sync::Arc;

pub use auth::AuthPolicy;
/// The sender check, for the `mail` export source (a key frame by mail is checked like status mail).
pub use auth::{Verdict, check as check_auth};
pub use explain::explain;
pub use html::html_to_text;
pub use mail::{Attachment, DateHeader, Mail};
pub use rules::RuleParser;

use crate::model::DeltaDraft;
use crate::toml_source::ConfigError;

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
    #[error(
        "no status captured (the rule file does not declare field_updates_only, so a delta without a status would be a guess)"
    )]
    MissingStatus,
    #[error(
        "`{name}` captured twice with different values: `{first}` ({first_from}) and `{second}` ({second_from}); give one pattern a higher priority if one is to win"
    )]
    Conflict {
        name: String,
        first: String,
        first_from: String,
        second: String,
        second_from: String,
    },
    #[error("vendor status `{0}` is not in the status map")]
    UnmappedStatus(String),
    #[error("attachment: {0}")]
    Csv(String),
    #[error("attachment: {0}")]
    Document(#[from] documents::DocumentError),
    #[error("{0}")]
    Engine(String),
    #[error("`{field}`: {reason}")]
    Time { field: String, reason: String },
    #[error(
        "no event_time captured, and the Date header `{0}` cannot be placed: expected an RFC 5322 date-time with a real date, a valid time and a numeric offset (+0200) or UT, GMT, Z, EST, EDT, CST, CDT, MST, MDT, PST or PDT"
    )]
    UnreadableDateHeader(String),
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
    /// The sender patterns this parser claims; two parsers whose patterns
    /// can match one address must declare distinct priorities.
    fn senders(&self) -> &[String] {
        &[]
    }
    /// Whether this address forwards the vendor's mail to us (the forwarded
    /// original must still come from the vendor's senders).
    fn accepts_forwarder(&self, _sender: &str) -> bool {
        false
    }
    /// The forwarder patterns this parser trusts (`match.forwarders`).
    fn forwarders(&self) -> &[String] {
        &[]
    }
    /// The vendor's non-status mail: `Some(reason)` archives it as ignored.
    fn ignores(&self, _mail: &Mail<'_>) -> Option<String> {
        None
    }
    /// What each check and pattern makes of the message, for `parsers explain`.
    fn explain(&self, _mail: &Mail<'_>) -> Vec<String> {
        Vec::new()
    }
    /// Higher is tried first among parsers claiming the same sender.
    fn priority(&self) -> Option<i32> {
        None
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

    /// Builds the registry from rule files already read, `(path, text)`, in
    /// file-name order (the binary lists and reads the directory). Returns
    /// every invalid file's error, not just the first, so one run shows all
    /// that needs fixing.
    pub fn from_rule_files(
        mut files: Vec<(PathBuf, String)>,
        options: RegistryOptions,
    ) -> Result<Registry, Vec<ConfigError>> {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut parsers: Vec<Arc<dyn Parser>> = Vec::new();
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        for (f, text) in files {
            match RuleParser::from_text(&f, text).map(builtin::wrap) {
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
                        paths.push(f.clone());
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        errors.extend(overlap_errors(&parsers, &paths));
        // Higher priority first; equal priorities keep file-name order.
        parsers.sort_by_key(|p| std::cmp::Reverse(p.priority().unwrap_or(0)));
        if errors.is_empty() {
            Ok(Registry::new(parsers, options))
        } else {
            Err(errors)
        }
    }

    pub fn parsers(&self) -> &[Arc<dyn Parser>] {
        &self.parsers
    }

    /// A warning for each `ignore_senders` pattern that matches every
    /// address a rule file's forwarder pattern trusts: the ignore list is
    /// checked first, so those forwards are archived as ignored and never
    /// parsed, which the rule file's author did not mean. A warning, not an
    /// error: ignoring a forwarder for a while can be deliberate, and a
    /// working deployment should not stop loading over it.
    pub fn shadowed_forwarders(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for p in &self.parsers {
            for forwarder in p.forwarders() {
                // With each `*` of the forwarder pattern made a character no
                // address or pattern holds (NUL), only an ignore `*` can match
                // it; so an ignore pattern that matches this text matches
                // every address the forwarder pattern does.
                let text = forwarder.replace('*', "\0");
                for ignore in &self.options.ignore_senders {
                    if glob_match(ignore, &text) {
                        warnings.push(format!(
                            "ignore_senders `{ignore}` matches every address of forwarder `{forwarder}` that parser `{}` trusts: their forwards are archived as ignored, never parsed (narrow ignore_senders, e.g. to the automated addresses only)",
                            p.name()
                        ));
                    }
                }
            }
        }
        warnings
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
        if candidates.is_empty() {
            if let Some(outcome) = self.classify_forward(mail, &sender) {
                return outcome;
            }
            return Outcome::Quarantined {
                vendor: None,
                reason: format!("unknown sender {sender}: no vendor parser accepts it"),
            };
        }
        self.decide(mail, &sender, &candidates, mail, domain_of(&sender))
    }

    /// A message from a listed forwarder: its forwarded original (an attached
    /// message, or an inline "Forwarded message" block) is parsed as the
    /// vendor's mail when the original's sender is the vendor's. The
    /// Authentication-Results checked are the outer message's, for the
    /// forwarder's domain: that is what our server actually verified.
    /// `None` (an ordinary unknown sender) when the message holds no original
    /// from a vendor that lists this forwarder.
    fn classify_forward(&self, mail: &Mail<'_>, forwarder: &str) -> Option<Outcome> {
        let vendors: Vec<&Arc<dyn Parser>> = self
            .parsers
            .iter()
            .filter(|p| p.accepts_forwarder(forwarder))
            .collect();
        if vendors.is_empty() {
            return None;
        }
        let raw = mail.forwarded_original()?;
        // The forward's own time bounds the original's when it has no Date.
        let original = Mail::parse(&raw, mail.received.or_else(|| mail.date()))?;
        let sender = original.from_address()?;
        let candidates: Vec<&Arc<dyn Parser>> = vendors
            .into_iter()
            .filter(|p| p.accepts_sender(&sender))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(self.decide(&original, &sender, &candidates, mail, domain_of(forwarder)))
    }

    /// Among the vendors that claim the sender (priority order), the first
    /// whose ignore rule matches archives the mail as ignored; otherwise the
    /// first whose subject/body checks pass extracts, after the sender check
    /// on `auth_mail`'s Authentication-Results for `auth_domain`.
    fn decide(
        &self,
        mail: &Mail<'_>,
        sender: &str,
        candidates: &[&Arc<dyn Parser>],
        auth_mail: &Mail<'_>,
        auth_domain: &str,
    ) -> Outcome {
        let mut chosen = None;
        for p in candidates {
            if let Some(reason) = p.ignores(mail) {
                return Outcome::Ignored {
                    reason: format!("{}: {reason}", p.vendor()),
                };
            }
            if p.recognises(mail) {
                chosen = Some(*p);
                break;
            }
        }
        let Some(parser) = chosen else {
            let first = candidates.first().map_or("", |p| p.vendor());
            return Outcome::Quarantined {
                vendor: Some(first.to_string()),
                reason: format!(
                    "sender {sender} belongs to vendor {first} but the message does not look like its status mail (subject/body patterns did not match)"
                ),
            };
        };
        if let auth::Verdict::Reject(reason) = auth::check(
            parser.auth_policy(),
            &auth_mail.header_raw_all("Authentication-Results"),
            auth_domain,
            &self.options.authserv_ids,
        ) {
            return Outcome::Quarantined {
                vendor: Some(parser.vendor().to_string()),
                reason,
            };
        }
        extract_outcome(parser.as_ref(), mail)
    }
}

/// One parser's extraction as an outcome: its deltas, or a quarantine
/// reason prefixed with the parser's name.
pub(crate) fn extract_outcome(parser: &dyn Parser, mail: &Mail<'_>) -> Outcome {
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

fn domain_of(address: &str) -> &str {
    address.rsplit('@').next().unwrap_or(address)
}

/// Two rule files whose sender patterns can match one address must say which
/// is tried first (distinct `priority`); otherwise which file takes a message
/// would depend on file names, silently.
fn overlap_errors(parsers: &[Arc<dyn Parser>], paths: &[PathBuf]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, a) in parsers.iter().enumerate() {
        for (j, b) in parsers.iter().enumerate().skip(i + 1) {
            let Some((pa, pb)) = a.senders().iter().find_map(|pa| {
                b.senders()
                    .iter()
                    .find(|pb| globs_overlap(pa, pb))
                    .map(|pb| (pa, pb))
            }) else {
                continue;
            };
            // One declared priority is enough: the other counts as 0.
            if (a.priority().is_some() || b.priority().is_some())
                && a.priority().unwrap_or(0) != b.priority().unwrap_or(0)
            {
                continue;
            }
            errors.push(ConfigError {
                file: paths[j].clone(),
                line: None,
                key: Some("match.senders".into()),
                message: format!(
                    "sender `{pb}` of {} overlaps `{pa}` of {}: give the files different `priority` values (the higher is tried first)",
                    b.name(),
                    a.name()
                ),
            });
        }
    }
    errors
}

/// Whether some address matches both globs (`*` = any run of characters).
fn globs_overlap(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
    let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
    // reach[i][j]: some string takes a[..i] and b[..j] to the same point.
    let mut reach = vec![vec![false; b.len() + 1]; a.len() + 1];
    reach[0][0] = true;
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            if !reach[i][j] {
                continue;
            }
            let (ca, cb) = (a.get(i), b.get(j));
            if ca == Some(&'*') {
                reach[i + 1][j] = true;
                if cb.is_some() {
                    reach[i][j + 1] = true;
                }
            }
            if cb == Some(&'*') {
                reach[i][j + 1] = true;
                if ca.is_some() {
                    reach[i + 1][j] = true;
                }
            }
            if let (Some(x), Some(y)) = (ca, cb)
                && x == y
                && *x != '*'
            {
                reach[i + 1][j + 1] = true;
            }
        }
    }
    reach[a.len()][b.len()]
}

/// Case-insensitive glob over an address: `*` matches any run of characters.
/// `*@acme.example` matches one domain; `*@*.acme.example` its subdomains.
/// Runs for every parser's senders on every message, so it walks the two
/// strings in place (positions are byte offsets, steps are whole chars)
/// rather than collecting lower-cased copies of them.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let at = |s: &str, i: usize| s.get(i..).and_then(|r| r.chars().next());
    let lower = |c: char| c.to_ascii_lowercase();
    // Iterative wildcard match with one backtrack point: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while let Some(t) = at(text, ti) {
        match at(pattern, pi) {
            Some(p) if lower(p) == lower(t) => {
                pi += p.len_utf8();
                ti += t.len_utf8();
            }
            Some('*') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            _ => {
                let Some(s) = star else {
                    return false;
                };
                pi = s + 1;
                mark += at(text, mark).map_or(1, char::len_utf8);
                ti = mark;
            }
        }
    }
    while at(pattern, pi) == Some('*') {
        pi += 1;
    }
    pi == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::{glob_match, globs_overlap};

    #[test]
    fn sender_globs_overlap_when_one_address_fits_both() {
        assert!(globs_overlap("*@acme.example", "status@acme.example"));
        assert!(globs_overlap("a*@x.example", "*b@x.example"));
        assert!(globs_overlap("*@*.acme.example", "*@notify.acme.example"));
        assert!(!globs_overlap("*@acme.example", "*@other.example"));
        assert!(!globs_overlap("*@*.acme.example", "*@acme.example"));
        assert!(!globs_overlap("a@x.example", "b@x.example"));
    }

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
