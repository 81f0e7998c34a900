//! Run markers: one small document per object version (bucket, key, ETag) that makes processing
//! idempotent and resumable.
//!
//! - **Claim** with a conditional write (`If-None-Match: *`, or `If-Match` on the marker's ETag to
//!   take over): S3 may deliver a notification twice, and two concurrent deliveries must result in
//!   one run.
//! - **Checkpoint**: the marker records `resume_after_row`, the last data row whose fate is settled;
//!   a continuation, a retry after a failure, or the sweep resumes right after it, so no row is sent
//!   twice and none is skipped.
//! - **Lease**: a `running` marker whose lease ran out belongs to an invocation that died; the sweep
//!   or a repeat notification may take it over.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::account::report::RunReport;
use crate::state::{Expect, StateError, StateStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerStatus {
    /// An invocation holds the object until `lease_until`.
    Running,
    /// Every row is settled; nothing more to do for this version.
    Complete,
    /// Stopped before the deadline; resume after `resume_after_row`.
    Continued,
    /// Stopped by an error; re-runnable from `resume_after_row`.
    Failed,
    /// Its runs died [`POISON_AFTER_DEATHS`] times in a row without getting further (a timeout or
    /// out of memory leaves no report): not run again until the marker is deleted.
    Poisoned,
}

/// Runs that die (lease expired, no outcome recorded) without moving the checkpoint, in a row,
/// before an object is poisoned: SQS would otherwise retry it, and the sweep pick it up, forever.
pub const POISON_AFTER_DEATHS: u32 = 3;

/// The marker document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMarker {
    pub status: MarkerStatus,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    /// Rows 1..=resume_after_row are settled (delivered, unchanged, rejected or dead-lettered).
    pub resume_after_row: u64,
    /// Invocations that have worked on this version so far.
    pub runs: u32,
    /// Epoch seconds; a `running` marker past it is abandoned.
    pub lease_until: u64,
    /// RFC 3339.
    pub updated_at: String,
    /// The last failure's diagnosis, for `failed` markers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Runs in a row that died without recording an outcome or moving the checkpoint.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deaths: u32,
    /// `resume_after_row` when the current run claimed the marker (to tell a dead run that got
    /// further from one that did not).
    #[serde(default)]
    pub claimed_at_row: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What claiming an object version found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This invocation owns the version now; start after `resume_after_row`.
    Claimed {
        marker: RunMarker,
        marker_etag: String,
    },
    /// Already fully processed.
    Complete { marker: RunMarker },
    /// Another invocation holds a live lease.
    Busy { marker: RunMarker },
    /// Its runs keep dying; not run again until its marker is deleted.
    Poisoned { marker: RunMarker },
}

/// Where markers live: `{prefix}runs/{bucket}/{key}/{etag}.json` in the state bucket.
pub fn marker_key(prefix: &str, bucket: &str, key: &str, etag: &str) -> String {
    let etag = if etag.is_empty() { "no-etag" } else { etag };
    format!("{prefix}runs/{bucket}/{key}/{etag}.json")
}

fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs markers in one state bucket.
pub struct Markers<'a> {
    pub store: &'a dyn StateStore,
    pub state_bucket: &'a str,
    pub prefix: &'a str,
}

