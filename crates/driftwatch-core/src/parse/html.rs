//! HTML to text for pattern matching.
//!
//! Vendors put order tables in HTML. A regex over the text should see one line
//! per row with the cells in order, so block tags and `<tr>` end a line and
//! cells are separated by ` | `. mail-parser's own converter joins cells with
//! spaces, which makes "Status | Inspection Scheduled" unmatchable reliably.
//!
//! Tokenising is html5gum's (the WHATWG tokenizer): quoted attributes holding
//! `>`, comments, every named entity (`&star;`) and broken markup are read as a
//! browser reads them. This module only decides the layout; [`fast`] reads
//! the plain markup most mail is made of the same way at a fraction of the
//! cost, and hands html5gum the rest.

mod fast;

use html5gum::emitters::naive_next_state;
use html5gum::{Emitter, Error, State, Tokenizer};

/// An emitter that lays text out as the tokenizer reads it. html5gum's
/// callback emitter collects every run of text, every tag and attribute
/// name and value into buffers and hands them over as events; the layout
/// needs only the text, each tag's name, and the last start tag (so that
/// `<script>` and `<style>` bodies are read as raw text, as a browser reads
/// them). Parse errors are declined: html5gum checks every character for
/// them unless the emitter says it does not want them.
struct LayoutEmitter<'a> {
    layout: &'a mut Layout,
    /// The name of the tag being read, and whether it is an end tag.
    tag: Vec<u8>,
    end_tag: bool,
    last_start_tag: Vec<u8>,
    /// The first bytes of a character whose rest is in the next string.
    partial: Vec<u8>,
}

impl LayoutEmitter<'_> {
    /// A character cut by the end of the text (never, from a &str) is
    /// laid out as U+FFFD rather than dropped.
    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.layout.text(&String::from_utf8_lossy(&rest));
        }
    }
}

