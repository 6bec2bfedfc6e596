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

/// A change of a contract recorded for a later day (`contracts apply --on DATE`): from
/// `effective_from`, the contract is `contract` (`None`: removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// The contract's id.
    pub id: String,
    /// Its revision number.
    pub rev: i64,
    /// The first day it is in force (00:00 in the operator's time zone).
    pub effective_from: NaiveDate,
    /// The contract from that day; `None` if it is removed that day.
    pub contract: Option<Contract>,
}

/// A scheduled version of a contract and its first day (`None`: removed that day).
type Dated = (NaiveDate, Option<Arc<Contract>>);

/// Which version of a contract is in force on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// As stored now.
    Current,
    /// The scheduled change effective from this day.
    From(NaiveDate),
    /// Removed by a scheduled change.
    Removed,
}

/// Every contract, indexed by domain and by sending network — as stored now and as scheduled
/// changes make them on later days: each lookup names its day, so a change takes effect at
/// 00:00 of its day with no reload.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Store generation this snapshot was loaded from.
    pub generation: i64,
    contracts: Vec<Arc<Contract>>,
    domains: HashMap<String, DomainEntry>,
    /// Scheduled versions per contract id, by day.
    schedule: HashMap<String, Vec<Dated>>,
    /// The domains of scheduled versions, with the day of their version.
    scheduled_domains: HashMap<String, Vec<(NaiveDate, DomainEntry)>>,
    scheduled: Vec<Scheduled>,
}

fn entry(c: &Arc<Contract>, d: &crate::model::Domain) -> DomainEntry {
    DomainEntry {
        contract: c.clone(),
        name: d.name.clone(),
        receiving_servers: d.receiving_servers.clone(),
        accounts: d.accounts.iter().cloned().collect(),
    }
}

impl Snapshot {
    /// Builds the index from validated contracts.
    pub fn new(contracts: Vec<Contract>, generation: i64) -> Snapshot {
        let contracts: Vec<Arc<Contract>> = contracts.into_iter().map(Arc::new).collect();
        let mut domains = HashMap::new();
        for c in &contracts {
            for d in &c.domains {
                domains.insert(d.name.clone(), entry(c, d));
            }
        }
        Snapshot { generation, contracts, domains, ..Snapshot::default() }
    }

    /// [`Snapshot::new`] with the changes scheduled for later days.
    pub fn with_schedule(contracts: Vec<Contract>, scheduled: Vec<Scheduled>, generation: i64) -> Snapshot {
        let mut snap = Snapshot::new(contracts, generation);
        for s in &scheduled {
            let version = s.contract.clone().map(Arc::new);
            if let Some(c) = &version {
                for d in &c.domains {
                    snap.scheduled_domains.entry(d.name.clone()).or_default().push((s.effective_from, entry(c, d)));
                }
            }
            snap.schedule.entry(s.id.clone()).or_default().push((s.effective_from, version));
        }
        for versions in snap.schedule.values_mut() {
            versions.sort_by_key(|(day, _)| *day);
        }
        snap.scheduled = scheduled;
        snap
    }

    /// The changes scheduled for later days, as loaded.
    pub fn scheduled(&self) -> &[Scheduled] {
        &self.scheduled
    }

    fn version_on(&self, id: &str, day: NaiveDate) -> Version {
        match self.schedule.get(id).and_then(|v| v.iter().rev().find(|(from, _)| *from <= day)) {
            None => Version::Current,
            Some((from, Some(_))) => Version::From(*from),
            Some((_, None)) => Version::Removed,
        }
    }

    /// The versions of contracts in force on `day` (those not removed).
    fn in_force(&self, day: NaiveDate) -> impl Iterator<Item = &Arc<Contract>> {
        let current = self.contracts.iter().filter(move |c| self.version_on(&c.id, day) == Version::Current);
        let scheduled = self.schedule.iter().filter_map(move |(id, versions)| match self.version_on(id, day) {
            Version::From(from) => versions.iter().find(|(d, _)| *d == from).and_then(|(_, c)| c.as_ref()),
            _ => None,
        });
        current.chain(scheduled)
    }

    /// All contracts in file order.
    pub fn contracts(&self) -> &[Arc<Contract>] {
        &self.contracts
    }

    /// The registered domain `name` (any case, U-labels or A-labels), whether or not its
    /// contract is active (as stored now, else as a scheduled change registers it).
    pub fn domain(&self, name: &str) -> Option<&DomainEntry> {
        let name = if name.is_ascii() { name.to_ascii_lowercase() } else { crate::model::normalize_domain(name)? };
        self.domains.get(&name).or_else(|| self.scheduled_domains.get(&name).and_then(|v| v.first()).map(|(_, e)| e))
    }

