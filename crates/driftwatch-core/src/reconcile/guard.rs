//! The guard: is a key frame believable enough to act on? Pure.
//!
//! A broken export looks like massive drift (an empty file says every order
//! vanished), so the checks look at the shape of the key frame before anything
//! is recorded or fixed.

use super::settings::{GuardSettings, UnknownStatus};

#[derive(Debug, Clone, Default)]
pub struct GuardInput {
    pub rows: u64,
    pub complete: bool,
    pub incomplete_reason: Option<String>,
    /// Row count of the last key frame a run trusted.
    pub last_good_rows: Option<u64>,
    pub local_orders: u64,
    /// Distinct orders with at least one drift.
    pub drifted_orders: u64,
    /// Fixes the run would apply (0 under `flag`).
    pub fixes: u64,
    /// Rows whose values could not be read, and the first reasons.
    pub row_errors: u64,
    pub row_error_examples: Vec<String>,
    /// Rows whose status word is not in the vendor's status map, and some of the words.
    pub unknown_status: u64,
    pub unknown_words: Vec<String>,
}

/// `Some(reason)` when the key frame must not be acted on.
pub fn check(g: &GuardSettings, i: &GuardInput) -> Option<String> {
    if !i.complete {
        return Some(format!(
            "the listing is incomplete: {}",
            i.incomplete_reason
                .as_deref()
                .unwrap_or("the last page was not reached")
        ));
    }
    if i.row_errors > 0 {
        return Some(format!(
            "{} row(s) could not be read, so the key frame is not used ({})",
            i.row_errors,
            i.row_error_examples.join("; ")
        ));
    }
    if i.unknown_status > 0 && g.unknown_status == UnknownStatus::Refuse {
        return Some(format!(
            "{} row(s) have a status word not in the status map ({}); add them to [vendor.status_map], or set guard.unknown_status = \"flag\"",
            i.unknown_status,
            i.unknown_words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if i.rows < g.min_rows {
        return Some(format!(
            "the export has {} order row(s); at least {} expected",
            i.rows, g.min_rows
        ));
    }
    if let Some(last) = i.last_good_rows.filter(|&l| l > 0) {
        let drop = 100.0 * (last.saturating_sub(i.rows)) as f64 / last as f64;
        if drop > g.max_row_drop_pct {
            return Some(format!(
                "row count fell {drop:.1}% ({last} → {}); limit {}%",
                i.rows, g.max_row_drop_pct
            ));
        }
    }
    let base = i.local_orders.max(i.rows);
    if base > 0 {
        let pct = 100.0 * i.drifted_orders as f64 / base as f64;
        if pct > g.max_drift_pct {
            return Some(format!(
                "{} of {base} orders ({pct:.1}%) drifted; limit {}%",
                i.drifted_orders, g.max_drift_pct
            ));
        }
    }
    if i.fixes > g.max_fixes {
        return Some(format!(
            "{} fixes exceed the per-run cap of {}",
            i.fixes, g.max_fixes
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> GuardInput {
        GuardInput {
            rows: 1000,
            complete: true,
            last_good_rows: Some(1000),
            local_orders: 1000,
            drifted_orders: 10,
            fixes: 10,
            ..Default::default()
        }
    }

    #[test]
    fn trips() {
        let g = GuardSettings::default();
        assert_eq!(check(&g, &ok()), None);
        for (i, needle) in [
            (GuardInput { rows: 0, ..ok() }, "0 order row"),
            (GuardInput { rows: 700, ..ok() }, "fell 30.0%"),
            (
                GuardInput {
                    complete: false,
                    ..ok()
                },
                "incomplete",
            ),
            (
                GuardInput {
                    drifted_orders: 200,
                    ..ok()
                },
                "20.0%",
            ),
            (
                GuardInput {
                    fixes: 20_000,
                    ..ok()
                },
                "cap",
            ),
            (
                GuardInput {
                    row_errors: 1,
                    row_error_examples: vec!["row 3: column `Fee`: `1,234` is not a number".into()],
                    ..ok()
                },
                "1 row(s) could not be read",
            ),
            (
                GuardInput {
                    unknown_status: 2,
                    unknown_words: vec!["Awaiting QA".into()],
                    ..ok()
                },
                "`Awaiting QA`",
            ),
        ] {
            let r = check(&g, &i).unwrap_or_default();
            assert!(r.contains(needle), "{r}");
        }
    }
}
