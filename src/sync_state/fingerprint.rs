//! What a row *is* for change detection: a 64-bit key hash and a 64-bit fingerprint of its mapped
//! cells, both XXH3-64 (a frozen algorithm: values stored in S3 stay comparable across releases).
//!
//! The fingerprint covers the cells the mapping reads, as the decoder gave them, not the element
//! they encode to: an unchanged row is then recognised without converting a single value, which
//! is most of a re-sync's work. Rows with the same cells encode to the same element (encoding
//! reads nothing else but the mapping, which seeds the fingerprint, and the clock, which only
//! ever lets a rejected event in later). States written before this (fingerprints of the
//! encoded element, [`Fingerprinter::fingerprint`]) are carried over row by row: see
//! [`super::SyncState::classify_row`].

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::map::convert::FieldType;
use crate::map::ResolvedMapping;
use crate::model::ElementKind;
use crate::model::ObjectType;

/// The tail `SYNC_MODE=update` adds to customer elements. It says how to apply the payload, not what
/// the payload is, so it is left out of the fingerprint: switching modes resends nothing.
pub const UPDATE_EXISTING_ONLY_SUFFIX: &[u8] = b",\"update_existing_only\":true}";

/// Seeds that keep customer ids and event ids apart in one state: `"u1"` the user and `"u1"` the
/// event id of a Bulk Import are different keys.
const CUSTOMER_KEY_SEED: u64 = 0x6375_7374_6f6d_6572; // "customer"
const EVENT_KEY_SEED: u64 = 0x6576_656e_745f_6964; // "event_id"

/// Versions the mapping fingerprint's input layout; changing it resends everything once.
const MAPPING_DOMAIN: &[u8] = b"moengage-sync/mapping-fingerprint/v1";

/// Versions the cell fingerprint, and with it how cells encode: a release that changes what
/// `ResolvedMapping::encode` writes for the same cells must change this, or rows it would now
/// send differently count as unchanged (the test `encoding_is_pinned` fails to remind you).
/// Changing it resends everything once.
const CELLS_DOMAIN: &[u8] = b"moengage-sync/cells/v1";

const CUSTOMER_ID_AFTER: [&[u8]; 2] = [
    b"{\"type\":\"customer\",\"customer_id\":\"",
    b"{\"type\":\"event\",\"customer_id\":\"",
];

/// One row's identity in the state: which key, and what was (or would be) sent for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowPrint {
    /// [`Fingerprinter::key`] of the customer id (users) or the event id (events).
    pub key: u64,
    /// [`Fingerprinter::fingerprint`] of the encoded element; never 0 (0 marks "none" in memory).
    pub fingerprint: u64,
}

/// Turns encoded elements into [`RowPrint`]s; cheap to copy into the decode thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprinter {
    /// Seeds every element fingerprint, so a mapping change makes every row "changed" exactly once.
    mapping: u64,
    /// Seeds every cell fingerprint: the mapping fingerprint under [`CELLS_DOMAIN`].
    cells: u64,
}

impl Fingerprinter {
    /// For the mapping bound to an export's header.
    pub fn new(object_type: ObjectType, mapping: &ResolvedMapping) -> Self {
        Self::with_mapping_fingerprint(mapping_fingerprint(object_type, mapping))
    }

    /// From a precomputed [`mapping_fingerprint`] (tests, benchmarks).
    pub fn with_mapping_fingerprint(mapping: u64) -> Self {
        let mut seed = Vec::with_capacity(CELLS_DOMAIN.len() + 8);
        seed.extend_from_slice(CELLS_DOMAIN);
        seed.extend_from_slice(&mapping.to_le_bytes());
        Fingerprinter {
            mapping,
            cells: xxh3_64(&seed),
        }
    }

    pub fn mapping_fingerprint(&self) -> u64 {
        self.mapping
    }

    /// The state key of a customer id or event id (raw bytes as they appear in the element, or the
    /// cell's text: either works as long as one deployment always uses the same). Independent of
    /// the mapping, so a mapping change keeps keys and only changes fingerprints.
    pub fn key(kind: ElementKind, key: &[u8]) -> u64 {
        let seed = match kind {
            ElementKind::Customer => CUSTOMER_KEY_SEED,
            ElementKind::Event => EVENT_KEY_SEED,
        };
        xxh3_64_with_seed(key, seed)
    }

    /// The fingerprint of a row's mapped cells as `ResolvedMapping::identify` writes them, seeded
    /// with the mapping: what the state stores.
    pub fn fingerprint_cells(&self, cells: &[u8]) -> u64 {
        nonzero(xxh3_64_with_seed(cells, self.cells))
    }

