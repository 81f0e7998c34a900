//! CSV (and TSV) with a header row, in the dialect `CSV_DELIMITER` / `CSV_QUOTE` / `CSV_ESCAPE`
//! describe. One reused record; a record is checked as UTF-8 once, whole, and copied into a reused
//! `String` that cells are sliced from; only when that fails are cells checked one by one, and
//! only those the mapping reads — so a bad byte in an unmapped column does not reject the row.
//!
//! Records are parsed by `csv_core` into buffers this module owns, so their growth is bounded:
//! a record over `MAX_ROW_MB` or `MAX_COLUMNS` is parsed on into a small scratch buffer and thrown
//! away (rejected with its row number and the limit), and a header over `MAX_HEADER_MB` or
//! `MAX_COLUMNS` fails the object at once — a 2 GiB line with no newline costs no more memory than
//! a short one.

use std::io::BufRead;

use csv_core::ReadRecordResult;

use super::{BadRecord, DecodeError, InputLimits, RowRef, RowSource};
use crate::map::convert::Cell;
use crate::map::Row;
use crate::model::shorten;

/// How a CSV export is written. The defaults are RFC 4180 (what Snowflake, BigQuery and Redshift
/// write by default): `,` (tab for TSV), `"` quotes, quotes inside a field doubled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// `CSV_DELIMITER`; `None`: `,` for CSV, tab for TSV.
    pub delimiter: Option<u8>,
    /// `CSV_QUOTE`, default `"`.
    pub quote: u8,
    /// `CSV_ESCAPE`: the byte that escapes a quote inside a quoted field (e.g. `\` for Snowflake
    /// `ESCAPE = '\\'`, Redshift `UNLOAD … ESCAPE`). `None`: quotes are doubled (`""`).
    pub escape: Option<u8>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: None,
            quote: b'"',
            escape: None,
        }
    }
}

impl CsvOptions {
    /// What a `CSV_DELIMITER` / `CSV_QUOTE` / `CSV_ESCAPE` value may be.
    pub const ACCEPTED_CHAR: &'static str =
        "one ASCII character other than a line break (e.g. , ; | or tab, written as a tab character, \\t or tab)";

    /// Parses one dialect character: a single ASCII character, or `\t` / `tab` for a tab.
    pub fn parse_char(raw: &str) -> Option<u8> {
        match raw {
            "\\t" => return Some(b'\t'),
            r if r.eq_ignore_ascii_case("tab") => return Some(b'\t'),
            _ => {}
        }
        match raw.as_bytes() {
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Some(*b),
            _ => None,
        }
    }
}

/// A limit for a message: MiB, or bytes below one MiB (tests use tiny limits).
fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Which limit a record went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Over {
    Bytes,
    Fields,
}

/// What one call to [`Records::read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// A record is in the buffers; it started on `line`.
    Record {
        line: u64,
    },
    /// A record over a limit was read past and dropped; it started on `line`.
    Oversized {
        line: u64,
        over: Over,
    },
    End,
}

/// Bytes of scratch output a record over the limit is parsed into (and thrown away).
const SCRATCH_BYTES: usize = 64 << 10;
/// First capacity of the record buffer; it doubles up to the limit.
const FIRST_RECORD_BYTES: usize = 4 << 10;

/// `csv_core` driven over a `BufRead`, into a field buffer and an end-position buffer that grow
/// up to the caller's limits and no further.
struct Records<R> {
    core: csv_core::Reader,
    input: R,
    /// The record's field bytes, back to back; `fields[..len]` is valid.
    fields: Vec<u8>,
    len: usize,
    /// End offset of each field in `fields`; `ends[..count]` is valid.
    ends: Vec<usize>,
    count: usize,
    scratch: Vec<u8>,
    scratch_ends: Vec<usize>,
}

impl<R: BufRead> Records<R> {
    fn new(core: csv_core::Reader, input: R) -> Self {
        Records {
            core,
            input,
            fields: vec![0; FIRST_RECORD_BYTES],
            len: 0,
            ends: vec![0; 64],
            count: 0,
            scratch: Vec::new(),
            scratch_ends: Vec::new(),
        }
    }

