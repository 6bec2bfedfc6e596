//! Searching the log: the filter (the options of `mxshield log search` when the `cli` feature
//! is on), time arguments, and what is found.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::MessageSummary;

/// What to look for; every given field must match (the options of `mxshield log search`).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Filter {
    /// From this time: 2026-11-28T09:00:00Z, 2026-11-28 (UTC), or an age such as 2h or 7d.
    #[cfg_attr(feature = "cli", arg(long, value_name = "TIME", value_parser = time_arg))]
    pub since: Option<i64>,
    /// Before this time (same forms as --since).
    #[cfg_attr(feature = "cli", arg(long, value_name = "TIME", value_parser = time_arg))]
    pub until: Option<i64>,
    /// Contract id.
    #[cfg_attr(feature = "cli", arg(long))]
    pub contract: Option<String>,
    /// Envelope sender (exact address, any case).
    #[cfg_attr(feature = "cli", arg(long))]
    pub sender: Option<String>,
    /// Envelope recipient (exact address, any case).
    #[cfg_attr(feature = "cli", arg(long))]
    pub recipient: Option<String>,
    /// Part of a virus name, any case.
    #[cfg_attr(feature = "cli", arg(long))]
    pub virus: Option<String>,
    /// deliver, deliver-unscanned, rewrite, drop or refuse.
    #[cfg_attr(feature = "cli", arg(long, value_parser = ["deliver", "deliver-unscanned", "rewrite", "drop", "refuse"]))]
    pub action: Option<String>,
    /// Message-ID (with or without angle brackets).
    #[cfg_attr(feature = "cli", arg(long))]
    pub message_id: Option<String>,
    /// Queue ID.
    #[cfg_attr(feature = "cli", arg(long))]
    pub queue_id: Option<String>,
    /// inbound, outbound, warning or dsn.
    #[cfg_attr(feature = "cli", arg(long, value_parser = ["inbound", "outbound", "warning", "dsn"]))]
    pub direction: Option<String>,
    /// The node that handled it (`node_id`).
    #[cfg_attr(feature = "cli", arg(long))]
    pub node: Option<String>,
    /// At most this many messages.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 100))]
    pub limit: usize,
    /// Only the messages after this one in the order found (time, newest first, then queue
    /// id): the next page after a page that ended with it.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub after: Option<(i64, String)>,
    /// Only messages in which a virus was found.
    #[cfg_attr(feature = "cli", arg(long))]
    pub infected: bool,
}

impl Default for Filter {
    /// Everything, newest first, at most 100.
    fn default() -> Self {
        Filter {
            since: None,
            until: None,
            contract: None,
            sender: None,
            recipient: None,
            virus: None,
            action: None,
            message_id: None,
            queue_id: None,
            direction: None,
            node: None,
            limit: 100,
            after: None,
            infected: false,
        }
    }
}

/// A time argument as Unix seconds ([`parse_time`] relative to now).
pub fn time_arg(s: &str) -> Result<i64, String> {
    parse_time(s, Utc::now())
}

/// A recipient of a found message.
#[derive(Debug, Clone, Serialize)]
pub struct FoundRecipient {
    /// The recipient.
    pub rcpt: String,
    /// Its latest state.
    pub state: String,
    /// The host that last answered.
    pub remote: String,
    /// Its last reply or error.
    pub reply: String,
    /// Attempts recorded.
    pub attempts: i64,
    /// Unix seconds of the last change.
    pub updated: i64,
}

/// A found message.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    #[serde(flatten)]
    /// What is logged about the message.
    pub summary: MessageSummary,
    /// Its recipients and their outcomes.
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

#[cfg(test)]
mod tests {
    use super::*;

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
