//! Parser health: per-vendor quarantine rate and per-field empty rate over
//! the most recent messages against the ones before them. A jump is what a
//! vendor changing its email layout looks like, so it raises a format alert
//! the same day instead of after someone notices missing orders.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use super::{Result, Store, StoreError, ts};

/// Recent windows compared with the history before them: a short window
/// catches a format change within the day, a longer one a slow drift.
const WINDOWS: [usize; 3] = [5, 10, 20];
const RECENT: i64 = 20;
const BASELINE: i64 = 200;
/// The smallest recent sample that can raise an alert.
const MIN_RECENT: i64 = 5;
/// The smallest baseline that makes a comparison meaningful.
const MIN_BASELINE: i64 = 20;
/// An alert needs the rate to rise by at least this much...
const JUMP: f64 = 0.5;
/// ...and the recent count to be this unlikely under the rate's own history
/// (binomial tail). An optional field empty in half of a vendor's mail is
/// empty in five messages running about 3% of the time: no alarm; twenty
/// running (one in five million) is a format change.
const SURPRISE: f64 = 1e-3;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FormatAlert {
    pub vendor: String,
    pub detected_at: DateTime<Utc>,
    /// `quarantine_rate` or `empty_field`.
    pub kind: String,
    pub field: Option<String>,
    pub baseline: f64,
    pub current: f64,
    pub detail: String,
}

impl Store {
    /// Compares a vendor's recent parsing with its history and records an
    /// alert for each rate that jumped (at most one per vendor, kind and field
    /// a day). Returns the alerts raised now.
    pub async fn check_vendor_health(
        &self,
        vendor: &str,
        fields: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<FormatAlert>> {
        let mut raised = Vec::new();
        // Quarantine rate over the vendor's messages (parsed or quarantined).
        let rows = sqlx::query(
            "SELECT CASE WHEN disposition = 'quarantined' THEN 1 ELSE 0 END FROM messages
             WHERE vendor = $1 AND disposition IN ('parsed', 'quarantined')
             ORDER BY id DESC LIMIT $2",
        )
        .bind(vendor)
        .bind(RECENT + BASELINE)
        .fetch_all(&self.pool)
        .await?;
        let flags: Vec<bool> = rows
            .iter()
            .map(|r| r.try_get::<i64, _>(0).map(|q| q != 0))
            .collect::<Result<_, _>>()?;
        if let Some((base, cur)) = rates(&flags) {
            raised.push(FormatAlert {
                vendor: vendor.to_string(),
                detected_at: now,
                kind: "quarantine_rate".into(),
                field: None,
                baseline: base,
                current: cur,
                detail: format!(
                    "{:.0}% of the latest messages from {vendor} were quarantined, against {:.0}% before: has the vendor changed its email format?",
                    cur * 100.0,
                    base * 100.0
                ),
            });
        }
        // Empty rate per field over the vendor's email deltas. The recent
        // deltas are read and parsed once for all fields (this runs after
        // every committed batch), in Rust rather than with each database's
        // JSON functions: a missing key and a JSON null both count as empty.
        let recent_fields: Vec<serde_json::Map<String, serde_json::Value>> = if fields.is_empty() {
            Vec::new()
        } else {
            sqlx::query(
                r#"SELECT fields FROM deltas
                 WHERE vendor = $1 AND source = 'email'
                 ORDER BY "offset" DESC LIMIT $2"#,
            )
            .bind(vendor)
            .bind(RECENT + BASELINE)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                serde_json::from_str(r.try_get::<&str, _>(0)?)
                    .map_err(|e| StoreError::Corrupt(format!("delta fields: {e}")))
            })
            .collect::<Result<_>>()?
        };
        for field in fields {
            let empty: Vec<bool> = recent_fields
                .iter()
                .map(|f| f.get(field).is_none_or(serde_json::Value::is_null))
                .collect();
            if let Some((base, cur)) = rates(&empty) {
                raised.push(FormatAlert {
                    vendor: vendor.to_string(),
                    detected_at: now,
                    kind: "empty_field".into(),
                    field: Some(field.clone()),
                    baseline: base,
                    current: cur,
                    detail: format!(
                        "field `{field}` was empty in {:.0}% of {vendor}'s recent deltas, against {:.0}% before: has the vendor changed its email format?",
                        cur * 100.0,
                        base * 100.0
                    ),
                });
            }
        }
        let mut kept = Vec::new();
        for a in raised {
            let since = ts(now - Duration::hours(24));
            let recent: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM format_alerts WHERE vendor = $1 AND kind = $2 AND coalesce(field, '') = coalesce($3, '')
                 AND detected_at >= $4",
            )
            .bind(&a.vendor)
            .bind(&a.kind)
            .bind(&a.field)
            .bind(&since)
            .fetch_optional(&self.pool)
            .await?;
            if recent.is_some() {
                continue;
            }
            let mut tx = self.write_tx().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO format_alerts (vendor, detected_at, kind, field, baseline, current, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(&a.vendor)
            .bind(ts(a.detected_at))
            .bind(&a.kind)
            .bind(&a.field)
            .bind(a.baseline)
            .bind(a.current)
            .bind(&a.detail)
            .fetch_one(&mut *tx)
            .await?;
            super::outbox::record_format_alert(&mut tx, id, &a).await?;
            tx.commit().await?;
            kept.push(a);
        }
        Ok(kept)
    }
}

