//! The console's queue pages, for every node: this node's queue directly, another node's
//! (`?node=ID`) through that node's API — the console signs the request with a token made
//! for it alone (the user's name in it, queue scope by role, two minutes, revoked after use),
//! so the other node checks the scope and writes the audit record as it does for any caller.
//! Deleting a message and retrying them all go through a confirmation page first.

use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{SignedIn, esc, nav, page, redirect, t, when};
use crate::admin::AdminState;
use crate::store::{AuditEntry, Role, Scope};

/// `?node=ID`: the node whose queue a page is about (default: this one).
#[derive(Debug, Default, Deserialize)]
pub(in crate::admin) struct NodeQuery {
    node: Option<String>,
}

/// Whose queue: this node's, or another's by its id.
enum Target {
    Here,
    Node(String),
}

fn target(st: &AdminState, node: Option<&str>) -> Target {
    match node.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if n != st.node => Target::Node(n.to_string()),
        _ => Target::Here,
    }
}

/// `s` percent-encoded for a query string (safe in HTML too).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Target {
    /// The `node=` query parameter that keeps a link on this node's queue or another's.
    fn param(&self) -> String {
        match self {
            Target::Here => String::new(),
            Target::Node(n) => format!("?node={}", enc(n)),
        }
    }
}

/// A request to `node`'s queue API, signed with a token made for it; its status and JSON.
async fn remote(
    st: &AdminState,
    me: &SignedIn,
    node: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    let write = me.s.role != Role::Auditor;
    let scopes = [Scope { resource: crate::store::Resource::Queue, write }].into_iter().collect();
    let expires = chrono::Utc::now() + chrono::Duration::minutes(2);
    let name = format!("console ({}) via {}", me.s.user, st.node);
    let (token, secret) = st
        .store
        .create_token(&name, &scopes, &[], Some(expires), &format!("{} (console)", me.s.user))
        .await
        .map_err(|e| e.to_string())?;
    let sep = if path.contains('?') { '&' } else { '?' };
    let request = axum::http::Request::builder()
        .method(method)
        .uri(format!("{path}{sep}node={}", enc(node)))
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let answer = crate::admin::forward::forward(st, node, request).await;
    let _ = st.store.revoke(&token.id).await;
    let resp = answer.map_err(|p| p.detail)?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20).await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// The detail of a problem answer, or the status.
fn why(status: StatusCode, body: &Value) -> String {
    body["detail"].as_str().map_or_else(|| status.to_string(), str::to_string)
}

/// A page with an error under the navigation.
fn failed(me: &SignedIn, status: StatusCode, title: &str, why: &str) -> Response {
    page(status, me.lang, title, &format!("{}<p class=\"error\">{}</p>", nav(me.lang, &me.s), esc(why)))
}

/// The queued messages of `target`, as the API lists them.
async fn entries(st: &AdminState, me: &SignedIn, target: &Target) -> Result<Vec<Value>, String> {
    match target {
        Target::Here => {
            let op = st.operator.clone();
            let list = tokio::task::spawn_blocking(move || op.queue())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(list.iter().map(crate::admin::queue::entry_json).collect())
        }
        Target::Node(n) => match remote(st, me, n, Method::GET, "/api/v1/queue", None).await? {
            (StatusCode::OK, body) => Ok(body["messages"].as_array().cloned().unwrap_or_default()),
            (status, body) => Err(why(status, &body)),
        },
    }
}

