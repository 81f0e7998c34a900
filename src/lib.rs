//! # moengage-sync
//!
//! Turns warehouse exports landing in S3 into MoEngage user profiles and events through the Data
//! API, with every row accounted for: `rows_read = delivered + unchanged + rejected +
//! dead_lettered + pending`, per object, in every run report.
//!
//! # Layout
//!
//! Dependencies point one way: each module imports only from the ones listed before it (checked by
//! `scripts/crate_cycles.py`, run by `make lint` and `make test`). Low-level vocabulary first, then
//! the stages in the order a row meets them, then what drives them.
//!
//! - [`model`]: shared vocabulary importing nothing from the crate: object types, sync modes,
//!   element kinds, object refs, MoEngage's limits, and the closed set of endpoints with the one
//!   place that builds their URLs.
//! - [`aws`]: SDK error text, for every AWS adapter.
//! - [`state`]: `StateStore`, small documents in S3 (run markers, reports, sync-state shards), and
//!   [`state::cache`], sync-state shards kept in `/tmp` by a warm instance, revalidated by ETag.
//! - [`source`]: `ObjectSource`, streaming exports out of S3 (ranges at the version claimed), and
//!   local files for the terminal `sync` ([`source::local`]).
//! - [`decode`]: format and compression detection, decompression, and the row decoders (CSV/TSV in
//!   the `CSV_*` dialect, NDJSON, Parquet by range requests), each a typed `RowSource`.
//! - [`map`]: `FIELD_MAPPING` → elements (customer / event objects) with per-row validation, and
//!   a row's key and mapped cells without encoding it (what the sync state fingerprints);
//!   [`map::convert`] turns one cell into the JSON value MoEngage gets, by declared type.
//! - [`sync_state`]: the diff stage: per-key fingerprints in S3 shards (a base, and the deltas
//!   saved since, compacted now and then), what changed since MoEngage last accepted it; [`sync_state::verdicts`] classifies a whole part in bounded memory (prints
//!   spooled to `/tmp`, joined with the state shard by shard).
//! - [`batch`]: elements → request bodies, sized on the exact bytes sent.
//! - [`deliver`]: one body, paced ([`deliver::rate`]: one adaptive budget per MoEngage API) and
//!   retried, through the HTTP client and
//!   `classify` ([`deliver::client`]) to a delivered / failed / misconfigured outcome; bodies that
//!   fail go to the dead-letter queue ([`deliver::dead_letter`]).
//! - [`account`]: the run report, the summary line and the accounting identity
//!   ([`account::report`]), one CloudWatch EMF document per object ([`account::metrics`]), the
//!   run log a warehouse can query ([`account::run_log`]), and live progress counters
//!   ([`account::progress`]).
//! - [`config`]: environment variables → a validated, typed `Config` (fails at start-up with one
//!   line); built from the vocabulary and option types of the stages above. [`config::syncs`]:
//!   the syncs (from `SYNC_CONFIG`, or the one the variables describe), routing by prefix, and the
//!   budgets of the MoEngage APIs the file sets.
//! - [`pipeline`]: one object: the chain source → decode → map → diff → batch → deliver, in roles,
//!   with fair use per end user, mid-run checkpoints and cancellation; with a stored sync state, a
//!   first pass over the object classifies its rows before the sending pass.
//!   [`pipeline::members`] reads which users a snapshot's objects hold, for mirror mode.
//! - [`app`]: the Lambda shell, the only place that knows about Lambda: `Deps`, start-up,
//!   invocation payloads, the handler (claim → run → report → mark → continue; the sweep), run
//!   markers (with mid-run checkpoints and poisoned objects), the work queue, redrive, the
//!   response, and [`app::mirror`]: mirror mode's deletion pass over a complete snapshot folder.
//! - [`cli`]: `preview` (and `preview --deletes`), `check`, `sync` and `runs`, the binary's
//!   command-line mode for people.
//!
//! The MoEngage emulator used by the tests and the demo is its own crate,
//! `crates/moengage-emulator`.

pub mod account;
pub mod app;
pub mod aws;
pub mod batch;
pub mod cli;
pub mod config;
pub mod decode;
pub mod deliver;
pub mod map;
pub mod model;
pub mod pipeline;
pub mod source;
pub mod state;
pub mod sync_state;
