//! Control characters out of text from outside, for terminals and plain-text
//! reports: the one rule, shared by the command line (`out`) and the report
//! renderers.

use std::borrow::Cow;

/// One value from outside, made safe to print on one line: every control
/// character (ESC, CR, LF, TAB, NUL, DEL, C1 controls such as CSI U+009B)
/// becomes U+FFFD, so it is visible and does nothing.
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect(),
    )
}

/// Like [`clean`] but keeps `\n`: for whole blocks of output (a report, a
/// table, a diff) whose line structure is ours.
pub fn clean_text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() && c != '\n' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect(),
    )
}
