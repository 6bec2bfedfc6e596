//! The queue routes of this node: list, one message, delete one with a reason, and flush —
//! a bulk action, so it needs its dry run first: the dry run answers how many messages it
//! would retry and a `confirm` value naming them; the flush itself is refused without that
//! value, or with one the queue no longer matches.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;

use super::{AdminState, Problem, authorize};
use crate::OperatorError;
use crate::store::{AuditEntry, Resource};

fn blocking_problem(e: tokio::task::JoinError) -> Problem {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", e.to_string())
}

fn queue_problem(e: OperatorError) -> Problem {
    match e {
        OperatorError::BadQueueId(why) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Content", why),
        OperatorError::NotQueued(id) => Problem::not_found(format!("no message {id} in the queue")),
        other => other.into(),
    }
}

async fn audit(
    st: &AdminState,
    token: &crate::store::Token,
    action: &str,
    target: &str,
    after: Option<String>,
    outcome: &str,
) {
    let entry = AuditEntry {
        actor: format!("{} ({})", token.id, token.name),
        source: "api".into(),
        action: action.into(),
        target: target.into(),
        before: None,
        after,
        outcome: outcome.into(),
    };
    st.store.audit_or_log(&entry).await;
}

/// `GET /api/v1/queue`: this node's queued messages, oldest first.
pub(super) async fn list(State(st): State<AdminState>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    authorize(&st, &headers, Resource::Queue, false).await?;
    let op = st.operator.clone();
    let entries =
        tokio::task::spawn_blocking(move || op.queue()).await.map_err(blocking_problem)?.map_err(queue_problem)?;
    let items: Vec<Value> = entries.iter().map(entry_json).collect();
    Ok(Json(json!({ "node": st.node, "messages": items })))
}

/// A queued message as the API shows it.
pub(super) fn entry_json(e: &crate::QueueEntry) -> Value {
    json!({
        "id": e.id.to_string(), "received_at": e.received_at, "size": e.size, "direction": e.direction,
        "sender": e.sender, "recipients": e.recipients, "pending": e.pending,
        "next_attempt_ms": e.next_attempt, "last_error": e.last_error,
    })
}

/// `GET /api/v1/queue/{id}`: one queued message's envelope, recipients' states and header.
pub(super) async fn show(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    authorize(&st, &headers, Resource::Queue, false).await?;
    let op = st.operator.clone();
    let m =
        tokio::task::spawn_blocking(move || op.queued(&id)).await.map_err(blocking_problem)?.map_err(queue_problem)?;
    let rcpts: Vec<Value> = m
        .envelope
        .recipients
        .iter()
        .zip(&m.status.rcpts)
        .map(|(r, s)| json!({ "rcpt": r, "state": format!("{:?}", s.state).to_lowercase(), "remote": s.remote, "last_error": s.last_error }))
        .collect();
    Ok(Json(json!({
        "id": m.id.to_string(),
        "sender": m.envelope.sender,
        "received_at": m.envelope.received_at,
        "size": m.size,
        "recipients": rcpts,
        "attempts": m.status.attempts,
        "next_attempt_ms": m.status.next_attempt,
        "headers": String::from_utf8_lossy(&m.headers),
    })))
}

/// The body of a deletion.
#[derive(Debug, Default, Deserialize)]
pub(super) struct DeleteBody {
    #[serde(default)]
    reason: String,
}

/// `DELETE /api/v1/queue/{id}` with `{"reason": "…"}` (required): removed without delivery;
/// its pending recipients are recorded `deleted` in the message log.
pub(super) async fn delete(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<DeleteBody>>,
) -> Result<Json<Value>, Problem> {
    let token = authorize(&st, &headers, Resource::Queue, true).await?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    if reason.trim().is_empty() {
        let mut p =
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Content", "a deletion needs a reason");
        p.errors = vec![json!({ "pointer": "/reason", "detail": "required: why the message is deleted" })];
        return Err(p);
    }
    match st.operator.delete(&id).await {
        Ok(pending) => {
            audit(&st, &token, "queue.delete", &id, Some(format!("{reason}; pending: {}", pending.join(","))), "ok")
                .await;
            Ok(Json(json!({ "id": id, "deleted": true, "pending_recipients": pending })))
        }
        Err(e) => {
            audit(&st, &token, "queue.delete", &id, Some(reason), "refused").await;
            Err(queue_problem(e))
        }
    }
}

/// `?dry_run=true` and the `confirm` value it gave.
#[derive(Debug, Default, Deserialize)]
pub(super) struct FlushQuery {
    #[serde(default)]
    dry_run: bool,
    confirm: Option<String>,
}

/// What a flush would retry, named: a hash of the queued ids.
pub(super) fn confirmation(ids: &[String]) -> String {
    let mut h = sha2::Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `POST /api/v1/queue/flush?dry_run=true`, then `POST /api/v1/queue/flush?confirm=…`: every
/// deferred message retried now.
pub(super) async fn flush(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<FlushQuery>,
) -> Result<Json<Value>, Problem> {
    let token = authorize(&st, &headers, Resource::Queue, !q.dry_run).await?;
    let op = st.operator.clone();
    let entries =
        tokio::task::spawn_blocking(move || op.queue()).await.map_err(blocking_problem)?.map_err(queue_problem)?;
    let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
    let confirm = confirmation(&ids);
    if q.dry_run {
        return Ok(Json(json!({ "would_retry": ids.len(), "confirm": confirm, "dry_run": true })));
    }
    match q.confirm.as_deref() {
        None => {
            return Err(Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "Precondition Required",
                "a bulk action needs its dry run first: POST ?dry_run=true, then again with its confirm value",
            ));
        }
        Some(c) if c != confirm => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "Conflict",
                "the queue changed since the dry run: run it again",
            ));
        }
        Some(_) => {}
    }
    let op = st.operator.clone();
    let n = tokio::task::spawn_blocking(move || op.flush()).await.map_err(blocking_problem)?.map_err(queue_problem)?;
    audit(&st, &token, "queue.flush", &st.node, Some(format!("{n} messages")), "ok").await;
    Ok(Json(json!({ "retried": n, "dry_run": false })))
}
