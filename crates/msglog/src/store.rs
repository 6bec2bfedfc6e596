//! The message log's database: an SQLite file beside the spool (one host), or the PostgreSQL
//! database several nodes share. Writing batches (idempotent: a batch written twice leaves the
//! log as written once), purging old records, and the queries of `mxshield log search`.

use std::path::{Path, PathBuf};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use store::Backend;

use super::search::{Filter, Found, FoundRecipient};
use super::{DeliveryRecord, MessageRecord, MessageSummary};

/// Errors of the message log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The database could not be reached, opened or created.
    #[error("message log: {0}")]
    Db(#[from] store::DbError),
    /// Its schema could not be brought up to date.
    #[error("message log schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("message log: {0}")]
    Query(#[from] sqlx::Error),
}

impl LogStoreError {
    /// Whether the file itself is damaged (not a database, malformed, a schema we did not
    /// write), as opposed to busy, locked or unreadable for now.
    pub fn is_damaged_file(&self) -> bool {
        if let LogStoreError::Migrate(e) | LogStoreError::Db(store::DbError::Migrate(e)) = self {
            return !matches!(e, sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(_)));
        }
        let text = self.to_string();
        ["not a database", "malformed", "corrupt"].iter().any(|w| text.contains(w))
    }
}

/// Where the message log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// An SQLite file of this host.
    File(PathBuf),
    /// The database several nodes share (`postgres://…`), with this node's local journal
    /// for records written while it is away.
    Shared {
        /// The database URL.
        url: String,
        /// The journal (an SQLite file).
        journal: PathBuf,
        /// Most bytes of records the journal holds; beyond, new records are dropped, loudly.
        journal_max: u64,
    },
}

impl LogLocation {
    /// The database URL.
    pub fn url(&self) -> String {
        match self {
            LogLocation::File(p) => format!("sqlite://{}?mode=rwc", p.display()),
            LogLocation::Shared { url, .. } => url.clone(),
        }
    }

    /// What to name in messages (a path, or a URL without its password).
    pub fn describe(&self) -> String {
        match self {
            LogLocation::File(p) => p.display().to_string(),
            LogLocation::Shared { url, .. } => store::redact(url),
        }
    }
}

/// The open store.
#[derive(Debug, Clone)]
pub struct LogStore {
    pool: AnyPool,
    backend: Backend,
}

const MESSAGE_COLUMNS: &str = "queue_id, at, node, contract, direction, client_ip, sender, size, message_id, subject, \
                               verdict, viruses, action, result, reply, related, parts, signatures";

