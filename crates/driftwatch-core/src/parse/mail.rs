//! A parsed email with the views parsers match against, computed once.
//!
//! mail-parser never panics and keeps going on broken MIME; this wrapper keeps
//! that promise: every accessor returns something (possibly empty) for any input.

use std::borrow::Cow;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::documents::{DocumentError, is_pdf, pdf_text};
use super::html::html_to_text;

pub struct Mail<'a> {
    msg: Message<'a>,
    /// The server's arrival time: the last fallback for an event time.
    pub received: Option<DateTime<Utc>>,
    subject: OnceLock<String>,
    /// Borrowed from the raw message when it is one part that needed no
    /// decoding (plain UTF-8 or ASCII mail, the common case): the patterns
    /// then read the fetched bytes themselves, with no copy per message.
    text: OnceLock<Cow<'a, str>>,
    html_text: OnceLock<String>,
    pdf_text: OnceLock<Result<String, DocumentError>>,
}

/// An attachment as parsers see it.
pub struct Attachment<'m> {
    pub name: Option<String>,
    pub content_type: String,
    pub bytes: &'m [u8],
}

impl<'a> Mail<'a> {
    /// `None` when the bytes hold nothing recognisable as a message (empty,
    /// or no header section at all).
    pub fn parse(raw: &'a [u8], received: Option<DateTime<Utc>>) -> Option<Mail<'a>> {
        let msg = MessageParser::default().parse(raw)?;
        if msg.headers().is_empty() {
            return None;
        }
        Some(Mail {
            msg,
            received,
            subject: OnceLock::new(),
            text: OnceLock::new(),
            html_text: OnceLock::new(),
            pdf_text: OnceLock::new(),
        })
    }

    /// The From address, lower-cased. Falls back to Sender, then Return-Path,
    /// as some vendor systems send with an empty or group From.
    pub fn from_address(&self) -> Option<String> {
        let from = self
            .msg
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .or_else(|| {
                self.msg
                    .sender()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
            })
            .or_else(|| self.msg.return_address())?;
        let from = from.trim().trim_matches(['<', '>']).to_ascii_lowercase();
        (!from.is_empty()).then_some(from)
    }

    /// The decoded subject. A subject sent as raw ISO-2022-JP (escape
    /// sequences, no RFC 2047 encoding, as some Japanese systems do) is
    /// decoded too, rather than shown as `$B...(B`.
    pub fn subject(&self) -> &str {
        self.subject
            .get_or_init(|| {
                let raw = self
                    .msg
                    .headers_raw()
                    .find(|(n, _)| n.eq_ignore_ascii_case("Subject"))
                    .map(|(_, v)| v);
                match raw {
                    Some(v) if v.contains("\x1b$") => {
                        let unfolded = v.replace(['\r', '\n'], "");
                        let (t, _, _) = encoding_rs::ISO_2022_JP.decode(unfolded.trim().as_bytes());
                        t.into_owned()
                    }
                    _ => self.msg.subject().unwrap_or("").to_string(),
                }
            })
            .as_str()
    }

    pub fn message_id(&self) -> Option<&str> {
        self.msg.message_id()
    }

    /// The Date header when it can be read for sure (see [`DateHeader`]).
    pub fn date(&self) -> Option<DateTime<Utc>> {
        match self.date_header() {
            DateHeader::Placed(d) => Some(d),
            DateHeader::Absent | DateHeader::Unreadable(_) => None,
        }
    }

    /// The Date header, read by driftwatch rather than mail-parser: its
    /// lenient reader stores unknown zones (CEST, JST, `GMT+0100`) as UTC,
    /// drops a `PM` and the offset after it, rolls 31 Feb over into March
    /// and reads `+2400` as `+0000`, all silently.
    pub fn date_header(&self) -> DateHeader {
        let Some(raw) = self
            .msg
            .headers_raw()
            .find(|(n, _)| n.eq_ignore_ascii_case("Date"))
            .map(|(_, v)| v)
        else {
            return DateHeader::Absent;
        };
        let value = raw.replace(['\r', '\n'], "");
        let value = value.trim();
        match read_date_header(value) {
            Some(d) => DateHeader::Placed(d),
            None => DateHeader::Unreadable(value.chars().take(80).collect()),
        }
    }

    /// The plain-text body; for an HTML-only message, the HTML turned into text.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| {
            let mut parts = self
                .body_parts()
                .filter(|p| !is_html(p))
                .filter_map(|p| self.part_text_kept(p));
            let Some(first) = parts.next() else {
                return Cow::Owned(self.html_text().to_string());
            };
            match parts.next() {
                None => first,
                Some(second) => {
                    let mut all = first.into_owned();
                    for p in std::iter::once(second).chain(parts) {
                        all.push('\n');
                        all.push_str(&p);
                    }
                    Cow::Owned(all)
                }
            }
        })
    }

    /// The HTML body as text: one line per block or table row, cells separated
    /// by ` | `, entities decoded. Empty when there is no HTML part.
    pub fn html_text(&self) -> &str {
        self.html_text.get_or_init(|| {
            self.body_parts()
                .filter(|p| is_html(p))
                .filter_map(|p| self.part_text(p))
                .map(|h| html_to_text(&h))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// The text of every PDF attachment (what `in = "pdf"` reads), in
    /// order, separated by a line break; empty when none is attached. An
    /// attached PDF that cannot be read is an error, never an empty text.
    pub fn pdf_text(&self) -> Result<&str, &DocumentError> {
        self.pdf_text
            .get_or_init(|| {
                let mut texts = Vec::new();
                for a in self.attachments() {
                    if is_pdf(&a.content_type, a.name.as_deref(), a.bytes) {
                        texts.push(pdf_text(a.name.as_deref().unwrap_or("(unnamed)"), a.bytes)?);
                    }
                }
                Ok(texts.join("\n"))
            })
            .as_deref()
    }

    /// The message's body parts (text and HTML alternatives, not
    /// attachments), each once, in order. An unnamed text/html part that
    /// mail-parser filed as an attachment (the last part of a multipart with
    /// no closing boundary) is a body part.
    fn body_parts(&self) -> impl Iterator<Item = &MessagePart<'a>> {
        let stray_html = self.msg.attachments.iter().copied().filter(|&i| {
            self.msg
                .parts
                .get(i as usize)
                .is_some_and(|p| is_html(p) && p.attachment_name().is_none())
        });
        let mut ids: Vec<u32> = self
            .msg
            .text_body
            .iter()
            .chain(self.msg.html_body.iter())
            .copied()
            .chain(stray_html)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|i| self.msg.parts.get(i as usize))
    }

    /// A body part's text. mail-parser leaves the last part of a multipart
    /// with no closing boundary undecoded (quoted-printable or base64 as
    /// sent); such a part is decoded here, through its charset.
    fn part_text<'s>(&'s self, p: &'s MessagePart<'a>) -> Option<Cow<'s, str>> {
        let text = p.text_contents()?;
        let qp = p
            .content_transfer_encoding()
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        let raw = || {
            self.msg
                .raw_message
                .get(p.raw_body_offset() as usize..p.raw_end_offset() as usize)
                .unwrap_or_default()
        };
        if qp && text.as_bytes() == raw() {
            // mail-parser's own decoder, as for every other part, to the
            // end of the part (no boundary to stop at). What it cannot
            // decode (`==`) stays as sent, as mail-parser keeps such a part.
            let (end, bytes) =
                mail_parser::parsers::MessageStream::new(raw()).decode_quoted_printable_mime(b"");
            if end == usize::MAX {
                return Some(Cow::Borrowed(text));
            }
            let charset = p
                .content_type()
                .and_then(|c| c.attribute("charset"))
                .and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
                .unwrap_or(encoding_rs::UTF_8);
            return Some(Cow::Owned(charset.decode(&bytes).0.into_owned()));
        }
        Some(Cow::Borrowed(text))
    }

    /// [`Mail::part_text`] for keeping in the mail: text that mail-parser
    /// borrowed from the raw message (plain UTF-8 or ASCII, no transfer
    /// encoding: most status mail) stays borrowed, anything else is copied.
    fn part_text_kept(&self, p: &MessagePart<'a>) -> Option<Cow<'a, str>> {
        let text = self.part_text(p)?;
        match (&text, &p.body) {
            (Cow::Borrowed(t), PartType::Text(Cow::Borrowed(body))) if std::ptr::eq(*t, *body) => {
                Some(Cow::Borrowed(*body))
            }
            _ => Some(Cow::Owned(text.into_owned())),
        }
    }

    /// The first value of a header, decoded, or `None`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.msg
            .headers()
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| header_text(h.value()))
    }

    /// Every value of a header, raw (unfolded), in order: Authentication-Results
    /// and Received are read as written by the servers.
    pub fn header_raw_all(&self, name: &str) -> Vec<String> {
        self.msg
            .headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.replace(['\r', '\n'], " ").trim().to_string())
            .collect()
    }

    pub fn attachments(&self) -> impl Iterator<Item = Attachment<'_>> {
        self.msg.attachments().map(|p| Attachment {
            name: p.attachment_name().map(str::to_string),
            content_type: p
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_default()
                .to_ascii_lowercase(),
            bytes: p.contents(),
        })
    }
}

