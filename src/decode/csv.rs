//! CSV (and TSV) with a header row: one reused `ByteRecord`; cells are checked as UTF-8 only when
//! the mapping reads them.

use std::io::Read;

use csv::ByteRecord;

use super::{BadRecord, DecodeError, RowRef, RowSource};
use crate::convert::Cell;
use crate::mapping::Row;

/// CSV rows with a header, read one at a time into a reused buffer.
pub struct CsvRows<R: Read> {
    reader: csv::Reader<R>,
    header: Vec<String>,
    record: ByteRecord,
    /// 1-based number of the current data row (the header is not counted).
    row: u64,
    /// The field separator, to recognise records swallowed by an unclosed quote.
    delimiter: u8,
}

impl<R: Read> CsvRows<R> {
    /// Reads the header. `delimiter` is `b','` for CSV, `b'\t'` for TSV.
    pub fn new(reader: R, delimiter: u8) -> Result<Self, DecodeError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
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
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.row += 1;
                let line = self.record.position().map(|p| p.line());
                if self.record.len() != self.header.len() {
                    // An unclosed quote makes the csv crate read on across lines into one field.
                    let hint = if self.record.iter().any(|f| f.contains(&b'\n')) {
                        "; a quoted field runs across lines — an unclosed quote? (quotes inside a field must be doubled: \"\")"
                    } else {
                        ""
                    };
                    return Ok(Some(Err(BadRecord {
                        row: self.row,
                        line,
                        reason: format!(
                            "has {} fields, the header has {}{hint}",
                            self.record.len(),
                            self.header.len()
                        ),
                    })));
                }
                if let Some(field) =
                    swallowed_records(&self.record, self.header.len(), self.delimiter)
                {
                    return Ok(Some(Err(BadRecord {
                        row: self.row,
                        line,
                        reason: format!(
                            "field {field} runs across lines that look like whole records — an unclosed quote? \
                             (quotes inside a field must be doubled: \"\"); the rows it swallowed are not sent"
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
    // Almost no record holds a newline at all: one pass over its bytes settles it.
    if width < 2 || !record.as_slice().contains(&b'\n') {
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
        match self.record.get(index) {
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
        let r = decompress(input, None).unwrap();
        let mut csv = CsvRows::new(r, b',').unwrap();
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
        assert!(out[3].as_ref().unwrap()[1].contains("not valid UTF-8"));
        assert_eq!(out[4].as_ref().unwrap(), &["5", "e"]);
    }

    #[test]
    fn an_unclosed_quote_is_reported_as_such() {
        let (_, out) = rows(b"id,name\n1,\"abc\n2,def\n3,ghi\n");
        let bad = out[0].as_ref().unwrap_err();
        assert!(bad.reason.contains("unclosed quote"), "{}", bad.reason);
    }

    #[test]
    fn tab_separated() {
        let mut csv = CsvRows::new(&b"id\tname\n1\tx, y\n"[..], b'\t').unwrap();
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
        let mut csv = CsvRows::new(r, b',').unwrap();
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