impl LogStore {
    /// Opens (creating and migrating if needed) the SQLite log at `path`.
    pub async fn open(path: &Path) -> Result<LogStore, LogStoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| store::DbError::Open { url: path.display().to_string(), source: sqlx::Error::Io(e) })?;
        }
        LogStore::connect(&LogLocation::File(path.to_path_buf()).url()).await
    }

    /// Opens the log at `location`.
    pub async fn open_at(location: &LogLocation) -> Result<LogStore, LogStoreError> {
        match location {
            LogLocation::File(p) => LogStore::open(p).await,
            LogLocation::Shared { url, .. } => LogStore::connect(url).await,
        }
    }

    /// Connects to the log at `url` (`sqlite://…` or `postgres://…`) and brings its schema up
    /// to date.
    pub async fn connect(url: &str) -> Result<LogStore, LogStoreError> {
        // the spool is the durable record of a message; an SQLite log may lose its last
        // transaction in a power cut, never the mail
        let (pool, backend) = store::connect_with(url, 2, store::Sync::Normal).await?;
        match backend {
            // its own file: sqlx's default migrations table, as before several nodes existed
            // (its own database file: sqlx's default table)
            Backend::Sqlite => store::migrate(&pool, sqlx::migrate!("./migrations/sqlite"), "_sqlx_migrations").await?,
            Backend::Postgres => {
                store::migrate(&pool, sqlx::migrate!("./migrations/postgres"), "_mxshield_msglog_migrations").await?
            }
        }
        Ok(LogStore { pool, backend })
    }

    /// Writes messages (with their recipients) and then delivery outcomes, in one transaction.
    /// Written again, the same batch changes nothing: a message is replaced by itself, its
    /// recipients keep the state they reached, and an outcome whose event was applied is
    /// skipped.
    pub async fn write(&self, messages: &[MessageRecord], deliveries: &[DeliveryRecord]) -> Result<(), LogStoreError> {
        let mut tx = self.pool.begin().await?;
        insert_messages(&mut tx, self.backend, messages).await?;
        apply_deliveries(&mut tx, self.backend, deliveries).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes messages received before `before` (Unix seconds) and their recipients; returns
    /// how many messages went. On a shared database, at most one node purges per `every`
    /// seconds (the others find it done): retention is enforced once for the cluster.
    pub async fn purge(&self, before: i64, every: i64) -> Result<u64, LogStoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            let now = chrono::Utc::now().timestamp();
            let mine = sqlx::query("UPDATE log_meta SET value = $1 WHERE key = 'purged_at' AND value <= $2")
                .bind(now)
                .bind(now - every)
                .execute(&mut *tx)
                .await?;
            if mine.rows_affected() == 0 {
                return Ok(0);
            }
        }
        sqlx::query("DELETE FROM recipients WHERE queue_id IN (SELECT queue_id FROM messages WHERE at < $1)")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM delivery_events WHERE at < $1").bind(before).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM bulk_counts WHERE hour < $1").bind(before).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM spam_scores WHERE day < $1").bind(before).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM bulk_clusters WHERE created < $1 AND id NOT IN (SELECT cluster FROM bulk_counts)")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM messages WHERE at < $1").bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(gone.rows_affected())
    }

    /// The hourly roll-ups from `since` to `until` (Unix seconds; whole hours), optionally of one
    /// contract: per hour, what was received (by direction, verdict and action, with bytes)
    /// and the recipients' outcomes. Read from the roll-ups, never the raw log.
    pub async fn hourly(
        &self,
        since: i64,
        until: i64,
        contract: Option<&str>,
    ) -> Result<(Vec<HourlyMessages>, Vec<HourlyOutcomes>), LogStoreError> {
        let rows = sqlx::query(
            "SELECT hour, contract, direction, verdict, action, messages, bytes FROM log_hourly \
             WHERE hour >= $1 AND hour < $2 AND ($3 = '' OR contract = $3) ORDER BY hour",
        )
        .bind(hour_of(since))
        .bind(until)
        .bind(contract.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        let messages = rows
            .iter()
            .map(|r| HourlyMessages {
                hour: r.get("hour"),
                contract: r.get("contract"),
                direction: r.get("direction"),
                verdict: r.get("verdict"),
                action: r.get("action"),
                messages: r.get("messages"),
                bytes: r.get("bytes"),
            })
            .collect();
        let rows = sqlx::query(
            "SELECT hour, state, recipients FROM log_hourly_outcomes WHERE hour >= $1 AND hour < $2 ORDER BY hour",
        )
        .bind(hour_of(since))
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        let outcomes = rows
            .iter()
            .map(|r| HourlyOutcomes { hour: r.get("hour"), state: r.get("state"), recipients: r.get("recipients") })
            .collect();
        Ok((messages, outcomes))
    }

    /// Messages matching `f`, newest first, with their recipients.
    pub async fn search(&self, f: &Filter) -> Result<Vec<Found>, LogStoreError> {
        let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        let mut clause = |sql: &mut String, text: &str, b: Bind| {
            binds.push(b);
            sql.push_str(&text.replace('?', &format!("${}", binds.len())));
        };
        if let Some(t) = f.since {
            clause(&mut sql, " AND at >= ?", Bind::Int(t));
        }
        if let Some(t) = f.until {
            clause(&mut sql, " AND at < ?", Bind::Int(t));
        }
        let (contains, trim) = match self.backend {
            Backend::Sqlite => ("instr(lower(viruses), lower(?)) > 0", "trim(message_id, '<> ') = trim(?, '<> ')"),
            Backend::Postgres => ("strpos(lower(viruses), lower(?)) > 0", "btrim(message_id, '<> ') = btrim(?, '<> ')"),
        };
        let texts: [(&str, &Option<String>); 9] = [
            (" AND contract = ?", &f.contract),
            (" AND lower(sender) = lower(?)", &f.sender),
            (
                // the recipient's rows through the index on lower(rcpt), not every message of
                // the window (SQLite's planner keeps a correlated EXISTS per message)
                " AND queue_id IN (SELECT r.queue_id FROM recipients r WHERE lower(r.rcpt) = lower(?))",
                &f.recipient,
            ),
            (&format!(" AND {contains}"), &f.virus),
            (" AND action = ?", &f.action),
            (&format!(" AND {trim}"), &f.message_id),
            (" AND queue_id = ?", &f.queue_id),
            (" AND direction = ?", &f.direction),
            (" AND node = ?", &f.node),
        ];
        for (text, value) in texts {
            if let Some(v) = value {
                clause(&mut sql, text, Bind::Text(v.clone()));
            }
        }
        if f.infected {
            sql.push_str(" AND viruses <> ''");
        }
        if let Some((at, queue_id)) = &f.after {
            clause(&mut sql, " AND (at < ?", Bind::Int(*at));
            clause(&mut sql, " OR (at = ?", Bind::Int(*at));
            clause(&mut sql, " AND queue_id > ?))", Bind::Text(queue_id.clone()));
        }
        clause(&mut sql, " ORDER BY at DESC, queue_id LIMIT ?", Bind::Int(f.limit as i64));
        // the text is built from the constant clauses above only; every value is bound
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(s) => q.bind(s.as_str()),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let order = match self.backend {
            Backend::Sqlite => "rowid",
            Backend::Postgres => "id",
        };
        // the recipients of the whole page in one query, not one per message (a round trip
        // each on a database across the network)
        let summaries: Vec<MessageSummary> = rows.iter().map(summary_of).collect();
        let mut by_message: std::collections::HashMap<String, Vec<FoundRecipient>> = Default::default();
        for chunk in summaries.chunks(ROWS_PER_STATEMENT) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let recipients_sql = format!(
                "SELECT queue_id, rcpt, state, remote, reply, attempts, updated FROM recipients \
                 WHERE queue_id IN ({}) ORDER BY {order}",
                marks.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(recipients_sql));
            for s in chunk {
                q = q.bind(s.queue_id.as_str());
            }
            for r in q.fetch_all(&self.pool).await? {
                by_message.entry(r.get("queue_id")).or_default().push(FoundRecipient {
                    rcpt: r.get("rcpt"),
                    state: r.get("state"),
                    remote: r.get("remote"),
                    reply: r.get("reply"),
                    attempts: r.get("attempts"),
                    updated: r.get("updated"),
                });
            }
        }
        let mut out = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let recipients = by_message.remove(&summary.queue_id).unwrap_or_default();
            out.push(Found { summary, recipients });
        }
        Ok(out)
    }
}

