//! A walk over Thrift compact-protocol bytes (Parquet's footer and page headers) that allocates
//! nothing, checking every declared length against the bytes that can follow.
//!
//! The thrift code the parquet crate uses sizes its buffers from declared lengths before reading
//! them (`Vec::with_capacity(list size)`, `vec![0; binary length]`): a 5 KB file declaring a
//! list of two billion schema elements makes it allocate hundreds of gigabytes and abort the
//! process (found by `make fuzz`). Every list element takes at least one byte and every binary
//! its length in bytes, so a declared size larger than what is left of the footer (or of the
//! column chunk, for a page header) can only be a lie; such bytes are refused before the crate
//! reads them.
//!
//! The walk knows Parquet's format (the tables at the end): the generated code reads a field it
//! knows as the type the format gives it, whatever type the bytes declare, so a walk that
//! followed the declared types could be shown an `i32` where the crate then reads a list of two
//! billion elements (found by the fuzzer). A known field, or a known list's element, whose
//! declared encoding differs from the format's is refused; an unknown field is walked by its
//! declared type, as the crate skips it.

use std::io::Read;

/// Why the bytes were refused.
pub(crate) type Refusal = String;

/// Deepest nesting accepted (Parquet's own structures nest a handful of levels).
const MAX_DEPTH: u32 = 64;

/// The type Parquet's format gives a field, as the generated code reads it.
#[derive(Clone, Copy)]
enum Ty {
    Bool,
    Byte,
    I16,
    I32,
    I64,
    Double,
    Binary,
    List(&'static Ty),
    Struct(&'static Schema),
}

/// A thrift struct or union of Parquet's format: its known fields by id.
struct Schema {
    name: &'static str,
    fields: &'static [(i16, Ty)],
}

impl Ty {
    /// Whether bytes declared as `declared` are read the way the crate reads this type. The
    /// integers share one encoding (zigzag varints), as lists and sets do.
    fn accepts(self, declared: u8) -> bool {
        matches!(
            (self, declared),
            (Ty::Bool, 1 | 2)
                | (Ty::Byte, 3)
                | (Ty::I16 | Ty::I32 | Ty::I64, 4..=6)
                | (Ty::Double, 7)
                | (Ty::Binary, 8)
                | (Ty::List(_), 9 | 10)
                | (Ty::Struct(_), 12)
        )
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Byte => "a byte",
            Ty::I16 | Ty::I32 | Ty::I64 => "an integer",
            Ty::Double => "a double",
            Ty::Binary => "a string",
            Ty::List(_) => "a list",
            Ty::Struct(_) => "a structure",
        }
    }
}

/// "a list" → "lists", for messages.
fn plural(a: &str) -> String {
    let noun = a.trim_start_matches("an ").trim_start_matches("a ");
    format!("{noun}s")
}

/// What a declared type code is, for messages.
fn declared_name(code: u8) -> &'static str {
    match code {
        1 | 2 => "a boolean",
        3 => "a byte",
        4..=6 => "an integer",
        7 => "a double",
        8 => "a string",
        9 => "a list",
        10 => "a set",
        11 => "a map",
        12 => "a structure",
        _ => "an unknown type",
    }
}

struct Walker<'a> {
    input: &'a mut dyn Read,
    /// Bytes that may still follow.
    left: u64,
}

/// Walks Parquet's footer (a `FileMetaData`) at the start of `input`, of which at most
/// `available` bytes exist.
pub(crate) fn check_footer(input: &mut dyn Read, available: u64) -> Result<(), Refusal> {
    walk(input, available, &FILE_META_DATA)
}

/// Walks one page header at the start of `input`, of which at most `available` bytes exist.
pub(crate) fn check_page_header(input: &mut dyn Read, available: u64) -> Result<(), Refusal> {
    walk(input, available, &PAGE_HEADER)
}

fn walk(input: &mut dyn Read, available: u64, schema: &'static Schema) -> Result<(), Refusal> {
    let mut w = Walker {
        input,
        left: available,
    };
    w.structure(Some(schema), 0)
}

