//! Detection: which format and compression an object is, and which objects of an export are
//! markers (manifests, `_SUCCESS`, folder placeholders) rather than data.
//!
//! Order of evidence: `SOURCE_FORMAT`/`SOURCE_COMPRESSION`, then the key's extensions
//! (`users.csv.gz`, `000000000000.json.gz`, `0000_part_00.parquet`), then `Content-Encoding`,
//! then the first bytes: `PAR1` Parquet, `1f 8b` gzip, `28 b5 2f fd` zstd, and once decompressed
//! `{` NDJSON, a first line with more tabs than commas TSV, anything else CSV.

use std::io::BufRead;

use super::{Compression, DecodeError, Format};

/// Parquet files start (and end) with these four bytes.
pub const PARQUET_MAGIC: &[u8] = b"PAR1";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// How much decompressed text is looked at to tell NDJSON from CSV and text from binary.
pub const SNIFF_BYTES: usize = 4096;

/// What the key's extensions say; `None` where they say nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Detected {
    pub format: Option<Format>,
    pub compression: Option<Compression>,
}

/// Reads the extensions of `key`: an optional compression suffix after a format extension.
pub fn from_key(key: &str) -> Detected {
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let mut parts = name.rsplit('.');
    let mut ext = parts.next().filter(|_| name.contains('.'));
    let compression = match ext {
        Some("gz" | "gzip") => Some(Compression::Gzip),
        Some("zst" | "zstd") => Some(Compression::Zstd),
        _ => None,
    };
    if compression.is_some() {
        ext = parts.next();
    }
    let format = match ext {
        Some("csv") => Some(Format::Csv),
        Some("tsv" | "tab") => Some(Format::Tsv),
        Some("json" | "jsonl" | "ndjson") => Some(Format::Ndjson),
        Some("parquet" | "parq") => Some(Format::Parquet),
        _ => None,
    };
    Detected {
        format,
        compression,
    }
}

/// Compression from the first bytes of the raw object.
pub fn compression_from_magic(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Format from the first bytes of the decompressed body, for keys without a telling extension.
pub fn format_from_content(head: &[u8]) -> Result<Format, DecodeError> {
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => Ok(Format::Ndjson),
        Some(b'[') => Err(DecodeError::Unsupported(
            "the object is one JSON array, not JSON Lines; export one JSON object per line (BigQuery format=JSON, Snowflake TYPE=JSON)".into(),
        )),
        _ if head.starts_with(PARQUET_MAGIC) => Err(DecodeError::Unsupported(
            "a compressed Parquet file: Parquet compresses inside the file; upload the .parquet as it is".into(),
        )),
        _ => {
            // A header line with more tabs than commas is TSV (Redshift `DELIMITER '\t'` parts
            // carry no extension).
            let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
            let count = |c: u8| line.iter().filter(|b| **b == c).count();
            Ok(if count(b'\t') > count(b',') { Format::Tsv } else { Format::Csv })
        }
    }
}

/// Refuses bytes that cannot be delimited text, with a reason a person can act on (CSV would
/// otherwise report a confusing header error or turn garbage into rows).
pub fn check_text(head: &[u8], format: Format) -> Result<(), DecodeError> {
    let nuls = memchr::memchr_iter(0, head).count();
    if nuls == 0 {
        return Ok(());
    }
    // A NUL inside otherwise valid text is a bad value, not a binary file: the rows holding it are
    // rejected (see `map::convert::NUL_REASON`), like a NUL later in the file.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // The sniffed head may end inside a character.
        Err(e) => e.error_len().is_none(),
    };
    if text && nuls * 8 < head.len() {
        return Ok(());
    }
    let utf16 = head.starts_with(&[0xff, 0xfe])
        || head.starts_with(&[0xfe, 0xff])
        || head.iter().skip(1).step_by(2).take(64).all(|b| *b == 0);
    Err(DecodeError::Unsupported(if utf16 {
        format!(
            "the object is UTF-16 text; re-export the {} as UTF-8",
            format.name()
        )
    } else {
        format!(
            "the object holds binary data, not {}: it is none of CSV, TSV, NDJSON, Parquet, gzip or zstd (first bytes {})",
            format.name(),
            head.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
        )
    }))
}

