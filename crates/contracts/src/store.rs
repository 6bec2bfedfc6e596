//! The contract store: embedded SQLite (the default) or PostgreSQL shared by several nodes,
//! through sqlx's `Any` driver, one schema by migrations per backend.
//!
//! `apply` replaces the whole set of contracts in one transaction and bumps a generation
//! counter; a running server polls the counter and reloads when it changes.

use std::path::Path;

use chrono::NaiveDate;
use sqlx::Row;
use sqlx::{AnyConnection, AnyPool};
pub use store::{Backend, redact, sqlite_path};

use crate::Scheduled;
use crate::model::{Contract, Domain, EncryptedPolicy, Functions, NextHop, sending_network};

/// Errors of the store, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached, opened or migrated.
    #[error("contract store: {0}")]
    Db(#[from] store::DbError),
    /// Its schema could not be brought up to date.
    #[error("cannot migrate contract store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("contract store query failed while {what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: sqlx::Error,
    },
    /// A row holds what no valid contract holds (written by another program or version).
    #[error("contract store holds invalid data: {0}")]
    Invalid(String),
}

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// A handle on the contract database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// The `LISTEN/NOTIFY` channel an apply notifies (PostgreSQL).
pub const CHANGES_CHANNEL: &str = "mxshield_contracts";