impl Mail<'_> {
    /// The original inside a forward, as the bytes of a message: an attached
    /// `message/rfc822` part as sent, or an inline forward block (`----------
    /// Forwarded message ---------`, `-----Original Message-----`, `Begin
    /// forwarded message:`) rebuilt as a plain-text message from its From,
    /// Subject and Date lines and the text after them.
    pub fn forwarded_original(&self) -> Option<Vec<u8>> {
        if let Some(m) = self.msg.parts.iter().find_map(|p| p.message()) {
            return Some(m.raw_message().to_vec());
        }
        inline_forward(self.text())
    }
}

/// What the Date header says, as far as it can be read for sure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateHeader {
    /// No Date header.
    Absent,
    /// An RFC 5322 date-time: a real calendar date, a valid time, and a
    /// numeric offset or one of the zones RFC 5322 defines.
    Placed(DateTime<Utc>),
    /// Present but not placeable (the value as written, at most 80 chars).
    Unreadable(String),
}

/// The zone names RFC 5322 (4.3) defines. Military letters other than Z
/// mean "unknown" there, and any other name (CEST, IST, JST) is ambiguous
/// or unknown, so neither is read.
const RFC5322_ZONES: [&str; 11] = [
    "UT", "GMT", "Z", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT",
];

/// An RFC 5322 date-time (`Wed, 9 Jul 2025 23:18:26 +0200`, a trailing
/// comment allowed) placed in UTC, or `None`. chrono's RFC 2822 reader
/// checks the date (no 31 Feb) and time; the zone is checked here first, as
/// chrono reads a military letter as UTC.
fn read_date_header(value: &str) -> Option<DateTime<Utc>> {
    let without_comment = match value.strip_suffix(')') {
        Some(rest) => rest.rsplit_once('(')?.0.trim_end(),
        None => value,
    };
    let zone = without_comment.rsplit(char::is_whitespace).next()?;
    let numeric = zone.len() == 5
        && zone.starts_with(['+', '-'])
        && zone[1..].bytes().all(|b| b.is_ascii_digit())
        && zone[1..3] < *"24"
        && zone[3..5] < *"60";
    let named = RFC5322_ZONES.iter().any(|z| zone.eq_ignore_ascii_case(z));
    if !numeric && !named {
        return None;
    }
    DateTime::parse_from_rfc2822(without_comment)
        .ok()
        .map(|d| d.to_utc())
}

