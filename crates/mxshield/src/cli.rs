//! The administrative commands: `contracts apply|list` and `queue list|show|flush|delete`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use contracts::Store;
use spool::{QueueId, RcptState, Spool};

use crate::config::Config;
use msglog::{DeliveryRecord, LogStore};
use spool::attrs;

/// `contracts apply FILE`: validate the whole file, then store it.
pub async fn contracts_apply(config: &Config, file: &Path) -> anyhow::Result<ExitCode> {
    let src = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let contracts = match contracts::parse_file(&src) {
        Ok(c) => c,
        Err(issues) => {
            eprintln!("mxshield: {} is not valid; nothing was changed:", file.display());
            for i in &issues.0 {
                eprintln!("  {}:{i}", file.display());
            }
            return Ok(ExitCode::from(2));
        }
    };
    std::fs::create_dir_all(&config.data_dir).ok();
    let store = Store::open(&config.contracts.database).await?;
    let generation = store.apply(&contracts).await?;
    let domains: usize = contracts.iter().map(|c| c.domains.len()).sum();
    println!("applied {} contracts ({domains} domains), generation {generation}", contracts.len());
    Ok(ExitCode::SUCCESS)
}

/// `contracts list`.
pub async fn contracts_list(config: &Config) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.contracts.database).await?;
    let (contracts, generation) = store.load().await?;
    let today = Utc::now().date_naive();
    println!(
        "{:<16} {:<24} {:>9} {:<10} {:<10} {:<8} DOMAINS",
        "ID", "CUSTOMER", "ACCOUNTS", "STARTS", "ENDS", "STATE"
    );
    for c in &contracts {
        let state = if c.is_active(today) { "active" } else { "inactive" };
        let ends = c.ends.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        let domains: Vec<String> = c
            .domains
            .iter()
            .map(|d| {
                let servers: Vec<String> = d.receiving_servers.iter().map(|s| s.to_string()).collect();
                format!("{} -> {}", d.name, servers.join(" "))
            })
            .collect();
        let accounts = format!("{}/{}", c.accounts_used(), c.accounts_limit);
        println!(
            "{:<16} {:<24} {:>9} {:<10} {:<10} {:<8} {}",
            c.id,
            c.customer,
            accounts,
            c.starts,
            ends,
            state,
            domains.join("; ")
        );
        if !c.sending_servers.is_empty() {
            let nets: Vec<String> = c.sending_servers.iter().map(|n| n.to_string()).collect();
            println!("{:<16} sending servers: {}", "", nets.join(" "));
        }
    }
    println!("({} contracts, generation {generation})", contracts.len());
    Ok(ExitCode::SUCCESS)
}

fn open_spool(config: &Config) -> anyhow::Result<Spool> {
    Ok(Spool::open(config.spool_dir())?)
}

fn parse_id(id: &str) -> anyhow::Result<QueueId> {
    QueueId::parse(id).map_err(|e| anyhow::anyhow!(e))
}

