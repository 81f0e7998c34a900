//! The ledger: accounts for every row of one run, with no I/O. It takes each row's fate from the
//! producer and each body's outcome from delivery, and keeps the promise
//! `rows_read = delivered + unchanged + rejected + dead_lettered + pending` and the checkpoint
//! (`resume_after_row`): rows settled without a request (rejected, unchanged) are held until the
//! batch boundary passes them, so a checkpoint never splits what a run counted.
//!
//! Bodies are delivered concurrently and may complete out of order: the checkpoint only advances
//! over the contiguous prefix of settled bodies, and held rows settle only once every body before
//! them has.
//!
//! Held rows are kept as runs of consecutive rows of one kind, and a rejection's details only
//! while the report will still list them: memory does not grow with the number of unchanged or
//! rejected rows (an unchanged snapshot is one run), only with how they alternate inside one body's
//! span of rows.

use std::collections::VecDeque;

use super::produce::Decoded;
use crate::account::report::{
    RowReport, RunReport, Status, MAX_LISTED_ISSUES, MAX_REASON_KINDS, OTHER_REASONS,
};
use crate::batch::Batch;
use crate::deliver::Delivery;

/// How a held row was settled without a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unchanged,
    Rejected,
}

/// Consecutive rows `first..=last` of one kind, held until the batch boundary passes them.
#[derive(Debug)]
struct Run {
    first: u64,
    last: u64,
    kind: Kind,
}

impl Run {
    fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// A body handed to delivery, until it and every body before it have settled.
#[derive(Debug)]
struct Slot {
    first_row: u64,
    last_row: u64,
    records: u64,
    state: SlotState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    InFlight,
    /// Delivered or dead-lettered: counted.
    Settled,
    /// Handed back unsent (deadline, misconfiguration): pending for the next run.
    Unsent,
}

/// Which dispatched body an outcome is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotId(u64);

/// The accounting of one run.
pub(super) struct Ledger {
    /// Dispatched bodies in row order, from the oldest not yet settled with all before it.
    slots: VecDeque<Slot>,
    /// The id of `slots[0]`.
    first_slot: u64,
    /// First row of the newest body the producer handed over: held rows before it, and before
    /// every unsettled body, are settled.
    newest_first_row: u64,
    report: RunReport,
    /// Rows settled without a request, not yet passed by a batch boundary, in row order.
    held: VecDeque<Run>,
    /// Details of held rejections, in row order, as many as the report will still list.
    held_reports: VecDeque<RowReport>,
    /// The highest row number the producer has handed over.
    last_row_read: u64,
    /// Why the object cannot be finished, once known (the first reason wins).
    failure: Option<String>,
    /// Kinds of rejection seen (`RowReport::kind`), at most `MAX_REASON_KINDS` + 1 (the rest).
    reasons: Vec<String>,
    reason_ids: std::collections::HashMap<String, u8>,
    /// The reason kind of each held rejected row, in row order: one byte per row, so rejections
    /// whose reasons alternate cost no more than a run of one reason does per row.
    held_reasons: VecDeque<u8>,
    /// The producer stopped where the sync state's first pass stopped: continue, as at a deadline.
    paused: bool,
}

impl Ledger {
    /// Starts from a report whose `resume_after_row` is where this run begins.
    pub(super) fn new(report: RunReport) -> Self {
        Ledger {
            last_row_read: report.resume_after_row,
            report,
            slots: VecDeque::new(),
            first_slot: 0,
            newest_first_row: 0,
            held: VecDeque::new(),
            held_reports: VecDeque::new(),
            failure: None,
            reasons: Vec::new(),
            reason_ids: std::collections::HashMap::new(),
            held_reasons: VecDeque::new(),
            paused: false,
        }
    }

