//! The words of a reconcile run: drift kinds, causes, outcomes.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The vendor has the order; our view (as of the key frame) does not.
    MissingLocal,
    /// Our view has the order; the key frame does not.
    MissingRemote,
    StatusMismatch,
    FieldMismatch,
}

impl DriftKind {
    pub const ALL: [DriftKind; 4] = [
        DriftKind::MissingLocal,
        DriftKind::MissingRemote,
        DriftKind::StatusMismatch,
        DriftKind::FieldMismatch,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::MissingLocal => "missing_local",
            DriftKind::MissingRemote => "missing_remote",
            DriftKind::StatusMismatch => "status_mismatch",
            DriftKind::FieldMismatch => "field_mismatch",
        }
    }
}

/// The likely reason a drift happened, from the evidence in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// No delta ever told us of the vendor's latest transition.
    MissedEmail,
    /// The delta exists but was recorded after the key frame (and its grace window).
    LateEmail,
    /// A quarantined or superseded message about the order exists.
    ParseError,
    /// The vendor moved backwards in its own status order.
    VendorRegression,
    Unexplained,
}

impl Cause {
    pub const ALL: [Cause; 5] = [
        Cause::MissedEmail,
        Cause::LateEmail,
        Cause::ParseError,
        Cause::VendorRegression,
        Cause::Unexplained,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::MissedEmail => "missed_email",
            Cause::LateEmail => "late_email",
            Cause::ParseError => "parse_error",
            Cause::VendorRegression => "vendor_regression",
            Cause::Unexplained => "unexplained",
        }
    }
}

macro_rules! from_str_via_all {
    ($t:ty, $what:literal) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$t>::ALL
                    .into_iter()
                    .find(|k| k.as_str() == s)
                    .ok_or_else(|| format!("unknown {} `{s}`", $what))
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
from_str_via_all!(DriftKind, "drift kind");
from_str_via_all!(Cause, "drift cause");
from_str_via_all!(Outcome, "run outcome");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Diffed; drifts recorded (and fixed under `fix`).
    Ok,
    /// Same content as the last trusted key frame: not diffed again.
    Unchanged,
    /// The guard did not believe the key frame: nothing recorded or fixed.
    Refused,
    /// The export could not be fetched or read.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Unchanged,
        Outcome::Refused,
        Outcome::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// One difference found by a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub order_ref: String,
    pub kind: DriftKind,
    /// The field, for `field_mismatch`.
    pub field: Option<String>,
    /// What we think / what the vendor says, as JSON.
    pub local_value: Option<serde_json::Value>,
    pub remote_value: Option<serde_json::Value>,
    pub cause: Cause,
}
