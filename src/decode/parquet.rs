//! Parquet (Snowflake, BigQuery, Redshift `UNLOAD … FORMAT PARQUET`) read through range requests:
//! the footer first, then the column chunks of one row group at a time, each through a bounded
//! window — the file is never fetched whole, and memory stays flat whatever its size.
//!
//! Arrow arrays keep Parquet's types: strings are borrowed from the batch, integers, floats,
//! booleans, decimals, dates and timestamps become typed cells, lists/structs/maps JSON values.

use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int64Type, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int64Array, LargeBinaryArray, LargeStringArray, ListArray, RecordBatch, StringArray,
    StringViewArray, UInt64Array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, TimeUnit};
use bytes::{Buf, Bytes};
use chrono::{DateTime, NaiveDate};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use serde_json::Value;

use super::random::RandomAccess;
use super::{BadRecord, DecodeError, InputLimits, RowRef, RowSource};
use crate::map::convert;
use crate::map::convert::{Cell, StrList};
use crate::map::Row;

/// Rows decoded per Arrow batch: large enough to amortise per-batch work, small enough that a
/// batch of a wide table stays a few MiB.
const BATCH_ROWS: usize = 8192;
/// Memory for column-chunk windows, shared by the columns of a row group.
pub const WINDOW_BUDGET_BYTES: u64 = 32 << 20;
/// Bounds on one column's window (= the largest range request).
const MIN_WINDOW_BYTES: u64 = 64 << 10;
const MAX_WINDOW_BYTES: u64 = 8 << 20;
/// The largest footer (metadata) read: a forged length cannot make the function fetch and decode
/// gigabytes before the first row.
const MAX_FOOTER_BYTES: u64 = 32 << 20;
/// The footer read first: the metadata of most files fits, so one request gets both.
const FOOTER_GUESS_BYTES: u64 = 64 << 10;

const FORMAT: &str = "Parquet";

/// Parquet rows, one Arrow batch at a time.
pub struct ParquetRows {
    header: Vec<String>,
    reader: ParquetRecordBatchReader,
    columns: Vec<Column>,
    /// Position in the current batch and its length.
    pos: usize,
    len: usize,
    /// 1-based data row number.
    row: u64,
    /// The reader panicked on a damaged page: nothing more is read.
    poisoned: bool,
}

impl ParquetRows {
    /// Reads the footer and prepares to read row groups, with the default window budget.
    pub fn open(access: Arc<dyn RandomAccess>, limits: InputLimits) -> Result<Self, DecodeError> {
        Self::open_with(access, WINDOW_BUDGET_BYTES, limits)
    }

    /// As [`open`](Self::open), with `window_budget_bytes` shared by the column windows (tests
    /// use a small one to show a file is read in bounded pieces).
    pub fn open_with(
        access: Arc<dyn RandomAccess>,
        window_budget_bytes: u64,
        limits: InputLimits,
    ) -> Result<Self, DecodeError> {
        // A panic inside the parquet or arrow crates (found by fuzzing: an embedded Arrow schema
        // with a 216-bit integer) is a corrupt file.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::open_unguarded(access, window_budget_bytes, limits)
        }))
        .unwrap_or_else(|_| {
            Err(DecodeError::Corrupt {
                format: FORMAT,
                reason: "the footer's schema is damaged (the Parquet reader failed on it); re-export the file".into(),
            })
        })
    }

    fn open_unguarded(
        access: Arc<dyn RandomAccess>,
        window_budget_bytes: u64,
        limits: InputLimits,
    ) -> Result<Self, DecodeError> {
        let metadata = read_metadata(access.as_ref())?;
        check_limits(&metadata, limits)?;
        let columns = metadata.file_metadata().schema_descr().num_columns().max(1) as u64;
        let window = (window_budget_bytes / columns).clamp(MIN_WINDOW_BYTES, MAX_WINDOW_BYTES);
        let chunks = Windowed::new(access, &metadata, window, limits.parquet_max_chunk_bytes);
        let arrow = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())
            .map_err(|e| {
                DecodeError::Unsupported(format!("this Parquet schema cannot be read: {e}"))
            })?;
        let header: Vec<String> = arrow
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if header.is_empty() {
            return Err(DecodeError::Empty);
        }
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(chunks, arrow)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| DecodeError::Corrupt {
                format: FORMAT,
                reason: e.to_string(),
            })?;
        Ok(ParquetRows {
            header,
            reader,
            columns: Vec::new(),
            pos: 0,
            len: 0,
            row: 0,
            poisoned: false,
        })
    }
}

