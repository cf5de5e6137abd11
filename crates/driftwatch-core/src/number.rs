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
    #[error("out of range: larger than a decimal holds")]
    OutOfRange,
    /// Rounding them away would write a value the vendor did not send.
    #[error("out of range: more digits than a decimal keeps exactly (28)")]
    TooManyDigits,
    /// The export's digits were cut to a double's before we saw them.
    #[error(
        "a JSON number with more significant digits than a double holds exactly (15); \
         send it as a string"
    )]
    BeyondDouble,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// Currency symbols read as a marker. Any other sign or letter is not.
const SYMBOLS: [char; 5] = ['$', '€', '£', '¥', '₹'];

/// The byte length of a currency marker at the start of `t`: a symbol, or
/// an ISO-4217-style code of exactly three ASCII capitals not followed by
/// another letter. Only such a marker is set aside: stripping any letters
/// read `12k` as 12.
fn marker_at_start(t: &str) -> Option<usize> {
    let c = t.chars().next()?;
    if SYMBOLS.contains(&c) {
        return Some(c.len_utf8());
    }
    let b = t.as_bytes();
    (b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_uppercase)
        && !t[3..].starts_with(char::is_alphabetic))
    .then_some(3)
}

/// [`marker_at_start`] at the end of `t`: `99 EUR`, `380,00 €`.
fn marker_at_end(t: &str) -> Option<usize> {
    let c = t.chars().next_back()?;
    if SYMBOLS.contains(&c) {
        return Some(c.len_utf8());
    }
    let b = t.as_bytes();
    let n = b.len();
    (n >= 3
        && b[n - 3..].iter().all(u8::is_ascii_uppercase)
        && !t[..n - 3].ends_with(char::is_alphabetic))
    .then_some(3)
}

/// `text` (ASCII digits with at most one `.`) as the decimal it says, or
/// refused: `Decimal::from_str` would round a 29th digit away.
fn exact(text: &str) -> Result<Decimal, NumberError> {
    Decimal::from_str_exact(text).map_err(|e| match e {
        rust_decimal::Error::Underflow => NumberError::TooManyDigits,
        _ => NumberError::OutOfRange,
    })
}

/// Reads `$1,234.50`, `USD 99`, `(12.00)`, `-12`, `380,00 €` under `f`.
///
/// Besides the digits and the declared separators a number may carry one
/// currency marker (a symbol, or a three-capital code such as `USD`) at its
/// start or end, one sign, or accounting parentheses for a negative. Any
/// other letter makes the text not a number (`12k`, `1.5M`, `12abc`), a
/// sign inside parentheses is refused (`(-12)`), and so is a value with
/// more digits than a decimal keeps exactly.
pub fn parse(s: &str, f: NumberFormat) -> Result<Decimal, NumberError> {
    let t = s.trim();
    // Most values are plain: digits with at most a dot. Exact or not taken
    // here: a long text is read (or refused) the general way.
    if f.decimal == '.'
        && !t.is_empty()
        && t.len() <= 30
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && let Ok(d) = Decimal::from_str_exact(t)
    {
        return Ok(d);
    }
    let (neg_paren, mut t) = match t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        Some(inner) => (true, inner.trim()),
        None => (false, t),
    };
    let mut marked = false;
    if let Some(n) = marker_at_start(t) {
        t = t[n..].trim_start();
        marked = true;
    }
    let sign = t
        .chars()
        .next()
        .filter(|c| matches!(c, '-' | '\u{2212}' | '+'));
    if let Some(c) = sign {
        t = t[c.len_utf8()..].trim_start();
        if neg_paren {
            return Err(NumberError::Ambiguous(if c == '+' {
                "`+` inside parentheses, which mean negative".into()
            } else {
                "two negative signs: the parentheses and `-`".into()
            }));
        }
    }
    if !marked && let Some(n) = marker_at_start(t) {
        t = t[n..].trim_start();
        marked = true;
    }
    if !marked && let Some(n) = marker_at_end(t) {
        t = t[..t.len() - n].trim_end();
    }
    // A unit (`12k`), a second marker, a word: not a number.
    if t.is_empty() || t.chars().any(|c| c.is_alphabetic() || SYMBOLS.contains(&c)) {
        return Err(NumberError::NotANumber);
    }
    let neg_sign = sign.is_some_and(|c| c != '+');
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
    let text = |frac: Option<&str>| match frac {
        Some(fr) if !fr.is_empty() => format!("{}.{fr}", if int.is_empty() { "0" } else { &int }),
        _ if int.is_empty() => "0".to_string(),
        _ => int.clone(),
    };
    let d = match exact(&text(frac.as_deref())) {
        // Trailing zeros after the point say nothing: `1.50…0` is 1.5 exactly.
        Err(NumberError::TooManyDigits) => {
            exact(&text(frac.as_deref().map(|fr| fr.trim_end_matches('0'))))?
        }
        r => r?,
    };
    Ok(if neg_paren ^ neg_sign { -d } else { d })
}

