//! Reading a vendor's written time as a point in time, or saying why not.
//!
//! A time is placed by, in order: a numeric offset written in the text
//! (`-05:00`, `-0500`, `Z`), a zone abbreviation written in the text and
//! mapped by the rule file's `zones` table (only with `%Z` in the format),
//! then the rule file's `timezone`. Nothing is guessed: an abbreviation the
//! table does not list, a local time that falls in a DST gap, or one that
//! occurs twice when the clocks go back (unless the abbreviation says which)
//! is an error naming the reason, and the message is quarantined.
//!
//! Date-only formats (no time field at all) read as the start of that day
//! (00:00) in the zone; a format with time fields never reads a date alone.
//! A format with an hour and no minutes (`%I %p`) reads on the hour (3 PM is
//! 15:00). `%I` without `%p` is refused at load: 03:05 could be either.

use std::collections::BTreeMap;

use chrono::format::{Fixed, Item, Numeric, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::{OffsetName, Tz};

/// Why a written time could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("cannot read `{value}` as a time in format {formats}{hint}")]
    NoFormat {
        value: String,
        formats: String,
        hint: String,
    },
    #[error("zone abbreviation `{abbr}` in `{value}` is not in the rule file's zones table")]
    UnknownZone { abbr: String, value: String },
    #[error("`{value}` does not exist in {zone}: the clocks went forward over it")]
    Gap { value: String, zone: String },
    #[error("`{value}` happens twice in {zone} (the clocks went back) and nothing says which")]
    Ambiguous { value: String, zone: String },
}

/// Where a zone abbreviation places a time.
#[derive(Debug, Clone, Copy)]
enum Zone {
    /// The vendor's wall clock in this zone, whatever the letters say.
    Named(Tz),
    /// A literal offset.
    Fixed(FixedOffset),
}

#[derive(Debug, Clone)]
enum Kind {
    Rfc3339,
    Rfc2822,
    /// The format itself reads an offset (`%z`, `%:z`).
    Offset(String),
    /// `%Z` removed: the abbreviation is found in the text and mapped.
    Abbreviation(String),
    Local(String),
}

#[derive(Debug, Clone)]
struct Format {
    written: String,
    kind: Kind,
    fields: TimeFields,
}

/// Which time-of-day fields a strftime format reads.
#[derive(Debug, Clone, Copy, Default)]
struct TimeFields {
    /// Any: hour, minute, second, fraction, AM/PM or a timestamp.
    any: bool,
    /// An hour and no minutes (`%I %p`): the minutes are 00.
    hour_only: bool,
}

impl TimeFields {
    /// The fields of a format; `Err` for `%I` (or `%l`) without `%p`.
    fn of(format: &str) -> Result<TimeFields, String> {
        let (mut hour, mut hour12, mut ampm, mut minute, mut other) =
            (false, false, false, false, false);
        for item in StrftimeItems::new(format) {
            match item {
                Item::Numeric(Numeric::Hour, _) => hour = true,
                Item::Numeric(Numeric::Hour12, _) => hour12 = true,
                Item::Numeric(Numeric::Minute, _) => minute = true,
                Item::Numeric(Numeric::Second | Numeric::Nanosecond | Numeric::Timestamp, _)
                | Item::Fixed(
                    Fixed::Nanosecond
                    | Fixed::Nanosecond3
                    | Fixed::Nanosecond6
                    | Fixed::Nanosecond9
                    | Fixed::RFC2822
                    | Fixed::RFC3339,
                ) => other = true,
                Item::Fixed(Fixed::UpperAmPm | Fixed::LowerAmPm) => ampm = true,
                _ => {}
            }
        }
        if hour12 && !ampm {
            return Err(format!(
                "`{format}` reads a 12-hour clock (%I) without AM/PM (%p), so 03:05 could be 03:05 or 15:05: add %p, or use %H for a 24-hour clock"
            ));
        }
        Ok(TimeFields {
            any: hour || hour12 || minute || ampm || other,
            hour_only: (hour || hour12) && !minute,
        })
    }
}