/// `MAX_COLUMNS` and `PARQUET_MAX_CHUNK_MB`, from the footer alone: a page is decoded whole, and
/// no page is larger than its column chunk, so bounding the chunk bounds what one cell (a 100 MB
/// string) can cost — before any row is sent.
fn check_limits(metadata: &ParquetMetaData, limits: InputLimits) -> Result<(), DecodeError> {
    let columns = metadata.file_metadata().schema_descr().num_columns();
    if columns > limits.max_columns {
        return Err(DecodeError::Unsupported(format!(
            "the Parquet file has {columns} columns, over MAX_COLUMNS ({}); export only the columns \
             the mapping needs, or raise MAX_COLUMNS",
            limits.max_columns
        )));
    }
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for chunk in group.columns() {
            let size = chunk
                .uncompressed_size()
                .max(chunk.compressed_size())
                .max(0) as u64;
            if size > limits.parquet_max_chunk_bytes {
                return Err(DecodeError::Unsupported(format!(
                    "row group {g}, column {:?}: {:.1} MiB uncompressed, over PARQUET_MAX_CHUNK_MB \
                     ({} MiB); write the file with smaller row groups (e.g. Spark \
                     parquet.block.size, Snowflake MAX_FILE_SIZE) or raise PARQUET_MAX_CHUNK_MB \
                     with the function's memory",
                    crate::model::shorten(&chunk.column_path().string(), 200),
                    size as f64 / (1u64 << 20) as f64,
                    limits.parquet_max_chunk_bytes >> 20
                )));
            }
        }
    }
    Ok(())
}

/// The footer: `<metadata><u32 LE length>PAR1` at the end of the file.
fn read_metadata(access: &dyn RandomAccess) -> Result<ParquetMetaData, DecodeError> {
    let corrupt = |reason: String| DecodeError::Corrupt {
        format: FORMAT,
        reason,
    };
    let read = |start: u64, end: u64| {
        access
            .read_range(start, end)
            .map_err(|e| DecodeError::Read {
                row: 0,
                reason: e.to_string(),
            })
    };
    let size = access.len();
    if size < 12 {
        return Err(corrupt(format!(
            "the file is {size} bytes, too short to be Parquet (truncated upload?)"
        )));
    }
    let tail_len = size.min(FOOTER_GUESS_BYTES);
    let tail = read(size - tail_len, size)?;
    let footer = &tail[tail.len() - 8..];
    match &footer[4..] {
        b"PAR1" => {}
        b"PARE" => {
            return Err(DecodeError::Unsupported(
                "the Parquet file is encrypted (PARE footer); export it unencrypted".into(),
            ))
        }
        _ => {
            return Err(corrupt(
                "no PAR1 footer at the end: the file is truncated or not Parquet".into(),
            ))
        }
    }
    let meta_len = u64::from(u32::from_le_bytes([
        footer[0], footer[1], footer[2], footer[3],
    ]));
    if meta_len > MAX_FOOTER_BYTES {
        return Err(DecodeError::Unsupported(format!(
            "the Parquet footer is {} MiB, over the {} MiB this function reads (its schema and \
             row-group list); write the file with fewer row groups or columns",
            meta_len >> 20,
            MAX_FOOTER_BYTES >> 20
        )));
    }
    if meta_len + 12 > size {
        return Err(corrupt(format!("the footer names {meta_len} bytes of metadata, more than the {size}-byte file holds (truncated?)")));
    }
    let meta = if meta_len + 8 <= tail_len {
        tail.slice((tail_len - 8 - meta_len) as usize..(tail_len - 8) as usize)
    } else {
        read(size - 8 - meta_len, size - 8)?
    };
    // The thrift code sizes buffers from declared lengths before reading them: check them first.
    super::thrift_guard::check_footer(&mut &meta[..], meta.len() as u64)
        .map_err(|why| corrupt(format!("the footer is damaged: {why}")))?;
    let metadata = ParquetMetaDataReader::decode_metadata(&meta)
        .map_err(|e| corrupt(format!("unreadable metadata: {e}")))?;
    for (g, rg) in metadata.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let (start, len) = c.byte_range();
            if start.checked_add(len).is_none_or(|end| end > size - 8) {
                return Err(corrupt(format!(
                    "row group {g}, column {}: bytes {start}..+{len} lie beyond the end of the {size}-byte file (truncated?)",
                    c.column_path()
                )));
            }
        }
    }
    Ok(metadata)
}