impl Store {
    /// Opens (creating and migrating if needed) the SQLite database at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::connect(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// Connects to the database at `url` (`sqlite://…` or `postgres://…`) and brings its schema
    /// up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let (pool, backend) = store::connect(url, 4).await?;
        // the migrations table keeps sqlx's default name: SQLite stores made before the
        // shared-database plumbing existed have their history there
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        store::migrate(&pool, migrator, "_sqlx_migrations").await?;
        let store = Store { pool, backend };
        store.first_revisions().await?;
        Ok(store)
    }

    /// A transaction that will write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting out the busy timeout for it: a deferred transaction that read
    /// first could only fail with "database is locked" when another connection wrote meanwhile.
    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let begun = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        };
        begun.map_err(q("starting a transaction"))
    }

    /// The database this store lives in.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Replaces all contracts with `contracts` (already validated) in one transaction.
    /// Returns the new generation.
    pub async fn apply(&self, contracts: &[Contract]) -> Result<i64, StoreError> {
        self.replace(contracts, None, None, None).await
    }

    /// [`Store::apply`], recording in the same transaction a revision of each contract the
    /// plan creates, changes or removes, effective `today`, by `actor` for `reason`.
    pub async fn apply_recorded(
        &self,
        contracts: &[Contract],
        plan: &crate::Plan,
        today: NaiveDate,
        actor: &str,
        reason: &str,
    ) -> Result<i64, StoreError> {
        let record =
            Recorded { revisions: revisions_of(contracts, plan), rebased: &plan.rebased, today, actor, reason };
        self.replace(contracts, None, Some(&record), None).await
    }

    /// Records the plan's creations, changes and removals as revisions pending until
    /// `effective` (a later day than today), without touching the contracts as they are now;
    /// nodes apply them from that day. Returns the new generation.
    pub async fn schedule(
        &self,
        contracts: &[Contract],
        plan: &crate::Plan,
        effective: NaiveDate,
        actor: &str,
        reason: &str,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_transaction().await?;
        let mut made = std::collections::HashMap::new();
        for (id, doc, changed, fee) in revisions_of(contracts, plan) {
            let rev =
                insert_revision(&mut tx, &id, effective, doc.as_deref().unwrap_or(""), &changed, actor, reason, fee)
                    .await?;
            sqlx::query("UPDATE contract_revisions SET pending = 1 WHERE contract_id = $1 AND rev = $2")
                .bind(&id)
                .bind(rev)
                .execute(&mut *tx)
                .await
                .map_err(q("scheduling a revision"))?;
            made.insert(id, rev);
        }
        let cause = |id: &str| made.get(id).map_or(String::new(), |rev| format!("over revision {rev}"));
        rewrite_scheduled(&mut tx, &plan.rebased, &cause, actor, reason).await?;
        self.bump(tx).await
    }

    /// Withdraws the pending revision `rev` of contract `id` if it has not taken effect by
    /// `today`, with the later revisions `rebased` over the withdrawal
    /// ([`crate::carry_forward`]); `Ok(false)` if there is no such pending revision.
    pub async fn withdraw(
        &self,
        id: &str,
        rev: i64,
        today: NaiveDate,
        rebased: &[Scheduled],
        actor: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_transaction().await?;
        let done = sqlx::query(
            "UPDATE contract_revisions SET withdrawn_at = $1 \
             WHERE contract_id = $2 AND rev = $3 AND pending = 1 AND withdrawn_at IS NULL AND effective_from > $4",
        )
        .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .bind(id)
        .bind(rev)
        .bind(today.to_string())
        .execute(&mut *tx)
        .await
        .map_err(q("withdrawing a revision"))?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        record_event(&mut tx, id, "withdrawn", Some(rev), "", actor, reason).await?;
        let cause = |_: &str| format!("over the withdrawal of revision {rev}");
        rewrite_scheduled(&mut tx, rebased, &cause, actor, reason).await?;
        self.bump(tx).await.map(|_| true)
    }

    /// Bumps the generation, notifies the nodes and commits.
    async fn bump(&self, tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<i64, StoreError> {
        self.finish(tx, None).await
    }

    /// Moves the generation on (or sets it to `generation`), notifies the nodes and commits;
    /// returns the generation.
    async fn finish(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        generation: Option<i64>,
    ) -> Result<i64, StoreError> {
        match generation {
            None => sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'generation'"),
            Some(g) => sqlx::query("UPDATE meta SET value = $1 WHERE key = 'generation'").bind(g),
        }
        .execute(&mut *tx)
        .await
        .map_err(q("setting the generation"))?;
        let generation = generation_in(&mut tx).await?;
        // delivered at commit: every node listening reloads at once
        store::changes::notify(&mut tx, self.backend, CHANGES_CHANNEL, &generation.to_string())
            .await
            .map_err(q("notifying the nodes"))?;
        tx.commit().await.map_err(q("committing"))?;
        Ok(generation)
    }

    /// Every revision of contract `id`, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<Revision>, StoreError> {
        self.revisions(Some(id)).await
    }

    /// The recorded events of contract `id` (withdrawals, revisions carried over), in order.
    pub async fn events(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, rev, detail, actor, reason FROM contract_events WHERE contract_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("reading the events"))?;
        Ok(rows
            .iter()
            .map(|r| Event {
                at: r.get("at"),
                kind: r.get("kind"),
                rev: r.get::<Option<i64>, _>("rev"),
                detail: r.get("detail"),
                actor: r.get("actor"),
                reason: r.get("reason"),
            })
            .collect())
    }

    /// Issues a customer's statement for `month` (`YYYY-MM`): `body` is the statement as it
    /// stands (JSON), `total` its total in yen. Numbered and frozen; if the customer's last
    /// statement for the month says the same, nothing is issued and that one is returned; if
    /// it differs, the new one is its correction.
    pub async fn issue_statement(
        &self,
        customer: &str,
        month: &str,
        body: &str,
        total: i64,
        actor: &str,
    ) -> Result<(IssuedStatement, bool), StoreError> {
        let mut tx = self.write_transaction().await?;
        let last = sqlx::query(
            "SELECT number, customer, month, issued_at, issued_by, corrects, total, body FROM statements \
             WHERE customer = $1 AND month = $2 ORDER BY number DESC LIMIT 1",
        )
        .bind(customer)
        .bind(month)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("reading the statements"))?
        .map(|r| issued_from(&r));
        if let Some(last) = last.filter(|l| l.body == body) {
            return Ok((last, false));
        }
        let number: i64 = sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 AS next FROM statements")
            .fetch_one(&mut *tx)
            .await
            .map_err(q("numbering a statement"))?
            .get("next");
        let corrects = sqlx::query("SELECT MAX(number) AS last FROM statements WHERE customer = $1 AND month = $2")
            .bind(customer)
            .bind(month)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("reading the statements"))?
            .get::<Option<i64>, _>("last");
        let issued = IssuedStatement {
            number,
            customer: customer.to_string(),
            month: month.to_string(),
            issued_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            issued_by: actor.to_string(),
            corrects,
            total,
            body: body.to_string(),
        };
        sqlx::query(
            "INSERT INTO statements (number, customer, month, issued_at, issued_by, corrects, total, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(issued.number)
        .bind(&issued.customer)
        .bind(&issued.month)
        .bind(&issued.issued_at)
        .bind(&issued.issued_by)
        .bind(issued.corrects)
        .bind(issued.total)
        .bind(&issued.body)
        .execute(&mut *tx)
        .await
        .map_err(q("issuing a statement"))?;
        tx.commit().await.map_err(q("issuing a statement"))?;
        Ok((issued, true))
    }

    /// The issued statements (of `month`, `YYYY-MM`, if given), in the order issued.
    pub async fn issued_statements(&self, month: Option<&str>) -> Result<Vec<IssuedStatement>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, customer, month, issued_at, issued_by, corrects, total, body FROM statements \
             WHERE $1 = '' OR month = $1 ORDER BY number",
        )
        .bind(month.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(q("reading the statements"))?;
        Ok(rows.iter().map(issued_from).collect())
    }

    /// Every revision of every contract, by contract then in order.
    pub async fn all_revisions(&self) -> Result<Vec<Revision>, StoreError> {
        self.revisions(None).await
    }

    async fn revisions(&self, id: Option<&str>) -> Result<Vec<Revision>, StoreError> {
        let rows = sqlx::query(
            "SELECT contract_id, rev, effective_from, doc, changed, created_at, actor, reason, pending, withdrawn_at, fee \
             FROM contract_revisions WHERE $1 = '' OR contract_id = $1 ORDER BY contract_id, rev",
        )
        .bind(id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(q("reading the history"))?;
        rows.iter()
            .map(|r| {
                Ok(Revision {
                    contract: r.get("contract_id"),
                    rev: r.get::<i64, _>("rev"),
                    effective_from: date(&r.get::<String, _>("effective_from"))?,
                    doc: r.get("doc"),
                    changed: r
                        .get::<String, _>("changed")
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    created_at: r.get("created_at"),
                    actor: r.get("actor"),
                    reason: r.get("reason"),
                    pending: r.get::<i64, _>("pending") != 0,
                    withdrawn_at: r.get("withdrawn_at"),
                    fee: r.get("fee"),
                })
            })
            .collect()
    }

    /// Gives each stored contract without any revision (stored before revisions were kept)
    /// its revision 1: the contract as it is, effective from its start.
    async fn first_revisions(&self) -> Result<(), StoreError> {
        // one query on every connect; the contracts are read only when some lack a revision
        let lacking = sqlx::query(
            "SELECT id FROM contracts WHERE id NOT IN (SELECT DISTINCT contract_id FROM contract_revisions) LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading the revisions"))?;
        if lacking.is_none() {
            return Ok(());
        }
        let (contracts, _) = self.load().await?;
        let known: std::collections::HashSet<String> =
            sqlx::query("SELECT DISTINCT contract_id FROM contract_revisions")
                .fetch_all(&self.pool)
                .await
                .map_err(q("reading the revisions"))?
                .iter()
                .map(|r| r.get("contract_id"))
                .collect();
        let missing: Vec<&Contract> = contracts.iter().filter(|c| !known.contains(&c.id)).collect();
        let mut tx = self.write_transaction().await?;
        for c in missing {
            // several nodes may upgrade the same shared store at once: the first one's stays
            sqlx::query(
                "INSERT INTO contract_revisions (contract_id, rev, effective_from, doc, changed, created_at, actor, reason) \
                 VALUES ($1, 1, $2, $3, 'created', $4, 'upgrade', 'stored before revisions were kept') \
                 ON CONFLICT (contract_id, rev) DO NOTHING",
            )
            .bind(&c.id)
            .bind(c.starts.to_string())
            .bind(crate::to_toml(c))
            .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .execute(&mut *tx)
            .await
            .map_err(q("recording a first revision"))?;
        }
        tx.commit().await.map_err(q("committing the first revisions"))
    }

    /// Replaces all contracts with `contracts` and sets the generation to `generation`: the
    /// local last-good copy of a shared store, kept at the generation it was read at, with its
    /// scheduled changes, in one transaction.
    pub async fn mirror(
        &self,
        contracts: &[Contract],
        scheduled: &[Scheduled],
        generation: i64,
    ) -> Result<(), StoreError> {
        self.replace(contracts, Some(generation), None, Some(scheduled)).await.map(|_| ())
    }

    /// Replaces the scheduled revisions with `scheduled` (the last-good copy's).
    async fn copy_scheduled(conn: &mut AnyConnection, scheduled: &[Scheduled]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM contract_revisions WHERE pending = 1")
            .execute(&mut *conn)
            .await
            .map_err(q("clearing scheduled revisions"))?;
        for s in scheduled {
            sqlx::query(
                "INSERT INTO contract_revisions (contract_id, rev, effective_from, doc, changed, created_at, actor, reason, pending) \
                 VALUES ($1, $2, $3, $4, '', $5, 'mirror', '', 1) \
                 ON CONFLICT (contract_id, rev) DO UPDATE SET effective_from = $3, doc = $4, pending = 1, withdrawn_at = NULL",
            )
            .bind(&s.id)
            .bind(s.rev)
            .bind(s.effective_from.to_string())
            .bind(s.contract.as_ref().map(crate::to_toml).unwrap_or_default())
            .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .execute(&mut *conn)
            .await
            .map_err(q("copying scheduled revisions"))?;
        }
        Ok(())
    }

    async fn replace(
        &self,
        contracts: &[Contract],
        generation: Option<i64>,
        record: Option<&Recorded<'_>>,
        scheduled: Option<&[Scheduled]>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_transaction().await?;
        if let Some(scheduled) = scheduled {
            Store::copy_scheduled(&mut tx, scheduled).await?;
        }
        let mut made = std::collections::HashMap::new();
        for (id, doc, changed, fee) in record.map(|r| &r.revisions[..]).unwrap_or_default() {
            let r = record.expect("revisions come with their record");
            // what is applied now supersedes what was scheduled for today or before
            sqlx::query("UPDATE contract_revisions SET pending = 0 WHERE contract_id = $1 AND pending = 1 AND withdrawn_at IS NULL AND effective_from <= $2")
                .bind(id)
                .bind(r.today.to_string())
                .execute(&mut *tx)
                .await
                .map_err(q("superseding scheduled revisions"))?;
            let rev =
                insert_revision(&mut tx, id, r.today, doc.as_deref().unwrap_or(""), changed, r.actor, r.reason, *fee)
                    .await?;
            made.insert(id.clone(), rev);
        }
        if let Some(r) = record {
            let cause = |id: &str| made.get(id).map_or(String::new(), |rev| format!("over revision {rev}"));
            rewrite_scheduled(&mut tx, r.rebased, &cause, r.actor, r.reason).await?;
        }
        sqlx::query("DELETE FROM accounts").execute(&mut *tx).await.map_err(q("clearing accounts"))?;
        sqlx::query("DELETE FROM domains").execute(&mut *tx).await.map_err(q("clearing domains"))?;
        sqlx::query("DELETE FROM contracts").execute(&mut *tx).await.map_err(q("clearing contracts"))?;
        for (pos, c) in contracts.iter().enumerate() {
            insert_contract(&mut tx, c, pos as i64).await?;
        }
        self.finish(tx, generation).await
    }

    /// The generation counter (changes on every apply).
    pub async fn generation(&self) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(q("connecting"))?;
        generation_in(&mut conn).await
    }

    /// Loads every contract and the generation they belong to.
    pub async fn load(&self) -> Result<(Vec<Contract>, i64), StoreError> {
        self.load_all().await.map(|(contracts, _, generation)| (contracts, generation))
    }

    /// Loads every contract as it is now, the changes scheduled for later days (not withdrawn),
    /// and the generation, in one transaction.
    pub async fn load_all(&self) -> Result<(Vec<Contract>, Vec<Scheduled>, i64), StoreError> {
        let mut tx = self.write_transaction().await?;
        let generation = generation_in(&mut tx).await?;
        let rows = sqlx::query(
            "SELECT id, customer, accounts_limit, starts, ends, sending_servers, encrypted_attachments, \
             unreadable_attachments, wide_sending_networks, functions, price_table FROM contracts \
             ORDER BY position",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(q("reading contracts"))?;
        let mut contracts = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.get("id");
            let sending: String = row.get("sending_servers");
            let wide_sending_networks = row.get::<i64, _>("wide_sending_networks") != 0;
            let sending_servers = lines(&sending)
                .map(|s| {
                    let net = s.parse().map_err(|_| StoreError::Invalid(format!("contract {id}: network {s:?}")))?;
                    sending_network(net, wide_sending_networks)
                        .map_err(|why| StoreError::Invalid(format!("contract {id}: sending network {why}")))
                })
                .collect::<Result<_, _>>()?;
            let ends: Option<String> = row.get("ends");
            let policy = |column: &str| {
                let value: String = row.get(column);
                EncryptedPolicy::parse(&value)
                    .ok_or_else(|| StoreError::Invalid(format!("contract {id}: {column} {value:?}")))
            };
            let functions: String = row.get("functions");
            let functions = Functions {
                inbound: lines(&functions).any(|f| f == "inbound"),
                outbound: lines(&functions).any(|f| f == "outbound"),
            };
            contracts.push(Contract {
                functions,
                price_table: row.get::<Option<String>, _>("price_table"),
                encrypted: policy("encrypted_attachments")?,
                unreadable: policy("unreadable_attachments")?,
                wide_sending_networks,
                customer: row.get("customer"),
                accounts_limit: row.get::<i64, _>("accounts_limit") as u32,
                starts: date(&row.get::<String, _>("starts"))?,
                ends: ends.as_deref().map(date).transpose()?,
                sending_servers,
                domains: load_domains(&mut tx, &id).await?,
                id,
            });
        }
        let rows = sqlx::query(
            "SELECT contract_id, rev, effective_from, doc FROM contract_revisions \
             WHERE pending = 1 AND withdrawn_at IS NULL ORDER BY effective_from, rev",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(q("reading the scheduled changes"))?;
        let mut scheduled = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get("contract_id");
            let doc: String = r.get("doc");
            let contract = if doc.is_empty() {
                None
            } else {
                let mut parsed = crate::parse_file(&doc)
                    .map_err(|e| StoreError::Invalid(format!("scheduled revision of {id}: {e}")))?;
                (parsed.len() == 1).then(|| parsed.remove(0))
            };
            scheduled.push(Scheduled {
                rev: r.get::<i64, _>("rev"),
                effective_from: date(&r.get::<String, _>("effective_from"))?,
                contract,
                id,
            });
        }
        tx.commit().await.map_err(q("finishing the read"))?;
        Ok((contracts, scheduled, generation))
    }
}

