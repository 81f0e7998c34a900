//! Strings: JSON escaping straight into the body, and the fast trim.

#[allow(unused_imports)]
use super::*;

pub(crate) fn write_str(
    s: &str,
    out: &mut Vec<u8>,
    warnings: &mut Vec<ValueWarning>,
) -> Result<(), ConvertError> {
    check_nul(s)?;
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

pub(crate) fn write_json(
    v: &Value,
    out: &mut Vec<u8>,
    warnings: &mut Vec<ValueWarning>,
) -> Result<(), ConvertError> {
    match v {
        Value::String(s) => write_str(s, out, warnings),
        Value::Array(a) => {
            check_array(a, warnings);
            write_nested(v, out)
        }
        _ => write_nested(v, out),
    }
}

/// A nested value, refused like a flat string when one of its strings (or keys) holds a NUL.
fn write_nested(v: &Value, out: &mut Vec<u8>) -> Result<(), ConvertError> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(v) {
        return Err(ConvertError(NUL_REASON.into()));
    }
    serde_json::to_writer(&mut *out, v).map_err(|e| ConvertError(e.to_string()))
}

/// Why a value with a NUL is refused, wherever it comes from (a raw byte in CSV, `\u0000` in
/// JSON, a Parquet string): one rule for every format.
pub const NUL_REASON: &str =
    "holds a NUL character (\\0): warehouses and MoEngage treat it as the \
     end of the text, so the value would be cut silently; remove it in the export (e.g. \
     REPLACE(col, CHR(0), ''))";

/// Refuses a string holding a NUL (see [`NUL_REASON`]).
pub fn check_nul(s: &str) -> Result<(), ConvertError> {
    match memchr::memchr(0, s.as_bytes()) {
        None => Ok(()),
        Some(_) => Err(ConvertError(NUL_REASON.into())),
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
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
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
