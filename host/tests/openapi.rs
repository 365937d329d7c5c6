//! The OpenAPI document states the service's input rules exactly: for every parameter
//! with a rule, a value is valid by the document's schema if and only if the service
//! accepts it. Checked on generated values (control characters, Unicode white space,
//! four-byte characters, phone formatting, hidden caller ids, leading zeros) against
//! the very validators the service runs, so the document cannot drift from the code.

use proptest::prelude::*;
use regex::Regex;
use request_access_guest::validate;
use request_access_host::http::OPENAPI;
use request_access_wire::Params;
use serde_json::{Value, json};

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("the document is JSON")
}

/// The arm of the schema at `pointer` that values of JSON type `kind` meet, following
/// `$ref`s (siblings such as `description` are annotations and do not constrain).
fn schema(doc: &Value, pointer: &str, kind: &str) -> Value {
    let resolve = |mut s: Value| {
        while let Some(target) = s.get("$ref").and_then(Value::as_str) {
            s = doc.pointer(target.trim_start_matches('#')).unwrap().clone();
        }
        s
    };
    let s = resolve(
        doc.pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer}"))
            .clone(),
    );
    let Some(arms) = s.get("anyOf").and_then(Value::as_array) else {
        return s;
    };
    let of_kind = |arm: &Value| match &arm["type"] {
        Value::String(t) => t == kind,
        Value::Array(ts) => ts.iter().any(|t| t == kind),
        _ => false,
    };
    arms.iter()
        .cloned()
        .map(resolve)
        .find(of_kind)
        .unwrap_or_else(|| panic!("{pointer} has no {kind} arm"))
}

/// A string rule of the document: lengths count Unicode code points, and the pattern
/// anchors itself.
struct TextSchema {
    min_chars: Option<u64>,
    max_chars: Option<u64>,
    pattern: Option<Regex>,
}

impl TextSchema {
    fn of(schema: &Value) -> Self {
        TextSchema {
            min_chars: schema.get("minLength").and_then(Value::as_u64),
            max_chars: schema.get("maxLength").and_then(Value::as_u64),
            pattern: schema
                .get("pattern")
                .and_then(Value::as_str)
                .map(|p| Regex::new(p).expect("a valid pattern")),
        }
    }

    fn accepts(&self, value: &str) -> bool {
        let chars = value.chars().count() as u64;
        self.min_chars.is_none_or(|b| chars >= b)
            && self.max_chars.is_none_or(|b| chars <= b)
            && self.pattern.as_ref().is_none_or(|p| p.is_match(value))
    }
}

fn field(doc: &Value, params: &str, name: &str, kind: &str) -> Value {
    schema(
        doc,
        &format!("/components/schemas/{params}/properties/{name}"),
        kind,
    )
}

/// The rule for text values of parameter `name` of a `body` (`Create`, ...), which
/// must be the same in JSON and in forms.
fn text_field(doc: &Value, body: &str, name: &str) -> TextSchema {
    let rule = |params: String| {
        let mut s = field(doc, &params, name, "string");
        s.as_object_mut().map(|o| o.remove("description"));
        s
    };
    let (json, form) = (rule(format!("{body}Params")), rule(format!("{body}Form")));
    assert_eq!(json, form, "{body} {name}: JSON and forms differ");
    TextSchema::of(&json)
}

/// The service's verdict on `value` sent as the JSON string of parameter `name`.
fn wire<T>(name: &str, value: &str, read: impl Fn(&Params) -> T) -> T {
    let body = serde_json::to_vec(&json!({ name: value })).unwrap();
    let params =
        futures::executor::block_on(Params::decode(Some(b"application/json"), body.into()))
            .unwrap();
    read(&params)
}