/// `GET /console/queue[?node=ID]`: a node's queue, with the other nodes a link away.
pub(in crate::admin) async fn queue_page(
    State(st): State<AdminState>,
    me: SignedIn,
    Query(q): Query<NodeQuery>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let target = target(&st, q.node.as_deref());
    let node_name = match &target {
        Target::Here => st.node.clone(),
        Target::Node(n) => n.clone(),
    };
    let nodes = st.node_list().await.unwrap_or_default();
    let links: Vec<String> = nodes
        .iter()
        .map(|n| {
            let href = if n.id == st.node {
                "/console/queue".to_string()
            } else {
                format!("/console/queue?node={}", enc(&n.id))
            };
            let current = if n.id == node_name { " aria-current=\"page\"" } else { "" };
            format!("<a href=\"{href}\"{current}>{}</a> ({}+{})", esc(&n.id), n.queue_active, n.queue_deferred)
        })
        .collect();
    let list = match entries(&st, &me, &target).await {
        Ok(l) => l,
        Err(e) => return failed(&me, StatusCode::BAD_GATEWAY, t(lang, "queue"), &e),
    };
    let act = s.role != Role::Auditor;
    let param = target.param();
    let rows: String = list
        .iter()
        .map(|e| {
            let id = esc(e["id"].as_str().unwrap_or(""));
            let delete = if act {
                format!("<a href=\"/console/queue/{id}/delete{param}\">{}</a>", t(lang, "delete"))
            } else {
                String::new()
            };
            format!(
                "<tr class=\"queued\"><td>{id}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{delete}</td></tr>",
                when(e["received_at"].as_i64().unwrap_or(0)),
                esc(e["sender"].as_str().unwrap_or("")),
                e["pending"].as_u64().unwrap_or(0),
                e["recipients"].as_u64().unwrap_or(0),
                when(e["next_attempt_ms"].as_i64().unwrap_or(0) / 1000),
                esc(e["last_error"].as_str().unwrap_or("")),
            )
        })
        .collect();
    let flush = if act {
        format!("<p><a href=\"/console/queue/flush{param}\" id=\"flush\">{}</a></p>", t(lang, "flush"))
    } else {
        String::new()
    };
    let body = format!(
        "{}<h1>{} ({})</h1><p id=\"node-links\">{}: {}</p>{flush}<table id=\"queue\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>{rows}</table>",
        nav(lang, s),
        t(lang, "queue"),
        esc(&node_name),
        t(lang, "nodes"),
        links.join(" · "),
        t(lang, "queue_id"),
        t(lang, "time"),
        t(lang, "sender"),
        t(lang, "pending"),
        t(lang, "next"),
        t(lang, "lasterror"),
    );
    page(StatusCode::OK, lang, t(lang, "queue"), &body)
}

/// `GET /console/queue/{id}/delete[?node=ID]`: the message to delete (its header), and the
/// form that confirms it with a reason (a POST with the CSRF token).
pub(in crate::admin) async fn delete_page(
    State(st): State<AdminState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let target = target(&st, q.node.as_deref());
    let headers = match &target {
        Target::Here => {
            let op = st.operator.clone();
            let lookup = id.clone();
            let found = tokio::task::spawn_blocking(move || op.queued(&lookup)).await.ok().and_then(Result::ok);
            found.map(|m| String::from_utf8_lossy(&m.headers).into_owned())
        }
        Target::Node(n) => match remote(&st, &me, n, Method::GET, &format!("/api/v1/queue/{id}"), None).await {
            Ok((StatusCode::OK, body)) => body["headers"].as_str().map(str::to_string),
            Ok(_) => None,
            Err(e) => return failed(&me, StatusCode::BAD_GATEWAY, t(lang, "queue"), &e),
        },
    };
    let Some(headers) = headers else {
        return page(
            StatusCode::NOT_FOUND,
            lang,
            t(lang, "queue"),
            &format!("{}<p id=\"nothing\">404</p>", nav(lang, s)),
        );
    };
    let body = format!(
        "{}<h1>{} {id}</h1><pre id=\"headers\">{}</pre><form method=\"post\" action=\"/console/queue/{id}/delete{param}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><label>{} <input name=\"reason\" required></label> \
         <button type=\"submit\" id=\"confirm\">{}</button></form>",
        nav(lang, s),
        t(lang, "delete"),
        esc(&headers),
        esc(&s.csrf),
        t(lang, "reason"),
        t(lang, "confirmdelete"),
        id = esc(&id),
        param = target.param(),
    );
    page(StatusCode::OK, lang, t(lang, "delete"), &body)
}

