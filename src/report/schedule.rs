//! *Which* reports are due and delivering them once: [`run_once`].
//! The scheduler loop in `mod.rs` only decides *when* to call it.
//!
//! Rules:
//! - The report dated D covers the local day D and is due at `send_at` on
//!   D + 1. At any moment the *latest due* date is yesterday once today's
//!   `send_at` has passed, else the day before.
//! - Catch-up: on each call the latest due date is delivered to every channel
//!   that has not had it. Days before that are delivered only if an attempt
//!   was recorded and did not finish (`pending`/`failed`), for up to
//!   [`RETRY_DAYS`]. So after a week down, one report (with its 7-day trend)
//!   goes out, not seven; a report that was started is never silently dropped.
//! - Each (date, channel) is recorded `pending` before delivery and `sent`
//!   after (see migrations/0003_reports.sql). A crash in between leaves
//!   `pending`, which is delivered again with the same Message-ID:
//!   at-least-once, with a recognisable duplicate in that one narrow window,
//!   rather than at-most-once, which would lose the report. A `pending` row
//!   younger than [`PENDING_LEASE_MINUTES`] is left alone (another process,
//!   e.g. `report --send-due` beside `serve`, is sending it).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use tracing::{info, warn};

use super::config::ReportSettings;
use super::send::{Rendered, message_id, send_email, write_files};
use crate::store::Store;
use crate::store::{BeginSend, SendState, StoreError};

/// Unfinished sends older than this many days before the latest due date are
/// no longer retried (they stay `failed`/`pending` in `report_sends` with
/// their last error), so one permanently bad recipient does not keep old
/// reports in the retry loop forever.
pub const RETRY_DAYS: i64 = 7;

/// How long a `pending` send belongs to the attempt that wrote it. Longer
/// than any one delivery (SMTP timeout per step), so a second process does
/// not send the same report concurrently; short enough that a report cut
/// off by a crash goes out soon after the restart.
pub const PENDING_LEASE_MINUTES: i64 = 10;

/// What one call did, per (date, channel).
#[derive(Debug, Clone, Default)]
pub struct SendOutcome {
    pub latest_due: Option<NaiveDate>,
    pub deliveries: Vec<Delivery>,
}

impl SendOutcome {
    pub fn failed(&self) -> usize {
        self.deliveries
            .iter()
            .filter(|d| matches!(d.result, DeliveryResult::Failed { .. }))
            .count()
    }
    pub fn sent(&self) -> usize {
        self.deliveries
            .iter()
            .filter(|d| matches!(d.result, DeliveryResult::Sent { .. }))
            .count()
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub date: NaiveDate,
    /// An email address, or `file:<dir>` for output_dir.
    pub channel: String,
    pub result: DeliveryResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Sent {
        attempt: i64,
    },
    AlreadySent,
    /// Another attempt is under way (see [`PENDING_LEASE_MINUTES`]).
    InFlight,
    Failed {
        attempt: i64,
        error: String,
    },
}

/// The local instant `time` on `date` in `tz`; a time skipped by a DST jump
/// moves to the first valid minute after it.
fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut t = date.and_time(time);
    for _ in 0..180 {
        if let Some(s) = tz.from_local_datetime(&t).earliest() {
            return s.with_timezone(&Utc);
        }
        t += Duration::minutes(1);
    }
    date.and_time(time).and_utc()
}

/// The newest report date whose send time has passed at `now`.
pub fn latest_due(settings: &ReportSettings, now: DateTime<Utc>) -> NaiveDate {
    let tz = settings.timezone;
    let today = now.with_timezone(&tz).date_naive();
    let back = if now >= local_instant(tz, today, settings.send_at) {
        1
    } else {
        2
    };
    today
        .checked_sub_signed(Duration::days(back))
        .unwrap_or(today)
}

/// The next send time strictly after `now`.
pub fn next_send_after(settings: &ReportSettings, now: DateTime<Utc>) -> DateTime<Utc> {
    let tz = settings.timezone;
    let mut day = now.with_timezone(&tz).date_naive();
    for _ in 0..3 {
        let t = local_instant(tz, day, settings.send_at);
        if t > now {
            return t;
        }
        day = day.succ_opt().unwrap_or(day);
    }
    now + Duration::days(1)
}

/// Every place a report goes: each recipient, and the output directory.
pub fn channels(settings: &ReportSettings) -> Vec<String> {
    let mut c: Vec<String> = if settings.smtp.is_some() {
        settings.recipients.clone()
    } else {
        vec![]
    };
    if let Some(dir) = &settings.output_dir {
        c.push(format!("file:{}", dir.display()));
    }
    c
}

