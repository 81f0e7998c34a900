//! One connection's reset switch, shared by the handlers that flip it (`api`) and the connection
//! task that acts on it (`server`). It imports neither, so both depend on it and not on each
//! other.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Per-connection switch a handler flips to have its connection reset.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    /// Read when the socket is dropped: set means "close with RST, not FIN".
    reset: AtomicBool,
    /// Wakes the connection task so it drops the connection now.
    wake: Notify,
}

impl ConnCtl {
    /// Asks the connection task to drop this connection with a TCP reset.
    pub(crate) fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Resolves once [`ConnCtl::reset`] was called (also if it was called before this).
    pub(crate) async fn reset_requested(&self) {
        self.wake.notified().await;
    }
}

/// A TCP stream that closes with RST instead of FIN when its connection was reset on purpose.
pub(crate) struct ResettableStream {
    inner: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl ResettableStream {
    /// Wraps `inner`; dropping it sends a reset if `ctl` was flipped by then.
    pub(crate) fn new(inner: TcpStream, ctl: Arc<ConnCtl>) -> Self {
        Self { inner, ctl }
    }
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.ctl.reset.load(Ordering::SeqCst) {
            // SO_LINGER 0: the kernel discards the socket and sends RST on close.
            if let Err(error) = self.inner.set_zero_linger() {
                tracing::debug!(%error, "could not set SO_LINGER 0; the client sees a FIN instead");
            }
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
