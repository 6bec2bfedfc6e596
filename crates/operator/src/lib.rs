//! The operator plane's typed queries and commands: what `mxshield contracts|queue|log …` do,
//! as functions that return data (never print), so that a REST API can call the same ones.
//!
//! - [`Operator`]: where the stores are ([`Paths`]) and the operations on them.
//! - Contracts: [`Operator::apply_contracts`], [`Operator::contracts`].
//! - Queue: [`Operator::queue`], [`Operator::queued`], [`Operator::flush`], [`Operator::delete`].
//! - Message log: [`Operator::search_log`].
//! - [`admin`]: the HTTP API of the admin listener (`/api/v1`), over these same functions.
//! - [`store`]: the operator plane's own tables — API tokens, the audit log.
//! - [`metrics`]: the recorder behind `/metrics` (Prometheus text format).
//!
//! It names no stage of the mail path: it reads and writes the spool and the stores, which a
//! running gateway shares safely (atomic renames, SQLite transactions).

pub mod admin;
pub mod conditions;
pub mod metrics;
pub mod relay_probe;
pub mod store;

use std::path::PathBuf;

use chrono::Utc;
use contracts::{Contract, Revision, Store};
use msglog::search::{Filter, Found};
use msglog::{DeliveryRecord, LogLocation, LogStore};
use spool::{Envelope, QueueId, Spool, Status, attrs};

/// Where a gateway keeps its state.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The spool directory (`data_dir/spool`).
    pub spool: PathBuf,
    /// The contract store's database URL (`sqlite://…` or `postgres://…`).
    pub contracts: String,
    /// The message log.
    pub message_log: LogLocation,
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The contracts file has problems; nothing was changed.
    #[error("the contracts are not valid; nothing was changed")]
    InvalidContracts(confread::Issues),
    /// A recorded revision cannot be read back.
    #[error("a recorded revision is not valid: {0}")]
    InvalidRevision(String),
    /// A month cannot be rated (no price table in force, accounts in no range).
    #[error("cannot rate: {0}")]
    Rating(String),
    /// No such contract is in force on the day asked for.
    #[error("no contract {0:?} is in force on {1}")]
    NoContract(String, chrono::NaiveDate),
    /// No contract holds the domain on the day asked for.
    #[error("no contract holds domain {0:?} on {1}")]
    NoDomain(String, chrono::NaiveDate),
    /// The contract already ends on or before the day asked for.
    #[error("contract {0:?} already ends on {1}")]
    AlreadyEnds(String, chrono::NaiveDate),
    /// The effective day is before today (back-dating is refused).
    #[error("the effective day {effective} is before today ({today}): changes take effect today or later")]
    BackDated {
        /// The day asked for.
        effective: chrono::NaiveDate,
        /// Today in the operator's calendar.
        today: chrono::NaiveDate,
    },
    /// The file conflicts with contracts it does not list (kept without pruning); nothing was
    /// changed.
    #[error("the file conflicts with stored contracts; nothing was changed")]
    ContractConflicts(Vec<String>),
    /// No such message is queued.
    #[error("no message {0} in the queue")]
    NotQueued(QueueId),
    /// Not a queue id.
    #[error("{0}")]
    BadQueueId(String),
    /// The message log does not exist (yet).
    #[error("no message log at {0} (has the gateway run with this configuration?)")]
    NoMessageLog(String),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    /// The contract store failed.
    #[error(transparent)]
    Contracts(#[from] contracts::StoreError),
    /// The message log failed.
    #[error(transparent)]
    MessageLog(#[from] msglog::LogStoreError),
    /// The operator's own tables failed.
    #[error(transparent)]
    Admin(#[from] store::AdminStoreError),
    /// The node registry failed.
    #[error("the node registry: {0}")]
    Registry(#[from] ::store::DbError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What applying a contracts file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// What changed (or, for a dry run, would change).
    pub plan: contracts::Plan,
    /// Contracts stored after it.
    pub contracts: usize,
    /// Domains they register.
    pub domains: usize,
    /// The store's generation after the change (a running server reloads when it moves);
    /// `None` when nothing was written (a dry run, or nothing to change).
    pub generation: Option<i64>,
    /// Changed contracts whose accounts move them into another price range on that day (a
    /// contract change in the seed's terms): (contract, monthly fee before, after).
    pub price_changes: Vec<(String, rating::Yen, rating::Yen)>,
}

/// A customer's draft statement for a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The customer.
    pub customer: String,
    /// Its contracts' lines.
    pub lines: Vec<rating::Line>,
    /// Subtotal and tax per rate, non-taxable sum, total.
    pub totals: Option<rating::Totals>,
}

/// A customer's statement for a month as a document: what `billing statement` shows and
/// `billing issue` freezes — with the items a qualified invoice must show (issuer and its
/// registration number, recipient, period, amounts and tax per rate).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatementDoc {
    /// Who bills.
    pub issuer: Issuer,
    /// The customer billed.
    pub customer: String,
    /// The month billed (`YYYY-MM`).
    pub month: String,
    /// Its first and last day.
    pub period: Period,
    /// Its lines.
    pub lines: Vec<rating::Line>,
    /// Subtotal and tax per rate, non-taxable sum, total.
    pub totals: Option<rating::Totals>,
}

/// The issuer of statements (`[billing]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Issuer {
    /// Its name.
    pub name: Option<String>,
    /// Its qualified-invoice registration number (`T` and 13 digits).
    pub registration_number: Option<String>,
}

