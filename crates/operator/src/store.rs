//! The operator plane's own tables, next to the contracts (one database, its own migrations
//! table): API tokens and the audit log.
//!
//! A token's secret is 32 random bytes (`mxs_` and 43 characters of URL-safe base64), shown
//! once at creation; only its SHA-256 is kept — a fast hash is enough for a secret with 256
//! bits of entropy (passwords, chosen by people, get argon2 instead).

use std::collections::BTreeSet;

use base64::Engine;
use sha2::Digest;
use sqlx::{AnyPool, Row};
use store::Backend;

/// Errors of the operator's tables.
#[derive(Debug, thiserror::Error)]
pub enum AdminStoreError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] store::DbError),
    /// A query failed.
    #[error("{0}: {1}")]
    Query(&'static str, sqlx::Error),
    /// The system's random source failed.
    #[error("no randomness for a token: {0}")]
    Random(String),
}

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> AdminStoreError {
    move |e| AdminStoreError::Query(what, e)
}

/// What a token may do: a resource and a verb (`contracts:read`, `queue:write` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    /// The resource.
    pub resource: Resource,
    /// Read, or change.
    pub write: bool,
}

/// What a scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// Contracts, their revisions, events and domains.
    Contracts,
    /// Statements and price tables.
    Billing,
    /// The message log.
    Log,
    /// The queues.
    Queue,
    /// Nodes and signature releases.
    Nodes,
    /// Tokens and the audit log.
    Admin,
    /// `/metrics`.
    Metrics,
}

impl Resource {
    const ALL: [(Resource, &'static str); 7] = [
        (Resource::Contracts, "contracts"),
        (Resource::Billing, "billing"),
        (Resource::Log, "log"),
        (Resource::Queue, "queue"),
        (Resource::Nodes, "nodes"),
        (Resource::Admin, "admin"),
        (Resource::Metrics, "metrics"),
    ];

    /// Its name in scopes (`queue` of `queue:read`).
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(r, _)| *r == self).map_or("?", |(_, n)| n)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.resource.name(), if self.write { "write" } else { "read" })
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        let known = || Resource::ALL.iter().map(|(_, n)| format!("{n}:read, {n}:write")).collect::<Vec<_>>().join(", ");
        let (res, verb) =
            s.trim().split_once(':').ok_or_else(|| format!("{s:?} is not resource:verb ({})", known()))?;
        let resource = Resource::ALL
            .iter()
            .find(|(_, n)| *n == res)
            .map(|(r, _)| *r)
            .ok_or_else(|| format!("unknown resource in {s:?} (known: {})", known()))?;
        let write = match verb {
            "read" => false,
            "write" => true,
            _ => return Err(format!("{s:?}: the verb is read or write")),
        };
        Ok(Scope { resource, write })
    }
}

/// A token as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Its public id (`tok_…`), for lists and revocation.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// What it may do; `write` on a resource includes `read`.
    pub scopes: BTreeSet<Scope>,
    /// The contracts it is bound to (it sees only their data; read-only); empty: all.
    pub contracts: Vec<String>,
    /// When it was made (RFC 3339, UTC) and by whom.
    pub created_at: String,
    /// Who made it.
    pub created_by: String,
    /// When it stops working, if it does.
    pub expires_at: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// When it was last used.
    pub last_used_at: Option<String>,
}

impl Resource {
    /// Whether its data belongs to contracts (so a token bound to contracts may read its
    /// contracts' part): contracts, billing, the message log. The queue, the nodes, the
    /// tokens and audit and the metrics are the operator's alone.
    pub fn per_contract(self) -> bool {
        matches!(self, Resource::Contracts | Resource::Billing | Resource::Log)
    }
}

impl Token {
    /// Whether the token may use `resource` (`write`: change it).
    pub fn allows(&self, resource: Resource, write: bool) -> bool {
        if !self.contracts.is_empty() && (write || !resource.per_contract()) {
            // bound tokens are read-only, and read only what belongs to their contracts
            return false;
        }
        self.scopes.iter().any(|s| s.resource == resource && (s.write || !write))
    }
}

