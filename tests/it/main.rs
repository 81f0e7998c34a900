//! Integration tests: one binary (ripgrep style). Each test starts its own moto server and
//! MoEngage emulator on ephemeral loopback ports, drives the real handler, and stops both.

// Shared harness: moto, the emulator, S3/SQS helpers, export generators.
mod support;
// Issue "end-to-end foundation": Bulk Import from a gzip CSV in S3, batching, wrong key.
mod bulk_import;
// The `moengage-sync` binary refuses bad configuration at start-up.
mod startup;
// Issue "delivery guarantees": retries, 429s, dead letters + redrive, continuation, idempotency.
mod delivery;
// Structured logs never carry the Data API key.
mod logging;
// Issue "object types and validation": each type end to end; malformed rows rejected with reasons.
mod object_types;
// Issue "sync modes": change detection across runs and part files; upsert, insert, update, full resync.
mod checkpoints;
mod sync_modes;
mod syncs;
// Every export format and compression to the same elements; Parquet by range requests; corrupt files.
mod formats;
// Issue "operator experience": `preview` and `check`, run as the real binary against the stack.
mod cli;
// Issue "operator experience": the CloudWatch EMF document of a real run.
mod metrics;
mod mirror;
// Issue "security": forged dead letters and work items cannot redirect requests or reads.
mod security;
// Issue "concurrent delivery": requests in flight at once, per-user order, exactly once.
mod concurrency;

// Issue "hardening": hostile exports through the real function process, peak RSS asserted.
mod hostile;