    /// Records one fate from the producer; a body to send is handed back.
    pub(super) fn record(&mut self, fate: Decoded) -> Option<Batch> {
        match fate {
            Decoded::Rejected(r) => {
                self.last_row_read = self.last_row_read.max(r.row);
                let reason = self.reason_id(r.kind());
                self.held_reasons.push_back(reason);
                self.hold(r.row, Kind::Rejected);
                // Settled rows are a prefix of the held ones, in row order: the first held
                // reports are exactly the ones the report will list.
                if self.report.rejected_rows.len() + self.held_reports.len() < MAX_LISTED_ISSUES {
                    self.held_reports.push_back(r.bounded());
                }
            }
            Decoded::UnchangedRun { first, last } => {
                self.last_row_read = self.last_row_read.max(last);
                self.hold_run(first, last, Kind::Unchanged);
            }
            Decoded::DuplicateKey(r) => {
                self.report.duplicate_keys += 1;
                self.report.warn(r);
            }
            Decoded::Warnings(ws) => {
                // Row 0 warnings concern the mapping itself, not a row.
                if ws.iter().any(|w| w.row > 0) {
                    self.report.summary.rows_warned += 1;
                }
                for w in ws {
                    self.report.warn(w);
                }
            }
            Decoded::Failed {
                reason,
                unsent_rows,
            } => {
                self.report.summary.rows_read += unsent_rows;
                self.report.summary.rows_pending += unsent_rows;
                self.failure = Some(reason);
            }
            Decoded::Paused => self.paused = true,
            Decoded::Batch(batch) => {
                self.last_row_read = self.last_row_read.max(batch.last_row);
                self.newest_first_row = batch.first_row;
                // Rows before this body, and before every body still in flight, can no longer
                // fall behind a checkpoint.
                self.settle(self.frontier());
                return Some(batch);
            }
        }
        None
    }

    /// What sending one body took: requests, retries, 429s, time waiting on MoEngage.
    pub(super) fn attempted(&mut self, d: &Delivery) {
        self.report.summary.requests_sent += u64::from(d.attempts);
        self.report.retries += u64::from(d.attempts.saturating_sub(1));
        self.report.rate_limited += u64::from(d.rate_limited);
        self.report.moengage_latency_ms += d.latency.as_millis() as u64;
    }

    /// `batch` is handed to delivery; its outcome comes back with the returned id.
    pub(super) fn dispatched(&mut self, batch: &Batch) -> SlotId {
        self.slots.push_back(Slot {
            first_row: batch.first_row,
            last_row: batch.last_row,
            records: batch.records,
            state: SlotState::InFlight,
        });
        SlotId(self.first_slot + self.slots.len() as u64 - 1)
    }

