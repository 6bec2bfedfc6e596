//! `mxshield log search`: runs a search of the message log and prints a table or JSON.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use msglog::search::{Filter, Found};

use crate::config::Config;

/// Runs a search and prints it.
pub async fn run(config: &Config, filter: &Filter, json: bool) -> anyhow::Result<ExitCode> {
    let found = crate::cli::operator(config).search_log(filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        print_table(&found);
    }
    Ok(ExitCode::SUCCESS)
}

/// Column widths of the table (in terminal columns).
const COLUMNS: [usize; 8] = [20, 20, 12, 9, 28, 30, 18, 24];

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
fn row(values: [&str; 8], last: &str) -> String {
    let mut line: Vec<String> = values.iter().zip(COLUMNS).map(|(v, w)| cell(v, w)).collect();
    line.push(last.to_string());
    line.join(" ")
}

fn print_table(found: &[Found]) {
    println!("{}", row(["TIME (UTC)", "QUEUE ID", "NODE", "DIRECTION", "FROM", "TO", "ACTION", "VIRUS"], "DELIVERY"));
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
        let node = if f.summary.node.is_empty() { "-" } else { &f.summary.node };
        let values =
            [&time[..], &f.summary.queue_id, node, &f.summary.direction, sender, &to, &f.summary.action, &virus];
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
}
