//! Reading a contracts file (`mxshield contracts apply FILE.toml`), reporting every problem.

use std::collections::HashMap;

use chrono::NaiveDate;
use confread::{Issues, Reader, Section};
use ipnet::IpNet;

use crate::model::{
    Contract, Domain, EncryptedPolicy, Functions, NextHop, is_account_name, is_hostname, normalize_domain,
    sending_network,
};

/// Parses and validates a whole contracts file: syntax, types, unknown keys, duplicate ids
/// and domains, addresses, dates and account limits. All problems are returned together.
pub fn parse_file(src: &str) -> Result<Vec<Contract>, Issues> {
    let doc = confread::parse(src)?;
    let mut r = Reader::new(src);
    let mut root = r.root(&doc);
    let mut contracts = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut domains: HashMap<String, (String, usize)> = HashMap::new();
    for mut sec in r.tables(&mut root, "contract") {
        let Some(c) = read_contract(&mut r, &mut sec, &mut domains) else { continue };
        if let Some(first) = ids.insert(c.id.clone(), sec.line()) {
            r.issue(
                sec.child_path("id"),
                sec.line(),
                format!("duplicate contract id {:?} (first at line {first})", c.id),
            );
        }
        contracts.push(c);
    }
    r.deny_unknown(&root);
    r.finish()?;
    Ok(contracts)
}

/// Domains seen so far: name → (contract id, line).
type SeenDomains = HashMap<String, (String, usize)>;

/// One contract as a `[[contract]]` block of a contracts file; [`parse_file`] reads it back
/// as the same contract. The form a revision is kept in.
pub fn to_toml(c: &Contract) -> String {
    use std::fmt::Write;
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let list = |items: Vec<String>| items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
    let mut out = String::new();
    let _ = writeln!(out, "[[contract]]");
    let _ = writeln!(out, "id = {}", q(&c.id));
    let _ = writeln!(out, "customer = {}", q(&c.customer));
    let _ = writeln!(out, "accounts_limit = {}", c.accounts_limit);
    let _ = writeln!(out, "starts = \"{}\"", c.starts);
    if let Some(e) = c.ends {
        let _ = writeln!(out, "ends = \"{e}\"");
    }
    let _ = writeln!(out, "sending_servers = [{}]", list(c.sending_servers.iter().map(|n| n.to_string()).collect()));
    let _ = writeln!(out, "allow_wide_sending_networks = {}", c.wide_sending_networks);
    if let Some(t) = &c.price_table {
        let _ = writeln!(out, "price_table = {}", q(t));
    }
    let _ = writeln!(out, "functions = [{}]", list(c.functions.names().iter().map(|s| s.to_string()).collect()));
    let _ = writeln!(out, "encrypted_attachments = {}", q(c.encrypted.as_str()));
    let _ = writeln!(out, "unreadable_attachments = {}", q(c.unreadable.as_str()));
    for d in &c.domains {
        let _ = writeln!(out, "[[contract.domain]]");
        let _ = writeln!(out, "name = {}", q(&d.name));
        let _ = writeln!(
            out,
            "receiving_servers = [{}]",
            list(d.receiving_servers.iter().map(|h| h.to_string()).collect())
        );
        let _ = writeln!(out, "accounts = [{}]", list(d.accounts.clone()));
    }
    out
}