impl Walker<'_> {
    fn byte(&mut self) -> Result<u8, Refusal> {
        if self.left == 0 {
            return Err("it ends in the middle of a structure".into());
        }
        let mut b = [0u8; 1];
        self.input
            .read_exact(&mut b)
            .map_err(|e| format!("it cannot be read: {e}"))?;
        self.left -= 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, Refusal> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number is longer than ten bytes".into())
    }

    /// Skips `n` declared bytes, refusing more than can follow.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), Refusal> {
        if n > self.left {
            return Err(format!(
                "{what} declares {n} bytes where only {} can follow",
                self.left
            ));
        }
        let mut buf = [0u8; 4096];
        let mut rest = n;
        while rest > 0 {
            let take = rest.min(buf.len() as u64) as usize;
            self.input
                .read_exact(&mut buf[..take])
                .map_err(|e| format!("it cannot be read: {e}"))?;
            rest -= take as u64;
        }
        self.left -= n;
        Ok(())
    }

    /// A struct's fields up to its stop byte. Field ids are tracked as the crate tracks them
    /// (a delta from the previous id, or a long-form zigzag i16, both wrapping), so that a
    /// known field is recognised exactly when the crate recognises it.
    fn structure(&mut self, schema: Option<&'static Schema>, depth: u32) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err("structures nest too deep".into());
        }
        let mut id: i16 = 0;
        loop {
            let header = self.byte()?;
            let declared = header & 0x0f;
            if declared == 0 {
                return Ok(()); // stop
            }
            id = match header >> 4 {
                0 => {
                    let z = self.varint()?;
                    ((z >> 1) as i64 ^ -((z & 1) as i64)) as i16
                }
                delta => id.wrapping_add(i16::from(delta)),
            };
            let known = schema.and_then(|s| {
                s.fields
                    .iter()
                    .find(|(f, _)| *f == id)
                    .map(|(_, ty)| (s.name, *ty))
            });
            match known {
                Some((name, ty)) if !ty.accepts(declared) => {
                    return Err(format!(
                        "field {id} of {name} is declared as {} where Parquet's format has {}",
                        declared_name(declared),
                        ty.name()
                    ));
                }
                Some((_, ty)) => self.typed(ty, false, depth)?,
                None => self.value(declared, depth)?,
            }
        }
    }

    /// A value of a known type (its declared type already checked). `element`: inside a list,
    /// where a boolean takes a byte.
    fn typed(&mut self, ty: Ty, element: bool, depth: u32) -> Result<(), Refusal> {
        match ty {
            Ty::Bool if element => self.byte().map(drop),
            Ty::Bool => Ok(()),
            Ty::Byte => self.byte().map(drop),
            Ty::I16 | Ty::I32 | Ty::I64 => self.varint().map(drop),
            Ty::Double => self.skip(8, "a double"),
            Ty::Binary => {
                let n = self.varint()?;
                self.skip(n, "a string")
            }
            Ty::List(of) => {
                let (declared, size) = self.list_header()?;
                if !of.accepts(declared) {
                    return Err(format!(
                        "a list of {} holds {} in Parquet's format",
                        plural(declared_name(declared)),
                        plural(of.name())
                    ));
                }
                for _ in 0..size {
                    self.typed(*of, true, depth + 1)?;
                }
                Ok(())
            }
            Ty::Struct(schema) => self.structure(Some(schema), depth + 1),
        }
    }

    /// A list or set header: the declared element type and a size no larger than the bytes
    /// left (every element takes at least one byte, booleans in lists too).
    fn list_header(&mut self) -> Result<(u8, u64), Refusal> {
        let header = self.byte()?;
        let size = match header >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        if size > self.left {
            return Err(format!(
                "a list declares {size} elements where only {} bytes can follow",
                self.left
            ));
        }
        Ok((header & 0x0f, size))
    }

    fn value(&mut self, ty: u8, depth: u32) -> Result<(), Refusal> {
        match ty {
            // booleans carry their value in the type
            1 | 2 => Ok(()),
            3 => self.byte().map(drop),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8, "a double"),
            8 => {
                let n = self.varint()?;
                self.skip(n, "a string")
            }
            9 | 10 => {
                let (element, size) = self.list_header()?;
                for _ in 0..size {
                    self.element(element, depth)?;
                }
                Ok(())
            }
            11 => {
                let size = self.varint()?;
                if size == 0 {
                    return Ok(());
                }
                if size > self.left {
                    return Err(format!(
                        "a map declares {size} entries where only {} bytes can follow",
                        self.left
                    ));
                }
                let types = self.byte()?;
                for _ in 0..size {
                    self.element(types >> 4, depth)?;
                    self.element(types & 0x0f, depth)?;
                }
                Ok(())
            }
            12 => self.structure(None, depth + 1),
            other => Err(format!("unknown field type {other}")),
        }
    }

    /// An element of a list, set or map: booleans take a byte there.
    fn element(&mut self, ty: u8, depth: u32) -> Result<(), Refusal> {
        match ty {
            1 | 2 => self.byte().map(drop),
            other => self.value(other, depth + 1),
        }
    }
}

