//! Connections whose writes must make progress, and that must say something. A client
//! that stops reading (its TCP window stays shut) would otherwise keep its connection,
//! and what the server queued for it, for as long as TCP keeps the connection up, which
//! is forever while the client's machine acknowledges the window probes. An event stream
//! never ends by itself, so for it this is the only way out; WebSocket connections have
//! their own write timeout too. A client that sends not one byte is not held open either
//! (hyper's own header timeout starts only once it has read some).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a write may wait for the client to take data before the connection counts
/// as gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// An acceptor that wraps each connection of `A` in [`Timed`], which must send its first
/// byte within `first_byte`.
#[derive(Clone)]
pub struct Deadlines<A> {
    pub inner: A,
    pub first_byte: Duration,
}

impl<A, I, S> Accept<I, S> for Deadlines<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
{
    type Stream = Timed<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let silent = Box::pin(tokio::time::sleep(self.first_byte));
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((
                Timed {
                    inner: stream,
                    stalled: None,
                    silent: Some(silent),
                },
                service,
            ))
        })
    }
}

/// A stream whose writes fail with `TimedOut` once one has waited [`WRITE_TIMEOUT`]
/// without the client taking any data, and whose reads fail so if its first byte is
/// late.
pub struct Timed<S> {
    inner: S,
    /// Since when a write waits, as a timer.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Until the first byte comes: when it is too late.
    silent: Option<Pin<Box<Sleep>>>,
}

impl<S> Timed<S> {
    /// The inner stream could not take data: fails once that has lasted too long.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(silent) = this.silent.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Pending => match silent.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing",
                ))),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                if buf.filled().len() > before {
                    this.silent = None;
                }
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
