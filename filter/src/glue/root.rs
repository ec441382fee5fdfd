//! The root context: configuration, the tick that drives the verifier, and the factory of
//! per-request contexts.

use std::cell::RefCell;
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;
use std::time::Duration;

use log::{error, info, warn};

use super::abi::{self, BufferType, MapType};
use super::host::{dispatch_http_call, follow_host_log_level, now_ms, property_string, Metrics};
use super::http::FailoverHttp;
use super::plugin::Plugin;
use super::syncer::{member_name, FleetMetrics, Syncer};
use super::verifier::Verifier;
use crate::config::Config;
use crate::envoy::decode_status;
use crate::select::Rng;
use crate::store::RecordCache;

/// Root id of the singleton verifier service (`envoy.bootstrap.wasm`).
pub const VERIFIER_ROOT_ID: &str = "failover_verifier";

/// One root context.
pub struct FailoverRoot {
    context_id: u32,
    plugin: Option<Rc<Plugin>>,
    verifier: Option<Verifier>,
    /// Fleet mode's syncer (runs only while `verifier` leads).
    syncer: Option<Syncer>,
}

impl FailoverRoot {
    /// Created for each root context (`proxy_on_context_create` with no parent).
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            plugin: None,
            verifier: None,
            syncer: None,
        }
    }
}

impl FailoverRoot {
    /// The answer to one of this root's HTTP calls (the syncer's or the verifier's; 0 headers:
    /// the call failed).
    pub fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize) {
        let headers = (num_headers > 0)
            .then(|| abi::headers(MapType::HttpCallResponseHeaders).unwrap_or_default());
        let body = abi::body(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default();
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        if let Some(mut syncer) = self.syncer.take() {
            let status = headers
                .as_ref()
                .and_then(|h| h.iter().find(|(n, _)| n == ":status"))
                .and_then(|(_, v)| decode_status(v));
            let dispatch = |cluster: &str,
                            headers: Vec<(&str, &str)>,
                            body: Option<&[u8]>,
                            timeout: Duration| {
                dispatch_http_call(self.context_id, cluster, &headers, body, timeout)
            };
            let mine = syncer.on_response(&plugin, token, status, &body, &dispatch);
            self.syncer = Some(syncer);
            if mine {
                return;
            }
        }
        let (Some(verifier), syncer) = (&mut self.verifier, self.syncer.as_mut()) else {
            return;
        };
        verifier.on_response(&plugin, token, headers, &body, syncer);
    }

    /// The VM started: follow the host's log level from here on.
    pub fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        follow_host_log_level();
        true
    }

    /// Parses and applies the plugin configuration; false rejects it (logged).
    pub fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        follow_host_log_level();
        let root_id = property_string(&["plugin_root_id"]).unwrap_or_default();
        let label = if root_id.is_empty() {
            "failover".to_string()
        } else {
            root_id.clone()
        };
        let bytes = abi::plugin_configuration();
        let env = |name: &str| std::env::var(name).ok();
        let config = match Config::parse(&bytes, &env) {
            Ok(c) => c,
            Err(e) => {
                error!("[{label}] rejected: {e}");
                return false;
            }
        };
        let seed = RandomState::new().hash_one((now_ms(), self.context_id));
        let plugin = Rc::new(Plugin {
            metrics: Metrics::define(config.endpoints.iter().map(|e| e.id.as_str())),
            cache: RefCell::new(RecordCache::default()),
            rng: RefCell::new(Rng::new(seed)),
            label: label.clone(),
            config,
        });
        // Create the record if missing (race-free, see store.rs), never reset it, and forget
        // endpoints that left the config.
        let created = plugin.update("creating the failure record", |r| {
            r.retain_endpoints(|k| plugin.config.index_of(k).is_some())
        });
        match &created {
            Some(up) => plugin.publish_gauges(&up.record),
            None => warn!(
                "[{label}] the failure record could not be created yet; will retry on first use"
            ),
        }
        let interval = plugin.config.verifier.interval_ms;
        let mut tick = Verifier::tick_period(interval);
        // A reconfigure keeps the syncer's state (connection, fleet record, member).
        self.syncer = match (&plugin.config.fleet, self.syncer.take()) {
            (None, _) => None,
            (Some(f), Some(old)) if old.config() == f => Some(old),
            (Some(f), _) => {
                let member = member_name(f, seed);
                Some(Syncer::new(f.clone(), member, FleetMetrics::define()))
            }
        };
        if let Some(s) = &self.syncer {
            tick = tick.min(s.tick_period());
        }
        if let Err(status) = abi::set_tick_period(tick) {
            warn!("[{label}] setting the tick period: the host answered {status}");
        }
        let singleton = root_id == VERIFIER_ROOT_ID;
        let owner = format!("{label}-{:08x}", seed as u32);
        self.verifier = Some(Verifier::new(owner, singleton));
        info!(
            "[{label}] configured: {} endpoints in {} groups, verifier every {interval} ms{}; queue holds {}",
            plugin.config.endpoints.len(),
            plugin.config.groups.len(),
            if singleton { " (singleton verifier)" } else { "" },
            created.map_or(0, |u| u.record.queue.len()),
        );
        self.plugin = Some(plugin);
        true
    }

    /// The timer: the verifier's round (and fleet mode's sync).
    pub fn on_tick(&mut self) {
        follow_host_log_level();
        let (Some(plugin), Some(mut verifier)) = (self.plugin.clone(), self.verifier.take()) else {
            return;
        };
        let mut syncer = self.syncer.take();
        {
            let dispatch = |cluster: &str,
                            headers: Vec<(&str, &str)>,
                            body: Option<&[u8]>,
                            timeout: Duration| {
                dispatch_http_call(self.context_id, cluster, &headers, body, timeout)
            };
            verifier.tick(&plugin, &dispatch, syncer.as_mut());
        }
        self.syncer = syncer;
        self.verifier = Some(verifier);
    }

    /// The filter for a new request; `None` when this root has no configuration (the request
    /// then passes through untouched).
    pub fn create_http_context(&self, context_id: u32) -> Option<Box<FailoverHttp>> {
        self.plugin
            .as_ref()
            .map(|p| Box::new(FailoverHttp::new(context_id, p.clone())))
    }
}