/// The days a statement covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Period {
    /// The first day.
    pub from: chrono::NaiveDate,
    /// The last day.
    pub to: chrono::NaiveDate,
}

/// How a statement number is shown: `S-000012`.
pub fn statement_number(n: i64) -> String {
    format!("S-{n:06}")
}

/// Statements (drafts, or issued ones with their number) as CSV: a header, one row per line,
/// then the subtotal and tax of each rate, the non-taxable sum and the total; cells quoted per
/// RFC 4180.
pub fn statements_csv(shown: &[(Option<&contracts::IssuedStatement>, &StatementDoc)]) -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "statement,customer,month,contract,item,from,to,accounts,monthly_fee,amount,tax_category,issuer,registration_number\n",
    );
    for (issued, d) in shown {
        let number = issued.map_or_else(|| "draft".to_string(), |i| statement_number(i.number));
        let issuer = d.issuer.name.clone().unwrap_or_default();
        let reg = d.issuer.registration_number.clone().unwrap_or_default();
        let mut row = |cells: [&str; 8]| {
            let [contract, item, from, to, accounts, monthly, amount, cat] = cells;
            let all = [
                number.as_str(),
                d.customer.as_str(),
                d.month.as_str(),
                contract,
                item,
                from,
                to,
                accounts,
                monthly,
                amount,
                cat,
                &issuer,
                &reg,
            ];
            let _ = writeln!(out, "{}", all.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
        };
        for l in &d.lines {
            let (item, accounts, monthly) = match l.kind {
                rating::LineKind::Service => ("service", l.accounts.to_string(), l.monthly_fee.to_string()),
                rating::LineKind::EarlyTermination => ("early_termination", String::new(), String::new()),
            };
            let (from, to) = (l.from.to_string(), l.until.pred_opt().unwrap_or(l.until).to_string());
            let amount = l.amount.to_string();
            row([&l.contract, item, &from, &to, &accounts, &monthly, &amount, category_name(l.category)]);
        }
        if let Some(t) = &d.totals {
            let (from, to) = (d.period.from.to_string(), d.period.to.to_string());
            for r in &t.by_rate {
                let (sub, tax) =
                    (format!("subtotal {} %", r.rate.percent), format!("consumption tax {} %", r.rate.percent));
                row(["", &sub, &from, &to, "", "", &r.subtotal.to_string(), "standard"]);
                row(["", &tax, &from, &to, "", "", &r.tax.to_string(), "tax"]);
            }
            if t.non_taxable != 0 {
                row(["", "non-taxable", &from, &to, "", "", &t.non_taxable.to_string(), "non_taxable"]);
            }
            row(["", "total", &from, &to, "", "", &t.total.to_string(), ""]);
        }
    }
    out
}

/// A tax category as CSV and JSON name it.
fn category_name(c: rating::TaxCategory) -> &'static str {
    match c {
        rating::TaxCategory::NonTaxable => "non_taxable",
        rating::TaxCategory::Standard => "standard",
    }
}

/// One CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// What a cancellation needs besides the contract and its day.
#[derive(Debug, Clone)]
pub struct CancelRequest<'a> {
    /// Today in the operator's calendar.
    pub today: chrono::NaiveDate,
    /// The price table's versions (empty: no fee is computed).
    pub tables: &'a rating::PriceBook,
    /// Who cancels.
    pub actor: &'a str,
    /// Why (the form, the letter).
    pub reason: &'a str,
    /// Only quote.
    pub dry_run: bool,
}

/// A cancellation's quote (and, once made, its generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The contract.
    pub contract: String,
    /// Its customer.
    pub customer: String,
    /// Its first day of service.
    pub starts: chrono::NaiveDate,
    /// Its first day without service.
    pub ends: chrono::NaiveDate,
    /// The first day it may end without a fee (`None`: no price table).
    pub min_term_end: Option<chrono::NaiveDate>,
    /// The monthly fee of its range (`None`: no price table in force).
    pub monthly_fee: Option<rating::Yen>,
    /// The early-termination fee (yen, before tax).
    pub fee: rating::Yen,
    /// How that fee is taxed.
    pub fee_tax: rating::TaxCategory,
    /// Cancelled on or before its start: removed rather than ended.
    pub removed: bool,
    /// The lines of its last statement as the cancellation makes them: the last month of
    /// service, and the fee (empty without price tables, or when removed before its start).
    pub last_lines: Vec<rating::Line>,
    /// The store's generation after it was recorded (`None` for a quote only).
    pub generation: Option<i64>,
}

/// How `contracts apply` treats the store.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Remove the stored contracts the file does not list (otherwise they are kept).
    pub prune: bool,
    /// Only compute the plan.
    pub dry_run: bool,
    /// The operator's day: the revisions recorded take effect from it.
    pub today: Option<chrono::NaiveDate>,
    /// A later day from which the file's contracts take effect (scheduled: nothing changes
    /// before it); `None`: today.
    pub effective: Option<chrono::NaiveDate>,
    /// Who makes the change (kept in each revision).
    pub actor: String,
    /// Why (kept in each revision).
    pub reason: String,
    /// The price tables: a pruned contract is cancelled with the early-termination fee they
    /// give; a contract must name one of them (when there are any).
    pub tables: rating::PriceBook,
}

