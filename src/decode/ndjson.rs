//! NDJSON / JSON Lines (BigQuery `EXPORT DATA … format=JSON`, Snowflake JSON unloads): one JSON
//! object per line.
//!
//! The header is the keys of the first object, in its order, followed by keys first seen in the
//! next objects of a look-ahead window (the first [`LOOKAHEAD_ROWS`] rows or
//! [`LOOKAHEAD_BYTES`]), in order of appearance — exporters leave out null fields, so the first
//! object alone may lack a column. Keys first seen after the window cannot be mapped (the mapping
//! is bound to the header before rows flow); they are ignored, with one log line per object.
//!
//! Values are parsed in place: strings without escapes are borrowed from the line, numbers keep
//! their exact text, and only nested arrays/objects become a `serde_json::Value`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::BufRead;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{BadRecord, DecodeError, InputLimits, RowRef, RowSource};
use crate::map::convert::Cell;
use crate::map::Row;

/// Rows read ahead to find the header.
pub const LOOKAHEAD_ROWS: usize = 1000;
/// Bytes read ahead to find the header, whichever limit comes first.
pub const LOOKAHEAD_BYTES: usize = 4 << 20;

/// Where a column's value of the current row is.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Missing,
    Null,
    Bool(bool),
    /// A string without escapes: bytes `start..end` of the line.
    Str(usize, usize),
    /// A string that needed unescaping: `owned[column]`.
    Escaped,
    /// A number's exact text: bytes `start..end` of the line.
    Number(usize, usize),
    /// An array or object: `nested[column]`.
    Nested,
}

/// NDJSON rows with a header, read one line at a time into a reused buffer.
pub struct NdjsonRows<R: BufRead> {
    reader: R,
    header: Vec<String>,
    index: HashMap<String, usize>,
    /// Lines read while looking for the header, replayed before reading on: (line number, bytes,
    /// too long).
    pending: VecDeque<(u64, Vec<u8>, bool)>,
    line: Vec<u8>,
    /// Physical line number of `line` (1-based).
    line_no: u64,
    /// 1-based data row number (blank lines are not rows).
    row: u64,
    slots: Vec<Slot>,
    owned: Vec<String>,
    nested: Vec<Value>,
    /// A key outside the header was seen (logged once).
    unknown_key_logged: bool,
    /// `MAX_ROW_MB`: a longer line is rejected, and skipped without being held in memory.
    max_line_bytes: usize,
}

impl<R: BufRead> NdjsonRows<R> {
    /// Reads ahead to build the header.
    pub fn new(mut reader: R, limits: InputLimits) -> Result<Self, DecodeError> {
        let max_line_bytes = limits.max_row_bytes;
        let mut pending = VecDeque::new();
        let (mut header, mut seen) = (
            Vec::<String>::new(),
            std::collections::HashSet::<String>::new(),
        );
        let (mut rows, mut bytes, mut line_no, mut any_line) = (0usize, 0usize, 0u64, false);
        while rows < LOOKAHEAD_ROWS && bytes < LOOKAHEAD_BYTES {
            let mut line = Vec::new();
            let too_long = match read_line(&mut reader, &mut line, max_line_bytes).map_err(|e| {
                DecodeError::Read {
                    row: 0,
                    reason: e.to_string(),
                }
            })? {
                None => break,
                Some(t) => t,
            };
            line_no += 1;
            any_line = true;
            bytes += line.len();
            let text = trim(&line, line_no == 1);
            if !text.is_empty() {
                rows += 1;
                if text.first() == Some(&b'{') {
                    let mut de = serde_json::Deserializer::from_slice(text);
                    let keys = KeysUpTo(limits.max_columns).deserialize(&mut de);
                    if matches!(&keys, Err(e) if e.to_string().contains(TOO_MANY_KEYS)) {
                        return Err(DecodeError::Header(format!(
                            "line {line_no} holds over {} keys (MAX_COLUMNS); raise MAX_COLUMNS \
                             if the export really is that wide",
                            limits.max_columns
                        )));
                    }
                    if let Ok(keys) = keys {
                        for k in keys {
                            if seen.insert(k.clone()) {
                                header.push(k);
                            }
                        }
                        if header.len() > limits.max_columns {
                            return Err(DecodeError::Header(format!(
                                "the first {rows} lines hold over {} distinct keys (MAX_COLUMNS); \
                                 raise MAX_COLUMNS if the export really is that wide",
                                limits.max_columns
                            )));
                        }
                    }
                }
            }
            pending.push_back((line_no, line, too_long));
        }
        if !any_line || rows == 0 {
            return Err(DecodeError::Empty);
        }
        if header.is_empty() {
            return Err(DecodeError::Unsupported(format!(
                "no JSON object with keys in the first {rows} rows: this is not NDJSON (one JSON object per line)"
            )));
        }
        let index = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.clone(), i))
            .collect();
        let width = header.len();
        Ok(NdjsonRows {
            reader,
            header,
            index,
            pending,
            line: Vec::with_capacity(4096),
            line_no: 0,
            row: 0,
            slots: vec![Slot::Missing; width],
            owned: vec![String::new(); width],
            nested: vec![Value::Null; width],
            unknown_key_logged: false,
            max_line_bytes,
        })
    }

    /// The next non-blank line into `self.line`; `Ok(None)` at the end, `Ok(Some(true))` when the
    /// line was too long to keep.
    fn next_line(&mut self) -> Result<Option<bool>, DecodeError> {
        loop {
            let too_long = if let Some((no, line, too_long)) = self.pending.pop_front() {
                self.line = line;
                self.line_no = no;
                too_long
            } else {
                match read_line(&mut self.reader, &mut self.line, self.max_line_bytes) {
                    Ok(None) => return Ok(None),
                    Ok(Some(t)) => {
                        self.line_no += 1;
                        t
                    }
                    Err(e) => {
                        return Err(DecodeError::Read {
                            row: self.row,
                            reason: e.to_string(),
                        })
                    }
                }
            };
            if too_long || !trim(&self.line, self.line_no == 1).is_empty() {
                return Ok(Some(too_long));
            }
        }
    }
}

