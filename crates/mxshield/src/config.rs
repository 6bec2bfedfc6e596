//! The gateway configuration: defaults, the TOML file, and validation that reports every
//! problem (key, line, why) at once. Every key is documented in `docs/config.md`.

pub use delivery::DeliveryConfig;
pub use inbound::{SmtpConfig, TlsFiles};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use confread::{Issues, Reader, Section};
use contracts::NextHop;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Spool and embedded store live here.
    pub data_dir: PathBuf,
    /// Address in the `From:` of DSNs and notices.
    pub postmaster: String,
    /// Where mail to the gateway's own postmaster (`<postmaster>`, the `postmaster` address)
    /// is sent; `None`: to the `postmaster` address itself, routed like any other.
    pub postmaster_forward: Option<String>,
    /// `node_id`: this node's name among several (the message log and `mxshield nodes` name
    /// it); by default `smtp.hostname`.
    pub node_name: String,
    /// `[node] id`: written into every queue id made here, so ids of a cluster's nodes never
    /// collide; by default derived from `node_id`.
    pub node_id: u16,
    /// `[node]`: how often this node writes its heartbeat, and how old a heartbeat may be before
    /// `mxshield nodes` shows its node as down.
    pub heartbeat: Duration,
    pub down_after: Duration,
    /// `[operator] timezone`: the calendar contracts' days are counted in.
    pub calendar: contracts::Calendar,
    pub smtp: SmtpConfig,
    pub delivery: DeliveryConfig,
    pub contracts: ContractsConfig,
    pub scan: ScanConfig,
    pub log: LogConfig,
    pub warnings: WarningsConfig,
    /// `[signatures]`: signature releases (updates).
    pub signatures: sigupdate::updater::UpdateConfig,
    /// `[billing]`: the issuer and the price tables.
    pub billing: BillingConfig,
    /// `[admin]`: the operator's HTTP API listener.
    pub admin: AdminConfig,
    /// `[conditions]`: the thresholds the conditions of use are measured against, and the
    /// policies applied while a finding is flagged.
    pub conditions: operator::conditions::Settings,
    /// `[conditions.spam_engine]`: the spam engine outbound mail is scored by (`None`: none).
    pub spam_engine: Option<bulk::spam::Engine>,
}

/// `[admin]`: where the operator's API listens (`/api/v1`, `/healthz`), never on an SMTP port.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Whether `serve` starts it.
    pub enabled: bool,
    /// Its address (default `127.0.0.1:8025`: this host only).
    pub listen: std::net::SocketAddr,
    /// TLS on every connection, with `[smtp.tls]`'s certificate and key (default off).
    pub tls: bool,
    /// Connections open at once (default 64).
    pub max_connections: usize,
    /// How long a client may take for the TLS handshake and each request's header (default 10 s).
    pub header_timeout: std::time::Duration,
    /// The URL other nodes reach this listener at (default: `listen`, when it is not a
    /// wildcard address), for the queues of every node through one node's console and API.
    pub advertise: Option<String>,
    /// Whether tokens bound to contracts may read their contracts' message log (default off:
    /// the seed says customers are not sent logs).
    pub bound_tokens_read_log: bool,
    /// Whether `/metrics` counts messages per contract (`mxshield_contract_messages_total`,
    /// a series per contract, direction and result; default on, off for very many contracts).
    pub metrics_by_contract: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8025)),
            tls: false,
            max_connections: 64,
            header_timeout: std::time::Duration::from_secs(10),
            advertise: None,
            bound_tokens_read_log: false,
            metrics_by_contract: true,
        }
    }
}

impl AdminConfig {
    /// The URL other nodes reach this listener at, once it listens on `local`: `advertise`,
    /// or `local` itself unless it is a wildcard address (then none).
    pub fn url(&self, local: std::net::SocketAddr) -> Option<String> {
        if let Some(a) = &self.advertise {
            return Some(a.clone());
        }
        let scheme = if self.tls { "https" } else { "http" };
        (!local.ip().is_unspecified()).then(|| format!("{scheme}://{local}"))
    }
}

/// `[billing]`: who issues statements and what contracts cost.
#[derive(Debug, Clone, Default)]
pub struct BillingConfig {
    /// The issuer's name, as statements show it.
    pub issuer: Option<String>,
    /// The issuer's qualified-invoice registration number (`T` and 13 digits).
    pub registration_number: Option<String>,
    /// How the tax of each rate is brought to whole yen (once per rate and statement).
    pub rounding: rating::Rounding,
    /// `[[billing.price_table]]`: the price tables by name (`name`, default `standard`), each
    /// with its versions by the day each takes effect.
    pub tables: rating::PriceBook,
}

/// `[scan]`: the scanning engine.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Directory of ClamAV-format databases; `None` = the built-in database.
    pub signatures: Option<PathBuf>,
    pub limits: scan::Limits,
    /// `engine = "clamd"`: where clamd listens.
    pub clamd: Option<scan::clamd::ClamdAddr>,
    pub clamd_timeout: Duration,
    /// Scans running at once; further messages wait for a slot (never refused for it).
    pub max_concurrent: usize,
    /// Memory the running scans may hold together, in bytes (each is charged three times its
    /// message size plus `max_expanded`, at most this much).
    pub max_memory: u64,
    /// `detect_pua`: load the PUA databases (`.ndu` …), off by default as in ClamAV.
    pub load: scan::sigdb::LoadOptions,
}

/// `[contracts]`: where contracts are stored and how often a server looks for changes.
#[derive(Debug, Clone)]
pub struct ContractsConfig {
    /// Where the contract store is: `[store] url` (PostgreSQL, shared by several nodes), else
    /// the SQLite file `database`.
    pub url: String,
    /// How often a node looks at the store's generation; `None`: [`contracts::RELOAD_LOCAL`]
    /// (SQLite) or [`contracts::RELOAD_SHARED`] (PostgreSQL, where `LISTEN/NOTIFY` wakes nodes).
    pub reload_interval: Option<Duration>,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub json: bool,
    /// The message log (R19): an SQLite file, or the shared database of `[store] url` with a
    /// local journal.
    pub message_log: msglog::LogLocation,
    /// Records older than this are deleted.
    pub retention: Duration,
}

