//! The `[report]` table of the config file: when the daily report goes out,
//! to whom, through which SMTP server, and where its files are written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::Deserialize;

use crate::secret::Secret;
use crate::tls_mode::TlsMode;
use driftwatch_core::toml_source::{ConfigError, TomlSource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    #[serde(default)]
    recipients: Vec<String>,
    from: Option<String>,
    send_at: Option<String>,
    timezone: Option<String>,
    stuck_after_days: Option<u32>,
    silent_after_hours: Option<u32>,
    max_listed: Option<usize>,
    output_dir: Option<PathBuf>,
    retry_initial_secs: Option<u64>,
    retry_max_secs: Option<u64>,
    smtp: Option<RawSmtp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    tls: Option<TlsMode>,
    allow_plaintext: Option<bool>,
    ca_file: Option<PathBuf>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    timeout_secs: Option<u64>,
}

/// What the report needs to know to be built, rendered and delivered.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// Addresses that get the email, each recorded separately so one bad
    /// mailbox does not block or repeat the others.
    pub recipients: Vec<String>,
    /// The `From:` mailbox (`Name <addr>` or `addr`).
    pub from: Option<String>,
    /// Local time of day the previous day's report is sent.
    pub send_at: NaiveTime,
    /// The zone that defines "a day" and `send_at`: reports follow the
    /// reader's calendar, not UTC's.
    pub timezone: Tz,
    /// An open order with no delta for this many days is listed as stuck.
    pub stuck_after_days: u32,
    /// A vendor with open orders and no mail for this many hours is "silent".
    pub silent_after_hours: u32,
    /// At most this many rows in each detail list (drifts, stuck orders,
    /// quarantined mail); the rest are counted, so the email stays readable.
    pub max_listed: usize,
    /// Write `report-DATE.{txt,html,json}` here each day (with or without SMTP).
    pub output_dir: Option<PathBuf>,
    /// First retry delay after a failed send inside `serve`; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub smtp: Option<SmtpSettings>,
    /// (vendor, limit): no key frame as of within the limit is reported as
    /// "key frame overdue" (from each vendor's `keyframe_overdue_after`).
    pub keyframe_overdue: Vec<(String, Duration)>,
}