// Parquet's format as parquet 56 reads it (`parquet::format`, generated from parquet.thrift):
// the structs reachable from `FileMetaData` and `PageHeader`. Enums are i32. Keep in step with
// the parquet crate when it moves (a new field the crate reads but this table lacks is walked by
// its declared type, which is the gap this table closes).

const STRING_TYPE: Schema = Schema {
    name: "StringType",
    fields: &[],
};
const MAP_TYPE: Schema = Schema {
    name: "MapType",
    fields: &[],
};
const LIST_TYPE: Schema = Schema {
    name: "ListType",
    fields: &[],
};
const ENUM_TYPE: Schema = Schema {
    name: "EnumType",
    fields: &[],
};
const DECIMAL_TYPE: Schema = Schema {
    name: "DecimalType",
    fields: &[(1, Ty::I32), (2, Ty::I32)],
};
const DATE_TYPE: Schema = Schema {
    name: "DateType",
    fields: &[],
};
const MILLI_SECONDS: Schema = Schema {
    name: "MilliSeconds",
    fields: &[],
};
const MICRO_SECONDS: Schema = Schema {
    name: "MicroSeconds",
    fields: &[],
};
const NANO_SECONDS: Schema = Schema {
    name: "NanoSeconds",
    fields: &[],
};
const TIME_UNIT: Schema = Schema {
    name: "TimeUnit",
    fields: &[
        (1, Ty::Struct(&MILLI_SECONDS)),
        (2, Ty::Struct(&MICRO_SECONDS)),
        (3, Ty::Struct(&NANO_SECONDS)),
    ],
};
const TIME_TYPE: Schema = Schema {
    name: "TimeType",
    fields: &[(1, Ty::Bool), (2, Ty::Struct(&TIME_UNIT))],
};
const TIMESTAMP_TYPE: Schema = Schema {
    name: "TimestampType",
    fields: &[(1, Ty::Bool), (2, Ty::Struct(&TIME_UNIT))],
};
const INT_TYPE: Schema = Schema {
    name: "IntType",
    fields: &[(1, Ty::Byte), (2, Ty::Bool)],
};
const NULL_TYPE: Schema = Schema {
    name: "NullType",
    fields: &[],
};
const JSON_TYPE: Schema = Schema {
    name: "JsonType",
    fields: &[],
};
const BSON_TYPE: Schema = Schema {
    name: "BsonType",
    fields: &[],
};
const UUID_TYPE: Schema = Schema {
    name: "UUIDType",
    fields: &[],
};
const FLOAT16_TYPE: Schema = Schema {
    name: "Float16Type",
    fields: &[],
};
const VARIANT_TYPE: Schema = Schema {
    name: "VariantType",
    fields: &[(1, Ty::Byte)],
};
const GEOMETRY_TYPE: Schema = Schema {
    name: "GeometryType",
    fields: &[(1, Ty::Binary)],
};
const GEOGRAPHY_TYPE: Schema = Schema {
    name: "GeographyType",
    fields: &[(1, Ty::Binary), (2, Ty::I32)],
};
const LOGICAL_TYPE: Schema = Schema {
    name: "LogicalType",
    fields: &[
        (1, Ty::Struct(&STRING_TYPE)),
        (2, Ty::Struct(&MAP_TYPE)),
        (3, Ty::Struct(&LIST_TYPE)),
        (4, Ty::Struct(&ENUM_TYPE)),
        (5, Ty::Struct(&DECIMAL_TYPE)),
        (6, Ty::Struct(&DATE_TYPE)),
        (7, Ty::Struct(&TIME_TYPE)),
        (8, Ty::Struct(&TIMESTAMP_TYPE)),
        (10, Ty::Struct(&INT_TYPE)),
        (11, Ty::Struct(&NULL_TYPE)),
        (12, Ty::Struct(&JSON_TYPE)),
        (13, Ty::Struct(&BSON_TYPE)),
        (14, Ty::Struct(&UUID_TYPE)),
        (15, Ty::Struct(&FLOAT16_TYPE)),
        (16, Ty::Struct(&VARIANT_TYPE)),
        (17, Ty::Struct(&GEOMETRY_TYPE)),
        (18, Ty::Struct(&GEOGRAPHY_TYPE)),
    ],
};
const SCHEMA_ELEMENT: Schema = Schema {
    name: "SchemaElement",
    fields: &[
        (1, Ty::I32),
        (2, Ty::I32),
        (3, Ty::I32),
        (4, Ty::Binary),
        (5, Ty::I32),
        (6, Ty::I32),
        (7, Ty::I32),
        (8, Ty::I32),
        (9, Ty::I32),
        (10, Ty::Struct(&LOGICAL_TYPE)),
    ],
};
const KEY_VALUE: Schema = Schema {
    name: "KeyValue",
    fields: &[(1, Ty::Binary), (2, Ty::Binary)],
};
const STATISTICS: Schema = Schema {
    name: "Statistics",
    fields: &[
        (1, Ty::Binary),
        (2, Ty::Binary),
        (3, Ty::I64),
        (4, Ty::I64),
        (5, Ty::Binary),
        (6, Ty::Binary),
        (7, Ty::Bool),
        (8, Ty::Bool),
    ],
};
const PAGE_ENCODING_STATS: Schema = Schema {
    name: "PageEncodingStats",
    fields: &[(1, Ty::I32), (2, Ty::I32), (3, Ty::I32)],
};
const SIZE_STATISTICS: Schema = Schema {
    name: "SizeStatistics",
    fields: &[
        (1, Ty::I64),
        (2, Ty::List(&Ty::I64)),
        (3, Ty::List(&Ty::I64)),
    ],
};
const BOUNDING_BOX: Schema = Schema {
    name: "BoundingBox",
    fields: &[
        (1, Ty::Double),
        (2, Ty::Double),
        (3, Ty::Double),
        (4, Ty::Double),
        (5, Ty::Double),
        (6, Ty::Double),
        (7, Ty::Double),
        (8, Ty::Double),
    ],
};
const GEOSPATIAL_STATISTICS: Schema = Schema {
    name: "GeospatialStatistics",
    fields: &[(1, Ty::Struct(&BOUNDING_BOX)), (2, Ty::List(&Ty::I32))],
};
const COLUMN_META_DATA: Schema = Schema {
    name: "ColumnMetaData",
    fields: &[
        (1, Ty::I32),
        (2, Ty::List(&Ty::I32)),
        (3, Ty::List(&Ty::Binary)),
        (4, Ty::I32),
        (5, Ty::I64),
        (6, Ty::I64),
        (7, Ty::I64),
        (8, Ty::List(&Ty::Struct(&KEY_VALUE))),
        (9, Ty::I64),
        (10, Ty::I64),
        (11, Ty::I64),
        (12, Ty::Struct(&STATISTICS)),
        (13, Ty::List(&Ty::Struct(&PAGE_ENCODING_STATS))),
        (14, Ty::I64),
        (15, Ty::I32),
        (16, Ty::Struct(&SIZE_STATISTICS)),
        (17, Ty::Struct(&GEOSPATIAL_STATISTICS)),
    ],
};
const ENCRYPTION_WITH_FOOTER_KEY: Schema = Schema {
    name: "EncryptionWithFooterKey",
    fields: &[],
};
const ENCRYPTION_WITH_COLUMN_KEY: Schema = Schema {
    name: "EncryptionWithColumnKey",
    fields: &[(1, Ty::List(&Ty::Binary)), (2, Ty::Binary)],
};
const COLUMN_CRYPTO_META_DATA: Schema = Schema {
    name: "ColumnCryptoMetaData",
    fields: &[
        (1, Ty::Struct(&ENCRYPTION_WITH_FOOTER_KEY)),
        (2, Ty::Struct(&ENCRYPTION_WITH_COLUMN_KEY)),
    ],
};
const COLUMN_CHUNK: Schema = Schema {
    name: "ColumnChunk",
    fields: &[
        (1, Ty::Binary),
        (2, Ty::I64),
        (3, Ty::Struct(&COLUMN_META_DATA)),
        (4, Ty::I64),
        (5, Ty::I32),
        (6, Ty::I64),
        (7, Ty::I32),
        (8, Ty::Struct(&COLUMN_CRYPTO_META_DATA)),
        (9, Ty::Binary),
    ],
};
const SORTING_COLUMN: Schema = Schema {
    name: "SortingColumn",
    fields: &[(1, Ty::I32), (2, Ty::Bool), (3, Ty::Bool)],
};
const ROW_GROUP: Schema = Schema {
    name: "RowGroup",
    fields: &[
        (1, Ty::List(&Ty::Struct(&COLUMN_CHUNK))),
        (2, Ty::I64),
        (3, Ty::I64),
        (4, Ty::List(&Ty::Struct(&SORTING_COLUMN))),
        (5, Ty::I64),
        (6, Ty::I64),
        (7, Ty::I16),
    ],
};
const TYPE_DEFINED_ORDER: Schema = Schema {
    name: "TypeDefinedOrder",
    fields: &[],
};
const COLUMN_ORDER: Schema = Schema {
    name: "ColumnOrder",
    fields: &[(1, Ty::Struct(&TYPE_DEFINED_ORDER))],
};
const AES_GCMV1: Schema = Schema {
    name: "AesGcmV1",
    fields: &[(1, Ty::Binary), (2, Ty::Binary), (3, Ty::Bool)],
};
const AES_GCM_CTRV1: Schema = Schema {
    name: "AesGcmCtrV1",
    fields: &[(1, Ty::Binary), (2, Ty::Binary), (3, Ty::Bool)],
};
const ENCRYPTION_ALGORITHM: Schema = Schema {
    name: "EncryptionAlgorithm",
    fields: &[(1, Ty::Struct(&AES_GCMV1)), (2, Ty::Struct(&AES_GCM_CTRV1))],
};
const FILE_META_DATA: Schema = Schema {
    name: "FileMetaData",
    fields: &[
        (1, Ty::I32),
        (2, Ty::List(&Ty::Struct(&SCHEMA_ELEMENT))),
        (3, Ty::I64),
        (4, Ty::List(&Ty::Struct(&ROW_GROUP))),
        (5, Ty::List(&Ty::Struct(&KEY_VALUE))),
        (6, Ty::Binary),
        (7, Ty::List(&Ty::Struct(&COLUMN_ORDER))),
        (8, Ty::Struct(&ENCRYPTION_ALGORITHM)),
        (9, Ty::Binary),
    ],
};
const DATA_PAGE_HEADER: Schema = Schema {
    name: "DataPageHeader",
    fields: &[
        (1, Ty::I32),
        (2, Ty::I32),
        (3, Ty::I32),
        (4, Ty::I32),
        (5, Ty::Struct(&STATISTICS)),
    ],
};
const INDEX_PAGE_HEADER: Schema = Schema {
    name: "IndexPageHeader",
    fields: &[],
};
const DICTIONARY_PAGE_HEADER: Schema = Schema {
    name: "DictionaryPageHeader",
    fields: &[(1, Ty::I32), (2, Ty::I32), (3, Ty::Bool)],
};
const DATA_PAGE_HEADERV2: Schema = Schema {
    name: "DataPageHeaderV2",
    fields: &[
        (1, Ty::I32),
        (2, Ty::I32),
        (3, Ty::I32),
        (4, Ty::I32),
        (5, Ty::I32),
        (6, Ty::I32),
        (7, Ty::Bool),
        (8, Ty::Struct(&STATISTICS)),
    ],
};
const PAGE_HEADER: Schema = Schema {
    name: "PageHeader",
    fields: &[
        (1, Ty::I32),
        (2, Ty::I32),
        (3, Ty::I32),
        (4, Ty::I32),
        (5, Ty::Struct(&DATA_PAGE_HEADER)),
        (6, Ty::Struct(&INDEX_PAGE_HEADER)),
        (7, Ty::Struct(&DICTIONARY_PAGE_HEADER)),
        (8, Ty::Struct(&DATA_PAGE_HEADERV2)),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct this walk knows nothing of: every field walked by its declared type.
    const UNKNOWN: Schema = Schema {
        name: "Unknown",
        fields: &[],
    };

    fn check_struct(input: &[u8], available: u64) -> Result<(), Refusal> {
        walk(&mut &input[..], available, &UNKNOWN)
    }

    #[test]
    fn honest_structures_pass_and_lying_lengths_are_refused() {
        // {1: i32 5, 2: list<i32> [1, 2], 3: binary "ab", 4: struct {1: bool true}} stop
        let ok = [
            0x15, 0x0a, // field 1, i32, zigzag 5
            0x19, 0x25, 0x02, 0x04, // field 2, list of 2 i32
            0x18, 0x02, b'a', b'b', // field 3, binary len 2
            0x1c, 0x11, 0x00, // field 4, struct {field 1 bool true}
            0x00,
        ];
        assert!(check_struct(&ok, ok.len() as u64).is_ok());
        // A list of 2^31 elements in a 10-byte input.
        let lie = [0x19, 0xf5, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        let e = check_struct(&lie, lie.len() as u64).unwrap_err();
        assert!(e.contains("declares 2147483648 elements"), "{e}");
        // A 4 GB string.
        let lie = [0x18, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(check_struct(&lie, lie.len() as u64).is_err());
        // Truncated.
        assert!(check_struct(&ok[..5], 5).is_err());
    }

    #[test]
    fn a_known_field_declared_as_another_type_is_refused() {
        // FileMetaData {1: i32 1, 2: declared i32 but the format has list<SchemaElement>}: the
        // crate would read the varint's bytes as a list header.
        let forged = [0x15, 0x02, 0x15, 0xf9, 0xff, 0xff, 0xff, 0x07, 0x00];
        let e = check_footer(&mut &forged[..], forged.len() as u64).unwrap_err();
        assert_eq!(
            e,
            "field 2 of FileMetaData is declared as an integer where Parquet's format has a list"
        );
        // The same id in long form (header 0x05, zigzag 2 = 4) is the same field.
        let forged = [0x05, 0x04, 0x15, 0x00];
        assert!(check_footer(&mut &forged[..], forged.len() as u64).is_err());
        // A list of SchemaElements declared as a list of i32 (element type 5).
        let forged = [0x15, 0x02, 0x19, 0x35, 0x02, 0x04, 0x06, 0x00];
        let e = check_footer(&mut &forged[..], forged.len() as u64).unwrap_err();
        assert_eq!(e, "a list of integers holds structures in Parquet's format");
        // Integers of another width share the encoding and pass, as an unknown field does.
        let fine = [0x16, 0x02, 0xf8, 0x02, 0x61, 0x62, 0x00];
        assert!(check_footer(&mut &fine[..], fine.len() as u64).is_ok());
        // A page header whose data_page_header (field 5, a struct) is declared a string.
        let forged = [0x15, 0x00, 0x15, 0x02, 0x15, 0x02, 0x28, 0x01, 0x41, 0x00];
        let e = check_page_header(&mut &forged[..], forged.len() as u64).unwrap_err();
        assert!(
            e.starts_with("field 5 of PageHeader is declared as a string"),
            "{e}"
        );
    }
}