/// One queued message, as listed.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    /// Its queue id.
    pub id: QueueId,
    /// Unix seconds.
    pub received_at: u64,
    /// Message bytes.
    pub size: u64,
    /// `inbound`, `outbound`, `warning` or `dsn`.
    pub direction: String,
    /// Envelope sender (empty for `<>`).
    pub sender: String,
    /// Number of recipients.
    pub recipients: usize,
    /// Recipients not yet delivered or failed.
    pub pending: usize,
    /// Unix milliseconds; 0 = now.
    pub next_attempt: u64,
    /// The first recipient's last error, if any.
    pub last_error: String,
}

/// One queued message in full: envelope, status and header section.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Its queue id.
    pub id: QueueId,
    /// Sender, recipients and attributes.
    pub envelope: Envelope,
    /// Each recipient's state, attempts, next attempt.
    pub status: Status,
    /// Message bytes.
    pub size: usize,
    /// The message's header section (at most 64 KiB).
    pub headers: Vec<u8>,
}

/// The operations.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Where the state is.
    pub paths: Paths,
    /// The contract store, connected (and migrated) once, at first use: a long-running caller
    /// (the admin listener) does not reconnect on every request.
    store: std::sync::Arc<tokio::sync::OnceCell<Store>>,
    /// The message log, opened once, at first use (like `store`).
    log: std::sync::Arc<tokio::sync::OnceCell<LogStore>>,
    /// The node registry (in the contracts database), connected once, at first use.
    registry: std::sync::Arc<tokio::sync::OnceCell<::store::nodes::Registry>>,
}

impl Operator {
    /// Operations on the state under `paths`.
    pub fn new(paths: Paths) -> Operator {
        Operator { paths, store: Default::default(), log: Default::default(), registry: Default::default() }
    }

    /// The contract store (see the `store` field).
    async fn store(&self) -> Result<&Store, OperatorError> {
        Ok(self.store.get_or_try_init(|| Store::connect(&self.paths.contracts)).await?)
    }

    /// The message log (see the `log` field).
    async fn log(&self) -> Result<&LogStore, OperatorError> {
        Ok(self.log.get_or_try_init(|| LogStore::open_at(&self.paths.message_log)).await?)
    }

    /// The node registry (see the `registry` field).
    pub async fn registry(&self) -> Result<&::store::nodes::Registry, OperatorError> {
        Ok(self.registry.get_or_try_init(|| ::store::nodes::Registry::connect(&self.paths.contracts)).await?)
    }

    fn spool(&self) -> Result<Spool, OperatorError> {
        Ok(Spool::open(&self.paths.spool)?)
    }

    /// Validates a whole contracts file and, if it has no problem, stores its contracts:
    /// created or replaced whole, the others kept unless `opts.prune` (see [`contracts::plan()`]).
    pub async fn apply_contracts(&self, src: &str, opts: ApplyOptions) -> Result<Applied, OperatorError> {
        let file = contracts::parse_file(src).map_err(OperatorError::InvalidContracts)?;
        if let Some(dir) =
            contracts::store::sqlite_path(&self.paths.contracts).and_then(|p| p.parent().map(PathBuf::from))
        {
            std::fs::create_dir_all(&dir).map_err(|source| OperatorError::Io { path: dir.clone(), source })?;
        }
        let store = self.store().await?;
        let today = opts.today.unwrap_or_else(|| Utc::now().date_naive());
        let effective = opts.effective.unwrap_or(today);
        if effective < today {
            return Err(OperatorError::BackDated { effective, today });
        }
        let (now, scheduled, _) = store.load_all().await?;
        // planned against the contracts as they will be on that day
        let stored = contracts::in_force_on(now, &scheduled, effective);
        if !opts.tables.is_empty() {
            let unknown: Vec<String> = file
                .iter()
                .filter(|c| opts.tables.table(c.price_table.as_deref()).is_none())
                .map(|c| {
                    format!(
                        "contract {:?}: no price table {:?} in [billing] (known: {})",
                        c.id,
                        c.price_table.as_deref().unwrap_or(rating::PriceBook::DEFAULT),
                        opts.tables.names().join(", ")
                    )
                })
                .collect();
            if !unknown.is_empty() {
                return Err(OperatorError::ContractConflicts(unknown));
            }
        }
        let (mut plan, mut contracts) =
            contracts::plan(&stored, &file, opts.prune).map_err(OperatorError::ContractConflicts)?;
        if plan.prune {
            // pruned: cancelled from that day, with the fee the cancellation rules give; a
            // contract not started yet is removed, one already ended only removed
            for id in std::mem::take(&mut plan.missing) {
                let Some(c) = stored.iter().find(|c| c.id == id) else { continue };
                if c.ends.is_some_and(|e| e <= effective) {
                    plan.missing.push(id);
                    continue;
                }
                let (fee, ..) = termination_quote(&opts.tables, c, effective);
                if effective > c.starts {
                    contracts.push(Contract { ends: Some(effective), ..c.clone() });
                }
                plan.cancelled.push((id, fee));
            }
        }
        let touched: Vec<&str> = plan
            .added
            .iter()
            .chain(plan.changed.iter().map(|(id, _)| id))
            .chain(plan.cancelled.iter().map(|(id, _)| id))
            .chain(plan.missing.iter().filter(|_| plan.prune))
            .map(String::as_str)
            .collect();
        plan.rebased = carry_over(&stored, &contracts, &scheduled, effective, &touched)?;
        let generation = if opts.dry_run || !plan.changes_anything() {
            None
        } else if effective > today {
            Some(store.schedule(&contracts, &plan, effective, &opts.actor, &opts.reason).await?)
        } else {
            Some(store.apply_recorded(&contracts, &plan, today, &opts.actor, &opts.reason).await?)
        };
        let domains = contracts.iter().map(|c| c.domains.len()).sum();
        let fee = |c: &Contract| {
            let table = opts.tables.table(c.price_table.as_deref())?.on(effective)?;
            Some(table.tier(c.accounts_limit)?.monthly_fee)
        };
        let price_changes = plan
            .changed
            .iter()
            .filter_map(|(id, _)| {
                let (old, new) = (stored.iter().find(|c| c.id == *id)?, contracts.iter().find(|c| c.id == *id)?);
                let (before, after) = (fee(old)?, fee(new)?);
                (before != after).then(|| (id.clone(), before, after))
            })
            .collect();
        Ok(Applied { plan, contracts: contracts.len(), domains, generation, price_changes })
    }