impl RowSource for ParquetRows {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Result<Option<Result<RowRef<'_>, BadRecord>>, DecodeError> {
        if self.pos + 1 < self.len {
            self.pos += 1;
        } else {
            if self.poisoned {
                return Err(self.damaged());
            }
            let batch = loop {
                // The parquet crate asserts on some damaged pages (found by fuzzing: an RLE run
                // with no value) instead of returning an error: a panic here is a corrupt file,
                // reported as one, and the reader is not used again.
                let next =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.reader.next()));
                let Ok(next) = next else {
                    self.poisoned = true;
                    return Err(self.damaged());
                };
                match next {
                    None => return Ok(None),
                    Some(Err(e)) => {
                        return Err(DecodeError::Read {
                            row: self.row,
                            reason: format!("Parquet: {e}"),
                        })
                    }
                    Some(Ok(b)) if b.num_rows() == 0 => continue,
                    Some(Ok(b)) => break b,
                }
            };
            self.load(&batch)?;
        }
        self.row += 1;
        Ok(Some(Ok(RowRef {
            row: self,
            number: self.row,
            line: None,
        })))
    }
}

impl ParquetRows {
    /// A page the Parquet reader could not decode without failing inside.
    fn damaged(&self) -> DecodeError {
        DecodeError::Corrupt {
            format: FORMAT,
            reason: format!(
                "a page after row {} is damaged (the Parquet reader failed on it); re-export the file",
                self.row
            ),
        }
    }

    fn load(&mut self, batch: &RecordBatch) -> Result<(), DecodeError> {
        self.columns.clear();
        for (i, array) in batch.columns().iter().enumerate() {
            let column = Column::new(array).map_err(|e| {
                DecodeError::Unsupported(format!(
                    "column {:?} has Parquet/Arrow type {}, which cannot be sent: {e}",
                    self.header[i],
                    array.data_type()
                ))
            })?;
            self.columns.push(column);
        }
        self.pos = 0;
        self.len = batch.num_rows();
        Ok(())
    }
}

/// One column of the current batch, downcast once per batch (a downcast per cell was the largest
/// single cost in the Parquet profile), with its null mask.
struct Column {
    nulls: Option<NullBuffer>,
    values: Values,
}

enum Values {
    Null,
    Str(StringArray),
    LargeStr(LargeStringArray),
    StrView(StringViewArray),
    Binary(LargeBinaryArray),
    Int(Int64Array),
    UInt(UInt64Array),
    Float(Float64Array),
    Float32(Float32Array),
    Bool(BooleanArray),
    Date(Date32Array),
    /// Values in units of `1/per_second` s since the epoch, as Int64.
    Timestamp(Int64Array, i64),
    Decimal(Decimal128Array, i8),
    /// Exact decimal text (DECIMAL beyond 38 digits).
    NumberText(StringArray),
    /// LIST<STRING> (tags, segments): cells borrow their strings, no JSON values are built.
    StrList(ListArray, StringArray),
    /// Other nested values (lists, structs, maps), converted per batch.
    Nested(Vec<Value>),
}

