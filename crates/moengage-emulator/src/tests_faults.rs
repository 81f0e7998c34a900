//! Black-box tests of the fault knobs, the admin faults endpoint and shutdown.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::test_support::{basic, customer, transition, Harness};
use super::*;

const TRANSITION: &str = "/v1/transition/WORKSPACE1";

#[tokio::test]
async fn fail_first_n_answers_the_status_before_anything_else_then_recovers() {
    let faults = Faults {
        fail_first_n: 2,
        fail_status: 503,
        ..Faults::default()
    };
    let h = Harness::start(EmulatorConfig {
        faults,
        ..EmulatorConfig::default()
    })
    .await;
    // Even a request with no credentials gets the injected status: it comes first.
    let first = h.send(h.client.post(h.url(TRANSITION))).await;
    assert_eq!(
        (first.status, first.body["error"]["type"].as_str()),
        (503, Some("ServerError"))
    );
    let second = h
        .post(TRANSITION, &transition(vec![customer("u1", json!({}))]))
        .await;
    assert_eq!(second.status, 503);
    assert!(h.emu.state().users.is_empty());
    assert_eq!(h.emu.faults().fail_first_n, 0);
    let third = h
        .post(TRANSITION, &transition(vec![customer("u1", json!({}))]))
        .await;
    assert_eq!(third.status, 200);
    let log = h.emu.state().requests;
    let faults: Vec<_> = log.iter().map(|r| r.fault.as_deref()).collect();
    assert_eq!(faults, [Some("fail_first_n"), Some("fail_first_n"), None]);
}

#[tokio::test]
async fn admin_faults_endpoint_patches_knobs_and_rejects_bad_ones() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let patch = json!({"fail_first_n": 1, "fail_status": 429, "fail_body": {"custom": true}});
    let set = h
        .client
        .post(h.url("/_emulator/faults"))
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let a = h.post(TRANSITION, &transition(vec![])).await;
    assert_eq!((a.status, a.body.clone()), (429, json!({"custom": true})));
    assert!(a.headers.contains_key("x-ratelimit-reset"));

    let current: Faults = serde_json::from_str(
        &h.client
            .get(h.url("/_emulator/faults"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!((current.fail_first_n, current.fail_status), (0, 429));

    for bad in [
        json!({"fail_frist_n": 1}),
        json!({"reset_probability": 2.0}),
        json!({"fail_status": 1000}),
    ] {
        let r = h
            .client
            .post(h.url("/_emulator/faults"))
            .body(bad.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(h.emu.faults(), current, "a refused patch changes nothing");
}

#[tokio::test]
async fn fail_customer_id_fails_only_the_batch_carrying_it() {
    let h = Harness::start(EmulatorConfig::default()).await;
    h.emu.set_faults(Faults {
        fail_customer_id: Some("poison".into()),
        ..Faults::default()
    });
    let bad = transition(vec![
        customer("u1", json!({})),
        customer("poison", json!({})),
    ]);
    let good = transition(vec![customer("u2", json!({}))]);
    let a = h.post(TRANSITION, &bad).await;
    assert_eq!((a.status, a.body["status"].as_str()), (400, Some("fail")));
    assert_eq!(h.post(TRANSITION, &good).await.status, 200);
    let single = h
        .post("/v1/customer/WORKSPACE1", &customer("poison", json!({})))
        .await;
    assert_eq!(single.status, 400);
    let s = h.emu.state();
    assert_eq!(s.users.keys().collect::<Vec<_>>(), ["u2"]);
    assert_eq!(s.requests[0].fault.as_deref(), Some("fail_customer_id"));
    assert_eq!(s.requests[0].customer_ids, ["u1", "poison"]);
}

#[tokio::test]
async fn reset_drops_the_connection_without_any_response() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let body = transition(vec![customer("u1", json!({}))]).to_string();
    let request = |h: &Harness| {
        h.client
            .post(h.url(TRANSITION))
            .header(
                "authorization",
                basic(DEFAULT_WORKSPACE_ID, DEFAULT_API_KEY),
            )
            .header("content-type", "application/json")
            .body(body.clone())
    };
    // A first request leaves a keep-alive connection in the client's pool.
    assert_eq!(request(&h).send().await.unwrap().status(), 200);
    h.emu.set_faults(Faults {
        reset_probability: 1.0,
        ..Faults::default()
    });
    let err = request(&h)
        .send()
        .await
        .expect_err("a reset must not produce a response");
    assert!(err.status().is_none(), "{err:?}");
    h.emu.set_faults(Faults::default());
    assert_eq!(request(&h).send().await.unwrap().status(), 200);

    let s = h.emu.state();
    let log: Vec<_> = s
        .requests
        .iter()
        .map(|r| (r.status, r.fault.as_deref()))
        .collect();
    assert_eq!(
        log,
        [(Some(200), None), (None, Some("reset")), (Some(200), None)]
    );
    assert_eq!(s.accepted.len(), 2, "the reset request stored nothing");
}

#[tokio::test]
async fn reset_is_a_tcp_reset_on_the_wire() {
    let h = Harness::start(EmulatorConfig::default()).await;
    h.emu.set_faults(Faults {
        reset_probability: 1.0,
        ..Faults::default()
    });
    let mut stream = TcpStream::connect(h.emu.addr).await.unwrap();
    let body = "{}";
    let head = format!(
        "POST {TRANSITION} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .unwrap();
    let err = read.expect_err("expected ECONNRESET, got a clean close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(buf.is_empty());
}

#[tokio::test]
async fn delay_ms_slows_every_api_answer() {
    let h = Harness::start(EmulatorConfig::default()).await;
    h.emu.set_faults(Faults {
        delay_ms: 25,
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(h.post(TRANSITION, &transition(vec![])).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(25));
}

#[tokio::test]
async fn rate_limit_can_be_changed_at_runtime() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let patch = |v: Value| {
        h.client
            .post(h.url("/_emulator/faults"))
            .body(json!({"rate_limit_per_minute": v}).to_string())
            .send()
    };
    assert_eq!(patch(json!(1)).await.unwrap().status(), 200);
    assert_eq!(h.post(TRANSITION, &transition(vec![])).await.status, 200);
    let limited = h.post(TRANSITION, &transition(vec![])).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers["x-ratelimit-limit"], "1");
    // Unlimited: no 429 and no rate headers.
    patch(json!(0)).await.unwrap();
    let free = h.post(TRANSITION, &transition(vec![])).await;
    assert_eq!(free.status, 200);
    assert!(!free.headers.contains_key("x-ratelimit-limit"));
    // Back to the configured 100.
    patch(Value::Null).await.unwrap();
    let back = h.post(TRANSITION, &transition(vec![])).await;
    assert_eq!(back.headers["x-ratelimit-limit"], "100");
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let h = Harness::start(EmulatorConfig::default()).await;
    let addr = h.emu.addr;
    assert_eq!(h.post(TRANSITION, &transition(vec![])).await.status, 200);
    h.emu.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
}
