//! # moengage-sync
//!
//! Turns warehouse exports landing in S3 into MoEngage user profiles and events through the Data
//! API, with every row accounted for: `rows_read = delivered + unchanged + rejected +
//! dead_lettered + pending`, per object, in every run report.
//!
//! # Layout
//!
//! One module per stage, in the order a row meets them:
//!
//! - [`model`]: shared vocabulary importing nothing from the crate: the closed set of MoEngage
//!   endpoints and the one place that builds their URLs.
//! - [`config`]: environment variables → a validated, typed `Config` (fails at start-up with one line).
//! - [`startup`]: `Config` → live dependencies (AWS clients, the key from Secrets Manager).
//! - [`handler`]: the Lambda entry: dispatch, claim → run → report → mark → continue; the sweep.
//! - [`invocation`]: invocation payloads (S3, SQS, work items, schedule, redrive) → requests.
//! - [`runs`]: run markers: idempotent claims, checkpoints, leases.
//! - [`work`]: `WorkQueue`, continuations sent to the SQS work queue.
//! - [`redrive`]: replaying dead-letter messages.
//! - [`pipeline`]: one object: the chain source → decode → map → batch → deliver, and its accounting.
//! - [`source`]: `ObjectSource`, streaming exports out of S3.
//! - [`decode`]: format and compression detection, decompression, and the row decoders (CSV/TSV in
//!   the `CSV_*` dialect, NDJSON, Parquet by range requests), each a typed `RowSource`.
//! - [`convert`]: one cell → the JSON value MoEngage gets, by declared type.
//! - [`mapping`]: `FIELD_MAPPING` → elements (customer / event objects), with per-row validation.
//! - [`batch`]: elements → request bodies, sized on the exact bytes sent.
//! - [`rate`]: the pacer: one request budget per workspace, retries included.
//! - [`moengage`]: the HTTP client and `classify` (status → retry / dead-letter / misconfigured).
//! - [`delivery`]: one body, paced and retried, to a delivered / failed / misconfigured outcome.
//! - [`dead_letter`]: `DeadLetterSink`, undeliverable bodies to SQS with their exact payload.
//! - [`state`]: `StateStore`, small documents (run reports) in S3.
//! - [`sync_state`]: per-key fingerprints in S3 shards: what changed since MoEngage last accepted it.
//! - [`report`]: the summary, the run report and the accounting identity.
//! - [`metrics`]: one CloudWatch EMF document per object (rows, requests, retries, 429s, latency).
//! - [`cli`]: `preview` and `check`, the binary's command-line mode for people.
//! - [`emulator`]: a local MoEngage Data API for tests and the demo (binary `moengage-emulator`).

pub mod batch;
pub mod cli;
pub mod config;
pub mod convert;
pub mod dead_letter;
pub mod decode;
pub mod delivery;
pub mod emulator;
pub mod handler;
pub mod invocation;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod moengage;
pub mod pipeline;
pub mod rate;
pub mod redrive;
pub mod report;
pub mod runs;
pub mod source;
pub mod startup;
pub mod state;
pub mod sync_state;
pub mod work;
