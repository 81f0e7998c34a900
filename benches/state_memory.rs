//! `make bench` (state memory): peak RSS of the function's path with the sync state, through the
//! real handler, each run in a child process of its own (so `VmHWM` is that run's):
//!
//! 1. For each of `BENCH_STATE_ROWS` (default `1000000,5000000`): a first run delivering that many
//!    users as one CSV.gz export, then the same export re-synced unchanged (0 requests), with the
//!    sync state in S3 (moto).
//! 2. A part of `BENCH_BIG_PART_ROWS` users (default 1,000,000) with 1 % changed, against a
//!    state of `BENCH_BIG_STATE_KEYS` keys (default 100,000,000): the part's own keys, delivered by
//!    a first run, plus random keys up to the total, written straight into the shards. That state
//!    (3 GiB at 100M in state format 2, with customer ids) is kept in a directory-backed store rather than moto. The run must send
//!    exactly the changed rows: what a whole in-memory state would decide. Then mirror mode's
//!    deletion pass of that folder against the same state (refused by the guard, after comparing
//!    the snapshot's users with every shard).
//!
//! MoEngage is a fake that accepts every body at once (what is measured is the state, not
//! delivery). Exports are generated into `BENCH_DIR` (default `target/bench-data`) and kept; the
//! big state is written there and removed afterwards.

#[path = "../tests/fixtures/users.rs"]
mod users;

#[allow(clippy::duplicate_mod)]
#[path = "../tests/it/support.rs"]
mod support;

mod shared;
use shared::{env_u64, peak_rss_mib};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use moengage_sync::state::{Expect, PutOutcome, StateError, StateStore, Versioned};
use moengage_sync::sync_state::codec;

/// A state store in a local directory, one file per key; the ETag is the file's length and
/// modification time, so compare-and-swap holds across processes.
struct DirStore(PathBuf);

impl DirStore {
    fn path(&self, key: &str) -> PathBuf {
        self.0.join(key.replace('/', "%2F"))
    }
    fn etag(path: &Path) -> Option<String> {
        let m = std::fs::metadata(path).ok()?;
        let t = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(format!("\"{}-{}\"", m.len(), t.as_nanos()))
    }
    fn write(&self, key: &str, body: &[u8]) -> Result<String, StateError> {
        let path = self.path(key);
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| StateError {
                bucket: "dir".into(),
                key: key.into(),
                reason: e.to_string(),
            })?;
        Ok(Self::etag(&path).unwrap_or_default())
    }
}

