//! Value conversion: one source cell (a CSV string or a JSON value) to the JSON MoEngage should
//! receive, by the mapping's declared type. Writes straight into the request body buffer.
//!
//! MoEngage only recognises datetimes as `YYYY-MM-DDTHH:MM:SSZ` (or `YYYY-MM-DD`); anything else is
//! stored as a plain string, so warehouse timestamps are normalised here.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

/// A cell as the decoder hands it over. Typed variants carry what NDJSON and Parquet already know,
/// so no `serde_json::Value` (or text) is built per cell on the hot path.
#[derive(Clone, Copy, Debug)]
pub enum Cell<'a> {
    /// The column is absent from this row (NDJSON key missing) or SQL NULL.
    Null,
    /// Text, as in CSV. Untyped text is sent as a JSON string.
    Str(&'a str),
    /// A value whose type the format already gives (NDJSON, Parquet).
    Json(&'a Value),
    /// An integer (Parquet INT32/INT64).
    Int(i64),
    /// A floating-point number (Parquet FLOAT/DOUBLE).
    Float(f64),
    Bool(bool),
    /// A number as its exact JSON text (NDJSON): sent digit for digit, never through f64.
    Number(&'a str),
    /// A fixed-point decimal (Parquet DECIMAL): `unscaled × 10^-scale`.
    Decimal {
        unscaled: i128,
        scale: i8,
    },
    /// An instant (Parquet TIMESTAMP, INT96), sent as a MoEngage datetime.
    Timestamp(DateTime<Utc>),
    /// A calendar date (Parquet DATE), sent as `YYYY-MM-DD`.
    Date(NaiveDate),
    /// A list of strings (Parquet LIST<STRING>), borrowed from the batch; sent as a JSON array
    /// without a `Value` per element.
    StrList(StrList<'a>),
}

/// Elements `range` of a string array: one LIST<STRING> cell.
#[derive(Clone, Copy, Debug)]
pub struct StrList<'a> {
    strings: &'a arrow_array::StringArray,
    start: usize,
    end: usize,
}

impl<'a> StrList<'a> {
    pub fn new(strings: &'a arrow_array::StringArray, range: std::ops::Range<usize>) -> Self {
        StrList {
            strings,
            start: range.start,
            end: range.end,
        }
    }

    fn iter(&self) -> impl Iterator<Item = Option<&'a str>> + 'a {
        use arrow_array::Array;
        let strings = self.strings;
        (self.start..self.end).map(move |j| (!strings.is_null(j)).then(|| strings.value(j)))
    }

    fn to_value(self) -> Value {
        Value::Array(
            self.iter()
                .map(|s| s.map_or(Value::Null, |s| Value::String(s.to_string())))
                .collect(),
        )
    }

    /// Writes the JSON array; the same bytes and warnings as the `Value` path would give.
    fn write(self, out: &mut Vec<u8>, warnings: &mut Vec<ValueWarning>) {
        let (mut nulls, mut n) = (0, 0);
        out.push(b'[');
        for s in self.iter() {
            if n > 0 {
                out.push(b',');
            }
            match s {
                Some(s) => write_raw_str(s, out),
                None => {
                    out.extend_from_slice(b"null");
                    nulls += 1;
                }
            }
            n += 1;
        }
        out.push(b']');
        if n > MAX_ARRAY_LEN {
            warnings.push(ValueWarning::LongArray(n));
        }
        if nulls > 0 && nulls < n {
            warnings.push(ValueWarning::MixedArray);
        }
    }
}

impl Cell<'_> {
    /// Empty cells and nulls are left out of the payload: a blank warehouse cell must not wipe a
    /// profile attribute in MoEngage.
    pub fn is_empty(&self) -> bool {
        match self {
            Cell::Null => true,
            // Most cells start with a visible character: skip the UTF-8-aware trim for them.
            Cell::Str(s) => {
                s.as_bytes()
                    .first()
                    .is_none_or(|b| b.is_ascii_whitespace() || !b.is_ascii())
                    && s.trim().is_empty()
            }
            Cell::Json(v) => v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()),
            Cell::StrList(_)
            | Cell::Int(_)
            | Cell::Float(_)
            | Cell::Bool(_)
            | Cell::Number(_)
            | Cell::Decimal { .. }
            | Cell::Timestamp(_)
            | Cell::Date(_) => false,
        }
    }

    /// The cell as text, for ids and names (numbers are rendered, objects are not text).
    pub fn as_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            Cell::Null => None,
            Cell::Str(s) | Cell::Number(s) => Some(Cow::Borrowed(s)),
            Cell::Json(Value::String(s)) => Some(Cow::Borrowed(s)),
            Cell::Json(Value::Number(n)) => Some(Cow::Owned(n.to_string())),
            Cell::Json(Value::Bool(b)) => Some(Cow::Owned(b.to_string())),
            Cell::Json(_) | Cell::StrList(_) => None,
            Cell::Int(i) => Some(Cow::Owned(itoa::Buffer::new().format(*i).to_string())),
            Cell::Float(f) => Some(Cow::Owned(format_float(*f))),
            Cell::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Cell::Decimal { unscaled, scale } => {
                let mut out = Vec::new();
                write_decimal(*unscaled, *scale, &mut out);
                Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
            }
            Cell::Timestamp(dt) => Some(Cow::Owned(format_datetime(dt))),
            Cell::Date(d) => Some(Cow::Owned(d.format("%Y-%m-%d").to_string())),
        }
    }

    /// A number this cell holds as a number (not as text), for epoch conversions.
    fn as_epoch_number(&self) -> Option<f64> {
        match self {
            Cell::Json(Value::Number(n)) => n.as_f64(),
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            Cell::Number(s) => s.parse().ok(),
            Cell::Decimal { unscaled, scale } => {
                Some(*unscaled as f64 / 10f64.powi(i32::from(*scale)))
            }
            _ => None,
        }
    }
}