    /// The registered domain `name` if its contract, in its version in force on `day`, holds it,
    /// is active that day and uses the inbound function.
    pub fn active_domain(&self, name: &str, day: NaiveDate) -> Option<&DomainEntry> {
        if self.schedule.is_empty() {
            return self.domain(name).filter(|d| d.contract.is_active(day) && d.contract.functions.inbound);
        }
        let name = if name.is_ascii() { name.to_ascii_lowercase() } else { crate::model::normalize_domain(name)? };
        let current = self.domains.get(&name).filter(|e| self.version_on(&e.contract.id, day) == Version::Current);
        let scheduled = self
            .scheduled_domains
            .get(&name)
            .into_iter()
            .flatten()
            .filter(|(from, e)| self.version_on(&e.contract.id, day) == Version::From(*from))
            .map(|(_, e)| e);
        current.into_iter().chain(scheduled).find(|e| e.contract.is_active(day) && e.contract.functions.inbound)
    }

    /// The active contract using the outbound function whose sending servers include `ip` (R2). A network wider than
    /// [`SENDING_PREFIX_FLOOR`] never matches, however the contract was built.
    pub fn sending_contract(&self, ip: IpAddr, day: NaiveDate) -> Option<&Arc<Contract>> {
        let ip = canonical(ip);
        let bounded = |n: &IpNet| match n {
            IpNet::V4(n) => n.prefix_len() >= SENDING_PREFIX_FLOOR.0,
            IpNet::V6(n) => n.prefix_len() >= SENDING_PREFIX_FLOOR.1,
        };
        self.in_force(day).find(|c| {
            c.is_active(day) && c.functions.outbound && c.sending_servers.iter().any(|n| bounded(n) && n.contains(&ip))
        })
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The contracts as they will be on `day`: those stored now, with the scheduled changes of
/// that day and before applied in order.
pub fn in_force_on(mut contracts: Vec<Contract>, scheduled: &[Scheduled], day: NaiveDate) -> Vec<Contract> {
    for s in scheduled.iter().filter(|s| s.effective_from <= day) {
        match (contracts.iter().position(|c| c.id == s.id), &s.contract) {
            (Some(i), Some(c)) => contracts[i] = c.clone(),
            (Some(i), None) => {
                contracts.remove(i);
            }
            (None, Some(c)) => contracts.push(c.clone()),
            (None, None) => {}
        }
    }
    contracts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_file;

    fn contract(domain: &str, server: &str, accounts: &str, sending: &str) -> Contract {
        parse_file(&format!(
            "[[contract]]\nid = \"acme\"\ncustomer = \"ACME\"\naccounts_limit = 5\nstarts = \"2026-01-01\"\nsending_servers = [\"{sending}\"]\n[[contract.domain]]\nname = \"{domain}\"\nreceiving_servers = [\"{server}\"]\naccounts = [{accounts}]\n"
        ))
        .unwrap()
        .remove(0)
    }

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, m, day).unwrap()
    }

    /// Scheduled changes take effect on their day and not before; a removal ends the contract.
    #[test]
    fn each_day_sees_the_version_in_force() {
        let now = contract("acme.example", "192.0.2.1", "\"alice\"", "192.0.2.50");
        let changed = contract("acme.example", "192.0.2.2", "\"alice\", \"bob\"", "192.0.2.60");
        let moved = contract("acme.jp", "192.0.2.3", "\"carol\"", "192.0.2.60");
        let scheduled = vec![
            Scheduled { id: "acme".into(), rev: 2, effective_from: d(3, 1), contract: Some(changed) },
            Scheduled { id: "acme".into(), rev: 3, effective_from: d(4, 1), contract: Some(moved) },
            Scheduled { id: "acme".into(), rev: 4, effective_from: d(5, 1), contract: None },
        ];
        let snap = Snapshot::with_schedule(vec![now], scheduled, 1);
        let server = |day| snap.active_domain("ACME.example", day).map(|e| e.receiving_servers[0].host.clone());
        assert_eq!(server(d(2, 28)).as_deref(), Some("192.0.2.1"));
        assert_eq!(server(d(3, 1)).as_deref(), Some("192.0.2.2"));
        assert!(!snap.active_domain("acme.example", d(2, 28)).unwrap().has_account("bob"));
        assert!(snap.active_domain("acme.example", d(3, 1)).unwrap().has_account("bob"));
        // the domain moves away on 1 April: acme.example unknown, acme.jp served
        assert_eq!(server(d(4, 1)), None);
        assert!(snap.active_domain("acme.jp", d(3, 31)).is_none());
        assert!(snap.active_domain("acme.jp", d(4, 1)).unwrap().has_account("carol"));
        let ip = |s: &str| s.parse().unwrap();
        assert!(snap.sending_contract(ip("192.0.2.50"), d(2, 28)).is_some());
        assert!(snap.sending_contract(ip("192.0.2.50"), d(3, 1)).is_none());
        assert!(snap.sending_contract(ip("192.0.2.60"), d(3, 1)).is_some());
        // removed on 1 May
        assert!(snap.active_domain("acme.jp", d(5, 1)).is_none());
        assert!(snap.sending_contract(ip("192.0.2.60"), d(5, 1)).is_none());
        // still known as registered (for the refusal's wording)
        assert!(snap.domain("acme.jp").is_some());
    }
}
