//! The one body type every request and response carries through the host, and the few body
//! shapes built on it: a complete body, an empty one, one fed through a channel by a task, one
//! cut at a deadline.
//!
//! Why one module: the stream driver, the router, the cluster's HTTP calls and the admin
//! server all hand bodies to each other; with one `Body` and one `full` there is no conversion
//! between near-identical helpers at the seams. It names nothing else in the crate.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use tokio::time::{Instant, Sleep};

/// Error type of [`Body`]: whatever cut a body short (an upstream reset, a deadline, a plugin).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type requests and responses carry through the chain (`Send`, so hyper can write
/// it; unsync, so a task-fed channel fits).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A body with nothing in it (end of stream at once).
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A complete body; an empty `bytes` gives [`empty`], so the receiver sees end of stream
/// without a zero-length data frame.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    let bytes = bytes.into();
    if bytes.is_empty() {
        return empty();
    }
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The sending half of a [`channel`] body.
pub type FrameSender = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// A body fed frame by frame by a task (the request-body pump, the response-body pump): what
/// passed the filters goes in as it comes, so nothing is buffered beyond `capacity` frames.
pub fn channel(capacity: usize) -> (FrameSender, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (tx, ChannelBody { rx }.boxed_unsync())
}

struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

/// A body error that only carries why the stream was reset (the client sees a reset, the
/// server logs the reason).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResetError(pub &'static str);

/// The error a body reports when the route timeout passed mid-stream.
#[derive(Debug, thiserror::Error)]
#[error("upstream response timeout while streaming the body")]
pub struct BodyTimeout;

/// `inner`, failing with [`BodyTimeout`] at `deadline`: Envoy's route timeout covers the whole
/// response, and once headers went downstream a timeout can only cut the body.
pub struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    /// Wraps `inner` with a deadline.
    pub fn new(inner: Body, deadline: Instant) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(r);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