/// The types a `FIELD_MAPPING` entry may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Datetime,
    Date,
    Array,
    Json,
}

impl FieldType {
    pub const ACCEPTED: &'static str =
        "string, number, integer, boolean, datetime, date, array or json";
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "string" | "text" => FieldType::String,
            "number" | "float" | "double" | "decimal" => FieldType::Number,
            "integer" | "int" => FieldType::Integer,
            "boolean" | "bool" => FieldType::Boolean,
            "datetime" | "timestamp" => FieldType::Datetime,
            "date" => FieldType::Date,
            "array" | "list" => FieldType::Array,
            "json" | "object" => FieldType::Json,
            _ => return None,
        })
    }
}

/// Why a value could not be converted; becomes the row's rejection reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

/// Things MoEngage would quietly alter; the value is still sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueWarning {
    /// Strings over 512 characters are truncated by MoEngage.
    LongString(usize),
    /// Arrays over 50 elements are cut by MoEngage.
    LongArray(usize),
    /// MoEngage requires homogeneous arrays.
    MixedArray,
}

/// MoEngage truncates string values beyond this many characters.
pub const MAX_STRING_CHARS: usize = 512;
/// MoEngage keeps at most this many array elements.
pub const MAX_ARRAY_LEN: usize = 50;

/// Writes `cell` converted to `ty` (or as the format typed it when `ty` is `None`) as JSON into
/// `out`. Returns `Ok(false)` when the cell is empty and nothing was written.
pub fn write_value(
    cell: Cell<'_>,
    ty: Option<FieldType>,
    out: &mut Vec<u8>,
    warnings: &mut Vec<ValueWarning>,
) -> Result<bool, ConvertError> {
    if cell.is_empty() {
        return Ok(false);
    }
    write_present(cell, ty, out, warnings)
}

/// [`write_value`] for a cell the caller has already found not [`empty`](Cell::is_empty).
pub fn write_present(
    cell: Cell<'_>,
    ty: Option<FieldType>,
    out: &mut Vec<u8>,
    warnings: &mut Vec<ValueWarning>,
) -> Result<bool, ConvertError> {
    if let Cell::StrList(list) = cell {
        return match ty {
            None | Some(FieldType::Array | FieldType::Json) => {
                list.write(out, warnings);
                Ok(true)
            }
            // Rare: as the equivalent JSON array would be converted.
            Some(_) => write_value(Cell::Json(&list.to_value()), ty, out, warnings),
        };
    }
    match (ty, cell) {
        (None | Some(FieldType::String), Cell::Str(s)) => write_str(s, out, warnings)?,
        (None, Cell::Json(v)) => write_json(v, out, warnings)?,
        (Some(FieldType::String), Cell::Json(v)) => match v {
            Value::String(s) => write_str(s, out, warnings)?,
            other => write_str(&other.to_string(), out, warnings)?,
        },
        (None, typed) => write_untyped(typed, out)?,
        (Some(FieldType::String), typed) => {
            let text = typed.as_text().unwrap_or_default();
            write_str(&text, out, warnings)?
        }
        (Some(t), cell) => write_typed(t, cell, out, warnings)?,
    }
    Ok(true)
}

/// A typed cell (NDJSON, Parquet) as the format typed it.
fn write_untyped(cell: Cell<'_>, out: &mut Vec<u8>) -> Result<(), ConvertError> {
    match cell {
        Cell::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Cell::Float(f) => write_float(f, out)?,
        Cell::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Cell::Number(s) => out.extend_from_slice(s.as_bytes()),
        Cell::Decimal { unscaled, scale } => write_decimal(unscaled, scale, out),
        Cell::Timestamp(dt) => write_datetime(&dt, out),
        Cell::Date(d) => write_date(d, out),
        // Str and Json are handled by the caller; Null is empty.
        Cell::Null | Cell::Str(_) | Cell::Json(_) | Cell::StrList(_) => {}
    }
    Ok(())
}