/// The operator's tables. Connected when first used ([`AdminStore::lazy`]) or at once
/// ([`AdminStore::connect`]): the admin listener starts, and mail flows, while the database is
/// away; its routes answer `503` until it returns.
#[derive(Debug, Clone)]
pub struct AdminStore {
    url: String,
    pool: std::sync::Arc<tokio::sync::OnceCell<AnyPool>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn hash(secret: &str) -> String {
    sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn random_text(bytes: usize) -> Result<String, AdminStoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| AdminStoreError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

fn token_from(r: &sqlx::any::AnyRow) -> Token {
    let list = |s: String| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect::<Vec<_>>();
    Token {
        id: r.get("id"),
        name: r.get("name"),
        scopes: list(r.get("scopes")).iter().filter_map(|s| s.parse().ok()).collect(),
        contracts: list(r.get("contracts")),
        created_at: r.get("created_at"),
        created_by: r.get("created_by"),
        expires_at: r.get("expires_at"),
        revoked_at: r.get("revoked_at"),
        last_used_at: r.get("last_used_at"),
    }
}

impl AdminStore {
    /// Connects to the database at `url` (the contracts store's) and brings the operator's
    /// tables up to date.
    pub async fn connect(url: &str) -> Result<AdminStore, AdminStoreError> {
        let s = AdminStore::lazy(url);
        s.pool().await?;
        Ok(s)
    }

    /// The store at `url`, connected (and migrated) when first used; a failed attempt is
    /// tried again at the next use.
    pub fn lazy(url: &str) -> AdminStore {
        AdminStore { url: url.to_string(), pool: Default::default() }
    }

    async fn pool(&self) -> Result<&AnyPool, AdminStoreError> {
        self.pool
            .get_or_try_init(|| async {
                if let Some(dir) =
                    store::sqlite_path(&self.url).and_then(|p| p.parent().map(std::path::Path::to_path_buf))
                {
                    // an embedded store not made yet (tokens before the first contracts apply)
                    let _ = std::fs::create_dir_all(dir);
                }
                let (pool, backend) = store::connect(&self.url, 4).await?;
                let migrator = match backend {
                    Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
                    Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
                };
                store::migrate(&pool, migrator, "_mxshield_operator_migrations").await?;
                Ok(pool)
            })
            .await
    }

    /// Makes a token; returns it and its secret (shown once, never stored).
    pub async fn create_token(
        &self,
        name: &str,
        scopes: &BTreeSet<Scope>,
        contracts: &[String],
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        created_by: &str,
    ) -> Result<(Token, String), AdminStoreError> {
        let secret = format!("mxs_{}", random_text(32)?);
        let id = format!("tok_{}", random_text(9)?.replace(['-', '_'], "x"));
        let token = Token {
            id,
            name: name.to_string(),
            scopes: scopes.clone(),
            contracts: contracts.to_vec(),
            created_at: now(),
            created_by: created_by.to_string(),
            expires_at: expires_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            revoked_at: None,
            last_used_at: None,
        };
        let scopes: Vec<String> = token.scopes.iter().map(Scope::to_string).collect();
        sqlx::query(
            "INSERT INTO admin_tokens (id, name, hash, scopes, contracts, created_at, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(hash(&secret))
        .bind(scopes.join(","))
        .bind(token.contracts.join(","))
        .bind(&token.created_at)
        .bind(&token.created_by)
        .bind(&token.expires_at)
        .execute(self.pool().await?)
        .await
        .map_err(q("creating a token"))?;
        Ok((token, secret))
    }

    /// The token whose secret is `secret`, if it is valid now (not revoked, not expired);
    /// its last use is recorded.
    pub async fn verify(&self, secret: &str) -> Result<Option<Token>, AdminStoreError> {
        if !secret.starts_with("mxs_") || secret.len() > 100 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, name, scopes, contracts, created_at, created_by, expires_at, revoked_at, last_used_at \
             FROM admin_tokens WHERE hash = $1",
        )
        .bind(hash(secret))
        .fetch_optional(self.pool().await?)
        .await
        .map_err(q("checking a token"))?;
        let Some(token) = row.as_ref().map(token_from) else { return Ok(None) };
        let now = now();
        if token.revoked_at.is_some() || token.expires_at.as_ref().is_some_and(|e| *e <= now) {
            return Ok(None);
        }
        sqlx::query("UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(&now)
            .bind(&token.id)
            .execute(self.pool().await?)
            .await
            .map_err(q("recording a token's use"))?;
        Ok(Some(token))
    }

    /// Every token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<Token>, AdminStoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, contracts, created_at, created_by, expires_at, revoked_at, last_used_at \
             FROM admin_tokens ORDER BY created_at, id",
        )
        .fetch_all(self.pool().await?)
        .await
        .map_err(q("listing tokens"))?;
        Ok(rows.iter().map(token_from).collect())
    }

    /// Revokes token `id`; `false` if there is no such token still valid.
    pub async fn revoke(&self, id: &str) -> Result<bool, AdminStoreError> {
        let done = sqlx::query("UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .execute(self.pool().await?)
            .await
            .map_err(q("revoking a token"))?
            .rows_affected();
        Ok(done > 0)
    }

    /// Adds console user `name` with `role`; the password is kept as an argon2 hash. `false`
    /// if the name is taken.
    pub async fn add_user(&self, name: &str, role: Role, password: &str) -> Result<bool, AdminStoreError> {
        use argon2::PasswordHasher;
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| AdminStoreError::Random(e.to_string()))?;
        let salt =
            argon2::password_hash::SaltString::encode_b64(&raw).map_err(|e| AdminStoreError::Random(e.to_string()))?;
        let hash = argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AdminStoreError::Random(e.to_string()))?
            .to_string();
        let done = sqlx::query(
            "INSERT INTO console_users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(now())
        .execute(self.pool().await?)
        .await
        .map_err(q("adding a user"))?
        .rows_affected();
        Ok(done > 0)
    }

    /// Checks a login from address `from`; throttled per user and per address.
    pub async fn login(&self, name: &str, password: &str, from: &str) -> Result<Login, AdminStoreError> {
        use argon2::PasswordVerifier;
        let t = chrono::Utc::now().timestamp();
        let keys = [format!("user:{name}"), format!("addr:{from}")];
        for key in &keys {
            let row = sqlx::query("SELECT failures, first_at FROM console_login_failures WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool().await?)
                .await
                .map_err(q("checking login failures"))?;
            if let Some(r) = row
                && r.get::<i64, _>("failures") >= THROTTLE_FAILURES
                && t - r.get::<i64, _>("first_at") < THROTTLE_WINDOW
            {
                return Ok(Login::Throttled);
            }
        }
        let row = sqlx::query("SELECT role, password_hash FROM console_users WHERE name = $1 AND disabled_at IS NULL")
            .bind(name)
            .fetch_optional(self.pool().await?)
            .await
            .map_err(q("reading a user"))?;
        let good = row.as_ref().and_then(|r| {
            let hash: String = r.get("password_hash");
            let parsed = argon2::PasswordHash::new(&hash).ok()?;
            argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).ok()?;
            Role::parse(&r.get::<String, _>("role"))
        });
        let Some(role) = good else {
            for key in &keys {
                // a failure outside the window starts a new one
                sqlx::query(
                    "INSERT INTO console_login_failures (key, failures, first_at) VALUES ($1, 1, $2) \
                     ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN console_login_failures.first_at < $3 THEN 1 ELSE console_login_failures.failures + 1 END, \
                     first_at = CASE WHEN console_login_failures.first_at < $3 THEN $2 ELSE console_login_failures.first_at END",
                )
                .bind(key)
                .bind(t)
                .bind(t - THROTTLE_WINDOW)
                .execute(self.pool().await?)
                .await
                .map_err(q("recording a login failure"))?;
            }
            return Ok(Login::Refused);
        };
        sqlx::query("DELETE FROM console_login_failures WHERE key = $1")
            .bind(&keys[0])
            .execute(self.pool().await?)
            .await
            .map_err(q("clearing login failures"))?;
        let secret = random_text(32)?;
        let csrf = random_text(24)?;
        sqlx::query(
            "INSERT INTO console_sessions (hash, user_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash(&secret))
        .bind(name)
        .bind(&csrf)
        .bind(now())
        .bind(t + SESSION_SECONDS)
        .execute(self.pool().await?)
        .await
        .map_err(q("opening a session"))?;
        Ok(Login::Ok(secret, ConsoleSession { user: name.to_string(), role, csrf, lang: String::new() }))
    }

    /// The session whose cookie is `secret`, if it is still open (and its user enabled).
    pub async fn session(&self, secret: &str) -> Result<Option<ConsoleSession>, AdminStoreError> {
        let row = sqlx::query(
            "SELECT s.user_name, s.csrf, u.role, u.lang FROM console_sessions s JOIN console_users u ON u.name = s.user_name \
             WHERE s.hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
        )
        .bind(hash(secret))
        .bind(chrono::Utc::now().timestamp())
        .fetch_optional(self.pool().await?)
        .await
        .map_err(q("reading a session"))?;
        Ok(row.and_then(|r| {
            Some(ConsoleSession {
                user: r.get("user_name"),
                role: Role::parse(&r.get::<String, _>("role"))?,
                csrf: r.get("csrf"),
                lang: r.get("lang"),
            })
        }))
    }

    /// Clears the (contract, kind) finding at `at`: measured from then on.
    pub async fn clear_finding(&self, contract: &str, kind: &str, at: i64, by: &str) -> Result<(), AdminStoreError> {
        self.mark_finding(FindingMark::Cleared, contract, kind, at, by).await
    }

    /// When each (contract, kind) finding was last cleared (Unix seconds).
    pub async fn cleared_findings(&self) -> Result<crate::conditions::Cleared, AdminStoreError> {
        self.marked_findings(FindingMark::Cleared).await
    }

    /// Records a clearing or an acknowledgement of a finding (the latest of each kind kept).
    async fn mark_finding(
        &self,
        mark: FindingMark,
        contract: &str,
        kind: &str,
        at: i64,
        by: &str,
    ) -> Result<(), AdminStoreError> {
        let (table, at_col, by_col) = mark.columns();
        // constant table and column names: no caller's text is in the statement
        let sql = format!(
            "INSERT INTO {table} (contract, kind, {at_col}, {by_col}) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (contract, kind) DO UPDATE SET {at_col} = excluded.{at_col}, {by_col} = excluded.{by_col}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(contract)
            .bind(kind)
            .bind(at)
            .bind(by)
            .execute(self.pool().await?)
            .await
            .map_err(q("recording the handling of a finding"))?;
        Ok(())
    }

    /// When each (contract, kind) finding was last cleared or acknowledged.
    async fn marked_findings(&self, mark: FindingMark) -> Result<crate::conditions::Cleared, AdminStoreError> {
        let (table, at_col, _) = mark.columns();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT contract, kind, {at_col} AS at FROM {table}")))
            .fetch_all(self.pool().await?)
            .await
            .map_err(q("reading the handling of findings"))?;
        Ok(rows.iter().map(|r| ((r.get("contract"), r.get("kind")), r.get("at"))).collect())
    }

    /// Claims the scheduled probe run of `contract` for `period` and the set of servers
    /// `servers` (a digest): `true` for the one node that gets it.
    pub async fn claim_relay_run(
        &self,
        contract: &str,
        period: i64,
        servers: &str,
        node: &str,
        at: i64,
    ) -> Result<bool, AdminStoreError> {
        self.claim(
            "INSERT INTO relay_runs (contract, period, servers, node, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (contract, period, servers) DO NOTHING",
            [contract, servers, node],
            [period, at],
        )
        .await
    }

    /// Claims the mail of the policy `warn` about the (`contract`, `kind`) finding in its
    /// `episode` (when it was last cleared, 0: never): `true` for the one node that sends it.
    pub async fn claim_notice(
        &self,
        contract: &str,
        kind: &str,
        episode: i64,
        node: &str,
        at: i64,
    ) -> Result<bool, AdminStoreError> {
        self.claim(
            "INSERT INTO conditions_notices (contract, kind, node, episode, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (contract, kind, episode) DO NOTHING",
            [contract, kind, node],
            [episode, at],
        )
        .await
    }

    /// Runs an insert that does nothing on conflict, with three texts then two numbers:
    /// whether it inserted.
    async fn claim(&self, sql: &'static str, texts: [&str; 3], numbers: [i64; 2]) -> Result<bool, AdminStoreError> {
        let mut query = sqlx::query(sql);
        for t in texts {
            query = query.bind(t);
        }
        for n in numbers {
            query = query.bind(n);
        }
        let done = query.execute(self.pool().await?).await.map_err(q("claiming a run"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a probe attempt (its outcome so far and transcript), created or updated.
    pub async fn save_relay_probe(&self, p: &RelayProbe) -> Result<(), AdminStoreError> {
        sqlx::query(
            "INSERT INTO relay_probes (token, contract, server, node, started_at, outcome, transcript) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (token) DO UPDATE SET outcome = excluded.outcome, transcript = excluded.transcript",
        )
        .bind(&p.token)
        .bind(&p.contract)
        .bind(&p.server)
        .bind(&p.node)
        .bind(p.started_at)
        .bind(&p.outcome)
        .bind(&p.transcript)
        .execute(self.pool().await?)
        .await
        .map_err(q("recording a relay probe"))?;
        Ok(())
    }

    /// Records that the canary of probe `token` arrived: `false` when no probe has that token
    /// (a stray or forged canary) or its arrival was already recorded.
    pub async fn canary_arrived(&self, token: &str, at: i64, from: &str, head: &str) -> Result<bool, AdminStoreError> {
        let done = sqlx::query(
            "UPDATE relay_probes SET arrived_at = $1, arrived_from = $2, arrival = $3 \
             WHERE token = $4 AND arrived_at IS NULL",
        )
        .bind(at)
        .bind(from)
        .bind(head)
        .bind(token)
        .execute(self.pool().await?)
        .await
        .map_err(q("recording a canary's arrival"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Probe `token`.
    pub async fn relay_probe(&self, token: &str) -> Result<Option<RelayProbe>, AdminStoreError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {PROBE_COLUMNS} FROM relay_probes WHERE token = $1")))
                .bind(token)
                .fetch_optional(self.pool().await?)
                .await
                .map_err(q("reading a relay probe"))?;
        Ok(row.as_ref().map(probe_of))
    }

    /// The latest probe of each server of each contract (or of `contract`), newest first.
    pub async fn latest_relay_probes(&self, contract: Option<&str>) -> Result<Vec<RelayProbe>, AdminStoreError> {
        // a constant list of columns: no caller's text is in the statement
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROBE_COLUMNS} FROM relay_probes p WHERE ($1 = '' OR contract = $1) AND NOT EXISTS \
             (SELECT 1 FROM relay_probes n WHERE n.contract = p.contract AND n.server = p.server \
              AND (n.started_at > p.started_at OR (n.started_at = p.started_at AND n.token > p.token))) \
             ORDER BY started_at DESC, token"
        )))
        .bind(contract.unwrap_or(""))
        .fetch_all(self.pool().await?)
        .await
        .map_err(q("reading relay probes"))?;
        Ok(rows.iter().map(probe_of).collect())
    }

    /// Acknowledges the (contract, kind) finding: the operator has seen it (it stays open).
    pub async fn acknowledge_finding(
        &self,
        contract: &str,
        kind: &str,
        at: i64,
        by: &str,
    ) -> Result<(), AdminStoreError> {
        self.mark_finding(FindingMark::Acknowledged, contract, kind, at, by).await
    }

    /// When each (contract, kind) finding was last acknowledged (Unix seconds).
    pub async fn acknowledged_findings(&self) -> Result<crate::conditions::Cleared, AdminStoreError> {
        self.marked_findings(FindingMark::Acknowledged).await
    }

    /// Acknowledges or clears the (`contract`, `kind`) finding as `actor` from `source`
    /// (`cli`, `api`, `console`) with the operator's `reason`, audited: when (Unix seconds).
    pub async fn handle_finding(
        &self,
        contract: &str,
        kind: &str,
        how: crate::conditions::Handling,
        actor: &str,
        source: &str,
        reason: &str,
    ) -> Result<i64, AdminStoreError> {
        use crate::conditions::Handling;
        let now = chrono::Utc::now().timestamp();
        let after = match how {
            Handling::Clear => {
                self.clear_finding(contract, kind, now, actor).await?;
                format!("measured from {now}")
            }
            Handling::Acknowledge => {
                self.acknowledge_finding(contract, kind, now, actor).await?;
                format!("acknowledged at {now}")
            }
        };
        let entry = AuditEntry {
            actor: actor.to_string(),
            source: source.into(),
            action: format!("conditions.{}", how.as_str()),
            target: format!("{contract} {kind}"),
            before: None,
            after: Some(if reason.trim().is_empty() { after } else { format!("{after}: {}", reason.trim()) }),
            outcome: "ok".into(),
        };
        self.audit_or_log(&entry).await;
        Ok(now)
    }

    /// Sets user `name`'s console language (`ja`, `en`; empty: the browser's).
    pub async fn set_language(&self, name: &str, lang: &str) -> Result<(), AdminStoreError> {
        sqlx::query("UPDATE console_users SET lang = $1 WHERE name = $2")
            .bind(lang)
            .bind(name)
            .execute(self.pool().await?)
            .await
            .map_err(q("setting a user's language"))?;
        Ok(())
    }

    /// Ends the session whose cookie is `secret`.
    pub async fn logout(&self, secret: &str) -> Result<(), AdminStoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE hash = $1")
            .bind(hash(secret))
            .execute(self.pool().await?)
            .await
            .map_err(q("ending a session"))?;
        Ok(())
    }

    /// The answer given to the request `key` of token `token_id` within the last day, if any.
    pub async fn idempotent(
        &self,
        token_id: &str,
        key: &str,
    ) -> Result<Option<(u16, serde_json::Value)>, AdminStoreError> {
        let since = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let row = sqlx::query(
            "SELECT status, body FROM admin_idempotency WHERE token_id = $1 AND key = $2 AND created_at > $3",
        )
        .bind(token_id)
        .bind(key)
        .bind(since)
        .fetch_optional(self.pool().await?)
        .await
        .map_err(q("reading an idempotency key"))?;
        Ok(row.map(|r| {
            let body: String = r.get("body");
            (r.get::<i64, _>("status") as u16, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
        }))
    }

    /// Keeps the answer to the request `key` of token `token_id`.
    pub async fn remember_idempotent(
        &self,
        token_id: &str,
        key: &str,
        status: u16,
        body: &serde_json::Value,
    ) -> Result<(), AdminStoreError> {
        sqlx::query("DELETE FROM admin_idempotency WHERE token_id = $1 AND key = $2")
            .bind(token_id)
            .bind(key)
            .execute(self.pool().await?)
            .await
            .map_err(q("keeping an idempotency key"))?;
        sqlx::query(
            "INSERT INTO admin_idempotency (token_id, key, created_at, status, body) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_id)
        .bind(key)
        .bind(now())
        .bind(i64::from(status))
        .bind(body.to_string())
        .execute(self.pool().await?)
        .await
        .map_err(q("keeping an idempotency key"))?;
        Ok(())
    }

    /// Records a state-changing request.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), AdminStoreError> {
        sqlx::query(
            "INSERT INTO admin_audit (at, actor, source, action, target, before, after, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now())
        .bind(&entry.actor)
        .bind(&entry.source)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.before)
        .bind(&entry.after)
        .bind(&entry.outcome)
        .execute(self.pool().await?)
        .await
        .map_err(q("writing the audit log"))?;
        Ok(())
    }

    /// [`AdminStore::audit`] for a request already answered: a failure to record it is logged,
    /// never hidden and never turned into the request's failure.
    pub async fn audit_or_log(&self, entry: &AuditEntry) {
        // from where: the request's client address, when a request of the admin listener
        // writes it
        let mut entry = entry.clone();
        if let Ok(peer) = crate::admin::PEER.try_with(|p| *p) {
            entry.source = format!("{} {}", entry.source, peer.ip());
        }
        let entry = &entry;
        if let Err(e) = self.audit(entry).await {
            tracing::error!(event = "audit_failed", action = %entry.action, target = %entry.target, error = %e);
        }
    }

    /// The audit log, newest first, at most `limit` entries.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<(String, AuditEntry)>, AdminStoreError> {
        self.audit_search(&AuditFilter { limit, ..Default::default() }).await
    }

    /// The audit entries that match `f`, newest first.
    pub async fn audit_search(&self, f: &AuditFilter) -> Result<Vec<(String, AuditEntry)>, AdminStoreError> {
        let mut sql =
            "SELECT at, actor, source, action, target, before, after, outcome FROM admin_audit WHERE 1 = 1".to_string();
        let mut binds: Vec<String> = Vec::new();
        // each clause is a constant text; every value is bound
        for (clause, value) in [
            (" AND lower(actor) LIKE '%' || lower(?) || '%'", &f.actor),
            (" AND action = ?", &f.action),
            (" AND target = ?", &f.target),
            (" AND at >= ?", &f.since),
        ] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                binds.push(v.clone());
                sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
            }
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", binds.len() + 1));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            query = query.bind(b.as_str());
        }
        let rows = query
            .bind(f.limit.clamp(1, 10_000))
            .fetch_all(self.pool().await?)
            .await
            .map_err(q("reading the audit log"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get("at"),
                    AuditEntry {
                        actor: r.get("actor"),
                        source: r.get("source"),
                        action: r.get("action"),
                        target: r.get("target"),
                        before: r.get("before"),
                        after: r.get("after"),
                        outcome: r.get("outcome"),
                    },
                )
            })
            .collect())
    }
}

