//! The basic `validate.rules` (protoc-gen-validate) constraints Envoy checks on load.
//!
//! Decoding alone accepts `name: ""` or `connect_timeout: 0s`; Envoy rejects them because its
//! `.proto` files carry PGV annotations. This module reads those annotations from the
//! descriptor pool and checks the common ones: string length, required messages and oneofs,
//! repeated/map sizes, numeric and duration bounds (wrappers included), defined enum values,
//! required `Any`. Rarer rules (patterns, `in` lists, well-known string formats) are not
//! checked; this is a strong first filter, not a replacement for `envoy --mode validate`.

use std::collections::HashMap;
use std::fmt::Display;

use prost_reflect::{
    DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};

use crate::walk::{FieldPath, Visitor};
use crate::{pool, SchemaError};

/// A [`Visitor`] that fails on the first broken rule.
pub struct RuleChecker {
    field_rules: ExtensionDescriptor,
    oneof_required: ExtensionDescriptor,
    /// Decoded `validate.rules` per field full name (`None`: the field has no rules).
    cache: HashMap<String, Option<DynamicMessage>>,
}

impl RuleChecker {
    /// Looks up the PGV extensions in the pool.
    pub fn new() -> Result<Self, SchemaError> {
        let pool = pool::pool()?;
        let ext = |name: &str| {
            pool.get_extension_by_name(name).ok_or_else(|| {
                SchemaError::Internal(format!("extension {name} is not in the pool"))
            })
        };
        Ok(RuleChecker {
            field_rules: ext("validate.rules")?,
            oneof_required: ext("validate.required")?,
            cache: HashMap::new(),
        })
    }

    fn rules_for(&mut self, field: &FieldDescriptor) -> Option<DynamicMessage> {
        let ext = &self.field_rules;
        self.cache
            .entry(field.full_name().to_owned())
            .or_insert_with(|| {
                let options = field.options();
                options
                    .has_extension(ext)
                    .then(|| options.get_extension(ext).as_message().cloned())
                    .flatten()
            })
            .clone()
    }

