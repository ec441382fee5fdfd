//! YAML text → `DynamicMessage` of Envoy's `Bootstrap`, with unknown fields denied.

use prost_reflect::{DeserializeOptions, DynamicMessage};
use serde::Deserialize;

use crate::{pool, SchemaError};

/// Decodes `text` as an Envoy bootstrap.
///
/// Two passes over the text: a generic parse first, because deserialising straight into the
/// message silently keeps the last of two duplicate keys, and Envoy's YAML loader refuses
/// them; then the real decode, straight from the YAML deserializer so that errors carry the
/// field path and the line/column (going through a JSON value first would lose both).
pub fn bootstrap(text: &str) -> Result<DynamicMessage, SchemaError> {
    reject_duplicate_keys(text)?;
    let desc = pool::message(pool::BOOTSTRAP)?;
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    DynamicMessage::deserialize_with_options(desc, deserializer, &options)
        .map_err(|e| SchemaError::from_yaml(&e, true))
}

/// Fails on a duplicate mapping key anywhere in the document (and on YAML syntax errors).
fn reject_duplicate_keys(text: &str) -> Result<(), SchemaError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_yaml_ng::Value::deserialize(deserializer)
        .map(drop)
        .map_err(|e| SchemaError::from_yaml(&e, false))
}