impl LogStore {
    /// Every delivery outcome of message `queue_id`, oldest first: each recipient's timeline.
    pub async fn timeline(&self, queue_id: &str) -> Result<Vec<TimelineEvent>, LogStoreError> {
        let rows = sqlx::query(
            "SELECT at, rcpt, state, remote, reply FROM delivery_events WHERE queue_id = $1 ORDER BY at, event_id",
        )
        .bind(queue_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| TimelineEvent {
                at: r.get("at"),
                rcpt: r.get("rcpt"),
                state: r.get("state"),
                remote: r.get("remote"),
                reply: r.get("reply"),
            })
            .collect())
    }

    /// The delivery outcomes of outbound mail from `since` (Unix seconds) on, newest first:
    /// each attempt's result with the contract it was sent for — what the conditions of use
    /// are measured from (hard bounces, remote spam rejections). At most `limit` rows.
    pub async fn outbound_outcomes(
        &self,
        since: i64,
        contract: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboundOutcome>, LogStoreError> {
        let mut sql = "SELECT m.contract, e.at, e.state, e.reply FROM delivery_events e \
                       JOIN messages m ON m.queue_id = e.queue_id \
                       WHERE m.direction = 'outbound' AND e.at >= $1 AND e.state <> ''"
            .to_string();
        if contract.is_some() {
            sql.push_str(" AND m.contract = $3");
        }
        sql.push_str(" ORDER BY e.at DESC, e.event_id DESC LIMIT $2");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(since).bind(limit);
        if let Some(c) = contract {
            q = q.bind(c);
        }
        Ok(q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| OutboundOutcome {
                contract: r.get("contract"),
                at: r.get("at"),
                state: r.get("state"),
                reply: r.get("reply"),
            })
            .collect())
    }

    /// The messages the gateway generated about message `queue_id` (warnings, DSNs).
    pub async fn related(&self, queue_id: &str) -> Result<Vec<MessageSummary>, LogStoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE related = $1 ORDER BY at, queue_id LIMIT 100");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(queue_id).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(summary_of).collect())
    }
}

/// A cluster of near-duplicate messages as the nodes share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkCluster {
    /// Its id (made by the node that first flushed it).
    pub id: String,
    /// The contract.
    pub contract: String,
    /// The representative's 32 MinHash values in hex (empty when its text was too short).
    pub minhash: String,
    /// The key of what it carries (subject, attachments), hex; empty when none.
    pub carried: String,
    /// A subject of it, as sent.
    pub subject: String,
}

impl LogStore {
    /// The clusters of `contract` (all contracts when `None`).
    pub async fn bulk_clusters(&self, contract: Option<&str>) -> Result<Vec<BulkCluster>, LogStoreError> {
        let mut sql = "SELECT id, contract, minhash, carried, subject FROM bulk_clusters".to_string();
        if contract.is_some() {
            sql.push_str(" WHERE contract = $1");
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(c) = contract {
            q = q.bind(c);
        }
        Ok(q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| BulkCluster {
                id: r.get("id"),
                contract: r.get("contract"),
                minhash: r.get("minhash"),
                carried: r.get("carried"),
                subject: r.get("subject"),
            })
            .collect())
    }

