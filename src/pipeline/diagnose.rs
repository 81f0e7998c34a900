//! Operator diagnoses: what a refusal by MoEngage means for this configuration, and what to check.

use crate::config::Config;
use crate::deliver::FailureDetail;

/// Says what a 401/403/409 means and what to check, naming the data center and ids in use.
pub fn diagnose(config: &Config, detail: &FailureDetail) -> String {
    let host = config.api_host();
    let dc = config.data_center.name();
    let answer = detail.reason.as_str();
    match detail.status {
        Some(401) => format!(
            "MoEngage refused the credentials ({answer}) at {host}: the Workspace ID {ws:?} and Data API key are not valid on {dc}. \
             Check: (1) the data center — your dashboard URL {dash} must match {dc}; \
             (2) MOENGAGE_WORKSPACE_ID is the Workspace ID from Settings > Account > APIs; \
             (3) the Data API key (not another key type) is in MOENGAGE_API_KEY or the secret.",
            ws = config.workspace_id,
            dash = config.data_center.dashboard_host(),
        ),
        Some(403) => format!(
            "MoEngage answered 403 ({answer}) at {host}: the account or workspace {ws:?} is suspended or blocked for the Data API. \
             Check the account status with MoEngage, and that Data API access is enabled.",
            ws = config.workspace_id
        ),
        Some(409) => format!(
            "MoEngage answered 409 ({answer}): the App ID in the request path ({app:?}) differs from the Workspace ID used to authenticate ({ws:?}). \
             Unset MOENGAGE_APP_ID (it defaults to the Workspace ID) or set it to the Workspace ID.",
            app = config.app_id,
            ws = config.workspace_id
        ),
        _ => format!("MoEngage rejected the configuration at {host} ({answer}); check the data center ({dc}), Workspace ID and Data API key."),
    }
}
