//! Per-message delivery status: one entry per recipient plus the next attempt time.
//!
//! Encoded as `"MXSTAT" 0x01`, a u32-le length, UTF-8 text lines, and a u32-le CRC.

use crate::format::FormatError;

const MAGIC: &[u8; 7] = b"MXSTAT\x01";

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptState {
    /// Not tried yet.
    Pending,
    /// Accepted by the next hop.
    Delivered,
    /// Failed temporarily; will be retried.
    Deferred,
    /// Failed permanently (5xx, or the queue lifetime ran out); a DSN is due or was sent.
    Failed,
}

impl RcptState {
    /// The word in the status file (and for the operator).
    pub fn as_str(self) -> &'static str {
        match self {
            RcptState::Pending => "pending",
            RcptState::Delivered => "delivered",
            RcptState::Deferred => "deferred",
            RcptState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RcptState::Pending,
            "delivered" => RcptState::Delivered,
            "deferred" => RcptState::Deferred,
            "failed" => RcptState::Failed,
            _ => return None,
        })
    }

    /// Delivered or failed: nothing more will be tried.
    pub fn is_final(self) -> bool {
        matches!(self, RcptState::Delivered | RcptState::Failed)
    }
}

/// One recipient's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptStatus {
    /// Pending, delivered, deferred or failed.
    pub state: RcptState,
    /// The last reply or error (empty if none).
    pub last_error: String,
    /// Host that gave the last answer (empty if none).
    pub remote: String,
}

/// Status of one queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Unix milliseconds of the next attempt (0 = now).
    pub next_attempt: u64,
    /// A DSN for the failed recipients has been queued.
    pub dsn_sent: bool,
    /// Same order as the envelope's recipients.
    pub rcpts: Vec<RcptStatus>,
}

impl Status {
    /// A fresh status: every recipient pending.
    pub fn new(recipients: usize) -> Status {
        let pending = RcptStatus { state: RcptState::Pending, last_error: String::new(), remote: String::new() };
        Status { attempts: 0, next_attempt: 0, dsn_sent: false, rcpts: vec![pending; recipients] }
    }

    /// Every recipient is delivered or failed.
    pub fn is_complete(&self) -> bool {
        self.rcpts.iter().all(|r| r.state.is_final())
    }

    /// The status file's bytes (text lines and a CRC32), as [`Status::decode`] reads them.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("attempts {}\nnext {}\ndsn {}\n", self.attempts, self.next_attempt, self.dsn_sent as u8);
        for r in &self.rcpts {
            text.push_str(&format!("rcpt\t{}\t{}\t{}\n", r.state.as_str(), clean(&r.remote), clean(&r.last_error)));
        }
        let mut out = Vec::with_capacity(text.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
        out
    }

    /// Decodes and checks a status file.
    pub fn decode(bytes: &[u8]) -> Result<Status, FormatError> {
        let bad = || FormatError::BadStatus;
        if bytes.len() < 15 || &bytes[..7] != MAGIC {
            return Err(bad());
        }
        let len = u32::from_le_bytes(bytes[7..11].try_into().expect("4 bytes")) as usize;
        if bytes.len() != 11 + len + 4 {
            return Err(bad());
        }
        let crc = u32::from_le_bytes(bytes[11 + len..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..11 + len]) != crc {
            return Err(FormatError::Checksum);
        }
        let text = std::str::from_utf8(&bytes[11..11 + len]).map_err(|_| bad())?;
        let mut lines = text.lines();
        let mut field = |name: &str| -> Result<u64, FormatError> {
            let l = lines.next().ok_or_else(bad)?;
            l.strip_prefix(name).and_then(|v| v.trim().parse().ok()).ok_or_else(bad)
        };
        let attempts = field("attempts ")? as u32;
        let next_attempt = field("next ")?;
        let dsn_sent = field("dsn ")? == 1;
        let mut rcpts = Vec::new();
        for l in lines {
            let mut parts = l.splitn(4, '\t');
            if parts.next() != Some("rcpt") {
                return Err(bad());
            }
            let state = parts.next().and_then(RcptState::parse).ok_or_else(bad)?;
            let remote = parts.next().ok_or_else(bad)?.to_string();
            let last_error = parts.next().ok_or_else(bad)?.to_string();
            rcpts.push(RcptStatus { state, last_error, remote });
        }
        Ok(Status { attempts, next_attempt, dsn_sent, rcpts })
    }
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}
