//! The producer: on a blocking thread, stream → rows → elements → diff → bodies. Each row leaves
//! here with its fate — in a body to send, rejected (with row, column and reason), or unchanged —
//! sent down a bounded channel, so memory stays flat whatever the object's size.

use std::cell::Cell;

use tokio::sync::mpsc;

use crate::account::report::RowReport;
use crate::batch::{Batch, Batcher};
use crate::config::syncs::SyncSpec;
use crate::config::Config;
use crate::decode::{self, DecodeInput, Opened, RowSource};
use crate::map::ResolvedMapping;
use crate::model::{ElementKind, ObjectType};
use crate::sync_state::verdicts::PrintSpool;
use crate::sync_state::{Fingerprinter, SyncState};

/// What the decode thread hands to the delivery loop.
pub(super) enum Decoded {
    Batch(Batch),
    Rejected(RowReport),
    /// The sync state says MoEngage already has exactly these rows, `first..=last`: not sent.
    /// One message for a stretch: a message per row cost the delivery loop a wake-up per row.
    UnchangedRun {
        first: u64,
        last: u64,
    },
    /// The row's key already occurred in this object (it is still handled; the last one wins).
    DuplicateKey(RowReport),
    Warnings(Vec<RowReport>),
    /// The object cannot be decoded further. `unsent_rows` were read into a body never handed over.
    Failed {
        reason: String,
        unsent_rows: u64,
    },
    /// Reading stopped before `Limits::stop_after_row + 1`, the first row the sync state has no
    /// verdict for: the rest is left to the next run, as at a deadline.
    Paused,
}

/// Which rows the decode thread works on.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Limits {
    /// Rows 1..=skip_through were settled by an earlier run: read past them without a word.
    pub(super) skip_through: u64,
    /// Stop after this many rows (preview), flushing the last body.
    pub(super) max_rows: Option<u64>,
    /// Stop before any row after this one ([`Decoded::Paused`]): the first pass covered no more.
    pub(super) stop_after_row: Option<u64>,
    /// The time future-dated events are checked against (by the sending pass; the first pass
    /// maps nothing).
    pub(super) now: Option<chrono::DateTime<chrono::Utc>>,
}

