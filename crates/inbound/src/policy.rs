//! The relay policy as pure functions of (contracts snapshot, client IP, day, envelope).
//!
//! - A recipient in a domain under an active contract is accepted for that domain if its local
//!   part is a registered account (R1, R5), else `550 5.1.1`.
//! - A client whose IP is in an active contract's `sending_servers` may relay anywhere (R2).
//! - Anything else is `550 5.7.1` relaying denied. Source routes and address literals are
//!   refused outright; `%` and `!` local parts and quoted local parts never match an account
//!   (account names cannot contain them), so they cannot be used to relay.
//! - `postmaster` is always accepted (RFC 5321 §4.5.1): `<postmaster>` and the gateway's own
//!   postmaster address go to the operator; `postmaster@` a registered domain goes to that
//!   customer's servers like an account.

use std::net::IpAddr;

use chrono::NaiveDate;
use contracts::Snapshot;
use smtp::Path;

use crate::refusal::Cause;

use spool::attrs::Direction;

/// What to do with one `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptDecision {
    /// Accept; the contract that covers this recipient (inbound) or the sender (outbound).
    Accept {
        /// Inbound or outbound.
        direction: Direction,
        /// The contract.
        contract: String,
    },
    /// The gateway's own postmaster (`<postmaster>` or the configured address): the operator's.
    Postmaster,
    /// Refuse, for this cause.
    Refuse(Cause),
}

/// The direction of a session's mail: outbound when the client is a registered sending server.
pub fn client_direction(snap: &Snapshot, client: IpAddr, day: NaiveDate) -> (Direction, Option<String>) {
    match snap.sending_contract(client, day) {
        Some(c) => (Direction::Outbound, Some(c.id.clone())),
        None => (Direction::Inbound, None),
    }
}

/// Decides on `MAIL FROM`.
pub fn decide_sender(from: &Path) -> Result<(), Cause> {
    if from.source_route.is_some() {
        return Err(Cause::SenderSourceRoute);
    }
    Ok(())
}

/// The token of `rcpt` when it is an open-relay canary at `canary_domain` ([`bulk::canary`]):
/// accepted from anyone (the probed server relays it from wherever it is), never delivered.
pub fn canary_token(rcpt: &Path, canary_domain: &str) -> Option<String> {
    let m = rcpt.mailbox.as_ref().filter(|m| rcpt.source_route.is_none() && !m.quoted_local)?;
    if !m.domain.trim_end_matches('.').eq_ignore_ascii_case(canary_domain.trim_end_matches('.')) {
        return None;
    }
    bulk::canary::token_of(&m.local)
}

