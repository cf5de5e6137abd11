//! The markup most vendor HTML is made of, laid out without html5gum.
//!
//! html5gum decides what HTML means here; this is only a shortcut for the
//! plain part of it, measured at a third of html5gum's cost on status mail
//! (issue 16). It reads text, tags with any attributes, comments, doctypes,
//! `<style>`-like raw text and the common character references exactly as
//! html5gum's states do. At anything else (`<script>`, a NUL, an entity not
//! in [`NAMED`], a document that ends inside markup) it stops where the
//! tokenizer is in its data state, and html5gum reads the rest: starting
//! html5gum there gives what reading from the start would have.
//! `tests::fast_path_lays_out_as_html5gum` compares the two on generated
//! markup, and `tests::every_shipped_html_mail_lays_out_as_html5gum` on the
//! HTML mail in the repository.

use html5gum::State;
use html5gum::emitters::naive_next_state;
use memchr::{memchr, memchr3, memmem};

use super::Layout;

/// Named references read here; any other stops the fast path. html5gum's
/// longest-prefix matching gives exactly these when the name is followed by
/// `;` (entity names are letters and digits, ending with `;` or nothing),
/// which is the only form read here. `tests::named_references_match_html5gum`
/// checks each against html5gum.
const NAMED: &[(&[u8], &str)] = &[
    (b"amp", "&"),
    (b"lt", "<"),
    (b"gt", ">"),
    (b"quot", "\""),
    (b"apos", "'"),
    (b"nbsp", "\u{a0}"),
    (b"copy", "©"),
    (b"reg", "®"),
    (b"trade", "™"),
    (b"hellip", "…"),
    (b"mdash", "—"),
    (b"ndash", "–"),
    (b"lsquo", "‘"),
    (b"rsquo", "’"),
    (b"ldquo", "“"),
    (b"rdquo", "”"),
    (b"bull", "•"),
    (b"middot", "·"),
    (b"deg", "°"),
    (b"euro", "€"),
    (b"pound", "£"),
    (b"cent", "¢"),
    (b"yen", "¥"),
    (b"sect", "§"),
    (b"laquo", "«"),
    (b"raquo", "»"),
    (b"times", "×"),
    (b"zwnj", "\u{200c}"),
    (b"shy", "\u{ad}"),
];

/// Whitespace inside tags, as html5gum sees it (`\r` arrives as `\n`).
fn tag_space(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// Lays out `html` from its start for as long as its markup is plain, and
/// returns where html5gum must take over (`html.len()` when done). That
/// offset is always one where the tokenizer is in its data state.
pub(super) fn lay_out(html: &str, layout: &mut Layout) -> usize {
    let b = html.as_bytes();
    let mut lower = Vec::new();
    let mut at = 0;
    loop {
        let Some(off) = next_mark(&b[at..]) else {
            layout.text(html.get(at..).unwrap_or_default());
            return b.len();
        };
        let mark = at + off;
        // `at` and `mark` are at ASCII bytes (or 0): char boundaries.
        layout.text(html.get(at..mark).unwrap_or_default());
        let next = match b[mark] {
            b'<' => markup(html, mark, layout, &mut lower),
            b'&' => reference(b, mark).map(|(text, next)| {
                layout.text(text.as_str());
                next
            }),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return mark,
        }
    }
}

/// The first byte that ends text in the data state. Text between tags is
/// mostly a line break or a few words: bytes are looked at one by one
/// first, as a vector search costs more to start than such text to read.
fn next_mark(b: &[u8]) -> Option<usize> {
    const SHORT: usize = 4;
    let head = &b[..b.len().min(SHORT)];
    match head.iter().position(|&c| matches!(c, b'<' | b'&' | b'\0')) {
        Some(k) => Some(k),
        None if b.len() <= SHORT => None,
        None => memchr3(b'<', b'&', b'\0', &b[SHORT..]).map(|k| k + SHORT),
    }
}

/// How html5gum's tag states see a byte: whitespace (`\r` arrives as
/// `\n`), the bytes that end a name, and the rest.
const PLAIN: u8 = 0;
const SPACE: u8 = 1;
const CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    t[b'\t' as usize] = SPACE;
    t[b'\n' as usize] = SPACE;
    t[0x0c] = SPACE;
    t[b'\r' as usize] = SPACE;
    t[b' ' as usize] = SPACE;
    t[b'/' as usize] = 2;
    t[b'>' as usize] = 3;
    t[b'=' as usize] = 4;
    t[0] = 5;
    t
};

/// The offset of the first byte from `k` that is not plain name text.
fn name_run(b: &[u8], k: usize) -> Option<usize> {
    b[k..]
        .iter()
        .position(|&c| CLASS[c as usize] != PLAIN)
        .map(|n| k + n)
}

