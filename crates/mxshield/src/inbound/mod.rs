//! The receiving side: listeners, connection limits, sessions and graceful shutdown.
//!
//! - [`policy`]: the relay decisions as pure functions.
//! - [`session`]: [`session::GatewaySession`], the gateway's [`smtp::server::Policy`].
//! - [`hops`]: loop detection by counting `Received:` headers.
//! - [`strip`]: incoming header fields we own are removed (no forged scan results).

pub mod hops;
pub mod policy;
pub mod session;
pub mod strip;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp::server::{Session, SessionConfig};
use spool::{QueueId, Spool};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::SmtpConfig;
use crate::filter::Filter;
use crate::live::LiveContracts;
use crate::msglog::MessageLog;

/// Everything a session needs, shared by all sessions.
pub struct InboundContext {
    pub smtp: SmtpConfig,
    pub spool: Spool,
    pub contracts: LiveContracts,
    pub filter: Filter,
    /// Tells delivery that a message was queued.
    pub queued: mpsc::UnboundedSender<QueueId>,
    /// The message log (R19).
    pub msglog: MessageLog,
}

/// Serves SMTP on `listeners` until `shutdown` turns true, then lets sessions finish for up
/// to `shutdown_timeout`.
pub async fn serve(
    ctx: Arc<InboundContext>,
    listeners: Vec<TcpListener>,
    session_config: SessionConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = ctx.smtp.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let (ctx, slots, cfg, stop) = (ctx.clone(), slots.clone(), session_config.clone(), shutdown.clone());
        accept_tasks.push(tokio::spawn(accept_loop(ctx, listener, slots, cfg, stop)));
    }
    let _ = shutdown.wait_for(|s| *s).await;
    for t in &accept_tasks {
        t.abort();
    }
    let drained = tokio::time::timeout(ctx.smtp.shutdown_timeout, slots.acquire_many(max as u32)).await;
    match drained {
        Ok(_) => tracing::info!(event = "sessions_drained"),
        Err(_) => tracing::warn!(event = "sessions_cut", after = ?ctx.smtp.shutdown_timeout),
    }
}

async fn accept_loop(
    ctx: Arc<InboundContext>,
    listener: TcpListener,
    slots: Arc<Semaphore>,
    cfg: SessionConfig,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(event = "accept_failed", error = %e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let (ctx, cfg, stop) = (ctx.clone(), cfg.clone(), shutdown.clone());
                tokio::spawn(async move {
                    run_session(ctx, stream, peer, cfg, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let mut s = stream;
                    let _ = s.write_all(b"421 4.3.2 Too many connections, try again later\r\n").await;
                    tracing::info!(event = "refused", stage = "connect", client_ip = %peer.ip(), reply = "421 4.3.2 too many connections");
                });
            }
        }
    }
}

async fn run_session(
    ctx: Arc<InboundContext>,
    stream: TcpStream,
    peer: SocketAddr,
    cfg: SessionConfig,
    shutdown: watch::Receiver<bool>,
) {
    let client = peer.ip();
    let policy = session::GatewaySession::new(ctx, client);
    match Session::new(Box::new(stream), policy, cfg, Some(shutdown)).run().await {
        Ok(end) => tracing::debug!(event = "session_end", client_ip = %client, end = ?end),
        Err(e) => tracing::debug!(event = "session_end", client_ip = %client, error = %e),
    }
}
