use super::*;

fn defaults() -> SyncDefaults {
    SyncDefaults {
        budgets: Some(ApiBudgets::from_variables(100, None, None)),
        ..SyncDefaults::default()
    }
}

fn parse(text: &str, defaults: &SyncDefaults) -> Result<Syncs, String> {
    Syncs::from_file(
        text.as_bytes(),
        defaults,
        SyncConfigLocation::Path("syncs.yaml".into()),
        content_tag(text.as_bytes()),
    )
}

const TWO: &str = r#"
budgets:
  bulk_import: { requests_per_minute: 1200, users_per_minute: 60000 }
  delete_users: { requests_per_minute: 3000 }
syncs:
  - name: users-daily
    prefix: exports/users/
    object_type: bulk_import
    primary_key: user_id
    field_mapping:
      email: email_address
      age: { column: age, type: number }
  - name: purchases
    prefix: exports/events/purchases/
    object_type: events
    sync_mode: insert
    format: csv
    compression: gzip
    csv: { delimiter: ";" }
    field_mapping: '{"customer_id":"user_id","action":"event_name"}'
"#;

#[test]
fn a_yaml_file_lists_syncs_each_with_its_own_settings() {
    let syncs = parse(TWO, &defaults()).unwrap();
    assert_eq!(syncs.syncs.len(), 2);
    let users = syncs.by_name("users-daily").unwrap();
    assert_eq!(users.object_type, ObjectType::BulkImport);
    assert_eq!(users.sync_mode, SyncMode::Upsert);
    assert_eq!(users.field_mapping.primary_key.as_deref(), Some("user_id"));
    assert_eq!(users.field_mapping.fields.len(), 2);
    assert_eq!(users.source_format, None);
    let purchases = syncs.by_name("purchases").unwrap();
    assert_eq!(purchases.object_type, ObjectType::Events);
    assert_eq!(purchases.sync_mode, SyncMode::Insert);
    assert_eq!(purchases.source_format, Some(Format::Csv));
    assert_eq!(purchases.source_compression, Some(Compression::Gzip));
    assert_eq!(purchases.csv.delimiter, Some(b';'));
    // Budgets: the file's where it sets them, the variables' elsewhere.
    assert_eq!(syncs.budgets.bulk_import.requests_per_minute, 1200);
    assert_eq!(syncs.budgets.bulk_import.users_per_minute, Some(60_000));
    assert_eq!(syncs.budgets.bulk_import.events_per_minute, None);
    assert_eq!(syncs.budgets.create_event.requests_per_minute, 100);
    assert_eq!(syncs.budgets.delete_users.requests_per_minute, 3000);
    assert_eq!(
        syncs.file_etag(),
        Some(content_tag(TWO.as_bytes()).as_str())
    );
}

#[test]
fn json_is_accepted_since_it_is_yaml() {
    let text = r#"{"syncs":[{"name":"u","prefix":"in/","object_type":"user_attributes",
        "field_mapping":{"customer_id":"id"}}]}"#;
    let syncs = parse(text, &defaults()).unwrap();
    assert_eq!(syncs.syncs[0].object_type, ObjectType::UserAttributes);
    assert_eq!(syncs.syncs[0].field_mapping.fields.len(), 1);
}

