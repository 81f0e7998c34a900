//! Table-driven tests of mapping resolution, element encoding and per-row validation.

use super::*;
use crate::map::convert::Cell;

/// A row of string cells, as CSV gives them.
struct Cells(Vec<&'static str>);

impl Row for Cells {
    fn cell(&self, index: usize) -> Result<Cell<'_>, String> {
        Ok(self.0.get(index).map_or(Cell::Null, |s| Cell::Str(s)))
    }
}

fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|s| s.to_string()).collect()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn encode(
    m: &ResolvedMapping,
    cells: Vec<&'static str>,
) -> Result<(ElementKind, serde_json::Value, Vec<RowIssue>), RowIssue> {
    let mut out = Vec::new();
    let (kind, enc) = m.encode(&Cells(cells), &mut out, now())?;
    Ok((
        kind,
        serde_json::from_slice(&out).expect("element is JSON"),
        enc.warnings,
    ))
}

fn mapping(json: Option<&str>, pk: Option<&str>, ty: ObjectType, cols: &[&str]) -> ResolvedMapping {
    FieldMapping::parse(json, pk.map(str::to_string), ty)
        .unwrap()
        .resolve(&header(cols), SyncMode::Upsert)
        .unwrap()
}

#[test]
fn identity_mapping_sends_every_column_under_its_own_name() {
    let m = mapping(
        None,
        None,
        ObjectType::BulkImport,
        &["customer_id", "email", "city"],
    );
    let (kind, v, _) = encode(&m, vec!["u1", "a@b.c", ""]).unwrap();
    assert_eq!(kind, ElementKind::Customer);
    assert_eq!(
        v,
        serde_json::json!({"type":"customer","customer_id":"u1","attributes":{"email":"a@b.c"}})
    );
}

#[test]
fn primary_key_is_injected_as_customer_id_and_not_repeated_as_an_attribute() {
    let m = mapping(
        None,
        Some("user_id"),
        ObjectType::UserAttributes,
        &["user_id", "email"],
    );
    let (_, v, _) = encode(&m, vec!["u1", "a@b.c"]).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type":"customer","customer_id":"u1","attributes":{"email":"a@b.c"}})
    );
}

#[test]
fn bulk_rows_with_an_action_become_events_shaped_like_create_event() {
    let m = mapping(
        Some(
            r#"{"customer_id":"uid","action":"event","platform":"platform","user_time":"ts","amount":{"column":"amount","type":"number"},"email":"email"}"#,
        ),
        None,
        ObjectType::BulkImport,
        &["uid", "event", "platform", "ts", "amount", "email"],
    );
    let (kind, v, warnings) = encode(
        &m,
        vec![
            "u1",
            "purchase",
            "WEB",
            "2026-11-01 10:00:00 +0000",
            "29.99",
            "a@b.c",
        ],
    )
    .unwrap();
    assert_eq!(kind, ElementKind::Event);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        v,
        serde_json::json!({"type":"event","customer_id":"u1","actions":[{"action":"purchase","attributes":{"amount":29.99,"email":"a@b.c"},"platform":"web","user_time":"2026-11-01T10:00:00Z"}]})
    );
    // The same export's rows without an action are users; event-level fields are not attributes.
    let (kind, v, _) = encode(&m, vec!["u2", "", "web", "", "", "x@y.z"]).unwrap();
    assert_eq!(kind, ElementKind::Customer);
    assert_eq!(
        v,
        serde_json::json!({"type":"customer","customer_id":"u2","attributes":{"email":"x@y.z"}})
    );
}

#[test]
fn update_mode_marks_customers_update_existing_only() {
    let m = FieldMapping::parse(None, None, ObjectType::UserAttributes)
        .unwrap()
        .resolve(&header(&["customer_id", "email"]), SyncMode::Update)
        .unwrap();
    let (_, v, _) = encode(&m, vec!["u1", "a@b.c"]).unwrap();
    assert_eq!(v["update_existing_only"], serde_json::json!(true));
}

