//! Feeding the rest of a body through every filter into its destination.

use http_body::Frame;

use super::chain::{mark_ended_early, Carry, Chain, End, Fed, Source, Unit};
use super::convert::header_map;
use super::passes::{feed, feed_trailers, pass_carry};
use crate::abi::body_buffer::BodyBuffer;
use crate::abi::state::{Direction, HeaderList};
use crate::body::FrameSender;
use crate::seam::flags;

/// Where a pump sends what passed every filter.
pub(super) enum Sink<'a> {
    /// Into a body channel (the upstream request, or the downstream response).
    Channel(&'a FrameSender),
    /// Into memory (a local reply's body).
    Collect(&'a mut Vec<u8>),
}

impl Sink<'_> {
    /// False when the receiver is gone. A body some filter held goes on as the chunks it came
    /// in, one frame each.
    async fn data(&mut self, data: BodyBuffer) -> bool {
        match self {
            Sink::Channel(tx) => {
                for chunk in data.into_chunks() {
                    if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                        return false;
                    }
                }
                true
            }
            Sink::Collect(out) => {
                for chunk in data.into_chunks() {
                    out.extend_from_slice(&chunk);
                }
                true
            }
        }
    }

    async fn trailers(&mut self, list: &HeaderList) {
        if let Sink::Channel(tx) = self {
            let _ = tx.send(Ok(Frame::trailers(header_map(list)))).await;
        }
    }
}

/// Feeds the rest of a body through all filters of `order` into `sink`: first `carry`, then
/// what `src` still has. The response side also stops when the client goes away (Envoy's DC
/// flag) or the request side ended the stream.
pub(super) async fn pump(
    chain: &Chain,
    dir: Direction,
    order: &[usize],
    carry: Carry,
    mut src: Source,
    mut sink: Sink<'_>,
) -> Result<(), (usize, End)> {
    let n = order.len();
    if carry.pending() {
        let eos = carry.eos;
        if let Some(done) = pass_carry(chain, dir, order, carry, n).await? {
            let alive = sink.data(done.data).await;
            if let Some(list) = done.trailers {
                if dir == Direction::Response {
                    chain.log.borrow_mut().response_trailers = Some(list.clone());
                }
                sink.trailers(&list).await;
                return Ok(());
            }
            if eos || (!alive && dir == Direction::Response) {
                return Ok(());
            }
        }
    }
    loop {
        let unit = match &sink {
            Sink::Channel(tx) if dir == Direction::Response => {
                let tx = *tx;
                tokio::select! {
                    unit = src.next() => unit,
                    () = tx.closed() => {
                        // The client went away: Envoy's DC flag, visible in on_log.
                        mark_ended_early(chain, flags::DOWNSTREAM_CONNECTION_TERMINATION, "downstream_remote_disconnect");
                        return Ok(());
                    }
                    () = chain.late_signal.notified() => match chain.take_late() {
                        Some(end) => return Err((0, end)),
                        None => continue,
                    },
                }
            }
            _ => src.next().await,
        };
        match unit {
            Unit::Finished => return Ok(()),
            Unit::Data(data, eos) => {
                match feed(chain, dir, order, 0..n, BodyBuffer::from_chunk(data), eos).await {
                    Fed::Out(out) => {
                        if !sink.data(out).await && dir == Direction::Response {
                            mark_ended_early(
                                chain,
                                flags::DOWNSTREAM_CONNECTION_TERMINATION,
                                "downstream_remote_disconnect",
                            );
                            return Ok(());
                        }
                        if eos {
                            return Ok(());
                        }
                    }
                    Fed::Held => {}
                    Fed::End(pos, e) => return Err((pos, e)),
                }
            }
            Unit::Trailers(list) => {
                let (data, list) = feed_trailers(chain, dir, order, 0..n, list).await?;
                sink.data(data).await;
                if dir == Direction::Response {
                    chain.log.borrow_mut().response_trailers = Some(list.clone());
                }
                sink.trailers(&list).await;
                return Ok(());
            }
            Unit::Error(e) => {
                if dir == Direction::Response {
                    // The upstream cut the body after headers went out: Envoy's UC flag and
                    // details, visible to on_log (the filter counts it as an endpoint failure).
                    mark_ended_early(
                        chain,
                        flags::UPSTREAM_CONNECTION_TERMINATION,
                        "upstream_reset_after_response_started{connection_termination}",
                    );
                }
                if let Sink::Channel(tx) = &sink {
                    let _ = tx.send(Err(e)).await;
                }
                return Ok(());
            }
        }
    }
}
