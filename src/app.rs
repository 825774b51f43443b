//! Wires the pieces together: listener, pools, cancel registry, the
//! maintenance task, and shutdown (one token to stop accepting and let
//! transactions finish, one to close everyone when `shutdown_timeout` ends).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::session;
use crate::shared::Shared;

pub struct App {
    shared: Arc<Shared>,
    listener: TcpListener,
    /// The `/metrics`, `/healthz`, `/readyz` listener, if configured.
    ops: Option<TcpListener>,
    /// The serverless front's listener (`http_listen`), if configured.
    http: Option<TcpListener>,
}

impl App {
    /// Binds the listen address (port 0 picks a free one, for tests).
    pub async fn bind(config: Config) -> std::io::Result<App> {
        let listen = config.general.listen;
        let context = |what: &str, addr: SocketAddr, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
        };
        let reuse_port = config.general.reuse_port;
        let listener = bind(listen, reuse_port).map_err(|e| context("listen", listen, e))?;
        if in_clear(&config.general) {
            tracing::warn!(%listen, "listening beyond loopback without TLS: passwords and data cross the network in clear; set tls_cert_file and tls_key_file (--tls-cert, --tls-key)");
        }
        let instance_id = config.general.instance_id;
        let traces = match &config.general.otlp {
            Some(o) => Some(
                crate::ops::traces::Traces::start(&o.endpoint, o.sample_ratio, instance_id)
                    .map_err(|e| {
                        std::io::Error::other(format!(
                            "cannot export traces to {}: {e}",
                            o.endpoint
                        ))
                    })?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared::new(config, traces));
        shared.pools.prepare(&shared.config.load());
        let ops = match shared.config.load().general.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| context("metrics_listen", addr, e))?,
            ),
            None => None,
        };
        let http = match shared.config.load().general.http.as_ref().map(|h| h.listen) {
            Some(addr) => {
                Some(bind(addr, reuse_port).map_err(|e| context("http_listen", addr, e))?)
            }
            None => None,
        };
        Ok(App {
            shared,
            listener,
            ops,
            http,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the `/metrics` endpoint, if it is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address of the serverless front, if it is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The state sessions share (for tests and embedding).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Cancel it to start a graceful shutdown.
    pub fn shutdown_token(&self) -> crate::shared::StopHandle {
        crate::shared::StopHandle(self.shared.clone())
    }

    /// Accepts clients until shutdown, then drains: running transactions get
    /// up to `shutdown_timeout`, after which the rest are closed with 57P01.
    /// Returns when every task it started has ended.
    pub async fn run(self) {
        let App {
            shared,
            listener,
            ops,
            http,
        } = self;
        let tracker = TaskTracker::new();
        // Stops accepting with the TCP listener; its connections drain on
        // the same tracker as TCP clients.
        let http_task = http.map(|l| {
            let front = crate::serverless::serve(
                l,
                shared.clone(),
                tracker.clone(),
                shared.shutdown.clone(),
            );
            tokio::spawn(front)
        });
        tracker.spawn(maintain(shared.clone()));
        tracker.spawn(crate::net::peers::keep_count(shared.clone()));
        // Serves through the drain (so /readyz can say so), stopped last.
        let ops_stop = CancellationToken::new();
        let ops_task =
            ops.map(|l| tokio::spawn(crate::ops::http::serve(l, shared.clone(), ops_stop.clone())));
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        tracker.spawn(session::run(shared.clone(), stream, peer));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                _ = shared.shutdown.cancelled() => break,
            }
        }
        drop(listener);
        if let Some(task) = http_task {
            let _ = task.await;
        }
        tracker.close();
        let timeout = shared.config.load().general.shutdown_timeout;
        tracing::info!(
            ?timeout,
            "shutting down: no new clients; waiting for running transactions"
        );
        if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
            tracing::warn!("shutdown_timeout reached; closing remaining clients");
            shared.stop_now();
            tracker.wait().await;
        }
        shared.pools.close();
        if let Some(traces) = shared.traces.clone() {
            // Blocks until the last batch is sent (through this runtime).
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
        ops_stop.cancel();
        if let Some(task) = ops_task {
            let _ = task.await;
        }
        tracing::info!("shutdown complete");
    }
}

/// A listening socket; with `reuse_port`, SO_REUSEPORT lets a new process
/// bind the same address while this one drains (the kernel then spreads
/// new connections over both until this one closes its socket).
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's TcpListener::bind: a restart does not wait for TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Clients beyond loopback would send passwords and data in clear.
fn in_clear(g: &crate::config::General) -> bool {
    !g.listen.ip().is_loopback() && g.client_tls == crate::config::ClientTlsMode::Disable
}

/// Idle timeouts, lifetimes and min_idle warm-up, once a second.
async fn maintain(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => shared.pools.maintain(&shared.config.load_full(), &shared.incidents).await,
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// Raises the open-file soft limit to the hard limit; returns the new soft
/// limit (each client needs one descriptor, each server connection one).
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ClientTlsMode, Config, Overrides};

    #[test]
    fn listening_beyond_loopback_without_tls_is_in_clear() {
        let ov = Overrides {
            primary: Some("postgres://a:b@127.0.0.1:1/x".into()),
            ..Default::default()
        };
        let mut g = Config::load(None, &ov).unwrap().general;
        assert!(!super::in_clear(&g), "loopback");
        g.listen = "0.0.0.0:6432".parse().unwrap();
        assert!(super::in_clear(&g), "all interfaces, no TLS");
        g.client_tls = ClientTlsMode::Allow;
        assert!(!super::in_clear(&g), "TLS offered");
    }
}
