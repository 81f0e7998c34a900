//! The binary formats of the sync state, little-endian, columnar: a shard's **base** and the
//! **deltas** saved on top of it.
//!
//! A base, version 3 (written since saves became deltas):
//!
//! ```text
//! 0   magic "MOESYNC" + format version 3               8 bytes
//! 8   shard_bits u8, 3 zero bytes, shard index u32     8 bytes
//! 16  count n u64                                      8 bytes
//! 24  generation u64: names the deltas that apply      8 bytes  (version 3 only)
//! ..  keys: n × u64, strictly ascending
//! ..  fingerprints: n × u64, in key order
//! ..  id ends: n × u32, ascending: entry i's id is bytes[end(i-1)..end(i)] (empty: no id)
//! ..  id bytes: the customer ids as they appear in the element (JSON-escaped, unquoted)
//! ..  XXH3-64 of everything before it                  8 bytes
//! ```
//! Version 2 (mirror mode's, each user key's `customer_id`) is version 3 without the generation,
//! and version 1 is version 2 without the two id columns; both are still read, as a base with no
//! deltas (no release that wrote them wrote deltas).
//!
//! A delta: the entries one save changed, as they are after it (fingerprint 0: removed).
//!
//! ```text
//! 0   magic "MOEDELT" + delta version 1                8 bytes
//! 8   shard_bits u8, 3 zero bytes, shard index u32     8 bytes
//! 16  count n u64                                      8 bytes
//! 24  generation u64 of the base it follows           8 bytes
//! 32  sequence number u64 (0, 1, … after that base)    8 bytes
//! 40  flags u64: 1 = the last delta of its generation  8 bytes
//!     (a compaction started; nothing may follow it)
//! ..  keys, fingerprints, id ends, id bytes, XXH3-64 as in a base
//! ```
//! Columns rather than pairs: decoding is straight copies, and lookups binary-search a dense
//! array of keys.

use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 7] = b"MOESYNC";
const DELTA_MAGIC: &[u8; 7] = b"MOEDELT";
/// The base version written.
pub const FORMAT_VERSION: u8 = 3;
/// The oldest version read (no ids).
const FIRST_FORMAT_VERSION: u8 = 1;
/// The delta version written and read.
pub const DELTA_VERSION: u8 = 1;
/// Magic, shard and count: the header every version shares.
const COMMON_HEADER_BYTES: usize = 24;
const TRAILER_BYTES: usize = 8;
/// Bytes a base's frame adds to its entries.
pub const FRAME_BYTES: usize = COMMON_HEADER_BYTES + 8 + TRAILER_BYTES;
/// Bytes a delta's frame adds to its entries.
pub const DELTA_FRAME_BYTES: usize = COMMON_HEADER_BYTES + 24 + TRAILER_BYTES;
/// A delta's flag: the last of its generation.
const LAST: u64 = 1;
/// Bytes an entry costs at rest besides its id: key, fingerprint and the id's end.
pub const ENTRY_BYTES: usize = 20;
/// Longer customer ids are not kept (the entry has no id; such a user cannot be deleted by
/// mirror mode). MoEngage ids are far shorter; this bounds what one hostile row adds to a shard.
pub const MAX_ID_BYTES: usize = 1024;

/// The customer ids of a shard's entries, one per entry (possibly none), packed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ids {
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

impl Ids {
    /// `n` entries without ids.
    pub fn none(n: usize) -> Self {
        Ids {
            ends: vec![0; n],
            bytes: Vec::new(),
        }
    }
    pub fn with_capacity(n: usize) -> Self {
        Ids {
            ends: Vec::with_capacity(n),
            bytes: Vec::new(),
        }
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// Entry `i`'s id; `None` when it has none (or `i` is out of range).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        (end > start).then(|| &self.bytes[start..end])
    }
    /// Appends the next entry's id; an id over [`MAX_ID_BYTES`] is left out.
    pub fn push(&mut self, id: Option<&[u8]>) {
        if let Some(id) = id.filter(|id| id.len() <= MAX_ID_BYTES) {
            self.bytes.extend_from_slice(id);
        }
        self.ends.push(self.bytes.len() as u32);
    }
    /// Entries that have an id.
    pub fn named(&self) -> usize {
        (0..self.len()).filter(|&i| self.get(i).is_some()).count()
    }
    pub fn heap_bytes(&self) -> usize {
        self.ends.capacity() * 4 + self.bytes.capacity()
    }
}

