//! The per-VM data every host function reaches through its `Caller` (the wasmtime store data).
//!
//! Why it is all here: host functions must not call back into the guest, so whatever they
//! cause (a local reply, a resume, an HTTP call to start, a new tick period) is recorded here
//! and acted on by the runtime (the VM or the stream driver) after the guest call returns.
//!
//! Nothing here names the runtime: the data it exchanges with the ABI are the seam types of
//! [`crate::seam`], and the process-wide state is reached through [`ProcessStores`], the
//! projection of it host functions need.

use super::body_buffer::BodyBuffer;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Memory, TypedFunc};

use super::queues::SharedQueues;
use crate::metrics::Metrics;
use crate::plugin::PluginSpec;
use crate::seam::{CallRequest, CallResponse, ClusterManager, DownstreamInfo, UpstreamInfo};
use crate::shared_data::SharedData;

/// Header (or trailer) list: lower-case names, raw values, pseudo-headers first.
pub(crate) type HeaderList = Vec<(String, Vec<u8>)>;

/// Hashes context ids and call tokens (small u32s the host hands out itself, so no untrusted
/// input) with one multiplication. The stream driver looks its stream up about a dozen times
/// per request; with the default SipHash that was ~6 k instructions per request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        // Fibonacci hashing: spreads sequential ids over the high bits hashbrown uses.
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by context id or call token.
pub(crate) type ContextMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// A local reply the plugin asked for with `proxy_send_local_response`.
#[derive(Debug, Clone, Default)]
pub(crate) struct PluginReply {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: HeaderList,
}

/// The response as the router produced it (for `response.*`, `upstream.*`, `xds.*`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponseMeta {
    pub code: u16,
    pub info: UpstreamInfo,
}

/// Which of one direction's maps and body buffer a plugin can reach right now.
///
/// Envoy hands a filter each map and buffer only while the callback that owns it runs, or while
/// the filter keeps that callback paused: `Context::decodeHeaders`, `decodeData`,
/// `decodeTrailers`, `encodeHeaders`, `encodeData`, `encodeTrailers`
/// (`source/extensions/common/wasm/context.cc`) drop their pointer as soon as the filter returns
/// Continue, and `Context::continueStream` drops the request ones. The stream driver
/// keeps its own copy of the data (it must pass it on); these flags decide
/// what the `proxy_*` calls may touch. A map that is not reachable reads as empty (all pairs)
/// or BAD_ARGUMENT (one value), and refuses writes with BAD_ARGUMENT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reach {
    pub headers: bool,
    pub body: bool,
    pub trailers: bool,
}

/// Which way data flows: the ABI's request/response pairs of callbacks, maps and buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Downstream to upstream (decode, in Envoy's words).
    Request,
    /// Upstream to downstream (encode).
    Response,
}

/// One direction of an HTTP context: the driver's copies of its headers, body and trailers,
/// what the plugin can reach of them, and whether it asked to resume.
#[derive(Debug, Default)]
pub(crate) struct DirState {
    pub headers: Option<HeaderList>,
    /// Set when a plugin changed the headers: the driver rebuilds the HTTP head from the list
    /// only then.
    pub headers_changed: bool,
    pub body: Option<BodyBuffer>,
    pub trailers: Option<HeaderList>,
    pub reach: Reach,
    /// `continue_stream` for this direction was called.
    pub resume: bool,
}

/// What `on_log` reads instead of the live maps: Envoy's access-log phase
/// (`Context::log` sets `access_log_phase_` and the access-log header pointers), the request
/// headers as they went upstream and the response headers and trailers as they went
/// downstream. Request trailers are never offered there.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogView {
    pub request_headers: Option<HeaderList>,
    pub response_headers: Option<HeaderList>,
    pub response_trailers: Option<HeaderList>,
}

/// One HTTP context: what `proxy_*` calls for request/response data see, and the flags they
/// raise for the stream driver.
pub(crate) struct StreamState {
    pub downstream: DownstreamInfo,
    /// The downstream protocol as Envoy names it (`Http::Utility::getProtocolString`):
    /// `request.protocol`, served from the stream info, so readable in every phase.
    pub protocol: &'static str,
    pub response_meta: Option<ResponseMeta>,
    /// `Some` while `on_log` runs (Envoy's access-log phase).
    pub log: Option<LogView>,
    /// What `on_log` will see, kept up to date by the driver.
    pub log_view: LogView,
    /// The request side: map 0 (headers), map 1 (trailers), buffer 0 (body).
    pub request: DirState,
    /// The response side: map 2 (headers), map 3 (trailers), buffer 1 (body).
    pub response: DirState,
    /// Values stored with `proxy_set_property` (read back by `proxy_get_property`).
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    pub local_reply: Option<PluginReply>,
    pub reset: bool,
    /// Once true, `send_http_response` can no longer replace the response.
    pub response_headers_sent: bool,
    /// Wakes the stream driver when a flag above changes.
    pub signal: Rc<tokio::sync::Notify>,
}

