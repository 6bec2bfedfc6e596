//! The message log's SQLite file: writing batches, purging old records, and the queries of
//! `mxshield log search`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use super::search::{Filter, Found, FoundRecipient};
use super::{DeliveryRecord, MessageRecord, MessageSummary};

/// Errors of the message log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The file could not be opened or created.
    #[error("opening the message log {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: sqlx::Error,
    },
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
        let text = match self {
            LogStoreError::Open { source, .. } => source.to_string(),
            LogStoreError::Migrate(e) => return !matches!(e, sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(_))),
            LogStoreError::Query(e) => e.to_string(),
        };
        ["not a database", "malformed", "corrupt"].iter().any(|w| text.contains(w))
    }
}

/// The open store.
#[derive(Clone)]
pub struct LogStore {
    pool: SqlitePool,
}

impl LogStore {
    /// Opens (creating and migrating if needed) the log at `path`.
    pub async fn open(path: &Path) -> Result<LogStore, LogStoreError> {
        let open_err = |source| LogStoreError::Open { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // the spool is the durable record of a message; the log may lose its last
            // transaction in a power cut, never the mail
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await.map_err(open_err)?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(LogStore { pool })
    }

    /// Writes messages (with their recipients) and then delivery outcomes, in one transaction.
    pub async fn write(&self, messages: &[MessageRecord], deliveries: &[DeliveryRecord]) -> Result<(), LogStoreError> {
        let mut tx = self.pool.begin().await?;
        for r in messages {
            let m = &r.summary;
            let parts = serde_json::to_string(&m.parts).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "INSERT OR REPLACE INTO messages (queue_id, at, contract, direction, client_ip, sender, size, \
                 message_id, subject, verdict, viruses, action, result, reply, related, parts, signatures) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&m.queue_id)
            .bind(m.at)
            .bind(&m.contract)
            .bind(&m.direction)
            .bind(&m.client_ip)
            .bind(&m.sender)
            .bind(m.size as i64)
            .bind(&m.message_id)
            .bind(&m.subject)
            .bind(&m.verdict)
            .bind(m.viruses.join(", "))
            .bind(&m.action)
            .bind(&m.result)
            .bind(&m.reply)
            .bind(&m.related)
            .bind(parts)
            .bind(&m.signatures)
            .execute(&mut *tx)
            .await?;
            for rcpt in &r.recipients {
                sqlx::query(
                    "INSERT OR REPLACE INTO recipients (queue_id, rcpt, state, remote, reply, attempts, updated) \
                     VALUES (?, ?, ?, '', '', 0, ?)",
                )
                .bind(&m.queue_id)
                .bind(rcpt)
                .bind(r.initial_state.as_str())
                .bind(m.at)
                .execute(&mut *tx)
                .await?;
            }
        }
        for d in deliveries {
            sqlx::query(
                "INSERT INTO recipients (queue_id, rcpt, state, remote, reply, attempts, updated) \
                 VALUES (?, ?, ?, ?, ?, 1, ?) \
                 ON CONFLICT (queue_id, rcpt) DO UPDATE SET state = excluded.state, remote = excluded.remote, \
                 reply = excluded.reply, attempts = attempts + 1, updated = excluded.updated",
            )
            .bind(&d.queue_id)
            .bind(&d.rcpt)
            .bind(d.state.as_str())
            .bind(&d.remote)
            .bind(&d.reply)
            .bind(d.at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes messages received before `before` (Unix seconds) and their recipients; returns
    /// how many messages went.
    pub async fn purge(&self, before: i64) -> Result<u64, LogStoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM recipients WHERE queue_id IN (SELECT queue_id FROM messages WHERE at < ?)")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM messages WHERE at < ?").bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(gone.rows_affected())
    }

    /// Messages matching `f`, newest first, with their recipients.
    pub async fn search(&self, f: &Filter) -> Result<Vec<Found>, LogStoreError> {
        let mut sql = String::from(
            "SELECT queue_id, at, contract, direction, client_ip, sender, size, message_id, subject, verdict, \
             viruses, action, result, reply, related, parts, signatures FROM messages m WHERE 1 = 1",
        );
        let mut binds: Vec<Bind> = Vec::new();
        if let Some(t) = f.since {
            sql.push_str(" AND at >= ?");
            binds.push(Bind::Int(t));
        }
        if let Some(t) = f.until {
            sql.push_str(" AND at < ?");
            binds.push(Bind::Int(t));
        }
        let mut text = |sql: &mut String, clause: &str, v: &Option<String>| {
            if let Some(v) = v {
                sql.push_str(clause);
                binds.push(Bind::Text(v.clone()));
            }
        };
        text(&mut sql, " AND contract = ?", &f.contract);
        text(&mut sql, " AND lower(sender) = lower(?)", &f.sender);
        text(
            &mut sql,
            " AND EXISTS (SELECT 1 FROM recipients r WHERE r.queue_id = m.queue_id AND lower(r.rcpt) = lower(?))",
            &f.recipient,
        );
        text(&mut sql, " AND instr(lower(viruses), lower(?)) > 0", &f.virus);
        text(&mut sql, " AND action = ?", &f.action);
        text(&mut sql, " AND trim(message_id, '<> ') = trim(?, '<> ')", &f.message_id);
        text(&mut sql, " AND queue_id = ?", &f.queue_id);
        text(&mut sql, " AND direction = ?", &f.direction);
        sql.push_str(" ORDER BY at DESC, queue_id LIMIT ?");
        binds.push(Bind::Int(f.limit as i64));
        // the text is built from the constant clauses above only; every value is bound
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(s) => q.bind(s.as_str()),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let summary = summary_of(&row);
            let recipients = sqlx::query(
                "SELECT rcpt, state, remote, reply, attempts, updated FROM recipients WHERE queue_id = ? ORDER BY rowid",
            )
            .bind(&summary.queue_id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| FoundRecipient {
                rcpt: r.get("rcpt"),
                state: r.get("state"),
                remote: r.get("remote"),
                reply: r.get("reply"),
                attempts: r.get("attempts"),
                updated: r.get("updated"),
            })
            .collect();
            out.push(Found { summary, recipients });
        }
        Ok(out)
    }
}

/// A `messages` row.
fn summary_of(row: &SqliteRow) -> MessageSummary {
    let viruses: String = row.get("viruses");
    let parts: String = row.get("parts");
    MessageSummary {
        at: row.get("at"),
        queue_id: row.get("queue_id"),
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