    /// Reads the next record, holding at most `max_bytes` of field bytes and `max_fields` fields.
    /// A record over a limit is read past to its end when `skip_oversized` (a row: the next one
    /// reads normally), else the reading stops there (a header: the object fails).
    fn read(
        &mut self,
        max_bytes: usize,
        max_fields: usize,
        skip_oversized: bool,
    ) -> std::io::Result<Read> {
        let line = self.core.line();
        // One byte and one field beyond each limit: csv_core reports a full buffer before it
        // sees the terminator, so a record exactly at the limit needs room to be told apart from
        // one over it. (The header's limits may be tighter than the rows', or the other way.)
        let (room_bytes, room_fields) = (max_bytes + 1, max_fields + 1);
        self.fields.truncate(room_bytes);
        self.ends.truncate(room_fields);
        let (mut out, mut ends) = (0usize, 0usize);
        let mut over = None;
        loop {
            let input = loop {
                match self.input.fill_buf() {
                    Ok(b) => break b,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            let (res, nin, nout, nend) = match over {
                None => {
                    self.core
                        .read_record(input, &mut self.fields[out..], &mut self.ends[ends..])
                }
                Some(_) => {
                    self.scratch.resize(SCRATCH_BYTES, 0);
                    self.scratch_ends.resize(1024, 0);
                    self.core
                        .read_record(input, &mut self.scratch, &mut self.scratch_ends)
                }
            };
            self.input.consume(nin);
            if over.is_none() {
                out += nout;
                ends += nend;
            }
            if let Some(over) = over.filter(|_| !skip_oversized) {
                return Ok(Read::Oversized { line, over });
            }
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull if over.is_none() => {
                    if self.fields.len() >= room_bytes {
                        over = Some(Over::Bytes);
                    } else {
                        let grown = (self.fields.len() * 2).min(room_bytes);
                        self.fields.resize(grown, 0);
                    }
                }
                ReadRecordResult::OutputEndsFull if over.is_none() => {
                    if self.ends.len() >= room_fields {
                        over = Some(Over::Fields);
                    } else {
                        let grown = (self.ends.len() * 2).min(room_fields);
                        self.ends.resize(grown, 0);
                    }
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::Record => {
                    // The extra room was used: over by exactly one byte or one field.
                    if over.is_none() && out > max_bytes {
                        over = Some(Over::Bytes);
                    } else if over.is_none() && ends > max_fields {
                        over = Some(Over::Fields);
                    }
                    return Ok(match over {
                        Some(over) => {
                            self.len = 0;
                            self.count = 0;
                            Read::Oversized { line, over }
                        }
                        None => {
                            self.len = out;
                            self.count = ends;
                            Read::Record { line }
                        }
                    });
                }
                ReadRecordResult::End => return Ok(Read::End),
            }
        }
    }

    /// The record's bytes, all fields back to back.
    fn bytes(&self) -> &[u8] {
        &self.fields[..self.len]
    }

    fn field_count(&self) -> usize {
        self.count
    }

    /// Byte range of field `i` in [`bytes`](Self::bytes).
    fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        if i >= self.count {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(start..self.ends[i])
    }

    fn field(&self, i: usize) -> &[u8] {
        self.range(i).map_or(&[], |r| &self.fields[r])
    }
}

/// CSV rows with a header, read one at a time into a reused buffer.
pub struct CsvRows<R> {
    records: Records<R>,
    header: Vec<String>,
    /// The record's bytes as text; cells are sliced from it by the record's field ranges when
    /// `text_ok` (a slice off a char boundary falls back to the bytes).
    text: String,
    /// Whether the whole record was valid UTF-8 (and so copied into `text`).
    text_ok: bool,
    /// How quotes inside a quoted field are written in this dialect, for unclosed-quote hints.
    quote_rule: String,
    /// 1-based number of the current data row (the header is not counted).
    row: u64,
    /// The field separator, to recognise records swallowed by an unclosed quote.
    delimiter: u8,
    limits: InputLimits,
}

impl<R: BufRead> CsvRows<R> {
    /// Reads the header. `tsv` picks the default delimiter (tab) when `options` sets none.
    pub fn new(
        reader: R,
        options: CsvOptions,
        tsv: bool,
        limits: InputLimits,
    ) -> Result<Self, DecodeError> {
        let delimiter = options.delimiter.unwrap_or(if tsv { b'\t' } else { b',' });
        let core = csv_core::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(options.quote)
            .escape(options.escape)
            .double_quote(options.escape.is_none())
            .build();
        let mut records = Records::new(core, reader);
        let read = records
            .read(limits.max_header_bytes, limits.max_columns, false)
            .map_err(|e| DecodeError::Read {
                row: 0,
                reason: e.to_string(),
            })?;
        match read {
            Read::End => return Err(DecodeError::Empty),
            Read::Oversized { over, .. } => {
                return Err(DecodeError::Header(match over {
                    Over::Bytes => format!(
                        "the header row is over {} (MAX_HEADER_MB); is the file one long line, or \
                         not {} at all? Raise MAX_HEADER_MB if the header really is that long",
                        size(limits.max_header_bytes),
                        if tsv { "TSV" } else { "CSV" }
                    ),
                    Over::Fields => format!(
                        "the header row has over {} columns (MAX_COLUMNS); check CSV_DELIMITER \
                         ({:?}) matches the file, or raise MAX_COLUMNS",
                        limits.max_columns, delimiter as char
                    ),
                }))
            }
            Read::Record { .. } => {}
        }
        let header = (0..records.field_count())
            .map(|i| {
                std::str::from_utf8(records.field(i))
                    .map(|s| s.trim().to_string())
                    .map_err(|_| {
                        DecodeError::Header(format!(
                            "column {} of the header is not valid UTF-8",
                            i + 1
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if header.iter().all(|h| h.is_empty()) {
            return Err(DecodeError::Empty);
        }
        Ok(CsvRows {
            records,
            header,
            text: String::new(),
            text_ok: false,
            quote_rule: match options.escape {
                None => format!(
                    "quotes inside a field must be doubled: {0}{0}",
                    options.quote as char
                ),
                Some(e) => format!(
                    "quotes inside a field must be escaped: {}{}",
                    e as char, options.quote as char
                ),
            },
            row: 0,
            delimiter,
            limits,
        })
    }
}

impl<R: BufRead + Send> RowSource for CsvRows<R> {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Result<Option<Result<RowRef<'_>, BadRecord>>, DecodeError> {
        // Up to MAX_COLUMNS fields, and never fewer than one past the header's width, so that a
        // row with too many fields is told apart from one at the limit.
        let max_fields = self.limits.max_columns.max(self.header.len() + 1);
        let read = self
            .records
            .read(self.limits.max_row_bytes, max_fields, true)
            .map_err(|e| DecodeError::Read {
                row: self.row,
                reason: e.to_string(),
            })?;
        let line = match read {
            Read::End => return Ok(None),
            Read::Oversized { line, over } => {
                self.row += 1;
                let reason = match over {
                    Over::Bytes => format!(
                        "the row is over {} (MAX_ROW_MB); not read — an unclosed quote \
                         ({}), or raise MAX_ROW_MB",
                        size(self.limits.max_row_bytes),
                        self.quote_rule
                    ),
                    Over::Fields => format!(
                        "the row has over {max_fields} fields (MAX_COLUMNS), the header has {}",
                        self.header.len()
                    ),
                };
                return Ok(Some(Err(BadRecord {
                    row: self.row,
                    line: Some(line),
                    reason,
                })));
            }
            Read::Record { line } => line,
        };
        self.row += 1;
        let bytes = self.records.bytes();
        // Whether a field holds a newline (a sign of an unclosed quote): one SIMD scan.
        let multi_line = memchr::memchr(b'\n', bytes).is_some();
        // One UTF-8 pass over the whole record instead of one per cell.
        self.text.clear();
        self.text_ok = match std::str::from_utf8(bytes) {
            Ok(text) => {
                self.text.push_str(text);
                true
            }
            Err(_) => false,
        };
        let width = self.records.field_count();
        if width != self.header.len() {
            // An unclosed quote makes the parser read on across lines into one field.
            let hint = if multi_line {
                format!(
                    "; a quoted field runs across lines — an unclosed quote? ({})",
                    self.quote_rule
                )
            } else {
                String::new()
            };
            return Ok(Some(Err(BadRecord {
                row: self.row,
                line: Some(line),
                reason: format!(
                    "has {width} fields, the header has {}{hint}",
                    self.header.len()
                ),
            })));
        }
        if let Some(field) = multi_line
            .then(|| swallowed_records(&self.records, self.header.len(), self.delimiter))
            .flatten()
        {
            return Ok(Some(Err(BadRecord {
                row: self.row,
                line: Some(line),
                reason: format!(
                    "field {field} runs across lines that look like whole records — an unclosed quote? \
                     ({}); the rows it swallowed are not sent",
                    self.quote_rule
                ),
            })));
        }
        Ok(Some(Ok(RowRef {
            row: self,
            number: self.row,
            line: Some(line),
        })))
    }
}

/// An unclosed quote makes the parser read every following line into one field. Such a field
/// spans 2+ further lines, each with exactly the delimiters of a whole record — which free text
/// practically never does.
fn swallowed_records<R: BufRead>(
    record: &Records<R>,
    width: usize,
    delimiter: u8,
) -> Option<usize> {
    // Called only for records holding a newline.
    if width < 2 {
        return None;
    }
    (0..record.field_count())
        .position(|i| {
            let mut lines = record
                .field(i)
                .split(|b| *b == b'\n')
                .skip(1)
                .filter(|l| !l.is_empty() && *l != b"\r");
            let mut count = 0;
            let all_records = lines.all(|l| {
                count += 1;
                l.iter().filter(|b| **b == delimiter).count() == width - 1
            });
            all_records && count >= 2
        })
        .map(|i| i + 1)
}

impl<R: BufRead> Row for CsvRows<R> {
    /// Straight from the record's text: the first pass of a re-sync does this for every mapped
    /// cell of every row.
    fn write_canonical(&self, index: usize, out: &mut Vec<u8>) -> bool {
        let range = match self.records.range(index) {
            Some(range) => range,
            None => {
                Cell::Null.write_canonical(out);
                return true;
            }
        };
        // As `cell` slices it: the record's fields are stored back to back without their
        // delimiters, so a valid record can still split a character between two fields (the
        // fuzz target `csv` found one), and such a cell is not text.
        match self.text.get(range).filter(|_| self.text_ok) {
            Some(text) => crate::map::convert::write_canonical_text(text.as_bytes(), out),
            None => match self.cell(index) {
                Ok(cell) => cell.write_canonical(out),
                Err(_) => return false,
            },
        }
        true
    }

    fn cell(&self, index: usize) -> Result<Cell<'_>, String> {
        let range = match self.records.range(index) {
            None => return Ok(Cell::Null),
            Some(r) => r,
        };
        if let Some(cell) = self.text_ok.then(|| self.text.get(range.clone())).flatten() {
            return Ok(Cell::Str(cell));
        }
        match self.records.bytes().get(range) {
            None => Ok(Cell::Null),
            Some(bytes) => std::str::from_utf8(bytes).map(Cell::Str).map_err(|e| {
                let name = self.header.get(index).map_or("?".into(), |h| shorten(h, 200));
                format!("column {name:?} is not valid UTF-8 (byte {} of the cell); re-export the file as UTF-8", e.valid_up_to())
            }),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decompress, Compression};
    use std::io::Write;

    fn rows(input: &[u8]) -> (Vec<String>, Vec<Result<Vec<String>, BadRecord>>) {
        rows_in(input, CsvOptions::default())
    }

    fn rows_in(
        input: &[u8],
        options: CsvOptions,
    ) -> (Vec<String>, Vec<Result<Vec<String>, BadRecord>>) {
        let r = decompress(input, None).unwrap();
        let mut csv = CsvRows::new(r, options, false, InputLimits::default()).unwrap();
        let header = csv.header().to_vec();
        let width = header.len();
        let mut out = Vec::new();
        while let Some(row) = csv.next_row().unwrap() {
            out.push(row.map(|r| {
                (0..width)
                    .map(|i| match r.row.cell(i) {
                        Ok(Cell::Str(s)) => s.to_string(),
                        Ok(_) => "<null>".into(),
                        Err(e) => format!("<err {e}>"),
                    })
                    .collect()
            }));
        }
        (header, out)
    }

    /// The first pass fingerprints cells through `Row::write_canonical`, the second through
    /// `cell`: both must give the same bytes, or unchanged rows would never be recognised.
    #[test]
    fn canonical_cells_straight_from_the_record_are_what_cell_gives() {
        // Row 5 splits "ë" (c3 ab) between two fields: valid as a record, not as cells.
        let input: &[u8] =
            b"id,name,note\n1,\"a, \"\"b\"\"\",\n2,\xc3\xa9t\xc3\xa9,x\n3,\xff,ok\n4,  ,\"\"\n5,u\xc3,\xabti\n";
        let r = decompress(input, None).unwrap();
        let mut csv =
            CsvRows::new(r, CsvOptions::default(), false, InputLimits::default()).unwrap();
        let mut checked = 0;
        while let Some(row) = csv.next_row().unwrap() {
            let row = row.unwrap().row;
            // One past the header too: a missing cell is Null either way.
            for i in 0..4 {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                let ok = row.write_canonical(i, &mut fast);
                match row.cell(i) {
                    Ok(cell) => {
                        cell.write_canonical(&mut slow);
                        assert!(ok);
                        assert_eq!(fast, slow, "cell {i}");
                    }
                    Err(_) => assert!(!ok, "cell {i} is not UTF-8"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 20);
    }

    #[test]
    fn gzip_is_sniffed_and_multi_member_streams_are_read_whole() {
        let mut gz = Vec::new();
        for part in ["id,name\n1,a\n", "2,b\n"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part.as_bytes()).unwrap();
            gz.extend(e.finish().unwrap());
        }
        let (header, out) = rows(&gz);
        assert_eq!(header, ["id", "name"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].as_ref().unwrap(), &["2", "b"]);
    }

    #[test]
    fn bom_crlf_quotes_and_embedded_newlines() {
        let input = "\u{feff}id,note\r\n1,\"line1\nline2\"\r\n2,\"say \"\"hi\"\"\"\r\n";
        let (header, out) = rows(input.as_bytes());
        assert_eq!(header, ["id", "note"]);
        assert_eq!(out[0].as_ref().unwrap(), &["1", "line1\nline2"]);
        assert_eq!(out[1].as_ref().unwrap(), &["2", "say \"hi\""]);
    }

    #[test]
    fn wrong_width_and_bad_utf8_are_row_level() {
        let mut input = b"id,name\n1,a\n2\n3,a,b\n4,".to_vec();
        input.extend([0xff, 0xfe]);
        input.extend(b"\n5,e\n");
        let (_, out) = rows(&input);
        assert_eq!(out.len(), 5);
        let bad = out[1].as_ref().unwrap_err();
        assert_eq!((bad.row, bad.line), (2, Some(3)));
        assert!(
            bad.reason.contains("has 1 fields, the header has 2"),
            "{}",
            bad.reason
        );
        assert!(out[2].as_ref().unwrap_err().reason.contains("has 3 fields"));
        // Only the bad cell is unreadable; its neighbour and the next row read normally.
        assert_eq!(out[3].as_ref().unwrap()[0], "4");
        assert!(out[3].as_ref().unwrap()[1].contains("not valid UTF-8"));
        assert!(out[3].as_ref().unwrap()[1].contains("column \"name\""));
        assert_eq!(out[4].as_ref().unwrap(), &["5", "e"]);
    }

    #[test]
    fn a_character_split_across_two_cells_is_invalid_in_both() {
        // The record's bytes, concatenated, are valid UTF-8 ("1é x"), but neither cell is.
        let (_, out) = rows(b"id,a,b\n1,\xc3,\xa9x\n2,\xc3\xa9,x\n");
        let first = out[0].as_ref().unwrap();
        assert!(first[1].contains("not valid UTF-8"), "{first:?}");
        assert!(first[2].contains("not valid UTF-8"), "{first:?}");
        assert_eq!(out[1].as_ref().unwrap(), &["2", "é", "x"]);
    }

    #[test]
    fn non_ascii_records_are_text_and_keep_their_characters() {
        let (_, out) = rows("id,name\n1,Zoë Łukasz 東京\n".as_bytes());
        assert_eq!(out[0].as_ref().unwrap(), &["1", "Zoë Łukasz 東京"]);
    }

    #[test]
    fn custom_delimiter_quote_and_escape() {
        let semicolons = CsvOptions {
            delimiter: Some(b';'),
            ..CsvOptions::default()
        };
        let (header, out) = rows_in(b"id;note\n1;\"a;b\"\n2;x,y\n", semicolons);
        assert_eq!(header, ["id", "note"]);
        assert_eq!(out[0].as_ref().unwrap(), &["1", "a;b"]);
        assert_eq!(out[1].as_ref().unwrap(), &["2", "x,y"]);

        // Snowflake `FIELD_OPTIONALLY_ENCLOSED_BY = '\'' ESCAPE = '\\'`.
        let escaped = CsvOptions {
            delimiter: Some(b'|'),
            quote: b'\'',
            escape: Some(b'\\'),
        };
        let (_, out) = rows_in(b"id|note\n1|'it\\'s | here'\n2|\"plain\"\n", escaped);
        assert_eq!(out[0].as_ref().unwrap(), &["1", "it's | here"]);
        // `"` is an ordinary character in this dialect.
        assert_eq!(out[1].as_ref().unwrap(), &["2", "\"plain\""]);

        // Without CSV_ESCAPE a backslash is data and quotes are doubled.
        let (_, out) = rows(b"id,note\n1,\"C:\\dir \"\"x\"\"\"\n");
        assert_eq!(out[0].as_ref().unwrap(), &["1", "C:\\dir \"x\""]);
    }

    #[test]
    fn an_unclosed_quote_is_reported_as_such() {
        let (_, out) = rows(b"id,name\n1,\"abc\n2,def\n3,ghi\n");
        let bad = out[0].as_ref().unwrap_err();
        assert!(bad.reason.contains("unclosed quote"), "{}", bad.reason);
    }

    fn small_limits() -> InputLimits {
        InputLimits {
            max_row_bytes: 64,
            max_header_bytes: 32,
            max_columns: 5,
            ..InputLimits::default()
        }
    }

    #[test]
    fn a_row_over_the_limit_is_rejected_with_its_row_and_the_rest_read_on() {
        let long = "x".repeat(10_000);
        let input = format!(
            "id,note\n1,a\n2,\"{long}\nstill quoted\"\n3,{long}\n4,d\n5,1,2,3,4,5,6\n6,f\n"
        );
        let mut csv = CsvRows::new(
            input.as_bytes(),
            CsvOptions::default(),
            false,
            small_limits(),
        )
        .unwrap();
        let mut out = Vec::new();
        while let Some(row) = csv.next_row().unwrap() {
            out.push(
                row.map(|r| (r.number, r.line))
                    .map_err(|b| (b.row, b.line, b.reason)),
            );
            // The record buffer never grows past the limit, whatever the input.
            // (one byte and one field of room past each limit tell "at" from "over").
            assert!(csv.records.fields.len() <= 65 && csv.records.ends.len() <= 6);
        }
        assert_eq!(out[0], Ok((1, Some(2))));
        let (row, line, reason) = out[1].clone().unwrap_err();
        assert_eq!((row, line), (2, Some(3)));
        assert!(reason.contains("over 64 bytes (MAX_ROW_MB)"), "{reason}");
        let (row, line, _) = out[2].clone().unwrap_err();
        assert_eq!(
            (row, line),
            (3, Some(5)),
            "the quoted newline counts as a line"
        );
        assert_eq!(out[3], Ok((4, Some(6))));
        let (row, _, reason) = out[4].clone().unwrap_err();
        assert_eq!(row, 5);
        assert!(reason.contains("over 5 fields (MAX_COLUMNS)"), "{reason}");
        assert_eq!(out[5], Ok((6, Some(8))));
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn a_record_exactly_at_a_limit_is_read_with_or_without_a_final_newline() {
        let limits = InputLimits {
            max_row_bytes: 8,
            max_header_bytes: 6,
            max_columns: 2,
            ..InputLimits::default()
        };
        for input in [
            &b"idxx,n\n1,abcdefg\n1,abcdefgh\n"[..],
            b"idxx,n\n1,abcdefg",
        ] {
            let mut csv = CsvRows::new(input, CsvOptions::default(), false, limits).unwrap();
            assert_eq!(csv.header(), ["idxx", "n"]);
            let first = csv.next_row().unwrap().unwrap().map(|r| r.number);
            assert_eq!(first.ok(), Some(1), "8 field bytes are at the limit");
            if let Some(second) = csv.next_row().unwrap() {
                let e = second.err().expect("9 field bytes are over it");
                assert!(e.reason.contains("over 8 bytes"), "{}", e.reason);
            }
        }
        let e = CsvRows::new(&b"idxxxx,n\n"[..], CsvOptions::default(), false, limits)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("over 6 bytes (MAX_HEADER_MB)"), "{e}");
    }

    #[test]
    fn a_header_over_a_limit_fails_the_object_without_reading_on() {
        // One line with no newline, far longer than the header limit: refused at the limit.
        struct Endless(u64);
        impl std::io::Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0 += buf.len() as u64;
                assert!(self.0 < 1 << 20, "read on past the header limit");
                buf.fill(b'a');
                Ok(buf.len())
            }
        }
        let reader = std::io::BufReader::with_capacity(1024, Endless(0));
        let e = CsvRows::new(reader, CsvOptions::default(), false, small_limits())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("MAX_HEADER_MB"), "{e}");
        let e = CsvRows::new(
            &b"a,b,c,d,e,f\n1,2,3,4,5,6\n"[..],
            CsvOptions::default(),
            false,
            small_limits(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("over 5 columns (MAX_COLUMNS)"), "{e}");
    }

    #[test]
    fn tab_separated() {
        let mut csv = CsvRows::new(
            &b"id\tname\n1\tx, y\n"[..],
            CsvOptions::default(),
            true,
            InputLimits::default(),
        )
        .unwrap();
        assert_eq!(csv.header(), ["id", "name"]);
        let row = csv.next_row().unwrap().unwrap().unwrap();
        assert!(matches!(row.row.cell(1), Ok(Cell::Str("x, y"))));
    }

    #[test]
    fn corrupt_gzip_is_an_object_error_not_a_panic() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"id,name\n").unwrap();
        for i in 0..200_000u64 {
            // Varied rows so the compressed stream is long and the corruption lands mid-data.
            e.write_all(format!("{i},{}\n", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).as_bytes())
                .unwrap();
        }
        let mut gz = e.finish().unwrap();
        let mid = gz.len() / 2;
        gz[mid..mid + 64].fill(0x55);
        let r = decompress(&gz[..], Some(Compression::Gzip)).unwrap();
        let mut csv =
            CsvRows::new(r, CsvOptions::default(), false, InputLimits::default()).unwrap();
        let mut rows = 0;
        let failed = loop {
            match csv.next_row() {
                Ok(Some(_)) => rows += 1,
                Ok(None) => break false,
                Err(DecodeError::Read { .. }) => break true,
                Err(e) => panic!("unexpected {e}"),
            }
        };
        assert!(failed, "corruption must surface as a read error");
        assert!(
            rows > 0 && rows < 200_000,
            "rows before the corruption are read: {rows}"
        );
    }
}