/// Delivers every report due at `now` that has not been delivered yet.
/// Failures are recorded and returned, not raised: only a store error (the
/// ledger itself unusable) is an `Err`.
pub async fn run_once(
    store: &Store,
    settings: Option<&ReportSettings>,
    now: DateTime<Utc>,
) -> Result<SendOutcome, StoreError> {
    let Some(settings) = settings else {
        return Ok(SendOutcome::default());
    };
    let latest = latest_due(settings, now);
    let oldest = latest
        .checked_sub_signed(Duration::days(RETRY_DAYS))
        .unwrap_or(latest);
    let channels = channels(settings);

    // (date -> channels still owed that date's report)
    let mut owed: BTreeMap<NaiveDate, BTreeSet<String>> = BTreeMap::new();
    let ledger = store.report_sends(oldest).await?;
    let sent: BTreeSet<(NaiveDate, &str)> = ledger
        .iter()
        .filter(|r| r.state == SendState::Sent)
        .map(|r| (r.report_date, r.recipient.as_str()))
        .collect();
    for c in &channels {
        if !sent.contains(&(latest, c.as_str())) {
            owed.entry(latest).or_default().insert(c.clone());
        }
    }
    for r in ledger.iter().filter(|r| r.state != SendState::Sent) {
        if channels.contains(&r.recipient) {
            owed.entry(r.report_date)
                .or_default()
                .insert(r.recipient.clone());
        }
    }

    let mut outcome = SendOutcome {
        latest_due: Some(latest),
        deliveries: vec![],
    };
    for (date, owed_channels) in owed {
        let report = super::build(store, date, settings, now).await?;
        let rendered = Rendered::new(&report);
        for channel in owed_channels {
            let from = settings.from.as_deref().unwrap_or("driftwatch@localhost");
            let mid = message_id(date, &channel, from);
            let lease = Duration::minutes(PENDING_LEASE_MINUTES);
            let attempt = match store.begin_send(date, &channel, &mid, now, lease).await? {
                BeginSend::AlreadySent => {
                    outcome.deliveries.push(Delivery {
                        date,
                        channel,
                        result: DeliveryResult::AlreadySent,
                    });
                    continue;
                }
                BeginSend::InFlight => {
                    outcome.deliveries.push(Delivery {
                        date,
                        channel,
                        result: DeliveryResult::InFlight,
                    });
                    continue;
                }
                BeginSend::Go { attempt } => attempt,
            };
            let result = deliver(settings, &channel, date, &mid, &rendered).await;
            let result = match result {
                Ok(()) => {
                    store.finish_send(date, &channel, Utc::now()).await?;
                    info!(%date, channel = %channel, attempt, subject = %rendered.subject, "daily report delivered");
                    DeliveryResult::Sent { attempt }
                }
                Err(e) => {
                    let error = e.to_string();
                    store.fail_send(date, &channel, &error).await?;
                    warn!(%date, channel = %channel, attempt, error = %error, "daily report delivery failed; will retry");
                    DeliveryResult::Failed { attempt, error }
                }
            };
            outcome.deliveries.push(Delivery {
                date,
                channel,
                result,
            });
        }
    }
    Ok(outcome)
}

async fn deliver(
    settings: &ReportSettings,
    channel: &str,
    date: NaiveDate,
    message_id: &str,
    rendered: &Rendered,
) -> Result<(), super::send::SendError> {
    if let Some(dir) = channel.strip_prefix("file:") {
        write_files(std::path::Path::new(dir), date, rendered)?;
        return Ok(());
    }
    let (Some(smtp), Some(from)) = (&settings.smtp, &settings.from) else {
        return Err(super::send::SendError::Message(
            "no [report.smtp] or from configured".into(),
        ));
    };
    send_email(smtp, from, channel, message_id, rendered).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(send_at: &str, tz: Tz) -> ReportSettings {
        ReportSettings {
            send_at: NaiveTime::parse_from_str(send_at, "%H:%M").unwrap(),
            timezone: tz,
            ..ReportSettings::default()
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn latest_due_turns_over_at_send_time_in_the_zone() {
        let s = settings("07:00", chrono_tz::America::Chicago);
        // 07:00 in Chicago on 25 Nov is 13:00 UTC.
        assert_eq!(
            latest_due(&s, utc("2026-11-25T12:59:59Z")).to_string(),
            "2026-11-23"
        );
        assert_eq!(
            latest_due(&s, utc("2026-11-25T13:00:00Z")).to_string(),
            "2026-11-24"
        );
        // 02:00 UTC on the 26th is still the 25th in Chicago, after 07:00.
        assert_eq!(
            latest_due(&s, utc("2026-11-26T02:00:00Z")).to_string(),
            "2026-11-24"
        );
    }

    #[test]
    fn next_send_is_strictly_after_now() {
        let s = settings("07:00", Tz::UTC);
        assert_eq!(
            next_send_after(&s, utc("2026-11-25T07:00:00Z")),
            utc("2026-11-26T07:00:00Z")
        );
        assert_eq!(
            next_send_after(&s, utc("2026-11-25T06:00:00Z")),
            utc("2026-11-25T07:00:00Z")
        );
        // A send time inside the spring-forward gap moves to the end of the gap.
        let s = settings("02:30", chrono_tz::America::Chicago);
        assert_eq!(
            next_send_after(&s, utc("2026-03-08T06:00:00Z")),
            utc("2026-03-08T08:00:00Z")
        );
    }
}
