//! Numbers: JSON number grammar, integers, floats and decimals written without going through `fmt`.

#[allow(unused_imports)]
use super::*;

/// JSON has no NaN or infinity; such a float cannot be sent.
pub(crate) fn write_float(f: f64, out: &mut Vec<u8>) -> Result<(), ConvertError> {
    if !f.is_finite() {
        return Err(ConvertError(format!(
            "{f} is not a number MoEngage can store"
        )));
    }
    out.extend_from_slice(format_float(f).as_bytes());
    Ok(())
}

/// Shortest round-trip text; whole floats keep a `.0`, as serde_json writes them.
pub(crate) fn format_float(f: f64) -> String {
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
pub(crate) fn put_digits(into: &mut [u8], mut n: u32) {
    for slot in into.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

pub(crate) fn write_number(s: &str, out: &mut Vec<u8>) -> Result<(), ConvertError> {
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
        .ok_or_else(|| ConvertError(format!("{} is not a number", crate::model::quoted(t))))?;
    serde_json::to_writer(&mut *out, &f).map_err(|e| ConvertError(e.to_string()))
}

/// Whether `s` is a JSON number serde_json accepts. Plain `-?(0|[1-9][0-9]*)(\.[0-9]+)?` is
/// checked by its grammar — asking serde_json to parse every numeric cell cost ~2 % of a CSV run;
/// exponents (rare, and out-of-range ones like `1e400` must fail) still go to serde_json.
pub(crate) fn is_json_number(s: &str) -> bool {
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
        // Beyond ~300 digits the value may be out of f64's range, which MoEngage (and serde_json)
        // cannot read: those go to serde_json like exponents (found by `make fuzz`, target cells).
        None if b.len() > 300 => serde_json::from_str::<serde_json::Number>(s).is_ok(),
        None => true,
        Some(b'e' | b'E') => serde_json::from_str::<serde_json::Number>(s).is_ok(),
        Some(_) => false,
    }
}

pub(crate) fn parse_integer(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    // Warehouses often print integers of float columns as `12.0`.
    let f: f64 = s.parse().ok()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}