/// `[warnings]`: warning mails about viruses (R12–R14).
#[derive(Debug, Clone)]
pub struct WarningsConfig {
    pub enabled: bool,
    pub charset: filter::notify::Charset,
    /// Directory whose template files replace the built-in ones.
    pub templates: Option<PathBuf>,
}

impl Config {
    /// The configuration with no file: every default.
    pub fn defaults() -> Config {
        Config::from_str("").expect("the empty configuration is valid")
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, Issues> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            Issues(vec![confread::Issue {
                key: String::new(),
                line: 0,
                why: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Config::from_str(&src)
    }

    /// Parses and validates configuration text.
    pub fn from_str(src: &str) -> Result<Config, Issues> {
        let doc = confread::parse(src)?;
        let mut r = Reader::new(src);
        let mut root = r.root(&doc);
        let data_dir =
            r.string(&mut root, "data_dir").map(|s| PathBuf::from(s.0)).unwrap_or_else(|| "./mxshield-data".into());
        let mut smtp_sec = r.table(&mut root, "smtp");
        let smtp = read_smtp(&mut r, smtp_sec.as_mut());
        let postmaster = match r.string(&mut root, "postmaster") {
            Some((p, line)) => {
                if smtp::address::parse_mailbox(&p).is_err() {
                    r.issue("postmaster", line, format!("{p:?} is not a mail address"));
                }
                p
            }
            None => format!("postmaster@{}", smtp.hostname),
        };
        let postmaster_forward = r.string(&mut root, "postmaster_forward").map(|(p, line)| {
            if smtp::address::parse_mailbox(&p).is_err() {
                r.issue("postmaster_forward", line, format!("{p:?} is not a mail address"));
            }
            p
        });
        let mut del_sec = r.table(&mut root, "delivery");
        let delivery = read_delivery(&mut r, del_sec.as_mut(), &smtp.hostname);
        let mut con_sec = r.table(&mut root, "contracts");
        let mut contracts = read_contracts(&mut r, con_sec.as_mut(), &data_dir);
        let mut store_sec = r.table(&mut root, "store");
        if let Some(url) = read_store(&mut r, store_sec.as_mut()) {
            contracts.url = url;
        }
        let mut log_sec = r.table(&mut root, "log");
        let shared = (store::Backend::of(&contracts.url) == Some(store::Backend::Postgres)).then_some(&contracts.url);
        let log = read_log(&mut r, log_sec.as_mut(), &data_dir, shared.map(String::as_str));
        let mut warn_sec = r.table(&mut root, "warnings");
        let warnings = read_warnings(&mut r, warn_sec.as_mut());
        let mut scan_sec = r.table(&mut root, "scan");
        let scan = read_scan(&mut r, scan_sec.as_mut());
        let node_name = match r.string(&mut root, "node_id") {
            Some((n, line)) if !is_node_name(&n) => {
                r.issue("node_id", line, "must be 1 to 253 letters, digits, '.', '-' or '_'");
                n
            }
            Some((n, _)) => n,
            None => smtp.hostname.clone(),
        };
        let mut node_sec = r.table(&mut root, "node");
        let (node_id, heartbeat, down_after) = read_node(&mut r, node_sec.as_mut(), &node_name);
        let mut operator_sec = r.table(&mut root, "operator");
        let calendar = read_operator(&mut r, operator_sec.as_mut());
        let mut billing_sec = r.table(&mut root, "billing");
        let billing = read_billing(&mut r, billing_sec.as_mut());
        let mut sigs_sec = r.table(&mut root, "signatures");
        let signatures = read_signatures(&mut r, sigs_sec.as_mut());
        let mut admin_sec = r.table(&mut root, "admin");
        let admin = read_admin(&mut r, admin_sec.as_mut(), &smtp);
        let mut conditions_sec = r.table(&mut root, "conditions");
        let (conditions, spam_engine) = read_conditions(&mut r, conditions_sec.as_mut());
        r.deny_unknown(&root);
        r.finish()?;
        Ok(Config {
            data_dir,
            postmaster,
            postmaster_forward,
            node_name,
            node_id,
            heartbeat,
            down_after,
            calendar,
            smtp,
            delivery,
            contracts,
            scan,
            log,
            warnings,
            signatures,
            billing,
            admin,
            conditions,
            spam_engine,
        })
    }

    /// Where a node keeps its installed signature releases.
    pub fn signatures_dir(&self) -> PathBuf {
        self.data_dir.join("signatures")
    }

    /// Where the spool lives.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }
}

/// Reads an optional value with a default, validating it with `check`.
fn positive<T: TryFrom<u64>>(r: &mut Reader<'_>, sec: Option<&mut Section<'_, '_>>, key: &str, default: T) -> T {
    let Some(sec) = sec else { return default };
    match r.unsigned(sec, key) {
        None => default,
        Some((0, line)) => {
            r.issue(sec.child_path(key), line, "must be at least 1");
            default
        }
        Some((n, line)) => T::try_from(n).unwrap_or_else(|_| {
            r.issue(sec.child_path(key), line, "is too large");
            default
        }),
    }
}

fn duration(r: &mut Reader<'_>, sec: Option<&mut Section<'_, '_>>, key: &str, default: Duration) -> Duration {
    let Some(sec) = sec else { return default };
    match r.duration(sec, key) {
        None => default,
        Some((d, line)) if d.is_zero() => {
            r.issue(sec.child_path(key), line, "must be longer than zero");
            default
        }
        Some((d, _)) => d,
    }
}

fn read_smtp(r: &mut Reader<'_>, mut sec: Option<&mut Section<'_, '_>>) -> SmtpConfig {
    let mut listen = vec![SocketAddr::from(([127, 0, 0, 1], 2525))];
    let mut hostname = system_hostname();
    let mut tls = None;
    if let Some(s) = sec.as_deref_mut() {
        if let Some(list) = r.strings(s, "listen") {
            if list.is_empty() {
                r.issue(s.child_path("listen"), s.line(), "must list at least one address:port");
            }
            listen.clear();
            for (a, line) in list {
                match a.parse::<SocketAddr>() {
                    Ok(addr) => listen.push(addr),
                    Err(_) => r.issue(s.child_path("listen"), line, format!("{a:?} is not an address:port")),
                }
            }
        }
        if let Some((h, line)) = r.string(s, "hostname") {
            if contracts::is_hostname(&h) {
                hostname = h;
            } else {
                r.issue(s.child_path("hostname"), line, format!("{h:?} is not a host name"));
            }
        }
        if let Some(mut t) = r.table(s, "tls") {
            let cert = r.string(&mut t, "cert");
            let key = r.string(&mut t, "key");
            match (cert, key) {
                (Some(c), Some(k)) => tls = Some(TlsFiles { cert: c.0.into(), key: k.0.into() }),
                _ => r.issue(t.path().to_string(), t.line(), "needs both cert and key (PEM files)"),
            }
            r.deny_unknown(&t);
        }
    }
    let max_connections = positive(r, sec.as_deref_mut(), "max_connections", 1000);
    let cfg = SmtpConfig {
        listen,
        hostname,
        max_connections,
        max_connections_per_client: positive(r, sec.as_deref_mut(), "max_connections_per_client", 50),
        reserved_connections: reserved(r, sec.as_deref_mut(), max_connections),
        max_recipients: positive(r, sec.as_deref_mut(), "max_recipients", 100),
        max_message_size: positive(r, sec.as_deref_mut(), "max_message_size", 52_428_800),
        max_line_length: positive(r, sec.as_deref_mut(), "max_line_length", 4096),
        max_errors: positive(r, sec.as_deref_mut(), "max_errors", 10),
        max_received_headers: positive(r, sec.as_deref_mut(), "max_received_headers", 30),
        command_timeout: duration(r, sec.as_deref_mut(), "command_timeout", Duration::from_secs(300)),
        data_timeout: duration(r, sec.as_deref_mut(), "data_timeout", Duration::from_secs(180)),
        data_total_timeout: duration(r, sec.as_deref_mut(), "data_total_timeout", Duration::from_secs(600)),
        shutdown_timeout: duration(r, sec.as_deref_mut(), "shutdown_timeout", Duration::from_secs(30)),
        tls,
    };
    if let Some(s) = sec {
        if cfg.max_line_length < 512 {
            r.issue(s.child_path("max_line_length"), s.line(), "must be at least 512 (RFC 5321)");
        }
        r.deny_unknown(s);
    }
    cfg
}

/// `[conditions]`: `bounce_warn_percent` (5), `bounce_flag_percent` (10), `bounce_min_copies`
/// (200), `bounce_last_copies` (1000), `spam_warn_per_day` (10), `spam_flag_per_day` (50),
/// `window_days` (7), `bulk_warn_copies`, `bulk_flag_copies`; a policy per kind —
/// `undeliverable`, `spam_rejections`, `spam_score`, `bulk`, `open_relay` (`observe`, `warn`,
/// `defer`, `refuse`) — and per contract in `[conditions.contract.ID]`; `check_every` ("60s"),
/// `bulk_metering`, `bulk_flush`, `notify` (the address `warn` mails); the open-relay probe's
/// `relay_test_every` ("7d"; "0s": on demand only), `canary_domain` (the host name),
/// `relay_test_port` (25), `relay_test_wait` ("60s"), `relay_test_delay` ("10m"); `spam_score_warn_per_day` (10),
/// `spam_score_flag_per_day` (50) and the engine in `[conditions.spam_engine]`: `kind` (`spamd`,
/// `rspamd`), `address`, `timeout` ("10s"), `max_size` (512 KiB).
fn read_conditions(
    r: &mut Reader<'_>,
    sec: Option<&mut Section<'_, '_>>,
) -> (operator::conditions::Settings, Option<bulk::spam::Engine>) {
    use operator::conditions::{KINDS, Policy};
    let mut settings = operator::conditions::Settings::default();
    let Some(sec) = sec else { return (settings, None) };
    let engine = r.table(sec, "spam_engine").and_then(|mut t| {
        let e = read_spam_engine(r, &mut t);
        r.deny_unknown(&t);
        e
    });
    fn policies(r: &mut Reader<'_>, sec: &mut Section<'_, '_>) -> std::collections::BTreeMap<String, Policy> {
        let mut out = std::collections::BTreeMap::new();
        for kind in KINDS {
            let key = kind.replace('-', "_");
            if let Some((s, line)) = r.string(sec, &key) {
                match Policy::parse(&s) {
                    Some(p) => {
                        out.insert(kind.to_string(), p);
                    }
                    None => r.issue(sec.child_path(&key), line, format!("{s:?}: observe, warn, defer or refuse")),
                }
            }
        }
        out
    }
    settings.policies = policies(r, sec);
    if let Some(mut per) = r.table(sec, "contract") {
        let ids = per.keys();
        for id in ids {
            if let Some(mut t) = r.table(&mut per, &id) {
                let p = policies(r, &mut t);
                r.deny_unknown(&t);
                settings.overrides.insert(id, p);
            }
        }
    }
    if let Some((a, line)) = r.string(sec, "notify") {
        if a.contains('@') && !a.contains(char::is_whitespace) {
            settings.notify = Some(a);
        } else {
            r.issue(sec.child_path("notify"), line, format!("{a:?} is not an address"));
        }
    }
    if let Some((d, line)) = r.duration(sec, "relay_test_every") {
        if d.is_zero() {
            settings.relay.every = None;
        } else if d < std::time::Duration::from_secs(3600) {
            r.issue(sec.child_path("relay_test_every"), line, "must be at least 1h (or 0s: on demand only)");
        } else {
            settings.relay.every = Some(d);
        }
    }
    if let Some((d, line)) = r.string(sec, "canary_domain") {
        if contracts::is_hostname(&d) {
            settings.relay.canary_domain = Some(d.to_ascii_lowercase());
        } else {
            r.issue(sec.child_path("canary_domain"), line, format!("{d:?} is not a domain"));
        }
    }
    if let Some((n, line)) = r.unsigned(sec, "relay_test_port") {
        match u16::try_from(n) {
            Ok(p) if p > 0 => settings.relay.sending_port = p,
            _ => r.issue(sec.child_path("relay_test_port"), line, "must be 1 to 65535"),
        }
    }
    if let Some((d, _)) = r.duration(sec, "relay_test_delay") {
        settings.relay.delay = d;
    }
    if let Some((d, line)) = r.duration(sec, "relay_test_wait") {
        if d.is_zero() || d > std::time::Duration::from_secs(3600) {
            r.issue(sec.child_path("relay_test_wait"), line, "must be more than 0s, at most 1h");
        } else {
            settings.relay.wait = d;
        }
    }
    if let Some((b, _)) = r.boolean(sec, "bulk_metering") {
        settings.bulk_metering = b;
    }
    if let Some((d, line)) = r.duration(sec, "bulk_flush") {
        if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(3600) {
            r.issue(sec.child_path("bulk_flush"), line, "must be 100ms to 1h");
        } else {
            settings.bulk_flush = d;
        }
    }
    if let Some((d, line)) = r.duration(sec, "check_every") {
        if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(86_400) {
            r.issue(sec.child_path("check_every"), line, "must be 1s to 24h");
        } else {
            settings.every = d;
        }
    }
    let th = &mut settings.thresholds;
    let mut number = |r: &mut Reader<'_>, key: &str, range: std::ops::RangeInclusive<u64>| -> Option<u64> {
        let (n, line) = r.unsigned(sec, key)?;
        if range.contains(&n) {
            Some(n)
        } else {
            r.issue(sec.child_path(key), line, format!("must be {} to {}", range.start(), range.end()));
            None
        }
    };
    if let Some(n) = number(r, "bounce_warn_percent", 1..=100) {
        th.bounce_warn = n as f64 / 100.0;
    }
    if let Some(n) = number(r, "bounce_flag_percent", 1..=100) {
        th.bounce_flag = n as f64 / 100.0;
    }
    if let Some(n) = number(r, "bounce_min_copies", 1..=1_000_000) {
        th.bounce_min_copies = n as usize;
    }
    if let Some(n) = number(r, "bounce_last_copies", 1..=1_000_000) {
        th.bounce_last_copies = n as usize;
    }
    if let Some(n) = number(r, "spam_warn_per_day", 1..=1_000_000) {
        th.spam_warn_per_day = n;
    }
    if let Some(n) = number(r, "spam_flag_per_day", 1..=1_000_000) {
        th.spam_flag_per_day = n;
    }
    if let Some(n) = number(r, "window_days", 1..=90) {
        th.window_days = n as u32;
    }
    if let Some(n) = number(r, "bulk_warn_copies", 1..=100_000_000) {
        th.bulk_warn_copies = n;
    }
    if let Some(n) = number(r, "bulk_flag_copies", 1..=100_000_000) {
        th.bulk_flag_copies = n;
    }
    if let Some(n) = number(r, "spam_score_warn_per_day", 1..=100_000_000) {
        th.spam_score_warn_per_day = n;
    }
    if let Some(n) = number(r, "spam_score_flag_per_day", 1..=100_000_000) {
        th.spam_score_flag_per_day = n;
    }
    if th.bulk_warn_copies > th.bulk_flag_copies {
        r.issue(sec.child_path("bulk_warn_copies"), sec.line(), "must not be above bulk_flag_copies");
    }
    if th.bounce_warn > th.bounce_flag {
        r.issue(sec.child_path("bounce_warn_percent"), sec.line(), "must not be above bounce_flag_percent");
    }
    if th.spam_warn_per_day > th.spam_flag_per_day {
        r.issue(sec.child_path("spam_warn_per_day"), sec.line(), "must not be above spam_flag_per_day");
    }
    if th.spam_score_warn_per_day > th.spam_score_flag_per_day {
        r.issue(sec.child_path("spam_score_warn_per_day"), sec.line(), "must not be above spam_score_flag_per_day");
    }
    r.deny_unknown(sec);
    (settings, engine)
}

/// `[conditions.spam_engine]`.
fn read_spam_engine(r: &mut Reader<'_>, t: &mut Section<'_, '_>) -> Option<bulk::spam::Engine> {
    use bulk::spam::{Engine, EngineKind};
    let kind = match r.string(t, "kind") {
        Some((k, _)) if k == "spamd" => Some(EngineKind::Spamd),
        Some((k, _)) if k == "rspamd" => Some(EngineKind::Rspamd),
        Some((k, line)) => {
            r.issue(t.child_path("kind"), line, format!("{k:?}: spamd or rspamd"));
            None
        }
        None => {
            r.issue(t.child_path("kind"), t.line(), "required: spamd or rspamd");
            None
        }
    };
    let addr = match r.string(t, "address") {
        Some((a, line)) => match a.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.issue(
                    t.child_path("address"),
                    line,
                    format!("{a:?} is not an address:port (spamd: 783, rspamd: 11333)"),
                );
                None
            }
        },
        None => {
            r.issue(t.child_path("address"), t.line(), "required: the engine's address:port");
            None
        }
    };
    let mut timeout = Duration::from_secs(10);
    if let Some((d, line)) = r.duration(t, "timeout") {
        if d.is_zero() || d > Duration::from_secs(300) {
            r.issue(t.child_path("timeout"), line, "must be more than 0s, at most 5m");
        } else {
            timeout = d;
        }
    }
    let mut max_size = 512 * 1024;
    if let Some((n, line)) = r.unsigned(t, "max_size") {
        if (1024..=64 * 1024 * 1024).contains(&n) {
            max_size = n as usize;
        } else {
            r.issue(t.child_path("max_size"), line, "must be 1024 to 67108864 bytes");
        }
    }
    Some(Engine { kind: kind?, addr: addr?, timeout, max_size })
}

