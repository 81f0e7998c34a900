//! Decoding: the bytes of an export into rows with a header, streamed. A reader over the S3 body
//! (or range reads, for Parquet) goes in; a [`RowSource`] hands out one row at a time from reused
//! buffers.
//!
//! - `detect`: which format and compression an object is (override, key, metadata, magic bytes),
//!   and which keys are export markers rather than data.
//! - `csv`: CSV/TSV with a header row.
//! - `ndjson`: JSON Lines, one object per line.
//! - `parquet`: Parquet through range reads, one row group's column chunks at a time.
//! - `random`: random access for Parquet: S3 range requests, or a local file.

mod csv;
mod detect;
mod ndjson;
mod parquet;
mod random;
mod thrift_guard;

use std::io::{BufRead, BufReader, Read};

pub use self::csv::{CsvOptions, CsvRows};
pub use self::detect::{is_marker, marker_reason, Detected};
pub use self::ndjson::NdjsonRows;
pub use self::parquet::ParquetRows;
pub use self::random::{spool_to_temp_file, LocalFile, RandomAccess, S3Ranges};
use crate::map::Row;

/// How an object's bytes are compressed (`SOURCE_COMPRESSION` overrides detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub const ACCEPTED: &'static str = "none, gzip or zstd";
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Some(Compression::None),
            "gzip" | "gz" => Some(Compression::Gzip),
            "zstd" | "zst" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// The export's format (`SOURCE_FORMAT` overrides detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    Ndjson,
    Parquet,
}

impl Format {
    pub const ACCEPTED: &'static str = "csv, tsv, ndjson or parquet";
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "tsv" => Some(Format::Tsv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Tsv => "TSV",
            Format::Ndjson => "NDJSON",
            Format::Parquet => "Parquet",
        }
    }
}

/// Everything a decoder may need about one object.
pub struct DecodeInput<'a> {
    /// The object's body as a stream (GetObject). Parquet does not use it when `ranged` is set.
    pub reader: Box<dyn Read + Send + 'a>,
    pub key: &'a str,
    pub content_encoding: Option<&'a str>,
    /// `SOURCE_FORMAT` / `SOURCE_COMPRESSION`, when set.
    pub format: Option<Format>,
    pub compression: Option<Compression>,
    /// `CSV_DELIMITER` / `CSV_QUOTE` / `CSV_ESCAPE`, for CSV and TSV.
    pub csv: CsvOptions,
    /// The longest row, header and chunk, and the most columns, read from this object.
    pub limits: InputLimits,
    /// Range access for formats that need random access (Parquet). `None` (local files, preview):
    /// a Parquet body is first copied from `reader` to an unlinked temporary file and read from
    /// there — memory stays flat, disk holds one copy.
    pub ranged: Option<RangedObject>,
}

/// What one object may make the decoders hold at once, whatever its bytes: a hostile or broken
/// export (a 300 MB field, a 2 GiB line with no newline, 200,000 columns, a 100 MB Parquet cell)
/// costs a rejected row or a failed object with the limit named, never the function's memory.
/// The defaults keep a run within 128 MiB on any input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLimits {
    /// `MAX_ROW_MB`: the longest CSV/TSV record (its fields' bytes) or NDJSON line; a longer one is
    /// rejected with its row number and skipped without being held. Default 8 MiB.
    pub max_row_bytes: usize,
    /// `MAX_HEADER_MB`: the longest header; a longer one fails the object. Default 1 MiB.
    pub max_header_bytes: usize,
    /// `MAX_COLUMNS`: the most columns (CSV fields, NDJSON keys, Parquet columns) an object may
    /// have; more fails the object. Default 10,000 (BigQuery's limit per table).
    pub max_columns: usize,
    /// `PARQUET_MAX_CHUNK_MB`: the largest Parquet column chunk (uncompressed) of a row group,
    /// which bounds the largest page decoded at once; a larger one fails the object before any row
    /// is sent, naming the column and row group. Default 32 MiB.
    pub parquet_max_chunk_bytes: u64,
}