/// The confirmation of a deletion.
#[derive(Debug, Deserialize)]
pub(in crate::admin) struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/queue/{id}/delete[?node=ID]`: removed without delivery, with its reason;
/// audited (by the node that holds it).
pub(in crate::admin) async fn delete(
    State(st): State<AdminState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<NodeQuery>,
    Form(f): Form<DeleteForm>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    if let Some(refused) = me.refuse_unless_acting(&f.csrf) {
        return refused;
    }
    if f.reason.trim().is_empty() {
        return failed(&me, StatusCode::UNPROCESSABLE_ENTITY, t(lang, "delete"), t(lang, "reason"));
    }
    let target = target(&st, q.node.as_deref());
    let outcome = match &target {
        Target::Here => {
            let outcome = st.operator.delete(&id).await.map(|_| ()).map_err(|e| e.to_string());
            let entry = AuditEntry {
                actor: format!("{} (console)", s.user),
                source: "console".into(),
                action: "queue.delete".into(),
                target: id.clone(),
                before: None,
                after: Some(f.reason.clone()),
                outcome: if outcome.is_ok() { "ok".into() } else { "refused".into() },
            };
            st.store.audit_or_log(&entry).await;
            outcome
        }
        Target::Node(n) => {
            let body = json!({ "reason": f.reason });
            match remote(&st, &me, n, Method::DELETE, &format!("/api/v1/queue/{id}"), Some(body)).await {
                Ok((StatusCode::OK, _)) => Ok(()),
                Ok((status, body)) => Err(why(status, &body)),
                Err(e) => Err(e),
            }
        }
    };
    match outcome {
        Ok(()) => redirect(&format!("/console/queue{}", target.param())),
        Err(e) => failed(&me, StatusCode::UNPROCESSABLE_ENTITY, t(lang, "delete"), &e),
    }
}

/// The messages a retry of `target` would touch, and the value that confirms exactly those.
async fn flush_plan(st: &AdminState, me: &SignedIn, target: &Target) -> Result<(u64, String), String> {
    match target {
        Target::Here => {
            let ids: Vec<String> =
                entries(st, me, target).await?.iter().map(|e| e["id"].as_str().unwrap_or("").to_string()).collect();
            Ok((ids.len() as u64, crate::admin::queue::confirmation(&ids)))
        }
        Target::Node(n) => match remote(st, me, n, Method::POST, "/api/v1/queue/flush?dry_run=true", None).await? {
            (StatusCode::OK, b) => {
                Ok((b["would_retry"].as_u64().unwrap_or(0), b["confirm"].as_str().unwrap_or("").into()))
            }
            (status, b) => Err(why(status, &b)),
        },
    }
}

/// `GET /console/queue/flush[?node=ID]`: how many messages a retry would touch, and the form
/// that confirms it (naming exactly those messages).
pub(in crate::admin) async fn flush_page(
    State(st): State<AdminState>,
    me: SignedIn,
    Query(q): Query<NodeQuery>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let target = target(&st, q.node.as_deref());
    let (would, confirm) = match flush_plan(&st, &me, &target).await {
        Ok(x) => x,
        Err(e) => return failed(&me, StatusCode::BAD_GATEWAY, t(lang, "flush"), &e),
    };
    let body = format!(
        "{}<h1>{}</h1><p>{}: <span id=\"would\">{would}</span></p><form method=\"post\" action=\"/console/queue/flush{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"confirm\" value=\"{}\">\
         <button type=\"submit\" id=\"confirm\">{}</button></form>",
        nav(lang, s),
        t(lang, "flush"),
        t(lang, "wouldretry"),
        target.param(),
        esc(&s.csrf),
        esc(&confirm),
        t(lang, "confirmflush"),
    );
    page(StatusCode::OK, lang, t(lang, "flush"), &body)
}

/// The confirmation of a retry.
#[derive(Debug, Deserialize)]
pub(in crate::admin) struct FlushForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /console/queue/flush[?node=ID]`: every deferred message retried now — refused if the
/// queue is no longer what the confirmation page showed; audited.
pub(in crate::admin) async fn flush(
    State(st): State<AdminState>,
    me: SignedIn,
    Query(q): Query<NodeQuery>,
    Form(f): Form<FlushForm>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    if let Some(refused) = me.refuse_unless_acting(&f.csrf) {
        return refused;
    }
    let target = target(&st, q.node.as_deref());
    let changed = || failed(&me, StatusCode::CONFLICT, t(lang, "flush"), t(lang, "changed"));
    match &target {
        Target::Here => {
            match flush_plan(&st, &me, &target).await {
                Ok((_, confirm)) if confirm == f.confirm => {}
                _ => return changed(),
            }
            let op = st.operator.clone();
            let n = tokio::task::spawn_blocking(move || op.flush()).await.ok().and_then(Result::ok).unwrap_or(0);
            let entry = AuditEntry {
                actor: format!("{} (console)", s.user),
                source: "console".into(),
                action: "queue.flush".into(),
                target: st.node.clone(),
                before: None,
                after: Some(format!("{n} messages")),
                outcome: "ok".into(),
            };
            st.store.audit_or_log(&entry).await;
        }
        Target::Node(n) => {
            let path =
                format!("/api/v1/queue/flush?confirm={}", f.confirm.replace(|c: char| !c.is_ascii_hexdigit(), ""));
            match remote(&st, &me, n, Method::POST, &path, None).await {
                Ok((StatusCode::OK, _)) => {}
                Ok((StatusCode::CONFLICT, _)) => return changed(),
                Ok((status, body)) => return failed(&me, status, t(lang, "flush"), &why(status, &body)),
                Err(e) => return failed(&me, StatusCode::BAD_GATEWAY, t(lang, "flush"), &e),
            }
        }
    }
    redirect(&format!("/console/queue{}", target.param()))
}
