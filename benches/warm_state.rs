//! `make bench` (warm state): a snapshot re-synced part by part in one warm process, through the
//! real handler with the sync state in S3 (moto), reporting the state bytes read from and written
//! to the store, against the state's size.
//!
//! 1. A first run delivers `BENCH_STATE_KEYS` users (default 10,000,000) as one export; MoEngage
//!    is a fake that accepts every body at once (what is measured is the state, not delivery).
//! 2. The same users, split into `BENCH_PARTS` parts (default 100), are re-synced in the same
//!    warm process (`STATE_CACHE_MB` on), then again in a cold one for each part
//!    (`STATE_CACHE_MB=0`, the first `BENCH_COLD_PARTS` parts, default 3, extrapolated).
//! 3. The parts again with 1 % of users changed (every 100th user's email), in one warm process:
//!    exactly those rows are sent, and what the saves write (deltas, and a compaction now and
//!    then) is set against what rewriting every touched shard would have written.
//!
//! Exports are generated into `BENCH_DIR` (default `target/bench-data`) and kept.

#[path = "../tests/fixtures/users.rs"]
mod users;

#[allow(clippy::duplicate_mod)]
#[path = "../tests/it/support.rs"]
mod support;

mod shared;
use shared::{env_u64, peak_rss_mib};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(
            &args[2],
            args[3].parse().expect("parts"),
            &args[4],
            &args[5],
        );
    }
    if std::env::var("MOTO_SERVER").is_err() {
        println!("\nwarm state: skipped (set MOTO_SERVER to moto_server, as `make bench` does)");
        return;
    }
    let keys = env_u64("BENCH_STATE_KEYS", 10_000_000);
    let parts = env_u64("BENCH_PARTS", 100);
    let cold_parts = env_u64("BENCH_COLD_PARTS", 3).min(parts);
    let dir =
        PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench-data".into()));
    std::fs::create_dir_all(&dir).expect("create BENCH_DIR");
    let whole = dir.join(format!("state_users_{keys}.csv.gz"));
    shared::export_users(&whole, 1, keys, false);
    let per = keys.div_ceil(parts);
    let parts_of = |changed: bool| -> Vec<PathBuf> {
        (0..parts)
            .map(|p| {
                let tag = if changed { "_changed" } else { "" };
                let path = dir.join(format!(
                    "state_users_{keys}_part{p:03}of{parts}{tag}.csv.gz"
                ));
                shared::export_users(&path, p * per + 1, ((p + 1) * per).min(keys), changed);
                path
            })
            .collect()
    };
    let part_paths = parts_of(false);
    let changed_paths = parts_of(true);

    let runtime = shared::runtime();
    runtime.block_on(async {
        let stack = support::Stack::start().await;
        let overrides = [("FIELD_MAPPING", users::MAPPING)];
        let mut warm = stack.deps(&overrides).await;
        warm.deliver = shared::accept_all();
        let cache = warm.shard_cache.clone().expect("cache on by default");

        // 1. First run: the whole snapshot as one export.
        stack
            .put("day1/users.csv.gz", std::fs::read(&whole).expect("read"))
            .await;
        let t = Instant::now();
        let first = stack.invoke(&warm, "day1/users.csv.gz").await;
        let first_s = t.elapsed().as_secs_f64();
        let o = &first.objects[0];
        assert_eq!(o.rows_delivered, keys, "{o:?}");
        let state_bytes = state_size(&stack).await;
        let after_first = cache.stats();

        // 2. The same users in parts, re-synced by one warm process of its own (its peak RSS is
        //    the re-sync's).
        for (p, path) in part_paths.iter().enumerate() {
            stack
                .put(&format!("day2/part{p:03}.csv.gz"), std::fs::read(path).expect("read"))
                .await;
        }
        let mut env = stack.env();
        env.insert("FIELD_MAPPING".into(), users::MAPPING.into());
        let nums = shared::run_child(
            &[&stack.moto.endpoint, &parts.to_string(), &keys.to_string(), "day2"],
            &env,
        )
        .await;
        let [warm_s, warm_read, warm_written, warm_rss, _] = nums[..] else {
            panic!("child printed {nums:?}");
        };
        let (warm_read, warm_written) = (warm_read as u64, warm_written as u64);

        // 3. The first parts again, each in a cold process (no cache): what every part cost before.
        let mut cold_read = 0u64;
        let t = Instant::now();
        for p in 0..cold_parts {
            let mut cold = stack.deps(&[overrides[0], ("STATE_CACHE_MB", "0")]).await;
            cold.deliver = shared::accept_all();
            let counting = Arc::new(CountingStore {
                inner: cold.state.clone(),
                read: Default::default(),
                writes: Default::default(),
            });
            cold.state = counting.clone();
            // A new key: day2's parts have completed runs, which the handler does not repeat.
            let key = format!("day3/part{p:03}.csv.gz");
            stack
                .put(&key, std::fs::read(&part_paths[p as usize]).expect("read"))
                .await;
            let s = stack.invoke(&cold, &key).await;
            assert_eq!(s.objects[0].rows_delivered, 0);
            cold_read += counting.read.load(std::sync::atomic::Ordering::Relaxed);
        }
        let cold_s = t.elapsed().as_secs_f64() / cold_parts.max(1) as f64;

        // 4. The parts with 1 % changed, in one warm process: exactly the changed rows are sent,
        //    and each part's save writes what it changed.
        for (p, path) in changed_paths.iter().enumerate() {
            stack
                .put(&format!("day4/part{p:03}.csv.gz"), std::fs::read(path).expect("read"))
                .await;
        }
        let nums = shared::run_child(
            &[&stack.moto.endpoint, &parts.to_string(), &keys.to_string(), "day4"],
            &env,
        )
        .await;
        let [changed_s, changed_read, changed_written, changed_rss, changed_puts] = nums[..] else {
            panic!("child printed {nums:?}");
        };
        let state_after = state_size(&stack).await;

        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        println!("\n## warm state: {parts}-part snapshot of {keys} users re-synced through the handler (moto S3, sync state), MoEngage accepting at once\n");
        println!("| step | wall s | rows/s | state read from S3 MiB | ÷ state size | state written MiB | peak RSS MiB |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        println!(
            "| first run, one export (state: {:.1} MiB, {} B/key) | {first_s:.1} | {:.0} | {:.1} | | {:.1} | |",
            mib(state_bytes),
            state_bytes / keys.max(1),
            keys as f64 / first_s,
            mib(after_first.bytes_downloaded),
            mib(after_first.bytes_written),
        );
        println!(
            "| re-sync, {parts} parts, one warm process (`STATE_CACHE_MB` 512) | {warm_s:.1} | {:.0} | {:.1} | {:.2} × | {:.1} | {warm_rss:.0} (that process) |",
            keys as f64 / warm_s,
            mib(warm_read),
            warm_read as f64 / state_bytes.max(1) as f64,
            mib(warm_written),
        );
        let cold_total = cold_read as f64 / cold_parts.max(1) as f64 * parts as f64;
        println!(
            "| re-sync, cold per part (`STATE_CACHE_MB=0`; {cold_parts} parts measured, × {parts}) | {:.1} per part | | {:.1} | {:.1} × | 0 | |",
            cold_s,
            cold_total / (1u64 << 20) as f64,
            cold_total / state_bytes.max(1) as f64,
        );
        println!(
            "| re-sync, {parts} parts, 1 % changed ({} rows sent), one warm process | {changed_s:.1} | {:.0} | {:.1} | {:.2} × | **{:.1}** ({changed_puts:.0} writes) | {changed_rss:.0} (that process) |",
            keys / 100,
            keys as f64 / changed_s,
            mib(changed_read as u64),
            changed_read / state_bytes.max(1) as f64,
            mib(changed_written as u64),
        );
        println!(
            "\nRewriting every shard a part touched (each part's changed users fall in every shard) would write {parts} × the state: {:.1} MiB. The state after step 4: {:.1} MiB.",
            mib(parts * state_bytes),
            mib(state_after),
        );
    });
}

