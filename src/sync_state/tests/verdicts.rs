//! Which rows are sent, per mode, against what was delivered before.

use super::*;

#[test]
fn send_policy_table() {
    use ElementKind::{Customer as C, Event as E};
    use SyncMode::{Insert as I, Update as Up, Upsert as U};
    use Verdict::{Changed as Ch, New as N, Unchanged as Un};
    #[rustfmt::skip]
    let table = [
        // kind, mode, verdict, duplicate → send
        (C, U, N, false, true),  (C, U, Ch, false, true),  (C, U, Un, false, false),
        (C, I, N, false, true),  (C, I, Ch, false, false), (C, I, Un, false, false),
        (C, Up, N, false, true), (C, Up, Ch, false, true), (C, Up, Un, false, false),
        // A repeated customer id: the last occurrence wins, so a different payload goes too.
        (C, U, N, true, true),   (C, I, N, true, true),    (C, U, Ch, true, true),
        // Events are append-only in MoEngage: an event id is sent once.
        (E, U, N, false, true),  (E, U, Ch, false, false), (E, U, Un, false, false),
        (E, I, N, false, true),  (E, Up, N, false, true),  (E, U, N, true, false),
    ];
    for (kind, mode, verdict, dup, want) in table {
        assert_eq!(
            should_send(mode, kind, verdict, dup),
            want,
            "{kind:?} {mode:?} {verdict:?} duplicate={dup}"
        );
    }
}

#[test]
fn verdicts_and_sends_per_mode_against_a_stored_state() {
    let rows = [("a", "1"), ("b", "2"), ("c", "1")];
    for (mode, want) in [
        (SyncMode::Upsert, [false, true, true]),
        (SyncMode::Insert, [false, false, true]),
        (SyncMode::Update, [false, true, true]),
    ] {
        let h = Harness::new();
        h.run(upsert(), MAPPING, &[("a", "1"), ("b", "1")], ALL);
        let ds = h.run(SyncOptions::new(mode, false), MAPPING, &rows, ALL);
        assert_eq!(
            verdicts(&ds),
            [Verdict::Unchanged, Verdict::Changed, Verdict::New],
            "{mode:?}"
        );
        assert_eq!(sends(&ds), want, "{mode:?}");
        assert!(ds.iter().all(|d| !d.duplicate));
    }
}

#[test]
fn first_run_sends_all_an_identical_snapshot_nothing_and_changes_only_themselves() {
    let h = Harness::new();
    let snapshot: Vec<(String, String)> = (0..500)
        .map(|i| (format!("user-{i}"), format!("v{i}")))
        .collect();
    let rows: Vec<(&str, &str)> = snapshot
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert!(sends(&h.run(upsert(), MAPPING, &rows, ALL))
        .iter()
        .all(|s| *s));
    assert_eq!(h.stored(DEFAULT_SHARD_BITS).len(), 500);
    assert!(sends(&h.run(upsert(), MAPPING, &rows, ALL))
        .iter()
        .all(|s| !s));
    let mut changed = rows.clone();
    for row in changed.iter_mut().step_by(50) {
        row.1 = "changed";
    }
    let ds = h.run(upsert(), MAPPING, &changed, ALL);
    assert_eq!(ds.iter().filter(|d| d.send).count(), 10);
    assert!(ds
        .iter()
        .step_by(50)
        .all(|d| d.verdict == Verdict::Changed && d.send));
    assert!(sends(&h.run(upsert(), MAPPING, &changed, ALL))
        .iter()
        .all(|s| !s));
}

#[test]
fn only_accepted_rows_are_recorded() {
    let h = Harness::new();
    let rows = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")];
    // b and d are dead-lettered (or still pending when the run stops).
    h.run(upsert(), MAPPING, &rows, |i| i % 2 == 0);
    let ds = h.run(upsert(), MAPPING, &rows, ALL);
    assert_eq!(
        verdicts(&ds),
        [
            Verdict::Unchanged,
            Verdict::New,
            Verdict::Unchanged,
            Verdict::New
        ]
    );

    // A print for a row this state never sent is not trusted.
    let state = h.open(upsert());
    let stray = Fingerprinter::with_mapping_fingerprint(MAPPING).print(
        ElementKind::Customer,
        b"zed",
        b"{}",
    );
    state.record_delivered(&[stray]);
    assert_eq!(state.stats().prints_ignored, 1);
    h.rt.block_on(state.save()).unwrap();
    assert!(!h.stored(DEFAULT_SHARD_BITS).contains_key(&stray.key));
}

#[test]
fn a_changed_row_that_is_not_accepted_keeps_its_old_entry_and_is_resent() {
    let h = Harness::new();
    h.run(upsert(), MAPPING, &[("a", "1")], ALL);
    let ds = h.run(upsert(), MAPPING, &[("a", "2")], |_| false);
    assert!(ds[0].send);
    let ds = h.run(upsert(), MAPPING, &[("a", "2")], ALL);
    assert_eq!((ds[0].verdict, ds[0].send), (Verdict::Changed, true));
}