#[async_trait::async_trait]
impl StateStore for DirStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.get_versioned(bucket, key).await?.map(|v| v.body))
    }
    async fn put(
        &self,
        _bucket: &str,
        key: &str,
        body: Vec<u8>,
        if_absent: bool,
    ) -> Result<PutOutcome, StateError> {
        if if_absent && self.path(key).exists() {
            return Ok(PutOutcome::AlreadyExists);
        }
        self.write(key, &body)?;
        Ok(PutOutcome::Written)
    }
    async fn get_versioned(
        &self,
        _bucket: &str,
        key: &str,
    ) -> Result<Option<Versioned>, StateError> {
        // Yield as a network read would, so that concurrent reads (and the memory they hold)
        // overlap as they do against S3, instead of each running to completion when polled.
        tokio::task::yield_now().await;
        let path = self.path(key);
        let (Ok(body), Some(etag)) = (std::fs::read(&path), Self::etag(&path)) else {
            return Ok(None);
        };
        Ok(Some(Versioned { body, etag }))
    }
    async fn put_if(
        &self,
        _bucket: &str,
        key: &str,
        body: Vec<u8>,
        expect: Expect,
    ) -> Result<Option<String>, StateError> {
        tokio::task::yield_now().await;
        let current = Self::etag(&self.path(key));
        let holds = match (&expect, &current) {
            (Expect::Absent, None) => true,
            (Expect::Etag(want), Some(have)) => want == have,
            _ => false,
        };
        if !holds {
            return Ok(None);
        }
        self.write(key, &body).map(Some)
    }
    async fn delete(&self, _bucket: &str, key: &str) -> Result<(), StateError> {
        let _ = std::fs::remove_file(self.path(key));
        Ok(())
    }
    /// As S3 lists: the sync state finds its deltas this way, without a read per shard.
    async fn list(
        &self,
        _bucket: &str,
        prefix: &str,
    ) -> Result<Option<Vec<moengage_sync::state::Listed>>, StateError> {
        let want = prefix.replace('/', "%2F");
        let mut out: Vec<moengage_sync::state::Listed> = std::fs::read_dir(&self.0)
            .map_err(|e| StateError {
                bucket: "dir".into(),
                key: prefix.into(),
                reason: e.to_string(),
            })?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                if !name.starts_with(&want) || name.ends_with(".partial") {
                    return None;
                }
                let etag = Self::etag(&self.0.join(&name))?;
                Some(moengage_sync::state::Listed {
                    key: name.replace("%2F", "/"),
                    etag,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Some(out))
    }
    /// A conditional read compares metadata, as S3's 304 does, instead of reading the body.
    async fn get_if_changed(
        &self,
        bucket: &str,
        key: &str,
        known: Option<&str>,
        _max_bytes: usize,
    ) -> Result<moengage_sync::state::Fetched, StateError> {
        use moengage_sync::state::Fetched;
        match Self::etag(&self.path(key)) {
            None => Ok(Fetched::Missing),
            Some(etag) if known == Some(etag.as_str()) => Ok(Fetched::Unchanged),
            Some(_) => Ok(match self.get_versioned(bucket, key).await? {
                Some(v) => Fetched::Changed(v),
                None => Fetched::Missing,
            }),
        }
    }
}

/// Users `1..=n` as a CSV.gz export at `path` (generated once, then kept); with `changed`, every
/// 100th user has another email.
fn export(path: &Path, n: u64, changed: bool) {
    shared::export_users(path, 1, n, changed);
}

/// One run of the handler on `key`, in a child process. Returns (seconds, delivered, unchanged,
/// peak RSS MiB, CPU seconds of the run).
async fn run_child(
    stack: &support::Stack,
    env_overrides: &[(&str, &str)],
    key: &str,
    state_dir: Option<&Path>,
) -> (f64, u64, u64, f64, f64) {
    let mut env = stack.env();
    env.insert("FIELD_MAPPING".into(), users::MAPPING.into());
    for (k, v) in env_overrides {
        env.insert((*k).into(), (*v).into());
    }
    let dir = state_dir.map_or(String::new(), |d| d.display().to_string());
    let n = shared::run_child(&[&stack.moto.endpoint, key, &dir], &env).await;
    let [secs, delivered, unchanged, rss, cpu] = n[..] else {
        panic!("child printed {n:?}");
    };
    (secs, delivered as u64, unchanged as u64, rss, cpu)
}

fn child(moto_endpoint: &str, key: &str, state_dir: &str) {
    let runtime = shared::runtime();
    runtime.block_on(async {
        let (mut deps, bucket) = shared::child_deps(moto_endpoint).await;
        if !state_dir.is_empty() {
            deps.state = Arc::new(DirStore(PathBuf::from(state_dir)));
            deps.shard_cache = None;
        }
        let t = Instant::now();
        let cpu_at_start = shared::cpu_seconds();
        let s = moengage_sync::app::handler::handle(
            &deps,
            support::s3_event(&bucket, key),
            &moengage_sync::app::Invocation::unbounded(),
        )
        .await
        .expect("handler");
        let o = &s.objects[0];
        assert!(o.balanced(), "{o:?}");
        if let Some(m) = &o.mirror {
            // The mirror pass of the big state: refused by the guard, after comparing every shard.
            assert!(m.mirror_refused && m.users_to_delete > 0, "{o:?}");
            assert_eq!(m.users_deleted, 0, "{o:?}");
        }
        assert_eq!(
            o.rows_rejected + o.rows_dead_lettered + o.rows_pending,
            0,
            "{o:?}"
        );
        println!(
            "{} {} {} {} {}",
            t.elapsed().as_secs_f64(),
            o.rows_delivered,
            o.rows_unchanged,
            peak_rss_mib(),
            shared::cpu_seconds() - cpu_at_start
        );
    });
}

