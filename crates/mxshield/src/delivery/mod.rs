//! The sending side: a scheduler over the spool, routing, SMTP delivery and DSNs.
//!
//! - [`scheduler`]: which message is tried when (fresh mail first, retries apart, back-off).
//! - [`route`]: where a domain's mail goes.
//! - [`courier`]: the SMTP client side, with connection reuse and dead-host memory.
//! - [`dsn`]: RFC 3464 bounces.
//! - [`attempt`]: one delivery attempt of one message, from spool to status.

pub mod attempt;
pub mod courier;
pub mod dsn;
pub mod route;
pub mod scheduler;

use std::sync::Arc;

use spool::{QueueId, Spool};
use tokio::sync::mpsc;

use crate::config::DeliveryConfig;
use crate::msglog::MessageLog;

/// What every delivery attempt shares.
pub struct DeliveryContext {
    pub cfg: DeliveryConfig,
    pub spool: Spool,
    pub router: route::Router,
    pub courier: courier::Courier,
    /// Name in DSNs' `Reporting-MTA`.
    pub hostname: String,
    /// `From:` of DSNs.
    pub postmaster: String,
    /// Queues a message we generated (a DSN) for delivery.
    pub queued: mpsc::UnboundedSender<QueueId>,
    /// The message log: each recipient's outcome goes there.
    pub msglog: MessageLog,
}

/// Shared handle.
pub type Ctx = Arc<DeliveryContext>;