fn write_typed(
    ty: FieldType,
    cell: Cell<'_>,
    out: &mut Vec<u8>,
    warnings: &mut Vec<ValueWarning>,
) -> Result<(), ConvertError> {
    // Typed cells that already are what the field wants go straight out, without text between.
    match (ty, cell) {
        (
            FieldType::Number,
            Cell::Int(_) | Cell::Float(_) | Cell::Number(_) | Cell::Decimal { .. },
        )
        | (FieldType::Integer, Cell::Int(_)) => {
            return write_untyped(cell, out);
        }
        (FieldType::Json, c) if !matches!(c, Cell::Str(_) | Cell::Json(_)) => {
            return write_untyped(cell, out)
        }
        (FieldType::Boolean, Cell::Bool(_))
        | (FieldType::Datetime, Cell::Timestamp(_))
        | (FieldType::Date, Cell::Date(_)) => {
            return write_untyped(cell, out);
        }
        _ => {}
    }
    let text = cell.as_text();
    let text = text.as_deref().unwrap_or_default();
    match ty {
        FieldType::String => write_str(text, out, warnings)?,
        FieldType::Number => match cell {
            Cell::Json(Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
            _ => write_number(text, out)?,
        },
        FieldType::Integer => {
            let s = trim(text);
            let n =
                parse_integer(s).ok_or_else(|| ConvertError(format!("{s:?} is not an integer")))?;
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        FieldType::Boolean => {
            let b = match cell {
                Cell::Json(Value::Bool(b)) => *b,
                _ => parse_bool(text).ok_or_else(|| {
                    ConvertError(format!(
                        "{text:?} is not a boolean (true/false, 1/0, yes/no, t/f)"
                    ))
                })?,
            };
            out.extend_from_slice(if b { b"true" } else { b"false" });
        }
        FieldType::Datetime => {
            if matches!(cell, Cell::Str(_) | Cell::Json(Value::String(_)))
                && write_utc_text(trim(text), out)
            {
                return Ok(());
            }
            let dt = match cell {
                Cell::Date(d) => d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc()),
                Cell::Json(Value::Number(_)) | Cell::Int(_) | Cell::Float(_) | Cell::Number(_) | Cell::Decimal { .. } => {
                    cell.as_epoch_number().and_then(epoch_to_datetime)
                }
                _ => parse_datetime(text),
            }
            .ok_or_else(|| {
                ConvertError(format!(
                    "{text:?} is not a datetime (ISO 8601, YYYY-MM-DD HH:MM:SS[.fff][ ±ZZZZ], epoch seconds or milliseconds)"
                ))
            })?;
            write_datetime(&dt, out);
        }
        FieldType::Date => {
            let s = trim(text);
            // Already `YYYY-MM-DD` and a real date: sent as it is.
            if !matches!(cell, Cell::Timestamp(_)) && parse_date_fast(s).is_some() {
                write_raw_str(s, out);
                return Ok(());
            }
            let d = match cell {
                Cell::Timestamp(dt) => Some(dt.date_naive()),
                _ => parse_date_fast(s)
                    .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                    .or_else(|| parse_datetime(s).map(|dt| dt.date_naive())),
            }
            .ok_or_else(|| ConvertError(format!("{s:?} is not a date (YYYY-MM-DD)")))?;
            write_date(d, out);
        }
        FieldType::Array => match cell {
            Cell::Json(Value::Array(a)) => {
                check_array(a, warnings);
                serde_json::to_writer(&mut *out, a).map_err(|e| ConvertError(e.to_string()))?;
            }
            _ if trim(text).starts_with('[') => {
                write_json(&Value::Array(parse_array(text)?), out, warnings)?
            }
            // Delimited text: written straight out (no Value per element); same result as parse_array.
            _ => write_delimited_array(text, out, warnings),
        },
        FieldType::Json => {
            let v = match cell {
                Cell::Json(v) => v.clone(),
                _ => serde_json::from_str::<Value>(text)
                    .map_err(|e| ConvertError(format!("not valid JSON: {e}")))?,
            };
            write_json(&v, out, warnings)?;
        }
    }
    Ok(())
}

fn write_str(
    s: &str,
    out: &mut Vec<u8>,
    warnings: &mut Vec<ValueWarning>,
) -> Result<(), ConvertError> {
    let chars = if s.len() > MAX_STRING_CHARS {
        s.chars().count()
    } else {
        s.len()
    };
    if chars > MAX_STRING_CHARS {
        warnings.push(ValueWarning::LongString(chars));
    }
    write_raw_str(s, out);
    Ok(())
}

fn write_json(
    v: &Value,
    out: &mut Vec<u8>,
    warnings: &mut Vec<ValueWarning>,
) -> Result<(), ConvertError> {
    match v {
        Value::String(s) => write_str(s, out, warnings),
        Value::Array(a) => {
            check_array(a, warnings);
            serde_json::to_writer(&mut *out, v).map_err(|e| ConvertError(e.to_string()))
        }
        _ => serde_json::to_writer(&mut *out, v).map_err(|e| ConvertError(e.to_string())),
    }
}

/// Writes a JSON string. Most warehouse cells need no escaping, so they are copied as they are;
/// serde_json's escaper runs only when a byte needs it.
pub fn write_raw_str(s: &str, out: &mut Vec<u8>) {
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a &str into a Vec cannot fail: serde_json only errors on I/O or non-string keys.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Whether any byte needs JSON escaping (control bytes, `"`, `\`). Scans 8 bytes per step with
/// SWAR bit tricks: this check runs on every string of every row and was the largest single cost
/// in the CSV profile (callgrind, see docs/benchmarks.md).
fn needs_escape(bytes: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero ⇔ the matching high bit of `(x - LO) & !x & HI` is set.
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI != 0;
    // A byte below 0x20 ⇔ high bit of `(x - 0x20…) & !x & HI` (valid as long as no byte ≥ 0x80
    // is involved — for those bytes `!x` clears the high bit, so they never report).
    let has_below_0x20 = |x: u64| x.wrapping_sub(LO * 0x20) & !x & HI != 0;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let x = u64::from_le_bytes(word);
        if has_below_0x20(x)
            || has_zero(x ^ (LO * b'"' as u64))
            || has_zero(x ^ (LO * b'\\' as u64))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// `s.trim()`, with a fast path for the common case: after the ASCII whitespace is gone, a
/// visible ASCII byte at both ends means there is nothing Unicode left to trim. (`str::trim`
/// decodes chars from both ends; it was ~4 % of a CSV run.)
pub fn trim(s: &str) -> &str {
    let t = s.trim_ascii();
    match (t.as_bytes().first(), t.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => t,
        (None, _) | (_, None) => t,
        _ => t.trim(),
    }
}

/// JSON has no NaN or infinity; such a float cannot be sent.
fn write_float(f: f64, out: &mut Vec<u8>) -> Result<(), ConvertError> {
    if !f.is_finite() {
        return Err(ConvertError(format!(
            "{f} is not a number MoEngage can store"
        )));
    }
    out.extend_from_slice(format_float(f).as_bytes());
    Ok(())
}

/// Shortest round-trip text; whole floats keep a `.0`, as serde_json writes them.
fn format_float(f: f64) -> String {
    if f.is_finite() {
        ryu::Buffer::new().format_finite(f).to_string()
    } else {
        f.to_string()
    }
}

/// `unscaled × 10^-scale` as exact decimal text (`-1234, 2` → `-12.34`; negative scale appends zeros).
pub fn write_decimal(unscaled: i128, scale: i8, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(unscaled.unsigned_abs());
    if unscaled < 0 {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(text.as_bytes());
        if unscaled != 0 {
            out.extend(std::iter::repeat_n(b'0', usize::from(scale.unsigned_abs())));
        }
        return;
    }
    let scale = usize::from(scale.unsigned_abs());
    let bytes = text.as_bytes();
    if bytes.len() > scale {
        let (int, frac) = bytes.split_at(bytes.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - bytes.len()));
        out.extend_from_slice(bytes);
    }
}

/// `n`'s last `into.len()` decimal digits, zero-padded, into `into`.
fn put_digits(into: &mut [u8], mut n: u32) {
    for slot in into.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

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
fn put_ymd(into: &mut [u8], year: u32, month: u32, day: u32) {
    put_digits(&mut into[0..4], year);
    into[4] = b'-';
    put_digits(&mut into[5..7], month);
    into[7] = b'-';
    put_digits(&mut into[8..10], day);
}

fn write_number(s: &str, out: &mut Vec<u8>) -> Result<(), ConvertError> {
    let t = trim(s);
    // Keep the warehouse's exact digits when they are already a JSON number (no f64 rounding).
    if is_json_number(t) {
        out.extend_from_slice(t.as_bytes());
        return Ok(());
    }
    let f: f64 = t
        .replace(',', "")
        .parse()
        .ok()
        .filter(|f: &f64| f.is_finite())
        .ok_or_else(|| ConvertError(format!("{t:?} is not a number")))?;
    serde_json::to_writer(&mut *out, &f).map_err(|e| ConvertError(e.to_string()))
}

/// Whether `s` is a JSON number serde_json accepts. Plain `-?(0|[1-9][0-9]*)(\.[0-9]+)?` is
/// checked by its grammar — asking serde_json to parse every numeric cell cost ~2 % of a CSV run;
/// exponents (rare, and out-of-range ones like `1e400` must fail) still go to serde_json.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    match b.get(i) {
        None => true,
        Some(b'e' | b'E') => serde_json::from_str::<serde_json::Number>(s).is_ok(),
        Some(_) => false,
    }
}

fn parse_integer(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    // Warehouses often print integers of float columns as `12.0`.
    let f: f64 = s.parse().ok()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

pub fn parse_bool(s: &str) -> Option<bool> {
    // By length: one comparison instead of ten.
    let t = trim(s);
    let is = |word: &str| t.eq_ignore_ascii_case(word);
    match t.len() {
        1 => match t.as_bytes()[0].to_ascii_lowercase() {
            b't' | b'1' | b'y' => Some(true),
            b'f' | b'0' | b'n' => Some(false),
            _ => None,
        },
        2 => is("no").then_some(false),
        3 => is("yes").then_some(true),
        4 => is("true").then_some(true),
        5 => is("false").then_some(false),
        _ => None,
    }
}

/// The separator of a delimited array: `,` if the text holds one, else `;`, else `|` — so "a;b"
/// and "a|b" work as well as "a,b". One pass for all three candidates.
fn array_delimiter(t: &str) -> char {
    let (mut comma, mut semicolon, mut bar) = (false, false, false);
    for b in t.bytes() {
        match b {
            b',' => comma = true,
            b';' => semicolon = true,
            b'|' => bar = true,
            _ => {}
        }
    }
    if comma || !(semicolon || bar) {
        ','
    } else if semicolon {
        ';'
    } else {
        '|'
    }
}

/// `a, b ,c` / `a;b` / `a|b` as a JSON array of strings, written directly.
fn write_delimited_array(text: &str, out: &mut Vec<u8>, warnings: &mut Vec<ValueWarning>) {
    let t = trim(text);
    let delim = array_delimiter(t);
    out.push(b'[');
    let mut n = 0;
    for part in t.split(delim).map(trim).filter(|p| !p.is_empty()) {
        if n > 0 {
            out.push(b',');
        }
        write_raw_str(part, out);
        n += 1;
    }
    out.push(b']');
    if n > MAX_ARRAY_LEN {
        warnings.push(ValueWarning::LongArray(n));
    }
}

fn parse_array(s: &str) -> Result<Vec<Value>, ConvertError> {
    let t = trim(s);
    if t.starts_with('[') {
        return match serde_json::from_str::<Value>(t) {
            Ok(Value::Array(a)) => Ok(a),
            _ => Err(ConvertError(format!(
                "{t:?} starts like a JSON array but is not one"
            ))),
        };
    }
    let delim = array_delimiter(t);
    Ok(t.split(delim)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Value::String(p.to_string()))
        .collect())
}

fn check_array(a: &[Value], warnings: &mut Vec<ValueWarning>) {
    if a.len() > MAX_ARRAY_LEN {
        warnings.push(ValueWarning::LongArray(a.len()));
    }
    let kind = |v: &Value| std::mem::discriminant(v);
    if let Some(first) = a.first() {
        if a.iter().any(|v| kind(v) != kind(first)) {
            warnings.push(ValueWarning::MixedArray);
        }
    }
}

fn epoch_to_datetime(n: f64) -> Option<DateTime<Utc>> {
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
fn parse_date_fast(s: &str) -> Option<NaiveDate> {
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
fn write_utc_text(t: &str, out: &mut Vec<u8>) -> bool {
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
fn parse_datetime_fast(t: &str) -> Option<DateTime<Utc>> {
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
fn is_epoch_number(t: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(cell: Cell<'_>, ty: Option<FieldType>) -> Result<String, ConvertError> {
        let mut out = Vec::new();
        let mut w = Vec::new();
        let wrote = write_value(cell, ty, &mut out, &mut w)?;
        Ok(if wrote {
            String::from_utf8(out).unwrap()
        } else {
            "<omitted>".into()
        })
    }

    #[test]
    fn datetimes_from_warehouses_become_moengage_utc() {
        let table = [
            ("2026-11-01T10:00:00Z", "2026-11-01T10:00:00Z"),
            ("2026-11-01T12:00:00+02:00", "2026-11-01T10:00:00Z"),
            ("2026-11-01T10:00:00.123Z", "2026-11-01T10:00:00Z"),
            ("2026-11-01T10:00:00", "2026-11-01T10:00:00Z"),
            ("2026-11-01 10:00:00", "2026-11-01T10:00:00Z"),
            ("2026-11-01 10:00:00.000 +0000", "2026-11-01T10:00:00Z"),
            ("2026-11-01 15:30:00.250 +0530", "2026-11-01T10:00:00Z"),
            ("2026-11-01 10:00:00 UTC", "2026-11-01T10:00:00Z"),
            ("2026-11-01 05:00:00-05:00", "2026-11-01T10:00:00Z"),
            ("2026-11-01", "2026-11-01T00:00:00Z"),
            ("1793527200", "2026-11-01T10:00:00Z"),
            ("1793527200000", "2026-11-01T10:00:00Z"),
            ("1793527200.5", "2026-11-01T10:00:00Z"),
        ];
        for (input, want) in table {
            assert_eq!(
                conv(Cell::Str(input), Some(FieldType::Datetime)).unwrap(),
                format!("\"{want}\""),
                "{input}"
            );
        }
        let n = serde_json::json!(1793527200000_i64);
        assert_eq!(
            conv(Cell::Json(&n), Some(FieldType::Datetime)).unwrap(),
            "\"2026-11-01T10:00:00Z\""
        );
        for bad in [
            "yesterday",
            "2026-13-01",
            "01/11/2026",
            "2026-11-01T25:00:00Z",
        ] {
            let e = conv(Cell::Str(bad), Some(FieldType::Datetime)).unwrap_err();
            assert!(e.0.contains("not a datetime"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_fast_datetime_parser_agrees_with_chrono() {
        let inputs = [
            "2026-11-01T10:00:00Z",
            "2026-11-01T12:00:00+02:00",
            "2026-11-01T10:00:00.123Z",
            "2026-11-01T10:00:00",
            "2026-11-01 10:00:00",
            "2026-11-01 10:00:00.000 +0000",
            "2026-11-01 15:30:00.250 +0530",
            "2026-11-01 10:00:00 UTC",
            "2026-11-01 05:00:00-05:00",
            "2026-03-01 10:11:12.345678 UTC",
            "2024-02-29 23:59:59.999999999-0130",
        ];
        for input in inputs {
            let fast = parse_datetime_fast(input)
                .unwrap_or_else(|| panic!("fast path should take {input}"));
            let slow = DateTime::parse_from_rfc3339(input)
                .ok()
                .map(|d| d.with_timezone(&Utc))
                .or_else(|| {
                    DateTime::parse_from_str(input, "%Y-%m-%d %H:%M:%S%.f %z")
                        .ok()
                        .map(|d| d.with_timezone(&Utc))
                })
                .or_else(|| {
                    DateTime::parse_from_str(input, "%Y-%m-%d %H:%M:%S%.f%z")
                        .ok()
                        .map(|d| d.with_timezone(&Utc))
                })
                .or_else(|| {
                    DateTime::parse_from_str(input, "%Y-%m-%d %H:%M:%S%.f %:z")
                        .ok()
                        .map(|d| d.with_timezone(&Utc))
                })
                .or_else(|| {
                    NaiveDateTime::parse_from_str(
                        input.trim_end_matches(" UTC"),
                        "%Y-%m-%d %H:%M:%S%.f",
                    )
                    .ok()
                    .map(|d| d.and_utc())
                })
                .or_else(|| {
                    NaiveDateTime::parse_from_str(input, "%Y-%m-%dT%H:%M:%S%.f")
                        .ok()
                        .map(|d| d.and_utc())
                })
                .unwrap_or_else(|| panic!("chrono should parse {input}"));
            assert_eq!(fast, slow, "{input}");
        }
        for other in [
            "2026-11-01",
            "2026-02-30 10:00:00",
            "2026-11-01T25:00:00Z",
            "2026-11-01 10:00:00 CET",
            "2026-11-01T10:00:60Z",
        ] {
            assert_eq!(
                parse_datetime_fast(other),
                None,
                "{other} is for the general parser"
            );
        }
    }

    #[test]
    fn typed_cells_from_parquet_and_ndjson() {
        let ts = DateTime::from_timestamp(1_793_527_200, 5).unwrap();
        let d = NaiveDate::from_ymd_opt(1990, 2, 28).unwrap();
        let table: &[(Cell<'_>, Option<FieldType>, &str)] = &[
            (Cell::Int(-42), None, "-42"),
            (Cell::Int(42), Some(FieldType::String), "\"42\""),
            (Cell::Int(1), Some(FieldType::Boolean), "true"),
            (
                Cell::Int(1_793_527_200),
                Some(FieldType::Datetime),
                "\"2026-11-01T10:00:00Z\"",
            ),
            (Cell::Float(29.99), None, "29.99"),
            (Cell::Float(12.0), Some(FieldType::Integer), "12"),
            (Cell::Bool(false), None, "false"),
            (Cell::Bool(true), Some(FieldType::String), "\"true\""),
            (Cell::Number("12.50"), None, "12.50"),
            (Cell::Number("12.50"), Some(FieldType::Number), "12.50"),
            (
                Cell::Decimal {
                    unscaled: -1234,
                    scale: 2,
                },
                None,
                "-12.34",
            ),
            (
                Cell::Decimal {
                    unscaled: 5,
                    scale: 3,
                },
                None,
                "0.005",
            ),
            (
                Cell::Decimal {
                    unscaled: 7,
                    scale: -2,
                },
                None,
                "700",
            ),
            (
                Cell::Decimal {
                    unscaled: 1000,
                    scale: 2,
                },
                Some(FieldType::Integer),
                "10",
            ),
            (Cell::Timestamp(ts), None, "\"2026-11-01T10:00:00Z\""),
            (Cell::Timestamp(ts), Some(FieldType::Date), "\"2026-11-01\""),
            (
                Cell::Timestamp(ts),
                Some(FieldType::String),
                "\"2026-11-01T10:00:00Z\"",
            ),
            (Cell::Date(d), None, "\"1990-02-28\""),
            (
                Cell::Date(d),
                Some(FieldType::Datetime),
                "\"1990-02-28T00:00:00Z\"",
            ),
        ];
        for (cell, ty, want) in table {
            assert_eq!(conv(*cell, *ty).unwrap(), *want, "{cell:?} as {ty:?}");
        }
        assert!(conv(Cell::Float(f64::NAN), None)
            .unwrap_err()
            .0
            .contains("not a number"));
        assert!(conv(Cell::Bool(true), Some(FieldType::Number)).is_err());
        assert_eq!(Cell::Int(7).as_text().unwrap(), "7");
    }

    #[test]
    fn each_type_converts_or_explains() {
        let ok: &[(&str, FieldType, &str)] = &[
            ("42", FieldType::Number, "42"),
            ("29.99", FieldType::Number, "29.99"),
            (" 1e3 ", FieldType::Number, "1e3"),
            ("+5", FieldType::Number, "5.0"),
            ("12", FieldType::Integer, "12"),
            ("12.0", FieldType::Integer, "12"),
            ("TRUE", FieldType::Boolean, "true"),
            ("no", FieldType::Boolean, "false"),
            ("t", FieldType::Boolean, "true"),
            ("0", FieldType::Boolean, "false"),
            (
                "2026-11-01 10:00:00 +0000",
                FieldType::Date,
                "\"2026-11-01\"",
            ),
            ("1990-02-28", FieldType::Date, "\"1990-02-28\""),
            ("a, b ,c", FieldType::Array, "[\"a\",\"b\",\"c\"]"),
            ("a|b", FieldType::Array, "[\"a\",\"b\"]"),
            ("[1,2,3]", FieldType::Array, "[1,2,3]"),
            ("{\"a\":1}", FieldType::Json, "{\"a\":1}"),
            ("say \"hi\"", FieldType::String, "\"say \\\"hi\\\"\""),
        ];
        for (input, ty, want) in ok {
            assert_eq!(
                conv(Cell::Str(input), Some(*ty)).unwrap(),
                *want,
                "{input} as {ty:?}"
            );
        }
        let bad: &[(&str, FieldType, &str)] = &[
            ("abc", FieldType::Number, "not a number"),
            ("1.5", FieldType::Integer, "not an integer"),
            ("maybe", FieldType::Boolean, "not a boolean"),
            ("11/01/2026", FieldType::Date, "not a date"),
            ("[1,2", FieldType::Array, "JSON array"),
            ("{oops", FieldType::Json, "not valid JSON"),
            ("NaN", FieldType::Number, "not a number"),
        ];
        for (input, ty, reason) in bad {
            let e = conv(Cell::Str(input), Some(*ty)).unwrap_err();
            assert!(e.0.contains(reason), "{input} as {ty:?}: {e}");
        }
    }

    #[test]
    fn the_word_at_a_time_escape_check_agrees_with_the_bytewise_one() {
        let slow = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        let mut samples: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain ascii text".to_vec(),
            "naïve café ünïcode ✓".as_bytes().to_vec(),
        ];
        for special in [b'"', b'\\', b'\n', 0u8, 0x1f, b' ', 0x7f, 0x80, 0xff] {
            for pos in 0..20 {
                let mut v = b"abcdefghijklmnopqrst".to_vec();
                v[pos] = special;
                samples.push(v);
            }
        }
        for s in &samples {
            assert_eq!(needs_escape(s), slow(s), "{s:?}");
        }
    }

    #[test]
    fn datetimes_and_dates_copied_as_text_match_the_chrono_path() {
        let mut samples = Vec::new();
        for date in [
            "2025-10-19",
            "2024-02-29",
            "2023-02-29",
            "2025-13-01",
            "2025-00-10",
            "0000-01-01",
            "9999-12-31",
            "2025-04-31",
        ] {
            for time in [
                "00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "1:00:00",
            ] {
                for sep in ["T", " "] {
                    for tail in [
                        "",
                        ".9",
                        ".911",
                        ".123456789",
                        ".1234567890",
                        ".",
                        "Z",
                        " UTC",
                        ".5Z",
                        "+01:00",
                        " +0530",
                        "z",
                        " utc",
                        "x",
                    ] {
                        samples.push(format!("{date}{sep}{time}{tail}"));
                    }
                }
            }
        }
        let mut copied = 0;
        for s in &samples {
            let mut fast = Vec::new();
            if write_utc_text(s, &mut fast) {
                copied += 1;
                let mut slow = Vec::new();
                write_datetime(&parse_datetime(s).unwrap(), &mut slow);
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(slow).unwrap(),
                    "{s:?}"
                );
            } else {
                assert!(fast.is_empty());
            }
            // Through the public path the result is the same whichever branch takes it.
            let via = conv(Cell::Str(s), Some(FieldType::Datetime));
            let want = parse_datetime(s).map(|dt| {
                let mut o = Vec::new();
                write_datetime(&dt, &mut o);
                String::from_utf8(o).unwrap()
            });
            assert_eq!(via.ok(), want, "{s:?}");
        }
        assert!(copied > 50, "the copy path is exercised: {copied}");
        for d in [
            "2024-02-29",
            "2023-02-29",
            "2025-04-31",
            "0000-01-01",
            "2025-1-01",
        ] {
            let via = conv(Cell::Str(d), Some(FieldType::Date)).ok();
            let want = parse_date_fast(d)
                .or_else(|| parse_datetime(d).map(|dt| dt.date_naive()))
                .map(|nd| {
                    let mut o = Vec::new();
                    write_date(nd, &mut o);
                    String::from_utf8(o).unwrap()
                });
            assert_eq!(via, want, "{d:?}");
        }
    }

    #[test]
    fn booleans_in_every_spelling_warehouses_use() {
        let old = |s: &str| {
            let t = s.trim();
            let is = |words: [&str; 5]| words.iter().any(|w| w.eq_ignore_ascii_case(t));
            if is(["true", "t", "1", "yes", "y"]) {
                Some(true)
            } else if is(["false", "f", "0", "no", "n"]) {
                Some(false)
            } else {
                None
            }
        };
        for s in [
            "true",
            "TRUE",
            " True ",
            "t",
            "T",
            "1",
            "yes",
            "YES",
            "y",
            "false",
            "False",
            "f",
            "0",
            "no",
            "No",
            "n",
            "",
            " ",
            "truee",
            "tru",
            "2",
            "yes!",
            "ñ",
            "verdadero",
            "\u{a0}true",
        ] {
            assert_eq!(parse_bool(s), old(s), "{s:?}");
        }
    }

    #[test]
    fn the_fast_trim_agrees_with_str_trim() {
        let pads = [
            "",
            " ",
            "\t",
            "\n\r",
            "\u{a0}",
            "\u{3000}",
            "\u{b}",
            " \u{2003} ",
            "\u{1c}",
        ];
        let cores = [
            "",
            "x",
            "a b",
            "é",
            "東京",
            "\u{a0}x\u{a0}",
            "x\u{1f}",
            "1.5",
        ];
        for l in pads {
            for c in cores {
                for r in pads {
                    let s = format!("{l}{c}{r}");
                    assert_eq!(trim(&s), s.trim(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn the_number_grammar_check_agrees_with_serde_json() {
        // Every string up to 5 characters over the alphabet numbers are made of.
        let alphabet = ['0', '1', '9', '-', '+', '.', 'e', 'E', 'x'];
        let mut strings = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..5 {
            let next: Vec<String> = frontier
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(next.iter().cloned());
            frontier = next;
        }
        strings.extend(
            [
                "1e400",
                "-0.5e-3",
                "12345678901234567890123",
                "007",
                "1.",
                ".5",
            ]
            .map(String::from),
        );
        for s in &strings {
            let serde = serde_json::from_str::<serde_json::Number>(s).is_ok();
            assert_eq!(is_json_number(s), serde, "{s:?}");
        }
    }

    #[test]
    fn empty_cells_and_nulls_are_omitted() {
        assert_eq!(conv(Cell::Str(""), None).unwrap(), "<omitted>");
        assert_eq!(
            conv(Cell::Str("  "), Some(FieldType::Number)).unwrap(),
            "<omitted>"
        );
        assert_eq!(
            conv(Cell::Null, Some(FieldType::Boolean)).unwrap(),
            "<omitted>"
        );
        assert_eq!(conv(Cell::Json(&Value::Null), None).unwrap(), "<omitted>");
    }

    #[test]
    fn untyped_json_keeps_its_type() {
        let v = serde_json::json!({"n": 1.5, "b": true, "a": ["x"]});
        assert_eq!(conv(Cell::Json(&v["n"]), None).unwrap(), "1.5");
        assert_eq!(conv(Cell::Json(&v["b"]), None).unwrap(), "true");
        assert_eq!(conv(Cell::Json(&v["a"]), None).unwrap(), "[\"x\"]");
        assert_eq!(
            conv(Cell::Json(&v["n"]), Some(FieldType::String)).unwrap(),
            "\"1.5\""
        );
    }

    #[test]
    fn warnings_for_what_moengage_would_alter() {
        let mut w = Vec::new();
        let long = "x".repeat(600);
        write_value(Cell::Str(&long), None, &mut Vec::new(), &mut w).unwrap();
        assert_eq!(w, vec![ValueWarning::LongString(600)]);
        let mut w = Vec::new();
        let many = (0..60).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        write_value(
            Cell::Str(&many),
            Some(FieldType::Array),
            &mut Vec::new(),
            &mut w,
        )
        .unwrap();
        assert_eq!(w, vec![ValueWarning::LongArray(60)]);
        let mut w = Vec::new();
        write_value(
            Cell::Str("[1,\"a\"]"),
            Some(FieldType::Array),
            &mut Vec::new(),
            &mut w,
        )
        .unwrap();
        assert_eq!(w, vec![ValueWarning::MixedArray]);
    }
}
