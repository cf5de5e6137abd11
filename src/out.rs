//! Everything the command line prints to stdout goes through here.
//!
//! Two rules live in this one place so no print site can forget them:
//! - **Vendor text cannot drive the terminal.** Subjects, senders, order refs
//!   and field values come from outside; an ESC sequence in one could move
//!   the cursor, recolour or retitle the terminal. [`clean`] replaces every
//!   control character, and [`write_text`] applies it (keeping line breaks) to
//!   everything printed, so even a value a print site forgot is harmless.
//! - **A closed pipe ends the command quietly.** `driftwatch orders | head -1`
//!   closes stdout early; `println!` would panic. Writes here return the
//!   `BrokenPipe` error instead, the command stops, and `main` exits 0
//!   ([`is_closed_pipe`]).
//!
//! Also here: the process exit codes, one meaning each ([`exit`]).

use std::borrow::Cow;
use std::io::Write;

/// `outln!("...", args)`: one line to stdout, sanitised; `Err` on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write_text("\n") };
    ($($arg:tt)*) => { $crate::out::write_text(&format!("{}\n", format_args!($($arg)*))) };
}

/// `out!("...", args)`: like [`outln!`] without the newline.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write_text(&format!($($arg)*)) };
}

/// Writes `text` to stdout with every control character except the line
/// break replaced (see [`clean_text`]).
pub fn write_text(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(clean_text(text).as_bytes())?;
    stdout.flush()
}

pub use driftwatch_core::clean::{clean, clean_text};

/// Cuts `s` to at most `max` characters, ending a cut string with `…`.
/// Counts characters, not bytes, so a cut never splits one.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &s[..end]))
        }
    }
}

/// driftwatch's own message over several lines, one problem a line (every
/// invalid rule file): [`error_text`] makes each line safe on its own, so the
/// line breaks survive while vendor text inside a line still cannot.
#[derive(Debug, thiserror::Error)]
#[error("{head}{}", lines.iter().map(|l| format!("\n  {l}")).collect::<String>())]
pub struct ErrorLines {
    pub head: String,
    pub lines: Vec<String>,
}

/// An error as `{err:#}` shows it (each cause after `: `), made safe for
/// the terminal: every control character is replaced, except the line
/// breaks between the lines of an [`ErrorLines`].
pub fn error_text(err: &anyhow::Error) -> String {
    err.chain()
        .map(|e| match e.downcast_ref::<ErrorLines>() {
            Some(l) => std::iter::once(clean(&l.head).into_owned())
                .chain(l.lines.iter().map(|x| format!("  {}", clean(x))))
                .collect::<Vec<_>>()
                .join("\n"),
            None => clean(&e.to_string()).into_owned(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// True when `err` (anywhere in its chain) is stdout being closed by the
/// reader: the user got what they wanted, not a failure.
pub fn is_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A table for the terminal: column widths follow the content, so a long
/// value ("Pending Consumer Verification") never shifts the next column.
/// Cells are [`clean`]ed.
pub fn table<S: AsRef<str>>(header: &[&str], rows: impl IntoIterator<Item = Vec<S>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_string()));
    for row in rows {
        t.add_row(row.iter().map(|c| clean(c.as_ref()).into_owned()));
    }
    // The NOTHING preset pads every cell with one space on each side; trim
    // the line ends so copies into tickets carry no trailing blanks.
    let mut s = String::new();
    for line in t.lines() {
        s.push_str(line.strip_prefix(' ').unwrap_or(&line).trim_end());
        s.push('\n');
    }
    s
}

/// Whether log lines on stderr may carry ANSI colour: only when stderr is a
/// terminal and `NO_COLOR` is unset or empty (<https://no-color.org>). Logs
/// redirected to a file or journald stay plain text.
pub fn stderr_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Process exit codes: one meaning each, so scripts can tell them apart.
/// Listed in the README ("Exit codes").
pub mod exit {
    /// Done (also: stdout was closed by the reader, e.g. `| head`).
    pub const OK: u8 = 0;
    /// The command failed: bad config, I/O or database error, a failed
    /// delivery, failing parser fixtures.
    pub const FAILED: u8 = 1;
    /// Usage error: unknown option, missing argument (clap's code).
    pub const USAGE: u8 = 2;
    /// The reconcile guard refused a key frame: nothing was fixed or recorded.
    pub const REFUSED: u8 = 3;
    /// Another process holds the lease for this work (e.g. `serve` is
    /// reconciling the same vendor); try again later (sysexits EX_TEMPFAIL).
    pub const BUSY: u8 = 75;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_file_error_is_on_its_own_line_and_still_safe() {
        let e = anyhow::Error::new(ErrorLines {
            head: "invalid parser rule files:".into(),
            lines: vec![
                "a.toml:5: bad".into(),
                "b.toml:1: \x1b[31mred\nforged".into(),
            ],
        })
        .context("loading");
        assert_eq!(
            error_text(&e),
            "loading: invalid parser rule files:\n  a.toml:5: bad\n  b.toml:1: \u{fffd}[31mred\u{fffd}forged"
        );
        assert_eq!(error_text(&anyhow::anyhow!("one\ntwo")), "one\u{fffd}two");
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(
            clean("a\u{1b}[31mb\r\n\u{9b}2J"),
            "a\u{fffd}[31mb\u{fffd}\u{fffd}\u{fffd}2J"
        );
        assert_eq!(
            clean_text("x\u{1b}]0;t\u{7}\ny"),
            "x\u{fffd}]0;t\u{fffd}\ny"
        );
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn truncate_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("ééééé", 5), "ééééé");
    }

    #[test]
    fn long_cells_keep_the_columns_aligned() {
        let t = table(
            &["ORDER", "STATUS", "NEXT"],
            vec![
                vec!["1", "Pending Consumer Verification", "x"],
                vec!["22", "ok", "y"],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        let col = |l: &str, pat: &str| l.find(pat).unwrap();
        assert_eq!(col(lines[1], "x"), col(lines[2], "y"), "{t}");
        assert_eq!(col(lines[0], "NEXT"), col(lines[1], "x"), "{t}");
    }
}
