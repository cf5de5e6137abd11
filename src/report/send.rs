//! Delivering a rendered report: an email over SMTP (lettre, rustls), or
//! files in a directory. Knows nothing about *when*; see `schedule`.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};

use super::config::SmtpSettings;
use super::model::Report;
use crate::config::{SecretError, TlsMode};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("SMTP password: {0}")]
    Secret(#[from] SecretError),
    #[error("TLS setup for {host}: {detail}")]
    Tls { host: String, detail: String },
    #[error("cannot build the email: {0}")]
    Message(String),
    #[error("SMTP {host}:{port}: {source}")]
    Smtp {
        host: String,
        port: u16,
        source: lettre::transport::smtp::Error,
    },
    #[error("cannot write report file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The one rendering of a report that every channel delivers.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub json: String,
}

impl Rendered {
    pub fn new(r: &Report) -> Rendered {
        Rendered {
            subject: r.subject(),
            text: super::render_text(r),
            html: super::render_html(r),
            // Serialising plain data structs cannot fail; an empty object
            // would still be valid JSON if it somehow did.
            json: serde_json::to_string_pretty(r).unwrap_or_else(|_| "{}".to_string()),
        }
    }
}

/// The same Message-ID every time the report for `date` goes to `recipient`,
/// so a resend after a crash is recognisably the same message (clients and
/// archives collapse it) rather than a second report.
pub fn message_id(date: NaiveDate, recipient: &str, from: &str) -> String {
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').trim())
        .filter(|d| !d.is_empty())
        .unwrap_or("driftwatch.invalid");
    let digest = Sha256::digest(recipient.to_ascii_lowercase().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("<driftwatch-report.{date}.{hex}@{domain}>")
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders and
/// ticket systems must not answer a report.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

/// Sends one report email to one recipient.
pub async fn send_email(
    smtp: &SmtpSettings,
    from: &str,
    recipient: &str,
    message_id: &str,
    rendered: &Rendered,
) -> Result<(), SendError> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| SendError::Message(format!("from `{from}`: {e}")))?;
    let to: Mailbox = recipient
        .parse()
        .map_err(|e| SendError::Message(format!("recipient `{recipient}`: {e}")))?;
    let email = Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject.clone())
        .message_id(Some(message_id.to_string()))
        .date_now()
        .header(AutoSubmitted)
        .multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            rendered.html.clone(),
        ))
        .map_err(|e| SendError::Message(e.to_string()))?;
    let transport = transport(smtp).await?;
    transport
        .send(email)
        .await
        .map_err(|source| SendError::Smtp {
            host: smtp.host.clone(),
            port: smtp.port,
            source,
        })?;
    Ok(())
}

/// A transport for one delivery round. Built each time so a rotated password
/// or CA file is picked up without a restart.
async fn transport(s: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    let tls_err = |detail: String| SendError::Tls {
        host: s.host.clone(),
        detail,
    };
    let params = || -> Result<TlsParameters, SendError> {
        let mut b = TlsParameters::builder(s.host.clone());
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| tls_err(format!("cannot read CA file {}: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| tls_err(format!("bad CA file {}: {e}", ca.display())))?;
            // A private CA replaces the public roots: it should not widen trust.
            b = b
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| tls_err(e.to_string()))
    };
    let tls = match s.tls {
        TlsMode::Implicit => Tls::Wrapper(params()?),
        // Required, never Opportunistic: a stripped STARTTLS must fail, not
        // send the password in clear.
        TlsMode::Starttls => Tls::Required(params()?),
        TlsMode::None => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        .port(s.port)
        .timeout(Some(s.timeout))
        .tls(tls);
    if let Some((user, secret)) = &s.auth {
        b = b.credentials(Credentials::new(user.clone(), secret.resolve().await?));
    }
    Ok(b.build())
}

/// Writes `report-DATE.{txt,html,json}` into `dir` (0600, the dir 0700 when
/// created), each through a temp file and a rename so a reader never sees
/// half a report.
pub fn write_files(
    dir: &Path,
    date: NaiveDate,
    rendered: &Rendered,
) -> Result<Vec<PathBuf>, SendError> {
    let file_err = |path: &Path, source| SendError::File {
        path: path.to_path_buf(),
        source,
    };
    crate::private_files::create_dir(dir).map_err(|e| file_err(dir, e))?;
    let mut written = Vec::new();
    for (ext, body) in [
        ("txt", &rendered.text),
        ("html", &rendered.html),
        ("json", &rendered.json),
    ] {
        let path = dir.join(format!("report-{date}.{ext}"));
        crate::private_files::write(&path, body.as_bytes()).map_err(|e| file_err(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_stable_per_date_and_recipient() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let a = message_id(d, "ops@example.com", "dw <dw@lender.example>");
        assert_eq!(
            a,
            message_id(d, "OPS@example.com", "dw <dw@lender.example>")
        );
        assert!(a.ends_with("@lender.example>"), "{a}");
        assert_ne!(a, message_id(d, "lead@example.com", "dw@lender.example"));
        assert_ne!(
            a,
            message_id(
                d.succ_opt().unwrap(),
                "ops@example.com",
                "dw@lender.example"
            )
        );
    }
}