/// One recorded change of a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The contract.
    pub contract: String,
    /// 1, 2, … in the order made.
    pub rev: i64,
    /// The day it took (or takes) effect.
    pub effective_from: NaiveDate,
    /// The contract as it became (a `[[contract]]` block); empty when it was removed.
    pub doc: String,
    /// The fields that changed (`created`, `removed`, or field names).
    pub changed: Vec<String>,
    /// When it was recorded (RFC 3339, UTC).
    pub created_at: String,
    /// Who made it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Recorded for a later day and not yet superseded by an apply on or after it.
    pub pending: bool,
    /// When it was withdrawn (before its day), if it was.
    pub withdrawn_at: Option<String>,
    /// For a cancellation: the early-termination fee quoted (yen, before tax).
    pub fee: Option<i64>,
}

/// A statement as issued: numbered, frozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedStatement {
    /// Its number: 1, 2, … in the order issued, over all customers.
    pub number: i64,
    /// The customer billed.
    pub customer: String,
    /// The month billed (`YYYY-MM`).
    pub month: String,
    /// When (RFC 3339, UTC).
    pub issued_at: String,
    /// Who issued it.
    pub issued_by: String,
    /// The statement it corrects, if it is a correction.
    pub corrects: Option<i64>,
    /// Its total (yen, tax included).
    pub total: i64,
    /// The statement itself (JSON), as issued.
    pub body: String,
}