    /// Records new clusters and adds copies to clusters' hours — `(cluster, hour, copies)`
    /// summed into what other nodes flushed — in one transaction.
    pub async fn bulk_flush(&self, new: &[BulkCluster], counts: &[(String, i64, i64)]) -> Result<(), LogStoreError> {
        let mut tx = self.pool.begin().await?;
        let now = chrono::Utc::now().timestamp();
        for c in new {
            sqlx::query(
                "INSERT INTO bulk_clusters (id, contract, minhash, carried, subject, created) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&c.id)
            .bind(&c.contract)
            .bind(&c.minhash)
            .bind(&c.carried)
            .bind(&c.subject)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for (cluster, hour, copies) in counts {
            sqlx::query(
                "INSERT INTO bulk_counts (cluster, hour, copies) VALUES ($1, $2, $3) \
                 ON CONFLICT (cluster, hour) DO UPDATE SET copies = bulk_counts.copies + excluded.copies",
            )
            .bind(cluster)
            .bind(hour)
            .bind(copies)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds each node's spam-score counts ([`SpamCount`]: deltas) to the shared ones.
    pub async fn spam_flush(&self, deltas: &[SpamCount]) -> Result<(), LogStoreError> {
        let mut tx = self.pool.begin().await?;
        for d in deltas {
            sqlx::query(
                "INSERT INTO spam_scores (contract, day, scored, spam, unmeasured) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (contract, day) DO UPDATE SET scored = spam_scores.scored + excluded.scored, \
                 spam = spam_scores.spam + excluded.spam, unmeasured = spam_scores.unmeasured + excluded.unmeasured",
            )
            .bind(&d.contract)
            .bind(d.day)
            .bind(d.scored)
            .bind(d.spam)
            .bind(d.unmeasured)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The spam-score counts of every contract (or of `contract`) per UTC day from `since` on.
    pub async fn spam_counts(&self, since: i64, contract: Option<&str>) -> Result<Vec<SpamCount>, LogStoreError> {
        let rows = sqlx::query(
            "SELECT contract, day, scored, spam, unmeasured FROM spam_scores WHERE day >= $1 \
             AND ($2 = '' OR contract = $2) ORDER BY contract, day",
        )
        .bind(since - since.rem_euclid(86_400))
        .bind(contract.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SpamCount {
                contract: r.get("contract"),
                day: r.get("day"),
                scored: r.get("scored"),
                spam: r.get("spam"),
                unmeasured: r.get("unmeasured"),
            })
            .collect())
    }

    /// Copies per (cluster, hour) from `since` (Unix seconds) on.
    pub async fn bulk_counts(&self, since: i64) -> Result<Vec<(String, i64, i64)>, LogStoreError> {
        let rows = sqlx::query("SELECT cluster, hour, copies FROM bulk_counts WHERE hour >= $1")
            .bind(since - since.rem_euclid(3600))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get("cluster"), r.get("hour"), r.get("copies"))).collect())
    }
}

/// Outbound messages of one contract on one UTC day, as the spam engine judged them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpamCount {
    /// The contract.
    pub contract: String,
    /// The day's start (Unix seconds, UTC).
    pub day: i64,
    /// Messages scored.
    pub scored: i64,
    /// Of those, at or above the engine's spam threshold.
    pub spam: i64,
    /// Messages the engine could not score (down, timed out, too large).
    pub unmeasured: i64,
}

/// One delivery attempt's outcome of outbound mail, with its contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboundOutcome {
    /// The contract the mail was relayed for.
    pub contract: String,
    /// Unix seconds.
    pub at: i64,
    /// delivered, deferred, bounced, deleted.
    pub state: String,
    /// The remote's reply or the error.
    pub reply: String,
}

/// One delivery outcome of one recipient, as it happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimelineEvent {
    /// Unix seconds.
    pub at: i64,
    /// The recipient.
    pub rcpt: String,
    /// delivered, deferred, bounced, deleted.
    pub state: String,
    /// The host that answered (empty if none).
    pub remote: String,
    /// Its reply or the error.
    pub reply: String,
}

/// Rows per multi-row statement (at most 18 parameters a row: far below the limits of SQLite
/// and PostgreSQL). A batch costs a handful of round trips to the database, not several per
/// record: what matters when the shared database is across a network.
const ROWS_PER_STATEMENT: usize = 200;

