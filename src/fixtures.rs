//! The fixture runner behind `driftwatch parsers test`.
//!
//! A fixture is a real email (`fixtures/<vendor>/NAME.eml`) and what the
//! parsers must make of it (`NAME.expected.json` beside it). Each email runs
//! twice, as stored and with its line endings flipped (LF ↔ CRLF), because the
//! same message reaches us with either depending on the source; both must give
//! the expected result. Failures print a line diff of expected vs actual.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::parse::{Mail, Outcome, Registry};

#[derive(Debug)]
pub enum Verdict {
    Pass,
    /// Expected and actual differ; the diff is printable.
    Fail(String),
    /// No expectation file yet; holds what the parsers produce now.
    Missing(Value),
    /// The expectation file could not be read.
    Broken(String),
    /// `--update` wrote the current result as the expectation.
    Updated,
}

#[derive(Debug)]
pub struct FixtureResult {
    pub path: PathBuf,
    pub verdict: Verdict,
}

/// What the parsers make of one message, in the expectation format.
pub fn outcome_json(raw: &[u8], registry: &Registry) -> Value {
    let Some(mail) = Mail::parse(raw, None) else {
        return json!({"outcome": "quarantined", "vendor": null, "reason": "not a parseable email: no header section"});
    };
    match registry.classify(&mail) {
        Outcome::Parsed {
            vendor,
            parser,
            deltas,
            ..
        } => {
            json!({"outcome": "parsed", "vendor": vendor, "parser": parser, "deltas": deltas})
        }
        Outcome::Quarantined { vendor, reason } => {
            json!({"outcome": "quarantined", "vendor": vendor, "reason": reason})
        }
        Outcome::Ignored { reason } => json!({"outcome": "ignored", "reason": reason}),
    }
}

/// Where fixtures live: the `fixtures` folder beside the parsers directory
/// (`parsers/` → `fixtures/`, `/etc/driftwatch/parsers` →
/// `/etc/driftwatch/fixtures`). The one rule `parsers test` (reading) and
/// `quarantine export --to` (writing, relative paths) both follow, so they
/// agree whatever the current directory.
pub fn fixtures_dir(parsers_dir: &Path) -> PathBuf {
    match parsers_dir.parent() {
        Some(p) => p.join("fixtures"),
        None => PathBuf::from("fixtures"),
    }
}

pub fn expected_path(eml: &Path) -> PathBuf {
    eml.with_extension("expected.json")
}

/// Every `.eml` under `dir/<vendor>/` (or under `dir` for all vendors), sorted.
pub fn discover(dir: &Path, vendor: Option<&str>) -> std::io::Result<Vec<PathBuf>> {
    let root = match vendor {
        Some(v) => dir.join(v),
        None => dir.to_path_buf(),
    };
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "eml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn flip_line_endings(raw: &[u8]) -> Vec<u8> {
    if raw.windows(2).any(|w| w == b"\r\n") {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            out.push(raw[i]);
            i += 1;
        }
        out
    } else {
        let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
        for &b in raw {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }
}

/// Runs one fixture file.
pub fn run_one(eml: &Path, registry: &Registry, update: bool) -> FixtureResult {
    let verdict = (|| {
        let raw = match std::fs::read(eml) {
            Ok(r) => r,
            Err(e) => return Verdict::Broken(format!("cannot read: {e}")),
        };
        let actual = outcome_json(&raw, registry);
        let flipped = outcome_json(&flip_line_endings(&raw), registry);
        let exp_path = expected_path(eml);
        let write = |v: &Value| -> Verdict {
            let text = serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
            match std::fs::write(&exp_path, text) {
                Ok(()) => Verdict::Updated,
                Err(e) => Verdict::Broken(format!("cannot write {}: {e}", exp_path.display())),
            }
        };
        let expected: Value = match std::fs::read_to_string(&exp_path) {
            Ok(t) => match serde_json::from_str(&t) {
                Ok(v) => v,
                Err(e) if !update => {
                    return Verdict::Broken(format!("{}: not valid JSON: {e}", exp_path.display()));
                }
                Err(_) => return write(&actual),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if update {
                    write(&actual)
                } else {
                    Verdict::Missing(actual)
                };
            }
            Err(e) => return Verdict::Broken(format!("cannot read {}: {e}", exp_path.display())),
        };
        if actual == expected && flipped == expected {
            return Verdict::Pass;
        }
        if update && actual == flipped {
            return write(&actual);
        }
        let mut report = String::new();
        if actual != expected {
            report.push_str(&diff(&pretty(&expected), &pretty(&actual)));
        }
        if flipped != actual {
            report
                .push_str("\nwith line endings flipped (LF <-> CRLF) the result differs again:\n");
            report.push_str(&diff(&pretty(&actual), &pretty(&flipped)));
        }
        Verdict::Fail(report)
    })();
    FixtureResult {
        path: eml.to_path_buf(),
        verdict,
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A line diff (`-` expected, `+` actual) with two lines of context, from
/// the longest common subsequence of lines. Fixtures are small; O(n·m) is fine.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removed lines first, as in a unified diff.
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut out = String::from("--- expected\n+++ actual\n");
    let mut skipped = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if *c == ' ' && !near_change(k) {
            if !skipped {
                out.push_str("  ...\n");
                skipped = true;
            }
            continue;
        }
        skipped = false;
        out.push_str(&format!("{c} {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let d = diff("a\nb\nc\nd\ne\nf\ng", "a\nb\nc\nX\ne\nf\ng");
        assert!(d.contains("- d\n+ X\n"), "{d}");
        assert!(d.contains("  c\n") && d.contains("  e\n"), "{d}");
        assert!(!d.contains("  a\n"), "far context is elided: {d}");
    }

    #[test]
    fn line_endings_flip_both_ways() {
        assert_eq!(flip_line_endings(b"a\nb\n"), b"a\r\nb\r\n");
        assert_eq!(flip_line_endings(b"a\r\nb\r\n"), b"a\nb\n");
    }
}