/// How a text becomes a point in time: the formats tried in order, the
/// default zone, and the vendor's abbreviation table.
#[derive(Debug, Clone)]
pub struct TimeFormat {
    formats: Vec<Format>,
    tz: Tz,
    zones: BTreeMap<String, Zone>,
}

/// Abbreviations that mean one thing everywhere; every other one (CST is
/// US Central, China and Cuba) must be listed by the rule file.
const UNIVERSAL: [&str; 3] = ["UTC", "GMT", "Z"];

impl TimeFormat {
    /// Checks and compiles the formats. The error is (key suffix, message):
    /// the caller knows the rule file and the key it came from.
    pub fn new(
        formats: Vec<String>,
        timezone: Option<&str>,
        zones: &BTreeMap<String, String>,
    ) -> Result<TimeFormat, (&'static str, String)> {
        let tz = match timezone {
            None => chrono_tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                (
                    "timezone",
                    format!("unknown time zone `{name}` (use an IANA name like America/Chicago)"),
                )
            })?,
        };
        let mut table = BTreeMap::new();
        for (abbr, target) in zones {
            if abbr.is_empty() || !abbr.chars().all(|c| c.is_ascii_uppercase()) {
                return Err((
                    "zones",
                    format!("`{abbr}` is not a zone abbreviation (upper-case letters, like CST)"),
                ));
            }
            let zone = match target.parse::<Tz>() {
                Ok(tz) => Zone::Named(tz),
                Err(_) => Zone::Fixed(parse_offset(target).ok_or_else(|| {
                    (
                        "zones",
                        format!(
                            "`{abbr}` = `{target}`: use an IANA zone (America/Chicago: the vendor's wall clock there) or a fixed offset (-06:00)"
                        ),
                    )
                })?),
            };
            table.insert(abbr.clone(), zone);
        }
        if formats.is_empty() {
            return Err(("format", "give at least one format".into()));
        }
        let mut compiled = Vec::new();
        for f in formats {
            let mut fields = TimeFields {
                any: true,
                hour_only: false,
            };
            let kind = match f.as_str() {
                "rfc3339" => Kind::Rfc3339,
                "rfc2822" => Kind::Rfc2822,
                _ => {
                    if let Some(bad) = StrftimeItems::new(&f).find(|i| matches!(i, Item::Error)) {
                        let _ = bad;
                        return Err((
                            "format",
                            format!(
                                "`{f}` is not a valid time format (chrono strftime: %Y %m %d %H %M %S %I %p %b %z %Z ...)"
                            ),
                        ));
                    }
                    fields = TimeFields::of(&f).map_err(|e| ("format", e))?;
                    if f.contains("%Z") {
                        if table.is_empty() {
                            return Err((
                                "format",
                                format!(
                                    "`{f}` reads a zone abbreviation (%Z), so the rule file must map each one the vendor writes: zones = {{ CST = \"America/Chicago\" }}"
                                ),
                            ));
                        }
                        Kind::Abbreviation(collapse(&f.replace("%Z", " ")))
                    } else if f.contains("%z") || f.contains("%:z") || f.contains("%#z") {
                        Kind::Offset(f.clone())
                    } else {
                        Kind::Local(f.clone())
                    }
                }
            };
            compiled.push(Format {
                written: f,
                kind,
                fields,
            });
        }
        Ok(TimeFormat {
            formats: compiled,
            tz,
            zones: table,
        })
    }

    pub fn describe(&self) -> String {
        self.formats
            .iter()
            .map(|f| f.written.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The first format that reads the text places it; if none reads it, the
    /// error says why (an unlisted abbreviation, a DST gap or overlap) when
    /// one format got that far.
    pub fn parse(&self, s: &str) -> Result<DateTime<Utc>, TimeError> {
        let s = s.trim();
        let mut reason = None;
        for f in &self.formats {
            match self.parse_with(f, s) {
                Ok(Some(t)) => return Ok(t),
                Ok(None) => {}
                Err(e) => {
                    reason.get_or_insert(e);
                }
            }
        }
        Err(reason.unwrap_or_else(|| self.no_format(s)))
    }

    /// A date field: the date as written, or the date of a full time in the
    /// default zone.
    pub fn parse_date(&self, s: &str) -> Result<NaiveDate, TimeError> {
        let s = s.trim();
        if let Some(d) = self.formats.iter().find_map(|f| match &f.kind {
            Kind::Local(f) => NaiveDate::parse_from_str(s, f).ok(),
            _ => None,
        }) {
            return Ok(d);
        }
        self.parse(s)
            .map(|t| t.with_timezone(&self.tz).date_naive())
    }

    fn no_format(&self, s: &str) -> TimeError {
        let hint = match abbreviation_in(s) {
            Some(a)
                if !self
                    .formats
                    .iter()
                    .any(|f| matches!(f.kind, Kind::Abbreviation(_))) =>
            {
                format!(
                    " (it carries the zone abbreviation `{a}`: add %Z to the format and map {a} in zones)"
                )
            }
            _ => String::new(),
        };
        TimeError::NoFormat {
            value: s.chars().take(80).collect(),
            formats: self.describe(),
            hint,
        }
    }

    /// `Ok(None)`: this format does not read the text, try the next.
    fn parse_with(&self, f: &Format, s: &str) -> Result<Option<DateTime<Utc>>, TimeError> {
        Ok(match &f.kind {
            Kind::Rfc3339 => DateTime::parse_from_rfc3339(s).ok().map(|d| d.to_utc()),
            Kind::Rfc2822 => DateTime::parse_from_rfc2822(s).ok().map(|d| d.to_utc()),
            Kind::Offset(fmt) => read_parsed(s, fmt, f.fields)
                .and_then(|p| p.to_datetime().ok())
                .map(|d| d.to_utc()),
            Kind::Local(fmt) => {
                if let Some(naive) = read_naive(s, fmt, f.fields) {
                    return place(self.tz, naive, None, s).map(Some);
                }
                // A numeric offset after the time is unambiguous: honour it.
                let Some((rest, offset)) = split_trailing_offset(s) else {
                    return Ok(None);
                };
                read_naive(rest, fmt, f.fields)
                    .and_then(|n| offset.from_local_datetime(&n).single().map(|d| d.to_utc()))
            }
            Kind::Abbreviation(fmt) => {
                let Some((abbr, rest)) = take_abbreviation(s) else {
                    return Ok(None);
                };
                let Some(naive) = read_naive(&rest, fmt, f.fields) else {
                    return Ok(None);
                };
                if UNIVERSAL.contains(&abbr.as_str()) && !self.zones.contains_key(&abbr) {
                    return Ok(Some(naive.and_utc()));
                }
                match self.zones.get(&abbr) {
                    None => {
                        return Err(TimeError::UnknownZone {
                            abbr,
                            value: s.chars().take(80).collect(),
                        });
                    }
                    Some(Zone::Fixed(o)) => {
                        o.from_local_datetime(&naive).single().map(|d| d.to_utc())
                    }
                    Some(Zone::Named(tz)) => Some(place(*tz, naive, Some(&abbr), s)?),
                }
            }
        })
    }
}

/// The text read by the format, with the minutes set to 00 when the format
/// has an hour and no minutes.
fn read_parsed(s: &str, f: &str, fields: TimeFields) -> Option<Parsed> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, s, StrftimeItems::new(f)).ok()?;
    if fields.hour_only {
        parsed.set_minute(0).ok()?;
    }
    Some(parsed)
}

