//! The PostgreSQL server of this machine kind (127.0.0.1:5432, trust authentication, database
//! `test`; `MXSHIELD_TEST_PG` names another) as a harness: each [`Schema`] is a schema of its
//! own, dropped at the end, so tests run in parallel. A missing server fails the test: it is
//! never skipped (`scripts/test.sh` installs and starts it).

use std::process::Command;

/// The base URL of the test server.
pub fn base_url() -> String {
    std::env::var("MXSHIELD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The `host:port` of the test server.
pub fn server_addr() -> std::net::SocketAddr {
    let url = base_url();
    let after_at = url.rsplit_once('@').map_or(url.as_str(), |(_, h)| h);
    let hostport = after_at.trim_start_matches("postgres://").split('/').next().unwrap_or("127.0.0.1:5432");
    let hostport = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:5432") };
    std::net::ToSocketAddrs::to_socket_addrs(&hostport).expect("PostgreSQL address").next().expect("an address")
}

/// A schema of its own on the test server, dropped on drop.
pub struct Schema {
    /// Its name.
    pub name: String,
}

impl Schema {
    /// Creates `<prefix>_<pid>_<n>`; panics (the test fails) when the server is missing.
    pub fn new(prefix: &str) -> Schema {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}_{}_{n}", std::process::id());
        psql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"));
        Schema { name }
    }

    /// The URL of the test server with this schema as the search path.
    pub fn url(&self) -> String {
        self.url_via(None)
    }

    /// The same URL through `addr` (a [`crate::proxy::Proxy`]) instead of the server's address.
    pub fn url_via(&self, addr: Option<std::net::SocketAddr>) -> String {
        let mut base = base_url();
        if let Some(a) = addr {
            base = base.replace(&server_addr().to_string(), &a.to_string());
        }
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.name)
    }

    /// Runs `sql` in this schema and returns psql's unaligned output.
    pub fn query(&self, sql: &str) -> String {
        psql(&format!("SET search_path TO {}; {sql}", self.name))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if std::env::var_os("MXSHIELD_KEEP_TEST_DIRS").is_none() {
            let _ = std::panic::catch_unwind(|| psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)));
        }
    }
}

/// Runs `sql` with `psql` on the test server; panics with psql's error when it fails.
pub fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &base_url(), "-c", sql])
        .output()
        .expect("psql (scripts/test.sh installs PostgreSQL)");
    assert!(
        out.status.success(),
        "PostgreSQL at {} (scripts/test.sh starts it): {}",
        base_url(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