fn issued_from(r: &sqlx::any::AnyRow) -> IssuedStatement {
    IssuedStatement {
        number: r.get("number"),
        customer: r.get("customer"),
        month: r.get("month"),
        issued_at: r.get("issued_at"),
        issued_by: r.get("issued_by"),
        corrects: r.get::<Option<i64>, _>("corrects"),
        total: r.get("total"),
        body: r.get("body"),
    }
}

/// Something an operator did to a contract besides recording a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// `withdrawn` (a pending revision) or `carried_over` (a pending revision rebased).
    pub kind: String,
    /// The revision concerned.
    pub rev: Option<i64>,
    /// Over what a revision was carried.
    pub detail: String,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// A revision to record: the contract, its block (`None`: removed), what changed, and for a
/// cancellation the early-termination fee quoted.
type RevisionRecord = (String, Option<String>, String, Option<i64>);

/// Revisions to record with an apply.
struct Recorded<'a> {
    revisions: Vec<RevisionRecord>,
    /// Later revisions carried over this change ([`crate::carry_forward`]).
    rebased: &'a [Scheduled],
    today: NaiveDate,
    actor: &'a str,
    reason: &'a str,
}

/// Replaces the contract of pending revisions (rebased over an earlier change), each with a
/// `carried_over` event saying over what (`cause`), by whom and why.
async fn rewrite_scheduled(
    conn: &mut AnyConnection,
    rebased: &[Scheduled],
    cause: &(dyn Fn(&str) -> String + Sync),
    actor: &str,
    reason: &str,
) -> Result<(), StoreError> {
    for s in rebased {
        record_event(conn, &s.id, "carried_over", Some(s.rev), &cause(&s.id), actor, reason).await?;
        let doc = s.contract.as_ref().map(crate::to_toml).unwrap_or_default();
        sqlx::query(
            "UPDATE contract_revisions SET doc = $1 \
             WHERE contract_id = $2 AND rev = $3 AND pending = 1 AND withdrawn_at IS NULL",
        )
        .bind(doc)
        .bind(&s.id)
        .bind(s.rev)
        .execute(&mut *conn)
        .await
        .map_err(q("rebasing a scheduled revision"))?;
    }
    Ok(())
}