#[test]
fn rejections_name_the_column_and_the_reason() {
    let m = mapping(
        Some(
            r#"{"customer_id":"uid","action":"ev","user_time":"ts","user_timezone_offset":"tz","age":{"column":"age","type":"integer"}}"#,
        ),
        None,
        ObjectType::Events,
        &["uid", "ev", "ts", "tz", "age"],
    );
    let table: &[(Vec<&'static str>, &str, &str)] = &[
        (vec!["", "e", "", "", ""], "uid", "customer_id is empty"),
        (vec!["  ", "e", "", "", ""], "uid", "customer_id is empty"),
        (vec!["NULL", "e", "", "", ""], "uid", "placeholder"),
        (vec!["Guest", "e", "", "", ""], "uid", "placeholder"),
        (vec![" n/a ", "e", "", "", ""], "uid", "placeholder"),
        (vec!["-1", "e", "", "", ""], "uid", "placeholder"),
        (vec!["u1", "", "", "", ""], "ev", "action is empty"),
        (
            vec!["u1", "e", "2027-01-01T00:00:00Z", "", ""],
            "ts",
            "in the future",
        ),
        (
            vec!["u1", "e", "last tuesday", "", ""],
            "ts",
            "not a datetime",
        ),
        (
            vec!["u1", "e", "", "99999", ""],
            "tz",
            "outside -54000..54000",
        ),
        (vec!["u1", "e", "", "x", ""], "tz", "not a whole number"),
        (vec!["u1", "e", "", "", "forty"], "age", "not an integer"),
        // NUL is refused one way in every value, ids included.
        (
            vec!["u\u{0}1", "e", "", "", ""],
            "uid",
            "customer_id holds a NUL",
        ),
        (
            vec!["u1", "e\0v", "", "", ""],
            "ev",
            "event name holds a NUL",
        ),
    ];
    for (cells, column, reason) in table {
        let issue = encode(&m, cells.clone()).unwrap_err();
        assert_eq!(issue.column, *column, "{cells:?}");
        assert!(issue.reason.contains(reason), "{cells:?}: {}", issue.reason);
    }
    for id in FORBIDDEN_CUSTOMER_IDS.iter().filter(|f| !f.is_empty()) {
        let upper: &'static str = Box::leak(id.to_uppercase().into_boxed_str());
        assert!(
            encode(&m, vec![upper, "e", "", "", ""]).is_err(),
            "{id} must be refused"
        );
    }
}

#[test]
fn warnings_for_what_moengage_would_quietly_alter() {
    let m = mapping(
        Some(r#"{"customer_id":"uid","action":"ev","platform":"p","note":"n"}"#),
        None,
        ObjectType::Events,
        &["uid", "ev", "p", "n"],
    );
    let long: &'static str = Box::leak("x".repeat(513).into_boxed_str());
    let (_, v, warnings) = encode(&m, vec!["u1", "cart.add", "smart fridge", long]).unwrap();
    assert_eq!(v["actions"][0]["platform"], "unknown");
    let reasons: Vec<&str> = warnings.iter().map(|w| w.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("contains '.'"));
    assert!(reasons
        .iter()
        .any(|r| r.contains("truncates values over 512")));
    assert!(reasons
        .iter()
        .any(|r| r.contains("platform \"smart fridge\"")));
    for (raw, want) in [
        ("android", "ANDROID"),
        ("IOS", "iOS"),
        ("Web", "web"),
        ("tv", "TV"),
    ] {
        let cells: Vec<&'static str> =
            vec!["u1", "e", Box::leak(raw.to_string().into_boxed_str()), ""];
        let (_, v, w) = encode(&m, cells).unwrap();
        assert_eq!(v["actions"][0]["platform"], want);
        assert!(w.is_empty());
    }
}

#[test]
fn reserved_attribute_names_are_warned_once_per_mapping() {
    let m = mapping(
        None,
        None,
        ObjectType::UserAttributes,
        &["customer_id", "id", "moe_score", "moe_mobile", "_id"],
    );
    let warnings = m.name_warnings();
    let cols: Vec<&str> = warnings.iter().map(|w| w.column.as_str()).collect();
    assert_eq!(cols, ["id", "moe_score", "_id"]);
}

#[test]
fn mapping_errors_fail_before_any_row() {
    let bad = [
        (
            r#"{"email":"email"}"#,
            None,
            ObjectType::BulkImport,
            "maps no customer_id",
        ),
        (
            r#"{"customer_id":"uid"}"#,
            None,
            ObjectType::Events,
            "needs an action",
        ),
        (
            r#"{"customer_id":{"column":"uid","type":"uuid"}}"#,
            None,
            ObjectType::BulkImport,
            "type is one of",
        ),
        (
            r#"{"customer_id":7}"#,
            None,
            ObjectType::BulkImport,
            "must map to a column name",
        ),
    ];
    for (json, pk, ty, want) in bad {
        let e = FieldMapping::parse(Some(json), pk, ty)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{json}: {e}");
    }
    let m = FieldMapping::parse(
        Some(r#"{"customer_id":"uid","email":"mail"}"#),
        None,
        ObjectType::BulkImport,
    )
    .unwrap();
    let e = m
        .resolve(&header(&["uid", "email"]), SyncMode::Upsert)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"mail\"") && e.contains("uid, email"), "{e}");
    let identity = FieldMapping::parse(None, None, ObjectType::BulkImport).unwrap();
    let e = identity
        .resolve(&header(&["user_id", "email"]), SyncMode::Upsert)
        .unwrap_err()
        .to_string();
    assert!(e.contains("PRIMARY_KEY"), "{e}");
}

#[test]
fn repeated_columns_and_fields_are_refused_and_huge_headers_resolve_fast_with_short_errors() {
    // " email" and "email " are one name once trimmed: which one would a field read?
    let identity = FieldMapping::parse(None, Some("uid".into()), ObjectType::BulkImport).unwrap();
    let e = identity
        .resolve(
            &header(&["uid", "email", "plan", "email"]),
            SyncMode::Upsert,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"email\" twice (columns 2 and 4"), "{e}");
    // A repeated column no field reads is harmless under an explicit mapping.
    let explicit = FieldMapping::parse(
        Some(r#"{"customer_id":"uid","plan":"plan"}"#),
        None,
        ObjectType::BulkImport,
    )
    .unwrap();
    assert!(explicit
        .resolve(&header(&["uid", "x", "plan", "x"]), SyncMode::Upsert)
        .is_ok());
    // customer_id twice in FIELD_MAPPING: the last one used to win silently.
    let e = FieldMapping::parse(
        Some(r#"{"customer_id":"uid","email":"mail","customer_id":"other"}"#),
        None,
        ObjectType::BulkImport,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("\"customer_id\" more than once"), "{e}");
    // 200k columns (quadratic resolution took minutes; linear takes milliseconds), and the error
    // about a missing column stays short.
    let many: Vec<String> = (0..200_000).map(|i| format!("column_{i}")).collect();
    let m = FieldMapping::parse(
        Some(r#"{"customer_id":"uid"}"#),
        None,
        ObjectType::BulkImport,
    )
    .unwrap();
    let e = m.resolve(&many, SyncMode::Upsert).unwrap_err().to_string();
    assert!(e.len() < 2_000, "{} bytes", e.len());
    assert!(e.contains("and 199970 more columns"), "{e}");
    let identity =
        FieldMapping::parse(None, Some("column_7".into()), ObjectType::BulkImport).unwrap();
    assert!(identity.resolve(&many, SyncMode::Upsert).is_ok());
}

/// Mirror mode decides who is still in a snapshot by `customer_id_json`; a user it keys
/// differently from the element the sending pass wrote would look absent and be deleted.
#[test]
fn the_customer_id_mirror_mode_reads_is_the_one_the_element_carries() {
    struct Typed(Vec<Cell<'static>>);
    impl Row for Typed {
        fn cell(&self, index: usize) -> Result<Cell<'_>, String> {
            Ok(self.0.get(index).cloned().unwrap_or(Cell::Null))
        }
    }
    let json = |v: serde_json::Value| Cell::Json(Box::leak(Box::new(v)));
    let ids = [
        Cell::Str("u1"),
        Cell::Str("  padded\t"),
        Cell::Str("quote\"back\\slash"),
        Cell::Str("ctrl\u{1}tab\tnl\n"),
        Cell::Str("ünïcødé 🙂"),
        Cell::Str("</script>"),
        Cell::Int(-42),
        Cell::Float(1.5e20),
        Cell::Number("12345678901234567890"),
        Cell::Bool(true),
        Cell::Decimal {
            unscaled: 12_345,
            scale: 2,
        },
        json(serde_json::json!("from json")),
        json(serde_json::json!(7)),
        json(serde_json::json!(false)),
    ];
    for object_type in [ObjectType::UserAttributes, ObjectType::BulkImport] {
        let m = mapping(
            Some(r#"{"customer_id":"id","email":"email"}"#),
            None,
            object_type,
            &["id", "email"],
        );
        let mut encoded = 0;
        for &id in &ids {
            let row = Typed(vec![id, Cell::Str("not an email")]);
            let mut element = Vec::new();
            let mut member = Vec::new();
            let known = m.customer_id_json(&row, &mut member);
            // The email is invalid for no type: the element encodes; its id is the member's.
            if m.encode(&row, &mut element, now()).is_ok() {
                encoded += 1;
                let carried = crate::sync_state::customer_id_of(&element).expect("an id");
                assert!(known, "{id:?}");
                assert_eq!(
                    String::from_utf8_lossy(carried),
                    String::from_utf8_lossy(&member),
                    "{id:?}"
                );
            }
        }
        // All but `true` and `false`, placeholders MoEngage refuses (never delivered, never keyed).
        assert_eq!(encoded, ids.len() - 2);
        // Rows the sender rejects for another column still name their user.
        let m = mapping(
            Some(r#"{"customer_id":"id","age":{"column":"age","type":"number"}}"#),
            None,
            object_type,
            &["id", "age"],
        );
        let row = Typed(vec![Cell::Str("u9"), Cell::Str("not a number")]);
        assert!(m.encode(&row, &mut Vec::new(), now()).is_err());
        let mut member = Vec::new();
        assert!(m.customer_id_json(&row, &mut member));
        assert_eq!(member, b"u9");
        // No id, no member.
        let row = Typed(vec![Cell::Str("   "), Cell::Str("1")]);
        assert!(!m.customer_id_json(&row, &mut member));
    }
}

/// A mapping typing every column a way encode converts, on a bulk_import (users and events).
fn every_type() -> ResolvedMapping {
    mapping(
        Some(
            r#"{"customer_id":"uid","action":"ev","event_id":"eid","platform":"p","user_time":"ts",
            "name":"name","amount":{"column":"amount","type":"number"},"n":{"column":"n","type":"integer"},
            "ok":{"column":"ok","type":"boolean"},"seen":{"column":"seen","type":"datetime"},
            "born":{"column":"born","type":"date"},"tags":{"column":"tags","type":"array"},
            "meta":{"column":"meta","type":"json"}}"#,
        ),
        Some("eid"),
        ObjectType::BulkImport,
        &[
            "uid", "ev", "eid", "p", "ts", "name", "amount", "n", "ok", "seen", "born", "tags",
            "meta",
        ],
    )
}

/// Rows for [`every_type`]: users and events, values in every spelling encode normalises.
#[rustfmt::skip]
const EVERY_TYPE_ROWS: [[&str; 13]; 8] = [
    ["u1", "", "", "", "", "Ana \"A\" \\ é\t", "29.990", "7", "yes", "2026-11-01 10:00:00 +0200", "2026-02-28", "vip|beta", r#"{"b":1,"a":[2]}"#],
    [" u2 ", "", "", "", "", "", "1e3", " -3 ", "F", "1767225600", "2026-11-01T10:00:00Z", r#"["x","y"]"#, "[]"],
    ["u3", "", "", "", "", "  ", "-0.5", "0", "1", "2026-11-01T10:00:00.250+05:30", "2026-01-01T05:00:00Z", "", "null"],
    ["u4\u{7}", "", "", "", "", "x", "", "", "", "1767225600123", "", "a, b ,c", "\"s\""],
    ["u1", "purchase", "e-1", "web", "2026-11-01T10:00:00Z", "n", "1", "2", "true", "", "", "", ""],
    ["u2", "sign.up", "e-2", "android", "1767225600", "", "", "", "", "", "", "", ""],
    ["u3", "ev", "", "TV", "2026-11-01 10:00:00", "", "", "", "", "", "", "", ""],
    ["u5", " ", " e-3 ", "", "", "only", "", "", "", "", "", "", ""],
];

#[test]
fn identify_keys_a_row_as_encode_would_without_encoding_it() {
    let m = every_type();
    let (mut key, mut cells, mut element) = (Vec::new(), Vec::new(), Vec::new());
    for row in EVERY_TYPE_ROWS {
        let row = Cells(row.to_vec());
        let (kind, _) = m
            .encode(&row, &mut element, now())
            .expect("every row encodes");
        let identified = m.identify(&row, &mut key, &mut cells);
        let want_key = match kind {
            ElementKind::Customer => {
                crate::sync_state::customer_id_of(&element).map(<[u8]>::to_vec)
            }
            ElementKind::Event => m.event_key(&row).map(String::into_bytes),
        };
        assert_eq!(
            identified.map(|k| (k, key.clone())),
            want_key.map(|k| (kind, k)),
            "{:?}",
            row.0
        );
    }
    // No key, no print: what encode rejects for its id, an event without a name, or an event
    // without its event id (sent every time, never recorded).
    for row in [vec![""], vec!["   "]] {
        assert_eq!(
            m.identify(&Cells(row.clone()), &mut key, &mut cells),
            None,
            "{row:?}"
        );
    }
    let events = mapping(
        Some(r#"{"customer_id":"uid","action":"ev"}"#),
        None,
        ObjectType::Events,
        &["uid", "ev"],
    );
    assert_eq!(
        events.identify(&Cells(vec!["u1", " "]), &mut key, &mut cells),
        None
    );
    assert_eq!(
        events.identify(&Cells(vec!["u1", "ev"]), &mut key, &mut cells),
        None
    );
}

#[test]
fn canonical_cells_tell_apart_what_encodes_apart() {
    use crate::map::convert::Cell as C;
    let canon = |cells: &[C<'_>]| {
        let mut out = Vec::new();
        for c in cells {
            c.write_canonical(&mut out);
        }
        out
    };
    let n = serde_json::json!(1);
    let groups: Vec<Vec<C<'_>>> = vec![
        vec![C::Str("ab"), C::Str("c")],
        vec![C::Str("a"), C::Str("bc")],
        vec![C::Str("1"), C::Null],
        vec![C::Str("1"), C::Str("")],
        vec![C::Int(1), C::Null],
        vec![C::Number("1"), C::Null],
        vec![C::Json(&n), C::Null],
        vec![C::Float(1.0), C::Null],
        vec![C::Bool(true), C::Null],
        vec![
            C::Decimal {
                unscaled: 1,
                scale: 0,
            },
            C::Null,
        ],
        vec![
            C::Decimal {
                unscaled: 10,
                scale: 1,
            },
            C::Null,
        ],
    ];
    for (i, a) in groups.iter().enumerate() {
        for b in &groups[i + 1..] {
            assert_ne!(canon(a), canon(b), "{a:?} and {b:?}");
        }
        assert_eq!(canon(a), canon(&a.clone()));
    }
}

/// The cell fingerprint says "unchanged" for a row whose cells are what they were, trusting that
/// they encode as they did. This pins what they encode to: if it changes, MoEngage should receive
/// the new encoding, which only a new `CELLS_DOMAIN` (in `sync_state::fingerprint`) makes happen.
#[test]
fn encoding_is_pinned() {
    let m = every_type();
    let mut all = Vec::new();
    let mut element = Vec::new();
    for row in EVERY_TYPE_ROWS {
        m.encode(&Cells(row.to_vec()), &mut element, now())
            .expect("encodes");
        all.extend_from_slice(&element);
        all.push(b'\n');
    }
    let got = xxhash_rust::xxh3::xxh3_64(&all);
    assert_eq!(
        got,
        0x3f25_19bd_0e79_e626,
        "ResolvedMapping::encode now writes other bytes for the same cells:\n{}\n\
         If that is meant, change CELLS_DOMAIN in src/sync_state/fingerprint.rs (every row is \
         then sent once more, so that MoEngage gets the new encoding) and pin {got:#x} here.",
        String::from_utf8_lossy(&all)
    );
}
