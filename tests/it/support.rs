//! The test stack: a moto server (S3 + SQS) and the MoEngage emulator, both on 127.0.0.1 with
//! ephemeral ports, plus helpers to upload exports, invoke the handler and read what landed.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use moengage_emulator::{self as emulator, EmulatorConfig, RunningEmulator, StateSnapshot};
use moengage_sync::app::summary::Summary;
use moengage_sync::app::{handler, Deps, Invocation};
use moengage_sync::config::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const WORKSPACE: &str = "WORKSPACE1";
pub const API_KEY: &str = "secret-key-for-tests";

/// A moto server child process; killed when dropped.
pub struct Moto {
    _child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Moto {
        let bin = std::env::var("MOTO_SERVER")
            .unwrap_or_else(|_| format!("{}/.venv/bin/moto_server", env!("CARGO_MANIFEST_DIR")));
        assert!(
            std::path::Path::new(&bin).exists(),
            "moto_server not found at {bin}: run `make test` (it installs moto into .venv) or set MOTO_SERVER"
        );
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        // Werkzeug announces the port it bound: " * Running on http://127.0.0.1:PORT".
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read moto output") {
                if let Some(i) = line.find("http://127.0.0.1:") {
                    return line[i..].trim().to_string();
                }
            }
            panic!("moto_server exited before announcing its port");
        })
        .await
        .expect("moto_server did not start within 30 s");
        // Keep draining moto's log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Moto {
            _child: child,
            endpoint,
        }
    }
}