/// `($1, $2, …), (…)`: `rows` tuples of `cols` placeholders — anonymous `?` for SQLite, whose
/// binding looks each numbered name up in a list (quadratic in a statement of thousands of
/// parameters: it took a fifth of the gateway's CPU), numbered for PostgreSQL.
fn placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    let tuple = |r: usize| {
        let cells: Vec<String> = (1..=cols)
            .map(|c| match backend {
                Backend::Sqlite => "?".to_string(),
                Backend::Postgres => format!("${}", r * cols + c),
            })
            .collect();
        format!("({})", cells.join(", "))
    };
    (0..rows).map(tuple).collect::<Vec<_>>().join(", ")
}

/// One value of a row.
enum Value<'a> {
    Int(i64),
    Text(&'a str),
    Owned(String),
}

/// Runs `sql_head VALUES … sql_tail` over `rows` in statements of [`ROWS_PER_STATEMENT`];
/// returns the rows a `RETURNING` clause gave, if any.
async fn insert_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    head: &str,
    tail: &str,
    cols: usize,
    rows: &[Vec<Value<'_>>],
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut returned = Vec::new();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!("{head} VALUES {} {tail}", placeholders(backend, chunk.len(), cols));
        // the text is built from constants and placeholders only; every value is bound
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in chunk.iter().flatten() {
            q = match v {
                Value::Int(i) => q.bind(*i),
                Value::Text(t) => q.bind(*t),
                Value::Owned(t) => q.bind(t.clone()),
            };
        }
        returned.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(returned)
}

/// Writes the messages of a batch: each message upserted (the last record of a queue id in the
/// batch wins), each recipient inserted unless it is there (it keeps the state its deliveries
/// gave it).
async fn insert_messages(
    conn: &mut AnyConnection,
    backend: Backend,
    records: &[MessageRecord],
) -> Result<(), sqlx::Error> {
    let mut last: std::collections::HashMap<&str, &MessageRecord> = std::collections::HashMap::new();
    for r in records {
        last.insert(&r.summary.queue_id, r);
    }
    count_new_messages(conn, backend, &last).await?;
    let mut messages = Vec::with_capacity(last.len());
    let mut recipients: Vec<Vec<Value>> = Vec::new();
    for r in records.iter().filter(|r| std::ptr::eq(last[r.summary.queue_id.as_str()], *r)) {
        let m = &r.summary;
        messages.push(vec![
            Value::Text(&m.queue_id),
            Value::Int(m.at),
            Value::Text(&m.node),
            Value::Text(&m.contract),
            Value::Text(&m.direction),
            Value::Text(&m.client_ip),
            Value::Text(&m.sender),
            Value::Int(m.size as i64),
            Value::Text(&m.message_id),
            Value::Text(&m.subject),
            Value::Text(&m.verdict),
            Value::Owned(m.viruses.join(", ")),
            Value::Text(&m.action),
            Value::Text(&m.result),
            Value::Text(&m.reply),
            Value::Text(&m.related),
            Value::Owned(serde_json::to_string(&m.parts).unwrap_or_else(|_| "[]".into())),
            Value::Text(&m.signatures),
        ]);
        for rcpt in &r.recipients {
            recipients.push(vec![
                Value::Text(&m.queue_id),
                Value::Text(rcpt),
                Value::Text(r.initial_state.as_str()),
                Value::Text(""),
                Value::Text(""),
                Value::Int(0),
                Value::Int(m.at),
            ]);
        }
    }
    insert_rows(
        conn,
        backend,
        &format!("INSERT INTO messages ({MESSAGE_COLUMNS})"),
        "ON CONFLICT (queue_id) DO UPDATE SET at = excluded.at, node = excluded.node, \
         contract = excluded.contract, direction = excluded.direction, client_ip = excluded.client_ip, \
         sender = excluded.sender, size = excluded.size, message_id = excluded.message_id, \
         subject = excluded.subject, verdict = excluded.verdict, viruses = excluded.viruses, \
         action = excluded.action, result = excluded.result, reply = excluded.reply, \
         related = excluded.related, parts = excluded.parts, signatures = excluded.signatures",
        18,
        &messages,
    )
    .await?;
    insert_rows(
        conn,
        backend,
        "INSERT INTO recipients (queue_id, rcpt, state, remote, reply, attempts, updated)",
        "ON CONFLICT (queue_id, rcpt) DO NOTHING",
        7,
        &recipients,
    )
    .await?;
    Ok(())
}

/// The start of the hour holding `at` (Unix seconds, UTC).
fn hour_of(at: i64) -> i64 {
    at - at.rem_euclid(3600)
}