impl<R: BufRead + Send> RowSource for NdjsonRows<R> {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Result<Option<Result<RowRef<'_>, BadRecord>>, DecodeError> {
        let Some(too_long) = self.next_line()? else {
            return Ok(None);
        };
        self.row += 1;
        let bad = |this: &Self, reason: String| {
            Ok(Some(Err(BadRecord {
                row: this.row,
                line: Some(this.line_no),
                reason,
            })))
        };
        if too_long {
            return bad(
                self,
                format!(
                    "the line is over {} MiB (MAX_ROW_MB); not read",
                    self.max_line_bytes >> 20
                ),
            );
        }
        let text = trim(&self.line, self.line_no == 1);
        let offset = text.as_ptr() as usize - self.line.as_ptr() as usize;
        let text = &self.line[offset..offset + text.len()];
        if text.first() != Some(&b'{') {
            let what = match text.first() {
                Some(b'[') => "a JSON array",
                Some(b'"') => "a JSON string",
                _ => "not a JSON object",
            };
            return bad(
                self,
                format!("the line is {what}; every line must be one JSON object"),
            );
        }
        self.slots.fill(Slot::Missing);
        let mut unknown = None;
        let seed = RowSeed {
            header: &self.header,
            index: &self.index,
            slots: &mut self.slots,
            owned: &mut self.owned,
            nested: &mut self.nested,
            base: self.line.as_ptr() as usize,
            unknown: &mut unknown,
        };
        let mut de = serde_json::Deserializer::from_slice(text);
        if let Err(e) = seed.deserialize(&mut de).and_then(|()| de.end()) {
            return bad(
                self,
                format!(
                    "not valid JSON at character {}: {}",
                    e.column(),
                    json_reason(&e)
                ),
            );
        }
        if let Some(key) = unknown {
            if !self.unknown_key_logged {
                self.unknown_key_logged = true;
                tracing::warn!(row = self.row, line = self.line_no, key = %key,
                    "a key first seen after the header look-ahead is ignored (the mapping is bound to the header); further such keys are not logged");
            }
        }
        Ok(Some(Ok(RowRef {
            row: self,
            number: self.row,
            line: Some(self.line_no),
        })))
    }
}

impl<R: BufRead> Row for NdjsonRows<R> {
    fn cell(&self, index: usize) -> Result<Cell<'_>, String> {
        let text = |a: usize, b: usize| {
            std::str::from_utf8(&self.line[a..b])
                .map_err(|_| format!("column {:?} is not valid UTF-8", self.header[index]))
        };
        Ok(
            match self.slots.get(index).copied().unwrap_or(Slot::Missing) {
                Slot::Missing | Slot::Null => Cell::Null,
                Slot::Bool(b) => Cell::Bool(b),
                Slot::Str(a, b) => Cell::Str(text(a, b)?),
                Slot::Number(a, b) => Cell::Number(text(a, b)?),
                Slot::Escaped => Cell::Str(&self.owned[index]),
                Slot::Nested => Cell::Json(&self.nested[index]),
            },
        )
    }
}

