//! Timestamps as the API writes them.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn rfc3339(micros: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339(&mut out, micros);
    out
}

/// `2026-11-23T12:34:56.789Z` (UTC, milliseconds) into a buffer, without chrono's general
/// formatter: exports write a million of these.
pub fn write_rfc3339(out: &mut String, micros: i64) {
    use chrono::{Datelike, Timelike};
    let t = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
    let Ok(year) = u32::try_from(t.year()) else {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true));
        return;
    };
    if year > 9999 {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true));
        return;
    }
    push_num(out, year, 4);
    out.push('-');
    push_num(out, t.month(), 2);
    out.push('-');
    push_num(out, t.day(), 2);
    out.push('T');
    push_num(out, t.hour(), 2);
    out.push(':');
    push_num(out, t.minute(), 2);
    out.push(':');
    push_num(out, t.second(), 2);
    out.push('.');
    push_num(out, t.nanosecond() / 1_000_000 % 1000, 3);
    out.push('Z');
}

/// `v` zero-padded to `width` (at most 4) digits.
fn push_num(out: &mut String, v: u32, width: usize) {
    let mut buf = [b'0'; 4];
    let mut v = v;
    for b in buf[..width].iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &b in &buf[..width] {
        out.push(char::from(b));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_chrono() {
        use chrono::{DateTime, SecondsFormat, Utc};
        for micros in [
            0,
            1_700_000_000_123_456,
            1_600_000_000_000_999,
            253_402_300_799_999_999,
        ] {
            let expected = DateTime::<Utc>::from_timestamp_micros(micros)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(super::rfc3339(micros), expected);
        }
    }
}