fn read_contract(r: &mut Reader<'_>, sec: &mut Section<'_, '_>, seen: &mut SeenDomains) -> Option<Contract> {
    let id = required(r, sec, "id", |s| {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        ok.then(|| s.to_string()).ok_or("must be 1-64 letters, digits, '.', '_' or '-'".into())
    });
    let customer = required(r, sec, "customer", |s| {
        (!s.trim().is_empty()).then(|| s.trim().to_string()).ok_or("must not be empty".into())
    });
    let limit = r.unsigned(sec, "accounts_limit");
    if limit.is_none() && !sec.has("accounts_limit") {
        r.issue(sec.child_path("accounts_limit"), sec.line(), "missing (number of contracted accounts)");
    }
    let limit = limit.and_then(|(n, line)| match u32::try_from(n) {
        Ok(n) => Some((n, line)),
        Err(_) => {
            r.issue(sec.child_path("accounts_limit"), line, "is too large");
            None
        }
    });
    let starts = date(r, sec, "starts", true);
    let ends = date(r, sec, "ends", false);
    if let (Some(s), Some(e)) = (starts, ends)
        && e <= s
    {
        r.issue(sec.child_path("ends"), sec.line(), "must be after starts");
    }
    let wide = r.boolean(sec, "allow_wide_sending_networks").is_some_and(|(b, _)| b);
    let mut sending = Vec::new();
    for (s, line) in r.strings(sec, "sending_servers").unwrap_or_default() {
        match parse_net(&s).map(|n| sending_network(n, wide)) {
            Some(Ok(n)) => sending.push(n),
            Some(Err(why)) => r.issue(sec.child_path("sending_servers"), line, why),
            None => r.issue(sec.child_path("sending_servers"), line, format!("{s:?} is not an IP address or CIDR")),
        }
    }
    let mut functions = Functions::default();
    if let Some(names) = r.strings(sec, "functions") {
        functions = Functions { inbound: false, outbound: false };
        for (name, line) in &names {
            match name.as_str() {
                "inbound" => functions.inbound = true,
                "outbound" => functions.outbound = true,
                other => r.issue(
                    sec.child_path("functions"),
                    *line,
                    format!("unknown function {other:?} (known: \"inbound\", \"outbound\")"),
                ),
            }
        }
        if names.is_empty() {
            r.issue(
                sec.child_path("functions"),
                sec.line(),
                "a contract keeps at least one function: to stop them all, use cancellation (mxshield contracts cancel ID --on DATE)",
            );
        }
    }
    let price_table = r.string(sec, "price_table").and_then(|(name, line)| {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            r.issue(sec.child_path("price_table"), line, "must be 1-64 letters, digits, '.', '_' or '-'");
        }
        ok.then_some(name)
    });
    let encrypted = policy(r, sec, "encrypted_attachments");
    let unreadable = policy(r, sec, "unreadable_attachments");
    let mut domains = Vec::new();
    let dsecs = r.tables(sec, "domain");
    if dsecs.is_empty() {
        r.issue(sec.child_path("domain"), sec.line(), "a contract needs at least one [[contract.domain]]");
    }
    for mut dsec in dsecs {
        if let Some(d) = read_domain(r, &mut dsec) {
            let owner = id.clone().unwrap_or_else(|| "?".into());
            if let Some((other, line)) = seen.get(&d.name) {
                let why = format!("domain {:?} is already registered to contract {other:?} (line {line})", d.name);
                r.issue(dsec.child_path("name"), dsec.line(), why);
            } else {
                seen.insert(d.name.clone(), (owner, dsec.line()));
                domains.push(d);
            }
        }
        r.deny_unknown(&dsec);
    }
    r.deny_unknown(sec);
    let (limit, limit_line) = limit?;
    let used: usize = domains.iter().map(|d| d.accounts.len()).sum();
    if used > limit as usize {
        let why = format!("contract has {used} accounts but accounts_limit is {limit} (R5: change the contract first)");
        r.issue(sec.child_path("accounts_limit"), limit_line, why);
        return None;
    }
    Some(Contract {
        id: id?,
        customer: customer?,
        accounts_limit: limit,
        starts: starts?,
        ends,
        sending_servers: sending,
        domains,
        encrypted,
        unreadable,
        wide_sending_networks: wide,
        functions,
        price_table,
    })
}