impl Emitter for LayoutEmitter<'_> {
    type Token = std::convert::Infallible;

    fn set_last_start_tag(&mut self, last_start_tag: Option<&[u8]>) {
        self.last_start_tag.clear();
        self.last_start_tag
            .extend_from_slice(last_start_tag.unwrap_or_default());
    }

    fn emit_eof(&mut self) {
        self.flush_partial();
    }

    fn emit_error(&mut self, _error: Error) {}

    fn should_emit_errors(&mut self) -> bool {
        false
    }

    fn pop_token(&mut self) -> Option<Self::Token> {
        None
    }

    fn emit_string(&mut self, s: &[u8]) {
        // The input is a &str, but after a `&` the tokenizer reads byte by
        // byte, so a character can arrive in two pieces: the start of one
        // waits for the rest. Lossy only as a guard.
        let joined;
        let s = if self.partial.is_empty() {
            s
        } else {
            self.partial.extend_from_slice(s);
            joined = std::mem::take(&mut self.partial);
            &joined[..]
        };
        match std::str::from_utf8(s) {
            Ok(t) => self.layout.text(t),
            Err(e) if e.error_len().is_none() => {
                let (valid, rest) = s.split_at(e.valid_up_to());
                self.layout
                    .text(std::str::from_utf8(valid).unwrap_or_default());
                self.partial.extend_from_slice(rest);
            }
            Err(_) => self.layout.text(&String::from_utf8_lossy(s)),
        }
    }

    fn init_start_tag(&mut self) {
        self.tag.clear();
        self.end_tag = false;
    }

    fn init_end_tag(&mut self) {
        self.tag.clear();
        self.end_tag = true;
    }

    fn init_comment(&mut self) {}

    fn emit_current_tag(&mut self) -> Option<State> {
        self.flush_partial();
        if self.end_tag {
            self.layout.close(&self.tag);
            self.last_start_tag.clear();
            None
        } else {
            self.layout.open(&self.tag);
            std::mem::swap(&mut self.last_start_tag, &mut self.tag);
            naive_next_state(&self.last_start_tag)
        }
    }

    fn emit_current_comment(&mut self) {}

    fn emit_current_doctype(&mut self) {}

    fn set_self_closing(&mut self) {}

    fn set_force_quirks(&mut self) {}

    fn push_tag_name(&mut self, s: &[u8]) {
        self.tag.extend_from_slice(s);
    }

    fn push_comment(&mut self, _s: &[u8]) {}

    fn push_doctype_name(&mut self, _s: &[u8]) {}

    fn init_doctype(&mut self) {}

    fn init_attribute(&mut self) {}

    fn push_attribute_name(&mut self, _s: &[u8]) {}

    fn push_attribute_value(&mut self, _s: &[u8]) {}

    fn set_doctype_public_identifier(&mut self, _value: &[u8]) {}

    fn set_doctype_system_identifier(&mut self, _value: &[u8]) {}

    fn push_doctype_public_identifier(&mut self, _s: &[u8]) {}

    fn push_doctype_system_identifier(&mut self, _s: &[u8]) {}

    fn current_is_appropriate_end_tag_token(&mut self) -> bool {
        self.end_tag && !self.last_start_tag.is_empty() && self.last_start_tag == self.tag
    }
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
        // Between tags, text is often only a line break.
        if text.len() <= 2 && text.bytes().all(|c| matches!(c, b' ' | b'\t'..=b'\r')) {
            if !text.is_empty() {
                self.space();
            }
            return;
        }
        match shape(text.as_bytes()) {
            Shape::Plain => {
                // Words separated by single spaces, perhaps with a space at
                // either end: copied whole.
                let mut inner = text;
                if let Some(rest) = inner.strip_prefix(' ') {
                    self.space();
                    inner = rest;
                }
                let trailing = inner.strip_suffix(' ');
                self.line.push_str(trailing.unwrap_or(inner));
                if trailing.is_some() {
                    self.space();
                }
            }
            Shape::Spaced => {
                // ASCII with other whitespace or runs of it: byte by byte,
                // every whitespace run one [`Layout::space`].
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
                    let start = i;
                    while i < b.len() && !ws(b[i]) {
                        i += 1;
                    }
                    // ASCII, so any byte index is a char boundary.
                    self.line.push_str(text.get(start..i).unwrap_or_default());
                }
            }
            Shape::Unicode => {
                // Word by word, not char by char: the same collapsing, one
                // copy per run.
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
        }
    }

    /// One space between words, never at the start of a line or twice.
    fn space(&mut self) {
        if !self.line.is_empty() && !self.line.ends_with(' ') {
            self.line.push(' ');
        }
    }

    fn finish(mut self) -> String {
        self.flush();
        let mut out = self.out;
        out.truncate(out.trim_end().len());
        out
    }

    fn flush(&mut self) {
        // A block tag right after another ends an empty line.
        if self.line.is_empty() {
            return;
        }
        // Most lines neither start nor end with whitespace or a cell bar.
        if let (Some(f), Some(l)) = (self.line.bytes().next(), self.line.bytes().next_back())
            && f.is_ascii_graphic()
            && l.is_ascii_graphic()
            && l != b'|'
        {
            self.out.push_str(&self.line);
            self.out.push('\n');
            self.line.clear();
            return;
        }
        let l = self.line.trim();
        let l = l.strip_suffix(" |").unwrap_or(l).trim();
        if !l.is_empty() {
            self.out.push_str(l);
            self.out.push('\n');
        }
        self.line.clear();
    }
}

/// What [`Layout::text`] must do with a run of text.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    /// ASCII words separated by single spaces: copied whole.
    Plain,
    /// ASCII with a tab, line break or other ASCII whitespace, or two spaces
    /// in a row.
    Spaced,
    /// Not ASCII: Unicode whitespace counts too.
    Unicode,
}

