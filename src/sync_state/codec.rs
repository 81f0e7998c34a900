//! The binary shard format: 16 bytes per key plus a 32-byte frame, little-endian, columnar.
//!
//! ```text
//! 0   magic "MOESYNC" + format version 1               8 bytes
//! 8   shard_bits u8, 3 zero bytes, shard index u32     8 bytes
//! 16  count n u64                                      8 bytes
//! 24  keys: n × u64, strictly ascending
//! ..  fingerprints: n × u64, in key order
//! ..  XXH3-64 of everything before it                  8 bytes
//! ```
//! Columns rather than pairs: decoding is two straight copies, and lookups binary-search a dense
//! array of keys.

use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 7] = b"MOESYNC";
pub const FORMAT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 24;
const TRAILER_BYTES: usize = 8;
/// Bytes a shard's frame adds to its 16 bytes per key.
pub const FRAME_BYTES: usize = HEADER_BYTES + TRAILER_BYTES;

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

/// Encodes sorted, unique `keys` with their `fps` (same length).
pub fn encode(bits: u8, index: usize, keys: &[u64], fps: &[u64]) -> Vec<u8> {
    debug_assert_eq!(keys.len(), fps.len());
    debug_assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "keys must be strictly ascending"
    );
    let mut out = Vec::with_capacity(FRAME_BYTES + 16 * keys.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(bits);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(index as u32).to_le_bytes());
    out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for k in keys {
        out.extend_from_slice(&k.to_le_bytes());
    }
    for f in fps {
        out.extend_from_slice(&f.to_le_bytes());
    }
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Decodes and verifies a shard expected at (`bits`, `index`): checksum, length, order, and that
/// every key belongs to this shard.
pub fn decode(bytes: &[u8], bits: u8, index: usize) -> Result<(Vec<u64>, Vec<u64>), DecodeError> {
    let corrupt = |why: String| Err(DecodeError::Corrupt(why));
    if bytes.len() < 8 || &bytes[..7] != MAGIC {
        return corrupt("not a sync-state shard (bad magic)".into());
    }
    if bytes[7] != FORMAT_VERSION {
        return Err(DecodeError::UnknownFormat(format!(
            "shard format version {} (this release reads {FORMAT_VERSION})",
            bytes[7]
        )));
    }
    if bytes.len() < FRAME_BYTES {
        return corrupt(format!(
            "{} bytes is shorter than a shard's frame",
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
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    if n.checked_mul(16).and_then(|b| b.checked_add(HEADER_BYTES)) != Some(body.len()) {
        return corrupt(format!(
            "count {count} does not match {} bytes",
            bytes.len()
        ));
    }
    let (key_bytes, fp_bytes) = body[HEADER_BYTES..].split_at(8 * n);
    let keys: Vec<u64> = key_bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(word(c)))
        .collect();
    let fps: Vec<u64> = fp_bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(word(c)))
        .collect();
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
    Ok((keys, fps))
}

/// `chunks_exact(8)` and the fixed ranges above always give 8 bytes.
fn word(c: &[u8]) -> [u8; 8] {
    let mut w = [0; 8];
    w.copy_from_slice(c);
    w
}
