//! SMTP on the wire, knowing nothing of tenants, spool or scanning.
//!
//! - [`address`]: RFC 5321 paths and mailboxes ([`Path`], [`Mailbox`]), parsed strictly enough
//!   that relay tricks can be seen by the caller.
//! - [`command`]: a sans-IO command parser ([`Command`]).
//! - [`reply`]: replies with enhanced status codes ([`Reply`]).
//! - [`data`]: the DATA decoder (dot-unstuffing, end detection, line-end normalisation).
//! - [`server`]: a [`server::Session`] generic over its I/O that asks a [`server::Policy`] for
//!   every decision.
//! - [`client`]: a client that delivers one message to one host ([`client::Client`]).

pub mod address;
pub mod client;
pub mod command;
pub mod data;
mod reader;
pub mod reply;
pub mod server;

pub use address::{Mailbox, Path};
pub use command::Command;
pub use reply::{Reply, Status};

use tokio::io::{AsyncRead, AsyncWrite};

/// Any byte stream a session or client can run over (TCP, TLS, in-memory duplex).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