/// A console user's role: what the console lets them do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, users and tokens included.
    Admin,
    /// Contracts, queue, statements.
    Operator,
    /// Reading only.
    Auditor,
}

impl Role {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Auditor].into_iter().find(|r| r.as_str() == s)
    }
}

/// A signed-in console user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Who.
    pub user: String,
    /// Their role.
    pub role: Role,
    /// The token every state-changing form must carry (CSRF).
    pub csrf: String,
    /// The user's language (`ja`, `en`; empty: the browser's).
    pub lang: String,
}

/// What a login attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// Signed in: the session cookie's value (shown once; only its hash is kept) and the session.
    Ok(String, ConsoleSession),
    /// Wrong name or password (not said which).
    Refused,
    /// Too many failures for this user or this address: no attempt is checked for a while.
    Throttled,
}

/// Failures allowed per user and per address within [`THROTTLE_WINDOW`] before logins are
/// refused unchecked until the window has passed.
const THROTTLE_FAILURES: i64 = 5;
/// Seconds.
const THROTTLE_WINDOW: i64 = 15 * 60;
/// How long a console session lasts (seconds).
const SESSION_SECONDS: i64 = 12 * 3600;

/// What to look for in the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Part of who (any case).
    pub actor: Option<String>,
    /// The action, exactly (`contracts.change`).
    pub action: Option<String>,
    /// The target, exactly (a contract id, a queue id …).
    pub target: Option<String>,
    /// From this time on (RFC 3339, UTC, as the log stores it: `2026-12-01` works).
    pub since: Option<String>,
    /// At most this many entries (1–10,000).
    pub limit: i64,
}