    /// Key and cell fingerprint of one row, from `ResolvedMapping::identify`'s output.
    pub fn print_cells(&self, kind: ElementKind, key: &[u8], cells: &[u8]) -> RowPrint {
        RowPrint {
            key: Self::key(kind, key),
            fingerprint: self.fingerprint_cells(cells),
        }
    }

    /// The fingerprint of an encoded element (`ResolvedMapping::encode` output): its bytes without
    /// the `update_existing_only` flag, seeded with the mapping. What states written before cell
    /// fingerprints hold; a row whose element matches it is carried over, not resent.
    pub fn fingerprint(&self, element: &[u8]) -> u64 {
        // Both spellings of the same payload reduce to the same bytes: `…}` loses its last brace,
        // `…,"update_existing_only":true}` loses the whole suffix. A customer element without the
        // flag ends in `}}` and an event in `}]}`, so neither can be mistaken for the suffix.
        let canonical = match element.strip_suffix(UPDATE_EXISTING_ONLY_SUFFIX) {
            Some(rest) => rest,
            None => element.strip_suffix(b"}").unwrap_or(element),
        };
        nonzero(xxh3_64_with_seed(canonical, self.mapping))
    }

    /// Key and element fingerprint of one element (the fingerprint states once stored).
    pub fn print(&self, kind: ElementKind, key: &[u8], element: &[u8]) -> RowPrint {
        RowPrint {
            key: Self::key(kind, key),
            fingerprint: self.fingerprint(element),
        }
    }
}

/// 0 means "nothing" in the in-memory run table; a real fingerprint of 0 (odds 2⁻⁶⁴) becomes 1.
fn nonzero(fp: u64) -> u64 {
    fp.max(1)
}

/// The `customer_id` of an encoded element, as the JSON-escaped bytes between its quotes; `None`
/// for anything that is not an element `ResolvedMapping::encode` wrote. Lets the pipeline key users
/// without a second pass over the row.
pub fn customer_id_of(element: &[u8]) -> Option<&[u8]> {
    let rest = CUSTOMER_ID_AFTER
        .iter()
        .find_map(|p| element.strip_prefix(*p))?;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\\' => i += 2,
            b'"' => return Some(&rest[..i]),
            _ => i += 1,
        }
    }
    None
}

/// Every `customer_id` in a request body this function wrote (one element, or a Bulk Import's
/// elements), by its state key: the ids a redriven body's rows are recorded with. Scans for the
/// field as `ResolvedMapping::encode` spells it; an id is returned only under the key it hashes
/// to, so a stray match can only fail to name a key, never misname one.
pub fn customer_ids_in(body: &[u8]) -> std::collections::HashMap<u64, Vec<u8>> {
    const FIELD: &[u8] = b"\"customer_id\":\"";
    let mut out = std::collections::HashMap::new();
    let mut rest = body;
    while let Some(at) = rest.windows(FIELD.len()).position(|w| w == FIELD) {
        rest = &rest[at + FIELD.len()..];
        let mut i = 0;
        while i < rest.len() && rest[i] != b'"' {
            i += if rest[i] == b'\\' { 2 } else { 1 };
        }
        let Some(id) = rest.get(..i) else { break };
        let key = Fingerprinter::key(ElementKind::Customer, id);
        out.entry(key).or_insert_with(|| id.to_vec());
        rest = rest.get(i..).unwrap_or_default();
    }
    out
}

/// A fingerprint of the mapping as bound to a header: object type, then each MoEngage field with
/// its source column and declared type, in encoding order. Column *positions* are left out, so an
/// export whose columns merely moved keeps its state.
pub fn mapping_fingerprint(object_type: ObjectType, mapping: &ResolvedMapping) -> u64 {
    let mut buf = Vec::with_capacity(256);
    put(&mut buf, MAPPING_DOMAIN);
    put(&mut buf, object_type.as_str().as_bytes());
    for b in mapping.columns() {
        put(&mut buf, b.field.as_bytes());
        put(&mut buf, b.column.as_bytes());
        put(&mut buf, type_name(b.field_type).as_bytes());
    }
    xxh3_64(&buf)
}

/// Length-prefixed, so `("ab","c")` and `("a","bc")` differ.
fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Spelled out here rather than taken from `Debug`, whose text is not a stable format.
fn type_name(t: Option<FieldType>) -> &'static str {
    match t {
        None => "",
        Some(FieldType::String) => "string",
        Some(FieldType::Number) => "number",
        Some(FieldType::Integer) => "integer",
        Some(FieldType::Boolean) => "boolean",
        Some(FieldType::Datetime) => "datetime",
        Some(FieldType::Date) => "date",
        Some(FieldType::Array) => "array",
        Some(FieldType::Json) => "json",
    }
}