    /// Bodies dispatched and not yet settled.
    pub(super) fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state == SlotState::InFlight)
            .count()
    }

    /// MoEngage accepted the body.
    pub(super) fn delivered(&mut self, id: SlotId) {
        let records = self.set(id, SlotState::Settled);
        self.report.summary.rows_read += records;
        self.report.summary.rows_delivered += records;
        self.advance();
    }

    /// The body went to the dead-letter queue as `message_id`.
    pub(super) fn dead_lettered(&mut self, id: SlotId, message_id: String) {
        let records = self.set(id, SlotState::Settled);
        self.report.summary.rows_read += records;
        self.report.summary.rows_dead_lettered += records;
        self.report.dead_lettered(message_id);
        self.advance();
    }

    /// The body came back unsent (the deadline, or a configuration MoEngage refuses): it and
    /// everything after it are left to the next run.
    pub(super) fn returned(&mut self, id: SlotId) {
        self.set(id, SlotState::Unsent);
    }

    fn set(&mut self, id: SlotId, state: SlotState) -> u64 {
        let slot = &mut self.slots[(id.0 - self.first_slot) as usize];
        debug_assert_eq!(slot.state, SlotState::InFlight, "one outcome per body");
        slot.state = state;
        slot.records
    }

    /// Drops the settled prefix, checkpointing after it, and settles held rows it passed.
    fn advance(&mut self) {
        while let Some(s) = self.slots.front() {
            if s.state != SlotState::Settled {
                break;
            }
            self.report.resume_after_row = s.last_row;
            self.slots.pop_front();
            self.first_slot += 1;
        }
        self.settle(self.frontier());
    }

    /// Rows before this are passed by every body that was handed over and is not settled.
    fn frontier(&self) -> u64 {
        let oldest = self.slots.front().map_or(u64::MAX, |s| s.first_row);
        oldest.min(self.newest_first_row)
    }

    /// The producer is done (read to the end, or to a failure) and every body dispatched has
    /// settled: every held row is settled, and a run without failure checkpoints at the last row
    /// read.
    pub(super) fn read_to_end(&mut self) {
        debug_assert!(self.slots.is_empty(), "every dispatched body settled");
        self.settle(u64::MAX);
        if self.failure.is_none() {
            self.report.resume_after_row = self.last_row_read;
        }
    }

    /// The run stops: nothing is in flight any more; `unsent` is a body the producer handed over
    /// that was never dispatched. The first body not delivered, and every row after its start, are
    /// pending; the next run resumes just before it. Bodies after it that did settle are counted
    /// as they are (and read again by the next run).
    pub(super) fn stopped(&mut self, unsent: Option<&Batch>) {
        debug_assert_eq!(self.in_flight(), 0, "in-flight bodies settle before a stop");
        let first_unsent = self
            .slots
            .iter()
            .find(|s| s.state == SlotState::Unsent)
            .map(|s| s.first_row);
        let Some(cut) = first_unsent.or(unsent.map(|b| b.first_row)) else {
            // Nothing was left unsent: as if read to the end of what was read.
            self.settle(u64::MAX);
            self.report.resume_after_row = self.report.resume_after_row.max(self.last_row_read);
            return;
        };
        self.settle(cut);
        let pending = self
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Unsent)
            .map(|s| s.records)
            .sum::<u64>()
            + unsent.map_or(0, |b| b.records)
            + self.held.iter().map(Run::len).sum::<u64>();
        self.slots.clear();
        self.held.clear();
        self.held_reports.clear();
        self.held_reasons.clear();
        self.report.summary.rows_read += pending;
        self.report.summary.rows_pending += pending;
        self.report.resume_after_row = cut - 1;
    }

    /// Whether the object cannot be finished.
    /// The producer stopped where the first pass stopped ([`Decoded::Paused`]).
    pub(super) fn paused(&self) -> bool {
        self.paused
    }

    pub(super) fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The object cannot be finished; keeps the first reason.
    pub(super) fn fail(&mut self, reason: String) {
        self.failure.get_or_insert(reason);
    }

    /// For what the ledger does not account (the sync-state save).
    pub(super) fn report_mut(&mut self) -> &mut RunReport {
        &mut self.report
    }

    /// The report so far, for a mid-run checkpoint: rows 1..=`resume_after_row` settled and
    /// counted; the run goes on (it is marked `continued` in case it never finishes).
    pub(super) fn snapshot(&self) -> RunReport {
        let mut report = self.report.clone();
        report.summary.status = Status::Continued;
        report.finished_at = now_rfc3339();
        report.accounting_balanced = report.summary.balanced();
        report
    }

    /// The run stopped at the deadline: `continued`, with its checkpoint.
    pub(super) fn continued(mut self) -> RunReport {
        self.report.summary.status = Status::Continued;
        self.report.finished_at = now_rfc3339();
        self.report.accounting_balanced = self.report.summary.balanced();
        self.report
    }

    /// The final report: `failed` with the first reason, else `complete`.
    pub(super) fn finish(mut self) -> RunReport {
        self.report.finished_at = now_rfc3339();
        match self.failure {
            Some(reason) => finish_failed(self.report, reason),
            None => {
                self.report.summary.status = Status::Complete;
                self.report.accounting_balanced = self.report.summary.balanced();
                self.report
            }
        }
    }

    fn hold(&mut self, row: u64, kind: Kind) {
        self.hold_run(row, row, kind);
    }

    fn hold_run(&mut self, first: u64, last: u64, kind: Kind) {
        match self.held.back_mut() {
            Some(run) if run.kind == kind && run.last.checked_add(1) == Some(first) => {
                run.last = last
            }
            _ => self.held.push_back(Run { first, last, kind }),
        }
    }

    /// The id of a kind of rejection; kinds beyond `MAX_REASON_KINDS` share one.
    fn reason_id(&mut self, kind: String) -> u8 {
        if let Some(id) = self.reason_ids.get(&kind) {
            return *id;
        }
        let kind = if self.reasons.len() < MAX_REASON_KINDS {
            kind
        } else {
            OTHER_REASONS.to_string()
        };
        // At most MAX_REASON_KINDS + 1 (≤ 255) ids.
        let next = self.reasons.len() as u8;
        let id = *self.reason_ids.entry(kind.clone()).or_insert(next);
        if id == next {
            self.reasons.push(kind);
        }
        id
    }

    /// Counts held rows before `before_row` as rejected or unchanged.
    fn settle(&mut self, before_row: u64) {
        while let Some(run) = self.held.front_mut() {
            if run.first >= before_row {
                break;
            }
            let last = run.last.min(before_row - 1);
            let settled = Run {
                first: run.first,
                last,
                kind: run.kind,
            };
            if last == run.last {
                self.held.pop_front();
            } else {
                run.first = last + 1;
            }
            let summary = &mut self.report.summary;
            summary.rows_read += settled.len();
            match settled.kind {
                Kind::Unchanged => summary.rows_unchanged += settled.len(),
                Kind::Rejected => {
                    summary.rows_rejected += settled.len();
                    for _ in 0..settled.len() {
                        if let Some(id) = self.held_reasons.pop_front() {
                            self.report
                                .count_rejections(&self.reasons[usize::from(id)], 1);
                        }
                    }
                    while let Some(r) = self.held_reports.pop_front() {
                        if r.row > last {
                            self.held_reports.push_front(r);
                            break;
                        }
                        if self.report.rejected_rows.len() < MAX_LISTED_ISSUES {
                            self.report.rejected_rows.push(r);
                        }
                    }
                }
            }
        }
    }
}

