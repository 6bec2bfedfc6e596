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
pub async fn connect_with(url: &str, max_connections: u32, sync: Sync) -> Result<(AnyPool, Backend), DbError> {
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
                conn.execute("PRAGMA journal_mode = WAL").await?;
                if sync == Sync::Normal {
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                }
                conn.execute("PRAGMA foreign_keys = ON").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
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
pub async fn migrate(pool: &AnyPool, mut migrator: Migrator, table: &'static str) -> Result<(), DbError> {
    migrator.dangerous_set_table_name(table);
    migrator.run(pool).await?;
    Ok(())
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
