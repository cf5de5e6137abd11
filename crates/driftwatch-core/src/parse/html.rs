//! HTML to text for pattern matching.
//!
//! Vendors put order tables in HTML. A regex over the text should see one line
//! per row with the cells in order, so block tags and `<tr>` end a line and
//! cells are separated by ` | `. mail-parser's own converter joins cells with
//! spaces, which makes "Status | Inspection Scheduled" unmatchable reliably.
//!
//! Tokenising is html5gum's (the WHATWG tokenizer): quoted attributes holding
//! `>`, comments, every named entity (`&star;`) and broken markup are read as a
//! browser reads them. This module only decides the layout.

use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
use html5gum::{Emitter, Error, ForwardingEmitter, Span, Tokenizer};

/// The callback emitter minus what the layout never reads. html5gum checks
/// every character for parse errors unless the emitter declines them (about
/// a tenth of the time parsing HTML mail took in `perf`), and collects each
/// attribute's name and value; both are dropped here.
struct TextOnly<E>(E);

impl<E: Emitter> ForwardingEmitter for TextOnly<E> {
    type Token = E::Token;

    fn inner(&mut self) -> &mut impl Emitter<Token = Self::Token> {
        &mut self.0
    }

    fn should_emit_errors(&mut self) -> bool {
        false
    }

    fn emit_error(&mut self, _error: Error) {}

    fn push_attribute_name(&mut self, _s: &[u8]) {}

    fn push_attribute_value(&mut self, _s: &[u8]) {}
}

/// The layout being built: finished lines, the current line, and whether the
/// current table row has a cell yet.
#[derive(Default)]
struct Layout {
    out: String,
    line: String,
    row_has_cell: bool,
    /// Inside `<script>`, `<style>`, `<head>` or `<title>`: text is dropped.
    skip: Option<&'static str>,
}

impl Layout {
    fn open(&mut self, name: &[u8]) {
        if self.skip.is_some() {
            return;
        }
        match name {
            b"script" => self.skip = Some("script"),
            b"style" => self.skip = Some("style"),
            b"head" => self.skip = Some("head"),
            b"title" => self.skip = Some("title"),
            b"td" | b"th" => {
                if self.row_has_cell {
                    self.line.truncate(self.line.trim_end().len());
                    self.line.push_str(" | ");
                }
                self.row_has_cell = true;
            }
            _ => self.boundary(name),
        }
    }

    fn close(&mut self, name: &[u8]) {
        if let Some(skipped) = self.skip {
            if name == skipped.as_bytes() {
                self.skip = None;
            }
            return;
        }
        self.boundary(name);
    }

    /// Tags that end a line, opening or closing.
    fn boundary(&mut self, name: &[u8]) {
        match name {
            b"tr" => {
                self.flush();
                self.row_has_cell = false;
            }
            b"br" | b"p" | b"div" | b"li" | b"ul" | b"ol" | b"table" | b"h1" | b"h2" | b"h3"
            | b"h4" | b"h5" | b"h6" | b"blockquote" | b"pre" | b"hr" | b"section" | b"article"
            | b"header" | b"footer" | b"dt" | b"dd" | b"tbody" | b"thead" => self.flush(),
            _ => {}
        }
    }

    /// Appends text with runs of whitespace collapsed (entities are already
    /// decoded by the tokenizer; `&nbsp;` is whitespace here).
    fn text(&mut self, text: &str) {
        if self.skip.is_some() {
            return;
        }
        if text.is_ascii() {
            self.ascii_text(text);
            return;
        }
        // Word by word, not char by char: the same collapsing, one copy per run.
        let mut space = text.starts_with(char::is_whitespace);
        for word in text.split_whitespace() {
            if space {
                self.space();
            }
            self.line.push_str(word);
            space = true;
        }
        if text.ends_with(char::is_whitespace) {
            self.space();
        }
    }

    /// [`Layout::text`] for ASCII text (most of the HTML mail carries),
    /// byte by byte instead of through `split_whitespace`'s char decoding:
    /// every whitespace run is one [`Layout::space`], and words separated by
    /// single spaces (which that would keep as they are) are copied in one
    /// piece. `text` must be ASCII.
    fn ascii_text(&mut self, text: &str) {
        // `char::is_whitespace` on ASCII: space, \t, \n, \x0b, \x0c, \r.
        let ws = |b: u8| matches!(b, b' ' | b'\t'..=b'\r');
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if ws(b[i]) {
                while i < b.len() && ws(b[i]) {
                    i += 1;
                }
                self.space();
                continue;
            }
            // A piece: words joined by single spaces, up to a longer gap,
            // other whitespace or the end (a trailing space is left to the
            // whitespace branch).
            let start = i;
            while i < b.len() {
                if !ws(b[i]) {
                    i += 1;
                } else if b[i] == b' ' && b.get(i + 1).is_some_and(|&n| !ws(n)) {
                    i += 2;
                } else {
                    break;
                }
            }
            // ASCII, so any byte index is a char boundary.
            self.line.push_str(text.get(start..i).unwrap_or_default());
        }
    }

    /// One space between words, never at the start of a line or twice.
    fn space(&mut self) {
        if !self.line.is_empty() && !self.line.ends_with(' ') {
            self.line.push(' ');
        }
    }

    fn flush(&mut self) {
        let l = self.line.trim();
        let l = l.strip_suffix(" |").unwrap_or(l).trim();
        if !l.is_empty() {
            self.out.push_str(l);
            self.out.push('\n');
        }
        self.line.clear();
    }
}