/// A JSON number from a vendor's export as a decimal, exactly or refused.
///
/// Integers the JSON reader kept as such are exact. Any other number
/// reached us as a double, which holds 15 significant digits exactly: when
/// the shortest text that reads back as it needs 16 or more, the vendor's
/// text may have had digits the double dropped, so it is refused rather
/// than written as the double's. (Our own stored numbers are read back by
/// [`from_json`], not this: [`to_json`] writes them only with 15 digits.)
pub fn from_export_json(n: &serde_json::Number) -> Result<Decimal, NumberError> {
    if let Some(i) = n.as_i64() {
        return Ok(Decimal::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Decimal::from(u));
    }
    n.as_f64()
        .ok_or(NumberError::NotANumber)
        .and_then(from_export_f64)
}

/// The longest JSON number text read: anything longer has more digits than
/// a decimal keeps, or is out of its range. (A reader may keep only this
/// much of a longer literal: it is refused all the same.)
pub const MAX_LITERAL: usize = 400;

/// The most significant digits a double keeps exactly for any decimal.
pub const DOUBLE_DIGITS: usize = 15;

/// A JSON number from a vendor's export, from the text it was written as
/// (the reader keeps the text of numbers with more significant digits than
/// a double holds): exactly, or refused when a decimal cannot hold it.
pub fn from_json_literal(text: &str) -> Result<Decimal, NumberError> {
    if text.len() >= MAX_LITERAL {
        return Err(NumberError::TooManyDigits);
    }
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (
            &text[..i],
            text[i + 1..]
                .parse::<i64>()
                .map_err(|_| NumberError::NotANumber)?,
        ),
        None => (text, 0),
    };
    let bad = |c: char| !(c.is_ascii_digit() || c == '.' || c == '-');
    if mantissa.is_empty() || mantissa.contains(bad) {
        return Err(NumberError::NotANumber);
    }
    let mut d = Decimal::from_str_exact(mantissa).map_err(|e| match e {
        rust_decimal::Error::ExceedsMaximumPossibleValue
        | rust_decimal::Error::LessThanMinimumPossibleValue => NumberError::OutOfRange,
        rust_decimal::Error::Underflow | rust_decimal::Error::ScaleExceedsMaximumPrecision(_) => {
            NumberError::TooManyDigits
        }
        _ => NumberError::NotANumber,
    })?;
    // The exponent moves the point: exactly, or refused.
    if d.is_zero() {
        return Ok(Decimal::ZERO);
    }
    if exp > 0 {
        // First into the digits after the point, then past them.
        let into = exp.min(i64::from(d.scale()));
        let scale = u32::try_from(i64::from(d.scale()) - into).unwrap_or(0);
        d.set_scale(scale).map_err(|_| NumberError::TooManyDigits)?;
        for _ in into..exp {
            d = d.checked_mul(Decimal::TEN).ok_or(NumberError::OutOfRange)?;
        }
    } else if exp < 0 {
        let scale = i64::from(d.scale())
            .checked_sub(exp)
            .and_then(|s| u32::try_from(s).ok())
            .ok_or(NumberError::TooManyDigits)?;
        d.set_scale(scale).map_err(|_| NumberError::TooManyDigits)?;
    }
    Ok(d)
}

