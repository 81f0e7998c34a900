//! Accounting: takes what happened to each row; gives the run report with its identity
//! `rows_read = delivered + unchanged + rejected + dead_lettered + pending` ([`report`]) and the
//! CloudWatch metrics of a run ([`metrics`]).

pub mod metrics;
pub mod progress;
pub mod report;
pub mod run_log;
