//! Depth-first traversal of a decoded config, looking inside `Any` payloads.
//!
//! After decoding, a `typed_config` is a `google.protobuf.Any` holding encoded bytes; the walk
//! decodes each one with the pool (it was checked against the same pool a moment before) so
//! that the rules and the plugin search see the whole config as one tree.

use std::fmt;

use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value};

use crate::{pool, SchemaError};

/// Full name of the `Any` well-known type.
const ANY: &str = "google.protobuf.Any";

/// One step of a field path.
#[derive(Debug, Clone)]
enum Step {
    Field(String),
    Index(usize),
    Key(String),
}

/// A field path in the same notation as the decoder's errors:
/// `static_resources.listeners[0].filter_chains[0].filters[0].typed_config`.
#[derive(Debug, Clone, Default)]
pub struct FieldPath(Vec<Step>);

impl FieldPath {
    fn push(&mut self, step: Step) {
        self.0.push(step);
    }

    fn pop(&mut self) {
        self.0.pop();
    }

    /// The path with one more list index at the end.
    pub fn with_index(&self, index: usize) -> FieldPath {
        let mut path = self.clone();
        path.push(Step::Index(index));
        path
    }

    /// The path with one more field name at the end.
    pub fn with_field(&self, name: &str) -> FieldPath {
        let mut path = self.clone();
        path.push(Step::Field(name.to_owned()));
        path
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Field(name) if i == 0 => write!(f, "{name}")?,
                Step::Field(name) => write!(f, ".{name}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
                Step::Key(key) => write!(f, "[{key:?}]")?,
            }
        }
        Ok(())
    }
}

/// What a traversal does at each message.
pub trait Visitor {
    /// Called once for every message in the tree (`Any` payloads included, `Any` wrappers not).
    /// `parent` is the full name of the message holding it, if any.
    fn message(
        &mut self,
        msg: &DynamicMessage,
        parent: Option<&str>,
        path: &FieldPath,
    ) -> Result<(), SchemaError>;
}

/// Visits `root` and every message below it.
pub fn walk(root: &DynamicMessage, visitor: &mut dyn Visitor) -> Result<(), SchemaError> {
    walk_message(root, None, &mut FieldPath::default(), visitor)
}

fn walk_message(
    msg: &DynamicMessage,
    parent: Option<&str>,
    path: &mut FieldPath,
    visitor: &mut dyn Visitor,
) -> Result<(), SchemaError> {
    if msg.descriptor().full_name() == ANY {
        let payload = unpack_any(msg)?;
        return walk_message(&payload, parent, path, visitor);
    }
    visitor.message(msg, parent, path)?;
    let name = msg.descriptor().full_name().to_owned();
    for (field, value) in msg.fields() {
        path.push(Step::Field(field.name().to_owned()));
        walk_value(value, &name, path, visitor)?;
        path.pop();
    }
    Ok(())
}

fn walk_value(
    value: &Value,
    parent: &str,
    path: &mut FieldPath,
    visitor: &mut dyn Visitor,
) -> Result<(), SchemaError> {
    match value {
        Value::Message(child) => walk_message(child, Some(parent), path, visitor),
        Value::List(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(Step::Index(index));
                walk_value(item, parent, path, visitor)?;
                path.pop();
            }
            Ok(())
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                path.push(Step::Key(map_key_text(key)));
                walk_value(item, parent, path, visitor)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn map_key_text(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

/// Decodes the payload of a `google.protobuf.Any` message with the pool.
pub fn unpack_any(any: &DynamicMessage) -> Result<DynamicMessage, SchemaError> {
    let type_url = any
        .get_field_by_name("type_url")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let bytes = any
        .get_field_by_name("value")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let name = type_url
        .rsplit_once('/')
        .map_or(type_url.as_str(), |(_, n)| n);
    let desc = pool::message(name)?;
    DynamicMessage::decode(desc, bytes)
        .map_err(|e| SchemaError::Internal(format!("re-decoding {type_url}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_display_matches_the_decoder_notation() {
        let mut path = FieldPath::default();
        path.push(Step::Field("static_resources".into()));
        path.push(Step::Field("clusters".into()));
        path.push(Step::Index(2));
        path.push(Step::Field("metadata".into()));
        path.push(Step::Key("a.b".into()));
        assert_eq!(
            path.to_string(),
            r#"static_resources.clusters[2].metadata["a.b"]"#
        );
        assert_eq!(path.with_field("x").to_string(), format!("{path}.x"));
    }
}