    /// Moves registered domain `domain` (with its receiving servers and accounts) from the
    /// contract holding it to contract `to`, from `opts.effective` (or today): one change of
    /// both contracts, planned, validated and recorded like an apply of a file listing the two
    /// — a source left without a domain, or a target over its account limit, is refused.
    pub async fn move_domain(&self, domain: &str, to: &str, opts: ApplyOptions) -> Result<Applied, OperatorError> {
        let today = opts.today.unwrap_or_else(|| Utc::now().date_naive());
        let effective = opts.effective.unwrap_or(today);
        let store = self.store().await?;
        let (now, scheduled, _) = store.load_all().await?;
        let then = contracts::in_force_on(now, &scheduled, effective);
        let name = contracts::normalize_domain(domain).unwrap_or_else(|| domain.to_ascii_lowercase());
        let Some(mut from) = then.iter().find(|c| c.domains.iter().any(|d| d.name == name)).cloned() else {
            return Err(OperatorError::NoDomain(name, effective));
        };
        let Some(mut target) = then.iter().find(|c| c.id == to).cloned() else {
            return Err(OperatorError::NoContract(to.to_string(), effective));
        };
        if from.id == target.id {
            return Err(OperatorError::ContractConflicts(vec![format!(
                "domain {name:?} is already registered to contract {to:?}"
            )]));
        }
        let at = from.domains.iter().position(|d| d.name == name).expect("found above");
        target.domains.push(from.domains.remove(at));
        let src = format!("{}\n{}", contracts::to_toml(&from), contracts::to_toml(&target));
        self.apply_contracts(&src, opts).await
    }

    /// Cancels contract `id` from day `on` (its first day without service; `on` ≥ `today`),
    /// with the quote: the early-termination fee from `tables` (the version in force on the
    /// last day of service), recorded with the cancellation. A later day schedules it; a
    /// cancellation on or before the start removes the contract. `dry_run`: the quote only.
    pub async fn cancel(
        &self,
        id: &str,
        on: chrono::NaiveDate,
        req: &CancelRequest<'_>,
    ) -> Result<Quote, OperatorError> {
        let today = req.today;
        if on < today {
            return Err(OperatorError::BackDated { effective: on, today });
        }
        let store = self.store().await?;
        let (now, scheduled, _) = store.load_all().await?;
        let then = contracts::in_force_on(now.clone(), &scheduled, on);
        let Some(c) = then.iter().find(|c| c.id == id).cloned() else {
            return Err(OperatorError::NoContract(id.to_string(), on));
        };
        if let Some(ends) = c.ends.filter(|e| *e <= on) {
            return Err(OperatorError::AlreadyEnds(id.to_string(), ends));
        }
        let (fee, fee_tax, monthly_fee, min_term_end) = termination_quote(req.tables, &c, on);
        let before_start = on <= c.starts;
        let mut quote = Quote {
            contract: c.id.clone(),
            customer: c.customer.clone(),
            starts: c.starts,
            ends: on,
            min_term_end,
            monthly_fee,
            fee,
            fee_tax,
            removed: before_start,
            last_lines: Vec::new(),
            generation: None,
        };
        let cancelled = Contract { ends: Some(on), ..c.clone() };
        if !before_start && !req.tables.is_empty() {
            // the contract's revisions, with this cancellation as it would be recorded
            let history = store.history(id).await?;
            let made = Revision {
                contract: c.id.clone(),
                rev: history.last().map_or(1, |r| r.rev + 1),
                effective_from: on,
                doc: contracts::to_toml(&cancelled),
                changed: vec!["cancelled".into()],
                created_at: String::new(),
                actor: req.actor.to_string(),
                reason: req.reason.to_string(),
                pending: on > today,
                withdrawn_at: None,
                fee: Some(fee),
            };
            let revs: Vec<&Revision> =
                history.iter().filter(|r| r.withdrawn_at.is_none()).chain(std::iter::once(&made)).collect();
            let last_day = on.pred_opt().unwrap_or(on);
            let mut months = vec![last_day];
            if rating::month_bounds(on).0 != rating::month_bounds(last_day).0 {
                months.push(on);
            }
            for month in months {
                if let Some((_, lines)) = contract_month_lines(&c.id, &revs, month, req.tables)? {
                    quote.last_lines.extend(lines);
                }
            }
        }
        if req.dry_run {
            return Ok(quote);
        }
        let mut plan = contracts::Plan { cancelled: vec![(c.id.clone(), fee)], ..Default::default() };
        // before its start it is removed that day; otherwise it ends that day
        let kept = if before_start { Vec::new() } else { vec![cancelled.clone()] };
        if !before_start {
            // changes scheduled after the end keep it
            plan.rebased = carry_over(&then, &kept, &scheduled, on, &[id])?;
        }
        quote.generation = Some(if on > today {
            store.schedule(&kept, &plan, on, req.actor, req.reason).await?
        } else {
            // in force today: the stored set as it is today, with this contract ended
            let set: Vec<Contract> = contracts::in_force_on(now, &scheduled, today)
                .into_iter()
                .filter(|x| !(before_start && x.id == c.id))
                .map(|x| if x.id == c.id { cancelled.clone() } else { x })
                .collect();
            store.apply_recorded(&set, &plan, today, req.actor, req.reason).await?
        });
        Ok(quote)
    }

