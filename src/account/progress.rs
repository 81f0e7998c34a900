//! Live counters of one run, shared between the pipeline (which updates them as rows settle) and
//! whoever shows progress (the terminal `sync`'s bars and lines).

use std::sync::Arc;

/// Live counters of one run, for the terminal's progress bar: the settled rows as the ledger
/// counts them, and the requests sent.
#[derive(Debug, Default)]
pub struct Progress {
    pub rows_read: std::sync::atomic::AtomicU64,
    pub rows_delivered: std::sync::atomic::AtomicU64,
    pub rows_unchanged: std::sync::atomic::AtomicU64,
    pub rows_rejected: std::sync::atomic::AtomicU64,
    pub rows_dead_lettered: std::sync::atomic::AtomicU64,
    pub requests_sent: std::sync::atomic::AtomicU64,
    /// The object's size as stored (0 when unknown), and the bytes of it read so far: an ETA.
    pub object_size: std::sync::atomic::AtomicU64,
    pub bytes_read: std::sync::atomic::AtomicU64,
    /// Requests per minute in force for the sync's API.
    pub rate_per_minute: std::sync::atomic::AtomicU64,
    /// The first pass is classifying the rows against the sync state (nothing is sent yet);
    /// `bytes_read` counts its reading, then starts again for the sending pass.
    pub classifying: std::sync::atomic::AtomicBool,
}

/// Counts the bytes read through it into [`Progress::bytes_read`].
pub struct CountingRead<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R> CountingRead<R> {
    pub fn new(inner: R, progress: Arc<Progress>) -> Self {
        CountingRead { inner, progress }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingRead<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before) as u64;
        self.progress
            .bytes_read
            .fetch_add(read, std::sync::atomic::Ordering::Relaxed);
        poll
    }
}

impl Progress {
    pub fn update(&self, s: &crate::account::report::ObjectSummary, rate: Option<f64>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rows_read.store(s.rows_read, Relaxed);
        self.rows_delivered.store(s.rows_delivered, Relaxed);
        self.rows_unchanged.store(s.rows_unchanged, Relaxed);
        self.rows_rejected.store(s.rows_rejected, Relaxed);
        self.rows_dead_lettered.store(s.rows_dead_lettered, Relaxed);
        self.requests_sent.store(s.requests_sent, Relaxed);
        if let Some(r) = rate {
            self.rate_per_minute.store(r as u64, Relaxed);
        }
    }
}