/// A date and time; a date alone (then 00:00) only when the format has no
/// time field, so `11/24/2026 3 PM` is never read as midnight.
fn read_naive(s: &str, f: &str, fields: TimeFields) -> Option<NaiveDateTime> {
    let parsed = read_parsed(s, f, fields)?;
    if fields.any {
        parsed.to_naive_datetime_with_offset(0).ok()
    } else {
        parsed.to_naive_date().ok()?.and_hms_opt(0, 0, 0)
    }
}

/// A local time in a zone. In the hour that happens twice, the written
/// abbreviation (CDT vs CST) picks one; without it the time cannot be placed.
fn place(
    tz: Tz,
    naive: NaiveDateTime,
    abbr: Option<&str>,
    written: &str,
) -> Result<DateTime<Utc>, TimeError> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.to_utc()),
        LocalResult::Ambiguous(a, b) => {
            let named = |t: &DateTime<Tz>| abbr.is_some() && t.offset().abbreviation() == abbr;
            if named(&a) {
                Ok(a.to_utc())
            } else if named(&b) {
                Ok(b.to_utc())
            } else {
                Err(TimeError::Ambiguous {
                    value: written.chars().take(80).collect(),
                    zone: tz.name().to_string(),
                })
            }
        }
        LocalResult::None => Err(TimeError::Gap {
            value: written.chars().take(80).collect(),
            zone: tz.name().to_string(),
        }),
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `-05:00`, `+0530`, `-05`.
fn parse_offset(s: &str) -> Option<FixedOffset> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || rest.len() > 5 {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// A last whitespace-separated token that is a numeric offset or `Z`.
fn split_trailing_offset(s: &str) -> Option<(&str, FixedOffset)> {
    let (rest, last) = s.rsplit_once(char::is_whitespace)?;
    if last == "Z" || last.starts_with(['+', '-']) {
        Some((rest.trim_end(), parse_offset(last)?))
    } else {
        None
    }
}

/// The token that looks like a zone abbreviation: 1-5 upper-case letters,
/// not AM/PM, optionally in parentheses. Returns it and the text without it.
fn take_abbreviation(s: &str) -> Option<(String, String)> {
    let tokens: Vec<&str> = s.split_whitespace().collect();
    let i = tokens.iter().rposition(|t| is_abbreviation(t))?;
    let abbr = tokens[i].trim_matches(['(', ')', ',', '.']).to_string();
    let rest = tokens
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, t)| *t)
        .collect::<Vec<_>>()
        .join(" ");
    Some((abbr, rest))
}

