//! Shapes several parts of the bootstrap use: addresses, data sources, string values.

use serde::{Deserialize, Deserializer};

use crate::bootstrap::any::STRING_VALUE_TYPE;
use crate::bootstrap::any::{any_deserialize, payload, AnyKind};

/// `envoy.config.core.v3.Address` (only `socket_address`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// The TCP address.
    pub socket_address: SocketAddress,
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketAddress {
    /// IP address, or a host name in DNS clusters.
    pub address: String,
    /// TCP port.
    #[serde(default)]
    pub port_value: u32,
    /// Only `TCP` is supported.
    pub protocol: Option<SocketProtocol>,
}

/// `SocketAddress.Protocol`.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
pub enum SocketProtocol {
    /// The only protocol we serve.
    #[serde(rename = "TCP")]
    Tcp,
}

/// `envoy.config.core.v3.AsyncDataSource` (only `local`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncDataSource {
    /// A local data source.
    pub local: DataSource,
}

/// `envoy.config.core.v3.DataSource`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// A file on disk.
    pub filename: Option<String>,
    /// Base64 bytes (proto3 JSON mapping).
    pub inline_bytes: Option<String>,
    /// Text.
    pub inline_string: Option<String>,
}

/// `google.protobuf.StringValue` payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringValuePayload {
    /// The string.
    #[serde(default)]
    pub value: String,
}

/// A `google.protobuf.StringValue` wrapped in an `Any` (plugin and VM configuration).
#[derive(Debug)]
pub struct StringValue(pub String);

impl AnyKind for StringValue {
    const WHAT: &'static str = "a configuration";
    const TYPES: &'static [&'static str] = &[STRING_VALUE_TYPE];
    fn decode<'de, D: Deserializer<'de>>(_url: &str, rest: D) -> Result<Self, D::Error> {
        let p: StringValuePayload = payload(rest)?;
        Ok(Self(p.value))
    }
}
any_deserialize!(StringValue);
