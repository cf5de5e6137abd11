//! A parsed email with the views parsers match against, computed once.
//!
//! mail-parser never panics and keeps going on broken MIME; this wrapper keeps
//! that promise: every accessor returns something (possibly empty) for any input.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use mail_parser::{Message, MessageParser, MimeHeaders};

use super::html::html_to_text;

pub struct Mail<'a> {
    msg: Message<'a>,
    /// The server's arrival time: the last fallback for an event time.
    pub received: Option<DateTime<Utc>>,
    text: OnceLock<String>,
    html_text: OnceLock<String>,
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
            text: OnceLock::new(),
            html_text: OnceLock::new(),
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

    pub fn subject(&self) -> &str {
        self.msg.subject().unwrap_or("")
    }

    pub fn message_id(&self) -> Option<&str> {
        self.msg.message_id()
    }

    /// The Date header, if present and valid.
    pub fn date(&self) -> Option<DateTime<Utc>> {
        let d = self.msg.date()?;
        if !d.is_valid() {
            return None;
        }
        DateTime::from_timestamp(d.to_timestamp(), 0)
    }

    /// The plain-text body; for an HTML-only message, the HTML turned into text.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| {
            let parts: Vec<String> = self
                .msg
                .text_bodies()
                .filter(|p| !p.is_text_html())
                .filter_map(|p| p.text_contents().map(str::to_string))
                .collect();
            if parts.is_empty() {
                self.html_text().to_string()
            } else {
                parts.join("\n")
            }
        })
    }

    /// The HTML body as text: one line per block or table row, cells separated
    /// by ` | `, entities decoded. Empty when there is no HTML part.
    pub fn html_text(&self) -> &str {
        self.html_text.get_or_init(|| {
            self.msg
                .html_bodies()
                .filter(|p| p.is_text_html())
                .filter_map(|p| p.text_contents())
                .map(html_to_text)
                .collect::<Vec<_>>()
                .join("\n")
        })
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
