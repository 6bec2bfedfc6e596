//! `mxshield conditions …`: the measured conditions of use, the operator's handling of a
//! finding (acknowledge, clear) and the open-relay probe on demand.

use std::process::ExitCode;

use operator::conditions::{Finding, Handling, KINDS};
use operator::relay_probe::{self, ProbeSettings};
use operator::store::AdminStore;

use crate::cli::operator;
use crate::config::Config;

/// `conditions [--contract ID] [--json]`: each contract's measured facts, with the counts, the
/// window, the thresholds applied and where the operator's handling stands.
pub async fn list(config: &Config, contract: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now().timestamp();
    let store = AdminStore::connect(&config.contracts.url).await?;
    let findings = operator(config).conditions(contract, &config.conditions.thresholds, &store, now).await?;
    if json {
        let items: Vec<serde_json::Value> = findings.iter().map(finding_json).collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "findings": items }))?);
        return Ok(ExitCode::SUCCESS);
    }
    if findings.is_empty() {
        println!(
            "nothing measured: no outbound mail in the last {} days, no relay probe",
            config.conditions.thresholds.window_days
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<16} {:<16} {:<11} {:<13} COUNTS (WINDOW; THRESHOLD)", "CONTRACT", "KIND", "LEVEL", "STATE");
    for f in &findings {
        let counts: Vec<String> = f
            .counts
            .iter()
            .map(|(k, v)| if k.starts_with("rate") { format!("{k}={:.1}%", v * 100.0) } else { format!("{k}={v}") })
            .collect();
        let level = serde_json::to_value(f.level)?.as_str().unwrap_or("").to_string();
        println!(
            "{:<16} {:<16} {:<11} {:<13} {} ({}; {})",
            f.contract,
            f.kind,
            level,
            f.state.as_str(),
            counts.join(" "),
            f.window,
            f.threshold
        );
        if let (Some(first), Some(last)) = (when(f.first_seen), when(f.last_seen)) {
            println!("{:<59} first seen {first}, last seen {last}", "");
        }
        for e in &f.evidence {
            println!("{:<59} {e}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn when(t: Option<i64>) -> Option<String> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn finding_json(f: &Finding) -> serde_json::Value {
    let counts: serde_json::Map<String, serde_json::Value> =
        f.counts.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
    serde_json::json!({
        "contract": f.contract, "kind": f.kind, "level": f.level, "state": f.state, "window": f.window,
        "counts": counts, "threshold": f.threshold,
        "first_seen": when(f.first_seen), "last_seen": when(f.last_seen),
        "acknowledged_at": when(f.acknowledged_at), "cleared_at": when(f.cleared_at), "evidence": f.evidence,
    })
}

/// `conditions acknowledge|clear CONTRACT KIND`; audited.
pub async fn handle(
    config: &Config,
    how: Handling,
    contract: &str,
    kind: &str,
    actor: &str,
) -> anyhow::Result<ExitCode> {
    if !KINDS.contains(&kind) {
        eprintln!("{kind:?}: the kinds are {}", KINDS.join(", "));
        return Ok(ExitCode::from(2));
    }
    let (contracts, _, _) = operator(config).contracts().await?;
    if !contracts.iter().any(|c| c.id == contract) {
        eprintln!("no contract {contract:?}");
        return Ok(ExitCode::from(2));
    }
    let store = AdminStore::connect(&config.contracts.url).await?;
    store.handle_finding(contract, kind, how, actor, "cli", "").await?;
    let said = match how {
        Handling::Clear => "measured from now on (a running gateway applies it at its next check)",
        Handling::Acknowledge => "acknowledged (it stays open until cleared)",
    };
    println!("{kind} of {contract}: {said}");
    Ok(ExitCode::SUCCESS)
}

/// The probe's settings from the configuration.
pub fn probe_settings(config: &Config) -> ProbeSettings {
    let relay = &config.conditions.relay;
    ProbeSettings {
        helo: config.smtp.hostname.clone(),
        canary_domain: relay.canary_domain.clone().unwrap_or_else(|| config.smtp.hostname.clone()),
        sending_port: relay.sending_port,
        wait: relay.wait,
        timeouts: smtp::client::ClientTimeouts {
            connect: std::time::Duration::from_secs(10),
            command: std::time::Duration::from_secs(30),
            data_end: std::time::Duration::from_secs(60),
        },
        node: config.node_name.clone(),
    }
}

/// `conditions relay-test CONTRACT [--json]`: probes each of the contract's registered servers
/// now; the canaries arrive at a running gateway (any node), which records them. Exit status 1
/// when a server relayed its canary (an open relay, proven).
pub async fn relay_test(config: &Config, contract: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (contracts, _, _) = operator(config).contracts().await?;
    let Some(c) = contracts.iter().find(|c| c.id == contract) else {
        eprintln!("no contract {contract:?}");
        return Ok(ExitCode::from(2));
    };
    let settings = probe_settings(config);
    let (targets, skipped) = relay_probe::targets(c, settings.sending_port).await;
    let store = AdminStore::connect(&config.contracts.url).await?;
    if !json {
        println!(
            "probing {} server(s) of {contract}: a message from {} to a canary at {}, waiting up to {} for it",
            targets.len(),
            format_args!("relay-probe@{}", settings.canary_domain),
            settings.canary_domain,
            humantime::format_duration(settings.wait)
        );
    }
    let probes = relay_probe::run(&store, contract, &targets, &settings).await?;
    let open = probes.iter().filter(|p| p.arrived_at.is_some()).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "probes": probes, "skipped": skipped }))?);
    } else {
        for p in &probes {
            let verdict = match (p.outcome.as_str(), p.arrived_at) {
                (_, Some(_)) => "OPEN RELAY: the canary arrived".to_string(),
                ("accepted", None) => "took the message for relaying; the canary has not arrived".to_string(),
                ("refused", _) => "refused to relay".to_string(),
                (o, _) => o.to_string(),
            };
            println!("\n{}: {verdict}", p.server);
            for line in p.transcript.lines() {
                println!("  {line}");
            }
            if let Some(from) = &p.arrived_from {
                println!("  -- the canary arrived from {from}");
            }
        }
        for s in &skipped {
            println!("\nnot probed: {s}");
        }
    }
    Ok(if open > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