/// Up to `n` bytes of what `reader` will return next, without consuming them. Best effort: one
/// fill of the buffer (a whole S3 chunk or a decompressed block in practice).
pub fn peek(reader: &mut dyn BufRead, n: usize) -> std::io::Result<Vec<u8>> {
    loop {
        match reader.fill_buf() {
            Ok(buf) => return Ok(buf[..buf.len().min(n)].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Why an object is an export marker rather than data, or `None` for data. Zero-byte objects,
/// folder placeholders (`dir/`, `dir_$folder$`), Hadoop/Spark hidden files (`_SUCCESS`,
/// `_committed_…`, `.part-0.crc` — names starting with `_` or `.`) and manifests (Redshift's
/// `<prefix>manifest`, `*.manifest`, `manifest.json`).
pub fn marker_reason(key: &str, size: Option<u64>) -> Option<&'static str> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let lower = name.to_ascii_lowercase();
    if key.ends_with('/') || lower.ends_with("_$folder$") {
        Some("folder placeholder")
    } else if size == Some(0) {
        Some("zero-byte object")
    } else if lower == "_success" {
        Some("_SUCCESS marker")
    } else if name.starts_with('_') || name.starts_with('.') {
        Some("hidden file (name starts with _ or .), by the Hadoop/Spark convention for markers and checksums")
    } else if lower.ends_with("manifest")
        || lower.ends_with(".manifest")
        || lower == "manifest.json"
    {
        Some("manifest")
    } else {
        None
    }
}

/// Whether `key` (of `size` bytes, when known) is an export marker to skip, not data to parse.
pub fn is_marker(key: &str, size: Option<u64>) -> bool {
    marker_reason(key, size).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_compression_from_warehouse_keys() {
        let table: &[(&str, Option<Format>, Option<Compression>)] = &[
            (
                "unload/data_0_0_0.csv.gz",
                Some(Format::Csv),
                Some(Compression::Gzip),
            ),
            (
                "bq/000000000000.json.gz",
                Some(Format::Ndjson),
                Some(Compression::Gzip),
            ),
            ("bq/000000000001.json", Some(Format::Ndjson), None),
            (
                "x/users.jsonl.zst",
                Some(Format::Ndjson),
                Some(Compression::Zstd),
            ),
            ("x/users.ndjson", Some(Format::Ndjson), None),
            ("x/users.TSV", Some(Format::Tsv), None),
            ("rs/0000_part_00.parquet", Some(Format::Parquet), None),
            ("sf/data_0_0_0.snappy.parquet", Some(Format::Parquet), None),
            ("rs/0000_part_00", None, None),
            ("rs/0000_part_00.gz", None, Some(Compression::Gzip)),
            ("a.b/noext", None, None),
            ("users.csv.zstd", Some(Format::Csv), Some(Compression::Zstd)),
        ];
        for (key, format, compression) in table {
            assert_eq!(
                from_key(key),
                Detected {
                    format: *format,
                    compression: *compression
                },
                "{key}"
            );
        }
    }

    #[test]
    fn magic_bytes() {
        assert_eq!(
            compression_from_magic(&[0x1f, 0x8b, 8, 0]),
            Compression::Gzip
        );
        assert_eq!(
            compression_from_magic(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(compression_from_magic(b"PAR1"), Compression::None);
        assert_eq!(format_from_content(b"{\"a\":1}\n").unwrap(), Format::Ndjson);
        assert_eq!(
            format_from_content(b"\xef\xbb\xbf  \n{\"a\":1}").unwrap(),
            Format::Ndjson
        );
        assert_eq!(format_from_content(b"id,name\n").unwrap(), Format::Csv);
        assert_eq!(
            format_from_content(b"id\tname\n1\ta,b,c\n").unwrap(),
            Format::Tsv
        );
        assert_eq!(
            format_from_content(b"id,note\n1,a\tb\tc\n").unwrap(),
            Format::Csv
        );
        assert!(matches!(
            format_from_content(b"[{\"a\":1}]"),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(check_text(b"id,name\n1,a\n", Format::Csv).is_ok());
        let e = check_text(&[0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 13], Format::Csv)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("binary data") && e.contains("89 50 4e 47"),
            "{e}"
        );
        let e = check_text(b"\xff\xfei\0d\0", Format::Csv)
            .unwrap_err()
            .to_string();
        assert!(e.contains("UTF-16"), "{e}");
        // A stray NUL in text is a row's problem, not the file's.
        assert!(check_text(b"id,name\n1,a\0b\n2,c\n", Format::Csv).is_ok());
    }

    #[test]
    fn markers_are_recognised_and_data_is_not() {
        let markers: &[(&str, Option<u64>)] = &[
            ("exports/_SUCCESS", Some(0)),
            ("exports/_SUCCESS", None),
            ("exports/", None),
            ("exports/users_$folder$", Some(0)),
            ("exports/data.csv", Some(0)),
            ("unload/users_manifest", Some(512)),
            ("unload/manifest", Some(512)),
            ("unload/run.manifest", None),
            ("unload/manifest.json", None),
            ("spark/_committed_123", Some(10)),
            ("spark/.part-00000.crc", Some(10)),
            ("spark/_metadata", Some(10)),
        ];
        for (key, size) in markers {
            assert!(is_marker(key, *size), "{key} should be a marker");
        }
        let data: &[(&str, Option<u64>)] = &[
            ("unload/data_0_0_0.csv.gz", Some(100)),
            ("bq/000000000000.json.gz", None),
            ("rs/0000_part_00", Some(100)),
            ("rs/0000_part_00.parquet", Some(100)),
            ("exports/manifest_users.csv", Some(100)),
            ("exports/users sample.csv.gz", Some(100)),
        ];
        for (key, size) in data {
            assert!(!is_marker(key, *size), "{key} is data");
        }
    }
}