/// `[admin]`: `enabled` (default true), `listen` (default `127.0.0.1:8025`), which must not be
/// one of the SMTP addresses; `tls` (needs `[smtp.tls]`), `max_connections`, `header_timeout`,
/// `advertise`.
fn read_admin(r: &mut Reader<'_>, sec: Option<&mut Section<'_, '_>>, smtp: &SmtpConfig) -> AdminConfig {
    let mut cfg = AdminConfig::default();
    let Some(sec) = sec else { return cfg };
    if let Some((b, _)) = r.boolean(sec, "enabled") {
        cfg.enabled = b;
    }
    if let Some((s, line)) = r.string(sec, "listen") {
        match s.parse::<std::net::SocketAddr>() {
            Ok(a)
                if smtp.listen.iter().any(|l| {
                    l.port() == a.port()
                        && a.port() != 0
                        && (l.ip() == a.ip() || l.ip().is_unspecified() || a.ip().is_unspecified())
                }) =>
            {
                r.issue(
                    sec.child_path("listen"),
                    line,
                    format!("{a} is an SMTP address ([smtp] listen): the admin listener needs its own"),
                )
            }
            Ok(a) => cfg.listen = a,
            Err(_) => r.issue(
                sec.child_path("listen"),
                line,
                format!("{s:?} is not an address:port (like \"127.0.0.1:8025\")"),
            ),
        }
    }
    if let Some((b, line)) = r.boolean(sec, "tls") {
        if b && smtp.tls.is_none() {
            r.issue(sec.child_path("tls"), line, "needs a certificate: set [smtp.tls] cert and key");
        }
        cfg.tls = b;
    }
    if let Some((n, line)) = r.unsigned(sec, "max_connections") {
        match usize::try_from(n) {
            Ok(n) if (1..=100_000).contains(&n) => cfg.max_connections = n,
            _ => r.issue(sec.child_path("max_connections"), line, "must be 1 to 100000"),
        }
    }
    if let Some((b, _)) = r.boolean(sec, "bound_tokens_read_log") {
        cfg.bound_tokens_read_log = b;
    }
    if let Some((b, _)) = r.boolean(sec, "metrics_by_contract") {
        cfg.metrics_by_contract = b;
    }
    if let Some((d, line)) = r.duration(sec, "header_timeout") {
        if d.is_zero() || d > std::time::Duration::from_secs(300) {
            r.issue(sec.child_path("header_timeout"), line, "must be more than 0 and at most 5 minutes");
        } else {
            cfg.header_timeout = d;
        }
    }
    if let Some((u, line)) = r.string(sec, "advertise") {
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && !u.contains(char::is_whitespace)
            && u.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
        if ok {
            cfg.advertise = Some(u.trim_end_matches('/').to_string());
        } else {
            r.issue(sec.child_path("advertise"), line, format!("{u:?} is not an http:// or https:// URL"));
        }
    }
    r.deny_unknown(sec);
    cfg
}

