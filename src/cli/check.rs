//! `moengage-sync check`: verifies a configuration end to end without sending data. One line per
//! check, `✓` or `✗`, each failure saying what to fix; the exit code is non-zero if any failed.
//!
//! The checks, in the order a deploy goes wrong:
//! 1. configuration parses (`Config::from_env`);
//! 2. the Data API key is available (read from the secret when `MOENGAGE_API_KEY_SECRET_ARN`);
//! 3. the data center's API host resolves;
//! 4. the credentials are accepted (`POST /v1/integrations/authentication`);
//! 5. the App ID in request paths is accepted: an empty `{}` body to the endpoint the function
//!    posts to — MoEngage answers 409 when the App ID is not the Workspace ID, and otherwise
//!    rejects the empty body (it has no `customer_id`), so nothing is stored;
//! 6. the bucket (`--bucket` or `STATE_BUCKET`) answers HeadBucket;
//! 7. the dead-letter queue (and the work queue, when set) answers GetQueueAttributes.

use std::fmt;

use aws_sdk_sqs::types::QueueAttributeName;

use super::{exit, CheckArgs};
use crate::aws::aws_error_text;
use crate::config::{ApiKeySource, Config};
use crate::deliver::client::{classify, ApiResponse, RetryAction, TransportError};
use crate::model::Endpoint;
use crate::model::ObjectType;

/// The path of the credentials check.
const AUTH_PATH: &str = "/v1/integrations/authentication";

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    /// Not run because an earlier check it depends on failed.
    Skipped(String),
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub name: &'static str,
    pub verdict: Verdict,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Pass(m) => write!(f, "✓ {}: {m}", self.name),
            Verdict::Fail(m) => write!(f, "✗ {}: {m}", self.name),
            Verdict::Skipped(m) => write!(f, "– {}: not checked: {m}", self.name),
        }
    }
}

pub async fn run(args: CheckArgs) -> i32 {
    let mut failed = false;
    let mut report = |line: Line| {
        failed |= matches!(line.verdict, Verdict::Fail(_));
        println!("{line}");
    };
    let config = match super::load_config().await {
        Ok(c) => c,
        Err(e) => {
            report(Line {
                name: "configuration",
                verdict: Verdict::Fail(e),
            });
            return exit::FAILED;
        }
    };
    report(Line {
        name: "configuration",
        verdict: Verdict::Pass(describe(&config)),
    });
    // One line per sync: where its objects come from and where their rows go.
    for spec in &config.syncs.syncs {
        report(Line {
            name: "sync",
            verdict: Verdict::Pass(describe_sync(&config, spec)),
        });
    }

    let aws = super::aws_config().await;
    // The key, read the way the function reads it (from the secret when deployed).
    let client = match crate::app::startup::connect_with(config.clone(), &aws).await {
        Ok(deps) => {
            let from = match &config.api_key {
                ApiKeySource::Literal(_) => "from MOENGAGE_API_KEY".to_string(),
                ApiKeySource::SecretArn(arn) => format!("read from the secret {arn}"),
            };
            report(Line {
                name: "Data API key",
                verdict: Verdict::Pass(from),
            });
            Some(deps.moengage)
        }
        Err(e) => {
            report(Line {
                name: "Data API key",
                verdict: Verdict::Fail(e.to_string()),
            });
            None
        }
    };

    report(dns(&config).await);
    let credentials = match &client {
        Some(c) => credentials(&config, c.check_auth().await),
        None => Line {
            name: "credentials",
            verdict: Verdict::Skipped("no Data API key".into()),
        },
    };
    let credentials_ok = matches!(credentials.verdict, Verdict::Pass(_));
    report(credentials);
    let app = match (&client, credentials_ok) {
        (Some(c), true) => {
            // Every endpoint accepts or refuses the App ID alike; ask the first sync's.
            let endpoint = config
                .syncs
                .syncs
                .first()
                .map_or(Endpoint::Customer, |s| endpoint(s.object_type));
            app_id(
                &config,
                &c.path(endpoint),
                c.post(endpoint, bytes::Bytes::from_static(b"{}")).await,
            )
        }
        _ => Line {
            name: "App ID",
            verdict: Verdict::Skipped("the credentials were not accepted".into()),
        },
    };
    report(app);

    report(
        bucket(
            &aws,
            args.bucket.as_deref().or(config.state_bucket.as_deref()),
        )
        .await,
    );
    let sqs = aws_sdk_sqs::Client::new(&aws);
    report(
        queue(
            &sqs,
            "dead-letter queue",
            "DEAD_LETTER_QUEUE_URL",
            &config.dead_letter_queue_url,
        )
        .await,
    );
    if let Some(url) = &config.work_queue_url {
        report(queue(&sqs, "work queue", "WORK_QUEUE_URL", url).await);
    }
    if failed {
        exit::FAILED
    } else {
        exit::OK
    }
}

