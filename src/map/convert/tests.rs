//! Conversions by type, table-driven.

use super::*;

fn conv(cell: Cell<'_>, ty: Option<FieldType>) -> Result<String, ConvertError> {
    let mut out = Vec::new();
    let mut w = Vec::new();
    let wrote = write_value(cell, ty, &mut out, &mut w)?;
    Ok(if wrote {
        String::from_utf8(out).unwrap()
    } else {
        "<omitted>".into()
    })
}

#[test]
fn datetimes_from_warehouses_become_moengage_utc() {
    let table = [
        ("2026-11-01T10:00:00Z", "2026-11-01T10:00:00Z"),
        ("2026-11-01T12:00:00+02:00", "2026-11-01T10:00:00Z"),
        ("2026-11-01T10:00:00.123Z", "2026-11-01T10:00:00Z"),
        ("2026-11-01T10:00:00", "2026-11-01T10:00:00Z"),
        ("2026-11-01 10:00:00", "2026-11-01T10:00:00Z"),
        ("2026-11-01 10:00:00.000 +0000", "2026-11-01T10:00:00Z"),
        ("2026-11-01 15:30:00.250 +0530", "2026-11-01T10:00:00Z"),
        ("2026-11-01 10:00:00 UTC", "2026-11-01T10:00:00Z"),
        ("2026-11-01 05:00:00-05:00", "2026-11-01T10:00:00Z"),
        ("2026-11-01", "2026-11-01T00:00:00Z"),
        ("1793527200", "2026-11-01T10:00:00Z"),
        ("1793527200000", "2026-11-01T10:00:00Z"),
        ("1793527200.5", "2026-11-01T10:00:00Z"),
    ];
    for (input, want) in table {
        assert_eq!(
            conv(Cell::Str(input), Some(FieldType::Datetime)).unwrap(),
            format!("\"{want}\""),
            "{input}"
        );
    }
    let n = serde_json::json!(1793527200000_i64);
    assert_eq!(
        conv(Cell::Json(&n), Some(FieldType::Datetime)).unwrap(),
        "\"2026-11-01T10:00:00Z\""
    );
    for bad in [
        "yesterday",
        "2026-13-01",
        "01/11/2026",
        "2026-11-01T25:00:00Z",
    ] {
        let e = conv(Cell::Str(bad), Some(FieldType::Datetime)).unwrap_err();
        assert!(e.0.contains("not a datetime"), "{bad}: {e}");
    }
}

#[test]
fn the_fast_datetime_parser_agrees_with_chrono() {
    let inputs = [
        "2026-11-01T10:00:00Z",
        "2026-11-01T12:00:00+02:00",
        "2026-11-01T10:00:00.123Z",
        "2026-11-01T10:00:00",
        "2026-11-01 10:00:00",
        "2026-11-01 10:00:00.000 +0000",
        "2026-11-01 15:30:00.250 +0530",
        "2026-11-01 10:00:00 UTC",
        "2026-11-01 05:00:00-05:00",
        "2026-03-01 10:11:12.345678 UTC",
        "2024-02-29 23:59:59.999999999-0130",
    ];
    for input in inputs {
        let fast =
            parse_datetime_fast(input).unwrap_or_else(|| panic!("fast path should take {input}"));
        let slow = DateTime::parse_from_rfc3339(input)
            .ok()
            .map(|d| d.with_timezone(&Utc))
            .or_else(|| {
                DateTime::parse_from_str(input, "%Y-%m-%d %H:%M:%S%.f %z")
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            })
            .or_else(|| {
                DateTime::parse_from_str(input, "%Y-%m-%d %H:%M:%S%.f%z")
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            })
            .or_else(|| {
                DateTime::parse_from_str(input, "%Y-%m-%d %H:%M:%S%.f %:z")
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            })
            .or_else(|| {
                NaiveDateTime::parse_from_str(
                    input.trim_end_matches(" UTC"),
                    "%Y-%m-%d %H:%M:%S%.f",
                )
                .ok()
                .map(|d| d.and_utc())
            })
            .or_else(|| {
                NaiveDateTime::parse_from_str(input, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|d| d.and_utc())
            })
            .unwrap_or_else(|| panic!("chrono should parse {input}"));
        assert_eq!(fast, slow, "{input}");
    }
    for other in [
        "2026-11-01",
        "2026-02-30 10:00:00",
        "2026-11-01T25:00:00Z",
        "2026-11-01 10:00:00 CET",
        "2026-11-01T10:00:60Z",
    ] {
        assert_eq!(
            parse_datetime_fast(other),
            None,
            "{other} is for the general parser"
        );
    }
}

