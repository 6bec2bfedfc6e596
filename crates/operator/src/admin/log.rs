//! The message-log routes: search with the `log search` filters in a bounded time window, a
//! page at a time (an opaque cursor names where the next page starts), and one message with
//! its recipients. Tokens bound to contracts get no message log (the seed: customers are not
//! sent logs) unless the operator enables it (`[admin] bound_tokens_read_log`); then they see
//! their contracts' messages only — the contract filter is imposed here, where the log is
//! read, and another contract's message answers `404`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminState, Problem, authorize};
use crate::store::Resource;

/// The widest time window one search may cover.
const WINDOW_MAX_DAYS: i64 = 31;
/// The most messages one page may hold.
const PAGE_MAX: usize = 500;

/// The query of `GET /api/v1/log`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct LogQuery {
    since: Option<String>,
    until: Option<String>,
    contract: Option<String>,
    sender: Option<String>,
    recipient: Option<String>,
    virus: Option<String>,
    action: Option<String>,
    message_id: Option<String>,
    queue_id: Option<String>,
    direction: Option<String>,
    node: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    #[serde(default)]
    infected: bool,
}

fn cursor_of(at: i64, queue_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}:{queue_id}"))
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (at, id) = text.split_once(':')?;
    Some((at.parse().ok()?, id.to_string()))
}

fn bad(pointer: &str, detail: String) -> Problem {
    let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Content", "the search is not valid");
    p.errors = vec![json!({ "pointer": pointer, "detail": detail })];
    p
}

/// Which contracts' messages the caller may read: `None` for all.
async fn log_reader(st: &AdminState, headers: &HeaderMap) -> Result<Option<Vec<String>>, Problem> {
    let token = authorize(st, headers, Resource::Log, false).await?;
    if token.contracts.is_empty() {
        return Ok(None);
    }
    if !st.bound_tokens_read_log {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "a token bound to contracts gets no message log (the operator has not enabled [admin] bound_tokens_read_log)",
        ));
    }
    Ok(Some(token.contracts))
}

/// The contract a bound caller's search is confined to: the one it names, which must be one
/// of its own, or its only one.
fn confine(bound: &Option<Vec<String>>, asked: Option<String>, pointer: &str) -> Result<Option<String>, Problem> {
    let Some(own) = bound else { return Ok(asked) };
    match asked {
        Some(c) if own.contains(&c) => Ok(Some(c)),
        Some(c) => Err(bad(pointer, format!("{c:?} is not a contract of this token"))),
        None if own.len() == 1 => Ok(Some(own[0].clone())),
        None => Err(bad(pointer, format!("name one of this token's contracts: {}", own.join(", ")))),
    }
}

/// `GET /api/v1/log?since=…[&until=…][&contract=…]…[&limit=N][&cursor=…]`.
pub(super) async fn search(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, Problem> {
    let bound = log_reader(&st, &headers).await?;
    let contract = confine(&bound, q.contract, "/contract")?;
    let now = chrono::Utc::now();
    let time = |name: &str, v: &str| msglog::search::parse_time(v, now).map_err(|e| bad(&format!("/{name}"), e));
    let Some(since) = q.since.as_deref() else {
        return Err(bad(
            "/since",
            format!("a time window is required: since (and until), at most {WINDOW_MAX_DAYS} days"),
        ));
    };
    let since = time("since", since)?;
    let until = match q.until.as_deref() {
        Some(u) => time("until", u)?,
        None => now.timestamp() + 1,
    };
    if until <= since || until - since > WINDOW_MAX_DAYS * 86_400 {
        return Err(bad("/until", format!("the window must be after since and at most {WINDOW_MAX_DAYS} days")));
    }
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > PAGE_MAX {
        return Err(bad("/limit", format!("from 1 to {PAGE_MAX}")));
    }
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| bad("/cursor", "not a cursor this API gave".into()))?),
    };
    let filter = msglog::search::Filter {
        since: Some(since),
        until: Some(until),
        contract,
        sender: q.sender,
        recipient: q.recipient,
        virus: q.virus,
        action: q.action,
        message_id: q.message_id,
        queue_id: q.queue_id,
        direction: q.direction,
        node: q.node,
        limit: limit + 1,
        after,
        infected: q.infected,
    };
    let mut found = match st.operator.search_log(&filter).await {
        Err(crate::OperatorError::NoMessageLog(_)) => Vec::new(),
        other => other?,
    };
    let more = found.len() > limit;
    found.truncate(limit);
    let next = more.then(|| found.last().map(|f| cursor_of(f.summary.at, &f.summary.queue_id))).flatten();
    Ok(Json(json!({ "messages": found, "next": next })))
}

