//! One request's chain of filter streams, and the vocabulary the passes speak: how a stream
//! ends early ([`End`]), what a callback decided ([`Step`]), where a body chunk went ([`Fed`]),
//! what still has to pass the rest of the filters ([`Carry`]), and the body as it arrives
//! ([`Source`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use http_body_util::BodyExt;

use super::convert::trailers_list;
use super::{REQUEST_TOO_LARGE_DETAILS, RESPONSE_TOO_LARGE_DETAILS};
use bytes::Bytes;

use crate::abi::body_buffer::BodyBuffer;
use crate::abi::state::{Direction, HeaderList, LogView, PluginReply, ResponseMeta};
use crate::body::{Body, BoxError};
use crate::vm::{Action, HttpStream, VmError};

/// Envoy's answer when a filter buffers more than the limit in this direction.
pub(super) fn too_large(dir: Direction) -> End {
    let (status, details, body): (u32, &str, &[u8]) = match dir {
        Direction::Request => (413, REQUEST_TOO_LARGE_DETAILS, b"Payload Too Large"),
        Direction::Response => (500, RESPONSE_TOO_LARGE_DETAILS, b"Internal Server Error"),
    };
    End::PluginReply(PluginReply {
        status,
        details: details.into(),
        body: body.to_vec(),
        headers: Vec::new(),
    })
}

/// How a stream ends before its normal course.
#[derive(Debug)]
pub(super) enum End {
    /// A local reply (the plugin's, or Envoy's 413/500).
    PluginReply(PluginReply),
    /// The stream is reset.
    Reset,
    /// The VM failed and the plugin is not fail-open: 503.
    Fail,
}

/// What the driver does after a callback.
pub(super) enum Step {
    Continue,
    Pause,
    End(End),
}

/// Where a body chunk ended up after passing filters.
pub(super) enum Fed {
    /// Passed every filter of the range: send it on (possibly empty).
    Out(BodyBuffer),
    /// A filter is buffering it (StopIterationAndBuffer).
    Held,
    /// The filter at this position of the order ended the stream.
    End(usize, End),
}

/// What passed filters `order[..from]` and still has to pass `order[from..]`: `data`, then the
/// trailers if any; `eos` marks the end of the body.
#[derive(Default)]
pub(super) struct Carry {
    pub(super) from: usize,
    pub(super) data: BodyBuffer,
    pub(super) eos: bool,
    pub(super) trailers: Option<HeaderList>,
}

impl Carry {
    pub(super) fn pending(&self) -> bool {
        !self.data.is_empty() || self.eos || self.trailers.is_some()
    }
}

/// One unit of a body as it arrives.
pub(super) enum Unit {
    /// A chunk as it was read, and whether it is the last.
    Data(Bytes, bool),
    Trailers(HeaderList),
    Error(BoxError),
    /// Nothing more will come.
    Finished,
}

/// A body read frame by frame; knows when its end has been handed out.
pub(super) struct Source {
    pub(super) body: Body,
    pub(super) finished: bool,
}

impl Source {
    pub(super) fn new(body: Body) -> Self {
        let finished = http_body::Body::is_end_stream(&body);
        Self { body, finished }
    }

    /// The next unit. Cancel-safe (it only polls the body).
    pub(super) async fn next(&mut self) -> Unit {
        loop {
            if self.finished {
                return Unit::Finished;
            }
            match self.body.frame().await {
                None => {
                    self.finished = true;
                    return Unit::Data(Bytes::new(), true);
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Unit::Error(e);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = http_body::Body::is_end_stream(&self.body);
                        self.finished = eos;
                        return Unit::Data(data, eos);
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.finished = true;
                            return Unit::Trailers(trailers_list(&trailers));
                        }
                    }
                },
            }
        }
    }
}

/// One request's streams (one per live filter) and what the phases share.
pub(super) struct Chain {
    pub(super) streams: Vec<HttpStream>,
    /// The filters that take part, in request order (indexes into `streams`).
    pub(super) order: Vec<usize>,
    pub(super) limit: usize,
    /// How many filters (of `order`) got their request headers: a local reply raised in the
    /// request phase passes their response callbacks.
    pub(super) reached: Cell<usize>,
    /// Set once a response (upstream or local) exists: request-side ends are then "late".
    pub(super) response_started: Cell<bool>,
    /// An end raised by the request-body task, for whoever drives the stream now.
    pub(super) late: RefCell<Option<End>>,
    pub(super) late_signal: tokio::sync::Notify,
    /// The task feeding the request body through the filters after `forward`.
    pub(super) request_pump: RefCell<Option<tokio::task::JoinHandle<()>>>,
    /// What `on_log` will read (request as forwarded, response as sent).
    pub(super) log: RefCell<LogView>,
}

impl Chain {
    pub(super) fn take_late(&self) -> Option<End> {
        self.late.borrow_mut().take()
    }

