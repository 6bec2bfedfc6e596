//! The open-relay probe (R18: the service is not for customers whose server is an open relay).
//!
//! For each server a contract registers — its single-address sending servers and its domains'
//! receiving servers, at most [`MAX_TARGETS`] — the probe connects as an outsider and asks the
//! server to take a message from an outside address to a canary address at a domain this
//! gateway receives for ([`bulk::canary`]), with a new unguessable token each time. A server
//! that refuses is fine. A server that takes it is suspect; when the canary then arrives at the
//! gateway (any node: arrivals are recorded in the shared store), the server relayed it — an
//! open relay, proven. Every attempt is kept with its transcript ([`RelayProbe`]). Nothing but
//! the contract's own registered servers is ever probed, each once per run.
//!
//! Main items: [`targets`], [`run`], [`ProbeSettings`].

use std::net::SocketAddr;
use std::time::Duration;

use contracts::Contract;
use smtp::Reply;
use smtp::client::{Client, ClientTimeouts};

use crate::store::{AdminStore, AdminStoreError, RelayProbe};

/// Servers probed per contract and run, at most.
pub const MAX_TARGETS: usize = 16;

/// How the probe introduces itself and how long it waits.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// The name it gives in EHLO (the gateway's host name).
    pub helo: String,
    /// The domain of the canary addresses: one this gateway receives for.
    pub canary_domain: String,
    /// The port of the sending servers (they register addresses, not ports): 25.
    pub sending_port: u16,
    /// How long to wait for the canaries of the servers that took the message.
    pub wait: Duration,
    /// Connecting, and each reply.
    pub timeouts: ClientTimeouts,
    /// The node that probes (recorded with each attempt).
    pub node: String,
}

impl ProbeSettings {
    /// The outside sender of the probe's messages.
    fn sender(&self) -> String {
        format!("relay-probe@{}", self.canary_domain)
    }
}

/// One server to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As registered (`203.0.113.5`, `mail.acme.example:25`), with its address when a name.
    pub label: String,
    /// Where to connect.
    pub addr: SocketAddr,
}

/// The servers of `contract` to probe, and what was left out and why (networks, names that do
/// not resolve, beyond [`MAX_TARGETS`]).
pub async fn targets(contract: &Contract, sending_port: u16) -> (Vec<Target>, Vec<String>) {
    let mut out: Vec<Target> = Vec::new();
    let mut skipped = Vec::new();
    let mut add = |t: Target, skipped: &mut Vec<String>| {
        if out.iter().any(|o| o.addr == t.addr) {
            return;
        }
        if out.len() == MAX_TARGETS {
            skipped.push(format!("{}: not probed (more than {MAX_TARGETS} servers)", t.label));
        } else {
            out.push(t);
        }
    };
    for net in &contract.sending_servers {
        if net.prefix_len() != net.max_prefix_len() {
            skipped.push(format!("{net}: a network, not probed (only single addresses are)"));
            continue;
        }
        let addr = SocketAddr::new(net.addr(), sending_port);
        add(Target { label: net.addr().to_string(), addr }, &mut skipped);
    }
    for domain in &contract.domains {
        for hop in &domain.receiving_servers {
            let host = hop.host.trim_start_matches('[').trim_end_matches(']');
            let label = format!("{}:{}", hop.host, hop.port);
            let resolved =
                tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host((host, hop.port))).await;
            match resolved {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(addr) if addr.ip().to_string() == host => add(Target { label, addr }, &mut skipped),
                    Some(addr) => add(Target { label: format!("{label} ({})", addr.ip()), addr }, &mut skipped),
                    None => skipped.push(format!("{label}: no address")),
                },
                Ok(Err(e)) => skipped.push(format!("{label}: not resolved ({e})")),
                Err(_) => skipped.push(format!("{label}: not resolved in 10 s")),
            }
        }
    }
    (out, skipped)
}

