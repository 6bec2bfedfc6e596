//! A node's local journal of message-log records written while the shared database is away:
//! an SQLite file, synced at each commit, bounded in size. Records are appended in order and
//! taken back in order once the database returns; taking back is idempotent on the database's
//! side (see [`crate::LogStore::write`]), so a crash between writing a batch and removing it
//! from the journal writes nothing twice.

use std::path::Path;

use sqlx::{AnyPool, Row};

use crate::{DeliveryRecord, MessageRecord};

/// One journaled record.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) enum Entry {
    Message(Box<MessageRecord>),
    Delivery(DeliveryRecord),
}

/// The open journal.
pub(crate) struct Journal {
    pool: AnyPool,
    /// Bytes of records it holds.
    bytes: u64,
    /// Records it holds.
    pub(crate) len: u64,
    max: u64,
}

/// What [`Journal::append`] did.
pub(crate) enum Appended {
    /// Every record is in the journal.
    All,
    /// The journal was full: this many records were not kept.
    Dropped(usize),
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`, holding at most `max` bytes.
    pub(crate) async fn open(path: &Path, max: u64) -> Result<Journal, crate::LogStoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let (pool, _) = store::connect_with(&url, 1, store::Sync::Full).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")
            .execute(&pool)
            .await?;
        let row = sqlx::query("SELECT count(*) AS n, coalesce(sum(length(body)), 0) AS bytes FROM pending")
            .fetch_one(&pool)
            .await?;
        Ok(Journal { pool, bytes: row.get::<i64, _>("bytes") as u64, len: row.get::<i64, _>("n") as u64, max })
    }

    /// Appends `entries` in order, in one transaction, as far as the size bound allows.
    pub(crate) async fn append(&mut self, entries: &[Entry]) -> Result<Appended, crate::LogStoreError> {
        let mut tx = self.pool.begin().await?;
        let (mut bytes, mut kept) = (0u64, 0usize);
        for e in entries {
            let body = serde_json::to_string(e).unwrap_or_default();
            if self.bytes + bytes + body.len() as u64 > self.max {
                break;
            }
            sqlx::query("INSERT INTO pending (body) VALUES ($1)").bind(&body).execute(&mut *tx).await?;
            bytes += body.len() as u64;
            kept += 1;
        }
        tx.commit().await?;
        self.bytes += bytes;
        self.len += kept as u64;
        Ok(if kept == entries.len() { Appended::All } else { Appended::Dropped(entries.len() - kept) })
    }

    /// The oldest `n` records, with the sequence number of the last.
    pub(crate) async fn oldest(&self, n: usize) -> Result<(Vec<Entry>, i64), crate::LogStoreError> {
        let rows = sqlx::query("SELECT seq, body FROM pending ORDER BY seq LIMIT $1")
            .bind(n as i64)
            .fetch_all(&self.pool)
            .await?;
        let last = rows.last().map_or(0, |r| r.get::<i64, _>("seq"));
        // a record that does not decode (written by another version) is not worth stopping for
        let entries = rows.iter().filter_map(|r| serde_json::from_str(&r.get::<String, _>("body")).ok()).collect();
        Ok((entries, last))
    }

    /// Removes every record up to `seq` (written to the database).
    pub(crate) async fn remove_through(&mut self, seq: i64) -> Result<(), crate::LogStoreError> {
        sqlx::query("DELETE FROM pending WHERE seq <= $1").bind(seq).execute(&self.pool).await?;
        let row = sqlx::query("SELECT count(*) AS n, coalesce(sum(length(body)), 0) AS bytes FROM pending")
            .fetch_one(&self.pool)
            .await?;
        self.bytes = row.get::<i64, _>("bytes") as u64;
        self.len = row.get::<i64, _>("n") as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> Entry {
        let mut m = MessageRecord::default();
        m.summary.queue_id = format!("Q{n}");
        Entry::Message(Box::new(m))
    }

    /// Records come back in order and survive a reopen; beyond its bound the journal keeps
    /// what it has and says how many it dropped.
    #[tokio::test]
    async fn ordered_durable_and_bounded() {
        let dir = testkit::TempDir::new("journal");
        let path = dir.path().join("j.db");
        let one = serde_json::to_string(&message(0)).unwrap().len() as u64;
        let mut j = Journal::open(&path, one * 10 + one / 2).await.unwrap();
        let batch: Vec<Entry> = (0..6).map(message).collect();
        assert!(matches!(j.append(&batch).await.unwrap(), Appended::All));
        let batch: Vec<Entry> = (6..12).map(message).collect();
        assert!(matches!(j.append(&batch).await.unwrap(), Appended::Dropped(2)));
        drop(j);
        let mut j = Journal::open(&path, one * 10 + one / 2).await.unwrap();
        assert_eq!(j.len, 10);
        let (first, last) = j.oldest(4).await.unwrap();
        let ids: Vec<String> = first
            .iter()
            .map(|e| match e {
                Entry::Message(m) => m.summary.queue_id.clone(),
                Entry::Delivery(d) => d.queue_id.clone(),
            })
            .collect();
        assert_eq!(ids, ["Q0", "Q1", "Q2", "Q3"]);
        j.remove_through(last).await.unwrap();
        assert_eq!(j.len, 6);
        // room again after the trim
        assert!(matches!(j.append(&[message(12)]).await.unwrap(), Appended::All));
    }
}
