//! One HTTP context of one VM, as the stream driver sees it.

use std::cell::Cell;
use std::rc::Rc;

use super::exports::{Action, F2R, F3R};
use super::{PluginVm, VmError};
use crate::abi::state::{Direction, StreamState};

/// One HTTP context of one VM. Driven by the stream driver (`stream::run_filter_chain`); when dropped it
/// makes sure `on_log`, `on_done` and `on_delete` ran (a stream that ends early still gets
/// them, as in Envoy).
pub struct HttpStream {
    vm: Rc<PluginVm>,
    id: u32,
    signal: Rc<tokio::sync::Notify>,
    created: bool,
    finished: Cell<bool>,
}

impl HttpStream {
    pub(super) fn new(
        vm: Rc<PluginVm>,
        id: u32,
        signal: Rc<tokio::sync::Notify>,
        created: bool,
    ) -> Self {
        Self {
            vm,
            id,
            signal,
            created,
            finished: Cell::new(false),
        }
    }

    /// The context id the plugin knows this stream by.
    pub fn context_id(&self) -> u32 {
        self.id
    }

    /// The VM this stream belongs to.
    pub fn vm(&self) -> &Rc<PluginVm> {
        &self.vm
    }

    /// False when the VM could not create the context (it failed): the stream bypasses it.
    pub(crate) fn is_live(&self) -> bool {
        self.created && !self.vm.failed.get() && !self.finished.get()
    }

    pub(crate) fn signal(&self) -> Rc<tokio::sync::Notify> {
        self.signal.clone()
    }

    /// Reads or changes this stream's state between guest calls.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut StreamState) -> R) -> Option<R> {
        self.vm
            .with_state(|s| s.streams.get_mut(&self.id).map(f))
            .flatten()
    }

    fn action(
        &self,
        during: &str,
        f: Option<&F3R>,
        a: usize,
        eos: bool,
    ) -> Result<Action, VmError> {
        let Some(f) = f else {
            return Ok(Action::Continue);
        };
        let id = self.id as i32;
        self.vm
            .call(during, self.id, |s| f.call(s, (id, a as i32, eos as i32)))
            .map(Action::from_abi)
    }

    fn action2(&self, during: &str, f: Option<&F2R>, a: usize) -> Result<Action, VmError> {
        let Some(f) = f else {
            return Ok(Action::Continue);
        };
        let id = self.id as i32;
        self.vm
            .call(during, self.id, |s| f.call(s, (id, a as i32)))
            .map(Action::from_abi)
    }

    /// `proxy_on_request_headers` / `proxy_on_response_headers` with `n` headers.
    pub(crate) fn on_headers(
        &self,
        dir: Direction,
        n: usize,
        eos: bool,
    ) -> Result<Action, VmError> {
        let e = &self.vm.exports;
        match dir {
            Direction::Request => self.action(
                "proxy_on_request_headers",
                e.on_request_headers.as_ref(),
                n,
                eos,
            ),
            Direction::Response => self.action(
                "proxy_on_response_headers",
                e.on_response_headers.as_ref(),
                n,
                eos,
            ),
        }
    }

    /// `proxy_on_request_body` / `proxy_on_response_body` with `size` bytes buffered.
    pub(crate) fn on_body(
        &self,
        dir: Direction,
        size: usize,
        eos: bool,
    ) -> Result<Action, VmError> {
        let e = &self.vm.exports;
        match dir {
            Direction::Request => self.action(
                "proxy_on_request_body",
                e.on_request_body.as_ref(),
                size,
                eos,
            ),
            Direction::Response => self.action(
                "proxy_on_response_body",
                e.on_response_body.as_ref(),
                size,
                eos,
            ),
        }
    }

    /// `proxy_on_request_trailers` / `proxy_on_response_trailers` with `n` trailers.
    pub(crate) fn on_trailers(&self, dir: Direction, n: usize) -> Result<Action, VmError> {
        let e = &self.vm.exports;
        match dir {
            Direction::Request => self.action2(
                "proxy_on_request_trailers",
                e.on_request_trailers.as_ref(),
                n,
            ),
            Direction::Response => self.action2(
                "proxy_on_response_trailers",
                e.on_response_trailers.as_ref(),
                n,
            ),
        }
    }

    /// `on_log`, `on_done`, `on_delete` (once), then forgets the context (not its HTTP calls,
    /// which belong to the root context, as in Envoy).
    pub fn finish(&self) {
        if self.finished.replace(true) {
            return;
        }
        if self.created && !self.vm.failed.get() {
            let id = self.id as i32;
            if let Some(f) = self.vm.exports.on_log.as_ref() {
                // Envoy's access-log phase (`Context::log`): header reads see the request as
                // forwarded and the response as sent; a missing map is NOT_FOUND there.
                self.with(|st| st.log = Some(std::mem::take(&mut st.log_view)));
                let _ = self.vm.call("proxy_on_log", self.id, |s| f.call(s, id));
                self.with(|st| st.log = None);
            }
            if let Some(f) = self.vm.exports.on_done.as_ref() {
                let _ = self.vm.call("proxy_on_done", self.id, |s| f.call(s, id));
            }
            if let Some(f) = self.vm.exports.on_delete.as_ref() {
                let _ = self.vm.call("proxy_on_delete", self.id, |s| f.call(s, id));
            }
        }
        let id = self.id;
        // Its HTTP calls are the root context's (Envoy): they stay pending.
        self.vm.with_state(|s| {
            s.streams.remove(&id);
            if s.effective_context == id {
                s.effective_context = s.root_context_id;
            }
        });
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        self.finish();
    }
}
