//! Shared-database plumbing: the one place that knows how mxshield reaches a database.
//!
//! - [`Backend`], [`connect`]: an SQLite file (one host, the default) or a PostgreSQL database
//!   shared by several nodes, through sqlx's `Any` pool; [`migrate`] runs a crate's migration
//!   set for the backend, in a migrations table of its own.
//! - [`changes`]: PostgreSQL `LISTEN/NOTIFY` as a wake-up hint (callers still poll a generation
//!   counter, so a lost notification only delays a change).
//! - [`nodes`]: the node registry — each node's heartbeat and what it is running.
//! - [`redact`], [`sqlite_path`]: database URLs in messages and on disk.

pub mod changes;
pub mod nodes;

use std::sync::Once;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

/// Errors reaching or using a database, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be opened, created or reached.
    #[error("cannot open database {url}: {source}")]
    Open {
        /// The URL, without its password.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The URL names no database mxshield speaks.
    #[error("not a database URL (sqlite:// or postgres://): {0}")]
    Url(String),
    /// Its schema could not be brought up to date.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The lock that serialises migrations of an SQLite database could not be taken.
    #[error("cannot lock {0} to migrate the database: {1}")]
    Lock(String, std::io::Error),
    /// A query failed.
    #[error("database query failed while {what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: sqlx::Error,
    },
}

/// A closure for `map_err` naming what was being done.
pub fn query_failed(what: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Query { what, source }
}

/// The database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (one host).
    Sqlite,
    /// A PostgreSQL database (several nodes).
    Postgres,
}

impl Backend {
    /// The backend a database URL names (`sqlite:`, `postgres:` or `postgresql:`).
    pub fn of(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

/// How long a query may wait for a connection before it fails (a database that is away must
/// fail callers quickly; they fall back on what they have locally).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool of at most `max_connections` on the database at `url` (creating an SQLite
/// file if needed, with WAL, foreign keys and a busy timeout).
pub async fn connect(url: &str, max_connections: u32) -> Result<(AnyPool, Backend), DbError> {
    connect_with(url, max_connections, Sync::Full).await
}

/// How an SQLite file is synced at each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Every commit survives a power cut (the default).
    Full,
    /// A power cut may lose the last commits, never corrupt the file (records whose durable
    /// copy is elsewhere, such as the message log beside the spool).
    Normal,
}

/// [`connect`], choosing how an SQLite file is synced.
///
/// Opening an SQLite file that another process is turning to WAL mode at that moment fails at
/// once with "database is locked" (SQLite does not wait there, whatever the busy timeout): such
/// an open is tried again, for up to about ten seconds.
pub async fn connect_with(url: &str, max_connections: u32, sync: Sync) -> Result<(AnyPool, Backend), DbError> {
    let mut tries = 0u32;
    loop {
        match connect_once(url, max_connections, sync).await {
            Err(DbError::Open { source, .. }) if tries < 100 && is_busy(&source) => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 + u64::from(tries) * 2)).await;
            }
            other => return other,
        }
    }
}

/// SQLite's `SQLITE_BUSY` (5) or `SQLITE_LOCKED` (6).
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "5" || c == "6")
}

async fn connect_once(url: &str, max_connections: u32, sync: Sync) -> Result<(AnyPool, Backend), DbError> {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    let backend = Backend::of(url).ok_or_else(|| DbError::Url(redact(url)))?;
    let open_err = |source| DbError::Open { url: redact(url), source };
    // one plain connection first: a pool would retry until its timeout and report only that,
    // where the operator needs the reason (refused, unknown host, authentication, a file that
    // is not a database)
    {
        use sqlx::Connection;
        let mut first = tokio::time::timeout(ACQUIRE_TIMEOUT, sqlx::AnyConnection::connect(url))
            .await
            .map_err(|_| open_err(sqlx::Error::PoolTimedOut))?
            .map_err(open_err)?;
        if backend == Backend::Sqlite {
            first.execute("PRAGMA busy_timeout = 10000").await.map_err(open_err)?;
            first.execute("PRAGMA journal_mode = WAL").await.map_err(open_err)?;
        }
        let _ = first.close().await;
    }
    let options = AnyPoolOptions::new().max_connections(max_connections).acquire_timeout(ACQUIRE_TIMEOUT);
    let pool = match backend {
        Backend::Sqlite => options.after_connect(move |conn, _| {
            Box::pin(async move {
                // first: what follows may wait for another connection
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA journal_mode = WAL").await?;
                if sync == Sync::Normal {
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                }
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        }),
        Backend::Postgres => options,
    }
    .connect(url)
    .await
    .map_err(open_err)?;
    Ok((pool, backend))
}

/// Runs `migrator` on `pool`, recording what it applied in `table` (each crate owns its tables
/// and its migrations table, so crates sharing one database never mix their versions).
///
/// On SQLite, two processes opening one database at once (the gateway and a CLI command) would
/// both find a migration missing and both apply it, the second failing on a table that exists:
/// the migrations run under an exclusive lock on a file beside the database. (PostgreSQL's
/// migrator takes an advisory lock itself.)
pub async fn migrate(pool: &AnyPool, mut migrator: Migrator, table: &'static str) -> Result<(), DbError> {
    migrator.dangerous_set_table_name(table);
    let url = pool.connect_options().database_url.to_string();
    let _lock = match sqlite_path(&url) {
        Some(path) if Backend::of(&url) == Some(Backend::Sqlite) => Some(lock_beside(path).await?),
        _ => None,
    };
    migrator.run(pool).await?;
    Ok(())
}

/// An exclusive lock on `<database>.migrate-lock`, waited for off the runtime's threads.
async fn lock_beside(database: std::path::PathBuf) -> Result<std::fs::File, DbError> {
    let mut name = database.into_os_string();
    name.push(".migrate-lock");
    let path = std::path::PathBuf::from(name);
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| DbError::Lock(shown.clone(), std::io::Error::other(e)))?
    .map_err(|e| DbError::Lock(shown, e))
}

/// The file of an SQLite database URL (`sqlite://PATH?…`).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split('?').next().unwrap_or(rest).into())
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_end = url[scheme + 3..at].find(':').map_or(at, |i| scheme + 3 + i);
            format!("{}{}", &url[..user_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a CLI command started while the gateway opened the same fresh SQLite
    /// database failed with "table … already exists" — both applied the same migration.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn processes_opening_one_fresh_sqlite_database_at_once_migrate_it_once() {
        for round in 0..5 {
            let dir = std::env::temp_dir().join(format!("mxshield-migrate-race-{}-{round}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.join("shared.db").display());
            let opened: Vec<_> = (0..6)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { crate::nodes::Registry::connect(&url).await.map(|_| ()) })
                })
                .collect();
            for o in opened {
                if let Err(e) = o.await.unwrap() {
                    panic!("round {round}: {e}");
                }
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn urls_name_their_backend_and_hide_passwords() {
        assert_eq!(Backend::of("postgres://u:pw@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("SQLITE:///x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of("mysql://h/db"), None);
        assert_eq!(redact("postgres://mx:secret@db.example.net/mx"), "postgres://mx@db.example.net/mx");
        assert_eq!(redact("postgres://db.example.net/mx"), "postgres://db.example.net/mx");
        assert_eq!(sqlite_path("sqlite:///var/lib/mx/a.db?mode=rwc"), Some("/var/lib/mx/a.db".into()));
    }
}