/// HTML by its declared type, even when mail-parser could not decode it as such.
fn is_html(p: &MessagePart<'_>) -> bool {
    p.is_text_html()
        || p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("text")
                && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("html"))
        })
}
fn is_forward_marker(line: &str) -> bool {
    let l = line.trim().to_ascii_lowercase();
    (l.starts_with("---") && (l.contains("forwarded message") || l.contains("original message")))
        || l == "begin forwarded message:"
}

fn inline_forward(text: &str) -> Option<Vec<u8>> {
    let mut lines = text.lines().skip_while(|l| !is_forward_marker(l)).skip(1);
    let unquote = |l: &str| -> String {
        let l = l.strip_prefix('>').unwrap_or(l);
        l.strip_prefix(' ').unwrap_or(l).to_string()
    };
    let mut header = String::new();
    let mut from = false;
    let mut started = false;
    for line in lines.by_ref() {
        let line = unquote(line);
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if started {
                break;
            }
            continue;
        }
        started = true;
        let Some((name, value)) = trimmed.split_once(':') else {
            break;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "from" => {
                from = true;
                header.push_str(&format!("From: {value}\r\n"));
            }
            "subject" => header.push_str(&format!("Subject: {value}\r\n")),
            // Forward blocks write dates for people ("Tue, Nov 24, 2026 at
            // 3:12 PM"); only a real RFC 2822 date becomes the Date header.
            "date" | "sent" if chrono::DateTime::parse_from_rfc2822(value).is_ok() => {
                header.push_str(&format!("Date: {value}\r\n"));
            }
            _ => {}
        }
    }
    if !from {
        return None;
    }
    header.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    for line in lines {
        header.push_str(&unquote(line));
        header.push_str("\r\n");
    }
    Some(header.into_bytes())
}