/// Adds random keys to every shard of the state in `dir` until it holds `total` keys.
fn grow_state(dir: &Path, total: u64) -> u64 {
    let shard_files: Vec<(PathBuf, u8, usize)> = std::fs::read_dir(dir)
        .expect("state dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            let rest = name.split("%2Fshards%2F").nth(1)?.strip_suffix(".bin")?;
            let (bits, index) = rest.split_once("%2F")?;
            Some((
                dir.join(&name),
                bits.parse().ok()?,
                usize::from_str_radix(index, 16).ok()?,
            ))
        })
        .collect();
    let (_, bits, _) = shard_files[0];
    assert_eq!(
        shard_files.len(),
        1 << bits,
        "every shard exists after a 1M-user run"
    );
    let existing: u64 = shard_files
        .iter()
        .map(|(p, b, i)| {
            codec::decode(&std::fs::read(p).expect("read"), *b, *i)
                .expect("shard")
                .len() as u64
        })
        .sum();
    let per_shard = total.saturating_sub(existing).div_ceil(1 << bits);
    let mut rng = fastrand::Rng::with_seed(100);
    let mut bytes = 0;
    for (path, bits, index) in &shard_files {
        // Rewritten under its own generation: any delta a checkpoint saved still applies on top
        // (a delta holds the final values of the keys it changed).
        let codec::Base {
            entries: stored,
            generation,
        } = codec::decode_base(&std::fs::read(path).expect("read"), *bits, *index).expect("shard");
        let base = (*index as u64) << (64 - u32::from(*bits));
        let span = u64::MAX >> u32::from(*bits);
        // Synthetic users carry a 12-byte id, like the 1M run's "user-0000001".
        let mut entries: Vec<(u64, u64, Vec<u8>)> = (0..stored.len())
            .map(|j| {
                let id = stored.ids.get(j).unwrap_or_default().to_vec();
                (stored.keys[j], stored.fps[j], id)
            })
            .collect();
        entries.extend((0..per_shard).map(|_| {
            let key = base | rng.u64(..=span);
            (
                key,
                rng.u64(1..),
                format!("x{:011x}", key & 0xfff_ffff_ffff).into_bytes(),
            )
        }));
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        let mut all = codec::Entries::with_capacity(entries.len());
        for (k, f, id) in &entries {
            all.push(*k, *f, Some(id));
        }
        let body = codec::encode(*bits, *index, generation.unwrap_or(1), &all);
        bytes += body.len() as u64;
        std::fs::write(path, body).expect("write shard");
    }
    bytes
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2], &args[3], args.get(4).map_or("", String::as_str));
    }
    if std::env::var("MOTO_SERVER").is_err() {
        println!("\nstate memory: skipped (set MOTO_SERVER to moto_server, as `make bench` does)");
        return;
    }
    let sizes: Vec<u64> = std::env::var("BENCH_STATE_ROWS")
        .unwrap_or_else(|_| "1000000,5000000".into())
        .split(',')
        .map(|s| s.trim().replace('_', "").parse().expect("BENCH_STATE_ROWS"))
        .collect();
    let big_part = env_u64("BENCH_BIG_PART_ROWS", 1_000_000);
    let big_keys = env_u64("BENCH_BIG_STATE_KEYS", 100_000_000);
    let dir =
        PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench-data".into()));
    std::fs::create_dir_all(&dir).expect("create BENCH_DIR");

    let runtime = shared::runtime();
    runtime.block_on(async {
        let stack = support::Stack::start().await;
        println!("\n## state memory: through the handler with the sync state, one child process per run (peak RSS is that run's), MoEngage accepting at once\n");
        println!("rows/CPU-s: rows over the CPU time the function's process spent on the run (all threads;");
        println!("moto's own time left out). Wall time includes moto serving the export and the shards.\n");
        println!("| run | state | wall s | rows/s | rows/CPU-s | delivered | unchanged | peak RSS MiB |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for &n in &sizes {
            let path = dir.join(format!("state_users_{n}.csv.gz"));
            export(&path, n, false);
            let body = std::fs::read(&path).expect("read");
            // A state of its own per size.
            let prefix = format!("bench-{n}/");
            let env = [("STATE_PREFIX", prefix.as_str())];
            stack.put(&format!("mem{n}/day1.csv.gz"), body.clone()).await;
            stack.put(&format!("mem{n}/day2.csv.gz"), body).await;
            for (what, key, state) in [
                ("first run", format!("mem{n}/day1.csv.gz"), "empty, in S3".to_string()),
                ("unchanged re-sync", format!("mem{n}/day2.csv.gz"), format!("{n} keys, in S3")),
            ] {
                let (secs, delivered, unchanged, rss, cpu) =
                    run_child(&stack, &env, &key, None).await;
                let want = if what == "first run" { (n, 0) } else { (0, n) };
                assert_eq!((delivered, unchanged), want, "{what} of {n}");
                println!(
                    "| {what}, {n} users | {state} | {secs:.1} | {:.0} | {:.0} | {delivered} | {unchanged} | {rss:.0} |",
                    n as f64 / secs,
                    n as f64 / cpu
                );
            }
        }

        if big_keys > 0 {
            let state_dir = dir.join(format!("state-{big_keys}"));
            let _ = std::fs::remove_dir_all(&state_dir);
            std::fs::create_dir_all(&state_dir).expect("state dir");
            let day1 = dir.join(format!("state_users_{big_part}.csv.gz"));
            let day2 = dir.join(format!("state_users_{big_part}_1pct_changed.csv.gz"));
            export(&day1, big_part, false);
            export(&day2, big_part, true);
            stack.put("big/day1.csv.gz", std::fs::read(&day1).expect("read")).await;
            stack.put("big/day2.csv.gz", std::fs::read(&day2).expect("read")).await;
            let (_, delivered, _, _, _) =
                run_child(&stack, &[], "big/day1.csv.gz", Some(&state_dir)).await;
            assert_eq!(delivered, big_part);
            let t = Instant::now();
            let bytes = grow_state(&state_dir, big_keys);
            eprintln!("state grown to {big_keys} keys ({:.0} MiB) in {:.0} s", bytes as f64 / (1u64 << 20) as f64, t.elapsed().as_secs_f64());
            let (secs, delivered, unchanged, rss, cpu) =
                run_child(&stack, &[], "big/day2.csv.gz", Some(&state_dir)).await;
            // Exactly the changed rows: what a whole in-memory state decides for these keys.
            assert_eq!((delivered, unchanged), (big_part / 100, big_part - big_part / 100));
            println!(
                "| 1 % changed, {big_part} users | {big_keys} keys ({:.0} MiB), local directory | {secs:.1} | {:.0} | {:.0} | {delivered} | {unchanged} | {rss:.0} |",
                bytes as f64 / (1u64 << 20) as f64,
                big_part as f64 / secs,
                big_part as f64 / cpu
            );
            // Mirror mode against the same state: the folder `big/` (both exports, complete) is
            // compared with every shard of it. All but the export's 1M of the 100M users are
            // absent, so the guard refuses: the whole comparison runs, nothing is deleted.
            stack.put("big/_SUCCESS", Vec::new()).await;
            let (secs, _, _, rss, cpu) = run_child(
                &stack,
                &[("SYNC_MODE", "mirror")],
                "big/_SUCCESS",
                Some(&state_dir),
            )
            .await;
            println!(
                "| mirror pass of the folder (2 exports of {big_part} users; guard refuses) | {big_keys} keys, local directory | {secs:.1} | {:.0} | {:.0} | 0 | 0 | {rss:.0} |",
                big_keys as f64 / secs,
                big_keys as f64 / cpu
            );
            let _ = std::fs::remove_dir_all(&state_dir);
        }
    });
}
