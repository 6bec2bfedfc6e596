//! This node among several: its heartbeat into the node registry, and `mxshield nodes`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use contracts::LiveContracts;
use store::nodes::{NodeStatus, Registry};
use tokio::sync::watch;

use crate::config::Config;

/// What the heartbeat reads from the running node.
pub struct Running {
    pub contracts: LiveContracts,
    pub scanner: filter::LiveScanner,
    pub delivery: Arc<delivery::DeliveryContext>,
    /// When the scanner in use was put in use (Unix seconds), for a database not from a release.
    pub loaded_at: &'static std::sync::atomic::AtomicI64,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Writes this node's heartbeat every `[node] heartbeat` until shutdown (and once more as it
/// stops, so that a node stopped on purpose shows its last state). The registry is reached
/// lazily: a database that is away only delays heartbeats, logged when it starts and ends.
pub fn start_heartbeat(
    config: &Config,
    running: Running,
    admin: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let url = config.contracts.url.clone();
    let every = config.heartbeat;
    let id = config.node_name.clone();
    let address = config.smtp.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
    // opened once: each heartbeat reads only its status file
    let releases = config
        .signatures
        .source
        .is_some()
        .then(|| sigupdate::store::Store::open(&config.signatures_dir()).ok())
        .flatten();
    let started = now();
    let policy = policy_fingerprint(config);
    tokio::spawn(async move {
        let mut registry: Option<Registry> = None;
        let mut failing = false;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.wait_for(|v| *v) => true,
            };
            let mut status = status(&id, &address, started, &running, releases.as_ref());
            status.policy.clone_from(&policy);
            status.admin = admin.clone().unwrap_or_default();
            let written = async {
                if registry.is_none() {
                    registry = Some(Registry::connect(&url).await?);
                }
                registry.as_ref().expect("just connected").beat(&status).await
            };
            match tokio::time::timeout(every.max(Duration::from_secs(2)), written).await {
                Ok(Ok(())) if failing => {
                    failing = false;
                    tracing::info!(event = "heartbeat_restored");
                }
                Ok(Ok(())) => {}
                Ok(Err(e)) if !failing => {
                    failing = true;
                    tracing::warn!(event = "heartbeat_failed", error = %e, "the node registry cannot be written");
                }
                Err(_) if !failing => {
                    failing = true;
                    tracing::warn!(
                        event = "heartbeat_failed",
                        error = "no answer",
                        "the node registry cannot be written"
                    );
                }
                _ => {}
            }
            if stopping {
                break;
            }
        }
    })
}

fn status(
    id: &str,
    address: &str,
    started: i64,
    r: &Running,
    releases: Option<&sigupdate::store::Store>,
) -> NodeStatus {
    let (queue_active, queue_deferred) = r.delivery.queue_size.get();
    let contracts = r.contracts.get();
    let scanner = r.scanner.load();
    let release = releases.map(|s| s.status()).filter(|s| s.version.is_some());
    let (signatures, signatures_at) = match release {
        Some(s) if Some(scanner.version()) == s.version.map(sigupdate::release::version_label) => {
            (scanner.version(), s.created)
        }
        _ => (scanner.version(), r.loaded_at.load(std::sync::atomic::Ordering::Relaxed)),
    };
    NodeStatus {
        id: id.to_string(),
        address: address.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        signatures,
        signatures_at,
        contracts_generation: contracts.generation,
        contracts_stale: r.contracts.is_stale(),
        queue_active,
        queue_deferred,
        queue_oldest_deferred: r.delivery.queue_size.oldest_deferred() as i64,
        admin: String::new(),
        started,
        heartbeat: now(),
        // set by the heartbeat, from the configuration
        policy: String::new(),
    }
}

