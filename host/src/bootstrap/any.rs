//! `google.protobuf.Any` payloads (`typed_config` and friends): the `@type` URL picks the
//! message, the other keys are that message's fields.
//!
//! When `@type` is the first key (as in every Envoy example) the rest of the mapping is
//! decoded in place, so errors keep their YAML line and field path. Otherwise the mapping is
//! buffered first; errors then still name the field path inside the payload.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Type URL of the HTTP connection manager.
pub const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// Type URL of the Wasm HTTP filter.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// Type URL of the router.
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
/// Type URL of the Wasm service.
pub const WASM_SERVICE_TYPE: &str = "type.googleapis.com/envoy.extensions.wasm.v3.WasmService";
/// Type URL of the upstream TLS context.
pub const TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// Type URL of the HTTP protocol options.
pub const HTTP_OPTIONS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Type URL of `google.protobuf.StringValue`.
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// A set of message types an `Any` at one place of the config may hold.
pub trait AnyKind: Sized {
    /// What the place is, for error messages.
    const WHAT: &'static str;
    /// The accepted type URLs.
    const TYPES: &'static [&'static str];
    /// Decodes the payload of `type_url` from the remaining fields.
    fn decode<'de, D: Deserializer<'de>>(type_url: &str, rest: D) -> Result<Self, D::Error>;
}

/// Decodes the payload `T` from the remaining fields.
pub(crate) fn payload<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    rest: D,
) -> Result<T, D::Error> {
    T::deserialize(rest)
}

struct AnyVisitor<T>(PhantomData<T>);

impl<'de, T: AnyKind> Visitor<'de> for AnyVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a typed config mapping with \"@type\" ({})", T::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::custom(format!(
                "missing \"@type\" ({})",
                T::WHAT
            )));
        };
        if first == "@type" {
            let url: String = map.next_value()?;
            check_type::<T, A::Error>(&url)?;
            return T::decode(&url, de::value::MapAccessDeserializer::new(map));
        }
        // `@type` is not first: buffer the mapping, then decode from the buffer.
        let mut buffered = serde_yaml_ng::Mapping::new();
        let first_value: serde_yaml_ng::Value = map.next_value()?;
        buffered.insert(serde_yaml_ng::Value::String(first), first_value);
        let mut url = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "@type" {
                url = Some(map.next_value::<String>()?);
            } else {
                let value: serde_yaml_ng::Value = map.next_value()?;
                buffered.insert(serde_yaml_ng::Value::String(key), value);
            }
        }
        let Some(url) = url else {
            return Err(de::Error::custom(format!(
                "missing \"@type\" ({})",
                T::WHAT
            )));
        };
        check_type::<T, A::Error>(&url)?;
        let value = serde_yaml_ng::Value::Mapping(buffered);
        T::decode(&url, BufferedDeserializer(value)).map_err(|e| de::Error::custom(e.0))
    }
}

fn check_type<T: AnyKind, E: de::Error>(url: &str) -> Result<(), E> {
    if T::TYPES.contains(&url) {
        Ok(())
    } else {
        Err(E::custom(format!(
            "unsupported \"@type\" {url:?} for {}; supported: {}",
            T::WHAT,
            T::TYPES.join(", ")
        )))
    }
}

/// Deserializes a buffered payload, reporting the field path inside it on error.
struct BufferedDeserializer(serde_yaml_ng::Value);

/// An error from a buffered payload, already formatted with its inner path.
#[derive(Debug)]
struct BufferedError(String);

impl fmt::Display for BufferedError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for BufferedError {}
impl de::Error for BufferedError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        BufferedError(msg.to_string())
    }
}

impl<'de> Deserializer<'de> for BufferedDeserializer {
    type Error = BufferedError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.0
            .deserialize_any(visitor)
            .map_err(|e| BufferedError(e.to_string()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0
            .deserialize_struct(name, fields, visitor)
            .map_err(|e| BufferedError(e.to_string()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Deserializes an [`AnyKind`] from a mapping with `@type` (what [`any_deserialize`] expands
/// to).
pub(crate) fn deserialize<'de, T: AnyKind, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(AnyVisitor::<T>(PhantomData))
}

/// Implements `Deserialize` for an [`AnyKind`].
macro_rules! any_deserialize {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::bootstrap::any::deserialize(d)
            }
        }
    };
}
pub(crate) use any_deserialize;
