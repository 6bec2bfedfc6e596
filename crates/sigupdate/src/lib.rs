//! Signature updates (SPEC R15): the operator publishes signed releases, each node checks,
//! installs and switches to them with nothing dropped.
//!
//! - [`keys`]: Ed25519 keys and signatures in minisign's formats.
//! - [`manifest`]: the signed description of a release.
//! - [`source`]: reading a publishing directory or a web server, bounded in size and time.
//! - [`release`]: publishing a release; fetching one and checking it as a node does
//!   (signature, version, expiry, engine, payload sizes and hashes, loading, self-test).
//! - [`store`]: a node's installed releases, written so that a crash never leaves a half one.
//! - [`updater`]: the node's check loop on a low-priority thread, handing new databases over.

pub mod keys;
pub mod manifest;
pub mod release;
pub mod source;
pub mod store;
pub mod updater;

/// The engine, re-exported so callers (and tests) name the same crate.
pub use scan;