/// `GET /api/v1/log/{queue_id}`: one message with its parts and recipients, every delivery
/// outcome as it happened (`timeline`), and the warnings and DSNs generated about it
/// (`related`).
pub(super) async fn message(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(queue_id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let bound = log_reader(&st, &headers).await?;
    let filter = msglog::search::Filter { queue_id: Some(queue_id.clone()), limit: 1, ..Default::default() };
    let found = match st.operator.search_log(&filter).await {
        Err(crate::OperatorError::NoMessageLog(_)) => Vec::new(),
        other => other?,
    };
    // another contract's message is as missing as one that never was
    let Some(m) =
        found.into_iter().next().filter(|m| bound.as_ref().is_none_or(|own| own.contains(&m.summary.contract)))
    else {
        return Err(Problem::not_found(format!("no message {queue_id:?} in the log")));
    };
    let (timeline, related) = st.operator.message_history(&queue_id).await?;
    let mut body = serde_json::to_value(m).unwrap_or(Value::Null);
    body["timeline"] = serde_json::to_value(timeline).unwrap_or(Value::Null);
    body["related"] = serde_json::to_value(related).unwrap_or(Value::Null);
    Ok(Json(body))
}

/// The query of `GET /api/v1/log/stats`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct StatsQuery {
    since: Option<String>,
    until: Option<String>,
    bucket: Option<String>,
    contract: Option<String>,
}

/// `GET /api/v1/log/stats?since=…[&until=…][&bucket=hour|day][&contract=…]`: per hour (or UTC
/// day), messages received by direction, verdict and action, bytes, and recipients' outcomes —
/// from the roll-ups, never the raw log. The window is bounded like the search's (at most 31
/// days).
pub(super) async fn stats(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Value>, Problem> {
    let bound = log_reader(&st, &headers).await?;
    let contract = confine(&bound, q.contract, "/contract")?;
    let now = chrono::Utc::now();
    let time = |name: &str, v: &str| msglog::search::parse_time(v, now).map_err(|e| bad(&format!("/{name}"), e));
    let since = time("since", q.since.as_deref().unwrap_or("24h"))?;
    let until = match q.until.as_deref() {
        Some(u) => time("until", u)?,
        None => now.timestamp() + 1,
    };
    if until <= since || until - since > WINDOW_MAX_DAYS * 86_400 {
        return Err(bad("/until", format!("the window must be after since and at most {WINDOW_MAX_DAYS} days")));
    }
    let width = match q.bucket.as_deref().unwrap_or("hour") {
        "hour" => 3600,
        "day" => 86_400,
        other => return Err(bad("/bucket", format!("{other:?}: hour or day"))),
    };
    let (messages, outcomes) = st.operator.log_hourly(since, until, contract.as_deref()).await?;
    let start = |t: i64| t - t.rem_euclid(width);
    let mut buckets: std::collections::BTreeMap<i64, Value> = std::collections::BTreeMap::new();
    let empty = || {
        json!({ "received": 0, "bytes": 0, "infected": 0, "refused": 0,
                "by_direction": {}, "by_action": {}, "by_verdict": {}, "outcomes": {} })
    };
    let mut t = start(since);
    while t < until {
        buckets.insert(t, empty());
        t += width;
    }
    let add = |v: &mut Value, path: [&str; 2], n: i64| {
        let slot = &mut v[path[0]][path[1]];
        *slot = json!(slot.as_i64().unwrap_or(0) + n);
    };
    for m in &messages {
        let b = buckets.entry(start(m.hour)).or_insert_with(empty);
        b["received"] = json!(b["received"].as_i64().unwrap_or(0) + m.messages);
        b["bytes"] = json!(b["bytes"].as_i64().unwrap_or(0) + m.bytes);
        if m.verdict == "infected" {
            b["infected"] = json!(b["infected"].as_i64().unwrap_or(0) + m.messages);
        }
        if m.action == "refuse" {
            b["refused"] = json!(b["refused"].as_i64().unwrap_or(0) + m.messages);
        }
        add(b, ["by_direction", &m.direction], m.messages);
        add(b, ["by_action", &m.action], m.messages);
        add(b, ["by_verdict", &m.verdict], m.messages);
    }
    if contract.is_none() {
        for o in &outcomes {
            let b = buckets.entry(start(o.hour)).or_insert_with(empty);
            add(b, ["outcomes", &o.state], o.recipients);
        }
    }
    let list: Vec<Value> = buckets
        .into_iter()
        .map(|(t, mut v)| {
            v["start"] = json!(chrono::DateTime::from_timestamp(t, 0).map(|d| d.to_rfc3339()).unwrap_or_default());
            v
        })
        .collect();
    Ok(Json(json!({ "bucket": if width == 3600 { "hour" } else { "day" }, "buckets": list })))
}