/// The line without surrounding whitespace (and without a UTF-8 BOM on the first line).
fn trim(line: &[u8], first: bool) -> &[u8] {
    let line = if first {
        line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
    } else {
        line
    };
    line.trim_ascii()
}

/// serde_json's message without its "at line 1 column N" suffix (the line is ours to report).
fn json_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Reads one line (without its `\n`) into `buf`. `Ok(None)` at the end of input; `Ok(Some(true))`
/// when the line exceeded `max` bytes — it is consumed but not kept.
pub(crate) fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let (mut any, mut too_long) = (false, false);
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (chunk, used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if done {
            return Ok(Some(too_long));
        }
    }
}

/// Collects an object's keys in order (header look-ahead only).
/// The keys of one JSON object, in order; an object with more than `.0` keys is an error
/// ([`TOO_MANY_KEYS`]) as soon as the next key is seen, so a wide line costs no more than the limit.
struct KeysUpTo(usize);

/// Marks the error of an object over [`KeysUpTo`]'s limit.
const TOO_MANY_KEYS: &str = "moengage-sync: too many keys";

impl<'de> DeserializeSeed<'de> for KeysUpTo {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        struct V(usize);
        impl<'de> Visitor<'de> for V {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if keys.len() == self.0 {
                        return Err(serde::de::Error::custom(TOO_MANY_KEYS));
                    }
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(keys)
            }
        }
        d.deserialize_map(V(self.0))
    }
}

/// Parses one object into the slots of the columns it names.
struct RowSeed<'s> {
    header: &'s [String],
    index: &'s HashMap<String, usize>,
    slots: &'s mut [Slot],
    owned: &'s mut [String],
    nested: &'s mut [Value],
    /// Address of the line buffer, to turn borrowed slices into offsets.
    base: usize,
    unknown: &'s mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        // Exports repeat one key order on every line: guess the next column before hashing.
        let mut expected = 0;
        while let Some(column) = map.next_key_seed(KeySeed {
            header: self.header,
            index: self.index,
            expected,
        })? {
            let raw: &'de RawValue = map.next_value()?;
            let Ok(i) = column else {
                if self.unknown.is_none() {
                    *self.unknown = column.err();
                }
                continue;
            };
            expected = i + 1;
            let text = raw.get();
            let start = text.as_ptr() as usize - self.base;
            self.slots[i] = match text.as_bytes().first() {
                Some(b'"') => {
                    let inner = &text[1..text.len() - 1];
                    if inner.contains('\\') {
                        self.owned[i] = serde_json::from_str(text).map_err(A::Error::custom)?;
                        Slot::Escaped
                    } else {
                        Slot::Str(start + 1, start + 1 + inner.len())
                    }
                }
                Some(b't') => Slot::Bool(true),
                Some(b'f') => Slot::Bool(false),
                Some(b'n') => Slot::Null,
                Some(b'[' | b'{') => {
                    self.nested[i] = serde_json::from_str(text).map_err(A::Error::custom)?;
                    Slot::Nested
                }
                _ => Slot::Number(start, start + text.len()),
            };
        }
        Ok(())
    }
}