    fn check_oneofs(&self, msg: &DynamicMessage, path: &FieldPath) -> Result<(), SchemaError> {
        for oneof in msg.descriptor().oneofs().filter(|o| !o.is_synthetic()) {
            let options = oneof.options();
            let required = options.has_extension(&self.oneof_required)
                && options.get_extension(&self.oneof_required).as_bool() == Some(true);
            if required && !oneof.fields().any(|f| msg.has_field(&f)) {
                let names: Vec<_> = oneof.fields().map(|f| f.name().to_owned()).collect();
                return Err(violation(
                    path,
                    format!(
                        "one of {} is required (oneof '{}')",
                        names.join(", "),
                        oneof.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Visitor for RuleChecker {
    fn message(
        &mut self,
        msg: &DynamicMessage,
        _parent: Option<&str>,
        path: &FieldPath,
    ) -> Result<(), SchemaError> {
        self.check_oneofs(msg, path)?;
        for field in msg.descriptor().fields() {
            let Some(rules) = self.rules_for(&field) else {
                continue;
            };
            let present = msg.has_field(&field);
            // An unset member of a oneof is not checked (PGV checks the member that is set).
            if !present && field.containing_oneof().is_some() {
                continue;
            }
            let field_path = path.with_field(field.name());
            if let Some(message_rules) = sub(&rules, "message") {
                if flag(&message_rules, "required") && !present {
                    return Err(violation(&field_path, "is required".to_owned()));
                }
            }
            let value = msg.get_field(&field);
            check_field(&rules, &field, &value, present, &field_path)?;
        }
        Ok(())
    }
}

fn violation(path: &FieldPath, message: String) -> SchemaError {
    SchemaError::Rule {
        path: path.to_string(),
        message,
    }
}

/// The sub-message `name` of a rules message, when set.
fn sub(rules: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    rules
        .has_field_by_name(name)
        .then(|| rules.get_field_by_name(name)?.as_message().cloned())
        .flatten()
}

fn flag(rules: &DynamicMessage, name: &str) -> bool {
    rules.get_field_by_name(name).and_then(|v| v.as_bool()) == Some(true)
}

/// An integer bound of a numeric rules message, when set.
fn int_bound(rules: &DynamicMessage, name: &str) -> Option<i128> {
    if !rules.has_field_by_name(name) {
        return None;
    }
    as_int(&*rules.get_field_by_name(name)?)
}

fn as_int(value: &Value) -> Option<i128> {
    match value {
        Value::I32(n) => Some(i128::from(*n)),
        Value::I64(n) => Some(i128::from(*n)),
        Value::U32(n) => Some(i128::from(*n)),
        Value::U64(n) => Some(i128::from(*n)),
        Value::EnumNumber(n) => Some(i128::from(*n)),
        _ => None,
    }
}

fn check_field(
    rules: &DynamicMessage,
    field: &FieldDescriptor,
    value: &Value,
    present: bool,
    path: &FieldPath,
) -> Result<(), SchemaError> {
    if let Some(repeated) = sub(rules, "repeated") {
        let items = value.as_list().unwrap_or_default();
        check_count(
            &repeated,
            "min_items",
            "max_items",
            items.len(),
            "items",
            path,
        )?;
        if let Some(item_rules) = sub(&repeated, "items") {
            for (index, item) in items.iter().enumerate() {
                let item_path = path.with_index(index);
                check_single(&item_rules, &field.kind(), item, true, &item_path)?;
            }
        }
        return Ok(());
    }
    if let Some(map) = sub(rules, "map") {
        let len = value.as_map().map_or(0, |m| m.len());
        return check_count(&map, "min_pairs", "max_pairs", len, "entries", path);
    }
    if field.is_list() || field.is_map() {
        return Ok(());
    }
    check_single(rules, &field.kind(), value, present, path)
}

fn check_count(
    rules: &DynamicMessage,
    min: &str,
    max: &str,
    len: usize,
    what: &str,
    path: &FieldPath,
) -> Result<(), SchemaError> {
    let len = len as i128;
    if let Some(min) = int_bound(rules, min).filter(|m| len < *m) {
        return Err(violation(
            path,
            format!("needs at least {min} {what}, has {len}"),
        ));
    }
    if let Some(max) = int_bound(rules, max).filter(|m| len > *m) {
        return Err(violation(
            path,
            format!("allows at most {max} {what}, has {len}"),
        ));
    }
    Ok(())
}

/// Checks one value (a singular field, or one item of a list).
fn check_single(
    rules: &DynamicMessage,
    kind: &Kind,
    value: &Value,
    present: bool,
    path: &FieldPath,
) -> Result<(), SchemaError> {
    for (rule_field, rule_value) in rules.fields() {
        let Some(type_rules) = rule_value.as_message() else {
            continue;
        };
        match rule_field.name() {
            "string" if present || !is_message(kind) => {
                let text = unwrap_wrapper(value);
                if let Some(text) = text.as_str() {
                    check_string(type_rules, text, path)?;
                }
            }
            "double" | "float" if present || !is_message(kind) => {
                if let Some(number) = as_float(&unwrap_wrapper(value)) {
                    check_range(
                        type_rules,
                        number,
                        |r, n| r.get_field_by_name(n).and_then(|v| as_float(&v)),
                        path,
                    )?;
                }
            }
            "int32" | "int64" | "uint32" | "uint64" | "sint32" | "sint64" | "fixed32"
            | "fixed64" | "sfixed32" | "sfixed64"
                if present || !is_message(kind) =>
            {
                if let Some(number) = as_int(&unwrap_wrapper(value)) {
                    check_range(type_rules, number, int_bound, path)?;
                }
            }
            "duration" => {
                if flag(type_rules, "required") && !present {
                    return Err(violation(path, "is required".to_owned()));
                }
                if present {
                    if let Some(nanos) = value.as_message().map(duration_nanos) {
                        let bound =
                            |r: &DynamicMessage, n: &str| sub(r, n).map(|d| duration_nanos(&d));
                        check_range(
                            type_rules,
                            DurationNanos(nanos),
                            |r, n| bound(r, n).map(DurationNanos),
                            path,
                        )?;
                    }
                }
            }
            "enum" if flag(type_rules, "defined_only") => {
                if let (Kind::Enum(desc), Some(number)) = (kind, value.as_enum_number()) {
                    if desc.get_value(number).is_none() {
                        return Err(violation(
                            path,
                            format!("{number} is not a defined value of {}", desc.full_name()),
                        ));
                    }
                }
            }
            "any" if flag(type_rules, "required") && !present => {
                return Err(violation(path, "is required".to_owned()));
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_message(kind: &Kind) -> bool {
    matches!(kind, Kind::Message(_))
}

/// The `value` inside a `google.protobuf.*Value` wrapper; other values as they are.
fn unwrap_wrapper(value: &Value) -> Value {
    match value.as_message() {
        Some(msg) if is_wrapper(&msg.descriptor()) => msg
            .get_field_by_name("value")
            .map(|v| v.into_owned())
            .unwrap_or_else(|| value.clone()),
        _ => value.clone(),
    }
}

fn is_wrapper(desc: &MessageDescriptor) -> bool {
    desc.package_name() == "google.protobuf"
        && desc.name().ends_with("Value")
        && desc.fields().len() == 1
}

fn as_float(value: &Value) -> Option<f64> {
    match value {
        Value::F64(n) => Some(*n),
        Value::F32(n) => Some(f64::from(*n)),
        other => as_int(other).map(|n| n as f64),
    }
}

fn check_string(rules: &DynamicMessage, text: &str, path: &FieldPath) -> Result<(), SchemaError> {
    let chars = text.chars().count() as i128;
    let bytes = text.len() as i128;
    let checks = [
        ("min_len", chars, true, "characters"),
        ("max_len", chars, false, "characters"),
        ("min_bytes", bytes, true, "bytes"),
        ("max_bytes", bytes, false, "bytes"),
    ];
    for (name, actual, is_min, unit) in checks {
        if let Some(limit) = int_bound(rules, name) {
            if (is_min && actual < limit) || (!is_min && actual > limit) {
                let side = if is_min { "at least" } else { "at most" };
                let unit = if limit == 1 {
                    unit.trim_end_matches('s')
                } else {
                    unit
                };
                return Err(violation(
                    path,
                    format!("must be {side} {limit} {unit} long, got {text:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks `gt`/`gte`/`lt`/`lte` with PGV's meaning: when the upper bound is below the lower
/// one, the rule is an exclusive range (the value must lie outside it).
fn check_range<T, F>(
    rules: &DynamicMessage,
    value: T,
    bound: F,
    path: &FieldPath,
) -> Result<(), SchemaError>
where
    T: PartialOrd + Copy + Display,
    F: Fn(&DynamicMessage, &str) -> Option<T>,
{
    let (gt, gte, lt, lte) = (
        bound(rules, "gt"),
        bound(rules, "gte"),
        bound(rules, "lt"),
        bound(rules, "lte"),
    );
    let lower = gt
        .map(|b| (b, value > b, ">"))
        .or(gte.map(|b| (b, value >= b, ">=")));
    let upper = lt
        .map(|b| (b, value < b, "<"))
        .or(lte.map(|b| (b, value <= b, "<=")));
    let ok = match (lower, upper) {
        (Some((lo, lo_ok, _)), Some((hi, hi_ok, _))) if hi < lo => lo_ok || hi_ok,
        _ => lower.is_none_or(|l| l.1) && upper.is_none_or(|u| u.1),
    };
    if ok {
        return Ok(());
    }
    let describe = |b: Option<(T, bool, &str)>| b.map(|(v, _, op)| format!("{op} {v}"));
    let limits: Vec<String> = [describe(lower), describe(upper)]
        .into_iter()
        .flatten()
        .collect();
    Err(violation(
        path,
        format!("must be {}, got {value}", limits.join(" and ")),
    ))
}

/// A `google.protobuf.Duration` as nanoseconds, shown as seconds like Envoy's YAML writes it.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
struct DurationNanos(i128);

impl Display for DurationNanos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let nanos = (self.0 % 1_000_000_000).abs();
        if nanos == 0 {
            write!(f, "{secs}s")
        } else {
            write!(f, "{secs}.{:09}s", nanos)
        }
    }
}

fn duration_nanos(duration: &DynamicMessage) -> i128 {
    let get = |name: &str| {
        duration
            .get_field_by_name(name)
            .and_then(|v| as_int(&v))
            .unwrap_or(0)
    };
    get("seconds") * 1_000_000_000 + get("nanos")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `validate.UInt32Rules` with the given bounds, built through the real descriptor pool.
    fn uint32_rules(bounds: &[(&str, u32)]) -> DynamicMessage {
        let desc = pool::message("validate.UInt32Rules").unwrap_or_else(|e| panic!("{e}"));
        let mut rules = DynamicMessage::new(desc);
        for (name, value) in bounds {
            rules.set_field_by_name(name, Value::U32(*value));
        }
        rules
    }

    fn range_ok(bounds: &[(&str, u32)], value: i128) -> bool {
        check_range(
            &uint32_rules(bounds),
            value,
            int_bound,
            &FieldPath::default(),
        )
        .is_ok()
    }

    #[test]
    fn inclusive_and_exclusive_bounds() {
        assert!(range_ok(&[("gte", 1)], 1));
        assert!(!range_ok(&[("gte", 1)], 0));
        assert!(!range_ok(&[("gt", 1)], 1));
        assert!(range_ok(&[("gt", 1), ("lte", 5)], 5));
        assert!(!range_ok(&[("gt", 1), ("lte", 5)], 6));
    }

    #[test]
    fn upper_below_lower_means_outside_the_range() {
        // PGV: gt 10, lt 5 => value < 5 or value > 10.
        assert!(range_ok(&[("gt", 10), ("lt", 5)], 3));
        assert!(range_ok(&[("gt", 10), ("lt", 5)], 11));
        assert!(!range_ok(&[("gt", 10), ("lt", 5)], 7));
    }

    #[test]
    fn durations_print_like_envoy_yaml() {
        assert_eq!(DurationNanos(5_000_000_000).to_string(), "5s");
        assert_eq!(DurationNanos(250_000_000).to_string(), "0.250000000s");
    }
}
