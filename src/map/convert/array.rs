//! Arrays: JSON arrays and delimited lists, checked against MoEngage's array rules.

#[allow(unused_imports)]
use super::*;

/// The separator of a delimited array: `,` if the text holds one, else `;`, else `|` — so "a;b"
/// and "a|b" work as well as "a,b". One pass for all three candidates.
pub(crate) fn array_delimiter(t: &str) -> char {
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
pub(crate) fn write_delimited_array(
    text: &str,
    out: &mut Vec<u8>,
    warnings: &mut Vec<ValueWarning>,
) {
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

pub(crate) fn parse_array(s: &str) -> Result<Vec<Value>, ConvertError> {
    let t = trim(s);
    if t.starts_with('[') {
        return match serde_json::from_str::<Value>(t) {
            Ok(Value::Array(a)) => Ok(a),
            _ => Err(ConvertError(format!(
                "{} starts like a JSON array but is not one",
                crate::model::quoted(t)
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

pub(crate) fn check_array(a: &[Value], warnings: &mut Vec<ValueWarning>) {
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