impl Markers<'_> {
    /// Claims (bucket, key, etag) for `lease_secs`. Re-reads and retries on a lost race, so two
    /// concurrent claims end with exactly one `Claimed`.
    pub async fn claim(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        lease_secs: u64,
    ) -> Result<Claim, StateError> {
        let mkey = marker_key(self.prefix, bucket, key, etag);
        for _ in 0..5 {
            let existing = self.store.get_versioned(self.state_bucket, &mkey).await?;
            let (base, expect) = match existing {
                None => (None, Expect::Absent),
                Some(v) => {
                    let marker: RunMarker = serde_json::from_slice(&v.body).map_err(|e| StateError {
                        bucket: self.state_bucket.into(),
                        key: mkey.clone(),
                        reason: format!("run marker is not valid JSON ({e}); delete it to re-run the object"),
                    })?;
                    match marker.status {
                        MarkerStatus::Complete => return Ok(Claim::Complete { marker }),
                        MarkerStatus::Poisoned => return Ok(Claim::Poisoned { marker }),
                        MarkerStatus::Running if marker.lease_until > now_epoch() => {
                            return Ok(Claim::Busy { marker })
                        }
                        _ => (Some(marker), Expect::Etag(v.etag)),
                    }
                }
            };
            // A `running` marker past its lease: that run died without recording an outcome.
            let deaths = match &base {
                Some(m) if m.status == MarkerStatus::Running => {
                    if m.resume_after_row > m.claimed_at_row {
                        1
                    } else {
                        m.deaths + 1
                    }
                }
                Some(m) => m.deaths,
                None => 0,
            };
            let resume_after_row = base.as_ref().map_or(0, |m| m.resume_after_row);
            let poisoned = deaths >= POISON_AFTER_DEATHS;
            let marker = RunMarker {
                status: if poisoned {
                    MarkerStatus::Poisoned
                } else {
                    MarkerStatus::Running
                },
                bucket: bucket.into(),
                key: key.into(),
                etag: etag.into(),
                resume_after_row,
                runs: base.as_ref().map_or(0, |m| m.runs) + u32::from(!poisoned),
                lease_until: if poisoned { 0 } else { now_epoch() + lease_secs },
                updated_at: now_rfc3339(),
                error: poisoned.then(|| {
                    format!(
                        "its last {deaths} runs died without finishing or getting past row {resume_after_row} (a Lambda timeout or out of memory leaves no report); it is not retried until this marker is deleted"
                    )
                }),
                deaths,
                claimed_at_row: resume_after_row,
            };
            let body = serde_json::to_vec_pretty(&marker).map_err(|e| StateError {
                bucket: self.state_bucket.into(),
                key: mkey.clone(),
                reason: e.to_string(),
            })?;
            if let Some(marker_etag) = self
                .store
                .put_if(self.state_bucket, &mkey, body, expect)
                .await?
            {
                if marker.status == MarkerStatus::Poisoned {
                    return Ok(Claim::Poisoned { marker });
                }
                return Ok(Claim::Claimed {
                    marker,
                    marker_etag,
                });
            }
            // Someone else wrote the marker between our read and write: look again.
        }
        Err(StateError {
            bucket: self.state_bucket.into(),
            key: mkey,
            reason: "could not claim the run marker after 5 attempts (heavy contention)".into(),
        })
    }

    /// A mid-run checkpoint: rows 1..=`resume_after_row` are settled, and the lease is extended by
    /// `lease_secs`; the marker stays `running`. Conditional on still owning the marker: the new
    /// marker ETag, or `None` when another invocation took it over.
    pub async fn renew(
        &self,
        marker: &mut RunMarker,
        marker_etag: &str,
        resume_after_row: u64,
        lease_secs: u64,
    ) -> Result<Option<String>, StateError> {
        let mkey = marker_key(self.prefix, &marker.bucket, &marker.key, &marker.etag);
        let mut next = marker.clone();
        next.resume_after_row = resume_after_row;
        next.lease_until = now_epoch() + lease_secs;
        next.updated_at = now_rfc3339();
        let body = serde_json::to_vec_pretty(&next).map_err(|e| StateError {
            bucket: self.state_bucket.into(),
            key: mkey.clone(),
            reason: e.to_string(),
        })?;
        let etag = self
            .store
            .put_if(
                self.state_bucket,
                &mkey,
                body,
                Expect::Etag(marker_etag.to_string()),
            )
            .await?;
        if etag.is_some() {
            *marker = next;
        }
        Ok(etag)
    }

    /// Records how the run ended (and where to resume). Conditional on still owning the marker.
    pub async fn finish(
        &self,
        mut marker: RunMarker,
        marker_etag: &str,
        status: MarkerStatus,
        resume_after_row: u64,
        error: Option<String>,
    ) -> Result<bool, StateError> {
        let mkey = marker_key(self.prefix, &marker.bucket, &marker.key, &marker.etag);
        marker.status = status;
        marker.resume_after_row = resume_after_row;
        marker.lease_until = 0;
        // The run ended and said how: whatever comes next is not a crash loop.
        marker.deaths = 0;
        marker.updated_at = now_rfc3339();
        marker.error = error;
        let body = serde_json::to_vec_pretty(&marker).map_err(|e| StateError {
            bucket: self.state_bucket.into(),
            key: mkey.clone(),
            reason: e.to_string(),
        })?;
        Ok(self
            .store
            .put_if(
                self.state_bucket,
                &mkey,
                body,
                Expect::Etag(marker_etag.to_string()),
            )
            .await?
            .is_some())
    }

    /// The marker of a version, if any (the sweep uses it to find work).
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Option<RunMarker>, StateError> {
        let mkey = marker_key(self.prefix, bucket, key, etag);
        Ok(match self.store.get(self.state_bucket, &mkey).await? {
            Some(body) => serde_json::from_slice(&body).ok(),
            None => None,
        })
    }
}

