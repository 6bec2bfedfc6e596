//! The administrative commands — `contracts apply|list`, `queue list|show|flush|delete` — as
//! calls to the operator plane ([`operator::Operator`]) and their output formatted for a
//! terminal.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use operator::{Operator, OperatorError};

use crate::config::Config;

/// The operator plane over this configuration's stores.
pub fn operator(config: &Config) -> Operator {
    Operator::new(operator::Paths {
        spool: config.spool_dir(),
        contracts: config.contracts.url.clone(),
        message_log: config.log.message_log.clone(),
    })
}

/// `contracts apply FILE [--dry-run] [--prune]`: validate the whole file, show the plan, then
/// store it (unless a dry run).
pub async fn contracts_apply(config: &Config, file: &Path, opts: operator::ApplyOptions) -> anyhow::Result<ExitCode> {
    let src = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (dry_run, effective) = (opts.dry_run, opts.effective.filter(|d| Some(*d) > opts.today));
    let opts_today = opts.today;
    let result = operator(config).apply_contracts(&src, opts).await;
    report_applied(config, &file.display().to_string(), dry_run, effective, opts_today, result)
}

/// `contracts move-domain DOMAIN --to ID`.
pub async fn contracts_move_domain(
    config: &Config,
    domain: &str,
    to: &str,
    opts: operator::ApplyOptions,
) -> anyhow::Result<ExitCode> {
    let (dry_run, effective) = (opts.dry_run, opts.effective.filter(|d| Some(*d) > opts.today));
    let opts_today = opts.today;
    match operator(config).move_domain(domain, to, opts).await {
        Err(e @ (OperatorError::NoDomain(..) | OperatorError::NoContract(..) | OperatorError::BackDated { .. })) => {
            eprintln!("mxshield: {e}; nothing was changed");
            Ok(ExitCode::from(2))
        }
        result => report_applied(config, &format!("moving {domain} to {to}"), dry_run, effective, opts_today, result),
    }
}

