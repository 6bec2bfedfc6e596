//! What applying a contracts file would change: the plan shown by `contracts apply --dry-run`
//! and before every apply, and the set that results. Contracts the file does not list are kept
//! as they are unless the operator prunes them explicitly — a file that forgot a customer, or an
//! empty file, never cancels anyone by accident.

use std::collections::HashMap;

use crate::Contract;

/// The difference between the stored contracts and a file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In the file, not stored: created.
    pub added: Vec<String>,
    /// In both, different: the contract id and the fields that change.
    pub changed: Vec<(String, Vec<&'static str>)>,
    /// In both, the same.
    pub unchanged: Vec<String>,
    /// Stored, not in the file: kept, or removed when pruning.
    pub missing: Vec<String>,
    /// Whether the missing contracts are removed.
    pub prune: bool,
    /// Cancelled from the plan's day (by `contracts cancel`, or stored and pruned): each with
    /// the early-termination fee quoted (yen, before tax), kept with its revision.
    pub cancelled: Vec<(String, i64)>,
    /// Revisions scheduled for later days that change with this plan: carried over it
    /// ([`crate::carry_forward`]).
    pub rebased: Vec<crate::Scheduled>,
}

impl Plan {
    /// Whether applying changes anything.
    pub fn changes_anything(&self) -> bool {
        !self.added.is_empty()
            || !self.changed.is_empty()
            || !self.cancelled.is_empty()
            || (self.prune && !self.missing.is_empty())
    }
}

/// The fields of `a` and `b` (the same contract) that differ.
pub fn changed_fields(a: &Contract, b: &Contract) -> Vec<&'static str> {
    let mut f = Vec::new();
    let mut check = |same: bool, name| {
        if !same {
            f.push(name);
        }
    };
    check(a.customer == b.customer, "customer");
    check(a.accounts_limit == b.accounts_limit, "accounts_limit");
    check(a.starts == b.starts, "starts");
    check(a.ends == b.ends, "ends");
    check(a.sending_servers == b.sending_servers, "sending_servers");
    let names = |c: &Contract| c.domains.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
    check(names(a) == names(b), "domains");
    let servers =
        |c: &Contract| c.domains.iter().map(|d| (d.name.clone(), d.receiving_servers.clone())).collect::<Vec<_>>();
    check(servers(a) == servers(b), "receiving_servers");
    let accounts = |c: &Contract| c.domains.iter().map(|d| (d.name.clone(), d.accounts.clone())).collect::<Vec<_>>();
    check(accounts(a) == accounts(b), "accounts");
    check(a.encrypted == b.encrypted, "encrypted_attachments");
    check(a.unreadable == b.unreadable, "unreadable_attachments");
    check(a.wide_sending_networks == b.wide_sending_networks, "allow_wide_sending_networks");
    check(a.functions == b.functions, "functions");
    check(a.price_table == b.price_table, "price_table");
    f
}

/// The plan of applying `file` (validated) over `stored`, and the resulting set: the file's
/// contracts in its order, then — unless `prune` — the stored ones it does not list, unchanged.
/// `Err` lists every conflict: a domain the file gives to one contract while a kept contract
/// still holds it.
pub fn plan(stored: &[Contract], file: &[Contract], prune: bool) -> Result<(Plan, Vec<Contract>), Vec<String>> {
    let stored_by_id: HashMap<&str, &Contract> = stored.iter().map(|c| (c.id.as_str(), c)).collect();
    let in_file: HashMap<&str, &Contract> = file.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut p = Plan { prune, ..Plan::default() };
    for c in file {
        match stored_by_id.get(c.id.as_str()) {
            None => p.added.push(c.id.clone()),
            Some(old) => match changed_fields(old, c) {
                f if f.is_empty() => p.unchanged.push(c.id.clone()),
                f => p.changed.push((c.id.clone(), f)),
            },
        }
    }
    let kept: Vec<&Contract> = stored.iter().filter(|c| !in_file.contains_key(c.id.as_str())).collect();
    p.missing = kept.iter().map(|c| c.id.clone()).collect();
    let mut result: Vec<Contract> = file.to_vec();
    if !prune {
        let owner: HashMap<&str, &str> =
            file.iter().flat_map(|c| c.domains.iter().map(move |d| (d.name.as_str(), c.id.as_str()))).collect();
        let conflicts: Vec<String> = kept
            .iter()
            .flat_map(|k| k.domains.iter().map(move |d| (k, d)))
            .filter_map(|(k, d)| {
                owner.get(d.name.as_str()).map(|to| {
                    format!(
                        "domain {:?} is given to contract {to:?} by the file, but contract {:?} — not in the file, so kept — still holds it: list {:?} in the file without it, or apply with --prune",
                        d.name, k.id, k.id
                    )
                })
            })
            .collect();
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
        result.extend(kept.into_iter().cloned());
    }
    Ok((p, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_file;

    fn one(id: &str, domain: &str, accounts: &str) -> String {
        format!(
            "[[contract]]\nid = \"{id}\"\ncustomer = \"C {id}\"\naccounts_limit = 5\nstarts = \"2026-01-01\"\n[[contract.domain]]\nname = \"{domain}\"\nreceiving_servers = [\"192.0.2.1\"]\naccounts = [{accounts}]\n"
        )
    }

    #[test]
    fn missing_contracts_are_kept_unless_pruned() {
        let stored = parse_file(&(one("a", "a.example", "\"x\"") + &one("b", "b.example", "\"y\""))).unwrap();
        let file = parse_file(&(one("a", "a.example", "\"x\", \"z\"") + &one("c", "c.example", "\"w\""))).unwrap();
        let (p, result) = plan(&stored, &file, false).unwrap();
        assert_eq!(p.added, ["c"]);
        assert_eq!(p.changed, [("a".to_string(), vec!["accounts"])]);
        assert_eq!(p.missing, ["b"]);
        let ids: Vec<&str> = result.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b"]);
        let (p, result) = plan(&stored, &file, true).unwrap();
        assert!(p.prune && p.changes_anything());
        assert_eq!(result.len(), 2);
        // an empty file changes nothing without --prune
        let (p, result) = plan(&stored, &[], false).unwrap();
        assert!(!p.changes_anything());
        assert_eq!(result, stored);
    }

    #[test]
    fn a_domain_taken_from_a_kept_contract_is_a_conflict() {
        let stored = parse_file(&(one("a", "a.example", "\"x\"") + &one("b", "b.example", "\"y\""))).unwrap();
        let file = parse_file(&one("a", "b.example", "\"x\"")).unwrap();
        let errors = plan(&stored, &file, false).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("\"b.example\"") && errors[0].contains("--prune"), "{}", errors[0]);
        // listing b without it makes the move one apply
        let file = parse_file(&(one("a", "b.example", "\"x\"") + &one("b", "b2.example", "\"y\""))).unwrap();
        let (p, _) = plan(&stored, &file, false).unwrap();
        assert_eq!(p.changed.len(), 2);
    }
}
