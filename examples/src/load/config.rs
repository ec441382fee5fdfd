//! What load to generate.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};

use super::Outcome;

/// Errors in a load configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target URL is not `http://host:port/...`.
    #[error("invalid url `{url}`: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header given as `name: value` is not valid.
    #[error("invalid header `{0}` (expected `name: value`)")]
    Header(String),
    /// Concurrency was 0, or the rate was not a positive number.
    #[error("invalid setting: {0}")]
    Setting(String),
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (requests still in flight then are abandoned, not counted).
    After(Duration),
    /// After this many requests were completed or failed.
    Requests(u64),
    /// Only when [`super::LoadRun::stop`] is called (the demo's traffic loop).
    Manual,
}

/// Called once per finished request (from the worker that sent it): lets the demo show live
/// traffic. Keep it cheap.
pub type Observer = Arc<dyn Fn(&Outcome) + Send + Sync>;

/// A load run's settings. Build with [`LoadConfig::new`] and adjust the public fields.
#[derive(Clone)]
pub struct LoadConfig {
    /// Where to send: `http://host:port/path?query` (plain HTTP/1.1 only).
    pub url: Uri,
    /// Concurrent connections, each sending one request at a time with keep-alive.
    pub concurrency: usize,
    /// When to stop.
    pub stop: Stop,
    /// Request method.
    pub method: Method,
    /// Request body (sent with a content-length; empty = none).
    pub body: Bytes,
    /// Extra request headers (`host` is set from the URL).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Per-request time limit (connect + headers + whole body).
    pub timeout: Duration,
    /// Total requests per second over all connections; `None` = as fast as answers come.
    pub rate: Option<f64>,
    /// Response header whose values are tallied in `LoadReport::by_name` (default
    /// `x-mock-name`: which mock answered).
    pub name_header: HeaderName,
    /// Optional per-request callback.
    pub observer: Option<Observer>,
}

impl fmt::Debug for LoadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadConfig")
            .field("url", &self.url)
            .field("concurrency", &self.concurrency)
            .field("stop", &self.stop)
            .field("method", &self.method)
            .field("body_len", &self.body.len())
            .field("headers", &self.headers)
            .field("timeout", &self.timeout)
            .field("rate", &self.rate)
            .field("name_header", &self.name_header)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl LoadConfig {
    /// Defaults: 4 connections, 100 requests, GET, no body, 10 s timeout, no rate limit.
    ///
    /// # Errors
    /// When `url` is not an `http://` URL with a host.
    pub fn new(url: &str) -> Result<Self, LoadError> {
        let bad = |reason: &str| LoadError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        if uri.host().is_none() {
            return Err(bad("no host"));
        }
        Ok(LoadConfig {
            url: uri,
            concurrency: 4,
            stop: Stop::Requests(100),
            method: Method::GET,
            body: Bytes::new(),
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            rate: None,
            name_header: HeaderName::from_static("x-mock-name"),
            observer: None,
        })
    }

    /// POST this body with `content-type: application/json`.
    pub fn post_json(mut self, body: impl Into<Bytes>) -> Self {
        self.method = Method::POST;
        self.body = body.into();
        self.headers.push((
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        self
    }

    /// Add a header from `name: value` text.
    ///
    /// # Errors
    /// When the text is not a valid header.
    pub fn header_line(mut self, line: &str) -> Result<Self, LoadError> {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| LoadError::Header(line.to_string()))?;
        let k = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| LoadError::Header(line.to_string()))?;
        let v = HeaderValue::from_str(v.trim()).map_err(|_| LoadError::Header(line.to_string()))?;
        self.headers.push((k, v));
        Ok(self)
    }

    pub(crate) fn validate(&self) -> Result<(), LoadError> {
        if self.concurrency == 0 {
            return Err(LoadError::Setting("concurrency must be at least 1".into()));
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(LoadError::Setting(format!(
                    "rate must be a positive number, got {r}"
                )));
            }
        }
        Ok(())
    }

    /// `host:port` to connect to (port 80 if the URL has none).
    pub(crate) fn authority(&self) -> String {
        let host = self.url.host().unwrap_or("localhost");
        let port = self.url.port_u16().unwrap_or(80);
        format!("{host}:{port}")
    }
}

/// A minimal LLM messages request body, like the verifier's default probe.
pub const MESSAGES_BODY: &str =
    r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_checks() {
        assert!(LoadConfig::new("http://127.0.0.1:8080/v1/messages").is_ok());
        assert!(LoadConfig::new("https://x/").is_err());
        assert!(LoadConfig::new("not a url").is_err());
        assert!(LoadConfig::new("/path-only").is_err());
        let c = LoadConfig::new("http://h/").expect("valid");
        assert_eq!(c.authority(), "h:80");
    }

    #[test]
    fn header_lines() {
        let c = LoadConfig::new("http://h:1/")
            .expect("valid")
            .header_line("x-api-key: abc")
            .expect("valid header");
        assert_eq!(c.headers[0].0, "x-api-key");
        assert_eq!(c.headers[0].1, "abc");
        assert!(LoadConfig::new("http://h:1/")
            .expect("valid")
            .header_line("no colon")
            .is_err());
    }

    #[test]
    fn settings_checked() {
        let mut c = LoadConfig::new("http://h:1/").expect("valid");
        c.concurrency = 0;
        assert!(c.validate().is_err());
        c.concurrency = 1;
        c.rate = Some(0.0);
        assert!(c.validate().is_err());
        c.rate = Some(5.0);
        assert!(c.validate().is_ok());
    }
}
