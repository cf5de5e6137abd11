//! Control characters out of text from outside, for terminals, reports and
//! dashboard pages: the one rule, shared by the command line (`out`), the
//! report renderers and the dashboard's page response.

use std::borrow::Cow;

/// A character that must not act when text from outside is shown: every
/// control character (ESC, CR, LF, TAB, NUL, DEL, C1 controls such as CSI
/// U+009B), and the bidirectional embeddings, overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069), which reorder what follows them on the
/// line: an order ref ending in U+202E shows the status after it reversed.
/// The one-character marks (LRM, RLM, ALM) have no such reach and stay, as
/// right-to-left text needs them.
pub fn acts(c: char) -> bool {
    c.is_control() || reorders(c)
}

/// The bidi embeddings, overrides and isolates alone: for a rendered HTML
/// page, whose own line breaks and tabs are layout.
pub fn reorders(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One value from outside, made safe to print on one line: every character
/// that [`acts`] becomes U+FFFD, so it is visible and does nothing.
pub fn clean(s: &str) -> Cow<'_, str> {
    replace(s, acts)
}

/// Like [`clean`] but keeps `\n`: for whole blocks of output (a report, a
/// table, a diff) whose line structure is ours.
pub fn clean_text(s: &str) -> Cow<'_, str> {
    replace(s, |c| c != '\n' && acts(c))
}

/// `s` with every character `bad` picks shown as U+FFFD; borrowed, not
/// copied, when there is none (nearly always).
pub fn replace(s: &str, bad: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if bad(c) { '\u{fffd}' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_shown_not_obeyed() {
        assert_eq!(clean("a\u{1b}[31mb\nc"), "a\u{fffd}[31mb\u{fffd}c");
        assert_eq!(clean_text("a\u{1b}b\nc"), "a\u{fffd}b\nc");
        // "48213<RLO>deretsiger" would show as "48213registered".
        assert_eq!(clean("48213\u{202e}deretsiger"), "48213\u{fffd}deretsiger");
        assert_eq!(clean("x\u{2066}y\u{2069}"), "x\u{fffd}y\u{fffd}");
        // Right-to-left text and its marks are text.
        let hebrew = "\u{05e9}\u{05dc}\u{05d5}\u{05dd} \u{200f}12";
        assert_eq!(clean(hebrew), hebrew);
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
    }
}
