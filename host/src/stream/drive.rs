//! The request's whole course: request headers, forward, response headers, then the bodies
//! (as far as they are there at once inline, the rest in tasks of their own); and how a stream
//! that ends early is answered.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::chain::{Carry, Chain, End, Source, StopPump};
use super::convert::{
    apply_request_list, apply_response_list, build_response, fail_response, local_reply_info,
    local_reply_list, protocol_name, request_to_list, reset_response, response_to_list,
};
use super::passes::headers_pass;
use super::pump::{pump, Sink};
use super::{ChainOptions, UpstreamInfo};
use crate::abi::state::{Direction, LogView, PluginReply, ResponseMeta};
use crate::body::{self, Body, ResetError};
use crate::seam::DownstreamInfo;
use crate::vm::{HttpStream, PluginVm};

/// [`run_filter_chain_with`] with the default options (1 MiB buffer limit).
pub async fn run_filter_chain<F, Fut>(
    filters: &[Rc<PluginVm>],
    downstream: DownstreamInfo,
    req: http::Request<Body>,
    forward: F,
) -> http::Response<Body>
where
    F: FnOnce(http::Request<Body>) -> Fut,
    Fut: std::future::Future<Output = http::Response<Body>>,
{
    run_filter_chain_with(filters, ChainOptions::default(), downstream, req, forward).await
}

/// Runs the request through `filters` (in order) and the router `forward`, and the response
/// back through them (in reverse), with Envoy's semantics (module docs).
///
/// `forward` gets the request as the filters left it (headers possibly changed, body streamed
/// or buffered) and returns the upstream response or the router's local reply, with an
/// [`UpstreamInfo`] extension. The returned response's body is streamed through the filters'
/// `on_response_body` as it is polled; `on_log`/`on_done`/`on_delete` run when it ends or is
/// dropped. Must run inside the worker's `LocalSet` (the VMs are `Rc`).
pub async fn run_filter_chain_with<F, Fut>(
    filters: &[Rc<PluginVm>],
    options: ChainOptions,
    downstream: DownstreamInfo,
    req: http::Request<Body>,
    forward: F,
) -> http::Response<Body>
where
    F: FnOnce(http::Request<Body>) -> Fut,
    Fut: std::future::Future<Output = http::Response<Body>>,
{
    let (mut parts, body) = req.into_parts();
    let protocol = protocol_name(parts.version);
    let streams: Vec<HttpStream> = filters
        .iter()
        .map(|vm| vm.new_stream(downstream.clone()))
        .collect();
    let mut order: Vec<usize> = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        s.with(|st| st.protocol = protocol);
        if s.is_live() {
            order.push(i);
        } else if !s.vm().spec().fail_open {
            return fail_response();
        }
    }
    let chain = Rc::new(Chain {
        streams,
        order,
        limit: options.buffer_limit,
        reached: Cell::new(0),
        response_started: Cell::new(false),
        late: RefCell::new(None),
        late_signal: tokio::sync::Notify::new(),
        request_pump: RefCell::new(None),
        log: RefCell::new(LogView::default()),
    });
    let order = chain.order.clone();

    // ----- request headers (and, for a filter holding them with StopIteration, body) -----
    let mut src = Source::new(body);
    let req_eos = src.finished;
    let head = headers_pass(
        &chain,
        Direction::Request,
        &order,
        request_to_list(&parts),
        req_eos,
        &mut src,
    )
    .await;
    let (list, carry, changed) = match head {
        Ok(head) => head,
        Err((pos, end)) => {
            chain.log.borrow_mut().request_headers = chain.streams[order[pos]]
                .with(|st| st.request.headers.clone())
                .flatten();
            return request_ended(&chain, end).await;
        }
    };
    if changed {
        apply_request_list(&mut parts, &list);
    }
    chain.log.borrow_mut().request_headers = Some(list);

    // ----- forward; the rest of the request body goes on through the filters (run_then_spawn) -----
    let stop = StopPump(chain.clone());
    let request = if src.finished && !carry.pending() {
        http::Request::from_parts(parts, body::empty())
    } else {
        let (tx, body) = body::channel(4);
        let task_chain = chain.clone();
        let handle = run_then_spawn(async move {
            let order = task_chain.order.clone();
            let sink = Sink::Channel(&tx);
            if let Err((_, end)) =
                pump(&task_chain, Direction::Request, &order, carry, src, sink).await
            {
                task_chain.raise_late(end);
            }
        });
        *chain.request_pump.borrow_mut() = handle;
        http::Request::from_parts(parts, body)
    };
    let fwd = forward(request);
    tokio::pin!(fwd);
    let response = loop {
        let late = chain.late_signal.notified();
        if let Some(end) = chain.take_late() {
            drop(stop);
            return request_ended(&chain, end).await;
        }
        tokio::select! {
            r = &mut fwd => break r,
            () = late => {}
        }
    };
    chain.response_started.set(true);

    // ----- response headers -----
    let (mut rparts, rbody) = response.into_parts();
    let info = rparts
        .extensions
        .get::<UpstreamInfo>()
        .cloned()
        .unwrap_or_default();
    chain.set_response(&ResponseMeta {
        code: rparts.status.as_u16(),
        info: info.clone(),
    });
    let mut rsrc = Source::new(rbody);
    let reverse: Vec<usize> = order.iter().rev().copied().collect();
    let head = headers_pass(
        &chain,
        Direction::Response,
        &reverse,
        response_to_list(&rparts),
        rsrc.finished,
        &mut rsrc,
    )
    .await;
    let (list, carry, changed) = match head {
        Ok(head) => head,
        // Headers not yet downstream: Envoy sends a reply directly, bypassing the filters.
        Err((_, end)) => return direct_end(&chain, end, info),
    };
    if changed {
        apply_response_list(&mut rparts, &list);
    }
    chain.log.borrow_mut().response_headers = Some(list);
    chain.mark_headers_sent();
    if rsrc.finished && !carry.pending() {
        drop(stop);
        drop(chain); // on_log / on_done / on_delete (unless the request body task still runs)
        return http::Response::from_parts(rparts, body::empty());
    }
    let body = response_body(chain, reverse, carry, rsrc, stop);
    http::Response::from_parts(rparts, body)
}

