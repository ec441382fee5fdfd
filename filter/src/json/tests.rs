//! The JSON module against serde_json (a dev-dependency only): the same documents accepted,
//! the same values, the same error texts and positions, the same output bytes; and no input
//! ever panics or overflows the stack.

use proptest::prelude::*;

use super::*;

/// Our value as a serde_json value (floats through serde_json's own reading of their text).
fn to_serde(v: &Value) -> serde_json::Value {
    use serde_json::Value as S;
    match &v.kind {
        Kind::Null => S::Null,
        Kind::Bool(b) => S::Bool(*b),
        Kind::U64(n) => S::from(*n),
        Kind::I64(n) => S::from(*n),
        Kind::Float(text) => serde_json::from_str(text).expect("a float we accepted"),
        Kind::Str(s) => S::String(s.clone()),
        Kind::Array(a) => S::Array(a.iter().map(to_serde).collect()),
        Kind::Object(m) => S::Object(
            m.iter()
                .map(|m| (m.key.clone(), to_serde(&m.value)))
                .collect(),
        ),
    }
}

/// Parses `bytes` with both and checks they agree: both accept with the same value (number
/// kinds included), or both refuse with the same message and position.
fn same_as_serde(bytes: &[u8]) {
    let theirs = serde_json::from_slice::<serde_json::Value>(bytes);
    let ours = parse(bytes);
    match (&ours, &theirs) {
        (Ok(o), Ok(t)) => {
            let converted = to_serde(o);
            assert_eq!(&converted, t, "{:?}", String::from_utf8_lossy(bytes));
            same_number_kinds(o, t);
        }
        (Err(o), Err(t)) => assert_eq!(
            o.to_string(),
            t.to_string(),
            "{:?}",
            String::from_utf8_lossy(bytes)
        ),
        _ => panic!(
            "{:?}: ours {ours:?}, serde_json {theirs:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn same_number_kinds(o: &Value, t: &serde_json::Value) {
    match (&o.kind, t) {
        (Kind::U64(n), serde_json::Value::Number(m)) => assert_eq!(Some(*n), m.as_u64()),
        (Kind::I64(n), serde_json::Value::Number(m)) => {
            assert!(m.is_i64() && !m.is_u64());
            assert_eq!(Some(*n), m.as_i64());
        }
        (Kind::Float(_), serde_json::Value::Number(m)) => assert!(m.is_f64(), "{m}"),
        (Kind::Array(a), serde_json::Value::Array(b)) => {
            for (x, y) in a.iter().zip(b) {
                same_number_kinds(x, y);
            }
        }
        (Kind::Object(m), serde_json::Value::Object(_)) => {
            for member in m {
                if let Some(y) = t.get(&member.key) {
                    // A repeated key: serde_json keeps the last, so compare only that one.
                    if o.get(&member.key) == Some(&member.value) {
                        same_number_kinds(&member.value, y);
                    }
                }
            }
        }
        _ => {}
    }
}

#[test]
fn tricky_documents_read_as_serde_json_reads_them() {
    for text in [
        "",
        " ",
        "null",
        "true",
        "false",
        "nul",
        "tru",
        "nulx",
        "0",
        "-0",
        "-",
        "01",
        "1.",
        "1.5",
        "1e",
        "1e+",
        "1e5",
        "1E-5",
        "-1.5e+300",
        "1e309",
        "1e400",
        "-1e400",
        "0e99999999999",
        "1e99999999999",
        "1e-99999999999",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "0.000000000000000000000000000001",
        "\"\"",
        "\"abc",
        "\"a\\\"b\"",
        "\"\\u00e9\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud800x\"",
        "\"\\ud800\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\q\"",
        "\"a\nb\"",
        "\"\u{7f}\"",
        "\"\u{e9}\"",
        "[]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "[1,2",
        "[",
        "]",
        "{}",
        "{,}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":1 \"b\":2}",
        "{1:2}",
        "{\"a\":1",
        "{\"a\"",
        "{\"a\":1}x",
        "{\"a\":1} ",
        "1 2",
        "[1] [2]",
        "{\"a\":1,\"a\":2}",
        "\n\n  [1,\n  x]",
        "[\"\\",
        "{\"a\":[{\"b\":[1,{\"c\":tru}]}]}",
        "{\"a\":{\"b\":\"\\u00\"}}",
        "[1e5x]",
        "{\"k\u{e9}y\":\"v\u{e9}\"}",
        "{\"a\":-}",
        "[-a]",
        "[1.e5]",
        "[.5]",
        "[+1]",
    ] {
        same_as_serde(text.as_bytes());
    }
    for bytes in [
        &b"\xff"[..],
        b"\"\xff\"",
        b"\"ab\xc3\"",
        b"\"\xe2\x82\"x",
        b"[\"\\n\xff\"]",
        b"{\"\xff\":1}",
        b"\x00",
        b"[\"\x01\"]",
    ] {
        same_as_serde(bytes);
    }
}

#[test]
fn nesting_stops_at_serde_jsons_limit_without_overflowing_the_stack() {
    for depth in [1, 126, 127, 128, 129, 200] {
        let text = "[".repeat(depth) + &"]".repeat(depth);
        same_as_serde(text.as_bytes());
        let text = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
        same_as_serde(text.as_bytes());
    }
    // Far deeper than any stack: refused at depth 128, not a crash.
    let deep = "[".repeat(1_000_000);
    let e = parse(deep.as_bytes()).unwrap_err();
    assert!(e.message.contains("recursion limit exceeded"), "{e}");
}

#[test]
fn strings_are_written_as_serde_json_writes_them() {
    let all_controls: String = (0u8..0x20).map(char::from).collect();
    for s in [
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "\u{7f} \u{e9} \u{1f600} \u{2028}",
        &all_controls,
    ] {
        let mut w = Writer::new();
        w.str(s);
        assert_eq!(w.into_string(), serde_json::to_string(s).unwrap());
    }
}

#[test]
fn errors_without_a_position_print_only_the_message() {
    assert_eq!(Error::custom("nope").to_string(), "nope");
}

#[test]
fn float_names_match_serde_json() {
    // What serde's "invalid type: floating point `…`" prints, for numbers a config could hold.
    for text in [
        "1.5",
        "-1.5",
        "2.0",
        "1e3",
        "1E+3",
        "1.50",
        "0.1",
        "-0.0",
        "0.0",
        "1e15",
        "1e16",
        "1e17",
        "123456789012345.6",
        "1e-5",
        "1e-6",
        "0.00001234",
        "1e300",
        "-2.5e-300",
        "18446744073709551616",
        "1e22",
        "12345e-10",
        "100",
        "1.0e2",
    ] {
        let v: f64 = serde_json::from_str(text).unwrap();
        let serde_text = serde_json::to_string(&v).unwrap();
        assert_eq!(read::float_text(text), serde_text, "{text}");
    }
}

/// JSON-like text from JSON's own pieces, so that most inputs get deep into the parser.
fn json_ish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(","),
        Just(":"),
        Just("\""),
        Just("\"k\""),
        Just("\"\\u00e9\""),
        Just("\\"),
        Just("\\ud800"),
        Just("\\udc00"),
        Just("u"),
        Just("a"),
        Just("0"),
        Just("7"),
        Just("-"),
        Just("."),
        Just("e"),
        Just("+"),
        Just("1e999"),
        Just("true"),
        Just("null"),
        Just(" "),
        Just("\n"),
        Just("\t"),
        Just("\u{1}"),
        Just("\u{e9}"),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

fn any_serde_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value as S};
    let leaf = prop_oneof![
        Just(S::Null),
        any::<bool>().prop_map(S::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(S::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(S::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..5)
                .prop_map(|m| S::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
        let _ = parse_with_tail(&bytes);
    }

    #[test]
    fn random_bytes_read_as_serde_json_reads_them(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        same_as_serde(&bytes);
    }

    #[test]
    fn json_like_text_reads_as_serde_json_reads_it(text in json_ish()) {
        same_as_serde(text.as_bytes());
    }

    #[test]
    fn serde_json_output_reads_back_and_prints_the_same(v in any_serde_value()) {
        let text = v.to_string();
        same_as_serde(text.as_bytes());
        // Our Display (keys sorted, like serde_json's map) gives serde_json's bytes back.
        let ours = parse(text.as_bytes()).unwrap();
        let has_float = text.contains('.') || text.contains('e');
        if !has_float {
            prop_assert_eq!(ours.to_string(), text);
        }
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        same_as_serde(pretty.as_bytes());
    }

    #[test]
    fn float_names_never_panic(text in ".{0,30}") {
        let _ = read::float_text(&text);
    }

    #[test]
    fn written_strings_read_back(s in any::<String>()) {
        let mut w = Writer::new();
        w.str(&s);
        let text = w.into_string();
        prop_assert_eq!(&text, &serde_json::to_string(&s).unwrap());
        let back = parse(text.as_bytes()).unwrap();
        prop_assert_eq!(back.as_str(), Some(s.as_str()));
    }
}