fn abbreviation_in(s: &str) -> Option<String> {
    take_abbreviation(s).map(|(a, _)| a)
}

fn is_abbreviation(token: &str) -> bool {
    let t = token.trim_matches(['(', ')', ',', '.']);
    (1..=5).contains(&t.len())
        && t.chars().all(|c| c.is_ascii_uppercase())
        && !matches!(t, "AM" | "PM")
        && (t.len() > 1 || t == "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tf(formats: &[&str], tz: Option<&str>, zones: &[(&str, &str)]) -> TimeFormat {
        TimeFormat::new(
            formats.iter().map(|s| s.to_string()).collect(),
            tz,
            &zones
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn zone_abbreviations_map_through_the_vendor_table() {
        let t = tf(
            &["%m/%d/%Y %I:%M %p %Z"],
            Some("America/New_York"),
            &[
                ("CST", "America/Chicago"),
                ("CDT", "America/Chicago"),
                ("ET", "America/New_York"),
            ],
        );
        // Winter: CST = UTC-6, not the file's New York default.
        assert_eq!(
            t.parse("11/23/2026 09:12 AM CST").unwrap().to_rfc3339(),
            "2026-11-23T15:12:00+00:00"
        );
        assert_eq!(
            t.parse("07/01/2026 09:12 AM ET").unwrap().to_rfc3339(),
            "2026-07-01T13:12:00+00:00"
        );
        assert_eq!(
            t.parse("11/23/2026 09:12 AM UTC").unwrap().to_rfc3339(),
            "2026-11-23T09:12:00+00:00"
        );
        assert!(matches!(
            t.parse("11/23/2026 09:12 AM PT"),
            Err(TimeError::UnknownZone { abbr, .. }) if abbr == "PT"
        ));
    }

    #[test]
    fn numeric_offsets_in_the_text_are_honoured() {
        let t = tf(&["%Y-%m-%d %H:%M"], Some("America/Chicago"), &[]);
        assert_eq!(
            t.parse("2026-11-24 10:05 -05:00").unwrap().to_rfc3339(),
            "2026-11-24T15:05:00+00:00"
        );
        assert_eq!(
            t.parse("2026-11-24 10:05").unwrap().to_rfc3339(),
            "2026-11-24T16:05:00+00:00"
        );
    }

    #[test]
    fn an_abbreviation_without_percent_z_is_refused_with_a_hint() {
        let t = tf(&["%m/%d/%Y %I:%M %p"], Some("America/Chicago"), &[]);
        let e = t.parse("11/23/2026 09:12 AM CST").unwrap_err().to_string();
        assert!(e.contains("add %Z"), "{e}");
    }

    #[test]
    fn dst_gap_and_overlap_are_refused_unless_the_abbreviation_decides() {
        let t = tf(
            &["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M %Z"],
            Some("America/Chicago"),
            &[("CST", "America/Chicago"), ("CDT", "America/Chicago")],
        );
        assert!(matches!(
            t.parse("2026-03-08 02:30"),
            Err(TimeError::Gap { .. })
        ));
        assert!(matches!(
            t.parse("2026-11-01 01:30"),
            Err(TimeError::Ambiguous { .. })
        ));
        assert_eq!(
            t.parse("2026-11-01 01:30 CST").unwrap().to_rfc3339(),
            "2026-11-01T07:30:00+00:00"
        );
        assert_eq!(
            t.parse("2026-11-01 01:30 CDT").unwrap().to_rfc3339(),
            "2026-11-01T06:30:00+00:00"
        );
    }

    #[test]
    fn date_only_event_times_are_the_start_of_the_day_in_the_zone() {
        let t = tf(&["%Y-%m-%d"], Some("America/Denver"), &[]);
        assert_eq!(
            t.parse("2026-11-24").unwrap().to_rfc3339(),
            "2026-11-24T07:00:00+00:00"
        );
    }

    #[test]
    fn a_format_with_time_fields_never_yields_a_date_only_time() {
        for format in ["%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M", "%m/%d/%Y %I %p"] {
            let t = tf(&[format], Some("America/Chicago"), &[]);
            assert!(
                matches!(t.parse("11/24/2026"), Err(TimeError::NoFormat { .. })),
                "{format}"
            );
            // Nor a time it cannot fully read: `3` with no AM/PM.
            assert!(t.parse("11/24/2026 3").is_err(), "{format}");
        }
    }

    #[test]
    fn an_hour_without_minutes_reads_on_the_hour() {
        let t = tf(&["%m/%d/%Y %I %p"], Some("America/Chicago"), &[]);
        assert_eq!(
            t.parse("11/24/2026 3 PM").unwrap().to_rfc3339(),
            "2026-11-24T21:00:00+00:00"
        );
        assert_eq!(
            t.parse("11/24/2026 12 AM").unwrap().to_rfc3339(),
            "2026-11-24T06:00:00+00:00"
        );
        let t = tf(&["%Y-%m-%d %H%z"], None, &[]);
        assert_eq!(
            t.parse("2026-11-24 15-0500").unwrap().to_rfc3339(),
            "2026-11-24T20:00:00+00:00"
        );
    }

    #[test]
    fn a_12_hour_clock_without_am_pm_is_refused_at_load() {
        let none = BTreeMap::new();
        for format in ["%m/%d/%Y %I:%M", "%m/%d/%Y %l:%M %Z", "%Y-%m-%d %I:%M%z"] {
            let e = TimeFormat::new(vec![format.into()], None, &none).unwrap_err();
            assert_eq!(e.0, "format");
            assert!(e.1.contains("without AM/PM (%p)"), "{}", e.1);
        }
        assert!(TimeFormat::new(vec!["%m/%d/%Y %I:%M %p".into()], None, &none).is_ok());
        assert!(TimeFormat::new(vec!["%m/%d/%Y %r".into()], None, &none).is_ok());
    }

    #[test]
    fn invalid_formats_and_unmapped_percent_z_are_refused_at_load() {
        let none = BTreeMap::new();
        let e = TimeFormat::new(vec!["%Y-%m-%d %Q".into()], None, &none).unwrap_err();
        assert_eq!(e.0, "format");
        assert!(e.1.contains("%Q"), "{}", e.1);
        let e = TimeFormat::new(vec!["%Y-%m-%d %H:%M %Z".into()], None, &none).unwrap_err();
        assert!(e.1.contains("zones"), "{}", e.1);
    }
}