/// moto + emulator + a bucket and a dead-letter queue.
pub struct Stack {
    pub moto: Moto,
    pub emulator: RunningEmulator,
    pub aws: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub bucket: String,
    pub dlq_url: String,
    pub work_url: String,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(EmulatorConfig {
            rate_limit_per_minute: 0,
            ..emulator_config()
        })
        .await
    }

    pub async fn start_with(emulator_config: EmulatorConfig) -> Stack {
        let (moto, emulator) = tokio::join!(Moto::start(), async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind emulator");
            emulator::spawn(emulator_config, listener)
                .await
                .expect("start emulator")
        });
        let aws = local_aws(&moto.endpoint).await;
        let s3 = path_style_s3(&aws);
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let bucket = "exports-bucket".to_string();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let dlq_url = sqs
            .create_queue()
            .queue_name("moengage-dlq")
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        let work_url = sqs
            .create_queue()
            .queue_name("moengage-work")
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        Stack {
            moto,
            emulator,
            aws,
            s3,
            sqs,
            bucket,
            dlq_url,
            work_url,
        }
    }

    /// The configuration a user of the local stack would set.
    pub fn env(&self) -> HashMap<String, String> {
        [
            ("MOENGAGE_DATA_CENTER", "DC-01".to_string()),
            ("MOENGAGE_WORKSPACE_ID", WORKSPACE.into()),
            ("MOENGAGE_API_KEY", API_KEY.into()),
            ("MOENGAGE_API_URL", self.emulator.base_url()),
            ("OBJECT_TYPE", "bulk_import".into()),
            ("DEAD_LETTER_QUEUE_URL", self.dlq_url.clone()),
            ("WORK_QUEUE_URL", self.work_url.clone()),
            ("SOURCE_BUCKET", self.bucket.clone()),
            ("RATE_LIMIT_PER_MINUTE", "1000000".into()),
            // Transient-failure tests should not wait seconds between attempts.
            ("RETRY_BASE_DELAY_MS", "10".into()),
            ("RETRY_MAX_DELAY_SECS", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Real dependencies (S3, SQS, HTTP) built the way `main` builds them, against this stack.
    pub async fn deps(&self, overrides: &[(&str, &str)]) -> Deps {
        let mut env = self.env();
        for (k, v) in overrides {
            env.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("valid test config");
        moengage_sync::app::startup::connect_with(config, &self.aws)
            .await
            .expect("connect")
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put object");
    }

    /// Invokes the real handler with the notification S3 would send for `key`.
    pub async fn invoke(&self, deps: &Deps, key: &str) -> Summary {
        handler::handle(deps, s3_event(&self.bucket, key), &Invocation::unbounded())
            .await
            .expect("handler")
    }

    /// Invokes the real handler with any payload.
    pub async fn invoke_payload(&self, deps: &Deps, payload: Value) -> Summary {
        handler::handle(deps, payload, &Invocation::unbounded())
            .await
            .expect("handler")
    }

    /// Every message in the work queue, as an SQS event the function would receive.
    pub async fn work_queue_as_sqs_event(&self) -> Value {
        let got = self
            .sqs
            .receive_message()
            .queue_url(&self.work_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let records: Vec<Value> = got
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body, "eventSource": "aws:sqs"}))
            .collect();
        json!({"Records": records})
    }

    pub fn state(&self) -> StateSnapshot {
        self.emulator.state()
    }

    /// Every message currently in the dead-letter queue, parsed; they stay in the queue, visible.
    pub async fn dlq_messages(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                // Peek: visible again at once, so the code under test can still read them.
                .visibility_timeout(0)
                .send()
                .await
                .expect("receive");
            let msgs = got.messages.unwrap_or_default();
            let mut new = 0;
            for m in msgs {
                if seen.insert(m.message_id().unwrap_or_default().to_string()) {
                    new += 1;
                    out.push(
                        serde_json::from_str(m.body().unwrap_or_default())
                            .expect("DLQ body is JSON"),
                    );
                }
            }
            if new == 0 {
                break;
            }
        }
        out
    }

    /// How many times each customer id reached the emulator in an accepted request.
    pub fn deliveries_per_customer(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for r in self
            .state()
            .requests
            .iter()
            .filter(|r| r.status == Some(200))
        {
            for c in &r.customer_ids {
                *out.entry(c.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// A stored state object (e.g. a run report) as JSON.
    pub async fn get_json(&self, uri: &str) -> Value {
        let rest = uri.strip_prefix("s3://").expect("s3 uri");
        let (bucket, key) = rest.split_once('/').expect("bucket/key");
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        serde_json::from_slice(&out.body.collect().await.expect("body").into_bytes()).expect("json")
    }
}

/// The SDK configuration for a local moto at `endpoint`, with test credentials.
pub async fn local_aws(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// An S3 client for moto (path-style: `bucket.127.0.0.1` does not resolve).
pub fn path_style_s3(aws: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(true)
            .build(),
    )
}

pub fn emulator_config() -> EmulatorConfig {
    EmulatorConfig {
        workspace_id: WORKSPACE.into(),
        api_key: API_KEY.into(),
        ..EmulatorConfig::default()
    }
}

/// An S3 ObjectCreated notification as S3 sends it (key URL-encoded, `+` for spaces).
pub fn s3_event(bucket: &str, key: &str) -> Value {
    let encoded: String = key
        .split('/')
        .map(|seg| {
            percent_encoding::utf8_percent_encode(seg, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .replace("%20", "+")
        })
        .collect::<Vec<_>>()
        .join("/");
    json!({"Records":[{
        "eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2026-11-29T10:00:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{"s3SchemaVersion":"1.0","configurationId":"tests",
              "bucket":{"name":bucket,"arn":format!("arn:aws:s3:::{bucket}")},
              "object":{"key":encoded,"size":1,"eTag":"etag"}}}]})
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// A users export: `user_id,email,first_name,city,plan` with `n` rows.
pub fn users_csv(n: usize) -> String {
    let mut s = String::from("user_id,email,first_name,city,plan\n");
    for i in 1..=n {
        s.push_str(&format!(
            "user-{i:05},user{i}@example.com,Name {i},\"City, {}\",{}\n",
            i % 7,
            if i % 2 == 0 { "pro" } else { "free" }
        ));
    }
    s
}

/// The real `moengage-sync` binary running as a Lambda function, against a minimal Lambda Runtime
/// API served here that hands out one invocation and keeps the function waiting after it. Its
/// response is captured, and its peak RSS read from `/proc` while it waits. Killed when dropped.
pub struct Function {
    child: Child,
    responses: tokio::sync::mpsc::UnboundedReceiver<Value>,
    server: tokio::task::JoinHandle<()>,
}

impl Function {
    /// Starts the function with the stack's environment plus `overrides`, invoked with `event`.
    pub async fn start(stack: &Stack, overrides: &[(&str, &str)], event: Value) -> Function {
        let (api, responses, server) = runtime_api(event).await;
        let mut env: HashMap<String, String> = stack.env();
        for (k, v) in overrides {
            env.insert(k.to_string(), v.to_string());
        }
        let child = Command::new(env!("CARGO_BIN_EXE_moengage-sync"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env)
            .env("AWS_LAMBDA_RUNTIME_API", &api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "moengage-sync")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
            .env("AWS_ENDPOINT_URL", &stack.moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the function");
        Function {
            child,
            responses,
            server,
        }
    }

    /// The invocation's response (or error) body, once the function posts it.
    pub async fn response(&mut self, within: Duration) -> Value {
        tokio::time::timeout(within, self.responses.recv())
            .await
            .expect("the function answered in time")
            .expect("the runtime API is up")
    }

    /// Peak resident memory of the function process so far, MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> f64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb / 1024.0
    }

    /// SIGKILL, and reap.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
        self.server.abort();
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A Lambda Runtime API that hands out one invocation, then keeps the function waiting; response
/// and error bodies go to the returned channel.
async fn runtime_api(
    event: Value,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<Value>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut given = false;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await.is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body).await;
            if request_line.contains("/invocation/next") {
                if given {
                    // The next invocation never comes: the function waits until it is killed.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(write);
                    });
                    continue;
                }
                given = true;
                let deadline_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
                    + 600_000;
                let body = event.to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Lambda-Runtime-Aws-Request-Id: req-1\r\n\
                     Lambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
                     Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:moengage-sync\r\n\
                     Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = write.write_all(response.as_bytes()).await;
            } else {
                if request_line.contains("/response") || request_line.contains("/error") {
                    let value = serde_json::from_slice(&body)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
                    let _ = tx.send(value);
                }
                let _ = write
                    .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                    .await;
            }
        }
    });
    (addr, rx, task)
}
