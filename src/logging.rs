//! Keeps secrets out of the log, whatever filter the operator sets.
//!
//! Two guards, because one can be bypassed by a library we do not control:
//!
//! - [`wire_trace_cap`] drops the protocol-wire events of the mail crates
//!   before any filter sees them: async-imap traces every command it writes
//!   (`LOGIN "user" "password"`, the base64 XOAUTH2 response) and lettre, when
//!   built with its `tracing` feature, logs `AUTH PLAIN` lines at debug. No
//!   `DRIFTWATCH_LOG` directive can turn them back on.
//! - [`RedactingStderr`] scrubs every secret value driftwatch has resolved
//!   (passwords, tokens, HTTP auth values; see [`register_secret`]) from each
//!   log line before it is written, so a path we did not foresee still cannot
//!   print one verbatim.

use std::io::{self, Write};
use std::sync::RwLock;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::fmt::MakeWriter;

/// Targets that log protocol traffic, and the most verbose level let through
/// for each. Matched as a prefix of the event's target (module path).
const WIRE_TARGETS: &[(&str, Level)] = &[
    ("async_imap", Level::DEBUG),
    ("imap_proto", Level::DEBUG),
    ("lettre", Level::INFO),
];

/// The replacement written instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not scrubbed from log text (replacing every
/// "ab" would garble the log); the wire cap still keeps them out.
const MIN_REDACTED_LEN: usize = 4;

/// At most this many values are remembered (token commands mint a new token
/// per connect); the oldest are forgotten first.
const MAX_SECRETS: usize = 64;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers a resolved secret so it is scrubbed from every later log line.
/// Called by [`crate::config::Secret::resolve`]; call it for any other value
/// that must never be logged (e.g. a SASL response built from a token).
pub fn register_secret(value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    let Ok(mut secrets) = SECRETS.write() else {
        return;
    };
    if secrets.iter().any(|s| s == value) {
        return;
    }
    if secrets.len() >= MAX_SECRETS {
        secrets.remove(0);
    }
    secrets.push(value.to_string());
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let Ok(secrets) = SECRETS.read() else {
        return text.into();
    };
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED).into();
        }
    }
    out
}

/// True when an event may pass the wire cap.
fn allowed(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    WIRE_TARGETS.iter().all(|(prefix, max)| {
        !(target.starts_with(prefix)
            && matches!(target.as_bytes().get(prefix.len()), None | Some(b':')))
            || meta.level() <= max
    })
}

/// A global filter layer: add it to the subscriber beside the operator's
/// `EnvFilter` (`fmt().finish().with(wire_trace_cap())`). A layer's
/// `enabled` returning false disables the event for the whole subscriber,
/// so no directive can re-enable it.
pub fn wire_trace_cap() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    FilterFn::new(allowed as fn(&Metadata<'_>) -> bool)
}

/// The log writer: stderr, with registered secrets scrubbed from each line.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Redacting<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        Redacting(io::stderr())
    }
}

/// Redacts each buffer it is given before writing it whole. The fmt layer
/// writes one formatted event per `write_all`, so a secret is never split
/// across two calls.
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact(text).as_bytes())?,
            Err(_) => self
                .0
                .write_all(redact(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_scrubbed_from_log_text() {
        register_secret("canary-pw-5f1e");
        register_secret("ab"); // too short to scrub; the wire cap covers it
        let mut out = Vec::new();
        write!(
            Redacting(&mut out),
            "LOGIN \"u\" \"canary-pw-5f1e\" ab canary-pw-5f1e"
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, "LOGIN \"u\" \"[redacted]\" ab [redacted]");
    }

    #[test]
    fn wire_targets_are_capped_whatever_the_level() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let meta = |target: &'static str, level| {
            Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&CS)),
                Kind::EVENT,
            )
        };
        assert!(!allowed(&meta("async_imap::imap_stream", Level::TRACE)));
        assert!(allowed(&meta("async_imap::imap_stream", Level::DEBUG)));
        assert!(!allowed(&meta("lettre::transport::smtp", Level::DEBUG)));
        assert!(allowed(&meta("lettre", Level::WARN)));
        assert!(allowed(&meta("driftwatch::ingest", Level::TRACE)));
        // A prefix of a crate name, not that crate.
        assert!(allowed(&meta("lettrex", Level::TRACE)));
    }
}
