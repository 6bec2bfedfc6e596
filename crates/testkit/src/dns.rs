//! A tiny authoritative DNS server over UDP for tests: MX and A records from a table,
//! NXDOMAIN for names it does not know, empty answers for known names without that type.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// Records served, by lower-case name without the trailing dot.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// name → (preference, exchange) list; an exchange of "." is a null MX.
    pub mx: HashMap<String, Vec<(u16, String)>>,
    /// name → IPv4 addresses.
    pub a: HashMap<String, Vec<Ipv4Addr>>,
}

impl Zone {
    fn knows(&self, name: &str) -> bool {
        self.mx.contains_key(name) || self.a.contains_key(name)
    }
}

/// A running DNS server.
pub struct DnsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Serves `zone` on a free loopback UDP port.
    pub async fn start(zone: Zone) -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = sock.local_addr().expect("dns addr");
        let zone = Arc::new(zone);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else { continue };
                if let Some(resp) = answer(&zone, &buf[..n]) {
                    let _ = sock.send_to(&resp, peer).await;
                }
            }
        });
        DnsServer { addr, task }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(zone: &Zone, query: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let q = req.queries.first()?.clone();
    let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    resp.add_query(q.clone());
    if !zone.knows(&name) {
        resp.metadata.response_code = ResponseCode::NXDomain;
        return resp.to_vec().ok();
    }
    let owner = q.name().clone();
    match q.query_type() {
        RecordType::MX => {
            for (pref, exchange) in zone.mx.get(&name).into_iter().flatten() {
                let ex = if exchange == "." { Name::root() } else { Name::from_ascii(format!("{exchange}.")).ok()? };
                resp.add_answer(Record::from_rdata(owner.clone(), 60, RData::MX(MX::new(*pref, ex))));
            }
        }
        RecordType::A => {
            for ip in zone.a.get(&name).into_iter().flatten() {
                resp.add_answer(Record::from_rdata(owner.clone(), 60, RData::A(A(*ip))));
            }
        }
        _ => {}
    }
    resp.to_vec().ok()
}