    pub(super) fn raise_late(&self, end: End) {
        *self.late.borrow_mut() = Some(end);
        self.late_signal.notify_one();
    }

    /// The response is complete (or the stream is over): Envoy drops further request data
    /// (`FilterManager::decodeData` returns once `local_complete_`).
    pub(super) fn stop_request_pump(&self) {
        if let Some(handle) = self.request_pump.borrow_mut().take() {
            handle.abort();
        }
    }

    pub(super) fn mark_headers_sent(&self) {
        for s in &self.streams {
            s.with(|st| st.response_headers_sent = true);
        }
    }

    pub(super) fn set_response(&self, meta: &ResponseMeta) {
        for s in &self.streams {
            s.with(|st| st.response_meta = Some(meta.clone()));
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // The streams end right after this (on_log, on_done, on_delete): hand them the
        // access-log view first.
        let mut view = Some(std::mem::take(self.log.get_mut()));
        let last = self.streams.len().saturating_sub(1);
        for (i, s) in self.streams.iter().enumerate() {
            let v = if i == last {
                view.take().unwrap_or_default()
            } else {
                view.clone().unwrap_or_default()
            };
            s.with(|st| st.log_view = v);
        }
    }
}

/// Stops the request-body task when dropped: when the response is complete, or when the
/// stream is abandoned (the client went away while the driver waited).
pub(super) struct StopPump(pub(super) Rc<Chain>);

impl Drop for StopPump {
    fn drop(&mut self) {
        self.0.stop_request_pump();
    }
}

/// A filter whose VM is gone: skipped if fail-open, else the stream fails.
pub(super) fn dead(s: &HttpStream) -> Option<End> {
    (!s.is_live() && !s.vm().spec().fail_open).then_some(End::Fail)
}

/// What the plugin's host calls decided for `dir` since the driver last looked.
enum Decided {
    /// A reset, a local reply, or (in the response phase) an end raised by the request side.
    End(End),
    /// `continue_stream` for this direction.
    Resumed,
    Nothing,
}

fn decided(chain: &Chain, s: &HttpStream, dir: Direction) -> Decided {
    let (local, reset, resumed) = s
        .with(|st| {
            (
                st.local_reply.take(),
                st.reset,
                std::mem::take(&mut st.side_mut(dir).resume),
            )
        })
        .unwrap_or((None, false, false));
    if reset {
        return Decided::End(End::Reset);
    }
    if let Some(lr) = local {
        return Decided::End(End::PluginReply(lr));
    }
    if dir == Direction::Response && chain.response_started.get() {
        if let Some(end) = chain.take_late() {
            return Decided::End(end);
        }
    }
    if resumed {
        Decided::Resumed
    } else {
        Decided::Nothing
    }
}

/// Reads what the callback (and its host calls) decided.
pub(super) fn outcome(
    chain: &Chain,
    s: &HttpStream,
    result: Result<Action, VmError>,
    dir: Direction,
) -> Step {
    let decided = decided(chain, s, dir);
    match (decided, result) {
        (Decided::End(end), _) => Step::End(end),
        (_, Ok(Action::Continue)) => Step::Continue,
        // continue_stream during the callback that returned Pause: already resumed.
        (Decided::Resumed, Ok(Action::Pause)) => Step::Continue,
        (Decided::Nothing, Ok(Action::Pause)) => Step::Pause,
        (_, Err(_)) if s.vm().spec().fail_open => Step::Continue,
        (_, Err(_)) => Step::End(End::Fail),
    }
}

/// Waits until the paused filter resumes `dir`, sends a local reply, resets, or fails (or, in
/// the response phase, the request side ended the stream).
pub(super) async fn wait_resume(chain: &Chain, s: &HttpStream, dir: Direction) -> Step {
    let signal = s.signal();
    loop {
        let notified = signal.notified();
        let late = chain.late_signal.notified();
        match decided(chain, s, dir) {
            Decided::End(end) => return Step::End(end),
            Decided::Resumed => return Step::Continue,
            Decided::Nothing => {}
        }
        if !s.is_live() {
            return if s.vm().spec().fail_open {
                Step::Continue
            } else {
                Step::End(End::Fail)
            };
        }
        if dir == Direction::Response {
            tokio::select! {
                () = notified => {}
                () = late => {}
            }
        } else {
            notified.await;
        }
    }
}

/// Records on every stream that the response ended early, as Envoy's stream info does, so
/// `response.flags` / `response.code_details` read in `on_log` tell who cut it.
pub(super) fn mark_ended_early(chain: &Chain, flag: u64, details: &str) {
    for s in &chain.streams {
        s.with(|st| {
            if let Some(r) = st.response_meta.as_mut() {
                r.info.response_flags |= flag;
                r.info.code_details = details.to_string();
            }
        });
    }
}