fn time_ms(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `queue list`.
pub fn queue_list(config: &Config) -> anyhow::Result<ExitCode> {
    let spool = open_spool(config)?;
    let mut ids = spool.list()?;
    ids.sort();
    println!(
        "{:<16} {:<19} {:>9} {:<9} {:<30} {:<19} LAST ERROR",
        "ID", "RECEIVED", "SIZE", "DIRECTION", "FROM -> TO", "NEXT ATTEMPT"
    );
    let mut n = 0;
    for id in ids {
        let Ok(m) = spool.open_message(&id) else { continue };
        let env = &m.envelope;
        let status = spool.read_status(&id, env.recipients.len())?;
        let pending = status.rcpts.iter().filter(|r| !r.state.is_final()).count();
        let next = if status.next_attempt == 0 { "now".to_string() } else { time_ms(status.next_attempt) };
        let err = status.rcpts.iter().map(|r| r.last_error.as_str()).find(|e| !e.is_empty()).unwrap_or("");
        let sender = if env.sender.is_empty() { "<>" } else { &env.sender };
        println!(
            "{:<16} {:<19} {:>9} {:<9} {:<30} {:<19} {}",
            id,
            time_ms(env.received_at * 1000),
            m.data_len,
            env.attr(attrs::DIRECTION).unwrap_or(""),
            format!("{sender} -> {} ({pending} pending)", env.recipients.len()),
            next,
            err
        );
        n += 1;
    }
    println!("({n} messages)");
    Ok(ExitCode::SUCCESS)
}

/// `queue show ID`.
pub fn queue_show(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let spool = open_spool(config)?;
    let id = parse_id(id)?;
    let (env, data) = match spool.read_data(&id) {
        Ok(x) => x,
        Err(spool::SpoolError::NotFound(_)) => {
            eprintln!("mxshield: no message {id} in the queue");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let status = spool.read_status(&id, env.recipients.len())?;
    println!("id:           {id}");
    println!("received:     {}", time_ms(env.received_at * 1000));
    println!("size:         {}", data.len());
    println!("from:         <{}>", env.sender);
    for (k, v) in &env.attrs {
        println!("{:<13} {v}", format!("{k}:"));
    }
    println!("attempts:     {}", status.attempts);
    if status.next_attempt > 0 {
        println!("next attempt: {}", time_ms(status.next_attempt));
    }
    for (rcpt, st) in env.recipients.iter().zip(&status.rcpts) {
        let state = match st.state {
            RcptState::Pending => "pending",
            RcptState::Delivered => "delivered",
            RcptState::Deferred => "deferred",
            RcptState::Failed => "failed",
        };
        println!("to:           <{rcpt}> {state} {} {}", st.remote, st.last_error);
    }
    println!();
    let headers = delivery::dsn::header_section(&data, 64 * 1024);
    print!("{}", String::from_utf8_lossy(headers));
    Ok(ExitCode::SUCCESS)
}

/// `queue flush`: every deferred message becomes due now (also for a running server).
pub fn queue_flush(config: &Config) -> anyhow::Result<ExitCode> {
    let spool = open_spool(config)?;
    let mut n = 0;
    for id in spool.list()? {
        let Ok(m) = spool.open_message(&id) else { continue };
        let mut status = spool.read_status(&id, m.envelope.recipients.len())?;
        if status.next_attempt != 0 {
            status.next_attempt = 0;
            spool.write_status(&id, &status)?;
        }
        n += 1;
    }
    let marker = spool.root().join("flush");
    std::fs::write(&marker, Utc::now().to_rfc3339()).with_context(|| format!("cannot write {}", marker.display()))?;
    println!("flushed {n} messages: a running server retries them now");
    Ok(ExitCode::SUCCESS)
}

/// `queue delete ID`.
/// Deletes a queued message; each recipient still pending is recorded `deleted` in the
/// message log, and the deletion is logged as an event (on standard error).
pub async fn queue_delete(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let spool = open_spool(config)?;
    let id = parse_id(id)?;
    let pending: Vec<String> = match spool.open_message(&id) {
        Ok(m) => {
            let status = spool.read_status(&id, m.envelope.recipients.len()).ok();
            let done = |i: usize| status.as_ref().and_then(|s| s.rcpts.get(i)).is_some_and(|r| r.state.is_final());
            m.envelope.recipients.iter().enumerate().filter(|(i, _)| !done(*i)).map(|(_, r)| r.clone()).collect()
        }
        Err(_) => Vec::new(),
    };
    if !spool.remove(&id)? {
        eprintln!("mxshield: no message {id} in the queue");
        return Ok(ExitCode::from(1));
    }
    let at = chrono::Utc::now().timestamp();
    let records: Vec<DeliveryRecord> = pending
        .iter()
        .map(|rcpt| DeliveryRecord {
            queue_id: id.to_string(),
            rcpt: rcpt.clone(),
            state: "deleted",
            remote: String::new(),
            reply: "deleted by the operator (mxshield queue delete)".into(),
            at,
        })
        .collect();
    if config.log.message_log.exists() {
        match LogStore::open(&config.log.message_log).await {
            Ok(store) => store.write(&[], &records).await?,
            Err(e) => eprintln!("mxshield: the message log was not updated: {e}"),
        }
    }
    eprintln!("event=\"deleted\" queue_id={id} recipients={} by=\"mxshield queue delete\"", pending.join(","));
    println!("deleted {id}");
    Ok(ExitCode::SUCCESS)
}
