//! Results of a load run: per-request [`Outcome`]s folded into a [`LoadReport`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::histogram::{Histogram, LatencySummary};

/// Why a request did not end as a clean 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP connection could not be made (refused, unreachable, connect timeout).
    Connect,
    /// The connection failed before response headers arrived (reset, closed).
    NoResponse,
    /// Headers arrived but the body broke off (reset or cut mid-body, bad chunking).
    Body,
    /// The request did not finish within the timeout.
    Timeout,
    /// A complete `text/event-stream` answer that carried an `event: error` frame.
    ErrorEvent,
    /// A 2xx JSON answer whose top-level `type` is `"error"`.
    ErrorBody,
}

impl ErrorKind {
    /// Stable snake_case name (as in the JSON report).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::NoResponse => "no_response",
            ErrorKind::Body => "body",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ErrorEvent => "error_event",
            ErrorKind::ErrorBody => "error_body",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Response status, if headers arrived.
    pub status: Option<u16>,
    /// Value of the configured name header (default `x-mock-name`), if present.
    pub name: Option<String>,
    /// What went wrong, if anything besides the status.
    pub error: Option<ErrorKind>,
    /// From the start of the request (including connecting) to the end of the body or error.
    pub latency: Duration,
    /// Response headers (empty if none arrived).
    pub headers: http::HeaderMap,
    /// Response body received (possibly partial when `error` is `Body`/`Timeout`: empty then).
    pub body: Bytes,
}

impl Outcome {
    /// A 2xx with a complete body that is not an error in disguise.
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Totals of a run (or of the run so far).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Time since the run started (until it ended, for a finished run).
    #[serde(rename = "elapsed_ms", serialize_with = "as_millis")]
    pub elapsed: Duration,
    /// Requests finished (ok or not); abandoned ones are not included.
    pub requests: u64,
    /// Requests that ended as a clean 2xx ([`Outcome::is_ok`]).
    pub ok: u64,
    /// Requests that did not.
    pub failed: u64,
    /// Finished requests per second over `elapsed`.
    pub requests_per_sec: f64,
    /// Responses per status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Responses per value of the name header (which upstream answered).
    pub by_name: BTreeMap<String, u64>,
    /// Failures per kind (statuses other than 2xx are only in `by_status`).
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Requests still in flight when the run was stopped (not counted elsewhere).
    pub abandoned: u64,
    /// TCP connections opened.
    pub connections: u64,
    /// Latency percentiles of finished requests.
    pub latency: LatencySummary,
    /// The full latency histogram.
    #[serde(skip)]
    pub histogram: Histogram,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl LoadReport {
    /// Fold one outcome in.
    pub fn add(&mut self, o: &Outcome) {
        self.requests += 1;
        if o.is_ok() {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        if let Some(s) = o.status {
            *self.by_status.entry(s).or_insert(0) += 1;
        }
        if let Some(n) = &o.name {
            if let Some(c) = self.by_name.get_mut(n) {
                *c += 1;
            } else {
                self.by_name.insert(n.clone(), 1);
            }
        }
        if let Some(k) = o.error {
            *self.errors.entry(k).or_insert(0) += 1;
        }
        self.histogram
            .record(u64::try_from(o.latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Add another partial report (from another worker).
    pub fn merge(&mut self, other: &LoadReport) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.failed += other.failed;
        self.abandoned += other.abandoned;
        self.connections += other.connections;
        for (k, v) in &other.by_status {
            *self.by_status.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &other.by_name {
            *self.by_name.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_insert(0) += v;
        }
        self.histogram.merge(&other.histogram);
    }

    /// Fill in the derived fields for a run that has lasted `elapsed`.
    pub(crate) fn finish(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        self.latency = self.histogram.summary();
        let secs = elapsed.as_secs_f64();
        self.requests_per_sec = if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        };
    }

    /// Failures of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.get(&kind).copied().unwrap_or(0)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} requests in {:.2}s ({:.0} req/s): {} ok, {} failed, {} abandoned, {} connections",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec,
            self.ok,
            self.failed,
            self.abandoned,
            self.connections
        )?;
        let list = |m: Vec<(String, u64)>| {
            m.into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(
            f,
            "status:  {}",
            list(
                self.by_status
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect()
            )
        )?;
        writeln!(
            f,
            "by name: {}",
            list(self.by_name.iter().map(|(k, v)| (k.clone(), *v)).collect())
        )?;
        writeln!(
            f,
            "errors:  {}",
            list(
                self.errors
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect()
            )
        )?;
        let l = &self.latency;
        write!(
            f,
            "latency: p50 {:.3}ms  p90 {:.3}ms  p99 {:.3}ms  p99.9 {:.3}ms  max {:.3}ms",
            l.p50_us as f64 / 1e3,
            l.p90_us as f64 / 1e3,
            l.p99_us as f64 / 1e3,
            l.p999_us as f64 / 1e3,
            l.max_us as f64 / 1e3
        )
    }
}
