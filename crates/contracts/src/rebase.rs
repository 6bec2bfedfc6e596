//! Changes scheduled for later days, kept true to what they change when an earlier revision is
//! made or withdrawn.
//!
//! A revision holds the whole contract, so a change scheduled for 1 March, made while the
//! contract had 3 accounts, would silently take back on 1 March an account added today. Each
//! later revision is therefore *rebased*: what it changed from the version before it is kept,
//! everything else follows the new version before it. Field by field — the contract's fields,
//! and each domain (by name) with its receiving servers and its accounts. The rebased revision
//! is then validated as at its own day: a lower account limit scheduled for later must fit the
//! accounts registered now (R5). Withdrawing a revision rebases the later ones the same way,
//! onto the version before the withdrawn one.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::{Contract, Domain, Scheduled};

/// `later` (a revision made over `old_base`) carried onto `new_base`: each field `later` left
/// as it was in `old_base` takes `new_base`'s value; each field it changed keeps its own.
pub fn rebase(later: &Contract, old_base: &Contract, new_base: &Contract) -> Contract {
    fn pick<T: PartialEq + Clone>(later: &T, old: &T, new: &T) -> T {
        if later == old { new.clone() } else { later.clone() }
    }
    Contract {
        id: later.id.clone(),
        customer: pick(&later.customer, &old_base.customer, &new_base.customer),
        accounts_limit: pick(&later.accounts_limit, &old_base.accounts_limit, &new_base.accounts_limit),
        starts: pick(&later.starts, &old_base.starts, &new_base.starts),
        ends: pick(&later.ends, &old_base.ends, &new_base.ends),
        sending_servers: pick(&later.sending_servers, &old_base.sending_servers, &new_base.sending_servers),
        encrypted: pick(&later.encrypted, &old_base.encrypted, &new_base.encrypted),
        unreadable: pick(&later.unreadable, &old_base.unreadable, &new_base.unreadable),
        wide_sending_networks: pick(
            &later.wide_sending_networks,
            &old_base.wide_sending_networks,
            &new_base.wide_sending_networks,
        ),
        functions: pick(&later.functions, &old_base.functions, &new_base.functions),
        price_table: pick(&later.price_table, &old_base.price_table, &new_base.price_table),
        domains: rebase_domains(&later.domains, &old_base.domains, &new_base.domains),
    }
}

/// The domains, merged by name: a domain `later` added, removed or changed is as `later` has
/// it (field by field for a changed one); any other is as `new` has it. `later`'s order first,
/// then the domains `new` added.
fn rebase_domains(later: &[Domain], old: &[Domain], new: &[Domain]) -> Vec<Domain> {
    let by_name = |ds: &[Domain]| ds.iter().map(|d| (d.name.clone(), d.clone())).collect::<HashMap<_, _>>();
    let (l, o, n) = (by_name(later), by_name(old), by_name(new));
    let merged = |name: &str| -> Option<Domain> {
        match (l.get(name), o.get(name), n.get(name)) {
            // left alone by the later revision: as the new base has it (or not at all)
            (Some(ld), Some(od), nd) if ld == od => nd.cloned(),
            (None, None, nd) => nd.cloned(),
            // changed by it, kept by the new base: field by field
            (Some(ld), Some(od), Some(nd)) => Some(Domain {
                name: ld.name.clone(),
                receiving_servers: if ld.receiving_servers == od.receiving_servers {
                    nd.receiving_servers.clone()
                } else {
                    ld.receiving_servers.clone()
                },
                accounts: if ld.accounts == od.accounts { nd.accounts.clone() } else { ld.accounts.clone() },
            }),
            // added or changed by it (and gone from the new base): as it has it
            (Some(ld), _, _) => Some(ld.clone()),
            // removed by it
            (None, Some(_), _) => None,
        }
    };
    let mut out: Vec<Domain> = later.iter().filter_map(|d| merged(&d.name)).collect();
    // the new base's other domains, unless the later revision removed them
    out.extend(new.iter().filter(|d| !l.contains_key(&d.name)).filter_map(|d| merged(&d.name)));
    out
}

