//! What the mock saw: counters, a bounded request log, and the mode transitions that requests
//! actually observed. The fault tests compare the filter's counters with these, so they must
//! count what really reached the upstream, not what the schedule intended.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;

/// A snapshot of the mock's counters, as returned by `MockUpstream::stats()` and `GET /stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MockStats {
    /// The mock's name (`x-mock-name`).
    pub name: String,
    /// The schedule currently installed, in the mode syntax.
    pub schedule: String,
    /// The mode currently answering, in the mode syntax.
    pub mode: String,
    /// Milliseconds since the mock started (or since the last `reset_stats`).
    pub uptime_ms: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// HTTP requests received (whatever the answer).
    pub requests: u64,
    /// Requests per path (without query), e.g. the verifier's probe path versus traffic.
    pub by_path: BTreeMap<String, u64>,
    /// Requests per method.
    pub by_method: BTreeMap<String, u64>,
    /// Answers per status code sent (resets, hangs and refusals send none).
    pub by_status: BTreeMap<u16, u64>,
    /// Requests answered healthily (Healthy, Slow, Delay, or a 2xx without an error body).
    pub healthy_answers: u64,
    /// Requests answered with anything else (status errors, resets, hangs, broken streams).
    pub failed_answers: u64,
    /// Request body bytes received in total.
    pub request_body_bytes: u64,
    /// Healthy→down changes (see `FailMode::is_down`) observed by at least one request: the
    /// number of failures a perfect failover filter would count for this endpoint. Entering
    /// `refuse` counts as observed at once, since refused connections never reach the mock.
    pub down_transitions: u64,
    /// Down→healthy changes observed by at least one request.
    pub up_transitions: u64,
    /// Healthy→down changes applied by the schedule, observed or not.
    pub scheduled_down_transitions: u64,
    /// Mode changes applied (including changes to the same mode).
    pub mode_changes: u64,
    /// Requests in flight right now (a request stays in flight until its answer is finished
    /// or abandoned).
    pub in_flight: u64,
    /// The most requests that were in flight at once.
    pub in_flight_max: u64,
    /// For each request header name (lower case), how many requests carried it.
    pub header_counts: BTreeMap<String, u64>,
    /// Milliseconds since start of the first request, if any.
    pub first_request_ms: Option<u64>,
    /// Milliseconds since start of the latest request, if any.
    pub last_request_ms: Option<u64>,
    /// Requests dropped from the bounded request log because it was full.
    pub log_dropped: u64,
}

impl MockStats {
    /// Requests that carried header `name` (any case).
    pub fn requests_with_header(&self, name: &str) -> u64 {
        self.header_counts
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Requests received on `path`.
    pub fn requests_on(&self, path: &str) -> u64 {
        self.by_path.get(path).copied().unwrap_or(0)
    }
}

/// One request as the mock received it (kept in a bounded log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// When the request's headers arrived.
    #[serde(skip)]
    pub at: Instant,
    /// Milliseconds since start when the request's headers arrived.
    pub at_ms: u64,
    /// Sequence number (0-based) since start.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Request headers (names lower case, non-UTF-8 values lossily converted); empty when the
    /// mock was told not to record headers.
    pub headers: Vec<(String, String)>,
    /// Request body length in bytes.
    pub body_len: u64,
    /// The mode that answered, in the mode syntax.
    pub mode: String,
    /// Whether that mode counts as down.
    pub down: bool,
}