    /// The draft statements of the month holding `month`, one per customer: each contract's
    /// lines from its recorded revisions (withdrawn ones left out; its accounts as each
    /// revision made them, its end and quoted early-termination fee from its cancellation),
    /// priced by `tables`, taxed once per rate with `rounding`.
    pub async fn statements(
        &self,
        month: chrono::NaiveDate,
        tables: &rating::PriceBook,
        rounding: rating::Rounding,
    ) -> Result<Vec<Statement>, OperatorError> {
        let revisions = self.store().await?.all_revisions().await?;
        let mut by_contract: Vec<(String, Vec<&contracts::Revision>)> = Vec::new();
        for r in revisions.iter().filter(|r| r.withdrawn_at.is_none()) {
            match by_contract.last_mut() {
                Some((id, list)) if *id == r.contract => list.push(r),
                _ => by_contract.push((r.contract.clone(), vec![r])),
            }
        }
        let mut statements: Vec<Statement> = Vec::new();
        for (id, revs) in by_contract {
            let Some((customer, lines)) = contract_month_lines(&id, &revs, month, tables)? else { continue };
            match statements.iter_mut().find(|s| s.customer == customer) {
                Some(s) => s.lines.extend(lines),
                None => statements.push(Statement { customer, lines, totals: None }),
            }
        }
        let rates = rating::TaxRates::japan();
        for s in &mut statements {
            s.totals = Some(rating::totals(&s.lines, &rates, rounding).ok_or_else(|| {
                OperatorError::Rating(format!("{}: a line falls before any known tax rate", s.customer))
            })?);
        }
        statements.sort_by(|a, b| a.customer.cmp(&b.customer));
        Ok(statements)
    }

    /// The draft statements of the month holding `month` as documents, by `issuer`.
    pub async fn statement_docs(
        &self,
        month: chrono::NaiveDate,
        tables: &rating::PriceBook,
        rounding: rating::Rounding,
        issuer: &Issuer,
    ) -> Result<Vec<StatementDoc>, OperatorError> {
        let (first, next) = rating::month_bounds(month);
        let period = Period { from: first, to: next.pred_opt().unwrap_or(next) };
        Ok(self
            .statements(month, tables, rounding)
            .await?
            .into_iter()
            .map(|s| StatementDoc {
                issuer: issuer.clone(),
                customer: s.customer,
                month: first.format("%Y-%m").to_string(),
                period,
                lines: s.lines,
                totals: s.totals,
            })
            .collect())
    }