/// Classifies `b` in one pass, eight bytes at a time (most text between
/// tags is a few plain words: several passes over it showed in profiles).
fn shape(b: &[u8]) -> Shape {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut spaced = false;
    // Whether the byte before the current word was a space.
    let mut carry = 0u64;
    let mut words = b.chunks_exact(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        if w & HI != 0 {
            return Shape::Unicode;
        }
        // ASCII only from here, so no byte's sum carries into the next:
        // a high bit where the byte is at least 9, and where at least 14.
        let other_ws = (w + 0x77 * LO) & !(w + 0x72 * LO) & HI;
        let y = w ^ (0x20 * LO);
        let space = !(((y & LOW7) + LOW7) | y) & HI;
        let double = (space & (space >> 8)) | (space & carry);
        spaced |= other_ws | double != 0;
        carry = space >> 63 << 7;
    }
    let mut prev_space = carry != 0;
    for &c in words.remainder() {
        if c >= 0x80 {
            return Shape::Unicode;
        }
        let space = c == b' ';
        spaced |= (b'\t'..=b'\r').contains(&c) || (space && prev_space);
        prev_space = space;
    }
    if spaced { Shape::Spaced } else { Shape::Plain }
}

/// Converts HTML to text: tags dropped, `<script>`/`<style>`/`<head>` content
/// dropped, entities decoded, whitespace collapsed within a line.
pub fn html_to_text(html: &str) -> String {
    let mut layout = Layout {
        out: String::with_capacity(html.len() / 2),
        ..Layout::default()
    };
    let rest = fast::lay_out(html, &mut layout);
    if let Some(rest) = html.get(rest..).filter(|r| !r.is_empty()) {
        tokenize(rest, &mut layout);
    }
    layout.finish()
}

/// Lays out `html` as html5gum tokenizes it, from its data state.
fn tokenize(html: &str, layout: &mut Layout) {
    let emitter = LayoutEmitter {
        layout,
        tag: Vec::new(),
        end_tag: false,
        last_start_tag: Vec::new(),
        partial: Vec::new(),
    };
    // The emitter yields no tokens: the layout is built as it reads.
    for _ in Tokenizer::new_with_emitter(html, emitter).flatten() {}
}

#[cfg(test)]
mod tests {
    use super::{Layout, Shape, fast, html_to_text, tokenize};
    use proptest::strategy::Strategy as _;

    /// The layout of `html` read by html5gum alone.
    fn by_html5gum(html: &str) -> String {
        let mut layout = Layout::default();
        tokenize(html, &mut layout);
        layout.finish()
    }

    /// How far the fast path reads `html` before html5gum takes over.
    fn fast_reach(html: &str) -> usize {
        fast::lay_out(html, &mut Layout::default())
    }

    /// Pieces of markup, plain and hostile, that the fast path reads or
    /// must hand over: tags of every shape, raw text, comments, doctypes,
    /// references, NUL, CR, and text.
    const PIECES: &[&str] = &[
        "<",
        ">",
        "</",
        "/",
        "=",
        "\"",
        "'",
        " ",
        "\t",
        "\r\n",
        "\r",
        "\n",
        "\x0c",
        "-",
        "!",
        "?",
        "<p>",
        "</p>",
        "<P class=x>",
        "<br/>",
        "<br / >",
        "<td>",
        "</td>",
        "<TD>",
        "<tr>",
        "</tr >",
        "<td title=\"a>b\">",
        "<td data-x='1>0'>",
        "<td a=b c d=\"e\"f>",
        "<p =x>",
        "<p a= >",
        "<div\n  style=\"x\"\n>",
        "<o:p>",
        "</o:p>",
        "<p/x>",
        "</p a=\"b\">",
        "</>",
        "</ x>",
        "<!-->",
        "<!--->",
        "<!---->",
        "<!-- a -->",
        "<!-- a --!>",
        "<!-- <!-- -->",
        "<!--",
        "-->",
        "--!>",
        "<!-x>",
        "<!>",
        "<!DOCTYPE html>",
        "<!doctype html public \"a>b\">",
        "<![CDATA[x]]>",
        "<![if !mso]>",
        "<?xml x?>",
        "<style>",
        "</style>",
        "<STYLE>",
        "</Style >",
        "<style a=\">\">",
        "<title>",
        "</title>",
        "<textarea>",
        "</textarea>",
        "<xmp>",
        "</xmp>",
        "<noscript>",
        "<script>",
        "</script>",
        "<plaintext>",
        "</styles>",
        "&",
        "&amp;",
        "&amp",
        "&lt;",
        "&#39;",
        "&#x41;",
        "&#X1F600;",
        "&#0;",
        "&#128;",
        "&#x80;",
        "&#xD800;",
        "&#1114112;",
        "&#;",
        "&#x;",
        "&nbsp;",
        "&notit;",
        "&copy",
        "&star;",
        "&bogus;",
        "&#12",
        "&AMP;",
        "\0",
        "a",
        "Status",
        "48213",
        " | ",
        "é",
        "日本",
        "\u{a0}",
        "<é>",
        "< p>",
        "<1>",
        "<a<b>",
        "<p\0>",
        "<td>\0",
        "<p",
        "<td",
        "<TR",
        "</td",
        "</p",
        "<br",
        "<style",
        "</style",
        "<title",
        "</title",
        " a",
        "=b",
        "x=",
        "=\"",
        "a'",
        "&#",
        "&#x",
        "&am",
        "amp;",
        "#39;",
    ];

