//! Logs are structured JSON, name the object and counts, and never contain the Data API key —
//! not even at TRACE level, where the HTTP and AWS crates log too.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use moengage_emulator::Faults;

use crate::support::{gzip, users_csv, Stack, API_KEY, WORKSPACE};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_appears_in_any_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The only test in this binary that installs a global subscriber.
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("no other global subscriber");

    let stack = Stack::start().await;
    stack
        .put("exports/u.csv.gz", gzip(users_csv(120).as_bytes()))
        .await;
    // A retry, a dead letter, a wrong key and a clean run: every path that logs.
    stack.emulator.set_faults(Faults {
        fail_first_n: 1,
        fail_customer_id: Some("user-00070".into()),
        ..Faults::default()
    });
    let wrong = stack
        .deps(&[
            ("PRIMARY_KEY", "user_id"),
            ("MOENGAGE_API_KEY", "wrong-key-also-secret"),
        ])
        .await;
    stack.invoke(&wrong, "exports/u.csv.gz").await;
    let good = stack.deps(&[("PRIMARY_KEY", "user_id")]).await;
    let summary = stack.invoke(&good, "exports/u.csv.gz").await;
    assert_eq!(summary.objects[0].rows_dead_lettered, 50);

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("\"key\":\"exports/u.csv.gz\"") && logs.contains("object processed"),
        "logs must say what happened"
    );
    assert!(
        logs.contains("dead-lettering a request body")
            && logs.contains("transient failure, retrying")
    );
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{WORKSPACE}:{API_KEY}"));
    for secret in [API_KEY, "wrong-key-also-secret", token.as_str()] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
}
