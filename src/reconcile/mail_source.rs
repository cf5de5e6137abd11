//! `kind = "mail"`: the vendor's emailed full-state report ("open orders",
//! "daily status") as a key frame, read from the raw archive ingest already
//! keeps.
//!
//! The newest archived message (by its own `Date`) from the configured
//! senders whose subject and/or attachment name match is the key frame; its
//! CSV attachment is read with the vendor's export mapping, and its as-of is
//! the mail's `Date` (or a column, or a phrase in the body). The message is
//! remembered in its key frame (`etag = "mail:<id>"`), so a rerun is
//! `unchanged`, and a report older than the last trusted key frame (one that
//! arrives late) never replaces it.
//!
//! In `serve`, [`run_on_mail`] starts the vendor's reconcile as soon as ingest
//! commits a new matching message, instead of waiting for the schedule.
//!
//! Never: take a message whose sender does not match `from`, or whose
//! Authentication-Results fail for the sender's domain (a forged report
//! would rewrite the whole view); read XLSX (refused with the reason).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{AsOf, ExportFormat, RawExport, VendorSettings};
use super::source::{Export, KeyFrameMeta, Previous};
use crate::parse::{AuthPolicy, Mail, Verdict, check_auth, glob_match};
use crate::store::{ReportMail, Store, StoreError};
use driftwatch_core::toml_source::{ConfigError, TomlSource};

/// How far back archived mail is searched for a report: a report older
/// than this is long past any `stale_after_hours` anyway.
const LOOKBACK: chrono::Duration = chrono::Duration::days(14);

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Sender address globs (`reports@acme.example`, `*@acme.example`).
    pub from: Vec<String>,
    /// Subject glob (`*` any run, case-insensitive).
    pub subject: Option<String>,
    /// Attachment file-name glob; without it, the first `.csv` attachment.
    pub attachment: Option<String>,
    /// The sender check on the receiving server's Authentication-Results.
    pub auth: AuthPolicy,
    /// Trusted authserv-ids (`[ingest] authserv_ids`), set by `Config::load`.
    pub authserv_ids: Vec<String>,
    /// `Modified`: the mail's Date; `Field`: a column; `Body`: a phrase.
    pub as_of: AsOf,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(
        "no report mail from {from} matching {what} was archived in the last {} days{detail}",
        LOOKBACK.num_days()
    )]
    NoReport {
        from: String,
        what: String,
        detail: String,
    },
    #[error("report mail {id} (`{subject}`) has no attachment matching `{pattern}`")]
    NoAttachment {
        id: i64,
        subject: String,
        pattern: String,
    },
    #[error(
        "report mail {id}: attachment `{name}` is XLSX, which driftwatch does not read yet; ask the vendor for CSV"
    )]
    Xlsx { id: i64, name: String },
    #[error("report mail {id}: the time after `{phrase}` cannot be read: {reason}")]
    BodyAsOf {
        id: i64,
        phrase: String,
        reason: String,
    },
    #[error("report mail {id} cannot be read: {message}")]
    Unreadable { id: i64, message: String },
    #[error("cannot write the attachment to {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates the mail keys of `[vendor.export]`.
pub(super) fn validate(
    src: &TomlSource,
    ek: &dyn Fn(&str) -> String,
    e: &RawExport,
    as_of: AsOf,
) -> Result<MailSettings, ConfigError> {
    let from = e.from.clone().unwrap_or_default();
    if from.is_empty() || from.iter().any(|f| f.trim().is_empty()) {
        return Err(src.error(
            &ek("kind"),
            "mail needs `from`: the sender addresses (or `*@domain`) whose reports are key frames",
        ));
    }
    if e.subject.is_none() && e.attachment.is_none() {
        return Err(src.error(
            &ek("kind"),
            "mail needs `subject` or `attachment` (or both): which of the vendor's mail is the report",
        ));
    }
    if matches!(as_of, AsOf::Header(_) | AsOf::Fetched) {
        return Err(src.error(
            &ek("as_of"),
            "mail takes \"date\" (the mail's Date, the default), \"field:COLUMN\" or \"body:PHRASE\"",
        ));
    }
    if e.format == Some(ExportFormat::Json) {
        return Err(src.error(&ek("format"), "mail reads CSV attachments"));
    }
    Ok(MailSettings {
        from: from.iter().map(|f| f.trim().to_ascii_lowercase()).collect(),
        subject: e.subject.clone(),
        attachment: e.attachment.clone(),
        auth: e.auth.unwrap_or_default(),
        authserv_ids: vec![],
        as_of,
    })
}

