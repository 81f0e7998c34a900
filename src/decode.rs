//! Decoding: bytes of an export (possibly gzip-compressed) into rows with a header, streamed —
//! a reader over the S3 body goes in, one reused record buffer comes out per row.

use std::io::{BufRead, BufReader, Read};

use csv::ByteRecord;

use crate::convert::Cell;
use crate::mapping::Row;

/// How an object's bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// gzip's magic bytes, for objects whose key and metadata say nothing.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl Compression {
    /// From the key's extension or the object's `Content-Encoding`; `None` when neither says.
    pub fn from_metadata(key: &str, content_encoding: Option<&str>) -> Option<Self> {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            return Some(Compression::Gzip);
        }
        match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
            Some(e) if e == "gzip" || e == "x-gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }
}

/// An object could not be decoded at all (as opposed to one bad row).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("could not read the header row: {0}")]
    Header(String),
    #[error("the export has no header row (the object is empty)")]
    Empty,
    #[error("reading failed after row {row}: {reason}")]
    Read { row: u64, reason: String },
}

/// Wraps `reader` in the right decompressor. With no hint, sniffs gzip's magic bytes so a
/// `.csv` that is really gzip (a common `COPY INTO` mix-up) still decodes.
pub fn decompress<'a>(reader: impl Read + Send + 'a, hint: Option<Compression>) -> std::io::Result<Box<dyn Read + Send + 'a>> {
    // 256 KiB reads keep syscalls and S3 chunk hand-offs rare without holding much memory.
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let compression = match hint {
        Some(c) => c,
        None => {
            let head = buffered.fill_buf()?;
            if head.starts_with(&GZIP_MAGIC) { Compression::Gzip } else { Compression::None }
        }
    };
    Ok(match compression {
        // Multi-member: Snowflake and `gzip -c a b` produce concatenated gzip streams.
        Compression::Gzip => Box::new(BufReader::with_capacity(256 * 1024, flate2::bufread::MultiGzDecoder::new(buffered))),
        Compression::None => Box::new(buffered),
    })
}

/// CSV rows with a header, read one at a time into a reused buffer.
pub struct CsvRows<R: Read> {
    reader: csv::Reader<R>,
    header: Vec<String>,
    record: ByteRecord,
    /// 1-based number of the current data row (the header is not counted).
    row: u64,
}

/// A row that could not be read as a record of the header's width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub row: u64,
    pub line: u64,
    pub reason: String,
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
        let header = reader.byte_headers().map_err(|e| DecodeError::Header(e.to_string()))?;
        if header.is_empty() || header.iter().all(|h| h.is_empty()) {
            return Err(DecodeError::Empty);
        }
        let header = header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                String::from_utf8(h.to_vec())
                    .map(|s| s.trim().to_string())
                    .map_err(|_| DecodeError::Header(format!("column {} of the header is not valid UTF-8", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CsvRows { reader, header, record: ByteRecord::new(), row: 0 })
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Advances to the next row. `Ok(None)` at the end; `Ok(Some(Err(bad)))` for a row to reject;
    /// `Err` when the stream itself failed (corrupt compression, S3 read error).
    #[allow(clippy::type_complexity)]
    pub fn advance(&mut self) -> Result<Option<Result<CsvRow<'_>, BadRecord>>, DecodeError> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.row += 1;
                let line = self.record.position().map(|p| p.line()).unwrap_or(0);
                if self.record.len() != self.header.len() {
                    return Ok(Some(Err(BadRecord {
                        row: self.row,
                        line,
                        reason: format!("has {} fields, the header has {}", self.record.len(), self.header.len()),
                    })));
                }
                Ok(Some(Ok(CsvRow { record: &self.record, header: &self.header, row: self.row, line })))
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => Err(DecodeError::Read { row: self.row, reason: e.to_string() }),
                _ => {
                    self.row += 1;
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    Ok(Some(Err(BadRecord { row: self.row, line, reason: e.to_string() })))
                }
            },
        }
    }
}

/// One CSV row, borrowed from the reader's buffer.
pub struct CsvRow<'a> {
    record: &'a ByteRecord,
    header: &'a [String],
    pub row: u64,
    pub line: u64,
}

impl Row for CsvRow<'_> {
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
    use std::io::Write;

    fn rows(input: &[u8]) -> (Vec<String>, Vec<Result<Vec<String>, BadRecord>>) {
        let r = decompress(input, None).unwrap();
        let mut csv = CsvRows::new(r, b',').unwrap();
        let header = csv.header().to_vec();
        let width = header.len();
        let mut out = Vec::new();
        while let Some(row) = csv.advance().unwrap() {
            out.push(row.map(|r| {
                (0..width)
                    .map(|i| match r.cell(i) {
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
        assert_eq!((bad.row, bad.line), (2, 3));
        assert!(bad.reason.contains("has 1 fields, the header has 2"), "{}", bad.reason);
        assert!(out[2].as_ref().unwrap_err().reason.contains("has 3 fields"));
        assert!(out[3].as_ref().unwrap()[1].contains("not valid UTF-8"));
        assert_eq!(out[4].as_ref().unwrap(), &["5", "e"]);
    }

    #[test]
    fn compression_from_key_or_content_encoding() {
        assert_eq!(Compression::from_metadata("a/b.csv.gz", None), Some(Compression::Gzip));
        assert_eq!(Compression::from_metadata("a/b.CSV.GZIP", None), Some(Compression::Gzip));
        assert_eq!(Compression::from_metadata("a/b.csv", Some("gzip")), Some(Compression::Gzip));
        assert_eq!(Compression::from_metadata("a/b.csv", None), None);
    }

    #[test]
    fn corrupt_gzip_is_an_object_error_not_a_panic() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"id,name\n").unwrap();
        for i in 0..200_000u64 {
            // Varied rows so the compressed stream is long and the corruption lands mid-data.
            e.write_all(format!("{i},{}\n", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).as_bytes()).unwrap();
        }
        let mut gz = e.finish().unwrap();
        let mid = gz.len() / 2;
        gz[mid..mid + 64].fill(0x55);
        let r = decompress(&gz[..], Some(Compression::Gzip)).unwrap();
        let mut csv = CsvRows::new(r, b',').unwrap();
        let mut rows = 0;
        let failed = loop {
            match csv.advance() {
                Ok(Some(_)) => rows += 1,
                Ok(None) => break false,
                Err(DecodeError::Read { .. }) => break true,
                Err(e) => panic!("unexpected {e}"),
            }
        };
        assert!(failed, "corruption must surface as a read error");
        assert!(rows > 0 && rows < 200_000, "rows before the corruption are read: {rows}");
    }
}
