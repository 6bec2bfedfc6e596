//! Every node's queue through one node: a queue route with `?node=ID` naming another node is
//! forwarded to that node's admin listener (its URL from the node registry, written by its
//! heartbeat: `[admin] advertise` or its `listen` address), with the caller's own token —
//! tokens are in the shared database, so the other node checks the scope and writes the audit
//! record itself. The forwarded request names the node it is meant for
//! (`X-Mxshield-Node`), and a node refuses one meant for another, so a registry entry that
//! points at the wrong host cannot show one node's queue as another's.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AdminState, Problem, authorize};
use crate::store::Resource;

/// The header naming the node a forwarded request is meant for.
pub(super) const NODE_HEADER: &str = "x-mxshield-node";
/// The largest request or answer body forwarded.
const MAX_BODY: usize = 4 << 20;
/// How long the other node may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `node=` of a request's query, decoded, if any.
fn node_param(uri: &axum::http::Uri) -> Option<String> {
    let q = axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri).ok()?;
    q.0.get("node").cloned()
}

/// The query without `node=`.
fn without_node(query: &str) -> String {
    query.split('&').filter(|kv| !kv.starts_with("node=") && !kv.is_empty()).collect::<Vec<_>>().join("&")
}

/// The middleware of the queue routes: serves this node's queue, forwards another's.
pub(super) async fn queue_of_node(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    if let Some(meant) = req.headers().get(NODE_HEADER).and_then(|v| v.to_str().ok())
        && meant != st.node
    {
        return Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "Misdirected Request",
            format!("this is node {:?}, not {meant:?}: its registry entry points at the wrong listener", st.node),
        )
        .into_response();
    }
    match node_param(req.uri()) {
        Some(node) if node != st.node => forward(&st, &node, req).await.unwrap_or_else(IntoResponse::into_response),
        _ => next.run(req).await,
    }
}

/// The answer of `node` to `req` (its path, its query without `node=`, its body, the caller's
/// `Authorization`).
pub(super) async fn forward(st: &AdminState, node: &str, req: Request) -> Result<Response, Problem> {
    // only callers with a valid token that may read queues make this node reach another
    authorize(st, req.headers(), Resource::Queue, false).await?;
    let url = node_url(st, node).await?;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "Content Too Large", "the request body is too large")
    })?;
    let query = without_node(parts.uri.query().unwrap_or(""));
    let target = format!("{url}{}{}{query}", parts.uri.path(), if query.is_empty() { "" } else { "?" });
    let auth = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let ctype = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let method = parts.method.clone();
    let node_name = node.to_string();
    let answer =
        tokio::task::spawn_blocking(move || send(&method, &target, &auth, ctype.as_deref(), &node_name, &body))
            .await
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", e.to_string()))?;
    let (status, ctype, body) = answer.map_err(|why| {
        tracing::warn!(event = "admin_forward_failed", node, error = %why);
        Problem::new(StatusCode::BAD_GATEWAY, "Bad Gateway", format!("node {node:?} did not answer: {why}"))
    })?;
    let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), Body::from(body)).into_response();
    if let Some(v) = ctype.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// The admin URL of `node` from the registry.
async fn node_url(st: &AdminState, node: &str) -> Result<String, Problem> {
    let nodes = st.node_list().await.map_err(|e| {
        tracing::error!(event = "admin_error", error = %e);
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", "the node registry cannot be read")
    })?;
    let Some(n) = nodes.iter().find(|n| n.id == node) else {
        return Err(Problem::not_found(format!("no node {node:?} in the registry")));
    };
    if n.admin.is_empty() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            format!("node {node:?} has no admin listener others can reach (set its [admin] advertise)"),
        ));
    }
    Ok(n.admin.trim_end_matches('/').to_string())
}

/// One HTTP request to another node: (status, content type, body) or why it failed.
fn send(
    method: &axum::http::Method,
    url: &str,
    auth: &str,
    ctype: Option<&str>,
    node: &str,
    body: &[u8],
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    let agent = AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("mxshield/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent()
    });
    let mut builder = ureq::http::Request::builder().method(method.as_str()).uri(url).header(NODE_HEADER, node);
    if !auth.is_empty() {
        builder = builder.header("authorization", auth);
    }
    if let Some(c) = ctype {
        builder = builder.header("content-type", c);
    }
    let mut resp = if body.is_empty() {
        agent.run(builder.body(()).map_err(|e| e.to_string())?)
    } else {
        agent.run(builder.body(body.to_vec()).map_err(|e| e.to_string())?)
    }
    .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.body_mut().with_config().limit(MAX_BODY as u64).read_to_vec().map_err(|e| e.to_string())?;
    Ok((status, ctype, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_parameter_is_read_and_taken_out() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        assert_eq!(node_param(&uri("/q?dry_run=true&node=mx%2D2")), Some("mx-2".into()));
        assert_eq!(node_param(&uri("/q?dry_run=true")), None);
        assert_eq!(without_node("node=mx2&dry_run=true&confirm=ab"), "dry_run=true&confirm=ab");
        assert_eq!(without_node("node=mx2"), "");
    }
}