#[test]
fn typed_cells_from_parquet_and_ndjson() {
    let ts = DateTime::from_timestamp(1_793_527_200, 5).unwrap();
    let d = NaiveDate::from_ymd_opt(1990, 2, 28).unwrap();
    let table: &[(Cell<'_>, Option<FieldType>, &str)] = &[
        (Cell::Int(-42), None, "-42"),
        (Cell::Int(42), Some(FieldType::String), "\"42\""),
        (Cell::Int(1), Some(FieldType::Boolean), "true"),
        (
            Cell::Int(1_793_527_200),
            Some(FieldType::Datetime),
            "\"2026-11-01T10:00:00Z\"",
        ),
        (Cell::Float(29.99), None, "29.99"),
        (Cell::Float(12.0), Some(FieldType::Integer), "12"),
        (Cell::Bool(false), None, "false"),
        (Cell::Bool(true), Some(FieldType::String), "\"true\""),
        (Cell::Number("12.50"), None, "12.50"),
        (Cell::Number("12.50"), Some(FieldType::Number), "12.50"),
        (
            Cell::Decimal {
                unscaled: -1234,
                scale: 2,
            },
            None,
            "-12.34",
        ),
        (
            Cell::Decimal {
                unscaled: 5,
                scale: 3,
            },
            None,
            "0.005",
        ),
        (
            Cell::Decimal {
                unscaled: 7,
                scale: -2,
            },
            None,
            "700",
        ),
        (
            Cell::Decimal {
                unscaled: 1000,
                scale: 2,
            },
            Some(FieldType::Integer),
            "10",
        ),
        (Cell::Timestamp(ts), None, "\"2026-11-01T10:00:00Z\""),
        (Cell::Timestamp(ts), Some(FieldType::Date), "\"2026-11-01\""),
        (
            Cell::Timestamp(ts),
            Some(FieldType::String),
            "\"2026-11-01T10:00:00Z\"",
        ),
        (Cell::Date(d), None, "\"1990-02-28\""),
        (
            Cell::Date(d),
            Some(FieldType::Datetime),
            "\"1990-02-28T00:00:00Z\"",
        ),
    ];
    for (cell, ty, want) in table {
        assert_eq!(conv(*cell, *ty).unwrap(), *want, "{cell:?} as {ty:?}");
    }
    assert!(conv(Cell::Float(f64::NAN), None)
        .unwrap_err()
        .0
        .contains("not a number"));
    assert!(conv(Cell::Bool(true), Some(FieldType::Number)).is_err());
    assert_eq!(Cell::Int(7).as_text().unwrap(), "7");
}

#[test]
fn each_type_converts_or_explains() {
    let ok: &[(&str, FieldType, &str)] = &[
        ("42", FieldType::Number, "42"),
        ("29.99", FieldType::Number, "29.99"),
        (" 1e3 ", FieldType::Number, "1e3"),
        ("+5", FieldType::Number, "5.0"),
        ("12", FieldType::Integer, "12"),
        ("12.0", FieldType::Integer, "12"),
        ("TRUE", FieldType::Boolean, "true"),
        ("no", FieldType::Boolean, "false"),
        ("t", FieldType::Boolean, "true"),
        ("0", FieldType::Boolean, "false"),
        (
            "2026-11-01 10:00:00 +0000",
            FieldType::Date,
            "\"2026-11-01\"",
        ),
        ("1990-02-28", FieldType::Date, "\"1990-02-28\""),
        ("a, b ,c", FieldType::Array, "[\"a\",\"b\",\"c\"]"),
        ("a|b", FieldType::Array, "[\"a\",\"b\"]"),
        ("[1,2,3]", FieldType::Array, "[1,2,3]"),
        ("{\"a\":1}", FieldType::Json, "{\"a\":1}"),
        ("say \"hi\"", FieldType::String, "\"say \\\"hi\\\"\""),
    ];
    for (input, ty, want) in ok {
        assert_eq!(
            conv(Cell::Str(input), Some(*ty)).unwrap(),
            *want,
            "{input} as {ty:?}"
        );
    }
    let bad: &[(&str, FieldType, &str)] = &[
        ("abc", FieldType::Number, "not a number"),
        ("1.5", FieldType::Integer, "not an integer"),
        ("maybe", FieldType::Boolean, "not a boolean"),
        ("11/01/2026", FieldType::Date, "not a date"),
        ("[1,2", FieldType::Array, "JSON array"),
        ("{oops", FieldType::Json, "not valid JSON"),
        ("NaN", FieldType::Number, "not a number"),
    ];
    for (input, ty, reason) in bad {
        let e = conv(Cell::Str(input), Some(*ty)).unwrap_err();
        assert!(e.0.contains(reason), "{input} as {ty:?}: {e}");
    }
}

#[test]
fn the_word_at_a_time_escape_check_agrees_with_the_bytewise_one() {
    let slow = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    let mut samples: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"plain ascii text".to_vec(),
        "naïve café ünïcode ✓".as_bytes().to_vec(),
    ];
    for special in [b'"', b'\\', b'\n', 0u8, 0x1f, b' ', 0x7f, 0x80, 0xff] {
        for pos in 0..20 {
            let mut v = b"abcdefghijklmnopqrst".to_vec();
            v[pos] = special;
            samples.push(v);
        }
    }
    for s in &samples {
        assert_eq!(needs_escape(s), slow(s), "{s:?}");
    }
}

