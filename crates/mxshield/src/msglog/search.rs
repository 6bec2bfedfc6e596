//! `mxshield log search`: filters, time arguments, and the table and JSON output.

use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::{LogStore, MessageSummary};
use crate::config::Config;

/// What to look for; every given field must match (the options of `mxshield log search`).
#[derive(Debug, Clone, clap::Args)]
pub struct Filter {
    /// From this time: 2026-11-28T09:00:00Z, 2026-11-28 (UTC), or an age such as 2h or 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<i64>,
    /// Before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub until: Option<i64>,
    /// Contract id.
    #[arg(long)]
    pub contract: Option<String>,
    /// Envelope sender (exact address, any case).
    #[arg(long)]
    pub sender: Option<String>,
    /// Envelope recipient (exact address, any case).
    #[arg(long)]
    pub recipient: Option<String>,
    /// Part of a virus name, any case.
    #[arg(long)]
    pub virus: Option<String>,
    /// deliver, deliver-unscanned, rewrite, drop or refuse.
    #[arg(long, value_parser = ["deliver", "deliver-unscanned", "rewrite", "drop", "refuse"])]
    pub action: Option<String>,
    /// Message-ID (with or without angle brackets).
    #[arg(long)]
    pub message_id: Option<String>,
    /// Queue ID.
    #[arg(long)]
    pub queue_id: Option<String>,
    /// inbound, outbound, warning or dsn.
    #[arg(long, value_parser = ["inbound", "outbound", "warning", "dsn"])]
    pub direction: Option<String>,
    /// At most this many messages.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// A time argument as Unix seconds ([`parse_time`] relative to now).
fn time_arg(s: &str) -> Result<i64, String> {
    parse_time(s, Utc::now())
}

/// A recipient of a found message.
#[derive(Debug, Clone, Serialize)]
pub struct FoundRecipient {
    pub rcpt: String,
    pub state: String,
    pub remote: String,
    pub reply: String,
    pub attempts: i64,
    pub updated: i64,
}

/// A found message.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    #[serde(flatten)]
    pub summary: MessageSummary,
    pub recipients: Vec<FoundRecipient>,
}

/// Parses a time argument: RFC 3339 (`2026-11-28T09:00:00Z`), a day (`2026-11-28`, midnight
/// UTC) or an age (`90m`, `2h`, `7d`: that long before `now`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0));
    }
    match confread::parse_duration(s) {
        Ok(d) => Ok(now.timestamp() - d.as_secs() as i64),
        Err(_) => Err(format!("{s:?} is not a time (2026-11-28T09:00:00Z, 2026-11-28, or an age like 2h or 7d)")),
    }
}

/// Runs a search and prints it.
pub async fn run(config: &Config, filter: &Filter, json: bool) -> anyhow::Result<ExitCode> {
    if !config.log.message_log.exists() {
        anyhow::bail!(
            "no message log at {} (has the gateway run with this configuration?)",
            config.log.message_log.display()
        );
    }
    let store = LogStore::open(&config.log.message_log).await?;
    let found = store.search(filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        print_table(&found);
    }
    Ok(ExitCode::SUCCESS)
}

/// Column widths of the table (in terminal columns).
const COLUMNS: [usize; 7] = [20, 17, 9, 28, 30, 18, 24];

/// `text` in exactly `width` terminal columns: padded, or cut with `…`. Wide (East Asian)
/// characters count two columns, so Japanese addresses and names keep the columns aligned.
fn cell(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let mut out = String::new();
    let mut used = 0;
    let total: usize = text.chars().map(|c| c.width().unwrap_or(0)).sum();
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if total > width && used + w > width - 1 {
            out.push('…');
            used += 1;
            break;
        }
        out.push(c);
        used += w;
    }
    out.push_str(&" ".repeat(width.saturating_sub(used)));
    out
}

/// One table row: each value in its column, the last one as it is.
fn row(values: [&str; 7], last: &str) -> String {
    let mut line: Vec<String> = values.iter().zip(COLUMNS).map(|(v, w)| cell(v, w)).collect();
    line.push(last.to_string());
    line.join(" ")
}

fn print_table(found: &[Found]) {
    println!("{}", row(["TIME (UTC)", "QUEUE ID", "DIRECTION", "FROM", "TO", "ACTION", "VIRUS"], "DELIVERY"));
    for f in found {
        let time = DateTime::<Utc>::from_timestamp(f.summary.at, 0).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        let to = match f.recipients.as_slice() {
            [] => "-".to_string(),
            [one] => one.rcpt.clone(),
            [first, rest @ ..] => format!("{} (+{})", first.rcpt, rest.len()),
        };
        let mut states: Vec<String> = Vec::new();
        for r in &f.recipients {
            if !states.contains(&r.state) {
                states.push(r.state.clone());
            }
        }
        let sender = if f.summary.sender.is_empty() { "<>" } else { &f.summary.sender };
        let virus = if f.summary.viruses.is_empty() { "-".to_string() } else { f.summary.viruses.join(",") };
        let time = time.unwrap_or_default();
        let values = [&time[..], &f.summary.queue_id, &f.summary.direction, sender, &to, &f.summary.action, &virus];
        println!("{}", row(values, &states.join(",")));
    }
    println!("{} message(s)", found.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_keep_columns_with_wide_characters() {
        use unicode_width::UnicodeWidthStr;
        for text in
            ["alice@acme.example", "山田太郎@例え.example", "", "x".repeat(40).as_str(), "請求書".repeat(20).as_str()]
        {
            let c = cell(text, 28);
            assert_eq!(c.width(), 28, "{text:?} -> {c:?}");
        }
        assert_eq!(cell("山田", 6), "山田  ");
        assert_eq!(cell("山田太郎", 6), "山田… ");
    }

    #[test]
    fn time_arguments() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("2026-11-28T09:00:00Z", now).unwrap(), now.timestamp() - 3 * 3600);
        assert_eq!(parse_time("2026-11-28", now).unwrap(), now.timestamp() - 12 * 3600);
        assert_eq!(parse_time("2h", now).unwrap(), now.timestamp() - 2 * 3600);
        assert_eq!(parse_time("7d", now).unwrap(), now.timestamp() - 7 * 86_400);
        assert!(parse_time("yesterday", now).is_err());
    }
}