    /// Issues `docs`: each numbered and frozen, unless the customer's last statement for the
    /// month says the same (then that one, `false`); one that differs is its correction.
    pub async fn issue_statements(
        &self,
        docs: &[StatementDoc],
        actor: &str,
    ) -> Result<Vec<(contracts::IssuedStatement, bool)>, OperatorError> {
        let store = self.store().await?;
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            let body = serde_json::to_string(d).map_err(|e| OperatorError::Rating(e.to_string()))?;
            let total = d.totals.as_ref().map_or(0, |t| t.total);
            out.push(store.issue_statement(&d.customer, &d.month, &body, total, actor).await?);
        }
        Ok(out)
    }

    /// The statements issued (for `month`, `YYYY-MM`, if given), in the order issued, each
    /// with its document.
    pub async fn issued_statements(
        &self,
        month: Option<&str>,
    ) -> Result<Vec<(contracts::IssuedStatement, StatementDoc)>, OperatorError> {
        let issued = self.store().await?.issued_statements(month).await?;
        issued
            .into_iter()
            .map(|i| {
                let doc = serde_json::from_str(&i.body)
                    .map_err(|e| OperatorError::InvalidRevision(format!("statement {}: {e}", i.number)))?;
                Ok((i, doc))
            })
            .collect()
    }

    /// Withdraws revision `rev` of contract `id`, scheduled for a day after `today`; the
    /// revisions scheduled after it are carried over the withdrawal (what they change is kept,
    /// the rest is as before the withdrawn one) and validated again — refused, changing nothing,
    /// if one of them would no longer hold.
    pub async fn withdraw(
        &self,
        id: &str,
        rev: i64,
        today: chrono::NaiveDate,
        actor: &str,
        reason: &str,
    ) -> Result<bool, OperatorError> {
        let store = self.store().await?;
        let (now, scheduled, _) = store.load_all().await?;
        let Some(w) = scheduled.iter().find(|s| s.id == id && s.rev == rev) else {
            return Ok(false);
        };
        let key = |s: &contracts::Scheduled| (s.effective_from, s.rev);
        let others: Vec<contracts::Scheduled> =
            scheduled.iter().filter(|s| !(s.id == id && s.rev == rev)).cloned().collect();
        let before: Vec<contracts::Scheduled> =
            others.iter().filter(|s| s.id == id && key(s) < key(w)).cloned().collect();
        let prev = contracts::in_force_on(now.clone(), &before, w.effective_from).into_iter().find(|c| c.id == id);
        let later: Vec<&contracts::Scheduled> = others.iter().filter(|s| s.id == id && key(s) > key(w)).collect();
        let rebased =
            contracts::carry_forward(&later, w.contract.clone(), prev).map_err(OperatorError::ContractConflicts)?;
        let after: Vec<contracts::Scheduled> = others
            .iter()
            .map(|s| rebased.iter().find(|r| r.id == s.id && r.rev == s.rev).unwrap_or(s).clone())
            .collect();
        let problems = contracts::later_conflicts(&now, &after);
        if !problems.is_empty() {
            return Err(OperatorError::ContractConflicts(problems));
        }
        Ok(store.withdraw(id, rev, today, &rebased, actor, reason).await?)
    }

    /// The recorded events of contract `id` (withdrawals, revisions carried over), in order.
    pub async fn contract_events(&self, id: &str) -> Result<Vec<contracts::Event>, OperatorError> {
        Ok(self.store().await?.events(id).await?)
    }

    /// Every recorded revision of contract `id`, oldest first.
    pub async fn contract_history(&self, id: &str) -> Result<Vec<contracts::Revision>, OperatorError> {
        Ok(self.store().await?.history(id).await?)
    }

    /// [`Operator::contracts`] restricted to what `visibility` lets the caller see — the one
    /// place the API reads contracts from, so a token bound to contracts never sees another's.
    pub async fn contracts_visible(
        &self,
        visibility: &admin::Visibility,
    ) -> Result<(Vec<Contract>, Vec<contracts::Scheduled>, i64), OperatorError> {
        let (contracts, scheduled, generation) = self.contracts().await?;
        Ok((
            contracts.into_iter().filter(|c| visibility.sees(&c.id)).collect(),
            scheduled.into_iter().filter(|s| visibility.sees(&s.id)).collect(),
            generation,
        ))
    }

    /// The stored contracts, the changes scheduled for later days, and their generation.
    pub async fn contracts(&self) -> Result<(Vec<Contract>, Vec<contracts::Scheduled>, i64), OperatorError> {
        Ok(self.store().await?.load_all().await?)
    }

    /// Every queued message, oldest first (files that cannot be read are skipped).
    pub fn queue(&self) -> Result<Vec<QueueEntry>, OperatorError> {
        let spool = self.spool()?;
        let mut ids = spool.list()?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(m) = spool.open_message(&id) else { continue };
            let env = m.envelope;
            let status = spool.read_status(&id, env.recipients.len())?;
            out.push(QueueEntry {
                received_at: env.received_at,
                size: m.data_len,
                direction: env.attr(attrs::DIRECTION).unwrap_or("").to_string(),
                recipients: env.recipients.len(),
                pending: status.rcpts.iter().filter(|r| !r.state.is_final()).count(),
                next_attempt: status.next_attempt,
                last_error: status
                    .rcpts
                    .iter()
                    .map(|r| r.last_error.clone())
                    .find(|e| !e.is_empty())
                    .unwrap_or_default(),
                sender: env.sender,
                id,
            });
        }
        Ok(out)
    }

    /// One queued message.
    pub fn queued(&self, id: &str) -> Result<QueuedMessage, OperatorError> {
        let spool = self.spool()?;
        let id = QueueId::parse(id).map_err(OperatorError::BadQueueId)?;
        let (envelope, data) = match spool.read_data(&id) {
            Ok(x) => x,
            Err(spool::SpoolError::NotFound(_)) => return Err(OperatorError::NotQueued(id)),
            Err(e) => return Err(e.into()),
        };
        let status = spool.read_status(&id, envelope.recipients.len())?;
        let headers = mime::header::section(&data, 64 * 1024).to_vec();
        Ok(QueuedMessage { id, envelope, status, size: data.len(), headers })
    }

    /// Makes every deferred message due now, and tells a running server so; returns how many
    /// messages are queued.
    pub fn flush(&self) -> Result<usize, OperatorError> {
        let spool = self.spool()?;
        let mut n = 0;
        for id in spool.list()? {
            let Ok(m) = spool.open_message(&id) else { continue };
            let mut status = spool.read_status(&id, m.envelope.recipients.len())?;
            if status.next_attempt != 0 {
                status.next_attempt = 0;
                spool.write_status(&id, &status)?;
            }
            n += 1;
        }
        let marker = spool.root().join("flush");
        std::fs::write(&marker, Utc::now().to_rfc3339())
            .map_err(|source| OperatorError::Io { path: marker, source })?;
        Ok(n)
    }

    /// Deletes a queued message; each recipient still pending is recorded `deleted` in the
    /// message log. Returns those recipients.
    pub async fn delete(&self, id: &str) -> Result<Vec<String>, OperatorError> {
        let spool = self.spool()?;
        let id = QueueId::parse(id).map_err(OperatorError::BadQueueId)?;
        let pending: Vec<String> = match spool.open_message(&id) {
            Ok(m) => {
                let status = spool.read_status(&id, m.envelope.recipients.len()).ok();
                let done = |i: usize| status.as_ref().and_then(|s| s.rcpts.get(i)).is_some_and(|r| r.state.is_final());
                m.envelope.recipients.iter().enumerate().filter(|(i, _)| !done(*i)).map(|(_, r)| r.clone()).collect()
            }
            Err(_) => Vec::new(),
        };
        if !spool.remove(&id)? {
            return Err(OperatorError::NotQueued(id));
        }
        if self.has_message_log() {
            let at = Utc::now().timestamp();
            let records: Vec<DeliveryRecord> = pending
                .iter()
                .map(|rcpt| DeliveryRecord {
                    event_id: msglog::fresh_event_id(),
                    queue_id: id.to_string(),
                    rcpt: rcpt.clone(),
                    state: msglog::RcptState::Deleted,
                    remote: String::new(),
                    reply: "deleted by the operator".into(),
                    at,
                })
                .collect();
            self.log().await?.write(&[], &records).await?;
        }
        Ok(pending)
    }

    /// Messages in the log that match `filter`, newest first.
    pub async fn search_log(&self, filter: &Filter) -> Result<Vec<Found>, OperatorError> {
        if !self.has_message_log() {
            return Err(OperatorError::NoMessageLog(self.paths.message_log.describe()));
        }
        Ok(self.log().await?.search(filter).await?)
    }

    /// The conditions of use of every contract with something measured (or of `contract`), as
    /// of `now` (Unix seconds): its outbound mail in the window (from the message log; none
    /// without one), its bulk mail, its open-relay probes; each with the operator's handling
    /// from `admin` (what was cleared counts only from then on).
    pub async fn conditions(
        &self,
        contract: Option<&str>,
        thresholds: &conditions::Thresholds,
        admin: &store::AdminStore,
        now: i64,
    ) -> Result<Vec<conditions::Finding>, OperatorError> {
        let cleared = admin.cleared_findings().await?;
        let acknowledged = admin.acknowledged_findings().await?;
        let mut findings = conditions::measure_relay(&admin.latest_relay_probes(contract).await?, &cleared);
        if self.has_message_log() {
            let since = now - i64::from(thresholds.window_days) * 86_400;
            // bounded: the outcomes of the window, newest first, at most two million
            let log = self.log().await?;
            let outcomes = log.outbound_outcomes(since, contract, 2_000_000).await?;
            findings.extend(conditions::measure(&outcomes, now, thresholds, &cleared));
            let clusters = log.bulk_clusters(contract).await?;
            let counts = log.bulk_counts(since).await?;
            findings.extend(conditions::measure_bulk(&clusters, &counts, now, thresholds, &cleared));
            let spam = log.spam_counts(since, contract).await?;
            findings.extend(conditions::measure_spam_score(&spam, now, thresholds, &cleared));
        }
        for f in &mut findings {
            f.settle(&cleared, &acknowledged);
        }
        findings.sort_by(|a, b| (a.contract.as_str(), a.kind).cmp(&(b.contract.as_str(), b.kind)));
        Ok(findings)
    }

    /// Message `queue_id`'s delivery outcomes as they happened (each recipient's timeline) and
    /// the messages generated about it (warnings, DSNs); empty without a log.
    pub async fn message_history(
        &self,
        queue_id: &str,
    ) -> Result<(Vec<msglog::TimelineEvent>, Vec<msglog::MessageSummary>), OperatorError> {
        if !self.has_message_log() {
            return Ok((Vec::new(), Vec::new()));
        }
        let log = self.log().await?;
        Ok((log.timeline(queue_id).await?, log.related(queue_id).await?))
    }

    /// The message log's hourly roll-ups from `since` to `until` (Unix seconds), optionally of
    /// one contract; empty when there is no log yet.
    pub async fn log_hourly(
        &self,
        since: i64,
        until: i64,
        contract: Option<&str>,
    ) -> Result<(Vec<msglog::HourlyMessages>, Vec<msglog::HourlyOutcomes>), OperatorError> {
        if !self.has_message_log() {
            return Ok((Vec::new(), Vec::new()));
        }
        Ok(self.log().await?.hourly(since, until, contract).await?)
    }

    /// Whether there is a message log to read (a shared one always is; a file once a gateway
    /// has made it).
    fn has_message_log(&self) -> bool {
        match &self.paths.message_log {
            LogLocation::File(p) => p.exists(),
            LogLocation::Shared { .. } => true,
        }
    }
}