/// Adds the messages of a batch that the log does not hold yet to the hourly roll-ups (one
/// already there — a batch written again — adds nothing).
async fn count_new_messages(
    conn: &mut AnyConnection,
    backend: Backend,
    batch: &std::collections::HashMap<&str, &MessageRecord>,
) -> Result<(), sqlx::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = batch.keys().copied().collect();
    let mut known = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT queue_id FROM messages WHERE queue_id IN ({})", marks.join(", "));
        // the text holds placeholders only; every id is bound
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            known.insert(row.get::<String, _>("queue_id"));
        }
    }
    // (hour, contract, direction, verdict, action) -> (messages, bytes)
    type Kind<'a> = (i64, &'a str, &'a str, &'a str, &'a str);
    let mut sums: std::collections::BTreeMap<Kind, (i64, i64)> = Default::default();
    for r in batch.values().filter(|r| !known.contains(&r.summary.queue_id)) {
        let m = &r.summary;
        let e = sums.entry((hour_of(m.at), &m.contract, &m.direction, &m.verdict, &m.action)).or_default();
        e.0 += 1;
        e.1 += m.size as i64;
    }
    let rows: Vec<Vec<Value>> = sums
        .iter()
        .map(|((hour, contract, direction, verdict, action), (n, bytes))| {
            vec![
                Value::Int(*hour),
                Value::Text(contract),
                Value::Text(direction),
                Value::Text(verdict),
                Value::Text(action),
                Value::Int(*n),
                Value::Int(*bytes),
            ]
        })
        .collect();
    insert_rows(
        conn,
        backend,
        "INSERT INTO log_hourly (hour, contract, direction, verdict, action, messages, bytes)",
        "ON CONFLICT (hour, contract, direction, verdict, action) DO UPDATE SET \
         messages = log_hourly.messages + excluded.messages, bytes = log_hourly.bytes + excluded.bytes",
        7,
        &rows,
    )
    .await?;
    Ok(())
}

/// Adds delivery outcomes seen for the first time (by event id) to the hourly roll-ups.
async fn count_outcomes<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    outcomes: impl Iterator<Item = &'a DeliveryRecord>,
) -> Result<(), sqlx::Error> {
    let mut sums: std::collections::BTreeMap<(i64, &str), i64> = Default::default();
    for d in outcomes {
        *sums.entry((hour_of(d.at), d.state.as_str())).or_default() += 1;
    }
    let rows: Vec<Vec<Value>> =
        sums.iter().map(|((hour, state), n)| vec![Value::Int(*hour), Value::Text(state), Value::Int(*n)]).collect();
    insert_rows(
        conn,
        backend,
        "INSERT INTO log_hourly_outcomes (hour, state, recipients)",
        "ON CONFLICT (hour, state) DO UPDATE SET recipients = log_hourly_outcomes.recipients + excluded.recipients",
        3,
        &rows,
    )
    .await?;
    Ok(())
}

/// Whether a recipient state is final: no later outcome changes it.
fn is_final(state: &str) -> bool {
    matches!(state, "delivered" | "bounced" | "deleted")
}

/// Applies the outcomes of a batch, each once per event id: the events not seen before are
/// recorded, then each recipient's new outcomes are folded in order (a final state stays) and
/// written in one upsert per recipient.
async fn apply_deliveries(
    conn: &mut AnyConnection,
    backend: Backend,
    deliveries: &[DeliveryRecord],
) -> Result<(), sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = deliveries
        .iter()
        .map(|d| if d.event_id.is_empty() { super::fresh_event_id() } else { d.event_id.clone() })
        .collect();
    let mut unique = std::collections::HashSet::new();
    let events: Vec<Vec<Value>> = deliveries
        .iter()
        .zip(&ids)
        .filter(|(_, id)| unique.insert(id.as_str()))
        .map(|(d, id)| {
            vec![
                Value::Text(id),
                Value::Int(d.at),
                Value::Text(&d.queue_id),
                Value::Text(&d.rcpt),
                Value::Text(d.state.as_str()),
                Value::Text(&d.remote),
                Value::Text(&d.reply),
            ]
        })
        .collect();
    let new: std::collections::HashSet<String> = insert_rows(
        conn,
        backend,
        "INSERT INTO delivery_events (event_id, at, queue_id, rcpt, state, remote, reply)",
        "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        7,
        &events,
    )
    .await?
    .iter()
    .map(|r| r.get::<String, _>("event_id"))
    .collect();
    count_outcomes(conn, backend, deliveries.iter().zip(&ids).filter(|(_, id)| new.contains(*id)).map(|(d, _)| d))
        .await?;
    // per recipient, in the batch's order: (the last outcome, how many new outcomes)
    let mut folded: Vec<(&DeliveryRecord, i64)> = Vec::new();
    let mut at: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::new();
    for (d, id) in deliveries.iter().zip(&ids) {
        if !new.contains(id) {
            continue;
        }
        match at.get(&(d.queue_id.as_str(), d.rcpt.as_str())) {
            Some(&i) if is_final(folded[i].0.state.as_str()) => {}
            Some(&i) => folded[i] = (d, folded[i].1 + 1),
            None => {
                at.insert((&d.queue_id, &d.rcpt), folded.len());
                folded.push((d, 1));
            }
        }
    }
    let rows: Vec<Vec<Value>> = folded
        .iter()
        .map(|(d, n)| {
            vec![
                Value::Text(&d.queue_id),
                Value::Text(&d.rcpt),
                Value::Text(d.state.as_str()),
                Value::Text(&d.remote),
                Value::Text(&d.reply),
                Value::Int(*n),
                Value::Int(d.at),
            ]
        })
        .collect();
    insert_rows(
        conn,
        backend,
        "INSERT INTO recipients (queue_id, rcpt, state, remote, reply, attempts, updated)",
        "ON CONFLICT (queue_id, rcpt) DO UPDATE SET state = excluded.state, remote = excluded.remote, \
         reply = excluded.reply, attempts = recipients.attempts + excluded.attempts, updated = excluded.updated \
         WHERE recipients.state NOT IN ('delivered', 'bounced', 'deleted')",
        7,
        &rows,
    )
    .await?;
    Ok(())
}

