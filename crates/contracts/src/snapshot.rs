//! An immutable index of all contracts, built once per change and shared behind an `Arc`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use chrono::NaiveDate;

use ipnet::IpNet;

use crate::model::{Contract, NextHop, SENDING_PREFIX_FLOOR};

/// A registered domain, ready for lookups.
#[derive(Debug, Clone)]
pub struct DomainEntry {
    /// The contract holding the domain.
    pub contract: Arc<Contract>,
    /// Lower-case domain name.
    pub name: String,
    /// Customer servers in order.
    pub receiving_servers: Vec<NextHop>,
    accounts: HashSet<String>,
}

impl DomainEntry {
    /// Whether `local` (any case) is a registered account of this domain.
    pub fn has_account(&self, local: &str) -> bool {
        self.accounts.contains(&local.to_ascii_lowercase())
    }
}

/// Every contract, indexed by domain and by sending network.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Store generation this snapshot was loaded from.
    pub generation: i64,
    contracts: Vec<Arc<Contract>>,
    domains: HashMap<String, DomainEntry>,
}

impl Snapshot {
    /// Builds the index from validated contracts.
    pub fn new(contracts: Vec<Contract>, generation: i64) -> Snapshot {
        let contracts: Vec<Arc<Contract>> = contracts.into_iter().map(Arc::new).collect();
        let mut domains = HashMap::new();
        for c in &contracts {
            for d in &c.domains {
                domains.insert(
                    d.name.clone(),
                    DomainEntry {
                        contract: c.clone(),
                        name: d.name.clone(),
                        receiving_servers: d.receiving_servers.clone(),
                        accounts: d.accounts.iter().cloned().collect(),
                    },
                );
            }
        }
        Snapshot { generation, contracts, domains }
    }

    /// All contracts in file order.
    pub fn contracts(&self) -> &[Arc<Contract>] {
        &self.contracts
    }

    /// The registered domain `name` (any case, U-labels or A-labels), whether or not its
    /// contract is active.
    pub fn domain(&self, name: &str) -> Option<&DomainEntry> {
        if name.is_ascii() {
            return self.domains.get(&name.to_ascii_lowercase());
        }
        self.domains.get(&crate::model::normalize_domain(name)?)
    }

    /// The registered domain `name` if its contract is active on `day`.
    pub fn active_domain(&self, name: &str, day: NaiveDate) -> Option<&DomainEntry> {
        self.domain(name).filter(|d| d.contract.is_active(day))
    }

    /// The active contract whose sending servers include `ip` (R2). A network wider than
    /// [`SENDING_PREFIX_FLOOR`] never matches, however the contract was built.
    pub fn sending_contract(&self, ip: IpAddr, day: NaiveDate) -> Option<&Arc<Contract>> {
        let ip = canonical(ip);
        let bounded = |n: &IpNet| match n {
            IpNet::V4(n) => n.prefix_len() >= SENDING_PREFIX_FLOOR.0,
            IpNet::V6(n) => n.prefix_len() >= SENDING_PREFIX_FLOOR.1,
        };
        self.contracts
            .iter()
            .find(|c| c.is_active(day) && c.sending_servers.iter().any(|n| bounded(n) && n.contains(&ip)))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