fn describe(config: &Config) -> String {
    let from = match &config.syncs.file {
        Some((location, etag)) => format!(
            "{} syncs from SYNC_CONFIG {location} (version {etag})",
            config.syncs.syncs.len()
        ),
        None => "one sync, default, from the variables".to_string(),
    };
    format!(
        "{} ({}), Workspace ID {}, {from}",
        config.data_center.name(),
        config.api_host(),
        config.workspace_id,
    )
}

/// `users-daily: exports/users/ → bulk_import (upsert, 12 mapped fields) → POST …/v1/transition/APP,
/// budget 1200 requests/min`.
fn describe_sync(config: &Config, spec: &crate::config::syncs::SyncSpec) -> String {
    let endpoint = endpoint(spec.object_type);
    let mapped = match spec.field_mapping.fields.len() {
        0 => "identity mapping".to_string(),
        n => format!("{n} mapped fields"),
    };
    let prefix = match spec.prefix.as_str() {
        "" => "every key".to_string(),
        p => format!("keys under {p}"),
    };
    format!(
        "{}: {prefix} → {} ({}, {mapped}) → POST {}{}, budget {} requests/min",
        spec.name,
        spec.object_type.as_str(),
        spec.sync_mode.as_str(),
        config.api_origin(),
        endpoint.path(&config.app_id),
        config.syncs.budgets.get(endpoint).requests_per_minute,
    )
}

fn endpoint(object_type: ObjectType) -> Endpoint {
    object_type.endpoint()
}

/// Host and port of the API base URL, for the DNS lookup.
fn host_port(url: &reqwest::Url) -> Option<(String, u16)> {
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Some((host, url.port_or_known_default()?))
}

async fn dns(config: &Config) -> Line {
    let name = "DNS";
    let Some((host, port)) = host_port(&config.api_base_url) else {
        return Line {
            name,
            verdict: Verdict::Fail(format!("{} has no host name", config.api_origin())),
        };
    };
    let verdict = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Verdict::Pass(format!("{host} resolves ({})", addr.ip())),
            None => Verdict::Fail(format!("{host} resolves to no address")),
        },
        Err(e) => Verdict::Fail(format!(
            "{host} does not resolve ({e}); check MOENGAGE_DATA_CENTER ({} → {}){} and this machine's DNS",
            config.data_center.name(),
            config.data_center.api_host(),
            if config.api_url_overridden() { " and MOENGAGE_API_URL" } else { "" },
        )),
    };
    Line { name, verdict }
}

/// The answer to `POST /v1/integrations/authentication`.
pub fn credentials(config: &Config, answer: Result<ApiResponse, TransportError>) -> Line {
    let name = "credentials";
    let host = config.api_host();
    let verdict = match answer {
        Err(e) => Verdict::Fail(unreachable(config, AUTH_PATH, &e)),
        Ok(r) => match classify(r.status, &r.body) {
            RetryAction::Successful { .. } => Verdict::Pass(format!(
                "accepted by {host} for Workspace ID {} ({AUTH_PATH} answered {})",
                config.workspace_id, r.status
            )),
            _ => Verdict::Fail(refusal(config, &r)),
        },
    };
    Line { name, verdict }
}