/// Decides on one `RCPT TO`; `postmaster` is the gateway's own postmaster address.
pub fn decide_rcpt(snap: &Snapshot, client: IpAddr, day: NaiveDate, rcpt: &Path, postmaster: &str) -> RcptDecision {
    let refuse = RcptDecision::Refuse;
    let Some(mailbox) = &rcpt.mailbox else {
        return refuse(Cause::NullRecipient);
    };
    if rcpt.source_route.is_none()
        && (rcpt.is_bare_postmaster()
            || (!mailbox.quoted_local && mailbox.to_string().eq_ignore_ascii_case(postmaster)))
    {
        return RcptDecision::Postmaster;
    }
    if rcpt.source_route.is_some() {
        return refuse(Cause::RecipientSourceRoute);
    }
    let (direction, sender_contract) = client_direction(snap, client, day);
    if mailbox.is_domain_literal() {
        return refuse(Cause::AddressLiteral);
    }
    if let Some(domain) = snap.active_domain(&mailbox.domain, day) {
        let postmaster = mailbox.local.eq_ignore_ascii_case("postmaster");
        if mailbox.quoted_local || !(postmaster || domain.has_account(&mailbox.local)) {
            return refuse(Cause::NoSuchAccount);
        }
        let contract = sender_contract.unwrap_or_else(|| domain.contract.id.clone());
        return RcptDecision::Accept { direction, contract };
    }
    match sender_contract {
        Some(contract) => RcptDecision::Accept { direction, contract },
        None => refuse(Cause::RelayDenied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::parse_file;

    fn snapshot() -> Snapshot {
        let src = r#"
[[contract]]
id = "acme"
customer = "ACME"
accounts_limit = 5
starts = "2026-01-01"
sending_servers = ["127.0.0.5", "198.51.100.0/28"]
[[contract.domain]]
name = "acme.example"
receiving_servers = ["127.0.0.1:2600"]
accounts = ["alice", "bob"]

[[contract]]
id = "future"
customer = "Later Inc."
accounts_limit = 5
starts = "2030-01-01"
sending_servers = ["127.0.0.9"]
[[contract.domain]]
name = "later.example"
receiving_servers = ["127.0.0.1:2600"]
accounts = ["carol"]
"#;
        Snapshot::new(parse_file(src).unwrap(), 1)
    }

    fn path(s: &str) -> Path {
        smtp::address::parse_path(s).unwrap().0
    }

    const PM: &str = "postmaster@mx.test";

    #[test]
    fn bare_postmaster_is_the_operators() {
        let snap = snapshot();
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let d = decide_rcpt(&snap, "203.0.113.7".parse().unwrap(), day, &Path::bare_postmaster(), PM);
        assert_eq!(d, RcptDecision::Postmaster);
    }

    /// (client IP, RCPT argument, expected: Ok(direction) or Err(reply code + enhanced code))
    #[test]
    fn relay_table() {
        let snap = snapshot();
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let internet = "203.0.113.7";
        let sender = "198.51.100.3";
        type Expect = Result<Direction, (u16, (u8, u16, u16))>;
        let denied: Expect = Err((550, (5, 7, 1)));
        let unknown: Expect = Err((550, (5, 1, 1)));
        let operator: Expect = Err((250, (2, 0, 0)));
        let table: Vec<(&str, &str, Expect)> = vec![
            (internet, "<alice@acme.example>", Ok(Direction::Inbound)),
            (internet, "<ALICE@ACME.Example>", Ok(Direction::Inbound)),
            (internet, "<carol@acme.example>", unknown),
            (internet, "<bob@remote.test>", denied),
            (internet, "<bob%remote.test@acme.example>", unknown),
            (internet, "<remote.test!bob@acme.example>", unknown),
            (internet, "<\"bob@remote.test\"@acme.example>", unknown),
            (internet, "<\"alice\"@acme.example>", unknown),
            (internet, "<@acme.example:bob@remote.test>", denied),
            (internet, "<@remote.test:alice@acme.example>", denied),
            (internet, "<alice@[127.0.0.1]>", denied),
            (internet, "<alice@[IPv6:::1]>", denied),
            (internet, "<bob@ACME.example.remote.test>", denied),
            (internet, "<carol@later.example>", denied),
            (internet, "<>", Err((501, (5, 1, 3)))),
            ("127.0.0.9", "<bob@remote.test>", denied),
            (sender, "<bob@remote.test>", Ok(Direction::Outbound)),
            (sender, "<bob%other.test@remote.test>", Ok(Direction::Outbound)),
            (sender, "<alice@acme.example>", Ok(Direction::Outbound)),
            (sender, "<nobody@acme.example>", unknown),
            (sender, "<bob@[192.0.2.1]>", denied),
            ("198.51.100.16", "<bob@remote.test>", denied),
            ("::ffff:127.0.0.5", "<bob@remote.test>", Ok(Direction::Outbound)),
            (internet, "<postmaster@acme.example>", Ok(Direction::Inbound)),
            (internet, "<POSTMASTER@acme.example>", Ok(Direction::Inbound)),
            (internet, "<postmaster@remote.test>", denied),
            (internet, "<postmaster@later.example>", denied),
            (internet, "<\"postmaster\"@acme.example>", unknown),
            (internet, "<Postmaster@MX.test>", operator),
            (sender, "<postmaster@mx.test>", operator),
            (internet, "<@a.test:postmaster@mx.test>", denied),
        ];
        for (ip, rcpt, expect) in table {
            let got = decide_rcpt(&snap, ip.parse().unwrap(), day, &path(rcpt), PM);
            let got: Expect = match got {
                RcptDecision::Accept { direction, .. } => Ok(direction),
                RcptDecision::Postmaster => Err((250, (2, 0, 0))),
                RcptDecision::Refuse(cause) => {
                    let (r, s) = (cause.reply(), cause.reply().status());
                    Err((r.code, (s.class, s.subject, s.detail)))
                }
            };
            assert_eq!(got, expect, "client {ip} RCPT TO:{rcpt}");
        }
    }

    /// R16: a contract that stopped one of its functions keeps the other.
    #[test]
    fn a_stopped_function_is_not_served() {
        let src = r#"
[[contract]]
id = "out-only"
customer = "Sends"
accounts_limit = 5
starts = "2026-01-01"
functions = ["outbound"]
sending_servers = ["198.51.100.3"]
[[contract.domain]]
name = "out.example"
receiving_servers = ["127.0.0.1:2600"]
accounts = ["alice"]

[[contract]]
id = "in-only"
customer = "Receives"
accounts_limit = 5
starts = "2026-01-01"
functions = ["inbound"]
sending_servers = ["198.51.100.4"]
[[contract.domain]]
name = "in.example"
receiving_servers = ["127.0.0.1:2600"]
accounts = ["bob"]
"#;
        let snap = Snapshot::new(parse_file(src).unwrap(), 1);
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let decide = |ip: &str, rcpt: &str| decide_rcpt(&snap, ip.parse().unwrap(), day, &path(rcpt), PM);
        let denied = RcptDecision::Refuse(Cause::RelayDenied);
        // inbound stopped: mail for its domain is not taken from the Internet
        assert_eq!(decide("203.0.113.7", "<alice@out.example>"), denied);
        // outbound kept: its servers relay
        assert!(matches!(decide("198.51.100.3", "<x@remote.test>"), RcptDecision::Accept { .. }));
        // outbound stopped: its servers do not relay; inbound kept: its domain is served
        assert_eq!(decide("198.51.100.4", "<x@remote.test>"), denied);
        assert!(matches!(decide("203.0.113.7", "<bob@in.example>"), RcptDecision::Accept { .. }));
    }

    #[test]
    fn contract_attribution() {
        let snap = snapshot();
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let d = decide_rcpt(&snap, "203.0.113.7".parse().unwrap(), day, &path("<bob@acme.example>"), PM);
        assert_eq!(d, RcptDecision::Accept { direction: Direction::Inbound, contract: "acme".into() });
        assert!(decide_sender(&path("<@a.example:x@b.example>")).is_err());
        assert!(decide_sender(&path("<>")).is_ok());
    }
}