fn read_domain(r: &mut Reader<'_>, sec: &mut Section<'_, '_>) -> Option<Domain> {
    let name = required(r, sec, "name", |s| {
        normalize_domain(s)
            .filter(|n| is_hostname(n) && n.contains('.'))
            .ok_or(format!("{s:?} is not a valid domain name"))
    });
    let mut servers = Vec::new();
    match r.strings(sec, "receiving_servers") {
        None => {
            r.issue(sec.child_path("receiving_servers"), sec.line(), "missing (customer mail servers for this domain)")
        }
        Some(list) if list.is_empty() => {
            r.issue(sec.child_path("receiving_servers"), sec.line(), "must list at least one server")
        }
        Some(list) => {
            for (s, line) in list {
                match NextHop::parse(&s) {
                    Ok(h) => servers.push(h),
                    Err(why) => r.issue(sec.child_path("receiving_servers"), line, why),
                }
            }
        }
    }
    let mut accounts: Vec<String> = Vec::new();
    for (a, line) in r.strings(sec, "accounts").unwrap_or_default() {
        let a = a.trim().to_ascii_lowercase();
        if !is_account_name(&a) {
            r.issue(
                sec.child_path("accounts"),
                line,
                format!("{a:?} is not a valid account name (no quotes, %, ! or @)"),
            );
        } else if accounts.contains(&a) {
            r.issue(sec.child_path("accounts"), line, format!("account {a:?} is listed twice"));
        } else {
            accounts.push(a);
        }
    }
    Some(Domain { name: name?, receiving_servers: servers, accounts })
}

fn required<T>(
    r: &mut Reader<'_>,
    sec: &mut Section<'_, '_>,
    key: &str,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match r.string(sec, key) {
        None => {
            r.issue(sec.child_path(key), sec.line(), "missing");
            None
        }
        Some((s, line)) => match check(&s) {
            Ok(v) => Some(v),
            Err(why) => {
                r.issue(sec.child_path(key), line, why);
                None
            }
        },
    }
}

fn date(r: &mut Reader<'_>, sec: &mut Section<'_, '_>, key: &str, needed: bool) -> Option<NaiveDate> {
    match r.date_text(sec, key) {
        None => {
            if needed {
                r.issue(sec.child_path(key), sec.line(), "missing (a date such as \"2026-12-01\")");
            }
            None
        }
        Some((s, line)) => match NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                r.issue(sec.child_path(key), line, format!("{s:?} is not a date (YYYY-MM-DD)"));
                None
            }
        },
    }
}