/// The construct that starts with the `<` at `lt`: where the data state
/// resumes after it, or `None` to leave it to html5gum.
fn markup(html: &str, lt: usize, layout: &mut Layout, lower: &mut Vec<u8>) -> Option<usize> {
    let b = html.as_bytes();
    match *b.get(lt + 1)? {
        b'!' => {
            let rest = &b[lt + 2..];
            if let Some(body) = rest.strip_prefix(b"--") {
                let start = lt + 4;
                if body.starts_with(b">") {
                    Some(start + 1)
                } else if body.starts_with(b"->") {
                    Some(start + 2)
                } else {
                    comment_end(body).map(|end| start + end)
                }
            } else {
                // A doctype, `<![CDATA[` outside foreign content, and any
                // other `<!`: every one of their states ends at `>`.
                memchr(b'>', rest).map(|k| lt + 2 + k + 1)
            }
        }
        // `<?…>` and `</` + not a letter: bogus comments, to the next `>`.
        b'?' => memchr(b'>', &b[lt + 1..]).map(|k| lt + 1 + k + 1),
        b'/' => match *b.get(lt + 2)? {
            b'>' => Some(lt + 3),
            c if c.is_ascii_alphabetic() => {
                let (name_end, end) = scan_tag(b, lt + 2)?;
                layout.close(lowercase(&b[lt + 2..name_end], lower));
                Some(end)
            }
            _ => memchr(b'>', &b[lt + 2..]).map(|k| lt + 2 + k + 1),
        },
        c if c.is_ascii_alphabetic() => {
            let (name_end, end) = scan_tag(b, lt + 1)?;
            let name = lowercase(&b[lt + 1..name_end], lower);
            match naive_next_state(name) {
                None => {
                    layout.open(name);
                    Some(end)
                }
                Some(state @ (State::RawText | State::RcData)) => {
                    let close = appropriate_end_tag(b, end, name)?;
                    let (_, after) = scan_tag(b, close + 2)?;
                    let text = html.get(end..close)?;
                    // RCDATA decodes references and both replace NUL: left
                    // to html5gum.
                    if text.contains('\0') || (state == State::RcData && text.contains('&')) {
                        return None;
                    }
                    layout.open(name);
                    layout.text(text);
                    layout.close(name);
                    Some(after)
                }
                // Script data and plain text.
                Some(_) => None,
            }
        }
        _ => {
            layout.text("<");
            Some(lt + 1)
        }
    }
}

/// Lower-cases a tag name only when it has capitals (most have none).
fn lowercase<'a>(name: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    if name.iter().any(u8::is_ascii_uppercase) {
        buf.clear();
        buf.extend(name.iter().map(u8::to_ascii_lowercase));
        buf
    } else {
        name
    }
}

/// After `<!--`: the offset just past the comment's end, the first `-->` or
/// `--!>` (html5gum's comment states end at nothing else once the comment
/// has not closed at once as `<!-->` or `<!--->`).
fn comment_end(body: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(k) = memmem::find(&body[from..], b"--") {
        let k = from + k;
        match &body[k + 2..] {
            [b'>', ..] => return Some(k + 3),
            [b'!', b'>', ..] => return Some(k + 4),
            _ => from = k + 1,
        }
    }
    None
}