impl RequestRecord {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The mode a request saw, captured when its headers arrived.
#[derive(Debug, Clone)]
pub(crate) struct ModeSnapshot {
    pub epoch: u64,
    pub mode: Arc<super::FailMode>,
    pub label: Arc<str>,
    pub down: bool,
}

#[derive(Default)]
struct Inner {
    stats: MockStats,
    /// epoch -> down, for every mode epoch at least one request (or a refusal) observed.
    observed: BTreeMap<u64, bool>,
    /// The observed state before the first entry of `observed` (after a reset).
    baseline_down: bool,
    /// Whether the latest applied mode was down (for `scheduled_down_transitions`).
    applied_down: bool,
    log: VecDeque<RequestRecord>,
    seq: u64,
}

/// Shared recorder behind a mock: one lock per request, held only to bump counters.
pub(crate) struct Recorder {
    started: Mutex<Instant>,
    inner: Mutex<Inner>,
    in_flight: AtomicU64,
    in_flight_max: AtomicU64,
    log_capacity: usize,
    record_headers: bool,
}

impl Recorder {
    pub fn new(name: &str, log_capacity: usize, record_headers: bool) -> Self {
        let inner = Inner {
            stats: MockStats {
                name: name.to_string(),
                ..MockStats::default()
            },
            ..Inner::default()
        };
        Recorder {
            started: Mutex::new(Instant::now()),
            inner: Mutex::new(inner),
            in_flight: AtomicU64::new(0),
            in_flight_max: AtomicU64::new(0),
            log_capacity,
            record_headers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn started(&self) -> Instant {
        *self.started.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ms_since_start(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started()).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn connection_accepted(&self) {
        self.lock().stats.connections += 1;
    }

    /// A new mode was applied by the schedule or by `set_mode`.
    pub fn mode_applied(&self, snap: &ModeSnapshot, schedule: &str) {
        let mut g = self.lock();
        g.stats.mode_changes += 1;
        if snap.down && !g.applied_down {
            g.stats.scheduled_down_transitions += 1;
        }
        g.applied_down = snap.down;
        g.stats.mode = snap.label.to_string();
        g.stats.schedule = schedule.to_string();
        if matches!(*snap.mode, super::FailMode::Refuse) {
            // Refused connections never reach us: count the refusal as observed when it starts.
            g.observed.insert(snap.epoch, true);
        }
    }

    /// Record a request whose headers arrived at `at` under mode `snap`.
    pub fn request(
        &self,
        at: Instant,
        parts: &http::request::Parts,
        body_len: u64,
        snap: &ModeSnapshot,
    ) {
        let at_ms = self.ms_since_start(at);
        let headers = if self.record_headers {
            parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let path = parts.uri.path();
        let healthy = snap.mode.answers_healthy();
        let mut g = self.lock();
        let seq = g.seq;
        g.seq += 1;
        let s = &mut g.stats;
        s.requests += 1;
        bump(&mut s.by_path, path);
        bump(&mut s.by_method, parts.method.as_str());
        for name in parts.headers.keys() {
            bump(&mut s.header_counts, name.as_str());
        }
        if healthy {
            s.healthy_answers += 1;
        } else {
            s.failed_answers += 1;
        }
        s.request_body_bytes += body_len;
        if s.first_request_ms.is_none() {
            s.first_request_ms = Some(at_ms);
        }
        s.last_request_ms = Some(s.last_request_ms.map_or(at_ms, |m| m.max(at_ms)));
        g.observed.insert(snap.epoch, snap.down);
        if self.log_capacity > 0 {
            if g.log.len() >= self.log_capacity {
                g.log.pop_front();
                g.stats.log_dropped += 1;
            }
            g.log.push_back(RequestRecord {
                at,
                at_ms,
                seq,
                method: parts.method.as_str().to_string(),
                path: path.to_string(),
                headers,
                body_len,
                mode: snap.label.to_string(),
                down: snap.down,
            });
        }
    }

    /// Record the status line of an answer that was sent.
    pub fn answered(&self, status: u16) {
        *self.lock().stats.by_status.entry(status).or_insert(0) += 1;
    }

    /// Mark a request in flight until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight_max.fetch_max(now, Ordering::SeqCst);
        InFlight {
            rec: Arc::clone(self),
        }
    }

    pub fn snapshot(&self) -> MockStats {
        let started = self.started();
        let g = self.lock();
        let mut s = g.stats.clone();
        let (mut down, mut up) = (0, 0);
        let mut prev = g.baseline_down;
        for &d in g.observed.values() {
            if d && !prev {
                down += 1;
            }
            if !d && prev {
                up += 1;
            }
            prev = d;
        }
        s.down_transitions = down;
        s.up_transitions = up;
        s.uptime_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        s.in_flight = self.in_flight.load(Ordering::SeqCst);
        s.in_flight_max = self.in_flight_max.load(Ordering::SeqCst);
        s
    }

    /// The request log (oldest first), optionally only requests that arrived at or after `since`.
    pub fn requests(&self, since: Option<Instant>) -> Vec<RequestRecord> {
        let g = self.lock();
        g.log
            .iter()
            .filter(|r| since.is_none_or(|t| r.at >= t))
            .cloned()
            .collect()
    }

    /// Zero every counter and clear the log; the last observed up/down state is kept as the
    /// baseline so a transition spanning the reset is not counted twice.
    pub fn reset(&self) {
        let mut g = self.lock();
        let last = g
            .observed
            .values()
            .next_back()
            .copied()
            .unwrap_or(g.baseline_down);
        let name = std::mem::take(&mut g.stats.name);
        let mode = std::mem::take(&mut g.stats.mode);
        let schedule = std::mem::take(&mut g.stats.schedule);
        let applied_down = g.applied_down;
        *g = Inner {
            stats: MockStats {
                name,
                mode,
                schedule,
                ..MockStats::default()
            },
            baseline_down: last,
            applied_down,
            ..Inner::default()
        };
        drop(g);
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.in_flight_max
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(v) = map.get_mut(key) {
        *v += 1;
    } else {
        map.insert(key.to_string(), 1);
    }
}

/// Keeps a request counted as in flight until dropped (held by the answer's body).
pub(crate) struct InFlight {
    rec: Arc<Recorder>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.rec.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
