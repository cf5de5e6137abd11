//! Exact decimal numbers read from vendor text: the one reader both the
//! export side (reconcile mapping) and the email side (rule parsers' `money`
//! and `decimal` fields) use, and the one way they are stored.
//!
//! A number is read under a declared [`NumberFormat`]: which character is the
//! decimal separator and which (if any) separates thousands. Anything the
//! declaration does not settle is refused, never guessed: `1,234` with no
//! thousands separator declared could be 1234 or 1.234, and `1.234,50` under a
//! dot decimal is not a number at all. No IO here.
//!
//! Storage: the order view keeps amounts as JSON numbers (what databases
//! written before exact decimals hold, and what readers of the view expect).
//! A decimal with at most 15 significant digits survives the trip through a
//! JSON number exactly (an `f64` holds 15 decimal digits, and the JSON writer
//! prints the shortest text that reads back), so [`to_json`] writes those as
//! numbers and longer ones as strings, and [`from_f64`] reads a stored number
//! back from that same shortest text.

use std::str::FromStr;

pub use rust_decimal::Decimal;

/// How a vendor writes numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberFormat {
    pub decimal: char,
    /// `None`: no thousands separator is used; any other separator is an error.
    pub thousands: Option<char>,
}

impl NumberFormat {
    /// `1234.50`: a dot decimal, no grouping. The export default.
    pub const PLAIN: NumberFormat = NumberFormat {
        decimal: '.',
        thousands: None,
    };
    /// `1,234.50`: what the email rule parsers read (English-language mail).
    pub const DOT_COMMA: NumberFormat = NumberFormat {
        decimal: '.',
        thousands: Some(','),
    };
}

/// Why a text is not a number under the declared format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("not a number")]
    NotANumber,
    #[error("ambiguous: {0}")]
    Ambiguous(String),
    #[error("out of range")]
    OutOfRange,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// Reads `$1,234.50`, `USD 99`, `(12.00)`, `-12`, `380,00 €` under `f`.
pub fn parse(s: &str, f: NumberFormat) -> Result<Decimal, NumberError> {
    let t = s.trim();
    // Most values are plain: digits with at most a dot.
    if f.decimal == '.'
        && !t.is_empty()
        && t.len() <= 30
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && let Ok(d) = Decimal::from_str(t)
    {
        return Ok(d);
    }
    let (neg_paren, t) = match t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        Some(inner) => (true, inner.trim()),
        None => (false, t),
    };
    // Currency: up to three letters or a symbol, before or after the number.
    let is_currency = |c: char| c.is_alphabetic() || matches!(c, '$' | '€' | '£' | '¥' | '₹');
    let letters = t.chars().filter(|c| c.is_alphabetic()).count();
    if letters > 3 {
        return Err(NumberError::NotANumber);
    }
    let t = t.trim_matches(|c: char| is_currency(c) || is_space(c));
    let (neg_sign, t) = match t.strip_prefix('-').or_else(|| t.strip_prefix('\u{2212}')) {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let t = t.trim_matches(|c: char| is_currency(c) || is_space(c));
    if t.is_empty() {
        return Err(NumberError::NotANumber);
    }
    let thousands_is_space = f.thousands.is_some_and(is_space);
    let mut int_groups: Vec<String> = vec![String::new()];
    let mut frac: Option<String> = None;
    for c in t.chars() {
        if c.is_ascii_digit() {
            match &mut frac {
                Some(fr) => fr.push(c),
                None => int_groups.last_mut().map(|g| g.push(c)).unwrap_or(()),
            }
        } else if c == f.decimal {
            if frac.is_some() {
                return Err(NumberError::Ambiguous(format!(
                    "`{c}` appears twice but is the decimal separator"
                )));
            }
            frac = Some(String::new());
        } else if Some(c) == f.thousands || (thousands_is_space && is_space(c)) {
            if frac.is_some() {
                return Err(NumberError::Ambiguous(format!(
                    "thousands separator `{c}` after the decimal separator `{}`",
                    f.decimal
                )));
            }
            int_groups.push(String::new());
        } else if matches!(c, '.' | ',' | '\'' | '’') || is_space(c) {
            return Err(NumberError::Ambiguous(format!(
                "`{c}` is neither the declared decimal separator `{}` nor {}",
                f.decimal,
                match f.thousands {
                    Some(k) => format!("the thousands separator `{k}`"),
                    None => "a declared thousands separator (none is declared)".into(),
                }
            )));
        } else {
            return Err(NumberError::NotANumber);
        }
    }
    if int_groups.len() > 1 {
        let first = &int_groups[0];
        if first.is_empty() || first.len() > 3 || int_groups[1..].iter().any(|g| g.len() != 3) {
            return Err(NumberError::Ambiguous(
                "thousands groups must be of three digits".into(),
            ));
        }
    }
    let int: String = int_groups.concat();
    if int.is_empty() && frac.as_deref().is_none_or(str::is_empty) {
        return Err(NumberError::NotANumber);
    }
    let text = match &frac {
        Some(fr) if !fr.is_empty() => format!("{}.{fr}", if int.is_empty() { "0" } else { &int }),
        _ => int,
    };
    let d = Decimal::from_str(&text).map_err(|_| NumberError::OutOfRange)?;
    Ok(if neg_paren ^ neg_sign { -d } else { d })
}