/// [`from_export_json`] for a double: `{:e}` prints the shortest text that
/// reads back as `x`, as `d.ddde±x`.
fn from_export_f64(x: f64) -> Result<Decimal, NumberError> {
    if !x.is_finite() {
        return Err(NumberError::NotANumber);
    }
    let text = format!("{:e}", x.abs());
    let (mantissa, exp) = text.split_once('e').ok_or(NumberError::NotANumber)?;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if digits.len() > DOUBLE_DIGITS {
        return Err(NumberError::BeyondDouble);
    }
    let m: i128 = digits.parse().map_err(|_| NumberError::NotANumber)?;
    let exp: i64 = exp.parse().map_err(|_| NumberError::NotANumber)?;
    // value = m × 10^(exp − (digits − 1))
    let shift = exp - (digits.len() as i64 - 1);
    let d = if shift >= 0 {
        let scaled = u32::try_from(shift)
            .ok()
            .and_then(|s| 10i128.checked_pow(s))
            .and_then(|p| m.checked_mul(p))
            .ok_or(NumberError::OutOfRange)?;
        Decimal::try_from_i128_with_scale(scaled, 0).map_err(|_| NumberError::OutOfRange)?
    } else {
        let scale = u32::try_from(-shift).map_err(|_| NumberError::TooManyDigits)?;
        Decimal::try_from_i128_with_scale(m, scale).map_err(|_| NumberError::TooManyDigits)?
    };
    Ok(if x.is_sign_negative() { -d } else { d })
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
    /// A JSON number's own text is read exactly, whatever its length, or
    /// refused when a decimal cannot hold it.
    #[test]
    fn a_json_number_literal_is_read_exactly_or_refused() {
        let d = |s: &str| super::from_json_literal(s).map(|d| d.to_string());
        assert_eq!(
            d("1.00000000000000000001").as_deref(),
            Ok("1.00000000000000000001")
        );
        assert_eq!(
            d("-380.1234567890123456789").as_deref(),
            Ok("-380.1234567890123456789")
        );
        assert_eq!(
            d("12345678901234567890123").as_deref(),
            Ok("12345678901234567890123")
        );
        assert_eq!(
            d("1.2345678901234567e2").as_deref(),
            Ok("123.45678901234567")
        );
        assert_eq!(
            d("1234567890123456789E-20").as_deref(),
            Ok("0.01234567890123456789")
        );
        assert_eq!(d("0e999999999").as_deref(), Ok("0"));
        assert_eq!(
            d("1.23456789012345678901234567891"),
            Err(super::NumberError::TooManyDigits)
        );
        assert_eq!(
            d("1234567890123456789e99"),
            Err(super::NumberError::OutOfRange)
        );
        assert_eq!(
            d("1234567890123456789e-9223372036854775808"),
            Err(super::NumberError::TooManyDigits)
        );
        assert_eq!(
            d(&format!("0.{}1", "0".repeat(450))),
            Err(super::NumberError::TooManyDigits)
        );
    }

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

    #[test]
    fn a_unit_suffix_is_not_a_currency() {
        for s in ["12k", "1.5M", "12abc", "12 apples", "k12", "12 kg", "1e5"] {
            assert_eq!(
                parse(s, NumberFormat::DOT_COMMA),
                Err(NumberError::NotANumber),
                "{s}"
            );
        }
    }

    #[test]
    fn a_currency_marker_is_one_symbol_or_three_capitals_at_either_end() {
        for (s, want) in [
            ("USD 99", "99"),
            ("99 EUR", "99"),
            ("USD99", "99"),
            ("99EUR", "99"),
            ("$1,234.50", "1234.5"),
            ("-$12", "-12"),
            ("$-12", "-12"),
            ("USD -12", "-12"),
            ("(USD 12.00)", "-12"),
            ("12 £", "12"),
        ] {
            assert_eq!(parse(s, NumberFormat::DOT_COMMA), Ok(d(want)), "{s}");
        }
        assert_eq!(parse("380,00 €", EURO), Ok(d("380")));
        // Not a code (lower case, two or four letters), or two markers.
        for s in [
            "usd 99",
            "US 99",
            "USDX 99",
            "US$ 99",
            "$12 USD",
            "EUR 12 €",
            "12 USD 5",
        ] {
            assert_eq!(
                parse(s, NumberFormat::DOT_COMMA),
                Err(NumberError::NotANumber),
                "{s}"
            );
        }
    }

    #[test]
    fn two_negative_signs_are_refused() {
        for s in ["(-12)", "(\u{2212}12)", "( -12.00 )", "(+12)", "($-12)"] {
            assert!(
                matches!(
                    parse(s, NumberFormat::DOT_COMMA),
                    Err(NumberError::Ambiguous(_))
                ),
                "{s}: {:?}",
                parse(s, NumberFormat::DOT_COMMA)
            );
        }
        assert_eq!(parse("(12.00)", NumberFormat::DOT_COMMA), Ok(d("-12")));
        assert_eq!(parse("-12", NumberFormat::DOT_COMMA), Ok(d("-12")));
        assert_eq!(parse("+12", NumberFormat::DOT_COMMA), Ok(d("12")));
    }

    #[test]
    fn more_digits_than_kept_exactly_are_refused() {
        for s in [
            "0.1234567890123456789012345678901",
            "0.12345678901234567890123456789",
            // 29 digits in 30 characters: the plain-digit fast path.
            "9999999999999999999999.9999999",
            "1.23456789012345678901234567891",
        ] {
            for f in [NumberFormat::PLAIN, NumberFormat::DOT_COMMA] {
                assert_eq!(parse(s, f), Err(NumberError::TooManyDigits), "{s}");
            }
        }
        assert_eq!(
            parse("USD 0.1234567890123456789012345678901", NumberFormat::PLAIN),
            Err(NumberError::TooManyDigits)
        );
        assert_eq!(
            parse("99999999999999999999999999999999", NumberFormat::PLAIN),
            Err(NumberError::OutOfRange)
        );
        // What is kept exactly still reads, fast path or not.
        assert_eq!(
            parse("0.1234567890123456789012345678", NumberFormat::PLAIN),
            Ok(d("0.1234567890123456789012345678"))
        );
        assert_eq!(
            parse("1.5000000000000000000000000000000000", NumberFormat::PLAIN),
            Ok(d("1.5"))
        );
        assert_eq!(
            parse("79228162514264337593543950335", NumberFormat::PLAIN),
            Ok(Decimal::MAX)
        );
    }

    #[test]
    fn a_json_number_with_more_digits_than_a_double_holds_is_refused() {
        let n = |s: &str| -> serde_json::Number { serde_json::from_str(s).unwrap() };
        for s in [
            "380.12345678901234567890",
            "0.1234567890123456",
            "12345678.12345678",
        ] {
            assert_eq!(
                from_export_json(&n(s)),
                Err(NumberError::BeyondDouble),
                "{s}"
            );
        }
        for (s, want) in [
            ("380.12", "380.12"),
            ("-0.1", "-0.1"),
            ("500.0", "500"),
            ("123456789012.345", "123456789012.345"),
            ("1e20", "100000000000000000000"),
            ("2.5e-3", "0.0025"),
            // Integers the reader keeps as integers are exact at any size.
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
        ] {
            assert_eq!(from_export_json(&n(s)), Ok(d(want)), "{s}");
        }
        // An integer read as a double follows the same rule.
        assert_eq!(
            from_export_json(&n("123456789012345678901")),
            Err(NumberError::BeyondDouble)
        );
        // Beyond a decimal's 28 places (and read into a double inexactly).
        assert!(from_export_json(&n("1e-30")).is_err());
        assert_eq!(from_export_json(&n("1e30")), Err(NumberError::OutOfRange));
    }
}
