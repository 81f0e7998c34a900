//! Sync-state bytes as read from S3: a shard's base and its deltas, in any version. Whatever the
//! bytes, decoding returns an error or entries that hold the format's promises (keys strictly
//! ascending and in the shard, one id slot per key), and those entries encode back to bytes that
//! decode to the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moengage_sync::sync_state::codec::{self, shard_of, Entries};

fn holds(e: &Entries, bits: u8, index: usize) {
    assert_eq!(e.keys.len(), e.fps.len());
    assert_eq!(e.keys.len(), e.ids.len());
    assert!(e.keys.windows(2).all(|w| w[0] < w[1]));
    assert!(e.keys.iter().all(|k| shard_of(*k, bits) == index));
}

fuzz_target!(|data: &[u8]| {
    // The shard a well-formed input claims to be, else shard 0 of 0 bits.
    let (bits, index) = match data.get(8..16) {
        Some(h) if h[0] <= 16 => (h[0], u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize),
        _ => (0, 0),
    };
    if let Ok(base) = codec::decode_base(data, bits, index) {
        holds(&base.entries, bits, index);
        let again = codec::encode(bits, index, base.generation.unwrap_or(1), &base.entries);
        assert_eq!(codec::decode(&again, bits, index).as_ref(), Ok(&base.entries));
    }
    let (generation, seq) = match (data.get(24..32), data.get(32..40)) {
        (Some(g), Some(s)) => (
            u64::from_le_bytes(g.try_into().unwrap_or_default()),
            u64::from_le_bytes(s.try_into().unwrap_or_default()),
        ),
        _ => (0, 0),
    };
    if let Ok(delta) = codec::decode_delta(data, bits, index, generation, seq) {
        holds(&delta.entries, bits, index);
        let again = codec::encode_delta(bits, index, generation, seq, delta.last, &delta.entries);
        let back = codec::decode_delta(&again, bits, index, generation, seq);
        assert_eq!(back.map(|d| (d.entries, d.last)), Ok((delta.entries, delta.last)));
    }
});