/// Reads a tag from its name's first letter at `at` through html5gum's tag
/// name and attribute states (attributes are read, not kept: the layout
/// needs none). Returns where the name ends and where the tag ends (past
/// its `>`); `None` when the document ends inside it or its name holds NUL.
fn scan_tag(b: &[u8], at: usize) -> Option<(usize, usize)> {
    #[derive(Clone, Copy)]
    enum S {
        BeforeName,
        Name,
        AfterName,
        BeforeValue,
        AfterQuoted,
        SelfClosing,
    }
    // The name ends at whitespace, `/` or `>` (`=` is part of it).
    let mut k = at;
    let name_end = loop {
        k = name_run(b, k)?;
        match b[k] {
            b'=' => k += 1,
            _ => break k,
        }
    };
    let mut s = match b[k] {
        b'>' => return Some((k, k + 1)),
        b'/' => S::SelfClosing,
        0 => return None,
        _ => S::BeforeName,
    };
    k += 1;
    loop {
        let c = *b.get(k)?;
        match s {
            S::BeforeName => match c {
                c if tag_space(c) => k += 1,
                b'/' | b'>' => s = S::AfterName,
                b'=' => {
                    k += 1;
                    s = S::Name;
                }
                _ => s = S::Name,
            },
            S::Name => match c {
                b'=' => {
                    k += 1;
                    s = S::BeforeValue;
                }
                c if tag_space(c) || c == b'/' || c == b'>' => s = S::AfterName,
                // NUL is part of a name (html5gum replaces it).
                _ => k = name_run(b, k + 1).unwrap_or(b.len()),
            },
            S::AfterName => match c {
                c if tag_space(c) => k += 1,
                b'/' => {
                    k += 1;
                    s = S::SelfClosing;
                }
                b'=' => {
                    k += 1;
                    s = S::BeforeValue;
                }
                b'>' => return Some((name_end, k + 1)),
                _ => s = S::Name,
            },
            S::BeforeValue => match c {
                c if tag_space(c) => k += 1,
                b'"' | b'\'' => {
                    k = k + 1 + memchr(c, &b[k + 1..])? + 1;
                    s = S::AfterQuoted;
                }
                b'>' => return Some((name_end, k + 1)),
                _ => {
                    // Unquoted: to whitespace or `>` (a reference in it
                    // cannot reach either).
                    while !tag_space(*b.get(k)?) && b[k] != b'>' {
                        k += 1;
                    }
                    s = S::BeforeName;
                }
            },
            S::AfterQuoted => match c {
                c if tag_space(c) => {
                    k += 1;
                    s = S::BeforeName;
                }
                b'/' => {
                    k += 1;
                    s = S::SelfClosing;
                }
                b'>' => return Some((name_end, k + 1)),
                _ => s = S::BeforeName,
            },
            S::SelfClosing => match c {
                b'>' => return Some((name_end, k + 1)),
                _ => s = S::BeforeName,
            },
        }
    }
}

/// The `<` of the end tag that closes raw text or RCDATA opened by `name`
/// (lower-case): `</`, the name in any case, then whitespace, `/` or `>`.
fn appropriate_end_tag(b: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let finder = memmem::Finder::new(b"</");
    let mut at = from;
    loop {
        let lt = at + finder.find(&b[at..])?;
        let after = lt + 2 + name.len();
        if b.get(lt + 2..after)
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && b.get(after)
                .is_some_and(|&c| tag_space(c) || c == b'/' || c == b'>')
        {
            return Some(lt);
        }
        at = lt + 1;
    }
}

/// Text that a reference decodes to.
pub(super) enum Decoded {
    Static(&'static str),
    Char([u8; 4], usize),
}

impl Decoded {
    fn as_str(&self) -> &str {
        match self {
            Decoded::Static(s) => s,
            Decoded::Char(buf, len) => std::str::from_utf8(&buf[..*len]).unwrap_or_default(),
        }
    }
}

/// The character reference at the `&` at `amp` in data: its text and where
/// data resumes, or `None` to leave it to html5gum.
fn reference(b: &[u8], amp: usize) -> Option<(Decoded, usize)> {
    match b.get(amp + 1) {
        Some(b'#') => {
            let (hex, start) = match b.get(amp + 2) {
                Some(b'x' | b'X') => (true, amp + 3),
                _ => (false, amp + 2),
            };
            let digits = b[start..]
                .iter()
                .take_while(|c| {
                    if hex {
                        c.is_ascii_hexdigit()
                    } else {
                        c.is_ascii_digit()
                    }
                })
                .count();
            // Without digits, without `;` or too long to read plainly.
            if digits == 0 || digits > 7 || b.get(start + digits) != Some(&b';') {
                return None;
            }
            let text = std::str::from_utf8(&b[start..start + digits]).ok()?;
            let v = u32::from_str_radix(text, if hex { 16 } else { 10 }).ok()?;
            // Printable characters only: html5gum maps the rest (NUL, C1
            // controls, surrogates, out of range) by its own tables.
            let plain = matches!(v, 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfdcf | 0xfdf0..=0xfffd)
                || (0x1_0000..=0x10_ffff).contains(&v) && v & 0xfffe != 0xfffe;
            let c = char::from_u32(v).filter(|_| plain)?;
            let mut buf = [0; 4];
            let len = c.encode_utf8(&mut buf).len();
            Some((Decoded::Char(buf, len), start + digits + 1))
        }
        Some(c) if c.is_ascii_alphanumeric() => {
            let len = b[amp + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            let end = amp + 1 + len;
            if b.get(end) != Some(&b';') {
                return None;
            }
            let name = &b[amp + 1..end];
            NAMED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| (Decoded::Static(text), end + 1))
        }
        // `&` before anything else is the text `&`.
        _ => Some((Decoded::Static("&"), amp + 1)),
    }
}

#[cfg(test)]
pub(super) fn named() -> &'static [(&'static [u8], &'static str)] {
    NAMED
}
