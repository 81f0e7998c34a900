//! Start-up: turns a validated [`Config`] into live dependencies — AWS clients (honouring
//! `AWS_ENDPOINT_URL` for moto), the Data API key from Secrets Manager when deployed, and the
//! MoEngage client.

use std::sync::Arc;

use crate::app::work::SqsWorkQueue;
use crate::app::Deps;
use crate::aws::aws_error_text;
use crate::config::{ApiKeySource, Config};
use crate::deliver::client::MoEngageClient;
use crate::deliver::dead_letter::SqsDeadLetters;
use crate::deliver::rate::Budgets;
use crate::deliver::MoEngageDelivery;
use crate::model::ApiKey;
use crate::state::cache::ShardCache;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("MOENGAGE_API_KEY_SECRET_ARN={arn}: could not read the secret: {reason}")]
    Secret { arn: String, reason: String },
    #[error("MoEngage client: {0}")]
    Client(String),
}

/// Builds the dependencies once per Lambda instance, from the standard AWS environment
/// (`AWS_ENDPOINT_URL` included).
pub async fn connect(config: Config) -> Result<Deps, StartupError> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    connect_with(config, &aws).await
}

/// As [`connect`], with an explicit SDK configuration (tests point each one at its own moto).
pub async fn connect_with(
    mut config: Config,
    aws: &aws_config::SdkConfig,
) -> Result<Deps, StartupError> {
    // Local S3 (moto) needs path-style addressing: virtual-host style turns into a DNS lookup of
    // `bucket.127.0.0.1`.
    let endpoint_override =
        aws.endpoint_url().is_some() || std::env::var("AWS_ENDPOINT_URL_S3").is_ok();
    let s3_config = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(endpoint_override)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(s3_config);
    let sqs = aws_sdk_sqs::Client::new(aws);

    // A SYNC_CONFIG in S3 is read now: the function does not start without its syncs.
    if let Some(location) = &config.sync_config {
        let loaded = crate::config::syncs::reload(location, &config.sync_defaults, None, &s3)
            .await
            .map_err(|message| crate::config::ConfigError::SyncConfig {
                location: location.to_string(),
                message,
            })?;
        if let Some(syncs) = loaded {
            config.syncs = Arc::new(syncs);
        }
    }

    if config.api_url_overridden() {
        // Every request, and the Data API key with it, goes there instead of the data center.
        tracing::warn!(
            url = %config.api_origin(),
            data_center_host = %config.data_center.api_host(),
            "MOENGAGE_API_URL overrides the data center's host; requests and the Data API key go to this URL"
        );
    }
    let api_key = match &config.api_key {
        ApiKeySource::Literal(key) => key.clone(),
        ApiKeySource::SecretArn(arn) => fetch_secret(aws, arn).await?,
    };
    let moengage = MoEngageClient::new(
        &config.api_base_url,
        &config.app_id,
        &config.workspace_id,
        &api_key,
    )
    .map_err(|e| StartupError::Client(e.to_string()))?;
    let s3 = Arc::new(s3);
    let work_queue = config.work_queue_url.clone().map(|queue_url| {
        Arc::new(SqsWorkQueue {
            client: sqs.clone(),
            queue_url,
        }) as Arc<dyn crate::app::work::WorkQueue>
    });
    // Sync-state shards are kept in /tmp between the parts of a snapshot (revalidated by ETag).
    let shard_cache = match config.state_cache_mb {
        0 => None,
        mb => match ShardCache::new(s3.clone(), &std::env::temp_dir(), mb << 20) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!(error = %e, "no local sync-state cache (the temporary directory is not writable): every part reads the state from S3");
                None
            }
        },
    };
    let state: Arc<dyn crate::state::StateStore> = match &shard_cache {
        Some(c) => c.clone(),
        None => s3.clone(),
    };
    Ok(Deps {
        shard_cache,
        work_queue,
        deliver: Arc::new(MoEngageDelivery::new(
            moengage.clone(),
            Budgets::new(&config.syncs.budgets),
            config.retry.clone(),
            config.max_in_flight,
        )),
        dead_letters: Arc::new(SqsDeadLetters {
            client: sqs.clone(),
            queue_url: config.dead_letter_queue_url.clone(),
        }),
        source: s3,
        state,
        moengage,
        syncs: crate::app::SyncsHandle::new(config.syncs.clone()),
        config,
    })
}

/// What template.yaml stores when the `DataApiKey` parameter is left empty.
pub const SECRET_PLACEHOLDER: &str = "REPLACE_WITH_MOENGAGE_DATA_API_KEY";

/// The secret may hold the key itself, or JSON with one of the usual field names.
async fn fetch_secret(aws: &aws_config::SdkConfig, arn: &str) -> Result<ApiKey, StartupError> {
    let err = |reason: String| StartupError::Secret {
        arn: arn.to_string(),
        reason,
    };
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| err(aws_error_text(&e)))?;
    let raw = out
        .secret_string()
        .ok_or_else(|| err("the secret has no string value".into()))?
        .trim()
        .to_string();
    let key = match serde_json::from_str::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(m)) => [
            "data_api_key",
            "api_key",
            "apiKey",
            "key",
            "MOENGAGE_API_KEY",
        ]
        .iter()
        .find_map(|k| m.get(*k).and_then(|v| v.as_str()).map(str::to_string))
        .ok_or_else(|| {
            err(
                "the secret is JSON but has none of the fields data_api_key, api_key, apiKey, key"
                    .into(),
            )
        })?,
        _ => raw,
    };
    // The template seeds the secret with this placeholder when no key was given at deploy time.
    if key.is_empty() || key == SECRET_PLACEHOLDER {
        return Err(err("the secret holds no Data API key yet; put the key from Settings > Account > APIs into it".into()));
    }
    Ok(ApiKey::new(key))
}