fn header_text(v: &mail_parser::HeaderValue<'_>) -> String {
    use mail_parser::HeaderValue as H;
    match v {
        H::Text(t) => t.to_string(),
        H::TextList(l) => l.join(", "),
        H::Address(a) => a
            .iter()
            .filter_map(|a| a.address())
            .collect::<Vec<_>>()
            .join(", "),
        H::DateTime(d) => d.to_rfc3339(),
        H::ContentType(ct) => ct.ctype().to_string(),
        H::Received(_) | H::Empty => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date_of(value: &str) -> DateHeader {
        let raw = format!("From: a@b.example\r\nSubject: x\r\nDate: {value}\r\n\r\nbody\r\n");
        Mail::parse(raw.as_bytes(), None).unwrap().date_header()
    }

    #[test]
    fn the_date_header_is_used_only_when_it_can_be_read_for_sure() {
        for (value, utc) in [
            (
                "Wed, 9 Jul 2025 23:18:26 +0200",
                "2025-07-09T21:18:26+00:00",
            ),
            (
                "Wed, 9 Jul 2025 23:18:26 -0000",
                "2025-07-09T23:18:26+00:00",
            ),
            ("Wed, 9 Jul 2025 23:18:26 GMT", "2025-07-09T23:18:26+00:00"),
            ("9 Jul 2025 23:18:26 UT", "2025-07-09T23:18:26+00:00"),
            ("Wed, 9 Jul 2025 23:18:26 EDT", "2025-07-10T03:18:26+00:00"),
            ("Wed, 9 Jul 2025 23:18:26 pst", "2025-07-10T07:18:26+00:00"),
            (
                "Tue, 24 Nov 2026 16:00:00 +0000 (UTC)",
                "2026-11-24T16:00:00+00:00",
            ),
        ] {
            assert_eq!(
                date_of(value),
                DateHeader::Placed(DateTime::parse_from_rfc3339(utc).unwrap().to_utc()),
                "{value}"
            );
        }
        for value in [
            "Wed, 9 Jul 2025 23:18:26 CEST",
            "Wed, 9 Jul 2025 23:18:26 CET",
            "Wed, 9 Jul 2025 23:18:26 BST",
            "Wed, 9 Jul 2025 23:18:26 JST",
            "Wed, 9 Jul 2025 23:18:26 IST",
            "Wed, 9 Jul 2025 23:18:26 AEST",
            "Wed, 9 Jul 2025 23:18:26 MSK",
            "Wed, 9 Jul 2025 23:18:26 HST",
            "Wed, 9 Jul 2025 23:18:26 GMT+0100",
            "Wed, 9 Jul 2025 23:18:26 A",
            "Wed, 9 Jul 2025 05:18:26 PM -0400",
            "Sat, 31 Feb 2026 10:00:00 +0000",
            "Tue, 24 Nov 2026 25:00:00 +0000",
            "Tue, 24 Nov 2026 16:00:00 +2400",
            "Tue, 24 Nov 2026 16:00:00 +0160",
            "Tue, 24 Nov 2026 16:00:00",
            "yesterday",
        ] {
            assert_eq!(
                date_of(value),
                DateHeader::Unreadable(value.to_string()),
                "{value}"
            );
        }
        let none = Mail::parse(b"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n", None).unwrap();
        assert_eq!(none.date_header(), DateHeader::Absent);
        assert_eq!(none.date(), None);
    }
}
