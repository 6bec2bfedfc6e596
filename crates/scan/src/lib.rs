//! mxshield's built-in scanning engine: bytes in, report out (no SMTP, no spool).
//!
//! - [`sigdb`]: ClamAV-format databases (`.hdb`, `.hsb`, `.ndb`, `.ldb` subset, `.fp`,
//!   `.sfp`, `.ign2`, `.cvd`/`.cld`), unsupported kinds counted.
//! - [`matcher`]: [`Signatures`], the compiled database (hash tables, a 4-byte-anchor
//!   prefilter with exact verification, logical expressions), shared through an `Arc`.
//! - [`filetype`], [`unpack`] (zip, gzip, bzip2, xz, tar, 7z, RAR headers), [`encrypted`]
//!   (R11), [`walk`] (recursion under [`Limits`]), [`report`] ([`Report`], [`Layer`]) and
//!   [`Verdict`].
//! - [`Engine`]: one database and one set of limits; cheap to clone.
//! - [`clamd`]: the optional external engine (a running clamd, `INSTREAM` per MIME part).
//! - [`disinfect`]: a zip rebuilt without the infected members a report named.

pub mod clamd;
pub mod disinfect;
pub mod elf;
pub mod encrypted;
pub mod filetype;
pub mod html;
pub mod limits;
pub mod macho;
pub mod matcher;
pub mod pcre;
pub mod pe;
pub mod report;
pub mod sigdb;
pub mod unpack;
pub mod verdict;
pub mod walk;

use std::sync::Arc;

pub use filetype::FileType;
pub use limits::Limits;
pub use matcher::{Detection, Signatures};
pub use report::{Layer, Report};
pub use verdict::Verdict;

use limits::Budget;
use walk::Walker;

/// A scanning engine: an immutable compiled database and limits.
#[derive(Clone)]
pub struct Engine {
    sigs: Arc<Signatures>,
    limits: Limits,
}

impl Engine {
    /// An engine over `sigs` with `limits`.
    pub fn new(sigs: Arc<Signatures>, limits: Limits) -> Engine {
        Engine { sigs, limits }
    }

    /// The database in use.
    pub fn signatures(&self) -> &Arc<Signatures> {
        &self.sigs
    }

    /// The limits in use.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Scans a file or buffer; its type (including mail) is detected from its content.
    pub fn scan_bytes(&self, name: &str, data: &[u8]) -> Report {
        self.run(name, data, false)
    }

    /// Scans a message (RFC 5322 bytes): every MIME part, recursively.
    pub fn scan_message(&self, raw: &[u8]) -> Report {
        self.run("message", raw, true)
    }

    /// [`Engine::scan_message`] that stops as `stop` says rather than `max_time` from now.
    pub fn scan_message_until(&self, raw: &[u8], stop: &limits::Stop) -> Report {
        self.run_with("message", raw, true, Budget::until(self.limits, stop))
    }

    /// [`Engine::scan_bytes`] that stops as `stop` says.
    pub fn scan_bytes_until(&self, name: &str, data: &[u8], stop: &limits::Stop) -> Report {
        self.run_with(name, data, false, Budget::until(self.limits, stop))
    }

    fn run(&self, name: &str, data: &[u8], mail: bool) -> Report {
        self.run_with(name, data, mail, Budget::new(self.limits))
    }

    fn run_with(&self, name: &str, data: &[u8], mail: bool, budget: Budget) -> Report {
        let mut w = Walker::new(&self.sigs, budget);
        let root = w.scan(name.to_string(), data, 0, mail);
        Report { root, bytes_scanned: w.scanned, signatures: self.sigs.version.clone() }
    }
}