/// Longest failure reason in a summary (the full Lambda response stays far below 6 MB).
pub(super) const MAX_ERROR_BYTES: usize = 2_000;

/// A report for an object that failed before or during its run.
pub(super) fn finish_failed(mut report: RunReport, reason: String) -> RunReport {
    tracing::error!(bucket = %report.summary.bucket, key = %report.summary.key, %reason, "object failed");
    report.summary.status = Status::Failed;
    // A reason quoting a hostile input stays small: it is returned to Lambda in the summary.
    report.summary.error = Some(crate::model::shorten(&reason, MAX_ERROR_BYTES));
    if report.finished_at.is_empty() {
        report.finished_at = now_rfc3339();
    }
    report.accounting_balanced = report.summary.balanced();
    report
}

pub(super) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests_support {
    pub(super) use super::tests::{body, counts, ledger, rejected};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    pub(super) fn body(first_row: u64, last_row: u64) -> Batch {
        Batch {
            endpoint: Endpoint::Transition,
            body: b"{}".to_vec(),
            records: last_row - first_row + 1,
            events: 0,
            prints: Vec::new(),
            customers: Vec::new(),
            first_row,
            last_row,
        }
    }

    pub(super) fn rejected(row: u64) -> Decoded {
        Decoded::Rejected(RowReport {
            row,
            line: None,
            column: "email".into(),
            reason: "not an e-mail".into(),
        })
    }

    fn send(l: &mut Ledger, b: &Batch) {
        let id = l.dispatched(b);
        l.delivered(id);
    }

    fn dlq(l: &mut Ledger, b: &Batch, message_id: String) {
        let id = l.dispatched(b);
        l.dead_lettered(id, message_id);
    }

    pub(super) fn ledger(resume_after_row: u64) -> Ledger {
        Ledger::new(RunReport {
            started_after_row: resume_after_row,
            resume_after_row,
            ..RunReport::default()
        })
    }

    pub(super) fn counts(r: &RunReport) -> [u64; 6] {
        let s = &r.summary;
        [
            s.rows_read,
            s.rows_delivered,
            s.rows_unchanged,
            s.rows_rejected,
            s.rows_dead_lettered,
            s.rows_pending,
        ]
    }

    #[test]
    fn a_run_read_to_the_end_accounts_every_row_and_checkpoints_at_the_last() {
        let mut l = ledger(0);
        assert!(l.record(rejected(1)).is_none());
        assert!(l
            .record(Decoded::UnchangedRun { first: 2, last: 2 })
            .is_none());
        let b = l
            .record(Decoded::Batch(body(3, 5)))
            .expect("a body to send");
        send(&mut l, &b);
        let b = l.record(Decoded::Batch(body(6, 7))).unwrap();
        dlq(&mut l, &b, "m-1".into());
        l.record(Decoded::UnchangedRun { first: 8, last: 8 });
        l.record(rejected(9));
        // A stretch of unchanged rows in one message, joining the next one.
        l.record(Decoded::UnchangedRun {
            first: 10,
            last: 4_105,
        });
        l.record(Decoded::UnchangedRun {
            first: 4_106,
            last: 5_000,
        });
        l.read_to_end();
        let r = l.finish();
        // read, delivered, unchanged, rejected, dead-lettered, pending
        assert_eq!(counts(&r), [5_000, 3, 4_993, 2, 2, 0]);
        assert_eq!(r.resume_after_row, 5_000);
        assert_eq!(r.summary.status, Status::Complete);
        assert!(r.accounting_balanced);
        assert_eq!(r.dead_letter_message_ids, ["m-1"]);
        assert_eq!(
            r.rejected_rows.iter().map(|x| x.row).collect::<Vec<_>>(),
            [1, 9]
        );
    }

    #[test]
    fn a_stop_leaves_the_unsent_body_and_later_held_rows_pending() {
        let mut l = ledger(10);
        let b = l.record(Decoded::Batch(body(11, 12))).unwrap();
        send(&mut l, &b);
        l.record(rejected(13));
        l.record(Decoded::UnchangedRun {
            first: 16,
            last: 16,
        });
        // Rows 14-15 are in the next body; 16 (unchanged) was decoded after it.
        let unsent = l.record(Decoded::Batch(body(14, 15))).unwrap();
        l.stopped(Some(&unsent));
        let r = l.continued();
        // Row 13 settles (before the boundary); rows 14, 15 and 16 are pending.
        assert_eq!(counts(&r), [6, 2, 0, 1, 0, 3]);
        assert_eq!(r.resume_after_row, 13, "resume just before the unsent body");
        assert_eq!(r.summary.status, Status::Continued);
        assert!(r.accounting_balanced);
    }

    #[test]
    fn a_decode_failure_keeps_the_checkpoint_at_the_last_settled_body() {
        let mut l = ledger(0);
        let b = l.record(Decoded::Batch(body(1, 4))).unwrap();
        send(&mut l, &b);
        l.record(rejected(5));
        l.record(Decoded::Failed {
            reason: "row 7: invalid gzip".into(),
            unsent_rows: 1,
        });
        l.read_to_end();
        let r = l.finish();
        assert_eq!(counts(&r), [6, 4, 0, 1, 0, 1]);
        assert_eq!(
            r.resume_after_row, 4,
            "a failed object is retried from its last body"
        );
        assert_eq!(r.summary.status, Status::Failed);
        assert_eq!(r.summary.error.as_deref(), Some("row 7: invalid gzip"));
        assert!(r.accounting_balanced);
    }

    #[test]
    fn the_identity_holds_for_any_sequence_of_fates_and_outcomes() {
        for seed in 0..300u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut l = ledger(0);
            let mut row = 0;
            let mut stopped = false;
            for _ in 0..rng.usize(0..40) {
                row += 1;
                match rng.u8(0..4) {
                    0 => {
                        l.record(rejected(row));
                    }
                    1 => {
                        l.record(Decoded::UnchangedRun {
                            first: row,
                            last: row,
                        });
                    }
                    _ => {
                        let last = row + rng.u64(0..5);
                        let b = l.record(Decoded::Batch(body(row, last))).unwrap();
                        row = last;
                        match rng.u8(0..10) {
                            0 => {
                                l.stopped(Some(&b));
                                stopped = true;
                                break;
                            }
                            1 => dlq(&mut l, &b, "m".into()),
                            _ => send(&mut l, &b),
                        }
                    }
                }
            }
            if !stopped {
                l.read_to_end();
            }
            let r = if stopped { l.continued() } else { l.finish() };
            assert!(r.accounting_balanced, "seed {seed}: {:?}", counts(&r));
            assert_eq!(
                r.summary.rows_read,
                row.max(r.resume_after_row),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn alternating_rejection_reasons_cost_a_byte_per_held_row_and_are_counted_exactly() {
        let mut l = ledger(0);
        for row in 1..=100_000u64 {
            let reason = if row % 2 == 0 { "empty" } else { "wide" };
            l.record(Decoded::Rejected(RowReport {
                row,
                line: None,
                column: reason.into(),
                reason: "bad".into(),
            }));
        }
        // One run (all rejected) and one byte per row, whatever the alternation.
        assert_eq!(l.held.len(), 1);
        assert_eq!(l.held_reasons.len(), 100_000);
        l.read_to_end();
        let r = l.finish();
        assert_eq!(r.summary.rows_rejected, 100_000);
        assert_eq!(r.rejections_by_reason["empty: bad"], 50_000);
        assert_eq!(r.rejections_by_reason["wide: bad"], 50_000);
    }

    #[test]
    fn held_rows_take_constant_memory_and_settle_like_one_entry_per_row() {
        // An unchanged snapshot: a million held rows are one run.
        let mut l = ledger(0);
        for row in 1..=1_000_000 {
            l.record(Decoded::UnchangedRun {
                first: row,
                last: row,
            });
        }
        assert_eq!(l.held.len(), 1);
        l.read_to_end();
        assert_eq!(counts(&l.finish()), [1_000_000, 0, 1_000_000, 0, 0, 0]);

        // Against the per-row model the ledger replaces: same counts, listed rows, checkpoint.
        for seed in 0..200u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut l = ledger(0);
            let mut model: Vec<(u64, bool)> = Vec::new(); // (row, rejected), held
            let (mut m_read, mut m_unchanged, mut m_rejected, mut m_listed) = (0, 0, 0, Vec::new());
            let mut settle = |model: &mut Vec<(u64, bool)>, before: u64| {
                let (done, rest): (Vec<_>, Vec<_>) = model.drain(..).partition(|h| h.0 < before);
                *model = rest;
                for (row, rejected) in done {
                    m_read += 1;
                    if rejected {
                        m_rejected += 1;
                        if m_listed.len() < MAX_LISTED_ISSUES {
                            m_listed.push(row);
                        }
                    } else {
                        m_unchanged += 1;
                    }
                }
            };
            let mut row = 0;
            let mut pending_batch = None;
            for _ in 0..rng.usize(0..3000) {
                row += 1;
                match rng.u8(0..20) {
                    0..=8 => {
                        l.record(rejected(row));
                        model.push((row, true));
                    }
                    9..=17 => {
                        l.record(Decoded::UnchangedRun {
                            first: row,
                            last: row,
                        });
                        model.push((row, false));
                    }
                    _ => {
                        // A body spanning rows the held ones interleave with.
                        let span = rng.u64(0..4);
                        let b = body(row, row + span);
                        row += span;
                        settle(&mut model, b.first_row);
                        let b = l.record(Decoded::Batch(b)).unwrap();
                        if rng.u8(0..50) == 0 {
                            pending_batch = Some(b);
                            break;
                        }
                        send(&mut l, &b);
                    }
                }
            }
            let r = match pending_batch {
                Some(b) => {
                    settle(&mut model, b.first_row);
                    l.stopped(Some(&b));
                    l.continued()
                }
                None => {
                    settle(&mut model, u64::MAX);
                    l.read_to_end();
                    l.finish()
                }
            };
            let s = &r.summary;
            assert_eq!(
                (s.rows_unchanged, s.rows_rejected),
                (m_unchanged, m_rejected),
                "seed {seed}"
            );
            assert!(s.rows_read >= m_read, "seed {seed}");
            assert_eq!(
                r.rejected_rows.iter().map(|x| x.row).collect::<Vec<_>>(),
                m_listed,
                "seed {seed}"
            );
            assert!(r.accounting_balanced, "seed {seed}");
        }
    }
}

#[cfg(test)]
mod concurrent_tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn out_of_order_completions_checkpoint_only_over_the_settled_prefix() {
        let mut l = ledger(0);
        let a = l.record(Decoded::Batch(body(1, 10))).unwrap();
        let a = l.dispatched(&a);
        l.record(rejected(11));
        let b = l.record(Decoded::Batch(body(12, 20))).unwrap();
        let b = l.dispatched(&b);
        l.record(Decoded::UnchangedRun {
            first: 21,
            last: 21,
        });
        let c = l.record(Decoded::Batch(body(22, 30))).unwrap();
        let c = l.dispatched(&c);
        assert_eq!(l.in_flight(), 3);
        // The last body settles first: no checkpoint moves, the held rows wait.
        l.delivered(c);
        assert_eq!(l.report.resume_after_row, 0);
        assert_eq!(l.report.summary.rows_rejected, 0);
        l.delivered(a);
        assert_eq!(l.report.resume_after_row, 10);
        assert_eq!(
            l.report.summary.rows_rejected, 1,
            "row 11 is now behind every body"
        );
        assert_eq!(
            l.report.summary.rows_unchanged, 0,
            "row 21 waits for the body at 12"
        );
        l.delivered(b);
        assert_eq!(l.report.resume_after_row, 30);
        l.read_to_end();
        let r = l.finish();
        assert_eq!(counts(&r), [30, 28, 1, 1, 0, 0]);
        assert!(r.accounting_balanced);
    }

    #[test]
    fn a_body_handed_back_holds_the_checkpoint_and_what_follows_is_pending() {
        let mut l = ledger(0);
        let a = l.record(Decoded::Batch(body(1, 10))).unwrap();
        let a = l.dispatched(&a);
        let b = l.record(Decoded::Batch(body(11, 20))).unwrap();
        let b = l.dispatched(&b);
        l.record(rejected(21));
        let c = l.record(Decoded::Batch(body(22, 30))).unwrap();
        let c = l.dispatched(&c);
        l.record(Decoded::UnchangedRun {
            first: 31,
            last: 31,
        });
        let never_sent = l.record(Decoded::Batch(body(32, 40))).unwrap();
        l.delivered(a);
        l.returned(b); // the deadline came during its retries
        l.delivered(c); // already on its way: delivered, and read again by the next run
        l.stopped(Some(&never_sent));
        let r = l.continued();
        // read, delivered, unchanged, rejected, dead-lettered, pending
        assert_eq!(counts(&r), [40, 19, 0, 0, 0, 21]);
        assert_eq!(
            r.resume_after_row, 10,
            "resume just before the body handed back"
        );
        assert!(r.accounting_balanced);
    }
}