/// One hour's messages of one kind (contract, direction, verdict, action).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HourlyMessages {
    /// The hour's start (Unix seconds, UTC).
    pub hour: i64,
    /// The contract (empty for none).
    pub contract: String,
    /// `inbound`, `outbound`, `warning`, `dsn`.
    pub direction: String,
    /// The scan verdict in a word.
    pub verdict: String,
    /// What was done.
    pub action: String,
    /// How many messages.
    pub messages: i64,
    /// Their bytes.
    pub bytes: i64,
}

/// One hour's recipient outcomes of one state (delivered, deferred, bounced, deleted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HourlyOutcomes {
    /// The hour's start (Unix seconds, UTC).
    pub hour: i64,
    /// The outcome.
    pub state: String,
    /// How many recipients reached it.
    pub recipients: i64,
}

/// A `messages` row.
fn summary_of(row: &AnyRow) -> MessageSummary {
    let viruses: String = row.get("viruses");
    let parts: String = row.get("parts");
    MessageSummary {
        at: row.get("at"),
        queue_id: row.get("queue_id"),
        node: row.get("node"),
        contract: row.get("contract"),
        direction: row.get("direction"),
        client_ip: row.get("client_ip"),
        sender: row.get("sender"),
        size: row.get::<i64, _>("size") as u64,
        message_id: row.get("message_id"),
        subject: row.get("subject"),
        verdict: row.get("verdict"),
        viruses: viruses.split(", ").filter(|v| !v.is_empty()).map(str::to_string).collect(),
        action: row.get("action"),
        result: row.get("result"),
        reply: row.get("reply"),
        related: row.get("related"),
        parts: serde_json::from_str(&parts).unwrap_or_default(),
        signatures: row.get("signatures"),
    }
}

enum Bind {
    Int(i64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RcptState, search::Filter};

    fn message(queue_id: &str) -> MessageRecord {
        MessageRecord {
            summary: MessageSummary { queue_id: queue_id.into(), at: 1000, node: "mx1".into(), ..Default::default() },
            recipients: vec!["alice@acme.example".into()],
            initial_state: RcptState::Queued,
        }
    }

    fn outcome(queue_id: &str, event_id: &str, state: RcptState) -> DeliveryRecord {
        DeliveryRecord {
            event_id: event_id.into(),
            queue_id: queue_id.into(),
            rcpt: "alice@acme.example".into(),
            state,
            at: 1001,
            ..Default::default()
        }
    }