impl MailSettings {
    /// Whether a message's metadata makes it a report candidate.
    fn matches(&self, m: &ReportMail) -> bool {
        let sender = m.sender.as_deref().unwrap_or("").to_ascii_lowercase();
        self.from.iter().any(|f| glob_match(f, &sender))
            && self
                .subject
                .as_ref()
                .is_none_or(|p| glob_match(p, m.subject.as_deref().unwrap_or("")))
    }

    fn attachment_matches(&self, name: Option<&str>, content_type: &str) -> bool {
        match (&self.attachment, name) {
            (Some(p), Some(n)) => glob_match(p, n),
            (Some(_), None) => false,
            (None, Some(n)) => {
                let n = n.to_ascii_lowercase();
                n.ends_with(".csv") || n.ends_with(".xlsx")
            }
            (None, None) => content_type == "text/csv",
        }
    }

    fn describe(&self) -> String {
        match (&self.subject, &self.attachment) {
            (Some(s), Some(a)) => format!("subject `{s}` with attachment `{a}`"),
            (Some(s), None) => format!("subject `{s}`"),
            (None, Some(a)) => format!("attachment `{a}`"),
            (None, None) => "anything".into(),
        }
    }
}

/// The report candidates by metadata, newest `Date` first.
async fn candidates(store: &Store, m: &MailSettings) -> Result<Vec<ReportMail>, StoreError> {
    let since = Utc::now() - LOOKBACK;
    Ok(store
        .report_mail_candidates(0, since)
        .await?
        .into_iter()
        .filter(|c| m.matches(c))
        .collect())
}

/// The newest candidate's identity and Date, without reading raw mail: what
/// the trigger compares with the last key frame before starting a run.
async fn newest(
    store: &Store,
    m: &MailSettings,
) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
    Ok(candidates(store, m)
        .await?
        .into_iter()
        .find_map(|c| Some((identity(c.id), c.date_header?))))
}

fn identity(id: i64) -> String {
    format!("mail:{id}")
}

/// The time written after `phrase` on the same line of the body.
fn body_time(
    text: &str,
    phrase: &str,
    zone: Option<chrono_tz::Tz>,
) -> Result<DateTime<Utc>, String> {
    let at = text
        .find(phrase)
        .map(|i| i + phrase.len())
        .ok_or("the body does not contain it")?;
    let rest = text[at..]
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches(':')
        .trim();
    super::source::parse_time(rest, zone)
}