impl Default for ReportSettings {
    /// The settings `driftwatch report` uses when the config has no `[report]`.
    fn default() -> Self {
        ReportSettings {
            recipients: vec![],
            from: None,
            send_at: NaiveTime::from_hms_opt(7, 0, 0).unwrap_or_default(),
            timezone: Tz::UTC,
            stuck_after_days: 5,
            silent_after_hours: 48,
            max_listed: 50,
            output_dir: None,
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(1800),
            smtp: None,
            keyframe_overdue: vec![],
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Trust only this CA (a private relay), instead of the public roots.
    pub ca_file: Option<PathBuf>,
    pub auth: Option<(String, Secret)>,
    pub timeout: Duration,
}

pub fn validate(
    src: &TomlSource,
    raw: RawReport,
    base: &Path,
) -> Result<ReportSettings, ConfigError> {
    let rel = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let d = ReportSettings::default();
    let send_at = match &raw.send_at {
        None => d.send_at,
        Some(s) => NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| {
            src.error(
                "report.send_at",
                format!("`{s}` is not a time of day like \"07:00\""),
            )
        })?,
    };
    let timezone = match &raw.timezone {
        None => d.timezone,
        Some(z) => z.parse::<Tz>().map_err(|_| {
            src.error(
                "report.timezone",
                format!("`{z}` is not an IANA time zone like \"America/Chicago\" or \"UTC\""),
            )
        })?,
    };
    for (i, r) in raw.recipients.iter().enumerate() {
        if r.parse::<lettre::Address>().is_err() {
            return Err(src.error(
                &format!("report.recipients[{i}]"),
                format!("`{r}` is not an email address"),
            ));
        }
    }
    if let Some(from) = &raw.from
        && from.parse::<lettre::message::Mailbox>().is_err()
    {
        return Err(src.error(
            "report.from",
            format!("`{from}` is not a mailbox like \"driftwatch <dw@example.com>\""),
        ));
    }
    let smtp = raw.smtp.map(|s| smtp(src, s, &rel)).transpose()?;
    if smtp.is_some() {
        if raw.recipients.is_empty() {
            return Err(src.error("report.recipients", "missing: who gets the report by email"));
        }
        if raw.from.is_none() {
            return Err(src.error("report.from", "missing: the sender address"));
        }
    } else if !raw.recipients.is_empty() {
        return Err(src.error(
            "report.recipients",
            "recipients need a [report.smtp] table to send through",
        ));
    }
    if smtp.is_none() && raw.output_dir.is_none() {
        return Err(src.error(
            "report",
            "give [report.smtp] to email the report, or output_dir to write it to files (or both)",
        ));
    }
    let retry_initial = Duration::from_secs(
        raw.retry_initial_secs
            .unwrap_or(d.retry_initial.as_secs())
            .max(1),
    );
    let retry_max = Duration::from_secs(raw.retry_max_secs.unwrap_or(d.retry_max.as_secs()));
    if retry_max < retry_initial {
        return Err(src.error(
            "report.retry_max_secs",
            "must be at least retry_initial_secs",
        ));
    }
    Ok(ReportSettings {
        recipients: raw.recipients,
        from: raw.from,
        send_at,
        timezone,
        stuck_after_days: raw.stuck_after_days.unwrap_or(d.stuck_after_days).max(1),
        silent_after_hours: raw
            .silent_after_hours
            .unwrap_or(d.silent_after_hours)
            .max(1),
        max_listed: raw.max_listed.unwrap_or(d.max_listed).max(1),
        // The output dir names a delivery channel in the send ledger
        // (`file:<dir>`): make it the same string however the config was
        // named (`-c driftwatch.toml`, `-c ./x/../driftwatch.toml`, an
        // absolute path), or one day's report would be "sent" twice.
        output_dir: raw.output_dir.as_deref().map(|p| {
            let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        }),
        retry_initial,
        retry_max,
        smtp,
        keyframe_overdue: vec![],
    })
}

fn smtp(
    src: &TomlSource,
    s: RawSmtp,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<SmtpSettings, ConfigError> {
    let tls = s.tls.unwrap_or(TlsMode::Starttls);
    if tls == TlsMode::None && s.allow_plaintext != Some(true) {
        return Err(src.error(
            "report.smtp.tls",
            "tls = \"none\" sends the report (and any password) in clear; set allow_plaintext = true to confirm",
        ));
    }
    let ca_file = s.ca_file.as_deref().map(rel);
    if let Some(ca) = &ca_file
        && !ca.is_file()
    {
        return Err(src.error(
            "report.smtp.ca_file",
            format!("no such file: {}", ca.display()),
        ));
    }
    let secret = match (s.password_env, s.password_file) {
        (Some(_), Some(_)) => {
            return Err(src.error(
                "report.smtp.password_file",
                "conflicts with `password_env`: give one credential source",
            ));
        }
        (Some(v), None) => Some(Secret::Env(v)),
        (None, Some(p)) => Some(Secret::File(rel(&p))),
        (None, None) => None,
    };
    let auth = match (s.username, secret) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(src.error(
                "report.smtp.username",
                "a username needs password_env or password_file",
            ));
        }
        (None, Some(_)) => {
            return Err(src.error("report.smtp", "a password needs `username` to go with it"));
        }
    };
    Ok(SmtpSettings {
        port: s.port.unwrap_or(match tls {
            TlsMode::Implicit => 465,
            _ => 587,
        }),
        host: s.host,
        tls,
        ca_file,
        auth,
        timeout: Duration::from_secs(s.timeout_secs.unwrap_or(20).max(1)),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(report: &str) -> Result<Config, crate::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("driftwatch.toml");
        std::fs::write(&f, format!("data_dir = \"d\"\n\n[report]\n{report}")).unwrap();
        Config::load(&f)
    }

    #[test]
    fn smtp_report_settings_are_read() {
        let c = load(
            "recipients = [\"ops@example.com\", \"lead@example.com\"]\nfrom = \"driftwatch <dw@example.com>\"\n\
             send_at = \"06:30\"\ntimezone = \"America/Chicago\"\n\n[report.smtp]\nhost = \"smtp.example.com\"\n\
             username = \"dw\"\npassword_env = \"SMTP_PW\"\n",
        )
        .unwrap();
        let r = c.report.unwrap();
        assert_eq!(r.recipients.len(), 2);
        assert_eq!(r.send_at.to_string(), "06:30:00");
        assert_eq!(r.timezone, chrono_tz::America::Chicago);
        let s = r.smtp.unwrap();
        assert_eq!((s.port, s.tls), (587, crate::config::TlsMode::Starttls));
        assert!(s.auth.is_some());
    }

    #[test]
    fn bad_values_are_located() {
        let e = load("output_dir = \"r\"\nsend_at = \"7am\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(5), Some("report.send_at")),
            "{e}"
        );
        let e = load("output_dir = \"r\"\ntimezone = \"Mars/Olympus\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("report.timezone"), "{e}");
        let e = load("output_dir = \"r\"\nrecipients = [\"not an address\"]\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("report.recipients[0]"), "{e}");
        let e = load("recipients = [\"a@b.example\"]\nfrom = \"a@b.example\"\n\n[report.smtp]\nhost = \"h\"\ntls = \"none\"\n")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("report.smtp.tls"), "{e}");
        let e = load("send_at = \"07:00\"\n").unwrap_err();
        assert!(e.message.contains("output_dir"), "{e}");
    }
}