/// The stored size of the sync state: every shard under `sync/`.
async fn state_size(stack: &support::Stack) -> u64 {
    let mut total = 0;
    let mut token = None;
    loop {
        let page = stack
            .s3
            .list_objects_v2()
            .bucket(&stack.bucket)
            .prefix("moengage-sync/sync/")
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        total += page
            .contents()
            .iter()
            .filter(|o| o.key().is_some_and(|k| k.ends_with(".bin")))
            .map(|o| o.size().unwrap_or(0) as u64)
            .sum::<u64>();
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return total;
        }
    }
}

/// Counts shard bytes read through a store (the cold runs have no cache to count them), and
/// shard writes (bases and deltas).
struct CountingStore {
    inner: Arc<dyn moengage_sync::state::StateStore>,
    read: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl moengage_sync::state::StateStore for CountingStore {
    async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, moengage_sync::state::StateError> {
        Ok(self.get_versioned(bucket, key).await?.map(|v| v.body))
    }
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        if_absent: bool,
    ) -> Result<moengage_sync::state::PutOutcome, moengage_sync::state::StateError> {
        self.inner.put(bucket, key, body, if_absent).await
    }
    async fn get_versioned(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<moengage_sync::state::Versioned>, moengage_sync::state::StateError> {
        let v = self.inner.get_versioned(bucket, key).await?;
        if key.ends_with(".bin") {
            if let Some(v) = &v {
                self.read
                    .fetch_add(v.body.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(v)
    }
    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expect: moengage_sync::state::Expect,
    ) -> Result<Option<String>, moengage_sync::state::StateError> {
        if key.ends_with(".bin") {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.put_if(bucket, key, body, expect).await
    }
    async fn delete(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(), moengage_sync::state::StateError> {
        self.inner.delete(bucket, key).await
    }
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<Vec<moengage_sync::state::Listed>>, moengage_sync::state::StateError> {
        self.inner.list(bucket, prefix).await
    }
    async fn get_listed(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Option<moengage_sync::state::Versioned>, moengage_sync::state::StateError> {
        // Not counted: the child's cache counts what it downloads; its local copy is no read.
        self.inner.get_listed(bucket, key, etag).await
    }
    async fn get_if_changed(
        &self,
        bucket: &str,
        key: &str,
        known: Option<&str>,
        max_bytes: usize,
    ) -> Result<moengage_sync::state::Fetched, moengage_sync::state::StateError> {
        let got = self
            .inner
            .get_if_changed(bucket, key, known, max_bytes)
            .await?;
        if let (true, moengage_sync::state::Fetched::Changed(v)) = (key.ends_with(".bin"), &got) {
            self.read
                .fetch_add(v.body.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(got)
    }
}

/// A warm re-sync, in a process of its own: every part under `folder` through the handler with
/// one `Deps`, as one warm Lambda instance would. Every 100th user is sent in `day4`, none in
/// `day2`. Prints wall seconds, shard bytes downloaded, shard bytes written, peak RSS (MiB) and
/// the number of shard writes (bases and deltas).
fn child(moto_endpoint: &str, parts: u64, keys: &str, folder: &str) {
    let keys: u64 = keys.parse().expect("keys");
    let changed = folder == "day4";
    let runtime = shared::runtime();
    runtime.block_on(async {
        let (mut deps, bucket) = shared::child_deps(moto_endpoint).await;
        let cache = deps.shard_cache.clone().expect("cache on by default");
        let counting = Arc::new(CountingStore {
            inner: deps.state.clone(),
            read: Default::default(),
            writes: Default::default(),
        });
        deps.state = counting.clone();
        let t = Instant::now();
        let (mut unchanged, mut delivered) = (0, 0);
        for p in 0..parts {
            let s = moengage_sync::app::handler::handle(
                &deps,
                support::s3_event(&bucket, &format!("{folder}/part{p:03}.csv.gz")),
                &moengage_sync::app::Invocation::unbounded(),
            )
            .await
            .expect("handler");
            let o = &s.objects[0];
            assert_eq!(o.rows_read, o.rows_unchanged + o.rows_delivered, "{o:?}");
            unchanged += o.rows_unchanged;
            delivered += o.rows_delivered;
        }
        let expect = if changed { keys / 100 } else { 0 };
        assert_eq!((delivered, unchanged), (expect, keys - expect));
        let stats = cache.stats();
        let writes = counting.writes.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "{} {} {} {} {writes}",
            t.elapsed().as_secs_f64(),
            stats.bytes_downloaded,
            stats.bytes_written,
            peak_rss_mib()
        );
    });
}
