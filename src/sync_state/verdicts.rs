//! Verdicts for a whole part in bounded memory: the prints of its rows are spooled (to `/tmp`
//! past a budget), then joined with the stored state one shard at a time, so that a part is
//! classified without the state ever being in memory whole.
//!
//! ```text
//! first pass:  row → (key, fingerprint, row, kind) → PrintSpool   (by shard, spilled past the budget)
//! prepare:     for each shard in order: load it, its slice of the spool in row order,
//!              Shard::classify each in turn → Decisions (4 bits a row), keep only what a save needs
//! second pass: the row's decision from Decisions; nothing is looked up
//! ```
//!
//! Classifying a key's rows in row order against the shard as loaded is exactly what the
//! in-memory path does (keys are independent of one another), so the verdicts are the same; the
//! property test in `tests.rs` holds the two paths to that.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::shard::Verdict;
use super::{shard_of, RowPrint};
use crate::model::ElementKind;

/// Spill directories: `{SPOOL_PREFIX}{pid}-{n}` under `/tmp`, removed with the spool (and, if
/// the process died first, by the next spool's first spill).
const SPOOL_PREFIX: &str = "moengage-sync-spool-";

/// Bytes of one spooled print.
const ENTRY_BYTES: usize = 24;
/// The kind bit in a spooled row number (rows stay far below 2^63).
const EVENT_BIT: u64 = 1 << 63;

/// One keyed row of a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: u64,
    pub fingerprint: u64,
    /// The row number, with [`EVENT_BIT`] set for events.
    row_kind: u64,
}

impl Entry {
    pub fn row(&self) -> u64 {
        self.row_kind & !EVENT_BIT
    }

    pub fn kind(&self) -> ElementKind {
        if self.row_kind & EVENT_BIT != 0 {
            ElementKind::Event
        } else {
            ElementKind::Customer
        }
    }

    fn to_bytes(self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[..8].copy_from_slice(&self.key.to_le_bytes());
        b[8..16].copy_from_slice(&self.fingerprint.to_le_bytes());
        b[16..].copy_from_slice(&self.row_kind.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Entry {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Entry {
            key: word(0),
            fingerprint: word(8),
            row_kind: word(16),
        }
    }
}

/// The prints of one part's keyed rows, grouped by shard and in row order within each (rows
/// are pushed in order, so nothing is ever sorted), kept in memory up to a budget and spilled
/// to a directory of their own as runs beyond it.
pub struct PrintSpool {
    shard_bits: u8,
    /// Entries (of capacity) kept in memory before a run is spilled.
    max_in_memory: usize,
    /// Shard `s`'s entries since the last spill.
    buffer: Vec<Vec<Entry>>,
    /// The capacity of `buffer`'s vectors, in entries: what they hold in memory.
    capacity: usize,
    dir: Option<SpoolDir>,
    runs: Vec<Run>,
    parent: PathBuf,
    first_row: Option<u64>,
    last_row: u64,
    rows: u64,
}

/// A spilled run: entries by shard, in row order within each, and where each shard's start.
struct Run {
    path: PathBuf,
    /// `starts[s]..starts[s + 1]`: shard `s`'s entries, in entries.
    starts: Vec<u64>,
}

/// A directory removed with everything in it when dropped.
struct SpoolDir(PathBuf);

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl PrintSpool {
    /// A spool for a state of `2^shard_bits` shards that keeps up to `budget_bytes` of prints in
    /// memory and spills the rest under `parent` (`/tmp` in Lambda).
    pub fn new(shard_bits: u8, budget_bytes: usize, parent: &Path) -> Self {
        PrintSpool {
            shard_bits,
            max_in_memory: (budget_bytes / ENTRY_BYTES).max(1024),
            buffer: (0..1usize << shard_bits).map(|_| Vec::new()).collect(),
            capacity: 0,
            dir: None,
            runs: Vec::new(),
            parent: parent.to_path_buf(),
            first_row: None,
            last_row: 0,
            rows: 0,
        }
    }

    /// Adds one keyed row. Rows come in ascending order.
    pub fn push(&mut self, row: u64, kind: ElementKind, print: RowPrint) -> std::io::Result<()> {
        let kind_bit = if kind == ElementKind::Event {
            EVENT_BIT
        } else {
            0
        };
        self.first_row.get_or_insert(row);
        self.last_row = self.last_row.max(row);
        self.rows += 1;
        let Some(shard) = self.buffer.get_mut(shard_of(print.key, self.shard_bits)) else {
            return Ok(());
        };
        let before = shard.capacity();
        shard.push(Entry {
            key: print.key,
            fingerprint: print.fingerprint,
            row_kind: (row & !EVENT_BIT) | kind_bit,
        });
        self.capacity += shard.capacity() - before;
        if self.capacity >= self.max_in_memory {
            self.spill()?;
        }
        Ok(())
    }

    /// Keyed rows pushed.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The rows the spool covers: from the first pushed to the last, if any.
    pub fn row_range(&self) -> Option<(u64, u64)> {
        self.first_row.map(|f| (f, self.last_row))
    }

    /// Bytes spilled to disk so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| r.starts.last().copied().unwrap_or(0) * ENTRY_BYTES as u64)
            .sum()
    }

    fn spill(&mut self) -> std::io::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        if self.dir.is_none() {
            crate::state::cache::remove_stale_dirs(&self.parent, SPOOL_PREFIX);
            let path = self.parent.join(format!(
                "{SPOOL_PREFIX}{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path)?;
            self.dir = Some(SpoolDir(path));
        }
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let path = dir.0.join(format!("run-{}", self.runs.len()));
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&path)?);
        let mut starts = Vec::with_capacity(self.buffer.len() + 1);
        let mut at = 0u64;
        for shard in &mut self.buffer {
            starts.push(at);
            for e in shard.iter() {
                out.write_all(&e.to_bytes())?;
            }
            at += shard.len() as u64;
            // Emptied, not kept: the next run's shards grow back to what they need.
            *shard = Vec::new();
        }
        starts.push(at);
        out.flush()?;
        self.runs.push(Run { path, starts });
        self.capacity = 0;
        Ok(())
    }