/// A fingerprint (FNV-1a, 64 bits, in hex) of the settings that decide what a node accepts:
/// size, line and recipient limits, loop detection, the engine, its limits and databases, the
/// scan budget. Equal on nodes configured alike; a node whose fingerprint differs from the
/// others' would accept or refuse other mail.
pub fn policy_fingerprint(config: &Config) -> String {
    let s = &config.smtp;
    let scan = &config.scan;
    let text = format!(
        "size={} rcpts={} line={} hops={} engine={} db={:?} limits={:?} load={:?} max_time={:?}",
        s.max_message_size,
        s.max_recipients,
        s.max_line_length,
        s.max_received_headers,
        if scan.clamd.is_some() { "clamd" } else { "builtin" },
        scan.signatures,
        scan.limits,
        scan.load,
        scan.limits.max_time,
    );
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The release number of a `release-N` label.
pub use store::nodes::state;

/// Reaches the shared database and brings every schema a node uses up to date (contracts,
/// message log, node registry): what `check-config` checks.
pub async fn check_shared(config: &Config) -> anyhow::Result<()> {
    contracts::Store::connect(&config.contracts.url).await?;
    msglog::LogStore::open_at(&config.log.message_log).await?;
    Registry::connect(&config.contracts.url).await?;
    Ok(())
}

/// `mxshield nodes`: every node of the registry, with its state.
pub async fn list(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::connect(&config.contracts.url).await?;
    let nodes = registry.list().await?;
    let now = now();
    if json {
        let rows: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "id": n.id, "address": n.address, "version": n.version, "state": state(n, &nodes, config.down_after, now),
                    "signatures": n.signatures, "signatures_at": n.signatures_at,
                    "contracts_generation": n.contracts_generation, "contracts_stale": n.contracts_stale,
                    "queue_active": n.queue_active, "queue_deferred": n.queue_deferred,
                    "started": n.started, "heartbeat": n.heartbeat, "policy": n.policy,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if nodes.is_empty() {
        println!("no node has written a heartbeat yet");
        return Ok(ExitCode::SUCCESS);
    }
    let ago = |t: i64| {
        if t == 0 {
            "-".to_string()
        } else {
            format!("{} ago", humantime::format_duration(Duration::from_secs((now - t).max(0) as u64)))
        }
    };
    let rows: Vec<[String; 9]> = nodes
        .iter()
        .map(|n| {
            [
                n.id.clone(),
                state(n, &nodes, config.down_after, now).to_string(),
                n.address.clone(),
                n.version.clone(),
                format!("{} ({})", n.signatures, ago(n.signatures_at)),
                format!("{}{}", n.contracts_generation, if n.contracts_stale { " (stale)" } else { "" }),
                format!("{}/{}", n.queue_active, n.queue_deferred),
                ago(n.heartbeat),
                n.policy.get(..8).unwrap_or(&n.policy).to_string(),
            ]
        })
        .collect();
    let head =
        ["NODE", "STATE", "ADDRESS", "VERSION", "SIGNATURES (AGE)", "CONTRACTS", "QUEUE A/D", "HEARTBEAT", "POLICY"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let s: Vec<String> = cells.iter().zip(width).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(&head.map(String::from));
    for r in &rows {
        line(r);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, heartbeat: i64, signatures: &str, generation: i64) -> NodeStatus {
        NodeStatus {
            id: id.into(),
            heartbeat,
            signatures: signatures.into(),
            contracts_generation: generation,
            ..Default::default()
        }
    }

    #[test]
    fn a_node_is_down_behind_stale_or_up() {
        let all = [
            node("mx1", 1000, "release-8", 4),
            node("mx2", 995, "release-7", 4),
            node("mx3", 900, "release-9", 5),
            node("mx4", 1000, "release-8", 3),
        ];
        let d = Duration::from_secs(30);
        // mx3 is down: its newer release and generation do not make the others lag
        assert_eq!(state(&all[0], &all, d, 1000), "up");
        assert_eq!(state(&all[1], &all, d, 1000), "behind");
        assert_eq!(state(&all[2], &all, d, 1000), "down");
        assert_eq!(state(&all[3], &all, d, 1000), "behind");
        let mut stale = all[0].clone();
        stale.contracts_stale = true;
        assert_eq!(state(&stale, &all, d, 1000), "stale");
        // a node configured unlike the others
        let mut lenient = all.clone();
        lenient[1].policy = "more-lenient".into();
        assert_eq!(state(&lenient[1], &lenient, d, 1000), "differs");
        assert_eq!(state(&lenient[0], &lenient, d, 1000), "up");
        // two nodes, two policies: both are shown, neither is known to be right
        let two =
            [node("mx1", 1000, "release-8", 4), NodeStatus { policy: "x".into(), ..node("mx2", 1000, "release-8", 4) }];
        assert_eq!((state(&two[0], &two, d, 1000), state(&two[1], &two, d, 1000)), ("differs", "differs"));
    }
}