#[test]
fn duplicates_are_flagged_and_the_last_occurrence_wins() {
    let h = Harness::new();
    let ds = h.run(
        upsert(),
        MAPPING,
        &[("a", "1"), ("a", "1"), ("b", "1"), ("b", "2")],
        ALL,
    );
    assert_eq!(
        ds.iter()
            .map(|d| (d.verdict, d.duplicate, d.send))
            .collect::<Vec<_>>(),
        [
            (Verdict::New, false, true),
            (Verdict::Unchanged, true, false),
            (Verdict::New, false, true),
            (Verdict::New, true, true),
        ]
    );
    assert_eq!(
        sends(&h.run(upsert(), MAPPING, &[("b", "2")], ALL)),
        [false]
    );

    // Stored 1; the export says 2 then 1. MoEngage ends with 1 (sent last), and so must the state.
    let h = Harness::new();
    h.run(upsert(), MAPPING, &[("a", "1")], ALL);
    let ds = h.run(upsert(), MAPPING, &[("a", "2"), ("a", "1")], ALL);
    assert_eq!(verdicts(&ds), [Verdict::Changed, Verdict::Changed]);
    assert!(ds[1].duplicate && ds[1].send);
    assert_eq!(
        sends(&h.run(upsert(), MAPPING, &[("a", "1")], ALL)),
        [false]
    );

    // Same, but the last occurrence is dead-lettered: MoEngage holds 2, so 1 is sent next time.
    let h = Harness::new();
    h.run(upsert(), MAPPING, &[("a", "1")], ALL);
    h.run(upsert(), MAPPING, &[("a", "2"), ("a", "1")], |i| i == 0);
    assert_eq!(sends(&h.run(upsert(), MAPPING, &[("a", "1")], ALL)), [true]);

    // Events: a repeated event id is never sent twice.
    let h = Harness::new();
    let state = h.open(upsert());
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let e1 = fp.print(ElementKind::Event, b"evt-1", b"{\"a\":1}");
    let e1b = fp.print(ElementKind::Event, b"evt-1", b"{\"a\":2}");
    assert!(state.classify(ElementKind::Event, e1).unwrap().send);
    let again = state.classify(ElementKind::Event, e1b).unwrap();
    assert!(again.duplicate && !again.send);
}

#[test]
fn full_resync_ignores_the_state_once_and_rebuilds_it() {
    let h = Harness::new();
    h.run(
        upsert(),
        MAPPING,
        &[("a", "1"), ("b", "1"), ("c", "1"), ("keep", "1")],
        ALL,
    );
    // A full resync of a, b, c: everything is New and sent; b is not accepted.
    let full = SyncOptions::new(SyncMode::Upsert, true);
    let ds = h.run(full, MAPPING, &[("a", "1"), ("b", "1"), ("c", "2")], |i| {
        i != 1
    });
    assert!(ds.iter().all(|d| d.verdict == Verdict::New && d.send));
    // b's old entry is forgotten rather than trusted; keys the export did not hold keep theirs.
    let ds = h.run(
        upsert(),
        MAPPING,
        &[("a", "1"), ("b", "1"), ("c", "2"), ("keep", "1")],
        ALL,
    );
    assert_eq!(
        verdicts(&ds),
        [
            Verdict::Unchanged,
            Verdict::New,
            Verdict::Unchanged,
            Verdict::Unchanged
        ]
    );
    // Insert mode under a full resync sends everything too (that is the point of it).
    let ds = h.run(
        SyncOptions::new(SyncMode::Insert, true),
        MAPPING,
        &[("a", "1")],
        ALL,
    );
    assert!(ds[0].send);
}

#[test]
fn a_mapping_change_makes_everything_changed_once() {
    let h = Harness::new();
    let rows = [("a", "1"), ("b", "1")];
    h.run(upsert(), MAPPING, &rows, ALL);
    let ds = h.run(upsert(), MAPPING + 1, &rows, ALL);
    assert!(ds.iter().all(|d| d.verdict == Verdict::Changed && d.send));
    assert!(sends(&h.run(upsert(), MAPPING + 1, &rows, ALL))
        .iter()
        .all(|s| !s));
}

