//! The descriptor pool compiled by `build.rs` from Envoy's `.proto` files.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::SchemaError;

/// Encoded `FileDescriptorSet` of the bootstrap and every type our configs use as `@type`.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

/// Full name of the message a bootstrap file decodes as.
pub const BOOTSTRAP: &str = "envoy.config.bootstrap.v3.Bootstrap";

/// The pool, decoded once per process (it takes milliseconds, a validation takes less).
pub fn pool() -> Result<&'static DescriptorPool, SchemaError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| SchemaError::Internal(e.clone()))
}

/// Looks up a message that must be in the pool.
pub fn message(name: &str) -> Result<MessageDescriptor, SchemaError> {
    pool()?
        .get_message_by_name(name)
        .ok_or_else(|| SchemaError::Internal(format!("message {name} is not in the pool")))
}
