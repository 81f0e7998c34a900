//! Dead-letter messages as redrive reads them: parse, vet (endpoint, app id, payload location),
//! then check the inline body. Whatever passes must name one of the closed set of endpoints.
#![no_main]
use libfuzzer_sys::fuzz_target;
include!("common.rs");
use moengage_sync::app::redrive::{check_body, parse_message, vet, PayloadAt};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let msg = match parse_message(body) {
        Ok(m) => m,
        Err(e) => {
            assert!(e.len() < 1024);
            return;
        }
    };
    match vet(config(), &msg) {
        Ok(vetted) => {
            // The request goes to the configured host, for the configured app.
            let url = config().api_url(vetted.endpoint);
            assert_eq!(url.host_str(), Some("api-01.moengage.com"));
            // In the path, or (Delete Users) as the only query parameter.
            let for_app = url.path().ends_with("/WS") || url.query() == Some("app_id=WS");
            assert!(for_app, "{url}");
            match vetted.payload {
                PayloadAt::Inline(bytes) => {
                    let _ = check_body(config(), vetted.endpoint, &bytes);
                }
                PayloadAt::S3 { bucket, key } => {
                    assert_eq!(bucket, "state");
                    assert!(key.starts_with("moengage-sync/dead-letters/"), "{key}");
                }
            }
        }
        Err(e) => assert!(e.len() < 2048, "reason of {} bytes", e.len()),
    }
});
