//! Money as integer minor units of an asset with a fixed scale (USD 2, BTC 8, …). Decimal text
//! exists only at the edges: `parse_amount` turns it into minor units exactly, `format_amount`
//! turns minor units back; nothing in between ever uses floating point.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a decimal number like 12.50")]
    NotANumber,
    #[error("has more than {0} decimal places")]
    TooManyDecimals(u8),
    #[error("is too large")]
    Overflow,
    #[error("must be greater than zero")]
    NotPositive,
}

/// 10^scale for the scales assets use (0..=18).
pub fn unit(scale: u8) -> Option<i64> {
    10i64.checked_pow(u32::from(scale))
}

/// Parses `[-]digits[.digits]` into minor units at `scale`, exactly. Rejects exponents, spaces,
/// signs other than a leading `-`, and more decimals than the scale allows (never rounds).
pub fn parse_amount(text: &str, scale: u8) -> Result<i64, AmountError> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() && frac_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
        || (body.contains('.') && (int_part.is_empty() || frac_part.is_empty()))
    {
        return Err(AmountError::NotANumber);
    }
    // Trailing zeros beyond the scale carry no value ("1.500" is 1.50 for USD).
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > usize::from(scale) {
        return Err(AmountError::TooManyDecimals(scale));
    }
    let unit = unit(scale).ok_or(AmountError::Overflow)?;
    let int_digits = int_part.trim_start_matches('0');
    if int_digits.len() > 19 {
        return Err(AmountError::Overflow);
    }
    let int_value: i64 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().map_err(|_| AmountError::Overflow)?
    };
    let mut frac_value: i64 = 0;
    for (i, b) in frac_trimmed.bytes().enumerate() {
        let place = unit / 10i64.pow(u32::try_from(i + 1).map_err(|_| AmountError::Overflow)?);
        frac_value += i64::from(b - b'0') * place;
    }
    let minor = int_value
        .checked_mul(unit)
        .and_then(|v| v.checked_add(frac_value))
        .ok_or(AmountError::Overflow)?;
    Ok(if neg { -minor } else { minor })
}

/// Like `parse_amount`, for amounts that must be strictly positive.
pub fn parse_positive_amount(text: &str, scale: u8) -> Result<i64, AmountError> {
    let v = parse_amount(text, scale)?;
    if v <= 0 {
        Err(AmountError::NotPositive)
    } else {
        Ok(v)
    }
}

/// Minor units as a decimal string with exactly `scale` places: `1250, 2` → `"12.50"`.
pub fn format_amount(minor: i64, scale: u8) -> String {
    let mut out = String::with_capacity(24);
    write_amount(&mut out, minor, scale);
    out
}

/// `format_amount` into an existing buffer, for writers of many rows.
pub fn write_amount(out: &mut String, minor: i64, scale: u8) {
    use std::fmt::Write;
    let unit = u128::from(unit(scale).unwrap_or(1).unsigned_abs());
    let abs = u128::from(minor.unsigned_abs());
    if minor < 0 {
        out.push('-');
    }
    // Writing into a String cannot fail.
    let _ = if scale == 0 {
        write!(out, "{abs}")
    } else {
        write!(
            out,
            "{}.{:0width$}",
            abs / unit,
            abs % unit,
            width = usize::from(scale)
        )
    };
}

/// Money settings are decimal text, but `ETX__TRANSFERS__MAX_USD=500` arrives as a number:
/// integers are taken as written; fractions must be quoted so no float rounding sneaks in.
pub fn decimal_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Input {
        Text(String),
        Signed(i64),
        Unsigned(u64),
        Float(#[allow(dead_code)] f64),
    }
    match <Input as serde::Deserialize>::deserialize(d)? {
        Input::Text(s) => Ok(s),
        Input::Signed(n) => Ok(n.to_string()),
        Input::Unsigned(n) => Ok(n.to_string()),
        Input::Float(_) => Err(serde::de::Error::custom(
            "write amounts with decimals as a quoted string, e.g. \"0.50\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_amount("12.50", 2), Ok(1250));
        assert_eq!(parse_amount("12.5", 2), Ok(1250));
        assert_eq!(parse_amount("12", 2), Ok(1200));
        assert_eq!(parse_amount("0.00000001", 8), Ok(1));
        assert_eq!(parse_amount("1.500", 2), Ok(150));
        assert_eq!(parse_amount("-3.25", 2), Ok(-325));
        assert_eq!(parse_amount("007", 0), Ok(7));
        assert_eq!(parse_amount("0.1", 2), Ok(10));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "", "-", ".", "1.", ".5", "1e3", "1,5", " 1", "1 ", "+1", "--1", "0x10", "NaN", "inf",
            "1.2.3", "１",
        ] {
            assert_eq!(
                parse_amount(bad, 2),
                Err(AmountError::NotANumber),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_amount("1.234", 2),
            Err(AmountError::TooManyDecimals(2))
        );
        assert_eq!(
            parse_amount("99999999999999999999", 2),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            parse_amount("92233720368547758.08", 2),
            Err(AmountError::Overflow)
        );
        assert_eq!(parse_amount("92233720368547758.07", 2), Ok(i64::MAX));
        assert_eq!(
            parse_positive_amount("0.00", 2),
            Err(AmountError::NotPositive)
        );
        assert_eq!(
            parse_positive_amount("-1", 2),
            Err(AmountError::NotPositive)
        );
    }

    #[test]
    fn formats_with_fixed_places() {
        assert_eq!(format_amount(1250, 2), "12.50");
        assert_eq!(format_amount(-1, 2), "-0.01");
        assert_eq!(format_amount(1, 8), "0.00000001");
        assert_eq!(format_amount(5, 0), "5");
        assert_eq!(format_amount(i64::MIN, 2), "-92233720368547758.08");
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(minor in any::<i64>().prop_filter("MIN has no positive twin", |v| *v != i64::MIN), scale in 0u8..=8) {
            prop_assert_eq!(parse_amount(&format_amount(minor, scale), scale), Ok(minor));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,30}", scale in 0u8..=18) {
            let _ = parse_amount(&s, scale);
        }

        #[test]
        fn parsing_digits_matches_integer_arithmetic(int in 0i64..1_000_000_000, frac in 0i64..100) {
            let text = format!("{int}.{frac:02}");
            prop_assert_eq!(parse_amount(&text, 2), Ok(int * 100 + frac));
        }
    }
}