impl StreamState {
    pub(crate) fn new(downstream: DownstreamInfo) -> Self {
        Self {
            downstream,
            protocol: "HTTP/1.1",
            response_meta: None,
            log: None,
            log_view: LogView::default(),
            request: DirState::default(),
            response: DirState::default(),
            properties: HashMap::new(),
            local_reply: None,
            reset: false,
            response_headers_sent: false,
            signal: Rc::new(tokio::sync::Notify::new()),
        }
    }

    /// One direction's data and reach.
    pub(crate) fn side(&self, dir: Direction) -> &DirState {
        match dir {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    /// One direction's data and reach, to change.
    pub(crate) fn side_mut(&mut self, dir: Direction) -> &mut DirState {
        match dir {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }
}

/// Something a host function asked for that must happen outside the guest call.
pub(crate) enum Deferred {
    /// Start `ClusterManager::call` and deliver `proxy_on_http_call_response` when it ends.
    HttpCall {
        token: u32,
        cluster: String,
        request: CallRequest,
        timeout: Option<Duration>,
    },
    /// (Re)arm the root context's tick timer; 0 stops it.
    SetTick(u32),
}

/// The answer of a finished `dispatch_http_call`, readable during `on_http_call_response`.
pub(crate) struct CallResult {
    pub response: Option<CallResponse>,
}

/// The process-wide stores every VM's host functions share: shared data, metrics, shared
/// queues. The runtime owns one (inside its engine-wide state) and hands each VM a clone;
/// cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub(crate) struct ProcessStores {
    shared_data: Arc<SharedData>,
    metrics: Arc<Metrics>,
    queues: Arc<SharedQueues>,
}

impl ProcessStores {
    /// Around existing shared-data and metrics stores, with no shared queue yet.
    pub(crate) fn new(shared_data: Arc<SharedData>, metrics: Arc<Metrics>) -> Self {
        Self {
            shared_data,
            metrics,
            queues: Arc::new(SharedQueues::default()),
        }
    }

    /// The shared-data store (`proxy_get_shared_data`, `proxy_set_shared_data`).
    pub(crate) fn shared_data(&self) -> &Arc<SharedData> {
        &self.shared_data
    }

    /// The metrics registry (`proxy_*_metric`).
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The shared queues (`proxy_*_shared_queue`).
    pub(crate) fn queues(&self) -> &SharedQueues {
        &self.queues
    }
}

/// Where the VM is in its life: during `_initialize`/`main` almost every host call traps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Initializing,
    Running,
}

/// The store data of one plugin VM.
pub(crate) struct HostState {
    pub spec: PluginSpec,
    /// "name role", e.g. "failover worker 2": the log prefix.
    pub label: String,
    pub shared: ProcessStores,
    pub clusters: Rc<dyn ClusterManager>,
    pub phase: Phase,
    pub memory: Option<Memory>,
    /// Shared, so a host call can take it out of the store data cheaply before calling it.
    pub alloc: Option<Rc<TypedFunc<u32, u32>>>,
    pub root_context_id: u32,
    pub effective_context: u32,
    pub streams: ContextMap<StreamState>,
    /// token → context that dispatched it.
    pub pending_calls: ContextMap<u32>,
    pub next_token: u32,
    pub http_call_result: Option<CallResult>,
    /// True only while the plugin configuration may be read: during `on_configure` and the
    /// root context's `on_context_create` (cpp-host sets `temp_plugin_` only around those;
    /// Envoy's `Context::getBuffer(PluginConfiguration)` is NOT_FOUND otherwise).
    pub plugin_config_readable: bool,
    pub deferred: Vec<Deferred>,
    /// Plugin log lines kept while starting, for `VmError::ConfigureRejected`.
    pub captured_logs: Option<Vec<String>>,
}

impl HostState {
    pub(crate) fn new(
        spec: PluginSpec,
        label: String,
        shared: ProcessStores,
        clusters: Rc<dyn ClusterManager>,
    ) -> Self {
        Self {
            spec,
            label,
            shared,
            clusters,
            phase: Phase::Initializing,
            memory: None,
            alloc: None,
            root_context_id: 0,
            effective_context: 0,
            streams: ContextMap::default(),
            pending_calls: ContextMap::default(),
            next_token: 1,
            http_call_result: None,
            plugin_config_readable: false,
            deferred: Vec::new(),
            captured_logs: Some(Vec::new()),
        }
    }

    /// The HTTP context the current call acts on, if the effective context is one.
    pub(crate) fn stream(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.effective_context)
    }

    /// Traps when the VM is still in `_initialize`/`main` (Envoy's "restricted_callback").
    pub(crate) fn check_not_restricted(&self, function: &str) -> wasmtime::Result<()> {
        if self.phase == Phase::Initializing {
            return Err(wasmtime::Error::msg(format!(
                "restricted_callback: {function} is not allowed while the module initializes"
            )));
        }
        Ok(())
    }
}