/// A digest of the servers `contract` registers (as written, and the port sending servers are
/// probed on): a changed set is probed again at the next check.
pub fn registered_digest(contract: &Contract, sending_port: u16) -> String {
    use sha2::Digest;
    let mut labels: Vec<String> = contract.sending_servers.iter().map(|n| format!("{n}:{sending_port}")).collect();
    for d in &contract.domains {
        labels.extend(d.receiving_servers.iter().map(|h| format!("{}:{}", h.host, h.port)));
    }
    labels.sort();
    labels.dedup();
    let d = sha2::Sha256::digest(labels.join(",").as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Probes each of `targets` of `contract`, recording every attempt in `store`, then waits up
/// to `settings.wait` for the canaries of those that took the message: the attempts as they
/// ended (an arrival after that is still recorded, by the gateway that receives it).
pub async fn run(
    store: &AdminStore,
    contract: &str,
    targets: &[Target],
    settings: &ProbeSettings,
) -> Result<Vec<RelayProbe>, AdminStoreError> {
    let mut probes = Vec::new();
    for t in targets {
        let token = bulk::canary::token();
        let mut p = RelayProbe {
            token: token.clone(),
            contract: contract.to_string(),
            server: t.label.clone(),
            node: settings.node.clone(),
            started_at: chrono::Utc::now().timestamp(),
            outcome: "probing".into(),
            transcript: String::new(),
            arrived_at: None,
            arrived_from: None,
            arrival: None,
        };
        // recorded before the attempt: a relay faster than our bookkeeping still finds it
        store.save_relay_probe(&p).await?;
        let (outcome, transcript) = attempt(t.addr, &token, settings).await;
        p.outcome = outcome.into();
        p.transcript = transcript;
        store.save_relay_probe(&p).await?;
        tracing::info!(event = "relay_probe", contract, server = %t.label, outcome);
        probes.push(p);
    }
    let deadline = tokio::time::Instant::now() + settings.wait;
    loop {
        let mut waiting = false;
        for p in probes.iter_mut().filter(|p| p.outcome == "accepted" && p.arrived_at.is_none()) {
            match store.relay_probe(&p.token).await? {
                Some(now) if now.arrived_at.is_some() => *p = now,
                _ => waiting = true,
            }
        }
        if !waiting || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(probes)
}

/// One attempt on `addr`: its outcome (`unreachable`, `refused`, `accepted`) and transcript.
pub async fn attempt(addr: SocketAddr, token: &str, settings: &ProbeSettings) -> (&'static str, String) {
    let mut log = Transcript::default();
    log.note(&format!("connecting to {addr}"));
    let mut client = match Client::connect(addr, settings.timeouts).await {
        Err(e) => {
            log.note(&format!("no SMTP: {e}"));
            return ("unreachable", log.0);
        }
        Ok(Err(greeting)) => {
            log.server(&greeting);
            return ("refused", log.0);
        }
        Ok(Ok(c)) => c,
    };
    log.server(&client.greeting);
    let canary = bulk::canary::address(token, &settings.canary_domain);
    let sender = settings.sender();
    let outcome = async {
        log.client(&format!("EHLO {}", settings.helo));
        let r = client.ehlo(&settings.helo).await?;
        log.server(&r);
        if !r.is_positive() {
            return Ok("refused");
        }
        for cmd in [format!("MAIL FROM:<{sender}>"), format!("RCPT TO:<{canary}>")] {
            log.client(&cmd);
            let r = client.command(&cmd).await?;
            log.server(&r);
            if !r.is_positive() {
                return Ok("refused");
            }
        }
        log.client("DATA");
        let (go, end) = client.data(&message(&sender, &canary, token, addr, settings)).await?;
        log.server(&go);
        let Some(end) = end else { return Ok("refused") };
        log.client("(the test message, and its final dot)");
        log.server(&end);
        Ok::<_, smtp::client::ClientError>(if end.is_positive() { "accepted" } else { "refused" })
    }
    .await;
    match outcome {
        Ok(o) => {
            log.client("QUIT");
            client.quit().await;
            (o, log.0)
        }
        Err(e) => {
            log.note(&format!("the conversation broke off: {e}"));
            ("refused", log.0)
        }
    }
}

fn message(sender: &str, canary: &str, token: &str, addr: SocketAddr, s: &ProbeSettings) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "From: <{sender}>\r\nTo: <{canary}>\r\nSubject: open relay test {token}\r\nDate: {date}\r\n\
         Message-ID: <{token}@{helo}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         This message tests whether the mail server at {addr} relays mail from outside\r\n\
         addresses to outside addresses (an open relay). It was sent by the mail gateway\r\n\
         {helo} to one of its own addresses; if it arrives, the server relayed it.\r\n",
        helo = s.helo
    )
    .into_bytes()
}

/// The conversation, line by line.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    fn client(&mut self, line: &str) {
        self.0.push_str(&format!("C: {line}\n"));
    }

    fn server(&mut self, reply: &Reply) {
        let mut wire = Vec::new();
        reply.write_to(&mut wire);
        for line in String::from_utf8_lossy(&wire).lines() {
            self.0.push_str(&format!("S: {line}\n"));
        }
    }

    fn note(&mut self, text: &str) {
        self.0.push_str(&format!("-- {text}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(src: &str) -> Contract {
        contracts::parse_file(src).unwrap().remove(0)
    }

    const ACME: &str = "[[contract]]\nid = \"acme\"\ncustomer = \"A\"\naccounts_limit = 5\nstarts = \"2026-01-01\"\n\
        sending_servers = [SENDING]\n[[contract.domain]]\nname = \"acme.example\"\nreceiving_servers = [\"127.0.0.1:2600\"]\n\
        accounts = [\"alice\"]\n";

    #[tokio::test]
    async fn the_targets_are_the_registered_servers_and_a_change_is_a_new_run() {
        let c = contract(&ACME.replace("SENDING", "\"127.0.0.5\", \"198.51.100.0/28\", \"127.0.0.5\""));
        let (targets, skipped) = targets(&c, 2525).await;
        let addrs: Vec<String> = targets.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.5:2525", "127.0.0.1:2600"], "each server once");
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("198.51.100.0/28") && skipped[0].contains("network"), "{skipped:?}");
        // the digest follows the set of servers, not their order
        let same = contract(&ACME.replace("SENDING", "\"198.51.100.0/28\", \"127.0.0.5\""));
        let more = contract(&ACME.replace("SENDING", "\"127.0.0.5\", \"127.0.0.6\", \"198.51.100.0/28\""));
        assert_eq!(registered_digest(&c, 25), registered_digest(&same, 25));
        assert_ne!(registered_digest(&c, 25), registered_digest(&more, 25));
        assert_ne!(registered_digest(&c, 25), registered_digest(&c, 2525), "the probed port is part of it");
    }
}