/// `[operator] timezone` (an IANA zone; Asia/Tokyo by default).
fn read_operator(r: &mut Reader<'_>, sec: Option<&mut Section<'_, '_>>) -> contracts::Calendar {
    let Some(sec) = sec else { return contracts::Calendar::default() };
    let calendar = match r.string(sec, "timezone") {
        None => contracts::Calendar::default(),
        Some((name, line)) => contracts::Calendar::named(&name).unwrap_or_else(|why| {
            r.issue(sec.child_path("timezone"), line, why);
            contracts::Calendar::default()
        }),
    };
    r.deny_unknown(sec);
    calendar
}

/// `[billing]`: `issuer`, `registration_number`, `rounding`, and `[[billing.price_table]]`
/// versions (`name`, `effective_from`, `min_term_months`, `early_termination_fee` in yen or
/// `early_termination = "remaining_min_term"`, `early_termination_tax`, `proration`, and
/// `[[billing.price_table.tier]]` ranges).
fn read_billing(r: &mut Reader<'_>, sec: Option<&mut Section<'_, '_>>) -> BillingConfig {
    let Some(sec) = sec else { return BillingConfig::default() };
    let mut cfg = BillingConfig { issuer: r.string(sec, "issuer").map(|(s, _)| s), ..Default::default() };
    if let Some((n, line)) = r.string(sec, "registration_number") {
        if n.len() == 14 && n.starts_with('T') && n[1..].bytes().all(|b| b.is_ascii_digit()) {
            cfg.registration_number = Some(n);
        } else {
            r.issue(sec.child_path("registration_number"), line, "must be T followed by 13 digits");
        }
    }
    if let Some((v, line)) = r.string(sec, "rounding") {
        match v.as_str() {
            "floor" => cfg.rounding = rating::Rounding::Floor,
            "half_up" => cfg.rounding = rating::Rounding::HalfUp,
            "ceil" => cfg.rounding = rating::Rounding::Ceil,
            _ => r.issue(sec.child_path("rounding"), line, "must be \"floor\", \"half_up\" or \"ceil\""),
        }
    }
    for mut t in r.tables(sec, "price_table") {
        let name = match r.string(&mut t, "name") {
            None => rating::PriceBook::DEFAULT.to_string(),
            Some((n, line)) => {
                let ok = !n.is_empty()
                    && n.len() <= 64
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    r.issue(t.child_path("name"), line, "must be 1-64 letters, digits, '.', '_' or '-'");
                }
                n
            }
        };
        if let Some(v) = read_price_table(r, &mut t) {
            let versions = cfg.tables.tables.entry(name.clone()).or_default();
            if versions.versions.iter().any(|(day, _)| *day == v.0) {
                r.issue(
                    t.child_path("effective_from"),
                    t.line(),
                    format!("price table {name:?} already has a version taking effect on {}", v.0),
                );
            } else {
                versions.versions.push(v);
            }
        }
        r.deny_unknown(&t);
    }
    r.deny_unknown(sec);
    cfg
}

