//! Value conversion: one source cell (a CSV string or a JSON value) to the JSON MoEngage should
//! receive, by the mapping's declared type. Writes straight into the request body buffer.
//!
//! MoEngage only recognises datetimes as `YYYY-MM-DDTHH:MM:SSZ` (or `YYYY-MM-DD`); anything else is
//! stored as a plain string, so warehouse timestamps are normalised here.
//!
//! By type: [`text`] (escaping), [`number`], [`time`] (datetimes and dates), [`array`].

mod array;
mod number;
mod text;
mod time;

pub(crate) use array::*;
pub use number::*;
pub use text::*;
pub use time::*;

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
    fn write(
        self,
        out: &mut Vec<u8>,
        warnings: &mut Vec<ValueWarning>,
    ) -> Result<(), ConvertError> {
        if self.iter().flatten().any(|s| s.contains('\0')) {
            return Err(ConvertError(NUL_REASON.into()));
        }
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
        Ok(())
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

    /// The cell as the decoder gave it, in an unambiguous byte form appended to `out`: a tag, then
    /// the content, length-prefixed where it varies. Two cells write the same bytes only if they
    /// hold the same value of the same kind, so hashing a row's mapped cells tells a changed row
    /// from an unchanged one without converting anything (see `sync_state::fingerprint`).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        let bytes = canonical_bytes;
        match self {
            Cell::Null => out.push(0),
            Cell::Str(s) => write_canonical_text(s.as_bytes(), out),
            // serde_json's maps are sorted (no `preserve_order`), so a value writes one way.
            Cell::Json(v) => bytes(2, v.to_string().as_bytes(), out),
            Cell::Number(s) => bytes(3, s.as_bytes(), out),
            Cell::Int(i) => {
                out.push(4);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Cell::Float(f) => {
                out.push(5);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Cell::Bool(b) => out.extend_from_slice(&[6, u8::from(*b)]),
            Cell::Decimal { unscaled, scale } => {
                out.push(7);
                out.extend_from_slice(&unscaled.to_le_bytes());
                out.extend_from_slice(&scale.to_le_bytes());
            }
            Cell::Timestamp(dt) => {
                out.push(8);
                out.extend_from_slice(&dt.timestamp().to_le_bytes());
                out.extend_from_slice(&dt.timestamp_subsec_nanos().to_le_bytes());
            }
            Cell::Date(d) => {
                out.push(9);
                out.extend_from_slice(&d.to_epoch_days().to_le_bytes());
            }
            Cell::StrList(list) => {
                out.push(10);
                out.extend_from_slice(&((list.end - list.start) as u64).to_le_bytes());
                for s in list.iter() {
                    match s {
                        Some(s) => bytes(1, s.as_bytes(), out),
                        None => out.push(0),
                    }
                }
            }
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

/// [`Cell::write_canonical`] of `Cell::Str(s)`, given the bytes of `s`: for decoders that hold
/// the text themselves.
pub fn write_canonical_text(s: &[u8], out: &mut Vec<u8>) {
    canonical_bytes(1, s, out);
}

/// A tag, the length, the bytes.
fn canonical_bytes(tag: u8, b: &[u8], out: &mut Vec<u8>) {
    out.reserve(9 + b.len());
    out.push(tag);
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
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
                list.write(out, warnings)?;
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
            let n = parse_integer(s).ok_or_else(|| {
                ConvertError(format!("{} is not an integer", crate::model::quoted(s)))
            })?;
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        FieldType::Boolean => {
            let b = match cell {
                Cell::Json(Value::Bool(b)) => *b,
                _ => parse_bool(text).ok_or_else(|| {
                    ConvertError(format!(
                        "{} is not a boolean (true/false, 1/0, yes/no, t/f)",
                        crate::model::quoted(text)
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
                    "{} is not a datetime (ISO 8601, YYYY-MM-DD HH:MM:SS[.fff][ ±ZZZZ], epoch seconds or milliseconds)", crate::model::quoted(text)
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
            .ok_or_else(|| {
                ConvertError(format!(
                    "{} is not a date (YYYY-MM-DD)",
                    crate::model::quoted(s)
                ))
            })?;
            write_date(d, out);
        }
        FieldType::Array => match cell {
            Cell::Json(v @ Value::Array(_)) => write_json(v, out, warnings)?,
            _ if trim(text).starts_with('[') => {
                write_json(&Value::Array(parse_array(text)?), out, warnings)?
            }
            // Delimited text: written straight out (no Value per element); same result as parse_array.
            _ => {
                check_nul(text)?;
                write_delimited_array(text, out, warnings)
            }
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

#[cfg(test)]
mod tests;
