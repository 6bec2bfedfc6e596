//! The node registry: every node writes what it is running into the shared database at each
//! heartbeat, so `mxshield nodes` (and the operator's tools) on any host can list the cluster
//! and tell a node that is down or lags behind.

use sqlx::{AnyPool, Row};

use crate::{Backend, DbError, connect, migrate, query_failed};

/// What a node reports at each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// `node_id` (unique per node; by default the host name).
    pub id: String,
    /// Where it listens for SMTP (`host:port`, comma-separated).
    pub address: String,
    /// The mxshield version it runs.
    pub version: String,
    /// The signature database (release) version in use.
    pub signatures: String,
    /// When that database was built or released (Unix seconds; 0 if unknown).
    pub signatures_at: i64,
    /// The contracts generation it serves.
    pub contracts_generation: i64,
    /// Whether it serves its last-good copy because the database was away.
    pub contracts_stale: bool,
    /// Messages in its queue waiting for a first or a due attempt.
    pub queue_active: u64,
    /// Messages in its queue waiting for a retry.
    pub queue_deferred: u64,
    /// When the oldest message waiting for a retry was received (Unix seconds; 0: none).
    pub queue_oldest_deferred: i64,
    /// Its admin listener's URL (`http://10.0.0.5:8025`; empty: none), through which another
    /// node's console and API reach its queue.
    pub admin: String,
    /// When it started (Unix seconds).
    pub started: i64,
    /// Its last heartbeat (Unix seconds).
    pub heartbeat: i64,
    /// A fingerprint of the settings that decide what it accepts (limits, scanning): nodes
    /// serving the same domains must show the same one.
    pub policy: String,
}

/// The registry in the shared database (or in the one host's SQLite file).
#[derive(Debug, Clone)]
pub struct Registry {
    pool: AnyPool,
}

const COLUMNS: &str = "id, address, version, signatures, signatures_at, contracts_generation, contracts_stale, \
                       queue_active, queue_deferred, started, heartbeat, policy, queue_oldest_deferred, admin";

impl Registry {
    /// Connects to the database at `url` and brings the registry's table up to date.
    pub async fn connect(url: &str) -> Result<Registry, DbError> {
        let (pool, backend) = connect(url, 2).await?;
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrate(&pool, migrator, "_mxshield_nodes_migrations").await?;
        Ok(Registry { pool })
    }

    /// Writes a node's heartbeat (its row, created or replaced).
    pub async fn beat(&self, s: &NodeStatus) -> Result<(), DbError> {
        let sql = format!(
            "INSERT INTO nodes ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version, \
             signatures = excluded.signatures, signatures_at = excluded.signatures_at, \
             contracts_generation = excluded.contracts_generation, contracts_stale = excluded.contracts_stale, \
             queue_active = excluded.queue_active, queue_deferred = excluded.queue_deferred, \
             started = excluded.started, heartbeat = excluded.heartbeat, policy = excluded.policy, \
             queue_oldest_deferred = excluded.queue_oldest_deferred, admin = excluded.admin"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&s.id)
            .bind(&s.address)
            .bind(&s.version)
            .bind(&s.signatures)
            .bind(s.signatures_at)
            .bind(s.contracts_generation)
            .bind(i64::from(s.contracts_stale))
            .bind(s.queue_active as i64)
            .bind(s.queue_deferred as i64)
            .bind(s.started)
            .bind(s.heartbeat)
            .bind(&s.policy)
            .bind(s.queue_oldest_deferred)
            .bind(&s.admin)
            .execute(&self.pool)
            .await
            .map_err(query_failed("writing a heartbeat"))?;
        Ok(())
    }

    /// Every node that ever beat, by id.
    pub async fn list(&self) -> Result<Vec<NodeStatus>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM nodes ORDER BY id");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(query_failed("listing nodes"))?;
        Ok(rows
            .iter()
            .map(|r| NodeStatus {
                id: r.get("id"),
                address: r.get("address"),
                version: r.get("version"),
                signatures: r.get("signatures"),
                signatures_at: r.get("signatures_at"),
                contracts_generation: r.get("contracts_generation"),
                contracts_stale: r.get::<i64, _>("contracts_stale") != 0,
                queue_active: r.get::<i64, _>("queue_active") as u64,
                queue_deferred: r.get::<i64, _>("queue_deferred") as u64,
                started: r.get("started"),
                heartbeat: r.get("heartbeat"),
                policy: r.get("policy"),
                queue_oldest_deferred: r.get("queue_oldest_deferred"),
                admin: r.get("admin"),
            })
            .collect())
    }

    /// Removes a node from the registry (one retired for good); whether it was there.
    pub async fn forget(&self, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query_failed("removing a node"))?;
        Ok(done.rows_affected() > 0)
    }
}

fn release_number(label: &str) -> Option<u64> {
    label.strip_prefix("release-")?.parse().ok()
}

/// A node's state as `mxshield nodes` shows it: `down` (no heartbeat for `down_after`),
/// `differs` (its policy fingerprint is not the one most nodes that are up have: it would
/// accept or refuse other mail), `behind` (an older signature release or contracts generation
/// than the newest node that is up), `stale` (serving its last-good contracts) or `up`.
pub fn state(n: &NodeStatus, all: &[NodeStatus], down_after: std::time::Duration, now: i64) -> &'static str {
    let up = |n: &NodeStatus| now - n.heartbeat <= down_after.as_secs() as i64;
    if !up(n) {
        return "down";
    }
    let newest_release = all.iter().filter(|m| up(m)).filter_map(|m| release_number(&m.signatures)).max();
    let newest_contracts = all.iter().filter(|m| up(m)).map(|m| m.contracts_generation).max().unwrap_or(0);
    let release_behind = match (newest_release, release_number(&n.signatures)) {
        (Some(newest), Some(mine)) => mine < newest,
        (Some(_), None) => true,
        _ => false,
    };
    // its policy is not that of a strict majority of the nodes that are up
    let up_count = all.iter().filter(|m| up(m)).count();
    let sharing = all.iter().filter(|m| up(m) && m.policy == n.policy).count();
    if up_count > 1 && sharing * 2 <= up_count {
        return "differs";
    }
    if release_behind || n.contracts_generation < newest_contracts {
        "behind"
    } else if n.contracts_stale {
        "stale"
    } else {
        "up"
    }
}