#[test]
fn datetimes_and_dates_copied_as_text_match_the_chrono_path() {
    let mut samples = Vec::new();
    for date in [
        "2025-10-19",
        "2024-02-29",
        "2023-02-29",
        "2025-13-01",
        "2025-00-10",
        "0000-01-01",
        "9999-12-31",
        "2025-04-31",
    ] {
        for time in [
            "00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "1:00:00",
        ] {
            for sep in ["T", " "] {
                for tail in [
                    "",
                    ".9",
                    ".911",
                    ".123456789",
                    ".1234567890",
                    ".",
                    "Z",
                    " UTC",
                    ".5Z",
                    "+01:00",
                    " +0530",
                    "z",
                    " utc",
                    "x",
                ] {
                    samples.push(format!("{date}{sep}{time}{tail}"));
                }
            }
        }
    }
    let mut copied = 0;
    for s in &samples {
        let mut fast = Vec::new();
        if write_utc_text(s, &mut fast) {
            copied += 1;
            let mut slow = Vec::new();
            write_datetime(&parse_datetime(s).unwrap(), &mut slow);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(slow).unwrap(),
                "{s:?}"
            );
        } else {
            assert!(fast.is_empty());
        }
        // Through the public path the result is the same whichever branch takes it.
        let via = conv(Cell::Str(s), Some(FieldType::Datetime));
        let want = parse_datetime(s).map(|dt| {
            let mut o = Vec::new();
            write_datetime(&dt, &mut o);
            String::from_utf8(o).unwrap()
        });
        assert_eq!(via.ok(), want, "{s:?}");
    }
    assert!(copied > 50, "the copy path is exercised: {copied}");
    for d in [
        "2024-02-29",
        "2023-02-29",
        "2025-04-31",
        "0000-01-01",
        "2025-1-01",
    ] {
        let via = conv(Cell::Str(d), Some(FieldType::Date)).ok();
        let want = parse_date_fast(d)
            .or_else(|| parse_datetime(d).map(|dt| dt.date_naive()))
            .map(|nd| {
                let mut o = Vec::new();
                write_date(nd, &mut o);
                String::from_utf8(o).unwrap()
            });
        assert_eq!(via, want, "{d:?}");
    }
}

#[test]
fn booleans_in_every_spelling_warehouses_use() {
    let old = |s: &str| {
        let t = s.trim();
        let is = |words: [&str; 5]| words.iter().any(|w| w.eq_ignore_ascii_case(t));
        if is(["true", "t", "1", "yes", "y"]) {
            Some(true)
        } else if is(["false", "f", "0", "no", "n"]) {
            Some(false)
        } else {
            None
        }
    };
    for s in [
        "true",
        "TRUE",
        " True ",
        "t",
        "T",
        "1",
        "yes",
        "YES",
        "y",
        "false",
        "False",
        "f",
        "0",
        "no",
        "No",
        "n",
        "",
        " ",
        "truee",
        "tru",
        "2",
        "yes!",
        "ñ",
        "verdadero",
        "\u{a0}true",
    ] {
        assert_eq!(parse_bool(s), old(s), "{s:?}");
    }
}

#[test]
fn the_fast_trim_agrees_with_str_trim() {
    let pads = [
        "",
        " ",
        "\t",
        "\n\r",
        "\u{a0}",
        "\u{3000}",
        "\u{b}",
        " \u{2003} ",
        "\u{1c}",
    ];
    let cores = [
        "",
        "x",
        "a b",
        "é",
        "東京",
        "\u{a0}x\u{a0}",
        "x\u{1f}",
        "1.5",
    ];
    for l in pads {
        for c in cores {
            for r in pads {
                let s = format!("{l}{c}{r}");
                assert_eq!(trim(&s), s.trim(), "{s:?}");
            }
        }
    }
}

