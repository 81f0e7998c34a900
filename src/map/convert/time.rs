//! Datetimes and dates: warehouse timestamps (ISO 8601, epoch seconds or milliseconds) to the
//! `YYYY-MM-DDTHH:MM:SSZ` / `YYYY-MM-DD` forms MoEngage recognises, with fast paths for canonical text.

#[allow(unused_imports)]
use super::*;

/// Writes `"YYYY-MM-DDTHH:MM:SSZ"` (quoted) without going through `fmt`, assembled on the stack
/// and appended at once: timestamps are on the hot path of every format.
pub fn write_datetime(dt: &DateTime<Utc>, out: &mut Vec<u8>) {
    use chrono::{Datelike, Timelike};
    let y = dt.year();
    if !(0..=9999).contains(&y) {
        write_raw_str(&format_datetime(dt), out);
        return;
    }
    let mut b = *b"\"0000-00-00T00:00:00Z\"";
    put_ymd(&mut b[1..11], y as u32, dt.month(), dt.day());
    put_digits(&mut b[12..14], dt.hour());
    put_digits(&mut b[15..17], dt.minute());
    put_digits(&mut b[18..20], dt.second());
    out.extend_from_slice(&b);
}

/// Writes `"YYYY-MM-DD"` (quoted).
pub fn write_date(d: NaiveDate, out: &mut Vec<u8>) {
    use chrono::Datelike;
    let y = d.year();
    if !(0..=9999).contains(&y) {
        write_raw_str(&d.format("%Y-%m-%d").to_string(), out);
        return;
    }
    let mut b = *b"\"0000-00-00\"";
    put_ymd(&mut b[1..11], y as u32, d.month(), d.day());
    out.extend_from_slice(&b);
}

/// `YYYY-MM-DD` into a 10-byte slot; the year is 0..=9999 (callers check).
pub(crate) fn put_ymd(into: &mut [u8], year: u32, month: u32, day: u32) {
    put_digits(&mut into[0..4], year);
    into[4] = b'-';
    put_digits(&mut into[5..7], month);
    into[7] = b'-';
    put_digits(&mut into[8..10], day);
}

pub(crate) fn epoch_to_datetime(n: f64) -> Option<DateTime<Utc>> {
    // Epoch milliseconds are 13 digits for any date after 2001; seconds stay below 1e11 until 5138.
    let secs = if n.abs() >= 1.0e11 { n / 1000.0 } else { n };
    let whole = secs.trunc() as i64;
    let nanos = ((secs - secs.trunc()) * 1e9).round() as u32;
    Utc.timestamp_opt(whole, nanos.min(999_999_999)).single()
}

/// Parses what warehouses write: ISO 8601 with or without offset, `YYYY-MM-DD HH:MM:SS[.fff][ ±ZZZZ]`,
/// a bare date, and epoch seconds or milliseconds. Times without an offset are taken as UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let t = trim(s);
    if t.is_empty() {
        return None;
    }
    if is_epoch_number(t) {
        return t.parse::<f64>().ok().and_then(epoch_to_datetime);
    }
    if let Some(dt) = parse_datetime_fast(t) {
        return Some(dt);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    let t = t.strip_suffix(" UTC").unwrap_or(t).trim();
    const WITH_OFFSET: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f %:z",
    ];
    for f in WITH_OFFSET {
        if let Ok(dt) = DateTime::parse_from_str(t, f) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    const NAIVE: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    for f in NAIVE {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, f) {
            return Some(dt.and_utc());
        }
    }
    let t = t.strip_suffix('Z').unwrap_or(t);
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

/// `YYYY-MM-DD` exactly, by hand.
pub(crate) fn parse_date_fast(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// A UTC datetime in the shape warehouses print — `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}]` then nothing,
/// `Z` or ` UTC` — is written by copying its digits once they are checked to name a real instant:
/// the same bytes as [`parse_datetime`] + [`write_datetime`] (which drop the fraction), without
/// the round trip through chrono. Returns `false`, writing nothing, for any other shape.
pub(crate) fn write_utc_text(t: &str, out: &mut Vec<u8>) -> bool {
    let b = t.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
        || ![0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
    {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return false;
        }
        rest = &rest[1 + digits..];
    }
    if !matches!(rest, b"" | b"Z" | b" UTC") {
        return false;
    }
    let two = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    if two(11) > 23 || two(14) > 59 || two(17) > 59 {
        return false;
    }
    if NaiveDate::from_ymd_opt((two(0) * 100 + two(2)) as i32, two(5), two(8)).is_none() {
        return false;
    }
    let mut o = *b"\"0000-00-00T00:00:00Z\"";
    o[1..11].copy_from_slice(&b[0..10]);
    o[12..20].copy_from_slice(&b[11..19]);
    out.extend_from_slice(&o);
    true
}

/// The shapes warehouses write most, parsed by hand (chrono's format-string parsers cost about a
/// microsecond a try): `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}]` then nothing, `Z`, ` UTC`, or an offset
/// `[ ]±HH[:]MM`. Anything else (or anything out of range) is left to the general parser.
pub(crate) fn parse_datetime_fast(t: &str) -> Option<DateTime<Utc>> {
    let b = t.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let digits = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(start..start + digits)? * 10u32.pow((9 - digits) as u32);
        i = start + digits;
    }
    let rest = &t[i..];
    let offset_secs: i64 = match rest {
        "" | "Z" | " UTC" => 0,
        _ => {
            let r = rest.strip_prefix(' ').unwrap_or(rest).as_bytes();
            let sign = match r.first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let hhmm: Vec<u8> = match r.len() {
                5 => r[1..5].to_vec(),
                6 if r[3] == b':' => [&r[1..3], &r[4..6]].concat(),
                _ => return None,
            };
            if !hhmm.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(hhmm[0] - b'0') * 10 + i64::from(hhmm[1] - b'0');
            let m = i64::from(hhmm[2] - b'0') * 10 + i64::from(hhmm[3] - b'0');
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let utc = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)?
        .and_utc();
    if offset_secs == 0 {
        return Some(utc);
    }
    Some(utc - chrono::Duration::seconds(offset_secs))
}

/// `1793527200`, `1793527200000`, `1793527200.5`, `-86400`: digits with at most one dot.
pub(crate) fn is_epoch_number(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// MoEngage's one recognised datetime shape.
pub fn format_datetime(dt: &DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