    /// A tag built from parts: end or start, a name, attributes with every
    /// kind of separator and value, maybe self-closing, maybe cut short.
    fn tag() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::sample::select;
        use proptest::strategy::Strategy;
        const NAMES: &[&str] = &[
            "p",
            "td",
            "tr",
            "br",
            "TD",
            "style",
            "Style",
            "title",
            "textarea",
            "script",
            "xmp",
            "noscript",
            "div",
            "o:p",
            "a",
            "plaintext",
            "p\u{e9}",
        ];
        const SPACES: &[&str] = &["", " ", "\t", "\n", "\r", "\r\n", "\x0c", "  "];
        const ATTRS: &[&str] = &[
            "a",
            "class=x",
            "=x",
            "x\"y",
            "d-e=",
            "f = g",
            "h=\"i>j\"",
            "k='l>m'",
            "n=\"\"",
            "o=p&amp;q",
            "r=\"&#39;\"",
            "s=t/",
            "u=\"v",
            "/",
            "w=x>y",
        ];
        (
            proptest::bool::ANY,
            select(NAMES),
            proptest::collection::vec((select(SPACES), select(ATTRS)), 0..3),
            select(SPACES),
            proptest::bool::ANY,
            select(&[">", ">", ">", ""][..]),
        )
            .prop_map(|(end, name, attrs, space, self_closing, close)| {
                let mut t = format!("<{}{name}", if end { "/" } else { "" });
                for (sep, attr) in attrs {
                    t.push_str(sep);
                    t.push_str(attr);
                }
                t.push_str(space);
                if self_closing {
                    t.push('/');
                }
                t.push_str(close);
                t
            })
    }

    proptest::proptest! {
        /// The fast path and html5gum lay out any mix of markup alike.
        #[test]
        fn fast_path_lays_out_as_html5gum(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    3 => tag(),
                    2 => proptest::sample::select(PIECES).prop_map(str::to_string),
                    1 => "[a-z \u{e9}]{0,8}",
                ],
                0..40,
            ),
        ) {
            let html: String = pieces.concat();
            proptest::prop_assert_eq!(html_to_text(&html), by_html5gum(&html), "{:?}", html);
        }
    }

    #[test]
    fn named_references_match_html5gum() {
        for (name, text) in fast::named() {
            let name = std::str::from_utf8(name).unwrap_or_default();
            let html = format!("<td>x&{name};y</td>");
            assert_eq!(
                fast_reach(&html),
                html.len(),
                "{name} is read by the fast path"
            );
            assert_eq!(html_to_text(&html), by_html5gum(&html), "&{name};");
            if !text.contains(char::is_whitespace) {
                assert_eq!(html_to_text(&html), format!("x{text}y"), "&{name};");
            }
        }
    }

    #[test]
    fn numeric_references_match_html5gum() {
        let mut values: Vec<u32> = (0..0x400).collect();
        values.extend((0x400..0x11_0100).step_by(97));
        values.extend([
            0xd7ff, 0xd800, 0xdfff, 0xe000, 0xfdd0, 0xfdef, 0xfffe, 0xffff, 0x1fffe, 0x10_ffff,
        ]);
        for v in values {
            for html in [
                format!("a&#{v};b"),
                format!("a&#x{v:X};b"),
                format!("a&#x{v:x}b"),
            ] {
                assert_eq!(html_to_text(&html), by_html5gum(&html), "{html}");
            }
        }
    }

    /// Every HTML part of the mail shipped in this repository (fixtures,
    /// demo, test data), and of the public corpora beside it where they are
    /// checked out (as in CI), lays out the same both ways.
    #[test]
    // Reading the repository's mail is this test's job; core's library code
    // does no IO (clippy.toml), which this does not change.
    #[allow(clippy::disallowed_methods)]
    fn every_shipped_html_mail_lays_out_as_html5gum() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut dirs = vec![
            root.join("fixtures"),
            root.join("demo"),
            root.join("tests/data"),
            root.join("../shared/corpus"),
        ];
        let mut parts = 0;
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|x| x != "eml") {
                    continue;
                }
                let Ok(raw) = std::fs::read(&path) else {
                    continue;
                };
                let Some(msg) = mail_parser::MessageParser::default().parse(&raw) else {
                    continue;
                };
                for i in 0..msg.html_body_count() {
                    if let Some(html) = msg.body_html(i) {
                        parts += 1;
                        assert_eq!(
                            html_to_text(&html),
                            by_html5gum(&html),
                            "{}",
                            path.display()
                        );
                    }
                }
            }
        }
        assert!(
            parts >= 9,
            "the repository's HTML mail was found ({parts} parts)"
        );
    }

    /// A vendor's table mail is read by the fast path from end to end.
    #[test]
    fn a_table_mail_is_read_without_html5gum() {
        let html = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Order</title>\
            <style>td{padding:4px}</style></head><body><!-- header -->\
            <table border=\"1\" cellpadding=0><tr><td>Order Number</td><td>T-1</td></tr>\
            <tr><td class='k'>Examiner</td><td>R. O&#39;Neil &amp; Co&nbsp;</td></tr></table>\
            <p style=\"font-size:10px\">Keystone &copy; 2026<br/></p></body></html>";
        assert_eq!(fast_reach(html), html.len());
        assert_eq!(
            html_to_text(html),
            "Order Number | T-1\nExaminer | R. O'Neil & Co\nKeystone © 2026"
        );
        assert_eq!(html_to_text(html), by_html5gum(html));
    }

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
    fn text_shape_agrees_with_a_byte_by_byte_reading() {
        let naive = |b: &[u8]| {
            if !b.is_ascii() {
                Shape::Unicode
            } else if b.iter().any(|c| (b'\t'..=b'\r').contains(c))
                || b.windows(2).any(|w| w == b"  ")
            {
                Shape::Spaced
            } else {
                Shape::Plain
            }
        };
        let alphabet = [
            b'a', b' ', b'\t', b'\n', b'\r', 0x0b, 0x0c, 0x08, 0x0e, 0x7f, 0x80, 0xc3, b'|',
        ];
        let mut seed = 7u64;
        for len in 0..40 {
            for _ in 0..2000 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        // Mostly letters, so plain text is common.
                        let r = (seed >> 33) as usize;
                        if r.is_multiple_of(3) {
                            alphabet[r / 3 % alphabet.len()]
                        } else {
                            b'a'
                        }
                    })
                    .collect();
                assert_eq!(super::shape(&b), naive(&b), "{b:?}");
            }
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

    /// After a `&` the tokenizer hands text over byte by byte, so a
    /// character can arrive in two pieces; it must be laid out whole.
    #[test]
    fn a_character_cut_by_the_tokenizer_arrives_whole() {
        assert_eq!(html_to_text("a&é<b>x"), "a&éx");
        assert_eq!(html_to_text("&\u{a0}/td"), "& /td");
        assert_eq!(html_to_text("<td>&€</td><td>&日本</td>"), "&€ | &日本");
    }

    /// A tag cut by the end of the document is not a tag (as in a browser):
    /// it opens no cell.
    #[test]
    fn a_tag_cut_by_the_end_opens_nothing() {
        assert_eq!(html_to_text("<tr><td>Status</td><td class="), "Status");
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
