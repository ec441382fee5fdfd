//! The passes of headers, body chunks and trailers through a range of filters, with Envoy's
//! pause semantics (module docs of [`super`]).

use std::ops::Range;

use super::chain::{
    dead, outcome, too_large, wait_resume, Carry, Chain, End, Fed, Source, Step, Unit,
};
use crate::abi::body_buffer::BodyBuffer;
use crate::abi::state::{Direction, HeaderList};
use crate::vm::HttpStream;

/// The headers as the filter of `s` left them, for the next one. After a Continue from the
/// headers callback the map is gone for the plugin (moved out); after a resume it stays
/// reachable where Envoy keeps it (copied).
pub(super) fn take_headers(s: &HttpStream, dir: Direction, continued: bool) -> HeaderList {
    s.with(|st| {
        if continued {
            st.side_mut(dir).reach.headers = false;
        }
        if st.side_mut(dir).reach.headers {
            st.side_mut(dir).headers.clone()
        } else {
            st.side_mut(dir).headers.take()
        }
    })
    .flatten()
    .unwrap_or_default()
}

/// Passes one chunk through `order[range]`; each filter's buffered data is kept in its stream
/// state, so the callback sees the whole buffer so far (the chunks themselves: never copied).
pub(super) async fn feed(
    chain: &Chain,
    dir: Direction,
    order: &[usize],
    range: Range<usize>,
    mut chunk: BodyBuffer,
    eos: bool,
) -> Fed {
    for pos in range {
        let s = &chain.streams[order[pos]];
        if !s.is_live() {
            match dead(s) {
                Some(end) => return Fed::End(pos, end),
                None => continue,
            }
        }
        let (len, over) = s
            .with(|st| {
                let slot = &mut st.side_mut(dir).body;
                let buffering = slot.is_some();
                // Appending to an empty buffer takes the chunk's list as it is.
                let buf = slot.get_or_insert_with(BodyBuffer::default);
                buf.append(std::mem::take(&mut chunk));
                let len = buf.len();
                st.side_mut(dir).reach.body = true;
                st.side_mut(dir).resume = false;
                (len, buffering && len > chain.limit)
            })
            .unwrap_or((0, false));
        if over {
            // The filter was buffering and the new data passes the limit: Envoy answers
            // before calling the filter again (`Context::decodeData`, `addDecodedData`).
            return Fed::End(pos, too_large(dir));
        }
        let result = s.on_body(dir, len, eos);
        let mut step = outcome(chain, s, result, dir);
        if matches!(step, Step::Pause) {
            let held = s
                .with(|st| st.side_mut(dir).body.as_ref().map_or(0, BodyBuffer::len))
                .unwrap_or(0);
            if held > chain.limit {
                return Fed::End(pos, too_large(dir));
            }
            if eos {
                step = wait_resume(chain, s, dir).await;
            }
        }
        match step {
            Step::Continue => {
                chunk = s
                    .with(|st| {
                        st.side_mut(dir).reach.body = false;
                        st.side_mut(dir).body.take()
                    })
                    .flatten()
                    .unwrap_or_default();
            }
            Step::Pause => return Fed::Held,
            Step::End(end) => return Fed::End(pos, end),
        }
    }
    Fed::Out(chunk)
}

/// Passes trailers through `order[range]`. A filter holding body data lets it go when its
/// trailers continue (before the trailers); a Pause waits for `continue_stream`. Returns the
/// body data released on the way (it passed the rest of the range) and the trailers.
pub(super) async fn feed_trailers(
    chain: &Chain,
    dir: Direction,
    order: &[usize],
    range: Range<usize>,
    mut list: HeaderList,
) -> Result<(BodyBuffer, HeaderList), (usize, End)> {
    let mut released = BodyBuffer::default();
    let end = range.end;
    for pos in range {
        let s = &chain.streams[order[pos]];
        if !s.is_live() {
            match dead(s) {
                Some(e) => return Err((pos, e)),
                None => continue,
            }
        }
        let n = list.len();
        s.with(|st| {
            st.side_mut(dir).trailers = Some(std::mem::take(&mut list));
            st.side_mut(dir).reach.trailers = true;
            st.side_mut(dir).resume = false;
        });
        let result = s.on_trailers(dir, n);
        let mut step = outcome(chain, s, result, dir);
        let continued = matches!(step, Step::Continue);
        if matches!(step, Step::Pause) {
            step = wait_resume(chain, s, dir).await;
        }
        match step {
            Step::Continue => {
                let (trailers, held) = s
                    .with(|st| {
                        if continued {
                            st.side_mut(dir).reach.trailers = false;
                        }
                        let trailers = if st.side_mut(dir).reach.trailers {
                            st.side_mut(dir).trailers.clone()
                        } else {
                            st.side_mut(dir).trailers.take()
                        };
                        st.side_mut(dir).reach.body = false;
                        (trailers, st.side_mut(dir).body.take())
                    })
                    .unwrap_or((None, None));
                list = trailers.unwrap_or_default();
                if let Some(held) = held {
                    match feed(chain, dir, order, pos + 1..end, held, false).await {
                        Fed::Out(out) => released.append(out),
                        Fed::Held => {}
                        Fed::End(p, e) => return Err((p, e)),
                    }
                }
            }
            Step::Pause => {}
            Step::End(e) => return Err((pos, e)),
        }
    }
    Ok((released, list))
}