/// One state-changing request of the operator plane.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEntry {
    /// Who (a token's id and name, a user, or the CLI's `$USER`).
    pub actor: String,
    /// From where (the client address, or `cli`).
    pub source: String,
    /// What (`tokens.create`, `contracts.change` …).
    pub action: String,
    /// On what (a contract id, a token id …).
    pub target: String,
    /// The state before, when there was one (JSON or text).
    pub before: Option<String>,
    /// The state after.
    pub after: Option<String>,
    /// `ok`, or why it was refused.
    pub outcome: String,
}

/// One attempt of the open-relay probe on one server of a contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelayProbe {
    /// The canary's token.
    pub token: String,
    /// The contract.
    pub contract: String,
    /// The server probed (`host:port`, and its address when a name).
    pub server: String,
    /// The node that probed.
    pub node: String,
    /// When (Unix seconds).
    pub started_at: i64,
    /// `probing`, `unreachable`, `refused` (the server would not take the relayed message) or
    /// `accepted` (it took it; the canary's arrival proves it relayed it).
    pub outcome: String,
    /// The conversation, one line per command (`C:`) and reply line (`S:`).
    pub transcript: String,
    /// When the canary arrived, if it did.
    pub arrived_at: Option<i64>,
    /// Who delivered it to the gateway (address and EHLO name).
    pub arrived_from: Option<String>,
    /// The beginning of the message as it arrived (its `Received:` fields show the path).
    pub arrival: Option<String>,
}

const PROBE_COLUMNS: &str =
    "token, contract, server, node, started_at, outcome, transcript, arrived_at, arrived_from, arrival";

fn probe_of(r: &sqlx::any::AnyRow) -> RelayProbe {
    RelayProbe {
        token: r.get("token"),
        contract: r.get("contract"),
        server: r.get("server"),
        node: r.get("node"),
        started_at: r.get("started_at"),
        outcome: r.get("outcome"),
        transcript: r.get("transcript"),
        arrived_at: r.get("arrived_at"),
        arrived_from: r.get("arrived_from"),
        arrival: r.get("arrival"),
    }
}

/// The operator's two handlings of a finding, each kept in its own table.
#[derive(Debug, Clone, Copy)]
enum FindingMark {
    Cleared,
    Acknowledged,
}

impl FindingMark {
    /// Its table, and the columns of when and by whom.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            FindingMark::Cleared => ("conditions_cleared", "cleared_at", "cleared_by"),
            FindingMark::Acknowledged => ("conditions_acknowledged", "acknowledged_at", "acknowledged_by"),
        }
    }
}