/// The answer to the empty-body probe of the endpoint the function posts to.
pub fn app_id(config: &Config, path: &str, answer: Result<ApiResponse, TransportError>) -> Line {
    let name = "App ID";
    let verdict = match answer {
        Err(e) => Verdict::Fail(unreachable(config, path, &e)),
        // 401/403/409 say the configuration is wrong; anything else means the path's App ID was
        // accepted and only the (deliberately empty) body was not.
        Ok(r) if matches!(r.status, 401 | 403 | 409) => Verdict::Fail(refusal(config, &r)),
        Ok(r) if matches!(classify(r.status, &r.body), RetryAction::Retry(_)) => {
            Verdict::Fail(format!(
                "{} from {}{path}: MoEngage is busy or failing; run the check again in a minute",
                r.status,
                config.api_host()
            ))
        }
        Ok(_) => Verdict::Pass(format!(
            "{} is accepted in {path} (probed with an empty body; nothing stored)",
            config.app_id
        )),
    };
    Line { name, verdict }
}

/// The one-line diagnosis of a refused request: what the status means for this configuration.
pub fn refusal(config: &Config, r: &ApiResponse) -> String {
    let host = config.api_host();
    let dc = config.data_center.name();
    let said = moengage_message(&r.body);
    match r.status {
        401 => format!(
            "401 from {host}: the Workspace ID/Data API key pair is not valid on {dc} — your dashboard URL \
             dashboard-NN.moengage.com tells your data center (DC-NN); check MOENGAGE_WORKSPACE_ID ({}) and the \
             Data API key from Settings > Account > APIs (MoEngage said: {said})",
            config.workspace_id
        ),
        403 => format!(
            "403 from {host}: workspace {} is suspended or blocked for the Data API — check the account's status \
             with MoEngage and that Data API access is enabled (MoEngage said: {said})",
            config.workspace_id
        ),
        409 => format!(
            "409 from {host}: the App ID in the request path ({}) is not the Workspace ID ({}) — unset \
             MOENGAGE_APP_ID (it defaults to the Workspace ID) or set it to the Workspace ID (MoEngage said: {said})",
            config.app_id, config.workspace_id
        ),
        status => format!("{status} from {host}: unexpected answer (MoEngage said: {said})"),
    }
}

/// "cannot reach <url>: <why>", without reqwest repeating the URL.
fn unreachable(config: &Config, path: &str, e: &TransportError) -> String {
    let url = format!("{}{path}", config.api_origin());
    let prefix = format!("error sending request for url ({url}): ");
    let why = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
    format!("cannot reach {url}: {why}")
}

/// MoEngage's `message` (top level or under `error`), else the body, shortened to one line.
fn moengage_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error").and_then(|e| e.get("message")))
        })
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "an empty body".into();
    }
    let mut short: String = one_line.chars().take(200).collect();
    if short.len() < one_line.len() {
        short.push('…');
    }
    format!("{short:?}")
}