/// Prints what an apply did (or why it was refused) and gives the exit status.
fn report_applied(
    config: &Config,
    what: &str,
    dry_run: bool,
    effective: Option<chrono::NaiveDate>,
    opts_today: Option<chrono::NaiveDate>,
    result: Result<operator::Applied, OperatorError>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(a) => {
            let p = &a.plan;
            for id in &p.added {
                println!("+ {id} (new)");
            }
            for (id, fields) in &p.changed {
                println!("~ {id}: {}", fields.join(", "));
                if let Some((_, before, after)) = a.price_changes.iter().find(|(c, _, _)| c == id) {
                    println!("  {id} moves to another price range: {before} -> {after} yen/month (a contract change)");
                }
            }
            let from = effective.or(opts_today).map(|d| d.to_string()).unwrap_or_else(|| "today".into());
            for (id, fee) in &p.cancelled {
                println!("- {id} (not in the file: cancelled from {from}; early-termination fee {fee} yen)");
            }
            for id in &p.missing {
                if p.prune {
                    println!("- {id} (not in the file: removed)");
                } else {
                    println!("= {id} (not in the file: kept; --prune removes it)");
                }
            }
            for r in &p.rebased {
                println!(
                    "  also {} revision {} (scheduled for {}): carried over this change, its own changes kept",
                    r.id, r.rev, r.effective_from
                );
            }
            let counts = format!(
                "{} new, {} changed, {} cancelled, {} unchanged, {} {}",
                p.added.len(),
                p.changed.len(),
                p.cancelled.len(),
                p.unchanged.len(),
                p.missing.len(),
                if p.prune { "removed" } else { "kept" }
            );
            match a.generation {
                Some(g) if let Some(day) = effective => {
                    println!("scheduled from {day} (00:00, {}): {counts}; generation {g}", config.calendar.name())
                }
                Some(g) => {
                    println!("applied: {counts}; {} contracts ({} domains), generation {g}", a.contracts, a.domains)
                }
                None if dry_run => println!("dry run, nothing changed: {counts}"),
                None => println!("nothing to change: {counts}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(OperatorError::InvalidContracts(issues)) => {
            eprintln!("mxshield: {what} is not valid; nothing was changed:");
            for i in &issues.0 {
                eprintln!("  {what}:{i}");
            }
            Ok(ExitCode::from(2))
        }
        Err(e @ OperatorError::BackDated { .. }) => {
            eprintln!("mxshield: {e}; nothing was changed");
            Ok(ExitCode::from(2))
        }
        Err(OperatorError::ContractConflicts(conflicts)) => {
            eprintln!("mxshield: {what} conflicts with the stored contracts; nothing was changed:");
            for c in &conflicts {
                eprintln!("  {c}");
            }
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

/// `contracts history ID [--full]`.
pub async fn contracts_history(config: &Config, id: &str, full: bool) -> anyhow::Result<ExitCode> {
    let revisions = operator(config).contract_history(id).await?;
    if revisions.is_empty() {
        eprintln!("mxshield: no contract {id:?} has ever been stored");
        return Ok(ExitCode::from(1));
    }
    println!("{:>4} {:<10} {:<20} {:<12} {:<32} REASON", "REV", "EFFECTIVE", "RECORDED", "BY", "CHANGED");
    for r in &revisions {
        println!(
            "{:>4} {:<10} {:<20} {:<12} {:<32} {}",
            r.rev,
            r.effective_from,
            r.created_at,
            r.actor,
            match (&r.withdrawn_at, r.pending) {
                (Some(_), _) => format!("{} (withdrawn)", r.changed.join(",")),
                (None, true) => format!("{} (scheduled)", r.changed.join(",")),
                (None, false) => r.changed.join(","),
            } + &r.fee.map(|f| format!(" (fee {f} yen)")).unwrap_or_default(),
            r.reason
        );
        if full && !r.doc.is_empty() {
            for line in r.doc.lines() {
                println!("       {line}");
            }
        }
    }
    let events = operator(config).contract_events(id).await?;
    println!();
    println!("{:<20} {:<24} {:>4} {:<12} {:<40} REASON", "EVENT AT", "EVENT", "REV", "BY", "WHAT");
    for e in contracts::timeline(&revisions, &events, config.calendar.today()) {
        let rev = e.rev.map(|r| r.to_string()).unwrap_or_default();
        println!("{:<20} {:<24} {:>4} {:<12} {:<40} {}", e.at, e.kind, rev, e.actor, e.detail, e.reason);
    }
    Ok(ExitCode::SUCCESS)
}

/// `contracts cancel ID --on DATE [--dry-run]`.
pub async fn contracts_cancel(
    config: &Config,
    id: &str,
    on: chrono::NaiveDate,
    req: &operator::CancelRequest<'_>,
) -> anyhow::Result<ExitCode> {
    let q = match operator(config).cancel(id, on, req).await {
        Ok(q) => q,
        Err(e @ (OperatorError::BackDated { .. } | OperatorError::NoContract(..) | OperatorError::AlreadyEnds(..))) => {
            eprintln!("mxshield: {e}; nothing was changed");
            return Ok(ExitCode::from(2));
        }
        Err(OperatorError::ContractConflicts(problems)) => {
            eprintln!("mxshield: cancelling {id} would leave later changes invalid; nothing was changed:");
            for p in &problems {
                eprintln!("  {p}");
            }
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let last = on.pred_opt().unwrap_or(on);
    println!("contract:          {} ({})", q.contract, q.customer);
    println!("service:           from {} to {last} (ends {on}, 00:00 {})", q.starts, config.calendar.name());
    match (q.min_term_end, q.monthly_fee) {
        (Some(end), Some(monthly)) => {
            println!("minimum term:      until {} (monthly fee {monthly} yen)", end.pred_opt().unwrap_or(end));
            let tax = match q.fee_tax {
                rating::TaxCategory::NonTaxable => "outside the scope of consumption tax",
                rating::TaxCategory::Standard => "plus consumption tax",
            };
            println!("termination fee:   {} yen ({tax})", q.fee);
        }
        _ => println!("termination fee:   none computed (no [billing] price table in force on {last})"),
    }
    if q.removed {
        println!("(cancelled on or before its start: the contract is removed)");
    }
    if !q.last_lines.is_empty() {
        println!("last statement's lines, as this cancellation makes them (yen, before tax):");
        for l in &q.last_lines {
            println!("{}", line_text(l));
        }
    }
    match q.generation {
        None => println!("quote only, nothing changed"),
        Some(g) if on > req.today => println!("cancellation scheduled from {on}; generation {g}"),
        Some(g) => println!("cancelled from today; generation {g}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// How `billing` commands print statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementFormat {
    /// A readable table.
    Table,
    /// JSON (an array of statements).
    Json,
    /// CSV: one row per line, then the subtotals, taxes and total of each statement.
    Csv,
}

/// The month `YYYY-MM` as its first day; prints why not and gives `None` if it is not one.
fn parse_month(month: &str) -> Option<chrono::NaiveDate> {
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok();
    if first.is_none() {
        eprintln!("mxshield: --month {month:?} is not a month (YYYY-MM)");
    }
    first
}

/// `billing statement --month YYYY-MM [--json | --csv]`: the drafts.
pub async fn billing_statement(config: &Config, month: &str, format: StatementFormat) -> anyhow::Result<ExitCode> {
    let Some(first) = parse_month(month) else { return Ok(ExitCode::from(2)) };
    let docs = match draft_docs(config, first).await? {
        Ok(docs) => docs,
        Err(code) => return Ok(code),
    };
    let shown: Vec<(Option<&contracts::IssuedStatement>, &operator::StatementDoc)> =
        docs.iter().map(|d| (None, d)).collect();
    print_statements(&shown, format)?;
    if docs.is_empty() && format == StatementFormat::Table {
        println!("no service to bill in {month}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The drafts of the month, or the exit code of a clear refusal (no price table, a month that
/// cannot be rated).
async fn draft_docs(
    config: &Config,
    first: chrono::NaiveDate,
) -> anyhow::Result<Result<Vec<operator::StatementDoc>, ExitCode>> {
    let billing = &config.billing;
    if billing.tables.is_empty() {
        eprintln!(
            "mxshield: the configuration has no [[billing.price_table]]: nothing to price contracts with (docs/config.md, [billing])"
        );
        return Ok(Err(ExitCode::from(2)));
    }
    let issuer =
        operator::Issuer { name: billing.issuer.clone(), registration_number: billing.registration_number.clone() };
    match operator(config).statement_docs(first, &billing.tables, billing.rounding, &issuer).await {
        Ok(docs) => Ok(Ok(docs)),
        Err(e @ (OperatorError::Rating(_) | OperatorError::InvalidRevision(_))) => {
            eprintln!("mxshield: {e}");
            Ok(Err(ExitCode::from(2)))
        }
        Err(e) => Err(e.into()),
    }
}

/// `billing issue --month YYYY-MM`: numbers and freezes the month's statements; one that
/// changed since it was issued is issued again as its correction.
pub async fn billing_issue(config: &Config, month: &str, actor: &str) -> anyhow::Result<ExitCode> {
    let Some(first) = parse_month(month) else { return Ok(ExitCode::from(2)) };
    let docs = match draft_docs(config, first).await? {
        Ok(docs) => docs,
        Err(code) => return Ok(code),
    };
    if docs.is_empty() {
        println!("no service to bill in {month}: nothing issued");
    }
    for (s, new) in operator(config).issue_statements(&docs, actor).await? {
        let what = match (new, s.corrects) {
            (false, _) => "already issued, unchanged:".to_string(),
            (true, Some(n)) => format!("issued (corrects {}):", operator::statement_number(n)),
            (true, None) => "issued:".to_string(),
        };
        println!(
            "{what:<28} {} {} {} total {} yen",
            operator::statement_number(s.number),
            s.month,
            s.customer,
            s.total
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `billing issued [--month YYYY-MM] [--number N] [--json | --csv]`.
pub async fn billing_issued(
    config: &Config,
    month: Option<&str>,
    number: Option<i64>,
    format: StatementFormat,
) -> anyhow::Result<ExitCode> {
    let issued = operator(config).issued_statements(month).await?;
    let shown: Vec<(Option<&contracts::IssuedStatement>, &operator::StatementDoc)> =
        issued.iter().filter(|(i, _)| number.is_none_or(|n| i.number == n)).map(|(i, d)| (Some(i), d)).collect();
    if let Some(n) = number.filter(|_| shown.is_empty()) {
        eprintln!("mxshield: no statement {} has been issued", operator::statement_number(n));
        return Ok(ExitCode::from(1));
    }
    if number.is_none() && format == StatementFormat::Table {
        // the list: one line each
        println!(
            "{:<10} {:<8} {:<24} {:>12} {:<20} {:<12} CORRECTS",
            "NUMBER", "MONTH", "CUSTOMER", "TOTAL", "ISSUED", "BY"
        );
        for (i, _) in &shown {
            let i = i.expect("issued");
            let corrects = i.corrects.map(operator::statement_number).unwrap_or_default();
            println!(
                "{:<10} {:<8} {:<24} {:>12} {:<20} {:<12} {corrects}",
                operator::statement_number(i.number),
                i.month,
                i.customer,
                i.total,
                i.issued_at,
                i.issued_by
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_statements(&shown, format)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints statements (drafts, or issued ones with their number) in `format`.
fn print_statements(
    shown: &[(Option<&contracts::IssuedStatement>, &operator::StatementDoc)],
    format: StatementFormat,
) -> anyhow::Result<()> {
    match format {
        StatementFormat::Json => {
            let out: Vec<serde_json::Value> = shown
                .iter()
                .map(|(issued, d)| {
                    let mut v = serde_json::to_value(d)?;
                    if let (Some(i), Some(obj)) = (issued, v.as_object_mut()) {
                        obj.insert("number".into(), operator::statement_number(i.number).into());
                        obj.insert("issued_at".into(), i.issued_at.clone().into());
                        obj.insert("issued_by".into(), i.issued_by.clone().into());
                        obj.insert("corrects".into(), i.corrects.map(operator::statement_number).into());
                    }
                    Ok(v)
                })
                .collect::<Result<_, serde_json::Error>>()?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        StatementFormat::Csv => print!("{}", operator::statements_csv(shown)),
        StatementFormat::Table => {
            for (issued, d) in shown {
                let state = match issued {
                    None => "draft".to_string(),
                    Some(i) => {
                        let corrects = i
                            .corrects
                            .map(|n| format!(", correcting {}", operator::statement_number(n)))
                            .unwrap_or_default();
                        format!(
                            "statement {} issued {} by {}{corrects}",
                            operator::statement_number(i.number),
                            i.issued_at,
                            i.issued_by
                        )
                    }
                };
                println!("{} — {} to {} ({state})", d.customer, d.period.from, d.period.to);
                if let Some(name) = &d.issuer.name {
                    println!("  issued by {name} {}", d.issuer.registration_number.as_deref().unwrap_or(""));
                }
                for l in &d.lines {
                    println!("{}", line_text(l));
                }
                if let Some(t) = &d.totals {
                    for r in &t.by_rate {
                        println!("  {:<72} {:>10}", format!("subtotal at {} %", r.rate.percent), r.subtotal);
                        println!("  {:<72} {:>10}", format!("consumption tax {} %", r.rate.percent), r.tax);
                    }
                    if t.non_taxable != 0 {
                        println!("  {:<72} {:>10}", "non-taxable", t.non_taxable);
                    }
                    println!("  {:<72} {:>10}", "total (yen)", t.total);
                }
            }
        }
    }
    Ok(())
}

/// One statement line as the tables print it.
fn line_text(l: &rating::Line) -> String {
    let what = match l.kind {
        rating::LineKind::Service => format!(
            "{} {} to {}, {} accounts at {} yen/month",
            l.contract,
            l.from,
            l.until.pred_opt().unwrap_or(l.until),
            l.accounts,
            l.monthly_fee
        ),
        rating::LineKind::EarlyTermination => format!("{} early-termination fee (ends {})", l.contract, l.from),
    };
    let tax = if l.category == rating::TaxCategory::NonTaxable { " (non-taxable)" } else { "" };
    format!("  {what:<72} {:>10}{tax}", l.amount)
}

/// `contracts withdraw ID REV`.
pub async fn contracts_withdraw(
    config: &Config,
    id: &str,
    rev: i64,
    actor: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    match operator(config).withdraw(id, rev, config.calendar.today(), actor, reason).await {
        Ok(true) => {
            println!("withdrawn: revision {rev} of {id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(OperatorError::ContractConflicts(problems)) => {
            eprintln!(
                "mxshield: withdrawing revision {rev} of {id} would leave later changes invalid; nothing was changed:"
            );
            for p in &problems {
                eprintln!("  {p}");
            }
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
        Ok(false) => {
            eprintln!("mxshield: {id} has no revision {rev} scheduled for a later day (see contracts history {id})");
            Ok(ExitCode::from(1))
        }
    }
}

/// Who runs a CLI command: `$USER`, or `cli`.
fn cli_actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

/// `tokens create --name N --scope S,… [--contract ID]… [--expires 90d]`.
pub async fn tokens_create(
    config: &Config,
    name: &str,
    scopes: &[String],
    bound: &[String],
    expires: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut problems = Vec::new();
    let mut parsed = std::collections::BTreeSet::new();
    for s in scopes {
        match s.parse::<operator::store::Scope>() {
            Ok(scope) => {
                parsed.insert(scope);
            }
            Err(why) => problems.push(why),
        }
    }
    if name.trim().is_empty() {
        problems.push("--name must not be empty".into());
    }
    let expires_at = match expires.map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => chrono::Duration::from_std(d).ok().map(|d| chrono::Utc::now() + d),
        Some(Err(e)) => {
            problems.push(format!("--expires {:?}: {e} (like 90d or 12h)", expires.unwrap_or_default()));
            None
        }
    };
    if !bound.is_empty() {
        let (contracts, _, _) = operator(config).contracts().await?;
        for id in bound.iter().filter(|id| !contracts.iter().any(|c| &c.id == *id)) {
            problems.push(format!("--contract {id:?}: no such contract"));
        }
        if parsed.iter().any(|s| s.write) {
            problems.push("a token bound to contracts is read-only: give it read scopes only".into());
        }
        for s in parsed.iter().filter(|s| !s.resource.per_contract()) {
            problems.push(format!(
                "a token bound to contracts reads only its contracts' data (contracts, billing, log): not {}",
                s.resource.name()
            ));
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("mxshield: {p}");
        }
        eprintln!("mxshield: no token was made");
        return Ok(ExitCode::from(2));
    }
    let store = operator::store::AdminStore::connect(&config.contracts.url).await?;
    let actor = cli_actor();
    let (token, secret) = store.create_token(name.trim(), &parsed, bound, expires_at, &actor).await?;
    let scopes: Vec<String> = token.scopes.iter().map(|s| s.to_string()).collect();
    store
        .audit(&operator::store::AuditEntry {
            actor,
            source: "cli".into(),
            action: "tokens.create".into(),
            target: token.id.clone(),
            before: None,
            after: Some(format!(
                "name={:?} scopes={} contracts={} expires={}",
                token.name,
                scopes.join(","),
                token.contracts.join(","),
                token.expires_at.as_deref().unwrap_or("never")
            )),
            outcome: "ok".into(),
        })
        .await?;
    println!("token {} ({}): {}", token.id, token.name, scopes.join(","));
    println!("{secret}");
    println!("(shown once: only its hash is kept; send it as \"Authorization: Bearer <token>\")");
    Ok(ExitCode::SUCCESS)
}

/// `tokens list`.
pub async fn tokens_list(config: &Config) -> anyhow::Result<ExitCode> {
    let store = operator::store::AdminStore::connect(&config.contracts.url).await?;
    println!(
        "{:<18} {:<20} {:<36} {:<12} {:<20} {:<20} {:<20} REVOKED",
        "ID", "NAME", "SCOPES", "CONTRACTS", "CREATED", "EXPIRES", "LAST USED"
    );
    for t in store.tokens().await? {
        let scopes: Vec<String> = t.scopes.iter().map(|s| s.to_string()).collect();
        let contracts = if t.contracts.is_empty() { "(all)".to_string() } else { t.contracts.join(",") };
        println!(
            "{:<18} {:<20} {:<36} {:<12} {:<20} {:<20} {:<20} {}",
            t.id,
            t.name,
            scopes.join(","),
            contracts,
            t.created_at,
            t.expires_at.as_deref().unwrap_or("-"),
            t.last_used_at.as_deref().unwrap_or("-"),
            t.revoked_at.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tokens revoke ID`.
pub async fn tokens_revoke(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let store = operator::store::AdminStore::connect(&config.contracts.url).await?;
    let revoked = store.revoke(id).await?;
    store
        .audit(&operator::store::AuditEntry {
            actor: cli_actor(),
            source: "cli".into(),
            action: "tokens.revoke".into(),
            target: id.to_string(),
            before: None,
            after: None,
            outcome: if revoked { "ok".into() } else { "no such token still valid".into() },
        })
        .await?;
    if revoked {
        println!("revoked: {id}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("mxshield: no token {id} that is still valid (see tokens list)");
        Ok(ExitCode::from(1))
    }
}

/// `users add NAME --role ROLE` (the password on standard input).
pub async fn users_add(config: &Config, name: &str, role: &str) -> anyhow::Result<ExitCode> {
    let Some(role) = operator::store::Role::parse(role) else {
        eprintln!("mxshield: --role {role:?}: admin, operator or auditor");
        return Ok(ExitCode::from(2));
    };
    let valid =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        eprintln!("mxshield: a user name is 1-64 letters, digits, '.', '_' or '-'");
        return Ok(ExitCode::from(2));
    }
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 12 {
        eprintln!("mxshield: the password (standard input) must be at least 12 characters; no user was added");
        return Ok(ExitCode::from(2));
    }
    let store = operator::store::AdminStore::connect(&config.contracts.url).await?;
    if !store.add_user(name, role, password).await? {
        eprintln!("mxshield: a user {name:?} exists already");
        return Ok(ExitCode::from(1));
    }
    store
        .audit(&operator::store::AuditEntry {
            actor: cli_actor(),
            source: "cli".into(),
            action: "users.add".into(),
            target: name.to_string(),
            before: None,
            after: Some(format!("role={}", role.as_str())),
            outcome: "ok".into(),
        })
        .await?;
    println!("user {name} ({}) added", role.as_str());
    Ok(ExitCode::SUCCESS)
}

/// `audit [--actor TEXT] [--action A] [--target T] [--since TIME] [--limit N]`.
pub async fn audit(config: &Config, filter: &operator::store::AuditFilter) -> anyhow::Result<ExitCode> {
    let store = operator::store::AdminStore::connect(&config.contracts.url).await?;
    println!("{:<20} {:<16} {:<10} {:<32} OUTCOME / CHANGE", "AT", "WHO", "FROM", "WHAT");
    for (at, e) in store.audit_search(filter).await? {
        let change = match (&e.before, &e.after) {
            (Some(b), Some(a)) => format!("{b} -> {a}"),
            (None, Some(a)) => a.clone(),
            (Some(b), None) => format!("{b} -> (gone)"),
            (None, None) => String::new(),
        };
        let what = format!("{} {}", e.action, e.target);
        println!("{at:<20} {:<16} {:<10} {what:<32} {} {change}", e.actor, e.source, e.outcome);
    }
    Ok(ExitCode::SUCCESS)
}

/// `contracts list`.
pub async fn contracts_list(config: &Config) -> anyhow::Result<ExitCode> {
    let (contracts, scheduled, generation) = operator(config).contracts().await?;
    let today = config.calendar.today();
    println!(
        "{:<16} {:<24} {:>9} {:<10} {:<10} {:<22} DOMAINS",
        "ID", "CUSTOMER", "ACCOUNTS", "STARTS", "ENDS", "STATE"
    );
    for c in &contracts {
        // derived from the dates, never stored
        let state = contracts::state_on(c, &scheduled, today);
        let ends = c.ends.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        let domains: Vec<String> = c
            .domains
            .iter()
            .map(|d| {
                let servers: Vec<String> = d.receiving_servers.iter().map(|s| s.to_string()).collect();
                format!("{} -> {}", d.name, servers.join(" "))
            })
            .collect();
        let accounts = format!("{}/{}", c.accounts_used(), c.accounts_limit);
        println!(
            "{:<16} {:<24} {:>9} {:<10} {:<10} {:<22} {}",
            c.id,
            c.customer,
            accounts,
            c.starts,
            ends,
            state,
            domains.join("; ")
        );
        if !c.sending_servers.is_empty() {
            let nets: Vec<String> = c.sending_servers.iter().map(|n| n.to_string()).collect();
            println!("{:<16} sending servers: {}", "", nets.join(" "));
        }
    }
    for s in scheduled {
        let what = match &s.contract {
            Some(c) => format!("{} accounts, {} domains", c.accounts_limit, c.domains.len()),
            None => "removed".to_string(),
        };
        println!("{:<16} scheduled from {} (revision {}): {what}", s.id, s.effective_from, s.rev);
    }
    println!("({} contracts, generation {generation})", contracts.len());
    Ok(ExitCode::SUCCESS)
}

fn time_ms(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `queue list`.
pub fn queue_list(config: &Config) -> anyhow::Result<ExitCode> {
    let entries = operator(config).queue()?;
    println!(
        "{:<20} {:<19} {:>9} {:<9} {:<30} {:<19} LAST ERROR",
        "ID", "RECEIVED", "SIZE", "DIRECTION", "FROM -> TO", "NEXT ATTEMPT"
    );
    for e in &entries {
        let next = if e.next_attempt == 0 { "now".to_string() } else { time_ms(e.next_attempt) };
        let sender = if e.sender.is_empty() { "<>" } else { &e.sender };
        println!(
            "{:<20} {:<19} {:>9} {:<9} {:<30} {:<19} {}",
            e.id,
            time_ms(e.received_at * 1000),
            e.size,
            e.direction,
            format!("{sender} -> {} ({} pending)", e.recipients, e.pending),
            next,
            e.last_error
        );
    }
    println!("({} messages)", entries.len());
    Ok(ExitCode::SUCCESS)
}

/// `queue show ID`.
pub fn queue_show(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let m = match operator(config).queued(id) {
        Ok(m) => m,
        Err(OperatorError::NotQueued(id)) => {
            eprintln!("mxshield: no message {id} in the queue");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let env = &m.envelope;
    println!("id:           {}", m.id);
    println!("received:     {}", time_ms(env.received_at * 1000));
    println!("size:         {}", m.size);
    println!("from:         <{}>", env.sender);
    for (k, v) in &env.attrs {
        println!("{:<13} {v}", format!("{k}:"));
    }
    println!("attempts:     {}", m.status.attempts);
    if m.status.next_attempt > 0 {
        println!("next attempt: {}", time_ms(m.status.next_attempt));
    }
    for (rcpt, st) in env.recipients.iter().zip(&m.status.rcpts) {
        println!("to:           <{rcpt}> {} {} {}", st.state.as_str(), st.remote, st.last_error);
    }
    println!();
    print!("{}", String::from_utf8_lossy(&m.headers));
    Ok(ExitCode::SUCCESS)
}

/// `queue flush`: every deferred message becomes due now (also for a running server).
pub fn queue_flush(config: &Config) -> anyhow::Result<ExitCode> {
    let n = operator(config).flush()?;
    println!("flushed {n} messages: a running server retries them now");
    Ok(ExitCode::SUCCESS)
}

/// `queue delete ID`: each recipient still pending is recorded `deleted` in the message log,
/// and the deletion is logged as an event (on standard error).
pub async fn queue_delete(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    match operator(config).delete(id).await {
        Ok(pending) => {
            eprintln!("event=\"deleted\" queue_id={id} recipients={} by=\"mxshield queue delete\"", pending.join(","));
            println!("deleted {id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(OperatorError::NotQueued(id)) => {
            eprintln!("mxshield: no message {id} in the queue");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