    /// Ends the first pass: what is still in memory stays there.
    pub fn finish(self) -> Spooled {
        Spooled { spool: self }
    }
}

/// A finished spool, read back one shard at a time.
pub struct Spooled {
    spool: PrintSpool,
}

impl Spooled {
    pub fn shard_bits(&self) -> u8 {
        self.spool.shard_bits
    }

    pub fn row_range(&self) -> Option<(u64, u64)> {
        self.spool.row_range()
    }

    pub fn spilled_bytes(&self) -> u64 {
        self.spool.spilled_bytes()
    }

    /// Shard `index`'s entries, in row order: the spilled runs' (in the order they were
    /// spilled), then what is still in memory.
    pub(crate) fn shard(&self, index: usize) -> std::io::Result<Vec<Entry>> {
        let memory = self.spool.buffer.get(index).map_or(&[][..], Vec::as_slice);
        let spilled: u64 = self.spool.runs.iter().map(|r| r.len(index)).sum();
        let mut out = Vec::with_capacity(spilled as usize + memory.len());
        let mut bytes = Vec::new();
        for run in &self.spool.runs {
            let (a, n) = (run.start(index), run.len(index));
            if n == 0 {
                continue;
            }
            let mut f = File::open(&run.path)?;
            f.seek(SeekFrom::Start(a * ENTRY_BYTES as u64))?;
            bytes.resize(n as usize * ENTRY_BYTES, 0);
            f.read_exact(&mut bytes)?;
            out.extend(bytes.chunks_exact(ENTRY_BYTES).map(Entry::from_bytes));
        }
        out.extend_from_slice(memory);
        Ok(out)
    }
}

impl Run {
    fn start(&self, shard: usize) -> u64 {
        self.starts.get(shard).copied().unwrap_or(0)
    }
    /// Shard `shard`'s entries in this run (0 for a shard the spool does not have).
    fn len(&self, shard: usize) -> u64 {
        match (self.starts.get(shard), self.starts.get(shard + 1)) {
            (Some(a), Some(b)) => b.saturating_sub(*a),
            _ => 0,
        }
    }
}

