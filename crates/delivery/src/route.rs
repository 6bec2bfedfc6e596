//! Where a recipient domain's mail goes: a `[delivery.routes]` entry, the receiving servers of
//! a registered domain, or the domain's MX hosts (RFC 5321 §5: preference order, equal
//! preferences shuffled, implicit MX from A/AAAA, RFC 7505 null MX).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use contracts::NextHop;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use smtp::Status;

use crate::DeliveryConfig;
use contracts::LiveContracts;

/// One next-hop host and its addresses, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Host name (for TLS SNI and logs) or the IP as text.
    pub name: String,
    /// Its addresses, in order.
    pub addrs: Vec<SocketAddr>,
}

/// Why no next hop could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The recipient's domain is not a valid domain name.
    #[error("{0:?} is not a valid domain name")]
    InvalidDomain(String),
    /// The domain does not exist (NXDOMAIN).
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    /// The domain says it accepts no mail (RFC 7505 null MX).
    #[error("domain {0} accepts no mail (null MX)")]
    NullMx(String),
    /// The domain has neither MX nor address records.
    #[error("domain {0} has no MX or address records")]
    NoMailHost(String),
    /// A lookup failed or no host could be resolved: try again later.
    #[error("{0}")]
    Lookup(String),
}

impl RouteError {
    /// Whether the same route may be found later (a DNS failure), unlike a domain that
    /// cannot receive mail.
    pub fn is_temporary(&self) -> bool {
        matches!(self, RouteError::Lookup(_))
    }

    /// The enhanced status for a DSN (RFC 3463): bad destination system address (5.1.2),
    /// null MX (5.1.10, RFC 7505), routing server failure (4.4.3).
    pub fn status(&self) -> Status {
        match self {
            RouteError::InvalidDomain(_) | RouteError::NoSuchDomain(_) | RouteError::NoMailHost(_) => {
                Status::new(5, 1, 2)
            }
            RouteError::NullMx(_) => Status::new(5, 1, 10),
            RouteError::Lookup(_) => Status::new(4, 4, 3),
        }
    }
}

/// Resolves destinations.
pub struct Router {
    routes: BTreeMap<String, NextHop>,
    contracts: LiveContracts,
    resolver: TokioResolver,
    smtp_port: u16,
}

impl Router {
    /// A router using the configured name servers (or the system's).
    pub fn new(cfg: &DeliveryConfig, contracts: LiveContracts) -> Result<Router, crate::DeliveryError> {
        let mut builder = if cfg.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| crate::DeliveryError::Resolver(e.to_string()))?
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        builder.options_mut().timeout = cfg.dns_timeout;
        builder.options_mut().attempts = 2;
        let resolver = builder.build().map_err(|e| crate::DeliveryError::Resolver(e.to_string()))?;
        Ok(Router { routes: cfg.routes.clone(), contracts, resolver, smtp_port: cfg.smtp_port })
    }

    /// The hosts to try for `domain`, in order.
    pub async fn route(&self, domain: &str) -> Result<Vec<Candidate>, RouteError> {
        // DNS and the tables hold A-labels: an internationalized domain is looked up as such
        let domain =
            contracts::normalize_domain(domain).ok_or_else(|| RouteError::InvalidDomain(domain.to_string()))?;
        if let Some(hop) = self.routes.get(&domain) {
            return self.resolve_hops(std::slice::from_ref(hop)).await;
        }
        let snapshot = self.contracts.get();
        if let Some(d) = snapshot.active_domain(&domain, self.contracts.today()) {
            return self.resolve_hops(&d.receiving_servers).await;
        }
        self.mx(&domain).await
    }

    async fn resolve_hops(&self, hops: &[NextHop]) -> Result<Vec<Candidate>, RouteError> {
        let mut out = Vec::new();
        let mut last = String::new();
        for hop in hops {
            match self.addresses(&hop.host, hop.port).await {
                Ok(addrs) => out.push(Candidate { name: hop.host.clone(), addrs }),
                Err(e) => last = e,
            }
        }
        if out.is_empty() {
            return Err(RouteError::Lookup(format!("cannot resolve next hop: {last}")));
        }
        Ok(out)
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = self.resolver.lookup_ip(fqdn(host)).await.map_err(|e| format!("{host}: {e}"))?;
        let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() { Err(format!("{host}: no addresses")) } else { Ok(addrs) }
    }

    async fn mx(&self, domain: &str) -> Result<Vec<Candidate>, RouteError> {
        let lookup = match self.resolver.mx_lookup(fqdn(domain)).await {
            Ok(l) => l,
            Err(e) if is_nxdomain(&e) => {
                return Err(RouteError::NoSuchDomain(domain.to_string()));
            }
            Err(e) if is_nodata(&e) => return self.implicit_mx(domain).await,
            Err(e) => return Err(RouteError::Lookup(format!("MX lookup for {domain} failed: {e}"))),
        };
        let mut mxs: Vec<(u16, String, bool)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii(), mx.exchange.is_root())),
                _ => None,
            })
            .collect();
        if mxs.is_empty() {
            return self.implicit_mx(domain).await;
        }
        if mxs.len() == 1 && mxs[0].2 {
            return Err(RouteError::NullMx(domain.to_string()));
        }
        mxs.retain(|m| !m.2);
        fastrand::shuffle(&mut mxs);
        mxs.sort_by_key(|m| m.0);
        let mut out = Vec::new();
        let mut last = String::new();
        for (_, host, _) in mxs {
            let host = host.trim_end_matches('.').to_string();
            match self.addresses(&host, self.smtp_port).await {
                Ok(addrs) => out.push(Candidate { name: host, addrs }),
                Err(e) => last = e,
            }
        }
        if out.is_empty() {
            return Err(RouteError::Lookup(format!("no MX host of {domain} could be resolved: {last}")));
        }
        Ok(out)
    }

    async fn implicit_mx(&self, domain: &str) -> Result<Vec<Candidate>, RouteError> {
        match self.resolver.lookup_ip(fqdn(domain)).await {
            Ok(ips) => {
                let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, self.smtp_port)).collect();
                if addrs.is_empty() {
                    return Err(RouteError::NoMailHost(domain.to_string()));
                }
                Ok(vec![Candidate { name: domain.to_string(), addrs }])
            }
            Err(e) if is_nxdomain(&e) || is_nodata(&e) => Err(RouteError::NoMailHost(domain.to_string())),
            Err(e) => Err(RouteError::Lookup(format!("address lookup for {domain} failed: {e}"))),
        }
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

fn no_records(e: &NetError) -> Option<ResponseCode> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => Some(nr.response_code),
        _ => None,
    }
}

fn is_nxdomain(e: &NetError) -> bool {
    no_records(e) == Some(ResponseCode::NXDomain)
}

fn is_nodata(e: &NetError) -> bool {
    no_records(e) == Some(ResponseCode::NoError)
}