/// The request side ended the stream before any response existed.
async fn request_ended(chain: &Rc<Chain>, end: End) -> http::Response<Body> {
    chain.stop_request_pump();
    match end {
        End::PluginReply(lr) => local_reply_via_chain(chain, lr).await,
        End::Reset => reset_response(),
        End::Fail => fail_response(),
    }
}

/// A reply sent straight to the client while response headers exist but have not gone out
/// (Envoy's `sendDirectLocalReply`), or a reset/503.
fn direct_end(chain: &Rc<Chain>, end: End, info: UpstreamInfo) -> http::Response<Body> {
    chain.stop_request_pump();
    match end {
        End::PluginReply(lr) => {
            let list = local_reply_list(&lr);
            chain.log.borrow_mut().response_headers = Some(list.clone());
            chain.mark_headers_sent();
            let info = UpstreamInfo {
                code_details: lr.details.clone(),
                ..info
            };
            build_response(&list, body::full(lr.body), info)
        }
        End::Reset => reset_response(),
        End::Fail => fail_response(),
    }
}

/// A local reply raised while the request was being decoded: runs through the response
/// callbacks of the filters that saw the request (in reverse), as Envoy's
/// `sendLocalReply` via the filter chain does.
async fn local_reply_via_chain(chain: &Rc<Chain>, lr: PluginReply) -> http::Response<Body> {
    chain.response_started.set(true);
    let info = local_reply_info(&lr);
    chain.set_response(&ResponseMeta {
        code: u16::try_from(lr.status).unwrap_or(500),
        info: info.clone(),
    });
    let upto: Vec<usize> = chain.order[..chain.reached.get()]
        .iter()
        .rev()
        .copied()
        .collect();
    let mut src = Source::new(body::full(lr.body.clone()));
    let eos = src.finished;
    let head = headers_pass(
        chain,
        Direction::Response,
        &upto,
        local_reply_list(&lr),
        eos,
        &mut src,
    )
    .await;
    let (list, carry, _) = match head {
        Ok(head) => head,
        Err((_, end)) => return direct_end(chain, end, info),
    };
    chain.log.borrow_mut().response_headers = Some(list.clone());
    chain.mark_headers_sent();
    let mut body = Vec::new();
    if let Err((_, end)) = pump(
        chain,
        Direction::Response,
        &upto,
        carry,
        src,
        Sink::Collect(&mut body),
    )
    .await
    {
        tracing::debug!(?end, "local reply ended while its body passed the filters");
        return reset_response();
    }
    build_response(&list, body::full(body), info)
}

/// The response body, passed through the filters' `on_response_body` inline as far as it is
/// there, the rest by a task on the worker's `LocalSet` (the VMs are `!Send`, the body must be
/// `Send`; [`run_then_spawn`]). The pump holds the streams: when the body ends, or the client
/// goes away, they end (`on_log`, `on_done`, `on_delete`) and the request body stops flowing.
fn response_body(
    chain: Rc<Chain>,
    reverse: Vec<usize>,
    carry: Carry,
    src: Source,
    stop: StopPump,
) -> Body {
    let (tx, rx) = body::channel(4);
    run_then_spawn(async move {
        let result = pump(
            &chain,
            Direction::Response,
            &reverse,
            carry,
            src,
            Sink::Channel(&tx),
        )
        .await;
        if let Err((_, end)) = result {
            // The headers are out: whatever ended the stream, the client sees a reset.
            tracing::debug!(?end, "stream ended during the response body: reset");
            let _ = tx
                .send(Err(Box::new(ResetError(
                    "stream reset by a Wasm plugin during the response body",
                ))))
                .await;
        }
        drop(stop);
        drop(chain); // on_log / on_done / on_delete
    });
    rx
}

/// Runs a body pump as far as it gets without waiting, and only what is left as a task on the
/// worker's `LocalSet` (`None`: it finished inline).
///
/// A body whose first chunks are already there (the upstream's answer arrived in one read, a
/// body a filter held with the headers) then passes the filters and lands in the channel before
/// the message is handed on, so the connection writes headers and body in one go. As a task
/// alone, the connection found the channel empty, wrote the headers by themselves, and the body
/// followed after a task switch: one more write and one more wake-up of the peer per request
/// (bench/PROFILE.md, "One write per response"; Envoy's order: envoy/FIDELITY.md H9). The
/// first poll uses a no-op waker; the task's first poll (it is scheduled at once) registers the
/// real one wherever the pump waits.
fn run_then_spawn<F>(pump: F) -> Option<tokio::task::JoinHandle<()>>
where
    F: std::future::Future<Output = ()> + 'static,
{
    let mut pump = Box::pin(pump);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match pump.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(()) => None,
        std::task::Poll::Pending => Some(tokio::task::spawn_local(pump)),
    }
}