/// Records an event of contract `id`.
async fn record_event(
    conn: &mut AnyConnection,
    id: &str,
    kind: &str,
    rev: Option<i64>,
    detail: &str,
    actor: &str,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO contract_events (contract_id, at, kind, rev, detail, actor, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    .bind(kind)
    .bind(rev)
    .bind(detail)
    .bind(actor)
    .bind(reason)
    .execute(&mut *conn)
    .await
    .map_err(q("recording an event"))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_revision(
    conn: &mut AnyConnection,
    id: &str,
    effective_from: NaiveDate,
    doc: &str,
    changed: &str,
    actor: &str,
    reason: &str,
    fee: Option<i64>,
) -> Result<i64, StoreError> {
    let next: i64 =
        sqlx::query("SELECT COALESCE(MAX(rev), 0) + 1 AS next FROM contract_revisions WHERE contract_id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .map_err(q("numbering a revision"))?
            .get("next");
    sqlx::query(
        "INSERT INTO contract_revisions (contract_id, rev, effective_from, doc, changed, created_at, actor, reason, fee) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(next)
    .bind(effective_from.to_string())
    .bind(doc)
    .bind(changed)
    .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    .bind(actor)
    .bind(reason)
    .bind(fee)
    .execute(&mut *conn)
    .await
    .map_err(q("recording a revision"))?;
    Ok(next)
}

/// The revisions a plan makes: (contract, its block or `None` if removed, what changed).
fn revisions_of(contracts: &[Contract], plan: &crate::Plan) -> Vec<RevisionRecord> {
    let by_id: std::collections::HashMap<&str, &Contract> = contracts.iter().map(|c| (c.id.as_str(), c)).collect();
    let doc = |id: &str| by_id.get(id).map(|c| crate::to_toml(c));
    let mut revisions = Vec::new();
    for id in &plan.added {
        revisions.push((id.clone(), doc(id), "created".to_string(), None));
    }
    for (id, fields) in &plan.changed {
        revisions.push((id.clone(), doc(id), fields.join(","), None));
    }
    for (id, fee) in &plan.cancelled {
        revisions.push((id.clone(), doc(id), "cancelled".to_string(), Some(*fee)));
    }
    if plan.prune {
        for id in &plan.missing {
            revisions.push((id.clone(), None, "removed".to_string(), None));
        }
    }
    revisions
}

async fn insert_contract(conn: &mut AnyConnection, c: &Contract, pos: i64) -> Result<(), StoreError> {
    let sending: Vec<String> = c.sending_servers.iter().map(|n| n.to_string()).collect();
    sqlx::query(
        "INSERT INTO contracts (id, customer, accounts_limit, starts, ends, sending_servers, position, \
         encrypted_attachments, unreadable_attachments, wide_sending_networks, functions, price_table) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&c.id)
    .bind(&c.customer)
    .bind(c.accounts_limit as i64)
    .bind(c.starts.to_string())
    .bind(c.ends.map(|d| d.to_string()))
    .bind(sending.join("\n"))
    .bind(pos)
    .bind(c.encrypted.as_str())
    .bind(c.unreadable.as_str())
    .bind(c.wide_sending_networks as i64)
    .bind(c.functions.names().join("\n"))
    .bind(c.price_table.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(q("inserting a contract"))?;
    for (dpos, d) in c.domains.iter().enumerate() {
        let servers: Vec<String> = d.receiving_servers.iter().map(|h| h.to_string()).collect();
        sqlx::query("INSERT INTO domains (name, contract_id, receiving_servers, position) VALUES ($1, $2, $3, $4)")
            .bind(&d.name)
            .bind(&c.id)
            .bind(servers.join("\n"))
            .bind(dpos as i64)
            .execute(&mut *conn)
            .await
            .map_err(q("inserting a domain"))?;
        for (apos, a) in d.accounts.iter().enumerate() {
            sqlx::query("INSERT INTO accounts (domain, local_part, position) VALUES ($1, $2, $3)")
                .bind(&d.name)
                .bind(a)
                .bind(apos as i64)
                .execute(&mut *conn)
                .await
                .map_err(q("inserting an account"))?;
        }
    }
    Ok(())
}

async fn load_domains(conn: &mut AnyConnection, contract: &str) -> Result<Vec<Domain>, StoreError> {
    let rows = sqlx::query("SELECT name, receiving_servers FROM domains WHERE contract_id = $1 ORDER BY position")
        .bind(contract)
        .fetch_all(&mut *conn)
        .await
        .map_err(q("reading domains"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get("name");
        let servers: String = row.get("receiving_servers");
        let receiving_servers =
            lines(&servers).map(|s| NextHop::parse(s).map_err(StoreError::Invalid)).collect::<Result<_, _>>()?;
        let accounts = sqlx::query_scalar("SELECT local_part FROM accounts WHERE domain = $1 ORDER BY position")
            .bind(&name)
            .fetch_all(&mut *conn)
            .await
            .map_err(q("reading accounts"))?;
        out.push(Domain { name, receiving_servers, accounts });
    }
    Ok(out)
}

async fn generation_in(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT value FROM meta WHERE key = 'generation'")
        .fetch_one(conn)
        .await
        .map_err(q("reading the generation"))
}

fn lines(s: &str) -> impl Iterator<Item = &str> {
    s.lines().filter(|l| !l.is_empty())
}

fn date(s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| StoreError::Invalid(format!("date {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Snapshot, parse_file};
    use sqlx::any::AnyPoolOptions;

    #[tokio::test]
    async fn apply_load_roundtrip_in_real_sqlite() {
        let dir = std::env::temp_dir().join(format!("mxshield-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        roundtrip(&Store::open(&dir.join("contracts.db")).await.unwrap()).await;
        // opened again: migrated once, the data kept
        assert!(Store::open(&dir.join("contracts.db")).await.unwrap().load().await.unwrap().0.is_empty());
        let path = dir.join("revisions.db");
        revisions(Store::open(&path).await.unwrap(), || Store::open(&path)).await;
    }

    /// The PostgreSQL server of this machine kind (127.0.0.1:5432, trust authentication,
    /// database `test`; `MXSHIELD_TEST_PG` names another): the test fails, not skips, when it is
    /// missing. Each test works in a schema of its own and drops it.
    fn pg_base() -> String {
        std::env::var("MXSHIELD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    #[tokio::test]
    async fn apply_load_roundtrip_in_real_postgres() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let schema = format!("contracts_{}_{nanos}", std::process::id());
        sqlx::any::install_default_drivers();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&pg_base())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} (scripts/test.sh starts it): {e}", pg_base()));
        let create = format!("CREATE SCHEMA {schema}");
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await.unwrap();
        let url = format!("{}?options=-c%20search_path%3D{schema}", pg_base());
        roundtrip(&Store::connect(&url).await.unwrap()).await;
        // connected again: migrated once, the data kept
        assert!(Store::connect(&url).await.unwrap().load().await.unwrap().0.is_empty());
        let again = || Store::connect(&url);
        revisions(again().await.unwrap(), again).await;
        let drop = format!("DROP SCHEMA {schema} CASCADE");
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await.unwrap();
    }

    /// Contracts stored before revisions were kept get revision 1 when the store is next
    /// opened; each recorded apply adds one per contract it creates, changes or removes.
    async fn revisions<F: std::future::Future<Output = Result<Store, StoreError>>>(
        store: Store,
        reopen: impl Fn() -> F,
    ) {
        let one = |accounts: &str| {
            format!(
                "[[contract]]\nid = \"rev\"\ncustomer = \"Rev\"\naccounts_limit = 5\nstarts = \"2026-12-01\"\n[[contract.domain]]\nname = \"rev.example\"\nreceiving_servers = [\"192.0.2.1\"]\naccounts = [{accounts}]\n"
            )
        };
        let first = parse_file(&one("\"a\"")).unwrap();
        // as a version without revisions would have stored it
        store.apply(&first).await.unwrap();
        assert!(store.history("rev").await.unwrap().is_empty());
        let store = reopen().await.unwrap();
        let h = store.history("rev").await.unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].rev, h[0].effective_from, h[0].actor.as_str()), (1, first[0].starts, "upgrade"));
        assert_eq!(parse_file(&h[0].doc).unwrap(), first);
        // opened again: not recorded twice
        assert_eq!(reopen().await.unwrap().history("rev").await.unwrap().len(), 1);
        let today = NaiveDate::from_ymd_opt(2026, 12, 24).unwrap();
        let second = parse_file(&one("\"a\", \"b\"")).unwrap();
        let (plan, set) = crate::plan(&first, &second, false).unwrap();
        store.apply_recorded(&set, &plan, today, "tanaka", "form 2026-118").await.unwrap();
        let (plan, set) = crate::plan(&second, &[], true).unwrap();
        store.apply_recorded(&set, &plan, today, "tanaka", "cancelled by letter").await.unwrap();
        let h = store.history("rev").await.unwrap();
        let summary: Vec<(i64, Vec<String>, &str, bool)> =
            h.iter().map(|r| (r.rev, r.changed.clone(), r.reason.as_str(), r.doc.is_empty())).collect();
        assert_eq!(
            summary,
            vec![
                (1, vec!["created".to_string()], "stored before revisions were kept", false),
                (2, vec!["accounts".to_string()], "form 2026-118", false),
                (3, vec!["removed".to_string()], "cancelled by letter", true),
            ]
        );
        assert_eq!(parse_file(&h[1].doc).unwrap(), second);
        assert_eq!(h[1].effective_from, today);

        // scheduled for a later day: the contracts as they are now untouched, the change pending
        let later = today + chrono::Days::new(10);
        let (plan, set) = crate::plan(&[], &first, false).unwrap();
        store.schedule(&set, &plan, later, "sato", "form 9").await.unwrap();
        let (now, scheduled, _) = store.load_all().await.unwrap();
        assert!(now.is_empty());
        assert_eq!(scheduled.len(), 1);
        assert_eq!((scheduled[0].rev, scheduled[0].effective_from), (4, later));
        assert_eq!(scheduled[0].contract.as_ref(), Some(&first[0]));
        // kept whole in a last-good copy
        let dir = std::env::temp_dir().join(format!("mxshield-mirror-{}-{:?}", std::process::id(), store.backend()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let copy = Store::open(&dir.join("copy.db")).await.unwrap();
        copy.mirror(&now, &scheduled, 9).await.unwrap();
        assert_eq!(copy.load_all().await.unwrap(), (now.clone(), scheduled.clone(), 9));
        // withdrawn only before its day
        assert!(!store.withdraw("rev", 4, later, &[], "t", "").await.unwrap());
        assert!(store.withdraw("rev", 4, today, &[], "t", "").await.unwrap());
        assert!(!store.withdraw("rev", 4, today, &[], "t", "").await.unwrap(), "once");
        assert!(store.load_all().await.unwrap().1.is_empty());
        // an apply on or after a scheduled day supersedes what was scheduled up to it
        store.schedule(&set, &plan, later, "sato", "form 10").await.unwrap();
        let (plan, set) = crate::plan(&[], &second, false).unwrap();
        store.apply_recorded(&set, &plan, later, "sato", "applied that day").await.unwrap();
        assert!(store.load_all().await.unwrap().1.is_empty());
        let h = store.history("rev").await.unwrap();
        let states: Vec<(i64, bool, bool)> = h.iter().map(|r| (r.rev, r.pending, r.withdrawn_at.is_some())).collect();
        assert_eq!(states[3..], [(4, true, true), (5, false, false), (6, false, false)]);

        // a change carried into one scheduled after it (rewritten in the same transaction,
        // recorded as an event), then withdrawn with who and why; the functions kept
        let outbound_only =
            parse_file(&one("\"a\", \"b\"").replace("starts = ", "functions = [\"outbound\"]\nstarts = ")).unwrap();
        let far = later + chrono::Days::new(30);
        let (plan, set) = crate::plan(&second, &outbound_only, false).unwrap();
        store.schedule(&set, &plan, far, "sato", "form 11").await.unwrap();
        let (_, scheduled, _) = store.load_all().await.unwrap();
        assert_eq!(
            scheduled[0].contract.as_ref().unwrap().functions,
            crate::Functions { inbound: false, outbound: true }
        );
        let renamed = vec![Contract { customer: "Rev K.K.".into(), ..second[0].clone() }];
        let (mut plan, set) = crate::plan(&second, &renamed, false).unwrap();
        plan.rebased =
            crate::carry_forward(&[&scheduled[0]], Some(second[0].clone()), Some(renamed[0].clone())).unwrap();
        assert_eq!(plan.rebased.len(), 1);
        store.apply_recorded(&set, &plan, later, "kato", "new name").await.unwrap();
        let (_, scheduled, _) = store.load_all().await.unwrap();
        let carried = scheduled[0].contract.as_ref().unwrap();
        assert_eq!((carried.customer.as_str(), carried.functions.inbound), ("Rev K.K.", false));
        assert!(store.withdraw("rev", scheduled[0].rev, later, &[], "kato", "asked by phone").await.unwrap());
        let events = store.events("rev").await.unwrap();
        let kinds: Vec<(&str, Option<i64>, &str, &str)> =
            events.iter().map(|e| (e.kind.as_str(), e.rev, e.detail.as_str(), e.reason.as_str())).collect();
        assert_eq!(
            kinds,
            [
                ("withdrawn", Some(4), "", ""),
                ("carried_over", Some(7), "over revision 8", "new name"),
                ("withdrawn", Some(7), "", "asked by phone"),
            ]
        );
    }

    async fn roundtrip(store: &Store) {
        assert_eq!(store.load().await.unwrap(), (vec![], 0));
        let src = r#"
[[contract]]
id = "acme"
customer = "ACME Corp."
accounts_limit = 50
starts = 2026-12-01
ends = "2027-12-01"
sending_servers = ["127.0.0.5", "198.51.100.0/28"]
[[contract.domain]]
name = "acme.example"
receiving_servers = ["127.0.0.1:2600", "[::1]:2601"]
accounts = ["alice", "bob"]
"#;
        let contracts = parse_file(src).unwrap();
        let generation = store.apply(&contracts).await.unwrap();
        assert_eq!(generation, 1);
        let (loaded, g) = store.load().await.unwrap();
        assert_eq!((loaded.clone(), g), (contracts, 1));
        let snap = Snapshot::new(loaded, g);
        let day = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        assert!(snap.active_domain("ACME.example", day).unwrap().has_account("Alice"));
        assert!(snap.active_domain("acme.example", NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()).is_none());
        assert!(snap.sending_contract("198.51.100.7".parse().unwrap(), day).is_some());
        assert!(snap.sending_contract("::ffff:127.0.0.5".parse().unwrap(), day).is_some());
        assert!(snap.sending_contract("198.51.100.16".parse().unwrap(), day).is_none());
        assert_eq!(store.apply(&[]).await.unwrap(), 2);
        assert!(store.load().await.unwrap().0.is_empty());
    }
}
