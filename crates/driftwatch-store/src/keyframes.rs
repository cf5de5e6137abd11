//! Reads for key frames that arrive by themselves: report mails in the raw
//! archive (the `mail` export source), and when each vendor's last key frame
//! was as of (the "key frame overdue" alert).
//!
//! Reads only; portable SQL with `$N` placeholders.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Result, Store, parse_ts, ts};

/// An archived message that may be a vendor's full-state report: what the
/// mail source filters on before it reads any raw mail.
#[derive(Debug, Clone)]
pub struct ReportMail {
    pub id: i64,
    pub sender: Option<String>,
    pub subject: Option<String>,
    /// The mail's own `Date`, as UTC; `None` when it had none we could read.
    pub date_header: Option<DateTime<Utc>>,
    pub archived_at: DateTime<Utc>,
}

impl Store {
    /// Whole archived messages (any disposition but `skipped`, whose body
    /// was never fetched) with an id above `after_id`, archived at or after
    /// `since`, newest `Date` first. `after_id` lets the mail trigger look at
    /// new mail only (a primary-key range), however large the archive.
    pub async fn report_mail_candidates(
        &self,
        after_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<ReportMail>> {
        let rows = sqlx::query(
            "SELECT id, sender, subject, date_header, archived_at FROM messages
             WHERE id > $1 AND archived_at >= $2 AND raw_complete = 1
               AND disposition IN ('parsed', 'quarantined', 'ignored')
             ORDER BY date_header DESC, id DESC",
        )
        .bind(after_id)
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportMail {
                    id: r.try_get(0)?,
                    sender: r.try_get(1)?,
                    subject: r.try_get(2)?,
                    date_header: r.try_get::<Option<&str>, _>(3)?.map(parse_ts).transpose()?,
                    archived_at: parse_ts(r.try_get::<&str, _>(4)?)?,
                })
            })
            .collect()
    }

    /// The newest message id: a cheap "has anything arrived" probe for the
    /// mail trigger in `serve`.
    pub async fn newest_message_id(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM messages")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Per vendor, the newest `as_of` of a key frame fetched by `at`.
    pub async fn last_key_frame_as_of(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT vendor, max(as_of) FROM key_frames WHERE fetched_at <= $1 GROUP BY vendor",
        )
        .bind(ts(at))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, parse_ts(r.try_get::<&str, _>(1)?)?)))
            .collect()
    }

    /// When we first heard of the vendor (its first reconcile run or its
    /// first archived mail), by `at`: the start of "no key frame yet".
    pub async fn vendor_first_seen(
        &self,
        vendor: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let t: Option<String> = sqlx::query_scalar(
            "SELECT min(t) FROM (
                 SELECT min(started_at) AS t FROM reconcile_runs WHERE vendor = $1 AND started_at <= $2
                 UNION ALL
                 SELECT min(archived_at) AS t FROM messages WHERE vendor = $1 AND archived_at <= $2
             ) AS seen",
        )
        .bind(vendor)
        .bind(ts(at))
        .fetch_one(&self.pool)
        .await?;
        t.as_deref().map(parse_ts).transpose()
    }
}
