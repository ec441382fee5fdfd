//! Checks of single values shared by the validation: numbers, header names, `${ENV}`.

use super::model::HeaderValue;
use super::{invalid, ConfigError};
use crate::json::{self, Path, Reader, Value};

/// An `Option<String>`: `null` is `None`.
pub(super) fn opt_string(
    r: &Reader<'_>,
    v: &Value,
    path: &Path<'_>,
) -> Result<Option<String>, json::Error> {
    if v.is_null() {
        Ok(None)
    } else {
        r.string(v, path).map(Some)
    }
}

pub(super) fn positive(path: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(invalid(path, "0 is not allowed here (must be at least 1)"))
    } else {
        Ok(v)
    }
}

/// Largest timeout Envoy's `dispatch_http_call` takes: it converts the milliseconds to a
/// signed 32-bit duration and refuses anything larger with BadArgument, so a bigger value
/// would make every replay (or probe) fail.
pub const MAX_CALL_TIMEOUT_MS: u64 = (1 << 31) - 1;

/// A `dispatch_http_call` timeout: at least 1 ms, at most [`MAX_CALL_TIMEOUT_MS`].
pub(super) fn call_timeout(path: &str, v: u64) -> Result<u64, ConfigError> {
    let v = positive(path, v)?;
    if v > MAX_CALL_TIMEOUT_MS {
        return Err(invalid(
            path,
            format!("{v} is over {MAX_CALL_TIMEOUT_MS} ms, the most Envoy accepts for a call"),
        ));
    }
    Ok(v)
}

pub(super) fn small(path: &str, v: u64) -> Result<u32, ConfigError> {
    u32::try_from(v).map_err(|_| invalid(path, format!("{v} is too large")))
}

/// A lowercase HTTP header name (RFC 9110 token characters).
pub(super) fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(invalid(
            path,
            format!("{name:?} is not a valid header name"),
        ))
    }
}

/// Replaces every `${NAME}` in `text` from `env`. `$$` is not special; a `${` without `}` is an
/// error so a typo never reaches the wire.
pub(super) fn resolve_env(
    path: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HeaderValue, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut secret = false;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            invalid(
                path,
                format!("{text:?} has \"${{\" without a closing \"}}\""),
            )
        })?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(invalid(
                path,
                format!("${{{name}}} is not a valid environment variable reference"),
            ));
        }
        let value = env(name).ok_or_else(|| {
            invalid(
                path,
                format!("environment variable {name} is not set (list it in vm_config.environment_variables)"),
            )
        })?;
        out.push_str(&value);
        secret = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if out.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(invalid(path, "the value contains CR, LF or NUL"));
    }
    Ok(HeaderValue { value: out, secret })
}

pub(super) fn headers(
    path: &str,
    raw: &RawHeaders,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, HeaderValue)>, ConfigError> {
    raw.0
        .iter()
        .map(|(k, v)| {
            let here = format!("{path}.{k}");
            let name = header_name(&here, k)?;
            if name.starts_with(':') || HOP_BY_HOP.contains(&name.as_str()) || name == "host" {
                return Err(invalid(here, format!("{k:?} cannot be set by the filter")));
            }
            Ok((name, resolve_env(&here, v, env)?))
        })
        .collect()
}

/// A JSON object of header name → value, read exactly as a `BTreeMap<String, String>` reads it
/// (same errors, sorted by name, a repeated name keeps its last value), without a `BTreeMap`
/// instantiation of its own in the .wasm (issue 16: module size).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RawHeaders(pub(super) Vec<(String, String)>);

impl RawHeaders {
    /// Adds or replaces `name`, keeping the names sorted.
    pub(super) fn insert(&mut self, name: String, value: String) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    slot.1 = value;
                }
            }
            Err(i) => self.0.insert(i, (name, value)),
        }
    }
}

impl RawHeaders {
    /// Reads a JSON object of strings as serde read a `BTreeMap<String, String>`: "expected a
    /// map" for anything else, each value's errors under `path.<name>`.
    pub(super) fn read(
        r: &Reader<'_>,
        v: &Value,
        path: &Path<'_>,
    ) -> Result<RawHeaders, json::Error> {
        let mut out = RawHeaders::default();
        for m in r.map(v, path)? {
            let value = r.string(&m.value, &path.key(&m.key))?;
            out.insert(m.key.clone(), value);
        }
        Ok(out)
    }
}

/// Connection-level headers that never travel past one hop (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[cfg(test)]
mod tests {
    use super::RawHeaders;
    use std::collections::BTreeMap;

    fn both(
        json: &str,
    ) -> (
        Result<RawHeaders, String>,
        Result<BTreeMap<String, String>, String>,
    ) {
        let ours = crate::json::parse(json.as_bytes())
            .and_then(|v| {
                RawHeaders::read(
                    &crate::json::Reader::new(json.as_bytes()),
                    &v,
                    &crate::json::Path::ROOT,
                )
            })
            .map_err(|e| format!("{}: {e}", e.path));
        let theirs =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(json))
                .map_err(|e| {
                    let path = e.path().to_string();
                    format!("{path}: {}", e.into_inner())
                });
        (ours, theirs)
    }

    #[test]
    fn headers_read_exactly_as_a_btreemap_would() {
        for json in [
            r#"{}"#,
            r#"{"b": "2", "a": "1", "c": "3"}"#,
            r#"{"x": "first", "a": "1", "x": "last"}"#,
            r#"{"a": 1}"#,
            r#"{"a": "1", "b": null}"#,
            r#"["a", "b"]"#,
            r#""a""#,
            r#"{"a": "1""#,
        ] {
            let (ours, theirs) = both(json);
            let theirs = theirs.map(|m| m.into_iter().collect::<Vec<_>>());
            assert_eq!(ours.map(|h| h.0), theirs, "{json}");
        }
    }
}