/// (baseline rate, recent rate) for the window whose recent count is least
/// likely under the baseline, if any window both jumped and is that unlikely;
/// `flags` is newest first.
fn rates(flags: &[bool]) -> Option<(f64, f64)> {
    let count = |s: &[bool]| s.iter().filter(|&&b| b).count();
    WINDOWS
        .iter()
        .filter(|&&w| w as i64 >= MIN_RECENT && flags.len() >= w + MIN_BASELINE as usize)
        .filter_map(|&w| {
            let (recent, base) = flags.split_at(w);
            let (k, n) = (count(base), base.len());
            let b = k as f64 / n as f64;
            let c = count(recent) as f64 / w as f64;
            // Laplace's rule: a field never seen empty is not impossible to empty.
            let p = (k as f64 + 1.0) / (n as f64 + 2.0);
            let tail = binomial_tail(w, count(recent), p);
            (c - b >= JUMP && tail < SURPRISE).then_some((b, c, tail))
        })
        .min_by(|x, y| x.2.total_cmp(&y.2))
        .map(|(b, c, _)| (b, c))
}

/// P(X >= k) for X ~ Binomial(n, p); n is a window (at most a few dozen).
fn binomial_tail(n: usize, k: usize, p: f64) -> f64 {
    let mut choose = 1.0_f64;
    let mut total = 0.0;
    for i in 0..=n {
        if i > 0 {
            choose = choose * (n - i + 1) as f64 / i as f64;
        }
        if i >= k {
            total += choose * p.powi(i as i32) * (1.0 - p).powi((n - i) as i32);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::rates;

    #[test]
    fn a_jump_is_flagged_noise_is_not() {
        let mut flags = vec![true; 15];
        flags.extend(vec![false; 100]);
        // The 15 newest are all quarantined: the least likely window wins.
        assert_eq!(
            rates(&flags).map(|(b, c)| (b < 0.1, c >= 0.75)),
            Some((true, true))
        );
        // Steady 10% noise: no alert.
        let noisy: Vec<bool> = (0..200).map(|i| i % 10 == 0).collect();
        assert_eq!(rates(&noisy), None);
        // Too little history: no alert.
        assert_eq!(rates(&[true; 12]), None);
    }

    #[test]
    fn an_optional_field_empty_half_the_time_raises_no_alarm() {
        // Empty in ~46% of 200 messages, then five empty in a row: chance.
        let mut flags = vec![true; 5];
        flags.extend((0..200).map(|i| (i * 6) % 13 < 6));
        assert_eq!(rates(&flags), None);
        // Twenty empty in a row is not chance: the vendor dropped the field.
        let mut flags = vec![true; 20];
        flags.extend((0..200).map(|i| (i * 6) % 13 < 6));
        let (b, c) = rates(&flags).expect("alert");
        assert!((0.4..0.5).contains(&b) && c == 1.0, "{b} {c}");
    }
}
