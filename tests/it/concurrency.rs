//! Concurrent delivery (`MAX_IN_FLIGHT`): requests overlap against a slow MoEngage, every row is
//! delivered exactly once, one user's rows reach MoEngage in file order, and the run balances.

use moengage_emulator::Faults;

use crate::support::Stack;

/// 12 users, each in five rows (plan v1 … v5 in file order), 12 rows apart: closer than the 16
/// requests in flight, so they would overtake one another if one user's rows went concurrently.
fn repeated_users() -> String {
    let mut csv = String::from("user_id,plan\n");
    for version in 1..=5 {
        for u in 1..=12 {
            csv.push_str(&format!("user-{u:03},v{version}\n"));
        }
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_overlap_yet_each_users_rows_arrive_once_and_in_file_order() {
    let stack = Stack::start().await;
    stack.emulator.set_faults(Faults {
        delay_ms: 40,
        ..Faults::default()
    });
    stack
        .put("exports/users.csv", repeated_users().into_bytes())
        .await;
    let deps = stack
        .deps(&[
            ("OBJECT_TYPE", "user_attributes"),
            ("PRIMARY_KEY", "user_id"),
            ("MAX_IN_FLIGHT", "16"),
        ])
        .await;

    let obj = stack
        .invoke(&deps, "exports/users.csv")
        .await
        .objects
        .remove(0);

    assert_eq!(
        (obj.rows_read, obj.rows_delivered, obj.rows_pending),
        (60, 60, 0),
        "{obj:?}"
    );
    assert!(obj.balanced());
    let state = stack.state();
    // Each row once: five accepted requests per user.
    let per = stack.deliveries_per_customer();
    assert_eq!(per.len(), 12);
    assert!(per.values().all(|n| *n == 5), "{per:?}");
    // The last row of each user is what MoEngage holds: no row overtook a later one.
    for (id, attributes) in &state.users {
        assert_eq!(attributes["plan"], "v5", "{id}");
    }
    // And per user, the requests arrived one after another's answer, never overlapping.
    let mut seen: std::collections::BTreeMap<&str, Vec<chrono::DateTime<chrono::Utc>>> =
        Default::default();
    for r in &state.requests {
        for c in &r.customer_ids {
            seen.entry(c.as_str()).or_default().push(r.timestamp);
        }
    }
    for (id, times) in &seen {
        for pair in times.windows(2) {
            let gap = (pair[1] - pair[0]).num_milliseconds();
            assert!(
                gap >= 35,
                "{id}: a request arrived {gap} ms after the previous one, before its answer"
            );
        }
    }
    // Requests did overlap: with one in flight, arrivals are at least the 40 ms delay apart.
    let overlapping = state
        .requests
        .windows(2)
        .filter(|p| (p[1].timestamp - p[0].timestamp).num_milliseconds() < 20)
        .count();
    assert!(
        overlapping > 20,
        "only {overlapping} of {} requests overlapped",
        state.requests.len()
    );
}