/// Takes the newest trusted report mail as an export (its attachment written
/// to the work dir), or `NotModified` when it is the last trusted key frame's
/// mail or older than that key frame.
pub(super) async fn fetch(
    store: &Store,
    m: &MailSettings,
    vendor: &str,
    zone: Option<chrono_tz::Tz>,
    previous: &Previous,
    work_dir: &Path,
) -> Result<Export, MailError> {
    let fetched_at = Utc::now();
    let unchanged = |why: &str| {
        info!(vendor, why, "mail key frame unchanged");
        Export::not_modified(KeyFrameMeta::fetched("mail".into(), fetched_at))
    };
    let mut skipped = Vec::new();
    for c in candidates(store, m).await? {
        let Some(date) = c.date_header else {
            skipped.push(format!("message {} has no readable Date", c.id));
            continue;
        };
        if previous.etag.as_deref() == Some(identity(c.id).as_str()) {
            return Ok(unchanged("the newest report is the last trusted key frame"));
        }
        if previous.as_of.is_some_and(|p| date < p) {
            return Ok(unchanged(
                "the newest report is older than the last trusted key frame",
            ));
        }
        let Some(stored) = store.message(c.id).await? else {
            continue;
        };
        let Some(mail) = Mail::parse(&stored.raw, None) else {
            return Err(MailError::Unreadable {
                id: c.id,
                message: "not a MIME message".into(),
            });
        };
        let sender = mail.from_address().unwrap_or_default();
        let domain = sender.rsplit('@').next().unwrap_or_default();
        if let Verdict::Reject(reason) = check_auth(
            m.auth,
            &mail.header_raw_all("Authentication-Results"),
            domain,
            &m.authserv_ids,
        ) {
            warn!(vendor, message = c.id, reason = %reason, "report mail not trusted; skipped");
            skipped.push(format!("message {} not trusted: {reason}", c.id));
            continue;
        }
        let subject = mail.subject().to_string();
        let Some(att) = mail
            .attachments()
            .find(|a| m.attachment_matches(a.name.as_deref(), &a.content_type))
        else {
            if m.subject.is_none() {
                // Matched on the attachment only: not a report after all.
                continue;
            }
            return Err(MailError::NoAttachment {
                id: c.id,
                subject,
                pattern: m.attachment.clone().unwrap_or_else(|| "*.csv".into()),
            });
        };
        let name = att.name.clone().unwrap_or_else(|| "attachment.csv".into());
        if name.to_ascii_lowercase().ends_with(".xlsx")
            || att.content_type.contains("spreadsheetml")
        {
            return Err(MailError::Xlsx { id: c.id, name });
        }
        let (as_of, as_of_field) = match &m.as_of {
            AsOf::Field(f) => (None, Some(f.clone())),
            AsOf::Body(phrase) => {
                let text = if mail.text().contains(phrase.as_str()) {
                    mail.text()
                } else {
                    mail.html_text()
                };
                let t = body_time(text, phrase, zone).map_err(|reason| MailError::BodyAsOf {
                    id: c.id,
                    phrase: phrase.clone(),
                    reason,
                })?;
                (Some(t), None)
            }
            _ => (Some(date), None),
        };
        let path = work_dir.join(format!(
            "{}-{}.mail.csv",
            vendor.replace(['/', '\\'], "_"),
            fetched_at.timestamp_micros()
        ));
        let io = |error| MailError::Io {
            path: path.clone(),
            error,
        };
        // Vendor data: 0700/0600 whatever the umask.
        crate::private_files::create_dir(work_dir).map_err(io)?;
        // MIME owns the line break before the closing boundary (RFC 2046),
        // so an attachment's last line arrives without one; the message was
        // archived whole (its closing boundary read), so add it back for the
        // CSV reader's cut-file check.
        let mut bytes = att.bytes.to_vec();
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        crate::private_files::write(&path, &bytes).map_err(io)?;
        let mut h = super::source::ContentHasher::new();
        h.update(identity(c.id).as_bytes());
        h.update(&[0u8]);
        h.update(att.bytes);
        let mut meta =
            KeyFrameMeta::fetched(format!("mail {} ({name}, from {sender})", c.id), fetched_at);
        meta.as_of = as_of;
        meta.content_hash = h.finalize().into();
        meta.etag = Some(identity(c.id));
        info!(vendor, message = c.id, attachment = %name, "report mail taken as a key frame");
        return Ok(Export::download(meta, path, ExportFormat::Csv, as_of_field));
    }
    if previous.as_of.is_some() {
        return Ok(unchanged("no new report mail"));
    }
    Err(MailError::NoReport {
        from: m.from.join(", "),
        what: m.describe(),
        detail: if skipped.is_empty() {
            String::new()
        } else {
            format!(" (skipped: {})", skipped.join("; "))
        },
    })
}

/// How often the archive is checked when no commit was signalled (mail
/// ingested by another `serve` on the same database), and a vendor whose
/// lease was busy is tried again.
const POLL: Duration = Duration::from_secs(60);

