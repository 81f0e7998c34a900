//! CSV (and TSV) with a header row, in the dialect `CSV_DELIMITER` / `CSV_QUOTE` / `CSV_ESCAPE`
//! describe. One reused record; a record is checked as UTF-8 once, whole, and copied into a reused
//! `String` that cells are sliced from; only when that fails are cells checked one by one, and
//! only those the mapping reads — so a bad byte in an unmapped column does not reject the row.

use std::io::Read;

use csv::ByteRecord;

use super::{BadRecord, DecodeError, RowRef, RowSource, READ_BUFFER_BYTES};
use crate::map::convert::Cell;
use crate::map::Row;

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

/// CSV rows with a header, read one at a time into a reused buffer.
pub struct CsvRows<R: Read> {
    reader: csv::Reader<R>,
    header: Vec<String>,
    record: ByteRecord,
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
}

impl<R: Read> CsvRows<R> {
    /// Reads the header. `tsv` picks the default delimiter (tab) when `options` sets none.
    pub fn new(reader: R, options: CsvOptions, tsv: bool) -> Result<Self, DecodeError> {
        let delimiter = options.delimiter.unwrap_or(if tsv { b'\t' } else { b',' });
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(options.quote)
            .escape(options.escape)
            .double_quote(options.escape.is_none())
            // Fewer, larger reads from the decompressor than the default 8 KiB.
            .buffer_capacity(READ_BUFFER_BYTES)
            .has_headers(true)
            // Width is checked per row below so that a short row is a rejection, not an abort.
            .flexible(true)
            .from_reader(reader);
        let header = reader.byte_headers().map_err(|e| match e.kind() {
            csv::ErrorKind::Io(_) => DecodeError::Read {
                row: 0,
                reason: e.to_string(),
            },
            _ => DecodeError::Header(e.to_string()),
        })?;
        if header.is_empty() || header.iter().all(|h| h.is_empty()) {
            return Err(DecodeError::Empty);
        }
        let header = header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                String::from_utf8(h.to_vec())
                    .map(|s| s.trim().to_string())
                    .map_err(|_| {
                        DecodeError::Header(format!(
                            "column {} of the header is not valid UTF-8",
                            i + 1
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CsvRows {
            reader,
            header,
            record: ByteRecord::new(),
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
        })
    }
}

impl<R: Read + Send> RowSource for CsvRows<R> {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Result<Option<Result<RowRef<'_>, BadRecord>>, DecodeError> {
        let read = self.reader.read_byte_record(&mut self.record);
        // Whether a field holds a newline (a sign of an unclosed quote): one SIMD scan.
        let multi_line = memchr::memchr(b'\n', self.record.as_slice()).is_some();
        // One UTF-8 pass over the whole record instead of one per cell (the csv crate's own
        // StringRecord check goes cell by cell as soon as a record is not pure ASCII).
        self.text.clear();
        self.text_ok = match std::str::from_utf8(self.record.as_slice()) {
            Ok(text) => {
                self.text.push_str(text);
                true
            }
            Err(_) => false,
        };
        let record = &self.record;
        match read {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.row += 1;
                let line = record.position().map(|p| p.line());
                if record.len() != self.header.len() {
                    // An unclosed quote makes the csv crate read on across lines into one field.
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
                        line,
                        reason: format!(
                            "has {} fields, the header has {}{hint}",
                            record.len(),
                            self.header.len()
                        ),
                    })));
                }
                if let Some(field) = multi_line
                    .then(|| swallowed_records(record, self.header.len(), self.delimiter))
                    .flatten()
                {
                    return Ok(Some(Err(BadRecord {
                        row: self.row,
                        line,
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
                    line,
                })))
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => Err(DecodeError::Read {
                    row: self.row,
                    reason: e.to_string(),
                }),
                _ => {
                    self.row += 1;
                    let line = e.position().map(|p| p.line());
                    Ok(Some(Err(BadRecord {
                        row: self.row,
                        line,
                        reason: e.to_string(),
                    })))
                }
            },
        }
    }
}

/// An unclosed quote makes the csv crate read every following line into one field. Such a field
/// spans 2+ further lines, each with exactly the delimiters of a whole record — which free text
/// practically never does.
fn swallowed_records(record: &ByteRecord, width: usize, delimiter: u8) -> Option<usize> {
    // Called only for records holding a newline.
    if width < 2 {
        return None;
    }
    record
        .iter()
        .position(|field| {
            let mut lines = field
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

impl<R: Read> Row for CsvRows<R> {
    fn cell(&self, index: usize) -> Result<Cell<'_>, String> {
        let range = match self.record.range(index) {
            None => return Ok(Cell::Null),
            Some(r) => r,
        };
        if let Some(cell) = self.text_ok.then(|| self.text.get(range.clone())).flatten() {
            return Ok(Cell::Str(cell));
        }
        match self.record.as_slice().get(range) {
            None => Ok(Cell::Null),
            Some(bytes) => std::str::from_utf8(bytes).map(Cell::Str).map_err(|e| {
                let name = self.header.get(index).map(String::as_str).unwrap_or("?");
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
        let mut csv = CsvRows::new(r, options, false).unwrap();
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

    #[test]
    fn tab_separated() {
        let mut csv =
            CsvRows::new(&b"id\tname\n1\tx, y\n"[..], CsvOptions::default(), true).unwrap();
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
        let mut csv = CsvRows::new(r, CsvOptions::default(), false).unwrap();
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