impl Column {
    fn new(array: &ArrayRef) -> Result<Column, arrow_schema::ArrowError> {
        use arrow_cast::cast;
        let values = match array.data_type() {
            DataType::Null => Values::Null,
            DataType::Utf8 => Values::Str(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => Values::LargeStr(array.as_string::<i64>().clone()),
            DataType::Utf8View => Values::StrView(array.as_string_view().clone()),
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => Values::Binary(
                cast(array, &DataType::LargeBinary)?
                    .as_binary::<i64>()
                    .clone(),
            ),
            DataType::Int64 => Values::Int(array.as_primitive::<Int64Type>().clone()),
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Values::Int(
                cast(array, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            ),
            DataType::UInt64 => Values::UInt(array.as_primitive::<UInt64Type>().clone()),
            DataType::Float64 => Values::Float(array.as_primitive::<Float64Type>().clone()),
            DataType::Float32 => Values::Float32(array.as_primitive::<Float32Type>().clone()),
            DataType::Float16 => Values::Float(
                cast(array, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            DataType::Boolean => Values::Bool(array.as_boolean().clone()),
            DataType::Date32 => Values::Date(array.as_primitive::<Date32Type>().clone()),
            DataType::Date64 => Values::Date(
                cast(array, &DataType::Date32)?
                    .as_primitive::<Date32Type>()
                    .clone(),
            ),
            DataType::Timestamp(unit, _) => {
                let per_second = match unit {
                    TimeUnit::Second => 1,
                    TimeUnit::Millisecond => 1_000,
                    TimeUnit::Microsecond => 1_000_000,
                    TimeUnit::Nanosecond => 1_000_000_000,
                };
                Values::Timestamp(
                    cast(array, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                    per_second,
                )
            }
            DataType::Decimal128(_, scale) => {
                Values::Decimal(array.as_primitive::<Decimal128Type>().clone(), *scale)
            }
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => Values::Decimal(
                cast(array, &DataType::Decimal128(*p, *s))?
                    .as_primitive::<Decimal128Type>()
                    .clone(),
                *s,
            ),
            DataType::Decimal256(_, _) => {
                Values::NumberText(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
            }
            DataType::Dictionary(_, value) => return Column::new(&cast(array, value)?),
            DataType::List(item) if item.data_type() == &DataType::Utf8 => {
                let list = array.as_list::<i32>().clone();
                let strings = list.values().as_string::<i32>().clone();
                Values::StrList(list, strings)
            }
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::Struct(_)
            | DataType::Map(_, _) => Values::Nested(
                (0..array.len())
                    .map(|i| to_json(array.as_ref(), i))
                    .collect::<Result<_, _>>()?,
            ),
            // Times, durations, intervals: as the text Arrow prints for them.
            _ => Values::Str(cast(array, &DataType::Utf8)?.as_string::<i32>().clone()),
        };
        Ok(Column {
            nulls: array.logical_nulls(),
            values,
        })
    }

    fn cell(&self, i: usize) -> Result<Cell<'_>, String> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(i)) {
            return Ok(Cell::Null);
        }
        Ok(match &self.values {
            Values::Null => Cell::Null,
            Values::Str(a) => Cell::Str(a.value(i)),
            Values::LargeStr(a) => Cell::Str(a.value(i)),
            Values::StrView(a) => Cell::Str(a.value(i)),
            Values::Binary(a) => Cell::Str(std::str::from_utf8(a.value(i)).map_err(|e| {
                format!(
                    "binary value is not UTF-8 text (byte {}); export the column as a string",
                    e.valid_up_to()
                )
            })?),
            Values::Int(a) => Cell::Int(a.value(i)),
            Values::UInt(a) => {
                let v = a.value(i);
                i64::try_from(v).map(Cell::Int).unwrap_or(Cell::Decimal {
                    unscaled: i128::from(v),
                    scale: 0,
                })
            }
            Values::Float(a) => Cell::Float(a.value(i)),
            Values::Float32(a) => Cell::Float(f32_to_f64(a.value(i))),
            Values::Bool(a) => Cell::Bool(a.value(i)),
            Values::Date(a) => Cell::Date(date(a.value(i)).ok_or("date out of range")?),
            Values::Timestamp(a, per_second) => {
                Cell::Timestamp(timestamp(a.value(i), *per_second).ok_or("timestamp out of range")?)
            }
            Values::Decimal(a, scale) => Cell::Decimal {
                unscaled: a.value(i),
                scale: *scale,
            },
            Values::NumberText(a) => Cell::Number(a.value(i)),
            Values::StrList(list, strings) => {
                let offsets = list.value_offsets();
                Cell::StrList(StrList::new(
                    strings,
                    offsets[i] as usize..offsets[i + 1] as usize,
                ))
            }
            Values::Nested(values) => Cell::Json(&values[i]),
        })
    }
}

impl Row for ParquetRows {
    fn cell(&self, index: usize) -> Result<Cell<'_>, String> {
        match self.columns.get(index) {
            Some(c) => c.cell(self.pos),
            None => Ok(Cell::Null),
        }
    }
}

/// FLOAT widened through its shortest text, so `0.1f32` is sent as 0.1, not 0.10000000149011612.
fn f32_to_f64(v: f32) -> f64 {
    if v.is_finite() {
        ryu::Buffer::new()
            .format_finite(v)
            .parse()
            .unwrap_or(f64::from(v))
    } else {
        f64::from(v)
    }
}

fn date(days: i32) -> Option<NaiveDate> {
    // 719_163 days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)
}

fn timestamp(v: i64, per_second: i64) -> Option<DateTime<chrono::Utc>> {
    let nanos = (v.rem_euclid(per_second) * (1_000_000_000 / per_second)) as u32;
    DateTime::from_timestamp(v.div_euclid(per_second), nanos)
}

/// One element of a nested column as JSON: timestamps as MoEngage datetimes, decimals as
/// numbers, anything else Arrow can print as text.
fn to_json(array: &dyn Array, i: usize) -> Result<Value, arrow_schema::ArrowError> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    let one = |j: usize| array.slice(j, 1);
    Ok(match array.data_type() {
        DataType::List(_) => list_json(array.as_list::<i32>().value(i).as_ref())?,
        DataType::LargeList(_) => list_json(array.as_list::<i64>().value(i).as_ref())?,
        DataType::FixedSizeList(_, _) => list_json(array.as_fixed_size_list().value(i).as_ref())?,
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut map = serde_json::Map::new();
            for (f, child) in fields.iter().zip(s.columns()) {
                map.insert(f.name().clone(), to_json(child.as_ref(), i)?);
            }
            Value::Object(map)
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(i);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut map = serde_json::Map::new();
            for j in 0..entries.len() {
                let key = match to_json(keys.as_ref(), j)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, to_json(values.as_ref(), j)?);
            }
            Value::Object(map)
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            scalar_json(&Column::new(&one(i))?)?
        }
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64 => scalar_json(&Column::new(&one(i))?)?,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            scalar_json(&Column::new(&one(i))?)?
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            scalar_json(&Column::new(&one(i))?)?
        }
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            scalar_json(&Column::new(&one(i))?)?
        }
        DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => scalar_json(&Column::new(&one(i))?)?,
        _ => Value::String(arrow_cast::display::array_value_to_string(array, i)?),
    })
}