#[test]
fn the_number_grammar_check_agrees_with_serde_json() {
    // Every string up to 5 characters over the alphabet numbers are made of.
    let alphabet = ['0', '1', '9', '-', '+', '.', 'e', 'E', 'x'];
    let mut strings = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..5 {
        let next: Vec<String> = frontier
            .iter()
            .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
            .collect();
        strings.extend(next.iter().cloned());
        frontier = next;
    }
    strings.extend(
        [
            "1e400",
            "-0.5e-3",
            "12345678901234567890123",
            "007",
            "1.",
            ".5",
        ]
        .map(String::from),
    );
    for s in &strings {
        let serde = serde_json::from_str::<serde_json::Number>(s).is_ok();
        assert_eq!(is_json_number(s), serde, "{s:?}");
    }
}

#[test]
fn empty_cells_and_nulls_are_omitted() {
    assert_eq!(conv(Cell::Str(""), None).unwrap(), "<omitted>");
    assert_eq!(
        conv(Cell::Str("  "), Some(FieldType::Number)).unwrap(),
        "<omitted>"
    );
    assert_eq!(
        conv(Cell::Null, Some(FieldType::Boolean)).unwrap(),
        "<omitted>"
    );
    assert_eq!(conv(Cell::Json(&Value::Null), None).unwrap(), "<omitted>");
}

#[test]
fn untyped_json_keeps_its_type() {
    let v = serde_json::json!({"n": 1.5, "b": true, "a": ["x"]});
    assert_eq!(conv(Cell::Json(&v["n"]), None).unwrap(), "1.5");
    assert_eq!(conv(Cell::Json(&v["b"]), None).unwrap(), "true");
    assert_eq!(conv(Cell::Json(&v["a"]), None).unwrap(), "[\"x\"]");
    assert_eq!(
        conv(Cell::Json(&v["n"]), Some(FieldType::String)).unwrap(),
        "\"1.5\""
    );
}

#[test]
fn warnings_for_what_moengage_would_alter() {
    let mut w = Vec::new();
    let long = "x".repeat(600);
    write_value(Cell::Str(&long), None, &mut Vec::new(), &mut w).unwrap();
    assert_eq!(w, vec![ValueWarning::LongString(600)]);
    let mut w = Vec::new();
    let many = (0..60).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    write_value(
        Cell::Str(&many),
        Some(FieldType::Array),
        &mut Vec::new(),
        &mut w,
    )
    .unwrap();
    assert_eq!(w, vec![ValueWarning::LongArray(60)]);
    let mut w = Vec::new();
    write_value(
        Cell::Str("[1,\"a\"]"),
        Some(FieldType::Array),
        &mut Vec::new(),
        &mut w,
    )
    .unwrap();
    assert_eq!(w, vec![ValueWarning::MixedArray]);
}

#[test]
fn a_nul_is_refused_in_any_string_and_long_values_are_quoted_short() {
    for (cell, ty) in [
        (Cell::Str("a\0b"), None),
        (Cell::Str("a\0b"), Some(FieldType::String)),
        (Cell::Json(&serde_json::json!(["x", "y\u{0}"])), None),
        (
            Cell::Json(&serde_json::json!({"k": "\u{0}"})),
            Some(FieldType::Json),
        ),
        // Arrays: NDJSON arrays, delimited text, JSON-array text.
        (
            Cell::Json(&serde_json::json!(["a\u{0}b"])),
            Some(FieldType::Array),
        ),
        (Cell::Str("a\0b,c"), Some(FieldType::Array)),
        (Cell::Str(r#"["a\u0000b"]"#), Some(FieldType::Array)),
    ] {
        let e = conv(cell, ty).unwrap_err().0;
        assert!(e.contains("NUL"), "{e}");
    }
    // A backslash followed by `u0000` is text, not a NUL.
    assert_eq!(
        conv(Cell::Json(&serde_json::json!(["C:\\u0000"])), None).unwrap(),
        r#"["C:\\u0000"]"#
    );
    // A 350-digit number is out of f64's range: refused, not written for MoEngage to choke on.
    assert!(conv(Cell::Str(&"5".repeat(350)), Some(FieldType::Number)).is_err());
    assert!(conv(Cell::Str(&"5".repeat(300)), Some(FieldType::Number)).is_ok());
    // Control characters escape to six bytes each: the quote is cut after escaping too (fuzzing).
    let e = conv(
        Cell::Str(&format!("[{}", "\u{1f}".repeat(200))),
        Some(FieldType::Array),
    )
    .unwrap_err()
    .0;
    assert!(e.len() < 300, "{} bytes: {e}", e.len());
    let long = "9x".repeat(1 << 20);
    let e = conv(Cell::Str(&long), Some(FieldType::Integer))
        .unwrap_err()
        .0;
    assert!(
        e.len() < 300 && e.contains("not an integer"),
        "{} bytes",
        e.len()
    );
}
