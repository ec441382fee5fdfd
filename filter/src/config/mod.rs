//! The plugin configuration: the JSON Envoy hands to `on_configure`, parsed, `${ENV}`-resolved
//! and validated into a typed [`Config`] in one step.
//!
//! Everything after this module works with types that cannot be wrong (an [`EndpointIdx`]
//! always points at an endpoint, a [`HttpStatusSet`] is already compiled), so a bad config is
//! rejected here, once, with an error naming the field path and the bad value, and
//! `on_configure` returns false — Envoy then refuses the plugin instead of running it half
//! configured.

mod fields;
mod fleet;
mod model;
mod raw;

pub use fields::{HOP_BY_HOP, MAX_CALL_TIMEOUT_MS};
pub use fleet::{generated_member, valid_member};
pub use model::{
    AllQueuedPolicy, Cidr, Endpoint, EndpointId, EndpointIdx, FailoverPolicy, FailurePolicy,
    FleetConfig, HeaderValue, HttpStatusSet, ProbeRequest, StatusPageConfig, VerifierConfig,
};

use raw::RawConfig;

/// A config problem, always naming where it is (`endpoints[1].weight`) and what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is not the JSON shape we expect (syntax, unknown field, wrong type).
    #[error("plugin config: {path}: {message}")]
    Shape {
        /// Field path, `.` when the problem is at the top level.
        path: String,
        /// What serde_json said (or would have), including line and column.
        message: String,
    },
    /// A field parsed but its value is not acceptable.
    #[error("plugin config: {path}: {message}")]
    Invalid {
        /// Field path such as `failover.max_attempts`.
        path: String,
        /// What is wrong, quoting the bad value (never a secret).
        message: String,
    },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// The whole validated plugin config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// All endpoints, in config order.
    pub endpoints: Vec<Endpoint>,
    /// Groups in priority order, each with its endpoints.
    pub groups: Vec<Vec<EndpointIdx>>,
    /// Header the route's `cluster_header` reads (lowercase).
    pub route_header: String,
    /// What counts as a failure.
    pub failure: FailurePolicy,
    /// In-request failover.
    pub failover: FailoverPolicy,
    /// Background re-checks.
    pub verifier: VerifierConfig,
    /// Policy when every endpoint is parked.
    pub when_all_queued: AllQueuedPolicy,
    /// Status endpoint.
    pub status_page: StatusPageConfig,
    /// Fleet mode (one failure queue for many proxies, in etcd); `None`: off, this process
    /// keeps its own queue as without it.
    pub fleet: Option<FleetConfig>,
}

impl Config {
    /// Checks the parts of this config that must agree with the Envoy config around it (the
    /// Wasm filter's `allow_on_headers_stop_iteration`, its listener's
    /// `per_connection_buffer_limit_bytes`), which no parser of either side sees alone.
    /// `buffer_limit_bytes` is `None` where the plugin is not an HTTP filter (a service never
    /// sees a request, so there is nothing to agree on).
    ///
    /// # Errors
    /// The flag without `failover.hold_headers` (a forgotten option). `failover.hold_headers`
    /// without the flag: Envoy would turn the Pause at headers into
    /// StopAllIterationAndWatermark and stop the body too, so every request with a body would
    /// stall. With the flag, a `failover.max_request_bytes` over the listener's buffer limit: a
    /// held body past the limit gets Envoy's 413 instead of streaming on.
    pub fn check_envoy_agreement(
        &self,
        allow_on_headers_stop_iteration: bool,
        buffer_limit_bytes: Option<u64>,
    ) -> Result<(), ConfigError> {
        // A service (the singleton verifier) never sees a request: nothing to agree on.
        let Some(limit) = buffer_limit_bytes else {
            return Ok(());
        };
        if !self.failover.hold_headers {
            if allow_on_headers_stop_iteration {
                return Err(invalid(
                    "failover.hold_headers",
                    "false, but the Wasm filter's config sets `allow_on_headers_stop_iteration: \
                     true`: set hold_headers to true to hold requests until their body is \
                     complete (the reason for the flag), or remove the flag",
                ));
            }
            return Ok(());
        }
        if !allow_on_headers_stop_iteration {
            return Err(invalid(
                "failover.hold_headers",
                "true needs `allow_on_headers_stop_iteration: true` in the Wasm filter's config \
                 (Envoy >= 1.35); without it a Pause at headers also stops the request body \
                 and every request with a body would stall",
            ));
        }
        let max = u64::try_from(self.failover.max_request_bytes).unwrap_or(u64::MAX);
        if max > limit {
            return Err(invalid(
                "failover.max_request_bytes",
                format!(
                    "{max} is over the listener's per_connection_buffer_limit_bytes \
                     ({limit}): with hold_headers a held body past it gets Envoy's 413"
                ),
            ));
        }
        Ok(())
    }

    /// Parses, resolves `${NAME}` with `env`, and validates.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field path and the bad value (never a secret's value).
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let shape = |e: crate::json::Error| ConfigError::Shape {
            message: e.to_string(),
            path: e.path,
        };
        // The value first, then what follows it: serde_json reported a field's error before
        // trailing characters after the document, and so do we.
        let (doc, trailing) = crate::json::parse_with_tail(json).map_err(shape)?;
        let raw = RawConfig::read(&crate::json::Reader::new(json), &doc).map_err(shape)?;
        if let Some(e) = trailing {
            return Err(shape(e));
        }
        raw.validate(env)
    }

    /// The endpoint an index points at.
    pub fn endpoint(&self, idx: EndpointIdx) -> &Endpoint {
        &self.endpoints[idx.0]
    }

    /// Looks an endpoint up by its name.
    pub fn index_of(&self, name: &str) -> Option<EndpointIdx> {
        self.endpoints
            .iter()
            .position(|e| e.id.as_str() == name)
            .map(EndpointIdx)
    }

    /// Every endpoint index, in config order.
    pub fn indices(&self) -> impl Iterator<Item = EndpointIdx> + '_ {
        (0..self.endpoints.len()).map(EndpointIdx)
    }
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