/// The headers of `order[h]` are held (StopIteration): the body keeps flowing through
/// `order[..=h]` until that filter lets it go (a Continue from its body or trailers callback,
/// or `continue_stream`). On return `carry` holds what passed `order[h]`.
pub(super) async fn held(
    chain: &Chain,
    dir: Direction,
    order: &[usize],
    h: usize,
    carry: &mut Carry,
    src: &mut Source,
) -> Result<(), (usize, End)> {
    let s = &chain.streams[order[h]];
    // First what an earlier held filter let through.
    if carry.pending() {
        let c = std::mem::take(carry);
        if let Some(done) = pass_carry(chain, dir, order, c, h + 1).await? {
            *carry = done;
            return Ok(());
        }
    }
    loop {
        let unit = tokio::select! {
            step = wait_resume(chain, s, dir) => {
                return match step {
                    Step::End(e) => Err((h, e)),
                    Step::Continue | Step::Pause => {
                        let data = s
                            .with(|st| {
                                st.side_mut(dir).reach.body = false;
                                st.side_mut(dir).body.take()
                            })
                            .flatten()
                            .unwrap_or_default();
                        *carry = Carry { from: h + 1, data, eos: false, trailers: None };
                        Ok(())
                    }
                };
            }
            unit = src.next(), if !src.finished => unit,
        };
        // Fed outside the select: a resume arriving meanwhile waits for the next round.
        match unit {
            Unit::Data(data, eos) => {
                match feed(
                    chain,
                    dir,
                    order,
                    0..h + 1,
                    BodyBuffer::from_chunk(data),
                    eos,
                )
                .await
                {
                    Fed::Out(data) => {
                        *carry = Carry {
                            from: h + 1,
                            data,
                            eos,
                            trailers: None,
                        };
                        return Ok(());
                    }
                    Fed::Held => {}
                    Fed::End(pos, e) => return Err((pos, e)),
                }
            }
            Unit::Trailers(list) => {
                let (data, list) = feed_trailers(chain, dir, order, 0..h + 1, list).await?;
                *carry = Carry {
                    from: h + 1,
                    data,
                    eos: true,
                    trailers: Some(list),
                };
                return Ok(());
            }
            Unit::Error(e) => {
                tracing::debug!("body failed while a filter held the headers: {e}");
                return Err((h, End::Reset));
            }
            Unit::Finished => {}
        }
    }
}

/// Feeds `c` through `order[c.from..to]`. `Some(carry)` if everything passed (what now has to
/// pass `order[to..]`), `None` if a filter holds it.
pub(super) async fn pass_carry(
    chain: &Chain,
    dir: Direction,
    order: &[usize],
    c: Carry,
    to: usize,
) -> Result<Option<Carry>, (usize, End)> {
    let mut out = Carry {
        from: to,
        ..Carry::default()
    };
    if !c.data.is_empty() || (c.eos && c.trailers.is_none()) {
        let eos = c.eos && c.trailers.is_none();
        match feed(chain, dir, order, c.from..to, c.data, eos).await {
            Fed::Out(data) => {
                out.data = data;
                out.eos = eos;
            }
            Fed::Held => {
                if c.trailers.is_none() {
                    return Ok(None);
                }
            }
            Fed::End(pos, e) => return Err((pos, e)),
        }
    }
    if let Some(list) = c.trailers {
        let (data, list) = feed_trailers(chain, dir, order, c.from..to, list).await?;
        out.data.append(data);
        out.eos = true;
        out.trailers = Some(list);
    }
    Ok(Some(out))
}

/// Runs the headers of `dir` through `order`, waiting out pauses (and, for a filter allowed
/// to StopIteration, feeding it the body meanwhile). Returns the headers as the last filter
/// left them, the body that already went through some filters, and whether any filter
/// changed the headers.
pub(super) async fn headers_pass(
    chain: &Chain,
    dir: Direction,
    order: &[usize],
    mut list: HeaderList,
    eos: bool,
    src: &mut Source,
) -> Result<(HeaderList, Carry, bool), (usize, End)> {
    let mut carry = Carry::default();
    let mut changed = false;
    for (pos, &i) in order.iter().enumerate() {
        let s = &chain.streams[i];
        if !s.is_live() {
            match dead(s) {
                Some(e) => return Err((pos, e)),
                None => continue,
            }
        }
        if dir == Direction::Request {
            chain.reached.set(pos + 1);
        }
        let n = list.len();
        s.with(|st| {
            st.side_mut(dir).headers = Some(std::mem::take(&mut list));
            st.side_mut(dir).headers_changed = false;
            st.side_mut(dir).resume = false;
            st.side_mut(dir).reach.headers = true;
        });
        let result = s.on_headers(dir, n, eos);
        match outcome(chain, s, result, dir) {
            Step::Continue => list = take_headers(s, dir, true),
            Step::Pause if s.vm().spec().allow_on_headers_stop_iteration => {
                held(chain, dir, order, pos, &mut carry, src).await?;
                list = take_headers(s, dir, false);
            }
            Step::Pause => match wait_resume(chain, s, dir).await {
                Step::End(e) => return Err((pos, e)),
                Step::Continue | Step::Pause => list = take_headers(s, dir, false),
            },
            Step::End(e) => return Err((pos, e)),
        }
        changed |= s
            .with(|st| st.side_mut(dir).headers_changed)
            .unwrap_or(false);
    }
    Ok((list, carry, changed))
}