/// Runs a mail-sourced vendor's reconcile when a new report mail is archived:
/// woken by `committed` (the ingest pipeline's "a batch committed" signal)
/// or every minute. Only mail archived since the last look is read (its
/// metadata), and a vendor runs only when such mail matches its report and
/// is not what its last key frame came from: ordinary status mail costs one
/// small query and writes nothing.
pub async fn run_on_mail(
    store: Store,
    vendors: Vec<VendorSettings>,
    work_dir: PathBuf,
    mut committed: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let vendors: Vec<VendorSettings> = vendors
        .into_iter()
        .filter(|v| v.export.as_ref().and_then(|e| e.mail()).is_some())
        .collect();
    if vendors.is_empty() {
        return;
    }
    // Messages up to this id have been looked at (0: all within LOOKBACK,
    // so a report archived while `serve` was down runs at start).
    let mut seen: i64 = 0;
    // Vendors with a new report not yet run (their lease was busy).
    let mut pending: HashSet<String> = HashSet::new();
    // The report each vendor was last run for: a report that failed (no
    // attachment, unreadable) is not retried on every later mail.
    let mut tried: HashMap<String, String> = HashMap::new();
    let mut pipeline_alive = true;
    loop {
        match look(&store, &vendors, seen).await {
            Ok((newest, matched)) => {
                seen = newest.max(seen);
                pending.extend(matched);
            }
            Err(e) => warn!(error = %e, "cannot look for new report mail"),
        }
        let due: Vec<&VendorSettings> = vendors
            .iter()
            .filter(|v| pending.contains(&v.name))
            .collect();
        for v in due {
            match run_if_new(&store, v, &work_dir, &mut tried).await {
                Ok(Ran::Busy) => continue,
                Ok(Ran::Done) => {}
                Err(e) => warn!(vendor = %v.name, error = %e, "report-mail reconcile failed"),
            }
            pending.remove(&v.name);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = committed.changed(), if pipeline_alive => pipeline_alive = r.is_ok(),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// New mail since `seen`: the newest id, and the vendors whose report it matches.
async fn look(
    store: &Store,
    vendors: &[VendorSettings],
    seen: i64,
) -> Result<(i64, Vec<String>), StoreError> {
    let newest = store.newest_message_id().await?;
    if newest <= seen {
        return Ok((seen, vec![]));
    }
    let fresh = store
        .report_mail_candidates(seen, Utc::now() - LOOKBACK)
        .await?;
    let matched = vendors
        .iter()
        .filter(|v| {
            v.export
                .as_ref()
                .and_then(|e| e.mail())
                .is_some_and(|m| fresh.iter().any(|c| m.matches(c)))
        })
        .map(|v| v.name.clone())
        .collect();
    Ok((newest, matched))
}

enum Ran {
    Done,
    /// Another run holds the vendor's lease: try again at the next look.
    Busy,
}

/// One vendor: run when its newest report mail is new.
async fn run_if_new(
    store: &Store,
    v: &VendorSettings,
    work_dir: &Path,
    tried: &mut HashMap<String, String>,
) -> Result<Ran, super::ReconcileError> {
    let Some(m) = v.export.as_ref().and_then(|e| e.mail()) else {
        return Ok(Ran::Done);
    };
    let Some((id, date)) = newest(store, m).await? else {
        return Ok(Ran::Done);
    };
    if let Some(last) = store.last_key_frame(&v.name).await?
        && (last.etag.as_deref() == Some(id.as_str()) || date < last.as_of)
    {
        return Ok(Ran::Done);
    }
    if tried.get(&v.name) == Some(&id) {
        return Ok(Ran::Done);
    }
    match super::run_vendor(store, v, work_dir, super::RunOptions::default()).await {
        Ok(s) => {
            info!(vendor = %v.name, outcome = s.outcome.as_str(), drifts = s.drifts(), fixed = s.fixed, "report mail reconciled")
        }
        Err(super::ReconcileError::Busy { holder, .. }) => {
            info!(vendor = %v.name, holder, "report mail arrived while another run holds the vendor's lease; tried again at the next look");
            return Ok(Ran::Busy);
        }
        Err(e) => {
            tried.insert(v.name.clone(), id);
            return Err(e);
        }
    }
    tried.insert(v.name.clone(), id);
    Ok(Ran::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_phrase_gives_the_time_after_it() {
        let t = body_time(
            "Hello,\nOpen orders as of: 2026-12-01T18:00:00Z\nRegards",
            "Open orders as of",
            None,
        );
        assert_eq!(
            t.map(|t| t.to_rfc3339()).as_deref(),
            Ok("2026-12-01T18:00:00+00:00")
        );
        assert!(body_time("as of: yesterday", "as of", None).is_err());
    }

    #[test]
    fn a_body_time_without_a_zone_needs_the_vendors_timezone() {
        let text = "Open orders as of: 2026-12-01 18:00:00\n";
        let e = body_time(text, "as of", None).unwrap_err();
        assert!(e.contains("no zone or offset"), "{e}");
        let chicago = Some(chrono_tz::America::Chicago);
        let t = body_time(text, "as of", chicago).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-02T00:00:00+00:00");
    }
}