async fn bucket(aws: &aws_config::SdkConfig, bucket: Option<&str>) -> Line {
    let name = "bucket";
    let Some(bucket) = bucket else {
        return Line {
            name,
            verdict: Verdict::Fail(
                "no bucket to check: pass --bucket <name> or set STATE_BUCKET".into(),
            ),
        };
    };
    let s3 = super::s3_client(aws);
    let verdict = match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Verdict::Pass(format!("s3://{bucket} is reachable")),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let not_found =
                e.as_service_error().is_some_and(|s| s.is_not_found()) || status == Some(404);
            Verdict::Fail(if not_found {
                format!(
                    "s3://{bucket} does not exist (check --bucket / STATE_BUCKET and AWS_REGION)"
                )
            } else if status == Some(403) {
                format!(
                    "s3://{bucket}: access denied; these AWS credentials may not use the bucket"
                )
            } else {
                format!("s3://{bucket}: {}", aws_error_text(&e))
            })
        }
    };
    Line { name, verdict }
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &'static str, variable: &str, url: &str) -> Line {
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await;
    let verdict = match answer {
        Ok(out) => {
            let waiting = out
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                .map(|n| format!(", {n} messages waiting"))
                .unwrap_or_default();
            Verdict::Pass(format!("{url} is reachable{waiting}"))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist()) =>
        {
            Verdict::Fail(format!("{url} does not exist; check {variable}"))
        }
        Err(e) => Verdict::Fail(format!(
            "{url}: {}; check {variable} and the AWS credentials",
            aws_error_text(&e)
        )),
    };
    Line { name, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::client::RateLimitInfo;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![
            ("MOENGAGE_DATA_CENTER", "DC-02"),
            ("MOENGAGE_WORKSPACE_ID", "WS1"),
            ("MOENGAGE_API_KEY", "k"),
            ("OBJECT_TYPE", "events"),
            ("DEAD_LETTER_QUEUE_URL", "http://127.0.0.1:1/q"),
        ];
        vars.extend_from_slice(extra);
        Config::from_lookup(|k| {
            vars.iter()
                .rev()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn answer(status: u16, body: &str) -> Result<ApiResponse, TransportError> {
        Ok(ApiResponse {
            status,
            body: body.into(),
            rate_limit: RateLimitInfo::default(),
        })
    }

    #[test]
    fn refusals_are_one_line_and_name_what_to_fix() {
        let c = config(&[("MOENGAGE_APP_ID", "OLD")]);
        let table = [
            (
                401,
                r#"{"status":"fail","error":{"message":"App Secret key mismatch"}}"#,
                vec![
                    "401 from api-02.moengage.com",
                    "not valid on DC-02",
                    "dashboard-NN.moengage.com",
                    "App Secret key mismatch",
                ],
            ),
            (
                403,
                "",
                vec!["403 from api-02.moengage.com", "suspended", "an empty body"],
            ),
            (
                409,
                r#"{"message":"App key mismatch in params and authentication"}"#,
                vec!["409 from", "(OLD)", "(WS1)", "MOENGAGE_APP_ID"],
            ),
        ];
        for (status, body, needles) in table {
            let line = credentials(&c, answer(status, body)).to_string();
            assert!(line.starts_with("✗ credentials: "), "{line}");
            assert!(!line.contains('\n'), "{line}");
            for n in needles {
                assert!(line.contains(n), "{status}: {n:?} missing from {line}");
            }
        }
        assert!(credentials(&c, answer(200, r#"{"status":"success"}"#))
            .to_string()
            .starts_with("✓ credentials: accepted by api-02.moengage.com"));
    }

    #[test]
    fn app_id_probe_passes_on_anything_but_a_refusal_or_a_transient_error() {
        let c = config(&[]);
        let path = "/v1/event/WS1";
        for (status, ok) in [
            (400, true),
            (200, true),
            (413, true),
            (409, false),
            (401, false),
            (429, false),
            (503, false),
        ] {
            let line = app_id(&c, path, answer(status, "{}"));
            assert_eq!(
                matches!(line.verdict, Verdict::Pass(_)),
                ok,
                "{status}: {line}"
            );
        }
    }

    #[test]
    fn unreachable_names_the_url_once() {
        let c = config(&[("MOENGAGE_API_URL", "http://127.0.0.1:1")]);
        let e = TransportError {
            kind: "connect",
            message: "error sending request for url (http://127.0.0.1:1/v1/integrations/authentication): tcp connect error".into(),
        };
        let line = credentials(&c, Err(e)).to_string();
        assert_eq!(line, "✗ credentials: cannot reach http://127.0.0.1:1/v1/integrations/authentication: tcp connect error");
    }

    #[test]
    fn host_port_of_base_urls() {
        assert_eq!(
            host_port(&reqwest::Url::parse("https://api-01.moengage.com").unwrap()),
            Some(("api-01.moengage.com".into(), 443))
        );
        assert_eq!(
            host_port(&reqwest::Url::parse("http://127.0.0.1:8080").unwrap()),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            host_port(&reqwest::Url::parse("http://[::1]:9").unwrap()),
            Some(("::1".into(), 9))
        );
    }
}