/// Mid-run checkpoints of one claimed run ([`crate::pipeline::Checkpoint`]): the partial report
/// under the run's report key (the final one overwrites it), then the marker moved to the settled
/// prefix with its lease extended. Holds the marker and its ETag, which the run's end needs.
pub struct RunCheckpoint {
    pub store: Arc<dyn StateStore>,
    pub state_bucket: String,
    pub prefix: String,
    /// Where this run's report goes.
    pub report_key: String,
    pub lease_secs: u64,
    pub sync_config_etag: Option<String>,
    /// The marker as last written, and its ETag.
    pub current: tokio::sync::Mutex<(RunMarker, String)>,
}

#[async_trait::async_trait]
impl crate::pipeline::Checkpoint for RunCheckpoint {
    async fn save(&self, report: &RunReport) -> Result<(), String> {
        let mut partial = report.clone();
        partial.sync_config_etag = self.sync_config_etag.clone();
        partial.summary.report = Some(format!("s3://{}/{}", self.state_bucket, self.report_key));
        match serde_json::to_vec_pretty(&partial) {
            Ok(body) => {
                if let Err(e) = self
                    .store
                    .put(&self.state_bucket, &self.report_key, body, false)
                    .await
                {
                    tracing::warn!(error = %e, "could not store the partial run report");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not encode the partial run report"),
        }
        let markers = Markers {
            store: &*self.store,
            state_bucket: &self.state_bucket,
            prefix: &self.prefix,
        };
        let mut current = self.current.lock().await;
        let (marker, etag) = &mut *current;
        match markers
            .renew(marker, etag, report.resume_after_row, self.lease_secs)
            .await
        {
            Ok(Some(new_etag)) => {
                *etag = new_etag;
                tracing::info!(
                    key = %marker.key,
                    resume_after_row = report.resume_after_row,
                    "checkpoint recorded"
                );
                Ok(())
            }
            Ok(None) => Err("the run marker was taken over by another invocation".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::{PutOutcome, Versioned};
    use async_trait::async_trait;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// An in-memory StateStore with S3's conditional-write semantics.
    #[derive(Default)]
    pub(crate) struct MemStore {
        objects: Mutex<HashMap<String, (Vec<u8>, u64)>>,
        seq: Mutex<u64>,
    }

    impl MemStore {
        fn next(&self) -> u64 {
            let mut s = self.seq.lock().unwrap();
            *s += 1;
            *s
        }
    }

    #[async_trait]
    impl StateStore for MemStore {
        async fn get(&self, _b: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(self
                .objects
                .lock()
                .unwrap()
                .get(key)
                .map(|(b, _)| b.clone()))
        }
        async fn put(
            &self,
            _b: &str,
            key: &str,
            body: Vec<u8>,
            if_absent: bool,
        ) -> Result<PutOutcome, StateError> {
            let n = self.next();
            let mut o = self.objects.lock().unwrap();
            if if_absent && o.contains_key(key) {
                return Ok(PutOutcome::AlreadyExists);
            }
            o.insert(key.into(), (body, n));
            Ok(PutOutcome::Written)
        }
        async fn get_versioned(
            &self,
            _b: &str,
            key: &str,
        ) -> Result<Option<Versioned>, StateError> {
            Ok(self
                .objects
                .lock()
                .unwrap()
                .get(key)
                .map(|(b, e)| Versioned {
                    body: b.clone(),
                    etag: e.to_string(),
                }))
        }
        async fn put_if(
            &self,
            _b: &str,
            key: &str,
            body: Vec<u8>,
            expect: Expect,
        ) -> Result<Option<String>, StateError> {
            let n = self.next();
            let mut o = self.objects.lock().unwrap();
            let ok = match (&expect, o.get(key)) {
                (Expect::Absent, None) => true,
                (Expect::Etag(e), Some((_, cur))) => *e == cur.to_string(),
                _ => false,
            };
            if !ok {
                return Ok(None);
            }
            o.insert(key.into(), (body, n));
            Ok(Some(n.to_string()))
        }
        async fn delete(&self, _b: &str, key: &str) -> Result<(), StateError> {
            self.objects.lock().unwrap().remove(key);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_version_is_claimed_once_resumed_from_its_checkpoint_and_then_complete() {
        let store = MemStore::default();
        let m = Markers {
            store: &store,
            state_bucket: "s",
            prefix: "p/",
        };
        let Claim::Claimed {
            marker,
            marker_etag,
        } = m.claim("b", "k", "e1", 900).await.unwrap()
        else {
            panic!("first claim")
        };
        assert_eq!(marker.resume_after_row, 0);
        assert!(
            matches!(
                m.claim("b", "k", "e1", 900).await.unwrap(),
                Claim::Busy { .. }
            ),
            "live lease blocks a second run"
        );
        assert!(m
            .finish(marker, &marker_etag, MarkerStatus::Continued, 500, None)
            .await
            .unwrap());
        let Claim::Claimed {
            marker,
            marker_etag,
        } = m.claim("b", "k", "e1", 900).await.unwrap()
        else {
            panic!("continuation claim")
        };
        assert_eq!((marker.resume_after_row, marker.runs), (500, 2));
        assert!(m
            .finish(marker, &marker_etag, MarkerStatus::Complete, 1000, None)
            .await
            .unwrap());
        assert!(matches!(
            m.claim("b", "k", "e1", 900).await.unwrap(),
            Claim::Complete { .. }
        ));
        // A new version of the same key is a new object.
        assert!(matches!(
            m.claim("b", "k", "e2", 900).await.unwrap(),
            Claim::Claimed { .. }
        ));
    }

    #[tokio::test]
    async fn concurrent_claims_yield_exactly_one_owner() {
        let store = std::sync::Arc::new(MemStore::default());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let m = Markers {
                        store: &*store,
                        state_bucket: "s",
                        prefix: "p/",
                    };
                    matches!(
                        m.claim("b", "k", "e", 900).await.unwrap(),
                        Claim::Claimed { .. }
                    )
                })
            })
            .collect();
        let mut owners = 0;
        for t in tasks {
            owners += t.await.unwrap() as u32;
        }
        assert_eq!(owners, 1);
    }

    #[tokio::test]
    async fn an_expired_lease_can_be_taken_over() {
        let store = MemStore::default();
        let m = Markers {
            store: &store,
            state_bucket: "s",
            prefix: "p/",
        };
        assert!(matches!(
            m.claim("b", "k", "e", 0).await.unwrap(),
            Claim::Claimed { .. }
        ));
        assert!(matches!(
            m.claim("b", "k", "e", 900).await.unwrap(),
            Claim::Claimed { .. }
        ));
    }

    #[tokio::test]
    async fn runs_that_keep_dying_without_progress_poison_the_object_and_progress_does_not() {
        let store = MemStore::default();
        let m = Markers {
            store: &store,
            state_bucket: "s",
            prefix: "p/",
        };
        // Each claim's lease is over at once, and the run never records anything: it died.
        for death in 0..POISON_AFTER_DEATHS {
            match m.claim("b", "k", "e", 0).await.unwrap() {
                Claim::Claimed { marker, .. } => assert_eq!(marker.deaths, death),
                other => panic!("claim {death}: {other:?}"),
            }
        }
        let Claim::Poisoned { marker } = m.claim("b", "k", "e", 0).await.unwrap() else {
            panic!("the fourth claim finds three dead runs")
        };
        assert_eq!(marker.status, MarkerStatus::Poisoned);
        assert!(marker
            .error
            .unwrap()
            .contains("not retried until this marker is deleted"));
        assert!(matches!(
            m.claim("b", "k", "e", 900).await.unwrap(),
            Claim::Poisoned { .. }
        ));

        // A run that dies after a mid-run checkpoint got further: not a crash loop.
        for _ in 0..5 {
            let Claim::Claimed {
                mut marker,
                marker_etag,
            } = m.claim("b", "k2", "e", 0).await.unwrap()
            else {
                panic!("progressing runs are retried")
            };
            let row = marker.resume_after_row + 100;
            m.renew(&mut marker, &marker_etag, row, 0).await.unwrap();
        }
    }
}