impl InputLimits {
    pub const DEFAULT_MAX_ROW_MB: usize = 8;
    pub const DEFAULT_MAX_HEADER_MB: usize = 1;
    pub const DEFAULT_MAX_COLUMNS: usize = 10_000;
    pub const DEFAULT_PARQUET_MAX_CHUNK_MB: u64 = 32;
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_row_bytes: Self::DEFAULT_MAX_ROW_MB << 20,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_MB << 20,
            max_columns: Self::DEFAULT_MAX_COLUMNS,
            parquet_max_chunk_bytes: Self::DEFAULT_PARQUET_MAX_CHUNK_MB << 20,
        }
    }
}

/// Random access to an S3 object from a blocking thread.
#[derive(Clone)]
pub struct RangedObject {
    pub source: std::sync::Arc<dyn crate::source::ObjectSource>,
    pub bucket: String,
    pub key: String,
    /// The object's size in bytes; 0 when unknown (then a HEAD asks).
    pub size: u64,
    /// The version being read: every range asks for it (`If-Match`), so an object overwritten
    /// mid-run fails with a clear error instead of mixing two versions. `None`: any version.
    pub etag: Option<String>,
    /// The runtime to `block_on` range reads from the decode thread (a blocking thread may).
    pub runtime: tokio::runtime::Handle,
}

impl Compression {
    /// From the key's extension or the object's `Content-Encoding`; `None` when neither says.
    pub fn from_metadata(key: &str, content_encoding: Option<&str>) -> Option<Self> {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            return Some(Compression::Gzip);
        }
        if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            return Some(Compression::Zstd);
        }
        match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
            Some(e) if e == "gzip" || e == "x-gzip" => Some(Compression::Gzip),
            Some(e) if e == "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// An object could not be decoded at all (as opposed to one bad row).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("could not read the header row: {0}")]
    Header(String),
    #[error("the export has no header row (the object is empty)")]
    Empty,
    #[error("reading failed after row {row}: {reason}")]
    Read { row: u64, reason: String },
    /// The bytes are not a file of the format they were taken for (or of any supported format).
    #[error("{0}")]
    Unsupported(String),
    /// The file is of a supported format but damaged (truncated Parquet, a bad footer).
    #[error("corrupt {format} file: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
}

/// A row that cannot become an element whatever the mapping (wrong width, bad quoting, not JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// 1-based data row number.
    pub row: u64,
    /// Line of the file where the row starts, when the format has lines.
    pub line: Option<u64>,
    pub reason: String,
}

/// One decoded row, borrowed from the decoder's buffers until the next call.
pub struct RowRef<'a> {
    pub row: &'a dyn Row,
    /// 1-based data row number (the header is not counted).
    pub number: u64,
    pub line: Option<u64>,
}

/// A stream of rows with a header — the one interface every format implements.
pub trait RowSource: Send + Row {
    /// Column names, in order; the mapping resolves against them.
    fn header(&self) -> &[String];
    /// Advances to the next row. `Ok(None)` at the end; `Ok(Some(Err(bad)))` for a row to reject;
    /// `Err` when the stream itself failed (corrupt compression, S3 read error).
    #[allow(clippy::type_complexity)]
    fn next_row(&mut self) -> Result<Option<Result<RowRef<'_>, BadRecord>>, DecodeError>;
}

/// 256 KiB reads keep syscalls and S3 chunk hand-offs rare without holding much memory.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Wraps `reader` in the right decompressor. With no hint, sniffs gzip's and zstd's magic bytes
/// so a `.csv` that is really gzip (a common `COPY INTO` mix-up) still decodes.
pub fn decompress<'a>(
    reader: impl Read + Send + 'a,
    hint: Option<Compression>,
) -> std::io::Result<Box<dyn BufRead + Send + 'a>> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let compression = match hint {
        Some(c) => c,
        None => detect::compression_from_magic(&detect::peek(&mut buffered, 4)?),
    };
    Ok(match compression {
        // Multi-member: Snowflake and `gzip -c a b` produce concatenated gzip streams.
        Compression::Gzip => Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            flate2::bufread::MultiGzDecoder::new(buffered),
        )),
        // zstd's reader decodes every frame of a multi-frame stream.
        Compression::Zstd => Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            zstd::stream::read::Decoder::with_buffer(buffered)?,
        )),
        Compression::None => Box::new(buffered),
    })
}