#[test]
fn a_field_left_out_falls_back_to_its_variable_then_its_default() {
    let mut d = defaults();
    d.object_type = Some(ObjectType::UserAttributes);
    d.sync_mode = Some(SyncMode::Update);
    d.field_mapping = Some(r#"{"customer_id":"uid"}"#.into());
    d.csv.delimiter = Some(b'|');
    let syncs = parse("syncs:\n  - {name: a, prefix: a/}\n", &d).unwrap();
    let a = &syncs.syncs[0];
    assert_eq!(a.object_type, ObjectType::UserAttributes);
    assert_eq!(a.sync_mode, SyncMode::Update);
    assert_eq!(a.field_mapping.fields.len(), 1);
    assert_eq!(a.csv.delimiter, Some(b'|'));
    // Without the variable either: upsert, identity.
    let syncs = parse(
        "syncs:\n  - {name: a, prefix: a/, object_type: events}\n",
        &defaults(),
    )
    .unwrap();
    assert_eq!(syncs.syncs[0].sync_mode, SyncMode::Upsert);
    assert!(syncs.syncs[0].field_mapping.fields.is_empty());
    // The sync's own primary key with the identity mapping.
    let syncs = parse(
        "syncs:\n  - {name: a, prefix: a/, object_type: bulk_import, primary_key: uid}\n",
        &defaults(),
    )
    .unwrap();
    assert_eq!(
        syncs.syncs[0].field_mapping.primary_key.as_deref(),
        Some("uid")
    );
}

#[test]
fn an_object_goes_to_the_longest_matching_prefix_or_nowhere() {
    let text = "syncs:
  - {name: all, prefix: exports/, object_type: bulk_import}
  - {name: users, prefix: exports/users/, object_type: user_attributes}
";
    let syncs = parse(text, &defaults()).unwrap();
    assert_eq!(syncs.route("exports/users/u.csv").unwrap().name, "users");
    assert_eq!(syncs.route("exports/users2.csv").unwrap().name, "all");
    let note = syncs.route("other/x.csv").unwrap_err();
    assert!(note.contains("\"exports/users/\" (users)"), "{note}");
    assert!(note.contains("\"exports/\" (all)"), "{note}");
    assert!(note.contains("skipped"), "{note}");
}

#[test]
fn each_configuration_error_is_one_line_naming_the_sync_and_the_field() {
    let ok = "{name: a, prefix: a/, object_type: events}";
    let cases: &[(&str, &[&str])] = &[
        (
            "syncs:\n  - {name: a, prefx: a/, object_type: events}\n",
            &["sync \"a\"", "unknown field `prefx`", "prefix"],
        ),
        (
            "syncs:\n  - {name: a, prefix: a/, object_type: users}\n",
            &[
                "sync \"a\"",
                "object_type",
                "\"users\"",
                "user_attributes, events or bulk_import",
            ],
        ),
        (
            "syncs:\n  - {name: a, prefix: a/}\n",
            &["sync \"a\"", "object_type: not set here nor in OBJECT_TYPE"],
        ),
        (
            "syncs:\n  - {name: a, prefix: a/, object_type: events, sync_mode: mirror2}\n",
            &[
                "sync \"a\"",
                "sync_mode",
                "upsert, insert, update or mirror",
            ],
        ),
        (
            "syncs:\n  - {name: a, prefix: a/, object_type: events, sync_mode: mirror}\n",
            &["sync \"a\"", "sync_mode", "not events"],
        ),
        (
            "syncs:\n  - {name: a, prefix: a/, object_type: events, field_mapping: {email: 42}}\n",
            &["sync \"a\"", "field_mapping", "email"],
        ),
        (
            "syncs:\n  - {name: a, prefix: a/, object_type: events, field_mapping: [x]}\n",
            &["sync \"a\"", "field_mapping", "a map"],
        ),
        (
            "syncs:\n  - {name: a, prefix: a/, object_type: events, format: xlsx}\n",
            &["sync \"a\"", "format", "csv, tsv, ndjson or parquet"],
        ),
        (
            "syncs:\n  - {name: a, prefix: a/, object_type: events, csv: {delimiter: ';;'}}\n",
            &["sync \"a\"", "csv.delimiter"],
        ),
        (
            "syncs:\n  - {name: 'a b', prefix: a/, object_type: events}\n",
            &["name", "letters, digits"],
        ),
        (
            "syncs:\n  - {prefix: a/, object_type: events}\n",
            &["syncs[0]", "missing field `name`"],
        ),
        (
            "syncs:\n  - {name: a, prefix: 7, object_type: events}\n",
            &["sync \"a\"", "prefix: expected a string, not 7"],
        ),
        (
            &format!("syncs:\n  - {ok}\n  - {{name: a, prefix: b/, object_type: events}}\n"),
            &["sync \"a\"", "name", "unique"],
        ),
        (
            &format!("syncs:\n  - {ok}\n  - {{name: b, prefix: a/, object_type: events}}\n"),
            &["sync \"b\"", "prefix", "\"a/\"", "also sync \"a\""],
        ),
        ("syncs: []\n", &["lists no sync"]),
        ("sync:\n  - {ok}\n", &["unknown field `sync`"]),
        ("syncs: [\n", &["not valid YAML"]),
        (
            &format!("budgets: {{bulk_import: {{requests_per_minute: 0}}}}\nsyncs:\n  - {ok}\n"),
            &["budgets.bulk_import.requests_per_minute", "from 1"],
        ),
        (
            &format!("budgets: {{track_user: {{events_per_minute: 10}}}}\nsyncs:\n  - {ok}\n"),
            &["budgets.track_user.events_per_minute"],
        ),
        (
            &format!("budgets: {{delete: {{requests_per_minute: 10}}}}\nsyncs:\n  - {ok}\n"),
            &["unknown field `delete`"],
        ),
    ];
    for (text, wanted) in cases {
        let err = parse(text, &defaults()).expect_err(text);
        assert!(!err.contains('\n'), "one line: {err}");
        for w in *wanted {
            assert!(err.contains(w), "{text}\n→ {err}\n(wanted {w:?})");
        }
    }
}

#[test]
fn a_prefix_outside_source_prefix_is_refused() {
    let mut d = defaults();
    d.source_prefix = "exports/".into();
    let err = parse(
        "syncs:\n  - {name: a, prefix: other/, object_type: events}\n",
        &d,
    )
    .unwrap_err();
    assert!(err.contains("outside SOURCE_PREFIX \"exports/\""), "{err}");
    // Narrower or wider than SOURCE_PREFIX is fine: the function lists only SOURCE_PREFIX.
    parse(
        "syncs:\n  - {name: a, prefix: exports/x/, object_type: events}\n",
        &d,
    )
    .unwrap();
    parse(
        "syncs:\n  - {name: a, prefix: '', object_type: events}\n",
        &d,
    )
    .unwrap();
}

#[test]
fn a_file_too_large_or_an_alias_bomb_is_refused_without_expanding_it() {
    let big = format!("# {}\nsyncs: []\n", "x".repeat(MAX_FILE_BYTES));
    assert!(parse(&big, &defaults()).unwrap_err().contains("at most"));
    // The "billion laughs": nine levels of nine aliases each.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        let list = [prev.as_str(); 9].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{list}]\n"));
    }
    bomb.push_str("syncs: []\n");
    let err = parse(&bomb, &defaults()).unwrap_err();
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn a_hundred_column_typed_mapping_works_from_the_file() {
    let mut text = String::from(
        "syncs:\n  - name: wide\n    prefix: w/\n    object_type: user_attributes\n    field_mapping:\n      customer_id: id\n",
    );
    for i in 0..100 {
        let ty = ["string", "number", "boolean", "datetime"][i % 4];
        text.push_str(&format!(
            "      attr_{i:03}: {{ column: col_{i:03}, type: {ty} }}\n"
        ));
    }
    let syncs = parse(&text, &defaults()).unwrap();
    assert_eq!(syncs.syncs[0].field_mapping.fields.len(), 101);
}

#[test]
fn named_syncs_keep_their_state_and_reports_apart_and_default_keeps_the_old_paths() {
    let syncs = parse(TWO, &defaults()).unwrap();
    let users = syncs.by_name("users-daily").unwrap();
    assert_eq!(
        users.state_scope("WS1"),
        "WS1/syncs/users-daily/bulk_import"
    );
    assert_eq!(
        users.report_prefix("moengage-sync/"),
        "moengage-sync/syncs/users-daily/"
    );
    let text = "syncs:\n  - {name: default, prefix: '', object_type: bulk_import}\n";
    let d = &parse(text, &defaults()).unwrap().syncs[0];
    assert_eq!(
        d.state_scope("WS1"),
        crate::sync_state::scope("WS1", ObjectType::BulkImport)
    );
    assert_eq!(d.report_prefix("moengage-sync/"), "moengage-sync/");
    let mut vars = defaults();
    vars.object_type = Some(ObjectType::BulkImport);
    let v = &Syncs::from_variables(&vars).unwrap().syncs[0];
    assert_eq!(
        (v.name.as_str(), v.prefix.as_str(), v.scoped),
        ("default", "", false)
    );
}

#[test]
fn the_location_is_an_s3_uri_or_a_path() {
    assert_eq!(
        SyncConfigLocation::parse("s3://b/config/syncs.yaml").unwrap(),
        SyncConfigLocation::S3 {
            bucket: "b".into(),
            key: "config/syncs.yaml".into()
        }
    );
    assert_eq!(
        SyncConfigLocation::parse("./syncs.yaml").unwrap(),
        SyncConfigLocation::Path("./syncs.yaml".into())
    );
    for bad in ["s3://b", "s3:///k", "https://example.com/x.yaml"] {
        assert!(SyncConfigLocation::parse(bad).is_err(), "{bad}");
    }
}
