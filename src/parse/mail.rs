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