/// A number as stored: a JSON number when it reads back exactly, else its text.
pub fn to_json(d: Decimal) -> serde_json::Value {
    let d = d.normalize();
    let digits = d.mantissa().unsigned_abs().checked_ilog10().unwrap_or(0) + 1;
    if digits <= 15
        && let Ok(x) = d.to_string().parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(x)
    {
        return serde_json::Value::Number(n);
    }
    serde_json::Value::String(d.to_string())
}

/// A stored JSON number back as the decimal it was written from: the
/// shortest text that reads back as `x` (what the JSON writer printed).
pub fn from_f64(x: f64) -> Option<Decimal> {
    if !x.is_finite() {
        return None;
    }
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        return Some(Decimal::from(x as i64));
    }
    Decimal::from_str(&x.to_string()).ok()
}

/// A stored JSON value as a decimal: a number, or the text [`to_json`] writes.
pub fn from_json(v: &serde_json::Value) -> Option<Decimal> {
    match v {
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Some(Decimal::from(i)),
            (_, Some(u)) => Some(Decimal::from(u)),
            _ => n.as_f64().and_then(from_f64),
        },
        serde_json::Value::String(s) => parse(s, NumberFormat::PLAIN).ok(),
        _ => None,
    }
}

/// A configured tolerance (a TOML float) as the decimal it was written as.
pub fn tolerance(x: f64) -> Decimal {
    from_f64(x).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    const EURO: NumberFormat = NumberFormat {
        decimal: ',',
        thousands: Some('.'),
    };

    #[test]
    fn each_locale_reads_exactly_what_it_declares() {
        assert_eq!(parse("380,00", EURO), Ok(d("380")));
        assert_eq!(parse("1.234,50", EURO), Ok(d("1234.5")));
        assert_eq!(parse("1.234,50 €", EURO), Ok(d("1234.5")));
        assert_eq!(parse("$1,234.50", NumberFormat::DOT_COMMA), Ok(d("1234.5")));
        assert_eq!(parse("USD 99", NumberFormat::PLAIN), Ok(d("99")));
        assert_eq!(parse("(12.00)", NumberFormat::PLAIN), Ok(d("-12")));
        assert_eq!(parse("-0.5", NumberFormat::PLAIN), Ok(d("-0.5")));
        let swiss = NumberFormat {
            decimal: '.',
            thousands: Some('\''),
        };
        assert_eq!(parse("1'234.05", swiss), Ok(d("1234.05")));
        let fr = NumberFormat {
            decimal: ',',
            thousands: Some(' '),
        };
        assert_eq!(parse("1\u{202f}234,5", fr), Ok(d("1234.5")));
        // Exact: no binary rounding on the way.
        assert_eq!(
            parse("0.1", NumberFormat::PLAIN).unwrap() + parse("0.2", NumberFormat::PLAIN).unwrap(),
            d("0.3")
        );
    }

    #[test]
    fn what_the_declaration_does_not_settle_is_refused() {
        for (s, f) in [
            ("1,234", NumberFormat::PLAIN),
            ("380,00", NumberFormat::PLAIN),
            ("1.234,50", NumberFormat::PLAIN),
            ("1.234,50", NumberFormat::DOT_COMMA),
            ("12,50", NumberFormat::DOT_COMMA),
            ("1.234.567", NumberFormat::PLAIN),
            ("1,234.50", EURO),
        ] {
            assert!(
                matches!(parse(s, f), Err(NumberError::Ambiguous(_))),
                "{s} under {f:?}: {:?}",
                parse(s, f)
            );
        }
        for s in ["n/a", "", "-", "12 apples", "1e5"] {
            assert!(parse(s, NumberFormat::PLAIN).is_err(), "{s}");
        }
    }

    #[test]
    fn stored_numbers_read_back_as_the_decimal_written() {
        for s in [
            "380",
            "1234.5",
            "0.1",
            "-12.34",
            "99999999999.99",
            "0.000001",
        ] {
            let v = to_json(d(s));
            assert!(v.is_number(), "{s}");
            assert_eq!(from_json(&v), Some(d(s)), "{s}");
            // Through the database's text, as a view written earlier holds it.
            let back: serde_json::Value = serde_json::from_str(&v.to_string()).unwrap();
            assert_eq!(from_json(&back), Some(d(s)), "{s}");
        }
        let long = d("1234567890123456.78");
        assert_eq!(to_json(long), serde_json::json!("1234567890123456.78"));
        assert_eq!(from_json(&to_json(long)), Some(long));
        assert_eq!(from_f64(500.0), Some(d("500")));
    }
}
