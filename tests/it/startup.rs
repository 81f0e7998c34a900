//! The binary itself: a bad configuration stops it before anything runs, with one line naming the
//! variable, the value and what is accepted.

use std::process::Command;

fn run_with(env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moengage-sync"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run moengage-sync");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const GOOD: [(&str, &str); 5] = [
    ("MOENGAGE_DATA_CENTER", "DC-02"),
    ("MOENGAGE_WORKSPACE_ID", "WS"),
    ("MOENGAGE_API_KEY", "do-not-print-me"),
    ("OBJECT_TYPE", "bulk_import"),
    ("DEAD_LETTER_QUEUE_URL", "http://127.0.0.1:9/q"),
];

#[test]
fn bad_configuration_fails_at_startup_naming_the_variable() {
    let cases = [
        ("MOENGAGE_DATA_CENTER", "DC-09", "DC-01, DC-02"),
        (
            "OBJECT_TYPE",
            "contacts",
            "user_attributes, events or bulk_import",
        ),
        ("SYNC_MODE", "mirrored", "upsert, insert, update or mirror"),
        (
            "MIRROR_MAX_DELETE_PERCENT",
            "150",
            "whole number from 0 to 100",
        ),
        ("DELETES_PER_MINUTE", "none", "whole number"),
        ("BATCH_MAX_RECORDS", "lots", "whole number"),
        ("FIELD_MAPPING", "[1,2]", "JSON object"),
    ];
    for (var, value, accepted) in cases {
        let mut env: Vec<(&str, &str)> = GOOD.iter().copied().filter(|(k, _)| *k != var).collect();
        env.push((var, value));
        let (ok, output) = run_with(&env);
        assert!(!ok, "{var}={value} must fail start-up");
        assert!(
            output.contains(var) && output.contains(value) && output.contains(accepted),
            "{var}: {output}"
        );
        assert!(
            !output.contains("do-not-print-me"),
            "the API key leaked: {output}"
        );
    }
}