/// A shard's entries: sorted unique keys, their fingerprints and their ids (same length).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    pub keys: Vec<u64>,
    pub fps: Vec<u64>,
    pub ids: Ids,
}

impl Entries {
    /// Entries without ids.
    pub fn unnamed(keys: Vec<u64>, fps: Vec<u64>) -> Self {
        let ids = Ids::none(keys.len());
        Entries { keys, fps, ids }
    }
    pub fn with_capacity(n: usize) -> Self {
        Entries {
            keys: Vec::with_capacity(n),
            fps: Vec::with_capacity(n),
            ids: Ids::with_capacity(n),
        }
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn push(&mut self, key: u64, fp: u64, id: Option<&[u8]>) {
        self.keys.push(key);
        self.fps.push(fp);
        self.ids.push(id);
    }
    pub fn heap_bytes(&self) -> usize {
        (self.keys.capacity() + self.fps.capacity()) * 8 + self.ids.heap_bytes()
    }
}

/// Why a shard's bytes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by another format version (a newer release?): must not be overwritten blindly.
    UnknownFormat(String),
    /// Truncated, bit-flipped or misplaced: the keys in it cannot be trusted.
    Corrupt(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownFormat(r) | DecodeError::Corrupt(r) => f.write_str(r),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The shard a key belongs to: its top `bits` bits.
pub fn shard_of(key: u64, bits: u8) -> usize {
    // `checked_shr(64)` is None: with 0 bits everything is shard 0.
    key.checked_shr(64 - u32::from(bits)).unwrap_or(0) as usize
}

/// Encodes `entries` (sorted, unique keys) as a base of `generation`.
pub fn encode(bits: u8, index: usize, generation: u64, entries: &Entries) -> Vec<u8> {
    frame(MAGIC, FORMAT_VERSION, bits, index, &[generation], entries)
}

/// Encodes a delta: `entries` (sorted, unique keys; fingerprint 0 for a removed key) as the save
/// numbered `seq` after the base of `generation`; `last` closes the generation.
pub fn encode_delta(
    bits: u8,
    index: usize,
    generation: u64,
    seq: u64,
    last: bool,
    entries: &Entries,
) -> Vec<u8> {
    let flags = if last { LAST } else { 0 };
    frame(
        DELTA_MAGIC,
        DELTA_VERSION,
        bits,
        index,
        &[generation, seq, flags],
        entries,
    )
}

/// A delta as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub entries: Entries,
    /// The last of its generation: a compaction closed it.
    pub last: bool,
}

fn frame(
    magic: &[u8; 7],
    version: u8,
    bits: u8,
    index: usize,
    extra: &[u64],
    entries: &Entries,
) -> Vec<u8> {
    let Entries { keys, fps, ids } = entries;
    debug_assert_eq!(keys.len(), fps.len());
    debug_assert_eq!(keys.len(), ids.len());
    debug_assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "keys must be strictly ascending"
    );
    let mut out = Vec::with_capacity(
        COMMON_HEADER_BYTES
            + 8 * extra.len()
            + TRAILER_BYTES
            + ENTRY_BYTES * keys.len()
            + ids.bytes.len(),
    );
    out.extend_from_slice(magic);
    out.push(version);
    out.push(bits);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(index as u32).to_le_bytes());
    out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for w in extra {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for k in keys {
        out.extend_from_slice(&k.to_le_bytes());
    }
    for f in fps {
        out.extend_from_slice(&f.to_le_bytes());
    }
    for e in &ids.ends {
        out.extend_from_slice(&e.to_le_bytes());
    }
    out.extend_from_slice(&ids.bytes);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A base as read: its entries and the generation of the deltas that follow it (`None` for a
/// version 1 or 2 base, which no delta follows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub entries: Entries,
    pub generation: Option<u64>,
}

/// Decodes and verifies a base expected at (`bits`, `index`), of any version read: checksum,
/// length, order, and that every key belongs to this shard.
pub fn decode_base(bytes: &[u8], bits: u8, index: usize) -> Result<Base, DecodeError> {
    let (version, extra, entries) = unframe(
        bytes,
        MAGIC,
        "shard",
        FIRST_FORMAT_VERSION..=FORMAT_VERSION,
        |v| usize::from(v >= 3),
        bits,
        index,
    )?;
    Ok(Base {
        entries,
        generation: (version >= 3).then(|| extra[0]),
    })
}

/// [`decode_base`]'s entries.
pub fn decode(bytes: &[u8], bits: u8, index: usize) -> Result<Entries, DecodeError> {
    decode_base(bytes, bits, index).map(|b| b.entries)
}

/// Decodes and verifies the delta expected as save `seq` after the base of `generation`.
pub fn decode_delta(
    bytes: &[u8],
    bits: u8,
    index: usize,
    generation: u64,
    seq: u64,
) -> Result<Delta, DecodeError> {
    let (_, extra, entries) = unframe(
        bytes,
        DELTA_MAGIC,
        "delta",
        DELTA_VERSION..=DELTA_VERSION,
        |_| 3,
        bits,
        index,
    )?;
    if extra[..2] != [generation, seq] {
        return Err(DecodeError::Corrupt(format!(
            "holds delta {} of generation {:x}, expected {seq} of {generation:x}",
            extra[1], extra[0]
        )));
    }
    if extra[2] & !LAST != 0 {
        return Err(DecodeError::Corrupt(format!(
            "unknown flags {:x}",
            extra[2]
        )));
    }
    Ok(Delta {
        entries,
        last: extra[2] & LAST != 0,
    })
}

fn unframe(
    bytes: &[u8],
    magic: &[u8; 7],
    what: &str,
    versions: std::ops::RangeInclusive<u8>,
    extra_words: impl Fn(u8) -> usize,
    bits: u8,
    index: usize,
) -> Result<(u8, Vec<u64>, Entries), DecodeError> {
    let corrupt = |why: String| Err(DecodeError::Corrupt(why));
    if bytes.len() < 8 || &bytes[..7] != magic {
        return corrupt(format!("not a sync-state {what} (bad magic)"));
    }
    let version = bytes[7];
    if !versions.contains(&version) {
        return Err(DecodeError::UnknownFormat(format!(
            "{what} format version {version} (this release reads {} to {})",
            versions.start(),
            versions.end()
        )));
    }
    let header = COMMON_HEADER_BYTES + 8 * extra_words(version);
    if bytes.len() < header + TRAILER_BYTES {
        return corrupt(format!(
            "{} bytes is shorter than a {what}'s frame",
            bytes.len()
        ));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_BYTES);
    if xxh3_64(body).to_le_bytes() != trailer {
        return corrupt("checksum mismatch".into());
    }
    let (got_bits, got_index) = (
        body[8],
        u32::from_le_bytes([body[12], body[13], body[14], body[15]]) as usize,
    );
    if (got_bits, got_index) != (bits, index) {
        return corrupt(format!(
            "holds shard {got_index} of {got_bits} bits, expected {index} of {bits}"
        ));
    }
    let count = u64::from_le_bytes(word(&body[16..24]));
    let extra: Vec<u64> = body[COMMON_HEADER_BYTES..header]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(word(c)))
        .collect();
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    let named = !(magic == MAGIC && version == 1);
    let columns = if named { ENTRY_BYTES } else { 16 };
    let fixed = n.checked_mul(columns).and_then(|b| b.checked_add(header));
    let fits = match fixed {
        Some(f) if !named => f == body.len(),
        Some(f) => f <= body.len(),
        None => false,
    };
    if !fits {
        return corrupt(format!(
            "count {count} does not match {} bytes",
            bytes.len()
        ));
    }
    let (key_bytes, rest) = body[header..].split_at(8 * n);
    let (fp_bytes, rest) = rest.split_at(8 * n);
    let keys: Vec<u64> = key_bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(word(c)))
        .collect();
    let fps: Vec<u64> = fp_bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(word(c)))
        .collect();
    let ids = if !named {
        Ids::none(n)
    } else {
        let (end_bytes, id_bytes) = rest.split_at(4 * n);
        let ends: Vec<u32> = end_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let ascending = ends.windows(2).all(|w| w[0] <= w[1]);
        if !ascending || ends.last().map_or(0, |e| *e as usize) != id_bytes.len() {
            return corrupt("the id column does not match its bytes".into());
        }
        Ids {
            ends,
            bytes: id_bytes.to_vec(),
        }
    };
    if !keys.windows(2).all(|w| w[0] < w[1]) {
        return corrupt("keys are not strictly ascending".into());
    }
    // Sorted, so checking both ends covers every key.
    if [keys.first(), keys.last()]
        .into_iter()
        .flatten()
        .any(|k| shard_of(*k, bits) != index)
    {
        return corrupt("holds keys of another shard".into());
    }
    Ok((version, extra, Entries { keys, fps, ids }))
}

/// `chunks_exact(8)` and the fixed ranges above always give 8 bytes.
fn word(c: &[u8]) -> [u8; 8] {
    let mut w = [0; 8];
    w.copy_from_slice(c);
    w
}