/// A header read as one column that holds `;`, `|` or a tab was most likely split on the wrong
/// delimiter.
fn delimiter_hint(header: &[String]) -> String {
    match header {
        [only] => [';', '|', '\t']
            .into_iter()
            .find(|d| only.contains(*d))
            .map(|d| format!("; the header was read as one column — if the file is separated by {d:?}, set CSV_DELIMITER"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The blocking half: stream → rows → elements → bodies, sent down `tx`.
pub(super) fn decode_object(
    input: DecodeInput<'_>,
    config: &Config,
    spec: &SyncSpec,
    limits: Limits,
    sync: Option<&SyncState>,
    tx: &mpsc::Sender<Decoded>,
) {
    match decode::open(input) {
        Ok(Opened::Csv(rows)) => decode_rows(*rows, config, spec, limits, sync, tx),
        Ok(Opened::Ndjson(rows)) => decode_rows(rows, config, spec, limits, sync, tx),
        Ok(Opened::Parquet(rows)) => decode_rows(rows, config, spec, limits, sync, tx),
        Err(e) => {
            let _ = tx.blocking_send(Decoded::Failed {
                reason: format!("not a readable export: {e}"),
                unsent_rows: 0,
            });
        }
    }
}

/// The bodies of `spec`'s API: Bulk Import up to `BATCH_MAX_RECORDS`, the others one record each.
fn batcher_for(config: &Config, spec: &SyncSpec) -> Batcher {
    let max_records = match spec.object_type {
        ObjectType::BulkImport => config.batch_max_records,
        _ => 1,
    };
    Batcher::new(spec.object_type, max_records, config.batch_max_bytes)
}

/// How far the first pass ([`spool_prints`]) got.
pub(super) struct FirstPass {
    pub(super) spool: PrintSpool,
    pub(super) coverage: Coverage,
}

/// What the first pass read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Coverage {
    /// The last row read when the pass stopped early (its time or row allowance ran out); the
    /// second pass stops after it. `None`: it read to the end (or to an error).
    pub(super) stopped_after: Option<u64>,
    /// Read to the end, every row keyed (and the mapping without a name warning): the last row
    /// read. If the state then finds every one of them unchanged, the second pass has nothing to
    /// do: rows whose cells MoEngage accepted before are valid, and sent nothing.
    pub(super) clean_through: Option<u64>,
}

/// The first pass over an object with sync state: every keyed row's print (key, cell
/// fingerprint, row, kind), computed as the second pass will but without mapping the row, into
/// `spool`; nothing is sent or reported (the second pass maps what is not unchanged, and
/// reports rejections). Stops reading after `max_rows` keyed rows or at `until`. Blocking.
pub(super) fn spool_prints(
    input: DecodeInput<'_>,
    spec: &SyncSpec,
    limits: Limits,
    mut spool: PrintSpool,
    max_rows: u64,
    until: Option<std::time::Instant>,
) -> std::io::Result<FirstPass> {
    let args = (spec, limits, max_rows, until);
    let coverage = match decode::open(input) {
        Ok(Opened::Csv(mut rows)) => spool_rows(&mut *rows, args, &mut spool)?,
        Ok(Opened::Ndjson(mut rows)) => spool_rows(&mut rows, args, &mut spool)?,
        Ok(Opened::Parquet(mut rows)) => spool_rows(&mut rows, args, &mut spool)?,
        // The second pass meets the same error and reports it.
        Err(_) => Coverage::default(),
    };
    Ok(FirstPass { spool, coverage })
}

/// [`spool_prints`]'s row loop. Returns the last row read if it stopped early.
/// The longest run of unchanged rows sent as one message.
const UNCHANGED_RUN: u64 = 4096;

/// Rows the first pass may always classify, whatever `STATE_MEMORY_MB` says.
pub(super) const MIN_FIRST_PASS_ROWS: u64 = 10_000;

type SpoolArgs<'a> = (&'a SyncSpec, Limits, u64, Option<std::time::Instant>);

fn spool_rows<R: RowSource>(
    rows: &mut R,
    (spec, limits, max_rows, until): SpoolArgs<'_>,
    spool: &mut PrintSpool,
) -> std::io::Result<Coverage> {
    let mut coverage = Coverage::default();
    let Ok(mapping) = spec.field_mapping.resolve(rows.header(), spec.sync_mode) else {
        return Ok(coverage);
    };
    // A row the second pass would report (a warning, a rejection, a row without a key) makes it
    // needed even when every keyed row turns out unchanged.
    let mut clean = mapping.name_warnings().is_empty();
    let fingerprinter = Fingerprinter::new(spec.object_type, &mapping);
    let (mut key, mut cells) = (Vec::with_capacity(256), Vec::with_capacity(4096));
    let mut last_read = limits.skip_through;
    loop {
        // The verdicts cost half a byte per row of the range read, keyed or not. The clock is
        // checked once a row is covered (so that every run makes progress), then every 256 rows.
        let covered = last_read - limits.skip_through;
        if covered >= max_rows
            || (covered == 1 || covered % 256 == 0)
                && until.is_some_and(|t| std::time::Instant::now() >= t)
        {
            coverage.stopped_after = Some(last_read);
            return Ok(coverage);
        }
        let row_no = match rows.next_row() {
            Ok(Some(Ok(row))) => row.number,
            Ok(Some(Err(bad))) => {
                last_read = last_read.max(bad.row);
                clean &= bad.row <= limits.skip_through;
                continue;
            }
            Ok(None) => {
                coverage.clean_through = clean.then_some(last_read);
                return Ok(coverage);
            }
            // The second pass meets the same error, at the same row, and reports it.
            Err(_) => return Ok(coverage),
        };
        if row_no <= limits.skip_through {
            continue;
        }
        last_read = row_no;
        // Keyed and fingerprinted by its cells, not mapped: a row whose cells match what MoEngage
        // accepted before encodes as it did then. Any other row is mapped by the second pass,
        // which rejects or warns about it there.
        match mapping.identify(&*rows, &mut key, &mut cells) {
            Some(kind) => {
                spool.push(row_no, kind, fingerprinter.print_cells(kind, &key, &cells))?
            }
            None => clean = false,
        }
    }
}

/// [`decode_object`]'s row loop, compiled per format.
fn decode_rows<R: RowSource>(
    mut rows: R,
    config: &Config,
    spec: &SyncSpec,
    limits: Limits,
    sync: Option<&SyncState>,
    tx: &mpsc::Sender<Decoded>,
) {
    let max_rows = limits.max_rows;
    // Unchanged rows go out as runs; any other fate sends the run before it, keeping row order.
    let unchanged_run: Cell<Option<(u64, u64)>> = Cell::new(None);
    let flush = || match unchanged_run.take() {
        Some((first, last)) => tx
            .blocking_send(Decoded::UnchangedRun { first, last })
            .is_ok(),
        None => true,
    };
    let send = |m: Decoded| flush() && tx.blocking_send(m).is_ok();
    let unchanged = |row: u64| match unchanged_run.get() {
        Some((first, last)) if last + 1 == row && row - first < UNCHANGED_RUN => {
            unchanged_run.set(Some((first, row)));
            true
        }
        _ => {
            let sent = flush();
            unchanged_run.set(Some((row, row)));
            sent
        }
    };
    let mapping: ResolvedMapping = match spec.field_mapping.resolve(rows.header(), spec.sync_mode) {
        Ok(m) => m,
        Err(e) => {
            send(Decoded::Failed {
                reason: format!(
                    "the mapping does not fit this export: {e}{}",
                    delimiter_hint(rows.header())
                ),
                unsent_rows: 0,
            });
            return;
        }
    };
    let name_warnings: Vec<RowReport> = mapping
        .name_warnings()
        .into_iter()
        .map(|w| RowReport {
            row: 0,
            line: None,
            column: w.column,
            reason: w.reason,
        })
        .collect();
    if !name_warnings.is_empty() && !send(Decoded::Warnings(name_warnings)) {
        return;
    }
    let mut batcher = batcher_for(config, spec);
    let fingerprinter = Fingerprinter::new(spec.object_type, &mapping);
    let now = limits.now.unwrap_or_else(chrono::Utc::now);
    let mut element = Vec::with_capacity(4096);
    let (mut key, mut cells) = (Vec::with_capacity(256), Vec::with_capacity(4096));
    let mut seen = 0u64;
    loop {
        if max_rows.is_some_and(|max| seen >= max) {
            break;
        }
        seen += 1;
        let row = match rows.next_row() {
            Ok(Some(row)) => row.map(|r| (r.number, r.line)),
            Ok(None) => break,
            Err(e) => {
                let unsent = batcher.finish().map_or(0, |b| b.records);
                send(Decoded::Failed {
                    reason: format!("the export could not be read to the end: {e}"),
                    unsent_rows: unsent,
                });
                return;
            }
        };
        let row = match row {
            Ok(row) => row,
            Err(bad) if bad.row <= limits.skip_through => continue,
            Err(bad) if limits.stop_after_row.is_some_and(|last| bad.row > last) => {
                if let Some(last) = batcher.finish() {
                    if !send(Decoded::Batch(last)) {
                        return;
                    }
                }
                send(Decoded::Paused);
                return;
            }
            Err(bad) => {
                if !send(Decoded::Rejected(RowReport {
                    row: bad.row,
                    line: bad.line,
                    column: String::new(),
                    reason: bad.reason,
                })) {
                    return;
                }
                continue;
            }
        };
        let (row_no, line) = row;
        if row_no <= limits.skip_through {
            continue;
        }
        if limits.stop_after_row.is_some_and(|last| row_no > last) {
            if let Some(last) = batcher.finish() {
                if !send(Decoded::Batch(last)) {
                    return;
                }
            }
            send(Decoded::Paused);
            return;
        }
        // Unchanged by the first pass's verdict: counted without mapping the row again.
        if sync.is_some_and(|state| state.prepared_unchanged(row_no)) {
            if !unchanged(row_no) {
                return;
            }
            continue;
        }
        let reject = |column: String, reason: String| {
            Decoded::Rejected(RowReport {
                row: row_no,
                line,
                column,
                reason,
            })
        };
        // The row just read is the decoder's current one: cells come straight from `rows`.
        match mapping.encode(&rows, &mut element, now) {
            Err(issue) => {
                if !send(reject(issue.column, issue.reason)) {
                    return;
                }
            }
            Ok((kind, encoded)) => {
                if let Err(too_large) = batcher.check_alone(&element) {
                    if !send(reject(String::new(), too_large.to_string())) {
                        return;
                    }
                    continue;
                }
                // Diff against the sync state: users by customer_id, events by their event id.
                let mut print = None;
                if let Some(state) = sync {
                    let keyed = mapping.identify(&rows, &mut key, &mut cells) == Some(kind);
                    if keyed {
                        let p = fingerprinter.print_cells(kind, &key, &cells);
                        let id = (kind == ElementKind::Customer).then_some(&key[..]);
                        // A state from before cell fingerprints: MoEngage may hold this very
                        // element, under its element fingerprint.
                        let legacy = fingerprinter.fingerprint(&element);
                        let decided =
                            state.carry_over(row_no, p, legacy, id).and_then(
                                |carried| match carried {
                                    true => Ok(None),
                                    false => state.classify_row(kind, row_no, p, id).map(Some),
                                },
                            );
                        match decided {
                            Ok(None) => {
                                if !unchanged(row_no) {
                                    return;
                                }
                                continue;
                            }
                            Ok(Some(decision)) => {
                                if decision.duplicate {
                                    let what = if kind == ElementKind::Event {
                                        "event id"
                                    } else {
                                        "customer_id"
                                    };
                                    let w = RowReport { row: row_no, line, column: String::new(), reason: format!("{what} {} occurred earlier in this export; the last occurrence wins", String::from_utf8_lossy(&key)) };
                                    if !send(Decoded::DuplicateKey(w)) {
                                        return;
                                    }
                                }
                                if !decision.send {
                                    if !unchanged(row_no) {
                                        return;
                                    }
                                    continue;
                                }
                                print = Some(p);
                            }
                            Err(e) => {
                                let unsent = batcher.finish().map_or(0, |b| b.records);
                                send(Decoded::Failed {
                                    reason: format!("could not read the sync state: {e}"),
                                    unsent_rows: unsent,
                                });
                                return;
                            }
                        }
                    }
                }
                match batcher.push(&element, row_no, kind == ElementKind::Event, print) {
                    Ok(Some(full)) => {
                        if !send(Decoded::Batch(full)) {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(too_large) => {
                        if !send(reject(String::new(), too_large.to_string())) {
                            return;
                        }
                        continue;
                    }
                }
                if !encoded.warnings.is_empty() {
                    let ws = encoded
                        .warnings
                        .into_iter()
                        .map(|w| RowReport {
                            row: row_no,
                            line,
                            column: w.column,
                            reason: w.reason,
                        })
                        .collect();
                    if !send(Decoded::Warnings(ws)) {
                        return;
                    }
                }
            }
        }
    }
    if let Some(last) = batcher.finish() {
        send(Decoded::Batch(last));
    }
    flush();
}