fn read_price_table(r: &mut Reader<'_>, t: &mut Section<'_, '_>) -> Option<(chrono::NaiveDate, rating::PriceTable)> {
    let effective = match r.string(t, "effective_from") {
        None => {
            r.issue(t.child_path("effective_from"), t.line(), "missing (the day this table takes effect)");
            None
        }
        Some((s, line)) => s.parse::<chrono::NaiveDate>().ok().or_else(|| {
            r.issue(t.child_path("effective_from"), line, format!("{s:?} is not a date (YYYY-MM-DD)"));
            None
        }),
    };
    let min_term_months = r.unsigned(t, "min_term_months").map_or(1, |(n, _)| u32::try_from(n).unwrap_or(u32::MAX));
    let yen = |n: u64| rating::Yen::try_from(n).unwrap_or(rating::Yen::MAX);
    let mut early_termination = rating::EarlyTermination::Fixed(0);
    if let Some((n, _)) = r.unsigned(t, "early_termination_fee") {
        early_termination = rating::EarlyTermination::Fixed(yen(n));
    }
    if let Some((v, line)) = r.string(t, "early_termination") {
        if v == "remaining_min_term" && !t.has("early_termination_fee") {
            early_termination = rating::EarlyTermination::RemainingMinTerm;
        } else {
            r.issue(
                t.child_path("early_termination"),
                line,
                "must be \"remaining_min_term\" (or give early_termination_fee, not both)",
            );
        }
    }
    let mut early_termination_tax = rating::TaxCategory::NonTaxable;
    if let Some((v, line)) = r.string(t, "early_termination_tax") {
        match v.as_str() {
            "non_taxable" => {}
            "standard" => early_termination_tax = rating::TaxCategory::Standard,
            _ => r.issue(t.child_path("early_termination_tax"), line, "must be \"non_taxable\" or \"standard\""),
        }
    }
    let mut proration = rating::Proration::None;
    if let Some((v, line)) = r.string(t, "proration") {
        match v.as_str() {
            "none" => {}
            "daily" => proration = rating::Proration::Daily,
            _ => r.issue(t.child_path("proration"), line, "must be \"none\" or \"daily\""),
        }
    }
    let mut tiers = Vec::new();
    for mut tier in r.tables(t, "tier") {
        let min = r.unsigned(&mut tier, "min_accounts").map(|(n, _)| u32::try_from(n).unwrap_or(u32::MAX));
        let max = r.unsigned(&mut tier, "max_accounts").map(|(n, _)| u32::try_from(n).unwrap_or(u32::MAX));
        let fee = r.unsigned(&mut tier, "monthly_fee").map(|(n, _)| yen(n));
        match (min, fee) {
            (Some(min_accounts), Some(monthly_fee)) => {
                tiers.push(rating::Tier { min_accounts, max_accounts: max, monthly_fee })
            }
            _ => r.issue(tier.child_path("monthly_fee"), tier.line(), "a tier needs min_accounts and monthly_fee"),
        }
        r.deny_unknown(&tier);
    }
    let table = rating::PriceTable { tiers, min_term_months, early_termination, early_termination_tax, proration };
    let errors = table.validate();
    for e in &errors {
        r.issue(t.child_path("tier"), t.line(), e.to_string());
    }
    Some((effective?, table)).filter(|_| errors.is_empty())
}