/// One contract's lines for the month holding `month`, from its revisions (not withdrawn): its
/// accounts as each revision made them (the first counts from its start), its end from its
/// cancellation or removal with the quoted fee, priced by the table its latest revision names.
/// `None` when it has no service that month; with its customer otherwise.
fn contract_month_lines(
    id: &str,
    revs: &[&contracts::Revision],
    month: chrono::NaiveDate,
    tables: &rating::PriceBook,
) -> Result<Option<(String, Vec<rating::Line>)>, OperatorError> {
    let (_, month_end) = rating::month_bounds(month);
    let mut revs: Vec<&contracts::Revision> = revs.to_vec();
    revs.sort_by_key(|r| (r.effective_from, r.rev));
    let mut docs: Vec<(chrono::NaiveDate, Option<Contract>, Option<i64>)> = Vec::new();
    for (i, r) in revs.iter().enumerate() {
        let doc = if r.doc.is_empty() {
            None
        } else {
            let mut parsed = contracts::parse_file(&r.doc)
                .map_err(|e| OperatorError::InvalidRevision(format!("{id} revision {}: {e}", r.rev)))?;
            (parsed.len() == 1).then(|| parsed.remove(0))
        };
        // the first revision describes the contract from its start, even when it was keyed in
        // later (a contract entered today that started in January is billed from January)
        let from = match (&doc, i) {
            (Some(c), 0) => r.effective_from.min(c.starts),
            _ => r.effective_from,
        };
        // the revisions in effect by the end of the month
        if from < month_end {
            docs.push((from, doc, r.fee));
        }
    }
    let Some(last) = docs.iter().rev().find_map(|(_, d, _)| d.as_ref()) else { return Ok(None) };
    let removed_on = docs.last().filter(|(_, d, _)| d.is_none()).map(|(day, _, _)| *day);
    let ends = match (last.ends, removed_on) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let fee = docs.iter().rev().find_map(|(_, _, fee)| *fee);
    // billed by the table its latest revision names
    let table = tables.table(last.price_table.as_deref()).ok_or_else(|| {
        OperatorError::Rating(format!(
            "contract {id}: no price table {:?} in [billing] (known: {})",
            last.price_table.as_deref().unwrap_or(rating::PriceBook::DEFAULT),
            tables.names().join(", ")
        ))
    })?;
    let timeline = rating::ContractTimeline {
        contract: id.to_string(),
        starts: last.starts,
        ends,
        revisions: docs
            .iter()
            .enumerate()
            .filter_map(|(i, (day, d, _))| {
                // the first revision describes the contract from its start
                let from = if i == 0 { (*day).min(last.starts) } else { *day };
                d.as_ref().map(|c| rating::Revision {
                    effective_from: from,
                    accounts_limit: c.accounts_limit,
                    withdrawn: false,
                })
            })
            .collect(),
        table,
        termination_fee: fee,
    };
    let lines = rating::month_lines(&timeline, month).map_err(|e| OperatorError::Rating(e.to_string()))?;
    Ok((!lines.is_empty()).then(|| (last.customer.clone(), lines)))
}