fn list_json(values: &dyn Array) -> Result<Value, arrow_schema::ArrowError> {
    // Lists of strings (tags, segments) are the common case: no per-element slicing.
    if let Some(strings) = values.as_string_opt::<i32>() {
        return Ok(Value::Array(
            strings
                .iter()
                .map(|s| s.map_or(Value::Null, |s| Value::String(s.to_string())))
                .collect(),
        ));
    }
    (0..values.len())
        .map(|j| to_json(values, j))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A one-row column's value as JSON, written the way a top-level cell would be.
fn scalar_json(column: &Column) -> Result<Value, arrow_schema::ArrowError> {
    let err = |e: String| arrow_schema::ArrowError::ComputeError(e);
    let cell = column.cell(0).map_err(err)?;
    Ok(match cell {
        Cell::Null => Value::Null,
        Cell::Str(s) => Value::String(s.to_string()),
        Cell::Bool(b) => Value::Bool(b),
        Cell::Int(n) => Value::from(n),
        Cell::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        other => {
            let mut out = Vec::new();
            convert::write_value(other, None, &mut out, &mut Vec::new()).map_err(|e| err(e.0))?;
            serde_json::from_slice(&out).map_err(|e| err(e.to_string()))?
        }
    })
}

/// A [`ChunkReader`] over range reads. Each column keeps one window of its current column chunk;
/// a read outside it fetches the next `window` bytes of that chunk (never past its end). Memory:
/// at most one window per column; requests: about chunk size / window per column chunk.
#[derive(Clone)]
struct Windowed {
    inner: Arc<WindowedInner>,
}

struct WindowedInner {
    access: Arc<dyn RandomAccess>,
    /// Every column chunk of the file: (start, end, column index), sorted by start.
    chunks: Vec<(u64, u64, usize)>,
    window: u64,
    /// `PARQUET_MAX_CHUNK_MB`: the largest page (or read) accepted, whatever the headers say.
    max_page_bytes: u64,
    /// Per column: (file offset, bytes) of its window.
    windows: Mutex<Vec<Option<(u64, Bytes)>>>,
}

impl Windowed {
    fn new(
        access: Arc<dyn RandomAccess>,
        metadata: &ParquetMetaData,
        window: u64,
        max_page_bytes: u64,
    ) -> Self {
        let mut chunks: Vec<(u64, u64, usize)> = metadata
            .row_groups()
            .iter()
            .flat_map(|rg| {
                rg.columns().iter().enumerate().map(|(c, m)| {
                    let (start, len) = m.byte_range();
                    (start, start + len, c)
                })
            })
            .collect();
        chunks.sort_unstable();
        let columns = metadata.file_metadata().schema_descr().num_columns();
        Windowed {
            inner: Arc::new(WindowedInner {
                access,
                chunks,
                window,
                max_page_bytes,
                windows: Mutex::new(vec![None; columns]),
            }),
        }
    }
}

impl WindowedInner {
    /// Bytes from `pos` on (at least one, unless at the end of the file).
    fn fetch(&self, pos: u64) -> std::io::Result<Bytes> {
        let size = self.access.len();
        if pos >= size {
            return Ok(Bytes::new());
        }
        let k = self.chunks.partition_point(|c| c.0 <= pos);
        let chunk = k
            .checked_sub(1)
            .map(|k| self.chunks[k])
            .filter(|c| pos < c.1);
        let Some((_, end, column)) = chunk else {
            // Outside every column chunk (not done by the reader in practice): read, don't keep.
            return self
                .access
                .read_range(pos, size.min(pos + MIN_WINDOW_BYTES));
        };
        // A poisoned lock only means another reader panicked mid-fetch; the cache is still sound.
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((start, data)) = &windows[column] {
            if *start <= pos && pos < start + data.len() as u64 {
                return Ok(data.slice((pos - start) as usize..));
            }
        }
        let data = self.access.read_range(pos, end.min(pos + self.window))?;
        windows[column] = Some((pos, data.clone()));
        Ok(data)
    }
}

impl Length for Windowed {
    fn len(&self) -> u64 {
        self.inner.access.len()
    }
}

impl ChunkReader for Windowed {
    type T = WindowRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<WindowRead> {
        // The page reader reads each page's header through here, then allocates and inflates
        // the page at the sizes the header gives. A forged header can name gigabytes in a file
        // of kilobytes (the footer's chunk sizes are checked, but lie as easily): read the
        // header first and refuse a page over PARQUET_MAX_CHUNK_MB before anything is sized.
        // First a walk that allocates nothing, against the bytes left in the column chunk: the
        // thrift code (the crate's and the parse below) sizes buffers from declared lengths.
        let chunk_end = {
            let k = self.inner.chunks.partition_point(|c| c.0 <= start);
            k.checked_sub(1)
                .map(|k| self.inner.chunks[k])
                .filter(|c| start < c.1)
                .map_or(self.inner.access.len(), |c| c.1)
        };
        let mut walk = WindowRead {
            inner: self.inner.clone(),
            pos: start,
            current: Bytes::new(),
        };
        if let Err(why) =
            super::thrift_guard::check_page_header(&mut walk, chunk_end.saturating_sub(start))
        {
            return Err(parquet::errors::ParquetError::General(format!(
                "the page header at byte {start} is damaged: {why}"
            )));
        }
        let mut probe = WindowRead {
            inner: self.inner.clone(),
            pos: start,
            current: Bytes::new(),
        };
        let mut protocol = thrift::protocol::TCompactInputProtocol::new(&mut probe);
        if let Ok(header) =
            <parquet::format::PageHeader as parquet::thrift::TSerializable>::read_from_in_protocol(
                &mut protocol,
            )
        {
            let largest = i64::from(
                header
                    .uncompressed_page_size
                    .max(header.compressed_page_size),
            );
            if largest < 0 || largest as u64 > self.inner.max_page_bytes {
                return Err(parquet::errors::ParquetError::General(format!(
                    "a page at byte {start} says it holds {:.1} MiB, over PARQUET_MAX_CHUNK_MB ({} MiB); \
                     write the file with smaller pages or row groups, or raise PARQUET_MAX_CHUNK_MB with the function's memory",
                    largest as f64 / (1u64 << 20) as f64,
                    self.inner.max_page_bytes >> 20
                )));
            }
        }
        Ok(WindowRead {
            inner: self.inner.clone(),
            pos: start,
            current: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if length as u64 > self.inner.max_page_bytes {
            return Err(parquet::errors::ParquetError::General(format!(
                "a read of {:.1} MiB at byte {start}, over PARQUET_MAX_CHUNK_MB ({} MiB)",
                length as f64 / (1u64 << 20) as f64,
                self.inner.max_page_bytes >> 20
            )));
        }
        let first = self.inner.fetch(start)?;
        if first.len() >= length {
            return Ok(first.slice(..length));
        }
        let mut out = Vec::with_capacity(length);
        out.extend_from_slice(&first);
        while out.len() < length {
            let more = self.inner.fetch(start + out.len() as u64)?;
            if more.is_empty() {
                return Err(parquet::errors::ParquetError::EOF(format!(
                    "wanted {length} bytes at {start}, the file ends first"
                )));
            }
            let take = more.len().min(length - out.len());
            out.extend_from_slice(&more[..take]);
        }
        Ok(Bytes::from(out))
    }
}

/// A reader from one offset on, served from the column windows.
struct WindowRead {
    inner: Arc<WindowedInner>,
    pos: u64,
    current: Bytes,
}

impl std::io::Read for WindowRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.current.is_empty() {
            self.current = self.inner.fetch(self.pos)?;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::convert::FieldType;
    use arrow_array::builder::{ListBuilder, StringBuilder};

    /// LIST<STRING> cells are written from the batch directly; they must give exactly the bytes and
    /// warnings of the general path (a `Value` per list), whatever the declared type.
    /// Found by `make fuzz` (target `parquet`): the parquet crate asserts inside its RLE decoder
    /// on this file. It must be a corrupt-file error, not a panic of the decode thread.
    #[test]
    fn a_page_the_parquet_reader_panics_on_is_a_corrupt_file() {
        struct Memory(Bytes);
        impl RandomAccess for Memory {
            fn len(&self) -> u64 {
                self.0.len() as u64
            }
            fn read_range(&self, start: u64, end: u64) -> std::io::Result<Bytes> {
                Ok(self.0.slice(start as usize..end as usize))
            }
        }
        // An RLE run with no value (an assertion), and a level length past the page (a slice).
        for file in [
            &include_bytes!("../../tests/fixtures/fuzz/parquet-rle-assertion.parquet")[..],
            &include_bytes!("../../tests/fixtures/fuzz/parquet-level-slice.parquet")[..],
        ] {
            let access = Arc::new(Memory(Bytes::from_static(file)));
            let mut rows =
                ParquetRows::open(access, InputLimits::default()).expect("the footer reads");
            let outcome = loop {
                match rows.next_row() {
                    Ok(Some(_)) => continue,
                    other => break other.map(|_| ()),
                }
            };
            let e = outcome.expect_err("a damaged page").to_string();
            assert!(e.contains("damaged"), "{e}");
            // And nothing more is read from a reader that failed inside.
            assert!(rows.next_row().is_err());
        }
        let refused = |file: &'static [u8]| {
            ParquetRows::open(
                Arc::new(Memory(Bytes::from_static(file))),
                InputLimits::default(),
            )
            .err()
            .expect("refused")
            .to_string()
        };
        // A footer declaring a list of billions of schema elements (5 KB file): refused before the
        // thrift code allocates for it.
        let e = refused(include_bytes!(
            "../../tests/fixtures/fuzz/parquet-footer-huge-list.parquet"
        ));
        assert!(e.contains("the footer is damaged"), "{e}");
        // A footer whose declared thrift types disagree with Parquet's format, hiding a list of
        // billions from a walk that followed the declared types: refused too.
        let e = refused(include_bytes!(
            "../../tests/fixtures/fuzz/parquet-footer-type-mismatch.parquet"
        ));
        assert!(e.contains("the footer is damaged"), "{e}");
        assert!(e.contains("where Parquet's format has"), "{e}");
        // An embedded Arrow schema with a 216-bit integer: arrow-ipc panics while opening.
        let e = refused(include_bytes!(
            "../../tests/fixtures/fuzz/parquet-arrow-schema-int216.parquet"
        ));
        assert!(e.contains("damaged"), "{e}");
    }

    #[test]
    fn string_lists_match_the_json_value_path() {
        let mut b = ListBuilder::new(StringBuilder::new());
        let lists: Vec<Option<Vec<Option<String>>>> = vec![
            Some(vec![Some("vip".into()), Some("mobile".into())]),
            Some(vec![Some("a".into()), None]),
            Some(vec![None]),
            None,
            Some(vec![]),
            Some((0..60).map(|i| Some(format!("t{i}"))).collect()),
            Some(vec![Some("say \"hi\"\n".into()), Some("é".into())]),
        ];
        for l in &lists {
            match l {
                Some(items) => {
                    for s in items {
                        b.values().append_option(s.as_deref());
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        let array: ArrayRef = Arc::new(b.finish());
        let column = Column::new(&array).unwrap();
        assert!(matches!(column.values, Values::StrList(..)));
        let types = [
            None,
            Some(FieldType::Array),
            Some(FieldType::Json),
            Some(FieldType::String),
        ];
        for i in 0..lists.len() {
            let value = to_json(array.as_ref(), i).unwrap();
            for ty in types {
                let write = |cell: Cell<'_>| {
                    let (mut out, mut warnings) = (Vec::new(), Vec::new());
                    let r = convert::write_value(cell, ty, &mut out, &mut warnings);
                    (r, String::from_utf8(out).unwrap(), warnings)
                };
                let fast = write(column.cell(i).unwrap());
                let general = write(if value.is_null() {
                    Cell::Null
                } else {
                    Cell::Json(&value)
                });
                assert_eq!(fast, general, "row {i}, type {ty:?}");
            }
        }
    }
}