/// The decoder chosen for one object, as its concrete type: the row loop is compiled once per
/// format, so reading a cell is a direct (inlinable) call rather than a virtual one.
pub enum Opened<'a> {
    /// Boxed: its reused record buffers make it far larger than the other variants.
    Csv(Box<CsvRows<Box<dyn BufRead + Send + 'a>>>),
    Ndjson(NdjsonRows<Box<dyn BufRead + Send + 'a>>),
    Parquet(ParquetRows),
}

/// Opens the rows of an object. The format comes from `SOURCE_FORMAT`, else the key's extension,
/// else the magic bytes of the body (see [`detect`]); compression likewise, plus
/// `Content-Encoding`.
pub fn open(input: DecodeInput<'_>) -> Result<Opened<'_>, DecodeError> {
    let read_err = |e: std::io::Error| DecodeError::Read {
        row: 0,
        reason: e.to_string(),
    };
    let from_key = detect::from_key(input.key);
    let hint = input
        .compression
        .or_else(|| Compression::from_metadata(input.key, input.content_encoding));
    let format = input.format.or(from_key.format);

    if format == Some(Format::Parquet) {
        return open_parquet(input.ranged, input.reader, input.limits).map(Opened::Parquet);
    }
    let mut raw = BufReader::with_capacity(READ_BUFFER_BYTES, input.reader);
    if format.is_none() && hint.is_none() {
        // Redshift writes `0000_part_00` with no extension: only the bytes can tell.
        let head = detect::peek(&mut raw, 4).map_err(read_err)?;
        if head.starts_with(detect::PARQUET_MAGIC) {
            return open_parquet(input.ranged, Box::new(raw), input.limits).map(Opened::Parquet);
        }
    }
    let mut reader = decompress(raw, hint).map_err(read_err)?;
    let head = detect::peek(&mut reader, detect::SNIFF_BYTES).map_err(read_err)?;
    let format = match format {
        Some(f) => f,
        None => detect::format_from_content(&head)?,
    };
    match format {
        Format::Ndjson => Ok(Opened::Ndjson(NdjsonRows::new(reader, input.limits)?)),
        Format::Csv | Format::Tsv => {
            detect::check_text(&head, format)?;
            Ok(Opened::Csv(Box::new(CsvRows::new(
                reader,
                input.csv,
                format == Format::Tsv,
                input.limits,
            )?)))
        }
        Format::Parquet => Err(DecodeError::Unsupported(
            "a compressed Parquet file: Parquet compresses inside the file; upload the .parquet as it is".into(),
        )),
    }
}

fn open_parquet<'a>(
    ranged: Option<RangedObject>,
    reader: Box<dyn Read + Send + 'a>,
    limits: InputLimits,
) -> Result<ParquetRows, DecodeError> {
    let access: std::sync::Arc<dyn RandomAccess> = match ranged {
        Some(r) => std::sync::Arc::new(random::S3Ranges::new(r)?),
        None => std::sync::Arc::new(spool_to_temp_file(reader).map_err(|e| DecodeError::Read {
            row: 0,
            reason: format!(
                "could not copy the Parquet file to a temporary file for random access: {e}"
            ),
        })?),
    };
    ParquetRows::open(access, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_key_or_content_encoding() {
        assert_eq!(
            Compression::from_metadata("a/b.csv.gz", None),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_metadata("a/b.CSV.GZIP", None),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_metadata("a/b.csv", Some("gzip")),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_metadata("a/b.json.zst", None),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::from_metadata("a/b.csv", None), None);
    }
}