/// Resolves a key to its column: `Ok(index)`, or `Err(key)` for a key outside the header.
struct KeySeed<'s> {
    header: &'s [String],
    index: &'s HashMap<String, usize>,
    expected: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Result<usize, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Result<usize, String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if self.header.get(self.expected).is_some_and(|h| h == key) {
            return Ok(Ok(self.expected));
        }
        Ok(self.index.get(key).copied().ok_or_else(|| key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(input: &str) -> (Vec<String>, Vec<Result<Vec<String>, BadRecord>>) {
        let mut src = NdjsonRows::new(input.as_bytes(), InputLimits::default()).unwrap();
        let header = src.header().to_vec();
        let mut out = Vec::new();
        while let Some(row) = src.next_row().unwrap() {
            out.push(row.map(|r| {
                (0..header.len())
                    .map(|i| match r.row.cell(i).unwrap() {
                        Cell::Null => "<null>".to_string(),
                        Cell::Str(s) => format!("s:{s}"),
                        Cell::Number(n) => format!("n:{n}"),
                        Cell::Bool(b) => format!("b:{b}"),
                        Cell::Json(v) => format!("j:{v}"),
                        other => format!("{other:?}"),
                    })
                    .collect()
            }));
        }
        (header, out)
    }

    #[test]
    fn values_keep_their_json_types() {
        let input = "\u{feff}{\"id\":\"u1\",\"n\":12.50,\"ok\":true,\"tags\":[\"a\",1],\"q\":\"say \\\"hi\\\"\",\"z\":null}\r\n";
        let (header, out) = rows(input);
        assert_eq!(header, ["id", "n", "ok", "tags", "q", "z"]);
        assert_eq!(
            out[0].as_ref().unwrap(),
            &[
                "s:u1",
                "n:12.50",
                "b:true",
                "j:[\"a\",1]",
                "s:say \"hi\"",
                "<null>"
            ]
        );
    }

    #[test]
    fn header_takes_keys_of_the_lookahead_in_order_and_missing_keys_are_null() {
        let input = "{\"id\":\"u1\",\"a\":1}\n\n{\"b\":2,\"id\":\"u2\"}\n{\"id\":\"u3\"}\n";
        let (header, out) = rows(input);
        assert_eq!(header, ["id", "a", "b"]);
        assert_eq!(out.len(), 3, "blank lines are not rows");
        assert_eq!(out[1].as_ref().unwrap(), &["s:u2", "<null>", "n:2"]);
        assert_eq!(out[2].as_ref().unwrap(), &["s:u3", "<null>", "<null>"]);
    }

    #[test]
    fn keys_first_seen_after_the_lookahead_are_ignored() {
        let mut input = String::new();
        for i in 0..LOOKAHEAD_ROWS {
            input.push_str(&format!("{{\"id\":\"u{i}\"}}\n"));
        }
        input.push_str("{\"id\":\"late\",\"extra\":1}\n");
        let (header, out) = rows(&input);
        assert_eq!(header, ["id"]);
        assert_eq!(out.last().unwrap().as_ref().unwrap(), &["s:late"]);
    }

    #[test]
    fn lines_that_are_not_objects_are_bad_records_with_their_line() {
        let input = "{\"id\":\"u1\"}\n[1,2]\n\n{\"id\": oops}\n42\n{\"id\":\"u5\"}";
        let (_, out) = rows(input);
        let bad = out[1].as_ref().unwrap_err();
        assert_eq!((bad.row, bad.line), (2, Some(2)));
        assert!(bad.reason.contains("JSON array"), "{}", bad.reason);
        let bad = out[2].as_ref().unwrap_err();
        assert_eq!((bad.row, bad.line), (3, Some(4)));
        assert!(
            bad.reason.contains("not valid JSON at character"),
            "{}",
            bad.reason
        );
        assert!(out[3]
            .as_ref()
            .unwrap_err()
            .reason
            .contains("not a JSON object"));
        assert_eq!(out[4].as_ref().unwrap(), &["s:u5"]);
    }

    #[test]
    fn empty_and_non_json_inputs_are_object_errors() {
        assert!(matches!(
            NdjsonRows::new(&b"\n\n"[..], InputLimits::default()),
            Err(DecodeError::Empty)
        ));
        assert!(matches!(
            NdjsonRows::new(&b"[1]\n[2]\n"[..], InputLimits::default()),
            Err(DecodeError::Unsupported(_))
        ));
    }

    #[test]
    fn a_line_wider_than_max_columns_fails_the_object_at_the_limit() {
        let keys: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
        let line = format!("{{{}}}\n", keys.join(","));
        let limits = InputLimits {
            max_columns: 10,
            ..InputLimits::default()
        };
        let e = NdjsonRows::new(line.as_bytes(), limits)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 1 holds over 10 keys (MAX_COLUMNS)"), "{e}");
        // At the limit it reads.
        let line = format!("{{{}}}\n", keys[..10].join(","));
        assert_eq!(
            NdjsonRows::new(line.as_bytes(), limits)
                .unwrap()
                .header()
                .len(),
            10
        );
    }

    #[test]
    fn overlong_lines_are_skipped_not_held() {
        let mut buf = Vec::new();
        let input = format!("abc\n{}\nxyz", "x".repeat(100));
        let mut r = input.as_bytes();
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), Some(false));
        assert_eq!(buf, b"abc");
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), Some(true));
        assert!(buf.is_empty());
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), Some(false));
        assert_eq!(buf, b"xyz");
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), None);
    }
}
