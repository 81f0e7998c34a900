//! Accepting and serving connections. Connections are served one hyper task each (rather than
//! through `axum::serve`) so a handler can kill *its* connection: the `reset_probability` fault
//! must look to the client like a real TCP reset, not like an HTTP status.

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::conn::{ConnCtl, ResettableStream};
use crate::{admin, api, Emulator, EmulatorConfig, EmulatorError, Faults, StateSnapshot};

/// How long shutdown waits for in-flight requests before cutting connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running emulator; dropping it stops accepting (prefer `shutdown().await` in tests).
#[derive(Debug)]
pub struct RunningEmulator {
    /// The bound address (ask for port 0 and read the real port here).
    pub addr: SocketAddr,
    /// Shared state, for the typed accessors below.
    emulator: Emulator,
    /// Flipped to `true` to stop the accept loop and drain connections.
    shutdown: watch::Sender<bool>,
    /// The accept loop, awaited by `shutdown`.
    task: Option<JoinHandle<()>>,
}

impl RunningEmulator {
    /// `http://IP:PORT` (an unspecified bind address is reported as 127.0.0.1).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// The same data as `GET /_emulator/state`.
    pub fn state(&self) -> StateSnapshot {
        self.emulator.state()
    }

    /// Replaces every fault knob at once.
    pub fn set_faults(&self, faults: Faults) {
        self.emulator.set_faults(faults);
    }

    /// The current knobs (`fail_first_n` is what is left).
    pub fn faults(&self) -> Faults {
        self.emulator.faults()
    }

    /// The shared state handle (for `reset` and friends).
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::warn!(%error, "emulator accept loop ended abnormally");
            }
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Starts serving `listener` in the background with a fresh emulator built from `config`.
pub async fn spawn(
    config: EmulatorConfig,
    listener: TcpListener,
) -> Result<RunningEmulator, EmulatorError> {
    let addr = listener.local_addr().map_err(EmulatorError::LocalAddr)?;
    let emulator = Emulator::new(config);
    let (shutdown, watcher) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, router(emulator.clone()), watcher));
    tracing::info!(%addr, "moengage emulator serving");
    Ok(RunningEmulator {
        addr,
        emulator,
        shutdown,
        task: Some(task),
    })
}

/// The Data API routes plus the admin ones.
fn router(emulator: Emulator) -> Router {
    Router::new()
        // The static segment wins over `{app}` (a workspace named "delete" could not Track
        // User here; MoEngage's own paths share that ambiguity).
        .route("/v1/customer/delete", post(api::delete))
        .route("/v1/customer/{app}", post(api::customer))
        .route("/v1/event/{app}", post(api::event))
        .route("/v1/transition/{app}", post(api::transition))
        .route("/v1/integrations/authentication", post(api::authentication))
        .route("/_emulator/state", get(admin::state))
        .route(
            "/_emulator/faults",
            get(admin::faults).post(admin::set_faults),
        )
        .route("/_emulator/reset", post(admin::reset))
        .fallback(admin::not_found)
        .with_state(emulator)
}

async fn accept_loop(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, router.clone(), shutdown.clone()));
                }
                Err(error) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // A change (or the sender gone) both mean stop.
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!("emulator connections still open after grace period; aborting them");
    }
    // Dropping the JoinSet aborts whatever is left.
}

/// Serves one keep-alive connection until the client closes it, a handler resets it, or the
/// server shuts down.
async fn serve_connection(stream: TcpStream, router: Router, mut shutdown: watch::Receiver<bool>) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set_nodelay failed");
    }
    let ctl = Arc::new(ConnCtl::default());
    let io = TokioIo::new(ResettableStream::new(stream, Arc::clone(&ctl)));
    let service = TowerToHyperService::new(router.layer(Extension(Arc::clone(&ctl))));
    let mut connection = pin!(http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(io, service));
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = ctl.reset_requested() => {
                tracing::debug!("resetting connection (injected fault)");
                return; // Dropping `connection` drops the stream, which sends the RST.
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