#[test]
fn the_mapping_fingerprint_follows_fields_columns_and_types_not_positions() {
    let fp = |json: &str, header: &[&str]| {
        let m = FieldMapping::parse(Some(json), None, ObjectType::UserAttributes).unwrap();
        let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        mapping_fingerprint(
            ObjectType::UserAttributes,
            &m.resolve(&header, SyncMode::Upsert).unwrap(),
        )
    };
    let base = fp(
        r#"{"customer_id":"id","plan":"plan"}"#,
        &["id", "plan", "x"],
    );
    assert_eq!(
        base,
        fp(
            r#"{"customer_id":"id","plan":"plan"}"#,
            &["x", "plan", "id"]
        )
    );
    assert_ne!(
        base,
        fp(r#"{"customer_id":"id","plan":"tier"}"#, &["id", "tier"])
    );
    assert_ne!(
        base,
        fp(
            r#"{"customer_id":"id","plan":{"column":"plan","type":"string"}}"#,
            &["id", "plan"]
        )
    );
    assert_ne!(
        base,
        fp(r#"{"customer_id":"id","tier":"plan"}"#, &["id", "plan"])
    );
}

#[test]
fn fingerprints_cover_the_payload_but_not_update_existing_only() {
    let f = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let plain = br#"{"type":"customer","customer_id":"u1","attributes":{"a":1}}"#;
    let flagged = br#"{"type":"customer","customer_id":"u1","attributes":{"a":1},"update_existing_only":true}"#;
    assert_eq!(f.fingerprint(plain), f.fingerprint(flagged));
    assert_ne!(
        f.fingerprint(plain),
        f.fingerprint(br#"{"type":"customer","customer_id":"u1","attributes":{"a":2}}"#)
    );
    assert_ne!(
        f.fingerprint(plain),
        Fingerprinter::with_mapping_fingerprint(MAPPING + 1).fingerprint(plain)
    );
    assert_ne!(
        Fingerprinter::key(ElementKind::Customer, b"u1"),
        Fingerprinter::key(ElementKind::Event, b"u1")
    );

    assert_eq!(customer_id_of(plain), Some(&b"u1"[..]));
    assert_eq!(
        customer_id_of(br#"{"type":"event","customer_id":"a\"b","actions":[]}"#),
        Some(&br#"a\"b"#[..])
    );
    assert_eq!(
        customer_id_of(br#"{"type":"customer","customer_id":"unterminated"#),
        None
    );
    assert_eq!(customer_id_of(b"{}"), None);
}

/// A state written before cell fingerprints holds element fingerprints. A row whose element
/// matches its stored one is MoEngage's already: not sent, and stored again under its cell
/// fingerprint. Anything else is sent as before.
#[test]
fn element_fingerprints_are_carried_over_to_cell_fingerprints_without_a_resend() {
    let h = Harness::new();
    // The old release: element fingerprints.
    h.run(
        upsert(),
        MAPPING,
        &[("a", "1"), ("b", "1"), ("c", "1")],
        ALL,
    );
    let fp = Fingerprinter::with_mapping_fingerprint(MAPPING);
    let cells =
        |k: &str, v: &str| fp.print_cells(ElementKind::Customer, k.as_bytes(), v.as_bytes());
    let legacy = |k: &str, v: &str| fp.fingerprint(&customer(k, v));

    // FULL_RESYNC trusts no stored entry, old or new.
    let state = h.open(SyncOptions::new(SyncMode::Upsert, true));
    assert!(!state
        .carry_over(1, cells("a", "1"), legacy("a", "1"), Some(b"a"))
        .unwrap());

    let state = h.open(upsert());
    // Same element as stored: carried over.
    assert!(state
        .carry_over(1, cells("a", "1"), legacy("a", "1"), Some(b"a"))
        .unwrap());
    // A changed element: sent.
    assert!(!state
        .carry_over(2, cells("b", "2"), legacy("b", "2"), Some(b"b"))
        .unwrap());
    let d = state
        .classify_row(ElementKind::Customer, 2, cells("b", "2"), Some(b"b"))
        .unwrap();
    assert_eq!((d.verdict, d.send), (Verdict::Changed, true));
    state.record_delivered(&[cells("b", "2")]);
    // c changes, then goes back to what MoEngage held: the second occurrence must still be sent,
    // since the first one (sent) would otherwise be MoEngage's last word.
    assert!(!state
        .carry_over(3, cells("c", "9"), legacy("c", "9"), Some(b"c"))
        .unwrap());
    let c = |row, v| state.classify_row(ElementKind::Customer, row, cells("c", v), Some(b"c"));
    assert!(c(3, "9").unwrap().send);
    assert!(!state
        .carry_over(4, cells("c", "1"), legacy("c", "1"), Some(b"c"))
        .unwrap());
    let d = c(4, "1").unwrap();
    assert!(d.duplicate && d.send);
    state.record_delivered(&[cells("c", "9"), cells("c", "1")]);
    // A key the old release never delivered: new.
    assert!(!state
        .carry_over(5, cells("d", "1"), legacy("d", "1"), Some(b"d"))
        .unwrap());
    assert_eq!(state.stats().carried_over, 1);
    h.rt.block_on(state.save()).unwrap();

    // Stored under cell fingerprints now, the carried-over row included.
    let stored = h.stored_named(DEFAULT_SHARD_BITS);
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "1")] {
        let p = cells(k, v);
        assert_eq!(
            stored.get(&p.key),
            Some(&(p.fingerprint, Some(k.to_string()))),
            "{k}"
        );
    }
    let state = h.open(upsert());
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "1")] {
        let d = state.classify(ElementKind::Customer, cells(k, v)).unwrap();
        assert_eq!((d.verdict, d.send), (Verdict::Unchanged, false), "{k}");
    }
}