/// A `pass`/`refuse` policy key; `pass` when absent.
fn policy(r: &mut Reader<'_>, sec: &mut Section<'_, '_>, key: &str) -> EncryptedPolicy {
    match r.string(sec, key) {
        None => EncryptedPolicy::Pass,
        Some((s, line)) => EncryptedPolicy::parse(&s).unwrap_or_else(|| {
            r.issue(sec.child_path(key), line, format!("{s:?} is not \"pass\" or \"refuse\""));
            EncryptedPolicy::Pass
        }),
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from)).map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[contract]]
id = "acme"
customer = "ACME Corp."
accounts_limit = 3
starts = "2026-12-01"
sending_servers = ["127.0.0.5", "198.51.100.0/28"]
[[contract.domain]]
name = "Acme.Example"
receiving_servers = ["127.0.0.1:2600", "backup.acme.example"]
accounts = ["alice", "Bob"]
[[contract.domain]]
name = "acme2.example"
receiving_servers = ["127.0.0.1:2600"]
accounts = ["carol"]
"#;

    #[test]
    fn good_file() {
        let c = parse_file(GOOD).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].domains[0].name, "acme.example");
        assert_eq!(c[0].domains[0].accounts, vec!["alice", "bob"]);
        assert_eq!(c[0].sending_servers.len(), 2);
        assert_eq!(c[0].accounts_used(), 3);
    }

    fn errors(src: &str) -> Vec<String> {
        parse_file(src).unwrap_err().0.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn a_contract_written_back_reads_as_the_same() {
        let src = r#"
[[contract]]
id = "acme.jp"
customer = "株式会社 \"ACME\" \\ 東京"
accounts_limit = 7
starts = "2026-12-01"
ends = "2027-12-01"
sending_servers = ["192.0.2.0/28", "2001:db8::5"]
encrypted_attachments = "refuse"
functions = ["outbound"]
price_table = "small-office"
[[contract.domain]]
name = "例え.example"
receiving_servers = ["[2001:db8::1]:2525", "mx.acme.example"]
accounts = ["alice", "bob"]
[[contract.domain]]
name = "b.example"
receiving_servers = ["192.0.2.9"]
accounts = []
"#;
        let contracts = parse_file(src).unwrap();
        let again = parse_file(&to_toml(&contracts[0])).unwrap();
        assert_eq!(again, contracts);
    }

    /// R16: stopping one function is a change; stopping every one is a cancellation.
    #[test]
    fn functions_default_to_both_and_never_to_none() {
        let c = parse_file(GOOD).unwrap();
        assert_eq!(c[0].functions, Functions { inbound: true, outbound: true });
        let one = GOOD.replace("starts = ", "functions = [\"inbound\"]\nstarts = ");
        assert_eq!(parse_file(&one).unwrap()[0].functions, Functions { inbound: true, outbound: false });
        let none = GOOD.replace("starts = ", "functions = []\nstarts = ");
        let errs = errors(&none);
        assert!(errs.iter().any(|e| e.contains("use cancellation")), "{errs:?}");
        let typo = GOOD.replace("starts = ", "functions = [\"inbond\"]\nstarts = ");
        let errs = errors(&typo);
        assert!(errs.iter().any(|e| e.contains("unknown function \"inbond\"")), "{errs:?}");
    }

    #[test]
    fn every_error_at_once() {
        let src = r#"
[[contract]]
id = "acme"
customer = ""
accounts_limit = 1
starts = "2026-13-01"
sending_servers = ["300.1.1.1"]
colour = "red"
[[contract.domain]]
name = "acme.example"
receiving_servers = ["bad host"]
accounts = ["alice", "a%b", "bob"]

[[contract]]
id = "other"
customer = "Other"
accounts_limit = 5
starts = "2026-01-01"
[[contract.domain]]
name = "acme.example"
receiving_servers = ["127.0.0.1"]
"#;
        let e = errors(src);
        let expect = [
            "line 4: contract[0].customer: must not be empty",
            "line 6: contract[0].starts: \"2026-13-01\" is not a date (YYYY-MM-DD)",
            "line 7: contract[0].sending_servers: \"300.1.1.1\" is not an IP address or CIDR",
            "line 8: contract[0].colour: unknown key",
            "line 11: contract[0].domain[0].receiving_servers: invalid server \"bad host\"",
            "line 12: contract[0].domain[0].accounts: \"a%b\" is not a valid account name",
            "line 5: contract[0].accounts_limit: contract has 2 accounts but accounts_limit is 1",
            "contract[1].domain[0].name: domain \"acme.example\" is already registered to contract \"acme\"",
        ];
        for x in expect {
            assert!(e.iter().any(|l| l.contains(x)), "missing {x:?} in {e:#?}");
        }
    }

    #[test]
    fn over_limit_is_refused() {
        let src = GOOD.replace("accounts_limit = 3", "accounts_limit = 2");
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("contract has 3 accounts but accounts_limit is 2"));
    }

    #[test]
    fn duplicate_ids_and_syntax() {
        let src =
            format!("{GOOD}\n{}", GOOD.replace("Acme.Example", "x.example").replace("acme2.example", "y.example"));
        assert!(errors(&src).iter().any(|l| l.contains("duplicate contract id \"acme\"")));
        assert!(errors("[[contract]\n").iter().any(|l| l.starts_with("line 1: TOML syntax error")));
    }
}
