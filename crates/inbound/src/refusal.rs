//! Why the gateway refuses a connection, a command or a message, and the one table that turns
//! each cause into its SMTP reply.
//!
//! The wire gets a code, an enhanced status (RFC 3463) and generic text; the cause itself,
//! with its details (which limit, how many hops, what failed), goes to the log only.

use filter::Refusal;
use smtp::{Reply, Status};

/// A reason to refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// Every session slot the client may take is in use.
    #[error("no session slot free")]
    Busy,
    /// The client's address already holds its share of the sessions.
    #[error("too many sessions from this address")]
    BusyClient,
    /// `MAIL FROM` with a source route.
    #[error("source route in the sender")]
    SenderSourceRoute,
    /// `RCPT TO` with a source route.
    #[error("source route in the recipient")]
    RecipientSourceRoute,
    /// `RCPT TO:<>`.
    #[error("null recipient")]
    NullRecipient,
    /// A recipient at an address literal (`user@[192.0.2.1]`), which no contract registers.
    #[error("address literal in the recipient")]
    AddressLiteral,
    /// A registered domain, but no such account.
    #[error("no such account")]
    NoSuchAccount,
    /// Neither a registered domain nor a registered sending server.
    #[error("relaying denied")]
    RelayDenied,
    /// More data than `max_message_size`.
    #[error("message too big")]
    TooBig,
    /// The spool could not take the message.
    #[error("spool error: {0}")]
    Spool(String),
    /// The filter stage refused the message.
    #[error(transparent)]
    Content(#[from] Refusal),
}

impl Cause {
    /// The reply the client gets for this cause.
    pub fn reply(&self) -> Reply {
        let (code, status, text) = self.table();
        Reply::new(code, status, text)
    }

    /// The one table: code, enhanced status, generic text.
    fn table(&self) -> (u16, Status, &'static str) {
        use Cause::*;
        const LOCAL_ERROR: (u16, Status, &str) =
            (451, Status::new(4, 3, 0), "Local error in processing, try again later");
        match self {
            Busy => (421, Status::new(4, 3, 2), "Too many connections, try again later"),
            BusyClient => (421, Status::new(4, 7, 0), "Too many connections from your address, try again later"),
            SenderSourceRoute => (553, Status::new(5, 7, 1), "Source routes are not accepted"),
            RecipientSourceRoute => (550, Status::new(5, 7, 1), "Source routes are not accepted"),
            NullRecipient => (501, Status::new(5, 1, 3), "Null recipient is not allowed"),
            AddressLiteral => (550, Status::new(5, 7, 1), "Relaying denied: address literals are not accepted"),
            NoSuchAccount => (550, Status::new(5, 1, 1), "Recipient address rejected: no such account"),
            RelayDenied => (550, Status::new(5, 7, 1), "Relaying denied"),
            TooBig => (552, Status::new(5, 3, 4), "Message size exceeds fixed maximum message size"),
            Spool(_) => LOCAL_ERROR,
            Content(r) => match r {
                Refusal::Loop { .. } => (554, Status::new(5, 4, 6), "Too many hops: mail loop?"),
                Refusal::Limit(_) => (552, Status::new(5, 3, 4), "Message content exceeds scanning limits"),
                Refusal::ScanTimeout => (451, Status::new(4, 7, 1), "Scan timed out, try again later"),
                Refusal::ScanFailed(_) => (451, Status::new(4, 7, 1), "Scan failed, try again later"),
                Refusal::Encrypted => {
                    (554, Status::new(5, 7, 1), "Encrypted attachments are not accepted for this domain")
                }
                Refusal::Unreadable => (
                    554,
                    Status::new(5, 7, 1),
                    "Content that cannot be scanned (damaged or unsupported) is not accepted for this domain",
                ),
                Refusal::Spool(_) => LOCAL_ERROR,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan::limits::Limit;

    /// Every cause: its reply's code agrees with its enhanced status (4xx ⇔ 4.x.x), a content
    /// refusal is temporary exactly when the filter says trying again may work, and no detail
    /// of the cause reaches the wire.
    #[test]
    fn each_cause_has_one_consistent_reply_without_details() {
        let secret = "SECRET-DETAIL";
        let causes = [
            Cause::Busy,
            Cause::BusyClient,
            Cause::SenderSourceRoute,
            Cause::RecipientSourceRoute,
            Cause::NullRecipient,
            Cause::AddressLiteral,
            Cause::NoSuchAccount,
            Cause::RelayDenied,
            Cause::TooBig,
            Cause::Spool(secret.into()),
            Cause::Content(Refusal::Loop { hops: 31 }),
            Cause::Content(Refusal::Limit(Limit::Engine(secret.into()))),
            Cause::Content(Refusal::ScanTimeout),
            Cause::Content(Refusal::ScanFailed(secret.into())),
            Cause::Content(Refusal::Encrypted),
            Cause::Content(Refusal::Unreadable),
            Cause::Content(Refusal::Spool(secret.into())),
        ];
        for cause in causes {
            let r = cause.reply();
            let status = r.enhanced.expect("an enhanced status");
            assert_eq!(r.is_transient(), status.is_temporary(), "{cause}: {r}");
            assert_eq!(r.is_permanent(), status.is_permanent(), "{cause}: {r}");
            assert!(!r.is_positive(), "{cause}: {r}");
            assert!(!r.one_line().contains(secret) && !r.one_line().contains("31"), "{cause}: {r}");
            if let Cause::Content(c) = &cause {
                assert_eq!(c.is_temporary(), status.is_temporary(), "{cause}: {r}");
            }
        }
        assert_eq!(Cause::RelayDenied.reply().one_line(), "550 5.7.1 Relaying denied");
        assert_eq!(
            Cause::Content(Refusal::Limit(Limit::Depth { max: 16 })).reply().one_line(),
            "552 5.3.4 Message content exceeds scanning limits"
        );
    }
}