    /// A batch written twice leaves the log as written once; a final state is not undone by
    /// an outcome written after it (seen: the operator's `deleted`, then the gateway's late
    /// `deferred`, left the log saying deferred).
    async fn idempotent_and_final(store: &LogStore) {
        let batch = (vec![message("Q1")], vec![outcome("Q1", "e1", RcptState::Deferred)]);
        store.write(&batch.0, &batch.1).await.unwrap();
        store.write(&batch.0, &batch.1).await.unwrap();
        let found = store.search(&Filter::default()).await.unwrap();
        assert_eq!(found.len(), 1);
        let r = &found[0].recipients[0];
        assert_eq!((r.state.as_str(), r.attempts), ("deferred", 1));
        assert_eq!(found[0].summary.node, "mx1");
        store.write(&[], &[outcome("Q1", "e2", RcptState::Deleted)]).await.unwrap();
        store.write(&[], &[outcome("Q1", "e3", RcptState::Deferred)]).await.unwrap();
        // the message record written again (a journal replayed) keeps the recipient's state
        store.write(&batch.0, &[]).await.unwrap();
        let found = store.search(&Filter { node: Some("mx1".into()), ..Filter::default() }).await.unwrap();
        assert_eq!(found[0].recipients[0].state, "deleted");
        assert!(store.search(&Filter { node: Some("mx2".into()), ..Filter::default() }).await.unwrap().is_empty());
        // the roll-ups counted each record once, however often it was written
        let (messages, outcomes) = store.hourly(0, 10_000, None).await.unwrap();
        assert_eq!(messages.iter().map(|m| m.messages).sum::<i64>(), 1, "{messages:?}");
        let count = |state: &str| outcomes.iter().filter(|o| o.state == state).map(|o| o.recipients).sum::<i64>();
        assert_eq!((count("deferred"), count("deleted")), (2, 1), "{outcomes:?}");
    }

    /// One batch larger than a statement, a message logged twice in it, and several outcomes of
    /// one recipient in it: each message once, each recipient's outcomes folded in order.
    async fn large_batches(store: &LogStore) {
        let mut messages: Vec<MessageRecord> = (0..450).map(|i| message(&format!("B{i}"))).collect();
        let mut again = message("B7");
        again.summary.subject = "logged again".into();
        messages.push(again);
        let mut outcomes: Vec<DeliveryRecord> =
            (0..450).map(|i| outcome(&format!("B{i}"), &format!("b{i}"), RcptState::Deferred)).collect();
        outcomes.push(outcome("B3", "b3-2", RcptState::Delivered));
        outcomes.push(outcome("B3", "b3-3", RcptState::Deferred));
        outcomes.push(outcome("B4", "b4-2", RcptState::Deferred));
        store.write(&messages, &outcomes).await.unwrap();
        let all = store.search(&Filter { limit: 1000, ..Filter::default() }).await.unwrap();
        assert_eq!(all.len(), 450);
        let of = |q: &str| all.iter().find(|f| f.summary.queue_id == q).unwrap();
        assert_eq!(of("B7").summary.subject, "logged again");
        assert_eq!((of("B3").recipients[0].state.as_str(), of("B3").recipients[0].attempts), ("delivered", 2));
        assert_eq!((of("B4").recipients[0].state.as_str(), of("B4").recipients[0].attempts), ("deferred", 2));
        assert_eq!((of("B9").recipients[0].state.as_str(), of("B9").recipients[0].attempts), ("deferred", 1));
        let (messages, outcomes) = store.hourly(0, 10_000, None).await.unwrap();
        assert_eq!(messages.iter().map(|m| m.messages).sum::<i64>(), 450);
        let count = |state: &str| outcomes.iter().filter(|o| o.state == state).map(|o| o.recipients).sum::<i64>();
        assert_eq!((count("deferred"), count("delivered")), (452, 1));
        // outside the window: nothing
        assert!(store.hourly(3600, 7200, None).await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn sqlite_writes_are_idempotent_and_final_states_kept() {
        let dir = testkit::TempDir::new("msglog-store");
        idempotent_and_final(&LogStore::open(&dir.path().join("messages.db")).await.unwrap()).await;
        large_batches(&LogStore::open(&dir.path().join("large.db")).await.unwrap()).await;
    }

    /// Two nodes on one database: the purge runs once per interval for the cluster, whichever
    /// node comes first.
    #[tokio::test]
    async fn the_cluster_purges_once_per_interval() {
        let schema = testkit::pg::Schema::new("msglog_purge");
        let (a, b) = (LogStore::connect(&schema.url()).await.unwrap(), LogStore::connect(&schema.url()).await.unwrap());
        a.write(&[message("Q1")], &[]).await.unwrap();
        b.write(&[message("Q2")], &[]).await.unwrap();
        assert_eq!(a.purge(2000, 3600).await.unwrap(), 2);
        b.write(&[message("Q3")], &[]).await.unwrap();
        // done by a within the hour: b finds it done, the record stays
        assert_eq!(b.purge(2000, 3600).await.unwrap(), 0);
        assert_eq!(a.search(&Filter::default()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn postgres_writes_are_idempotent_and_final_states_kept() {
        let schema = testkit::pg::Schema::new("msglog_store");
        idempotent_and_final(&LogStore::connect(&schema.url()).await.unwrap()).await;
        let large = testkit::pg::Schema::new("msglog_large");
        large_batches(&LogStore::connect(&large.url()).await.unwrap()).await;
    }
}