/// What the first pass decided for each row of a range: 4 bits a row (verdict and duplicate),
/// nothing for rows without a key.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    first_row: u64,
    rows: u64,
    nibbles: Vec<u8>,
}

const NONE: u8 = 0;
const DUPLICATE: u8 = 0b100;

impl Decisions {
    pub fn new(first_row: u64, last_row: u64) -> Self {
        let rows = last_row.saturating_sub(first_row) + 1;
        Decisions {
            first_row,
            rows,
            nibbles: vec![NONE; rows.div_ceil(2) as usize],
        }
    }

    pub fn set(&mut self, row: u64, verdict: Verdict, duplicate: bool) {
        let code = match verdict {
            Verdict::New => 1,
            Verdict::Changed => 2,
            Verdict::Unchanged => 3,
        } | if duplicate { DUPLICATE } else { 0 };
        let Some(i) = row.checked_sub(self.first_row).filter(|&i| i < self.rows) else {
            return;
        };
        if let Some(b) = self.nibbles.get_mut((i / 2) as usize) {
            let shift = (i % 2) * 4;
            *b = (*b & !(0x0f << shift)) | (code << shift);
        }
    }

    /// The verdict and duplicate flag the first pass gave `row`, if it saw the row keyed.
    pub fn get(&self, row: u64) -> Option<(Verdict, bool)> {
        let i = row.checked_sub(self.first_row).filter(|&i| i < self.rows)?;
        let b = self.nibbles.get((i / 2) as usize)?;
        let code = (b >> ((i % 2) * 4)) & 0x0f;
        let verdict = match code & 0b11 {
            1 => Verdict::New,
            2 => Verdict::Changed,
            3 => Verdict::Unchanged,
            _ => return None,
        };
        Some((verdict, code & DUPLICATE != 0))
    }

    pub fn heap_bytes(&self) -> usize {
        self.nibbles.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spilled_spool_gives_back_every_shard_in_row_order() {
        let dir = std::env::temp_dir();
        // 1,024 entries in memory at most: 5,000 rows make four runs and a remainder.
        let mut spool = PrintSpool::new(4, 0, &dir);
        let mut all = Vec::new();
        for row in 1..=5_000u64 {
            let key = xxhash_rust::xxh3::xxh3_64(&(row % 3_000).to_le_bytes());
            let kind = if row % 7 == 0 {
                ElementKind::Event
            } else {
                ElementKind::Customer
            };
            let print = RowPrint {
                key,
                fingerprint: row,
            };
            spool.push(row, kind, print).unwrap();
            all.push((key, row, kind));
        }
        assert!(spool.spilled_bytes() > 0);
        let spooled = spool.finish();
        assert_eq!(spooled.row_range(), Some((1, 5_000)));
        let mut back = Vec::new();
        for s in 0..16 {
            let entries = spooled.shard(s).unwrap();
            assert!(entries.iter().all(|e| shard_of(e.key, 4) == s));
            assert!(entries.windows(2).all(|w| w[0].row() < w[1].row()));
            back.extend(entries.iter().map(|e| (e.key, e.row(), e.kind())));
            assert!(entries.iter().all(|e| e.fingerprint == e.row()));
        }
        all.sort_by_key(|&(k, r, _)| (k, r));
        back.sort_by_key(|&(k, r, _)| (k, r));
        assert_eq!(all, back);
    }

    #[test]
    fn decisions_keep_four_bits_a_row() {
        let mut d = Decisions::new(10, 20);
        d.set(10, Verdict::New, false);
        d.set(11, Verdict::Unchanged, true);
        d.set(20, Verdict::Changed, false);
        d.set(9, Verdict::New, false); // outside: ignored
        d.set(21, Verdict::New, false);
        assert_eq!(d.get(10), Some((Verdict::New, false)));
        assert_eq!(d.get(11), Some((Verdict::Unchanged, true)));
        assert_eq!(d.get(12), None);
        assert_eq!(d.get(20), Some((Verdict::Changed, false)));
        assert_eq!(d.get(9), None);
        assert_eq!(d.get(21), None);
        assert_eq!(d.heap_bytes(), 6);
    }
}
