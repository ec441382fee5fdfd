//! The mock's response body: either whole, or fed frame by frame from a task (for trickling,
//! SSE and cuts). It carries the in-flight guard so a request counts as in flight until its
//! answer is finished or abandoned.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::stats::InFlight;

/// Response body of the mock server.
pub struct MockBody {
    kind: Kind,
    _in_flight: Option<InFlight>,
}

enum Kind {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Bytes>),
}

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>, guard: Option<InFlight>) -> Self {
        MockBody {
            kind: Kind::Full(Some(bytes.into())),
            _in_flight: guard,
        }
    }

    /// A streamed body and the sender that feeds it; dropping the sender ends the body cleanly.
    pub(crate) fn channel(guard: Option<InFlight>) -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(1);
        (
            tx,
            MockBody {
                kind: Kind::Channel(rx),
                _in_flight: guard,
            },
        )
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Channel(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Channel(_) => SizeHint::default(),
        }
    }
}