/// A parameter's name, its rule in the document, and whether the service accepts a value.
type Rule = (&'static str, TextSchema, fn(&str) -> bool);

fn text_rules(doc: &Value) -> Vec<Rule> {
    vec![
        ("_id", text_field(doc, "Create", "_id"), |v| {
            validate::service_id(v).is_ok()
        }),
        (
            "_resource_group",
            text_field(doc, "Create", "_resource_group"),
            |v| validate::resource_group(v).is_ok(),
        ),
        (
            "_phone_number (create)",
            text_field(doc, "Create", "_phone_number"),
            |v| validate::phone_number("_phone_number", v).is_ok(),
        ),
        (
            "_access_number",
            text_field(doc, "Match", "_access_number"),
            |v| validate::phone_number("_access_number", v).is_ok(),
        ),
        (
            "_phone_number (match)",
            text_field(doc, "Match", "_phone_number"),
            |v| validate::caller_number(Some(v)).is_ok(),
        ),
        (
            "_access_code",
            text_field(doc, "Match", "_access_code"),
            |v| validate::access_code(v).is_ok(),
        ),
        (
            "_provide_code",
            text_field(doc, "Create", "_provide_code"),
            |v| wire("_provide_code", v, |p| p.flag("_provide_code").is_ok()),
        ),
        (
            "_booking_expiration_timeout",
            text_field(doc, "Create", "_booking_expiration_timeout"),
            |v| {
                let seconds = wire("t", v, |p| p.seconds("t", validate::TIMEOUT_RANGE));
                seconds.is_ok_and(|s| validate::booking_timeout(s).is_ok())
            },
        ),
        ("_ttl", text_field(doc, "Register", "_ttl"), |v| {
            wire("_ttl", v, |p| p.seconds("_ttl", 1..=u32::MAX)).is_ok_and(|s| s != Some(0))
        }),
    ]
}

/// The rules, their patterns compiled once.
static RULES: std::sync::LazyLock<Vec<Rule>> = std::sync::LazyLock::new(|| text_rules(&document()));

/// Characters where rules differ: controls, every kind of white space (and U+FEFF,
/// which some regex dialects call white space and Rust does not), formatting, digits,
/// letters of the hidden-caller words, multi-byte and four-byte characters.
fn tricky_text() -> impl Strategy<Value = String> {
    let alphabet: Vec<char> = "0123456789+()-. aAnNoOyYmMuUsSpPrRiIvVtTeEdDwWhHlLkKfF_\\/é"
        .chars()
        .chain([
            '\0',
            '\t',
            '\n',
            '\u{b}',
            '\u{c}',
            '\r',
            '\u{1c}',
            '\u{1f}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{a0}',
            '\u{1680}',
            '\u{2000}',
            '\u{200a}',
            '\u{200b}',
            '\u{2028}',
            '\u{2029}',
            '\u{202f}',
            '\u{205f}',
            '\u{3000}',
            '\u{feff}',
            '\u{1F4DE}',
        ])
        .collect();
    prop_oneof![
        prop::collection::vec(prop::sample::select(alphabet.clone()), 0..40),
        prop::collection::vec(prop::sample::select(alphabet), 120..300),
    ]
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn every_text_rule_in_the_document_is_the_services_rule(value in tricky_text()) {
        for (name, schema, service) in RULES.iter() {
            prop_assert_eq!(
                schema.accepts(&value),
                service(&value),
                "{} {:?}: document and service disagree",
                name,
                value
            );
        }
    }
}

#[test]
fn the_rules_agree_on_the_values_at_their_edges() {
    let mut values: Vec<String> = [
        "",
        "0",
        "4",
        "5",
        "05",
        "0000000005",
        "00000000005",
        "1800",
        "1801",
        "01800",
        "99",
        "999",
        "1000",
        "1799",
        "4294967295",
        "4294967296",
        "0000000001",
        "9999999999",
        "true",
        "FALSE",
        "tRuE",
        "yes",
        "1",
        "anonymous",
        " Withheld ",
        "+18005550100",
        "+1 (800) 555-0100",
        "12",
        "123",
        "123456789012345",
        "1234567890123456",
        "++123",
        "123+",
        "a",
        " a",
        "a ",
        "a b",
        "\u{feff}a",
        "a\u{3000}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    values.extend((0..=2000).map(|n| n.to_string()));
    values.extend([
        "a".repeat(128),
        "a".repeat(129),
        "a".repeat(256),
        "a".repeat(257),
    ]);
    values.push("\u{1F4DE}".repeat(256));
    for value in &values {
        for (name, schema, service) in RULES.iter() {
            assert_eq!(
                schema.accepts(value),
                service(value),
                "{name} {value:?}: document and service disagree"
            );
        }
    }
}

#[test]
fn json_numbers_are_accepted_as_the_document_bounds_them() {
    let doc = document();
    for (params, name, range) in [
        (
            "CreateParams",
            "_booking_expiration_timeout",
            validate::TIMEOUT_RANGE,
        ),
        ("RegisterParams", "_ttl", 1..=u32::MAX),
    ] {
        let s = field(&doc, params, name, "integer");
        let (min, max) = (
            s["minimum"].as_u64().unwrap(),
            s["maximum"].as_u64().unwrap(),
        );
        assert_eq!(
            (min, max),
            (u64::from(*range.start()), u64::from(*range.end()))
        );
        for number in [
            "0", "4", "5", "30", "30.0", "3e1", "30.5", "-5", "1800", "1801",
        ]
        .into_iter()
        .chain(["4294967295", "4294967296", "1e10"])
        {
            let n: f64 = number.parse().unwrap();
            let documented = n.fract() == 0.0 && n >= min as f64 && n <= max as f64;
            let body = format!(r#"{{"{name}":{number}}}"#);
            let params =
                futures::executor::block_on(Params::decode(Some(b"application/json"), body.into()))
                    .unwrap();
            let accepted = params
                .seconds(name, range.clone())
                .is_ok_and(|s| s.is_some_and(|s| range.contains(&s)));
            assert_eq!(documented, accepted, "{name} = {number}");
        }
    }
}
