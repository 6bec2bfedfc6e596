//! Names of the envelope attributes stored with each queued message, and the direction of a
//! message: the queue's own vocabulary, shared by whoever writes and reads it.

/// Contract id(s), comma-separated.
pub const CONTRACT: &str = "contract";
/// `inbound` or `outbound`.
pub const DIRECTION: &str = "direction";
/// The client's IP address.
pub const CLIENT_IP: &str = "client_ip";
/// The client's HELO/EHLO name.
pub const HELO: &str = "helo";
/// Header fields to put in front of the message when it is delivered (scan result).
pub const PREPEND: &str = "prepend";
/// Set on delivery status notifications we generate.
pub const DSN_OF: &str = "dsn_of";
/// Set on warning mails we generate: the queue id of the message they are about.
pub const WARNING_OF: &str = "warning_of";
/// The sender declared `SMTPUTF8`: the next hop must have it too (RFC 6531 §3.4).
pub const SMTPUTF8: &str = "smtputf8";
/// The message holds 8-bit bytes: sent as it is only to a next hop with 8BITMIME, else made
/// 7-bit first (RFC 6152 §3).
pub const EIGHT_BIT: &str = "8bit";
/// Set on the empty marker committed for a deleted message (the commit point of its warnings);
/// such a file is never delivered and is removed wherever it is found.
pub const DROPPED: &str = "dropped";

/// The envelope of a message the gateway generates (a warning or a DSN) about message `about`:
/// from `<>` to `to`, in `contract`, with `direction` (`warning` or `dsn`) and the attribute
/// that points at the original (`WARNING_OF` or `DSN_OF`).
pub fn generated(to: &str, contract: &str, direction: &str, about_attr: &str, about: &str) -> crate::Envelope {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    crate::Envelope {
        sender: String::new(),
        recipients: vec![to.to_string()],
        received_at: now,
        attrs: vec![
            (CONTRACT.into(), contract.into()),
            (DIRECTION.into(), direction.into()),
            (about_attr.into(), about.into()),
        ],
    }
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the Internet to a customer's server (R1).
    Inbound,
    /// From a customer's sending server to the Internet (R2).
    Outbound,
}

impl Direction {
    /// The attribute / log value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}