/// The early-termination quote for ending contract `c` from day `on`: the fee and its tax
/// category from `tables` (the version in force on its last day of service), the monthly fee
/// it was paying, and the end of its minimum term.
fn termination_quote(
    tables: &rating::PriceBook,
    c: &Contract,
    on: chrono::NaiveDate,
) -> (rating::Yen, rating::TaxCategory, Option<rating::Yen>, Option<chrono::NaiveDate>) {
    let last_day = on.pred_opt().unwrap_or(on).max(c.starts);
    let table = tables.table(c.price_table.as_deref()).and_then(|t| t.on(last_day));
    let min_term_end = table.map(|t| rating::min_term_end(c.starts, t.min_term_months));
    match table.and_then(|t| Some((t, t.tier(c.accounts_limit)?.monthly_fee))) {
        Some((t, monthly)) => (
            rating::early_termination_fee(t, c.starts, on, monthly),
            t.early_termination_tax,
            Some(monthly),
            min_term_end,
        ),
        None => (0, rating::TaxCategory::NonTaxable, None, min_term_end),
    }
}

/// The revisions scheduled after `effective` for the contracts `touched` by a change — from
/// `before` (the contracts in force that day without it) to `after` (with it) — carried over
/// the change, and every problem that would give on a later day: all of them at once.
fn carry_over(
    before: &[Contract],
    after: &[Contract],
    scheduled: &[contracts::Scheduled],
    effective: chrono::NaiveDate,
    touched: &[&str],
) -> Result<Vec<contracts::Scheduled>, OperatorError> {
    let later: Vec<&contracts::Scheduled> = scheduled.iter().filter(|s| s.effective_from > effective).collect();
    let mut rebased = Vec::new();
    let mut problems = Vec::new();
    for id in touched {
        let own: Vec<&contracts::Scheduled> = later.iter().copied().filter(|s| s.id == *id).collect();
        if own.is_empty() {
            continue;
        }
        let find = |set: &[Contract]| set.iter().find(|c| c.id == *id).cloned();
        match contracts::carry_forward(&own, find(before), find(after)) {
            Ok(r) => rebased.extend(r),
            Err(p) => problems.extend(p),
        }
    }
    let later: Vec<contracts::Scheduled> = later
        .into_iter()
        .map(|s| rebased.iter().find(|r: &&contracts::Scheduled| r.id == s.id && r.rev == s.rev).unwrap_or(s).clone())
        .collect();
    problems.extend(contracts::later_conflicts(after, &later));
    if problems.is_empty() { Ok(rebased) } else { Err(OperatorError::ContractConflicts(problems)) }
}