/// Converts HTML to text: tags dropped, `<script>`/`<style>`/`<head>` content
/// dropped, entities decoded, whitespace collapsed within a line.
pub fn html_to_text(html: &str) -> String {
    let mut layout = Layout {
        out: String::with_capacity(html.len() / 2),
        ..Layout::default()
    };
    {
        let mut emitter =
            CallbackEmitter::new(|event: CallbackEvent<'_>, _span: Span<()>| -> Option<()> {
                match event {
                    CallbackEvent::OpenStartTag { name } => layout.open(name),
                    CallbackEvent::EndTag { name } => layout.close(name),
                    // Input is a &str, so text is UTF-8; lossy only as a guard.
                    CallbackEvent::String { value } => match std::str::from_utf8(value) {
                        Ok(t) => layout.text(t),
                        Err(_) => layout.text(&String::from_utf8_lossy(value)),
                    },
                    _ => {}
                }
                None
            });
        // Script and style bodies are raw text, not markup, as in a browser.
        emitter.naively_switch_states(true);
        for _ in Tokenizer::new_with_emitter(html, TextOnly(emitter)).flatten() {}
    }
    layout.flush();
    let mut out = layout.out;
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::{Layout, html_to_text};

    proptest::proptest! {
        /// Word-by-word collapsing gives exactly what the char-by-char rule
        /// gave: one space between words, none at a line's start.
        #[test]
        fn whitespace_collapses_as_char_by_char(
            pieces in proptest::collection::vec("[a b\\t\\n\\r\\x0b\\x0c\\u{a0}é]{0,6}", 0..6),
            start in "[ x]{0,2}",
        ) {
            let mut fast = Layout { line: start.clone(), ..Layout::default() };
            let mut slow = start;
            for p in &pieces {
                fast.text(p);
                for c in p.chars() {
                    if c.is_whitespace() {
                        if !slow.is_empty() && !slow.ends_with(' ') {
                            slow.push(' ');
                        }
                    } else {
                        slow.push(c);
                    }
                }
            }
            proptest::prop_assert_eq!(fast.line, slow);
        }
    }

    #[test]
    fn table_rows_become_lines_with_separated_cells() {
        let html = "<html><head><title>x</title><style>td{color:red}</style></head><body>\
            <p>Hello&nbsp;there</p><table><tr><th>Order</th><th>Status</th></tr>\
            <tr><td> 48213 </td><td>Inspection   Scheduled</td></tr></table>\
            <script>alert(1)</script>Done &amp; dusted &#8212; &#x41;</body></html>";
        assert_eq!(
            html_to_text(html),
            "Hello there\nOrder | Status\n48213 | Inspection Scheduled\nDone & dusted — A"
        );
    }

    #[test]
    fn named_entities_decode() {
        assert_eq!(
            html_to_text("Zo&euml; O&rsquo;Brien &middot; &eacute;t&eacute; &bogus;"),
            "Zoë O’Brien · été &bogus;"
        );
    }

    #[test]
    fn html5_named_entities_decode() {
        assert_eq!(
            html_to_text("&star; Rated &bigstar; &check;"),
            "☆ Rated ★ ✓"
        );
    }

    #[test]
    fn a_quoted_attribute_holding_a_gt_sign_stays_inside_its_tag() {
        assert_eq!(
            html_to_text(
                r#"<table><tr><td title="a>b">Status</td><td data-x='1>0'>Complete</td></tr></table>"#
            ),
            "Status | Complete"
        );
    }

    #[test]
    fn broken_html_never_panics() {
        for s in [
            "<",
            "<td",
            "&",
            "&#xZZ;",
            "<script>",
            "a<!--",
            "<<>>",
            "é<b>ü</b>&#99999999;",
        ] {
            let _ = html_to_text(s);
        }
        assert_eq!(html_to_text("é<b>ü</b>"), "éü");
    }
}
