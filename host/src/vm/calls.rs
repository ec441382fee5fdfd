//! What a guest call leaves behind for after it returns: timers to (re)arm and HTTP calls to
//! start, and the delivery of their answers back into the VM.

use std::time::Duration;

use super::{PluginVm, VmRole};
use crate::abi::state::{CallResult, Deferred};
use crate::seam::{CallError, CallResponse};

impl PluginVm {
    /// Starts what host functions asked for during the last guest call (HTTP calls, timers).
    pub(super) fn process_deferred(&self) {
        let (deferred, clusters) = match self.store.try_borrow_mut() {
            // Most guest calls defer nothing: return before cloning the cluster handle.
            Ok(s) if s.data().deferred.is_empty() => return,
            Ok(mut s) => (
                std::mem::take(&mut s.data_mut().deferred),
                s.data().clusters.clone(),
            ),
            Err(_) => return,
        };
        for d in deferred {
            match d {
                Deferred::SetTick(ms) => {
                    self.stop_timer();
                    if ms == 0 || self.role == VmRole::Canary || self.shut_down.get() {
                        continue;
                    }
                    let period = Duration::from_millis(u64::from(ms));
                    let weak = self.weak.clone();
                    let handle = tokio::task::spawn_local(async move {
                        let mut interval =
                            tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            interval.tick().await;
                            let Some(vm) = weak.upgrade() else { break };
                            if vm.shut_down.get() || vm.failed.get() {
                                break;
                            }
                            vm.on_tick();
                        }
                    });
                    if let Ok(mut t) = self.tick_task.try_borrow_mut() {
                        *t = Some(handle);
                    }
                }
                Deferred::HttpCall {
                    token,
                    cluster,
                    request,
                    timeout,
                } => {
                    if self.role == VmRole::Canary || self.shut_down.get() {
                        tracing::debug!(vm = %self.label, cluster = %cluster, "HTTP call from a canary VM is not started");
                        continue;
                    }
                    let future = clusters.call(&cluster, request, timeout);
                    let weak = self.weak.clone();
                    tokio::task::spawn_local(async move {
                        let result = future.await;
                        if let Some(vm) = weak.upgrade() {
                            vm.deliver_http_call(token, result);
                        }
                    });
                }
            }
        }
    }

    fn on_tick(&self) {
        if let Some(f) = self.exports.on_tick.as_ref() {
            let root = self.root_context_id as i32;
            let _ = self.call("proxy_on_tick", self.root_context_id, |s| f.call(s, root));
        }
    }

    /// Delivers a finished `dispatch_http_call` (0 headers when it failed), with the response
    /// readable through the buffer/header calls during the callback.
    ///
    /// As in Envoy, every call belongs to the root context (cpp-host `http_call` runs
    /// `httpCall` on `root_context()`): the callback gets the root context's id, with the root
    /// as the effective context — the SDK switches to the HTTP context that dispatched it with
    /// `proxy_set_effective_context` — and a call outlives the HTTP context that made it (the
    /// answer still arrives; the SDK then finds no context for it and drops it).
    fn deliver_http_call(&self, token: u32, result: Result<CallResponse, CallError>) {
        if self.shut_down.get() || self.failed.get() {
            return;
        }
        let Some(context) = self
            .with_state(|s| s.pending_calls.remove(&token))
            .flatten()
        else {
            return; // the root context went away (shutdown): Envoy cancels its calls
        };
        let response = match result {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(vm = %self.label, token, error = %e, "dispatch_http_call failed");
                None
            }
        };
        let (nh, nb, nt) = response
            .as_ref()
            .map(|r| {
                (
                    r.headers.len() as i32,
                    r.body.len() as i32,
                    r.trailers.len() as i32,
                )
            })
            .unwrap_or((0, 0, 0));
        self.with_state(|s| s.http_call_result = Some(CallResult { response }));
        if let Some(f) = self.exports.on_http_call_response.as_ref() {
            let root = self.root_context_id as i32;
            let tok = token as i32;
            let _ = self.call("proxy_on_http_call_response", self.root_context_id, |s| {
                f.call(s, (root, tok, nh, nb, nt))
            });
        }
        self.with_state(|s| s.http_call_result = None);
        // A stream waiting on this answer is woken by the flags the callback raised.
        self.with_state(|s| {
            if let Some(stream) = s.streams.get(&context) {
                stream.signal.notify_one();
            }
        });
    }
}