/// The revisions of one contract scheduled after a change (`later`, in the order they take
/// effect), carried from `old_prev` (the contract before the change; `None`: not there) onto
/// `new_prev` (after it): the revisions whose contract changes as a result, or every problem
/// a rebased revision would have on its day.
pub fn carry_forward(
    later: &[&Scheduled],
    old_prev: Option<Contract>,
    new_prev: Option<Contract>,
) -> Result<Vec<Scheduled>, Vec<String>> {
    let (mut old_prev, mut new_prev) = (old_prev, new_prev);
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for s in later {
        let Some(r) = &s.contract else {
            // removed that day: nothing after it builds on the change
            break;
        };
        let rebased = match (&old_prev, &new_prev) {
            (Some(o), Some(n)) => rebase(r, o, n),
            _ => r.clone(),
        };
        let used = rebased.accounts_used();
        if used > rebased.accounts_limit as usize {
            problems.push(format!(
                "contract {:?}: the change scheduled for {} (revision {}) would have {used} accounts with accounts_limit {} (R5): withdraw it (mxshield contracts withdraw {} {}) or register fewer accounts",
                s.id, s.effective_from, s.rev, rebased.accounts_limit, s.id, s.rev
            ));
        }
        if rebased != *r {
            out.push(Scheduled { contract: Some(rebased.clone()), ..(*s).clone() });
        }
        old_prev = Some(r.clone());
        new_prev = Some(rebased);
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Every domain held by two contracts on a day when one of `scheduled` (the changes after the
/// day `set` is in force) takes effect.
pub fn later_conflicts(set: &[Contract], scheduled: &[Scheduled]) -> Vec<String> {
    let mut days: Vec<NaiveDate> = scheduled.iter().map(|s| s.effective_from).collect();
    days.sort();
    days.dedup();
    let mut problems = Vec::new();
    for day in days {
        let then = crate::in_force_on(set.to_vec(), scheduled, day);
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for c in then.iter().filter(|c| c.ends.is_none_or(|e| day < e)) {
            for d in &c.domains {
                if let Some(other) = owner.insert(&d.name, &c.id)
                    && other != c.id
                {
                    problems.push(format!(
                        "on {day}, when changes already scheduled take effect, domain {:?} would be registered to both {other:?} and {:?}",
                        d.name, c.id
                    ));
                }
            }
        }
    }
    problems.dedup();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_file;

    fn contract(limit: u32, domains: &[(&str, &str, &str)]) -> Contract {
        let mut src = format!(
            "[[contract]]\nid = \"acme\"\ncustomer = \"ACME\"\naccounts_limit = {limit}\nstarts = \"2027-01-01\"\n"
        );
        for (name, server, accounts) in domains {
            src += &format!(
                "[[contract.domain]]\nname = \"{name}\"\nreceiving_servers = [\"{server}\"]\naccounts = [{accounts}]\n"
            );
        }
        parse_file(&src).unwrap().remove(0)
    }

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, m, d).unwrap()
    }

    #[test]
    fn a_later_revision_keeps_its_own_changes_and_takes_the_rest() {
        let before = contract(5, &[("a.example", "192.0.2.1", "\"x\"")]);
        // scheduled for March: a lower limit and a new server
        let march = contract(3, &[("a.example", "192.0.2.9", "\"x\"")]);
        // made today: an account and a domain added
        let today = contract(5, &[("a.example", "192.0.2.1", "\"x\", \"y\""), ("b.example", "192.0.2.2", "")]);
        let got = rebase(&march, &before, &today);
        assert_eq!(got.accounts_limit, 3, "its own change");
        assert_eq!(got.domains[0].receiving_servers[0].host, "192.0.2.9", "its own change");
        assert_eq!(got.domains[0].accounts, ["x", "y"], "today's account carried");
        assert_eq!(got.domains[1].name, "b.example", "today's domain carried");
        // a domain the later revision removed stays removed
        let march_without = contract(5, &[("b.example", "192.0.2.2", "")]);
        let before_two = contract(5, &[("a.example", "192.0.2.1", "\"x\""), ("b.example", "192.0.2.2", "")]);
        let today_two = contract(5, &[("a.example", "192.0.2.1", "\"x\", \"y\""), ("b.example", "192.0.2.2", "")]);
        let got = rebase(&march_without, &before_two, &today_two);
        let names: Vec<&str> = got.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["b.example"]);
        // nothing changed before it: the same revision
        assert_eq!(rebase(&march, &before, &before), march);
    }

    #[test]
    fn a_later_lower_limit_must_fit_the_accounts_registered_now() {
        let before = contract(5, &[("a.example", "192.0.2.1", "\"x\", \"y\"")]);
        let march = Scheduled {
            id: "acme".into(),
            rev: 4,
            effective_from: day(3, 1),
            contract: Some(contract(2, &[("a.example", "192.0.2.1", "\"x\", \"y\"")])),
        };
        let more = contract(5, &[("a.example", "192.0.2.1", "\"x\", \"y\", \"z\"")]);
        let problems = carry_forward(&[&march], Some(before.clone()), Some(more)).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("3 accounts with accounts_limit 2") && problems[0].contains("withdraw acme 4"));
        // a change that does not touch what March changes is carried into it
        let renamed = Contract { customer: "ACME K.K.".into(), ..before.clone() };
        let rebased = carry_forward(&[&march], Some(before), Some(renamed)).unwrap();
        assert_eq!(rebased.len(), 1);
        let c = rebased[0].contract.as_ref().unwrap();
        assert_eq!((c.customer.as_str(), c.accounts_limit), ("ACME K.K.", 2));
    }

    #[test]
    fn a_domain_given_today_and_by_a_later_change_is_a_conflict_on_that_day() {
        let mut other = contract(5, &[("c.example", "192.0.2.3", "")]);
        other.id = "other".into();
        let mut other_april = contract(5, &[("c.example", "192.0.2.3", ""), ("b.example", "192.0.2.3", "")]);
        other_april.id = "other".into();
        let acme = contract(5, &[("a.example", "192.0.2.1", ""), ("b.example", "192.0.2.2", "")]);
        let scheduled =
            vec![Scheduled { id: "other".into(), rev: 2, effective_from: day(4, 1), contract: Some(other_april) }];
        let problems = later_conflicts(&[acme, other], &scheduled);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("2027-04-01") && problems[0].contains("\"b.example\""));
    }
}