/// A node name: what `node_id` may be.
fn is_node_name(n: &str) -> bool {
    (1..=253).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `[node]`: `id` (0–65535; without it, a stable hash of the node's name, FNV-1a in 16 bits),
/// `heartbeat` and `down_after`.
fn read_node(r: &mut Reader<'_>, mut sec: Option<&mut Section<'_, '_>>, name: &str) -> (u16, Duration, Duration) {
    let derived = {
        let h =
            name.to_ascii_lowercase().bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        ((h >> 16) ^ (h & 0xffff)) as u16
    };
    let heartbeat = duration(r, sec.as_deref_mut(), "heartbeat", Duration::from_secs(5));
    let Some(sec) = sec else { return (derived, heartbeat, Duration::from_secs(30)) };
    let down_after = match r.duration(sec, "down_after") {
        None => Duration::from_secs(30).max(heartbeat * 3),
        Some((d, line)) if d <= heartbeat => {
            r.issue(sec.child_path("down_after"), line, "must be longer than node.heartbeat");
            heartbeat * 3
        }
        Some((d, _)) => d,
    };
    let id = match r.unsigned(sec, "id") {
        None => derived,
        Some((n, line)) => u16::try_from(n).unwrap_or_else(|_| {
            r.issue(sec.child_path("id"), line, "must be 0 to 65535");
            derived
        }),
    };
    r.deny_unknown(sec);
    (id, heartbeat, down_after)
}

/// `reserved_connections`: a tenth of `max_connections` by default; fewer than all of them.
fn reserved(r: &mut Reader<'_>, sec: Option<&mut Section<'_, '_>>, max: usize) -> usize {
    let default = (max / 10).max(1).min(max - 1);
    let Some(sec) = sec else { return default };
    match r.unsigned(sec, "reserved_connections") {
        None => default,
        Some((n, _)) if (n as usize) < max => n as usize,
        Some((_, line)) => {
            r.issue(sec.child_path("reserved_connections"), line, "must be less than max_connections");
            default
        }
    }
}

fn read_delivery(r: &mut Reader<'_>, mut sec: Option<&mut Section<'_, '_>>, hostname: &str) -> DeliveryConfig {
    let mut routes = BTreeMap::new();
    let mut nameservers = Vec::new();
    let mut helo_name = hostname.to_string();
    let mut starttls = true;
    let mut smtp_port = 25;
    let mut dns_timeout = Duration::from_secs(5);
    if let Some(s) = sec.as_deref_mut() {
        if let Some(rt) = r.table(s, "routes") {
            for (domain, hop, line) in r.string_map(&rt) {
                let d = domain.to_ascii_lowercase();
                if !contracts::is_hostname(&d) {
                    r.issue(rt.child_path(&domain), line, format!("{domain:?} is not a domain name"));
                    continue;
                }
                match NextHop::parse(&hop) {
                    Ok(h) => {
                        routes.insert(d, h);
                    }
                    Err(why) => r.issue(rt.child_path(&domain), line, why),
                }
            }
        }
        if let Some(mut dns) = r.table(s, "dns") {
            for (ns, line) in r.strings(&mut dns, "nameservers").unwrap_or_default() {
                let parsed =
                    ns.parse::<SocketAddr>().or_else(|_| ns.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
                match parsed {
                    Ok(a) => nameservers.push(a),
                    Err(_) => r.issue(
                        dns.child_path("nameservers"),
                        line,
                        format!("{ns:?} is not an IP address or address:port"),
                    ),
                }
            }
            dns_timeout = duration(r, Some(&mut dns), "timeout", dns_timeout);
            r.deny_unknown(&dns);
        }
        if let Some((h, line)) = r.string(s, "helo_name") {
            if contracts::is_hostname(&h) {
                helo_name = h;
            } else {
                r.issue(s.child_path("helo_name"), line, format!("{h:?} is not a host name"));
            }
        }
        if let Some((b, _)) = r.boolean(s, "starttls") {
            starttls = b;
        }
        smtp_port = positive(r, Some(s), "smtp_port", 25u16);
    }
    let cfg = DeliveryConfig {
        queue_lifetime: duration(r, sec.as_deref_mut(), "queue_lifetime", Duration::from_secs(86_400)),
        retry_min: duration(r, sec.as_deref_mut(), "retry_min", Duration::from_secs(300)),
        retry_max: duration(r, sec.as_deref_mut(), "retry_max", Duration::from_secs(3600)),
        workers: positive(r, sec.as_deref_mut(), "workers", 64),
        per_destination: positive(r, sec.as_deref_mut(), "per_destination", 20),
        connect_timeout: duration(r, sec.as_deref_mut(), "connect_timeout", Duration::from_secs(30)),
        command_timeout: duration(r, sec.as_deref_mut(), "command_timeout", Duration::from_secs(300)),
        data_timeout: duration(r, sec.as_deref_mut(), "data_timeout", Duration::from_secs(600)),
        idle_timeout: duration(r, sec.as_deref_mut(), "idle_timeout", Duration::from_secs(10)),
        dead_host_ttl: duration(r, sec.as_deref_mut(), "dead_host_ttl", Duration::from_secs(60)),
        smtp_port,
        helo_name,
        starttls,
        routes,
        nameservers,
        dns_timeout,
    };
    if let Some(s) = sec {
        if cfg.retry_min > cfg.retry_max {
            // the line of whichever of the two the file sets
            let line = [r.duration(s, "retry_min"), r.duration(s, "retry_max")]
                .into_iter()
                .flatten()
                .map(|(_, line)| line)
                .next()
                .unwrap_or_else(|| s.line());
            r.issue(s.child_path("retry_min"), line, "must not be larger than retry_max");
        }
        r.deny_unknown(s);
    }
    cfg
}

/// `[store]`: the database URL several nodes share, checked for a backend the stores speak.
fn read_store(r: &mut Reader<'_>, sec: Option<&mut Section<'_, '_>>) -> Option<String> {
    let sec = sec?;
    let url = r.string(sec, "url").and_then(|(url, line)| match store::Backend::of(&url) {
        Some(_) => Some(url),
        None => {
            r.issue(sec.child_path("url"), line, "must be a postgres:// (or sqlite://) database URL");
            None
        }
    });
    r.deny_unknown(sec);
    url
}

fn read_contracts(r: &mut Reader<'_>, mut sec: Option<&mut Section<'_, '_>>, data_dir: &Path) -> ContractsConfig {
    let mut database = data_dir.join("mxshield.db");
    if let Some(s) = sec.as_deref_mut()
        && let Some((p, _)) = r.string(s, "database")
    {
        database = p.into();
    }
    let cfg = ContractsConfig {
        url: format!("sqlite://{}?mode=rwc", database.display()),
        reload_interval: sec.as_deref_mut().and_then(|s| match r.duration(s, "reload_interval") {
            Some((d, line)) if d.is_zero() => {
                r.issue(s.child_path("reload_interval"), line, "must be longer than zero");
                None
            }
            got => got.map(|(d, _)| d),
        }),
    };
    if let Some(s) = sec {
        r.deny_unknown(s);
    }
    cfg
}

fn read_signatures(r: &mut Reader<'_>, mut sec: Option<&mut Section<'_, '_>>) -> sigupdate::updater::UpdateConfig {
    let d = sigupdate::updater::UpdateConfig::default();
    let mut cfg = sigupdate::updater::UpdateConfig {
        check_every: duration(r, sec.as_deref_mut(), "check_every", d.check_every),
        max_age: duration(r, sec.as_deref_mut(), "max_age", d.max_age),
        ..d
    };
    let Some(s) = sec else { return cfg };
    if let Some((text, line)) = r.string(s, "source") {
        match sigupdate::source::Source::parse(&text) {
            Ok(src) => cfg.source = Some(src),
            Err(why) => r.issue(s.child_path("source"), line, why),
        }
    }
    for (key, line) in r.strings(s, "trusted_keys").unwrap_or_default() {
        match sigupdate::keys::PublicKey::parse(&key) {
            Ok(k) => cfg.trusted.push(k),
            Err(why) => r.issue(s.child_path("trusted_keys"), line, why.to_string()),
        }
    }
    if cfg.source.is_some() && cfg.trusted.is_empty() {
        r.issue(s.child_path("trusted_keys"), s.line(), "a source needs at least one trusted key");
    }
    r.deny_unknown(s);
    cfg
}

fn read_scan(r: &mut Reader<'_>, mut sec: Option<&mut Section<'_, '_>>) -> ScanConfig {
    let d = scan::Limits::default();
    let mut signatures = None;
    let mut clamd = None;
    if let Some(s) = sec.as_deref_mut() {
        if let Some((p, line)) = r.string(s, "signatures") {
            if p.trim().is_empty() {
                r.issue(s.child_path("signatures"), line, "must be a directory of signature databases");
            } else {
                signatures = Some(PathBuf::from(p));
            }
        }
        let address = r.string(s, "clamd");
        match r.string(s, "engine") {
            None => {}
            Some((e, _)) if e == "builtin" => {}
            Some((e, line)) if e == "clamd" => match &address {
                Some((a, aline)) => match scan::clamd::ClamdAddr::parse(a) {
                    Ok(addr) => clamd = Some(addr),
                    Err(why) => r.issue(s.child_path("clamd"), *aline, why),
                },
                None => r.issue(
                    s.child_path("clamd"),
                    line,
                    "engine = \"clamd\" needs clamd = \"host:port\" or a socket path",
                ),
            },
            Some((e, line)) => r.issue(s.child_path("engine"), line, format!("{e:?} is not \"builtin\" or \"clamd\"")),
        }
    }
    let limits = scan::Limits {
        max_expanded: positive(r, sec.as_deref_mut(), "max_expanded", d.max_expanded),
        max_depth: positive(r, sec.as_deref_mut(), "max_depth", d.max_depth),
        max_entries: positive(r, sec.as_deref_mut(), "max_entries", d.max_entries),
        max_ratio: positive(r, sec.as_deref_mut(), "max_ratio", d.max_ratio),
        max_time: duration(r, sec.as_deref_mut(), "max_time", d.max_time),
    };
    let clamd_timeout = duration(r, sec.as_deref_mut(), "clamd_timeout", Duration::from_secs(60));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let max_concurrent = positive(r, sec.as_deref_mut(), "max_concurrent", cpus);
    let max_memory = positive(r, sec.as_deref_mut(), "max_memory", 1_000_000_000u64);
    let pua = sec.as_deref_mut().and_then(|s| r.boolean(s, "detect_pua")).is_some_and(|(b, _)| b);
    if let Some(s) = sec {
        r.deny_unknown(s);
    }
    let load = scan::sigdb::LoadOptions { pua };
    ScanConfig { signatures, limits, clamd, clamd_timeout, max_concurrent, max_memory, load }
}

fn read_warnings(r: &mut Reader<'_>, sec: Option<&mut Section<'_, '_>>) -> WarningsConfig {
    let mut cfg = WarningsConfig { enabled: true, charset: filter::notify::Charset::Utf8, templates: None };
    let Some(s) = sec else { return cfg };
    if let Some((b, _)) = r.boolean(s, "enabled") {
        cfg.enabled = b;
    }
    if let Some((c, line)) = r.string(s, "charset") {
        match filter::notify::Charset::parse(&c) {
            Some(c) => cfg.charset = c,
            None => r.issue(s.child_path("charset"), line, format!("{c:?} is not \"utf-8\" or \"iso-2022-jp\"")),
        }
    }
    if let Some((d, line)) = r.string(s, "templates") {
        if Path::new(&d).is_dir() {
            cfg.templates = Some(d.into());
        } else {
            r.issue(s.child_path("templates"), line, format!("{d:?} is not a directory"));
        }
    }
    r.deny_unknown(s);
    cfg
}

/// `[log]`; `shared`: the PostgreSQL URL of `[store]`, where the message log then is.
fn read_log(
    r: &mut Reader<'_>,
    mut sec: Option<&mut Section<'_, '_>>,
    data_dir: &Path,
    shared: Option<&str>,
) -> LogConfig {
    let mut cfg = LogConfig {
        level: "info".into(),
        json: false,
        message_log: msglog::LogLocation::File(data_dir.join("messages.db")),
        retention: duration(r, sec.as_deref_mut(), "retention", Duration::from_secs(90 * 86_400)),
    };
    let journal_max = positive(r, sec.as_deref_mut(), "journal_max", 256u64 << 20);
    if let Some(url) = shared {
        cfg.message_log = msglog::LogLocation::Shared {
            url: url.to_string(),
            journal: data_dir.join("msglog-journal.db"),
            journal_max,
        };
    }
    let Some(s) = sec else { return cfg };
    if let Some((p, line)) = r.string(s, "message_log") {
        match &cfg.message_log {
            msglog::LogLocation::File(_) => cfg.message_log = msglog::LogLocation::File(p.into()),
            msglog::LogLocation::Shared { .. } => r.issue(
                s.child_path("message_log"),
                line,
                "with a shared [store] url the message log is in that database",
            ),
        }
    }
    if let Some((level, line)) = r.string(s, "level") {
        if ["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            cfg.level = level;
        } else {
            r.issue(s.child_path("level"), line, format!("{level:?} is not one of error, warn, info, debug, trace"));
        }
    }
    if let Some((format, line)) = r.string(s, "format") {
        match format.as_str() {
            "text" => cfg.json = false,
            "json" => cfg.json = true,
            _ => r.issue(s.child_path("format"), line, format!("{format:?} is not \"text\" or \"json\"")),
        }
    }
    r.deny_unknown(s);
    cfg
}

/// This machine's host name (for the greeting when none is configured).
fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if contracts::is_hostname(&name) { name } else { "localhost".into() }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
