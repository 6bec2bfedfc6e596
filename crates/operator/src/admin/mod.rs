//! The operator's HTTP API (`/api/v1`, JSON) on the admin listener, over the same typed
//! functions as the CLI.
//!
//! Every route but `/healthz` and `/readyz` needs a bearer token ([`crate::store::Token`]) with
//! the scope of its resource; a token bound to contracts sees only theirs — the filter is
//! applied where the data is read ([`Visibility`]), and what it may not see answers `404`, as
//! if it did not exist. Errors are RFC 9457 `application/problem+json`.
//!
//! Main items: [`router`], [`AdminState`], [`Visibility`].

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::store::{AdminStore, Resource, Token};
use crate::{Operator, OperatorError};

mod console;
mod forward;
mod log;
mod queue;
mod statements;
mod write;

tokio::task_local! {
    /// The client address of the request being handled (the audit records it).
    pub(crate) static PEER: std::net::SocketAddr;
    /// The token of the API request being handled, checked once before anything else.
    static TOKEN: Token;
}

/// Every API route (and `/metrics`) needs a valid token, checked here — before any extractor
/// reads the request, so a caller without one learns nothing (not even what a body lacks) —
/// and kept for the handlers' scope checks.
async fn require_token(State(st): State<AdminState>, req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if !(path.starts_with("/api/") || path == "/metrics") {
        return next.run(req).await;
    }
    match authenticate(&st, req.headers()).await {
        Ok(token) => TOKEN.scope(token, next.run(req)).await,
        Err(p) => p.into_response(),
    }
}

/// Runs the rest of a request with its client address known to the audit.
async fn with_peer(req: Request, next: axum::middleware::Next) -> Response {
    match req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0) {
        Some(peer) => PEER.scope(peer, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The operator's typed functions.
    pub operator: Arc<Operator>,
    /// Tokens and audit.
    pub store: AdminStore,
    /// Today in the operator's calendar.
    pub today: Arc<dyn Fn() -> chrono::NaiveDate + Send + Sync>,
    /// The price tables (`[billing]`): fees of cancellations, prices of changes.
    pub tables: Arc<rating::PriceBook>,
    /// How statements round their tax, and who issues them (`[billing]`).
    pub rounding: rating::Rounding,
    /// The issuer shown on statements.
    pub issuer: crate::Issuer,
    /// This node's name (`node_id`): the queue routes are this node's queue.
    pub node: String,
    /// How old a heartbeat may be before its node is shown `down` (the registry is in the
    /// contracts database: [`Operator::registry`]).
    pub down_after: std::time::Duration,
    /// This node's installed signature releases (`None`: updates are off, the database is
    /// the configured or built-in one).
    pub signatures: Option<std::path::PathBuf>,
    /// Whether tokens bound to contracts may read their contracts' message log
    /// (`[admin] bound_tokens_read_log`; the seed: customers are not sent logs, so off by
    /// default).
    pub bound_tokens_read_log: bool,
    /// The thresholds of the conditions of use (`[conditions]`).
    pub conditions: crate::conditions::Thresholds,
    /// What `/metrics` shows (`None`: nothing is recorded in this process).
    pub metrics: Option<crate::metrics::PrometheusRecorder>,
}

impl AdminState {
    /// Every node of the registry.
    pub async fn node_list(&self) -> Result<Vec<store::nodes::NodeStatus>, OperatorError> {
        Ok(self.operator.registry().await?.list().await?)
    }
}

/// Which contracts a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// All of them (an operator's token).
    All,
    /// Only these (a token bound to contracts).
    Only(Vec<String>),
}

impl Visibility {
    /// Whether contract `id` may be seen.
    pub fn sees(&self, id: &str) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Only(ids) => ids.iter().any(|i| i == id),
        }
    }

    fn of(token: &Token) -> Visibility {
        if token.contracts.is_empty() { Visibility::All } else { Visibility::Only(token.contracts.clone()) }
    }
}

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
    errors: Vec<Value>,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem { status, title, detail: detail.into(), errors: Vec::new() }
    }

    fn not_found(what: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "Not Found", what)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors);
        }
        let mut resp = (self.status, Json(body)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mxshield\""));
        }
        resp
    }
}

impl From<OperatorError> for Problem {
    fn from(e: OperatorError) -> Problem {
        tracing::error!(event = "admin_error", error = %e);
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", e.to_string())
    }
}

impl From<crate::store::AdminStoreError> for Problem {
    fn from(e: crate::store::AdminStoreError) -> Problem {
        tracing::error!(event = "admin_error", error = %e);
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", "the store cannot be reached")
    }
}

/// The routes of the admin listener.
pub fn router(state: AdminState) -> Router {
    // the queue routes serve this node's queue, or forward to the node `?node=` names
    let queues = Router::new()
        .route("/api/v1/queue", get(queue::list))
        .route("/api/v1/queue/flush", post(queue::flush))
        .route("/api/v1/queue/{id}", get(queue::show).delete(queue::delete))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), forward::queue_of_node));
    Router::new()
        .merge(queues)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/contracts", get(list_contracts).post(write::create))
        .route("/api/v1/contracts/{id}", get(get_contract).put(write::change))
        .route("/api/v1/contracts/export", get(write::export))
        .route("/api/v1/contracts/apply", post(write::apply_file))
        .route("/api/v1/contracts/{id}/accounts", post(write::accounts))
        .route("/api/v1/contracts/{id}/cancellation", post(write::cancel))
        .route("/api/v1/contracts/{id}/revisions/{rev}", delete(write::withdraw))
        .route("/api/v1/domains/{name}", get(get_domain))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/signatures", get(signatures))
        .route("/api/v1/statements", get(statements::list_drafts))
        .route("/api/v1/price_tables", get(statements::price_tables))
        .route("/api/v1/statements/issue", post(statements::issue))
        .route("/api/v1/statements/issued", get(statements::list_issued))
        .route("/api/v1/statements/issued/{number}", get(statements::one_issued))
        .route("/api/v1/log", get(log::search))
        .route("/api/v1/log/stats", get(log::stats))
        .route("/api/v1/log/{queue_id}", get(log::message))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/audit", get(audit_search))
        .route("/api/v1/conditions", get(conditions))
        .route("/api/v1/conditions/{contract}/{kind}/{action}", post(handle_condition))
        .route("/metrics", get(metrics_text))
        .route("/console/", get(console::dashboard::dashboard))
        .route("/console/login", get(console::login_page).post(console::login))
        .route("/console/trace", get(console::trace))
        .route("/console/contracts", get(console::contracts_page))
        .route("/console/detections", get(console::detections))
        .route("/console/nodes", get(console::nodes_page))
        .route("/console/conditions", get(console::conditions_page))
        .route("/console/conditions/{contract}/{kind}/{action}", post(console::handle_finding))
        .route("/console/admin", get(console::admin_page))
        .route("/console/admin/tokens/{id}/revoke", post(console::revoke_token))
        .route("/console/statements", get(console::statements_page))
        .route("/console/statements.csv", get(console::statements_csv))
        .route("/console/statements/issue", post(console::statements_issue))
        .route("/console/queue", get(console::queue::queue_page))
        .route("/console/queue/flush", get(console::queue::flush_page).post(console::queue::flush))
        .route("/console/queue/{id}/delete", get(console::queue::delete_page).post(console::queue::delete))
        .route("/console/contracts/new", get(console::contract_form::new_page).post(console::contract_form::create))
        .route("/console/contracts/{id}", get(console::contract_page))
        .route(
            "/console/contracts/{id}/edit",
            get(console::contract_form::edit_page).post(console::contract_form::change),
        )
        .route("/console/contracts/{id}/cancel", get(console::cancel_quote).post(console::cancel_confirm))
        .route("/console/trace/{queue_id}", get(console::trace_one))
        .route("/console/logout", post(console::logout))
        .route("/console/language", post(console::set_language))
        .route("/console/style.css", get(console::style))
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .layer(axum::middleware::from_fn(with_peer))
        .with_state(state)
}

async fn security_headers(req: Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

/// Ready when the store answers.
async fn readyz(State(st): State<AdminState>) -> Response {
    match st.store.tokens().await {
        Ok(_) => "ready\n".into_response(),
        Err(_) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", "the store cannot be reached")
            .into_response(),
    }
}

/// The caller's token, if it is valid.
async fn authenticate(st: &AdminState, headers: &HeaderMap) -> Result<Token, Problem> {
    if let Ok(token) = TOKEN.try_with(Token::clone) {
        return Ok(token);
    }
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = secret else {
        return Err(Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", "a bearer token is required"));
    };
    st.store.verify(secret).await?.ok_or_else(|| {
        Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", "the token is unknown, revoked or expired")
    })
}

/// The caller's token, if it may use `resource` (`write`: change it).
async fn authorize(st: &AdminState, headers: &HeaderMap, resource: Resource, write: bool) -> Result<Token, Problem> {
    let token = authenticate(st, headers).await?;
    if !token.allows(resource, write) {
        let needed = crate::store::Scope { resource, write };
        let why = if write && !token.contracts.is_empty() {
            "a token bound to contracts is read-only".to_string()
        } else if !token.contracts.is_empty() && !resource.per_contract() {
            format!("a token bound to contracts reads only its contracts' data, not {}", resource.name())
        } else {
            format!("the token lacks the scope {needed}")
        };
        return Err(Problem::new(StatusCode::FORBIDDEN, "Forbidden", why));
    }
    Ok(token)
}

/// The filters of `GET /api/v1/contracts`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ContractFilter {
    /// The state as derived today (`active`, `applied`, `cancellation scheduled`, `cancelled` …).
    pub(super) state: Option<String>,
    /// Part of the customer's name, any case.
    pub(super) customer: Option<String>,
    /// A domain the contract holds (any case).
    pub(super) domain: Option<String>,
}

impl ContractFilter {
    /// Whether contract `c` passes.
    pub(super) fn keeps(
        &self,
        c: &contracts::Contract,
        scheduled: &[contracts::Scheduled],
        today: chrono::NaiveDate,
    ) -> bool {
        let nonempty =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
        nonempty(&self.state).is_none_or(|s| contracts::state_on(c, scheduled, today) == s)
            && nonempty(&self.customer).is_none_or(|s| c.customer.to_lowercase().contains(&s))
            && nonempty(&self.domain).is_none_or(|d| {
                let d = d.trim_end_matches('.');
                c.domains.iter().any(|x| x.name.eq_ignore_ascii_case(d))
            })
    }
}

async fn list_contracts(
    State(st): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Query(f): axum::extract::Query<ContractFilter>,
) -> Result<Json<Value>, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, false).await?;
    let today = (st.today)();
    let (contracts, scheduled, generation) = st.operator.contracts_visible(&Visibility::of(&token)).await?;
    let items: Vec<Value> = contracts
        .iter()
        .filter(|c| f.keeps(c, &scheduled, today))
        .map(|c| contract_json(c, &scheduled, today))
        .collect();
    Ok(Json(json!({ "generation": generation, "today": today, "contracts": items })))
}

async fn get_contract(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, false).await?;
    let today = (st.today)();
    let visibility = Visibility::of(&token);
    let (contracts, scheduled, _) = st.operator.contracts_visible(&visibility).await?;
    let Some(c) = contracts.iter().find(|c| c.id == id) else {
        return Err(Problem::not_found(format!("no contract {id:?}")));
    };
    let revisions = st.operator.contract_history(&id).await?;
    let events = st.operator.contract_events(&id).await?;
    let mut body = contract_json(c, &scheduled, today);
    body["pending"] = scheduled
        .iter()
        .filter(|s| s.id == id)
        .map(|s| json!({ "rev": s.rev, "effective_from": s.effective_from, "removed": s.contract.is_none() }))
        .collect();
    body["revisions"] = revisions
        .iter()
        .map(|r| {
            json!({
                "rev": r.rev, "effective_from": r.effective_from, "changed": r.changed, "recorded_at": r.created_at,
                "actor": r.actor, "reason": r.reason, "pending": r.pending, "withdrawn_at": r.withdrawn_at, "fee": r.fee,
            })
        })
        .collect();
    body["events"] = contracts::timeline(&revisions, &events, today)
        .iter()
        .map(|e| {
            json!({ "at": e.at, "kind": e.kind, "rev": e.rev, "detail": e.detail, "actor": e.actor, "reason": e.reason })
        })
        .collect();
    let mut resp = Json(body).into_response();
    if let Ok(tag) = HeaderValue::from_str(&write::etag(c, &scheduled)) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    Ok(resp)
}

async fn get_domain(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, false).await?;
    let (contracts, _, _) = st.operator.contracts_visible(&Visibility::of(&token)).await?;
    let wanted = contracts::normalize_domain(&name).unwrap_or_else(|| name.to_ascii_lowercase());
    let owner = contracts.iter().find_map(|c| c.domains.iter().find(|d| d.name == wanted).map(|d| (c, d)));
    let Some((c, d)) = owner else {
        return Err(Problem::not_found(format!("no contract holds domain {wanted:?}")));
    };
    Ok(Json(json!({
        "domain": d.name,
        "contract": c.id,
        "customer": c.customer,
        "receiving_servers": d.receiving_servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "accounts": d.accounts,
    })))
}

/// `GET /api/v1/nodes`: every node of the registry with its state (as `mxshield nodes`), its
/// signature release and its age, its contracts generation, its queue.
async fn nodes(State(st): State<AdminState>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    authorize(&st, &headers, Resource::Nodes, false).await?;
    let down_after = &st.down_after;
    let all = st.node_list().await.map_err(|e| {
        tracing::error!(event = "admin_error", error = %e);
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", "the node registry cannot be read")
    })?;
    let now = chrono::Utc::now().timestamp();
    let items: Vec<Value> = all
        .iter()
        .map(|n| {
            json!({
                "id": n.id, "address": n.address, "version": n.version,
                "state": store::nodes::state(n, &all, *down_after, now),
                "signatures": n.signatures, "signatures_at": n.signatures_at,
                "signatures_age_seconds": if n.signatures_at > 0 { Some(now - n.signatures_at) } else { None },
                "contracts_generation": n.contracts_generation, "contracts_stale": n.contracts_stale,
                "queue_active": n.queue_active, "queue_deferred": n.queue_deferred,
                "started": n.started, "heartbeat": n.heartbeat, "policy": n.policy,
            })
        })
        .collect();
    Ok(Json(json!({ "nodes": items })))
}

/// `GET /api/v1/signatures`: this node's signature updater (the release in use, since when,
/// from where, signed by which key, the last check and the last release refused) and the
/// release each node of the registry runs.
async fn signatures(State(st): State<AdminState>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    authorize(&st, &headers, Resource::Nodes, false).await?;
    let now = chrono::Utc::now().timestamp();
    let this = match &st.signatures {
        None => json!({ "updates": "off" }),
        Some(dir) => {
            let dir = dir.clone();
            let s =
                tokio::task::spawn_blocking(move || sigupdate::store::Store::open(&dir).map(|store| store.status()))
                    .await
                    .map_err(|e| {
                        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", e.to_string())
                    })?
                    .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", e.to_string()))?;
            json!({
                "updates": "on",
                "release": s.version, "since": s.since, "created": s.created,
                "age_seconds": (s.created > 0).then(|| now - s.created),
                "source": s.source, "key_id": s.key_id, "signatures": s.signatures,
                "last_check": s.last_check, "last_outcome": s.last_outcome,
                "last_refused": s.last_refused.map(|r| json!({ "at": r.at, "reason": r.reason })),
            })
        }
    };
    let nodes = st.node_list().await.unwrap_or_default();
    let runs: Vec<Value> = nodes
        .iter()
        .map(|n| json!({ "node": n.id, "signatures": n.signatures, "age_seconds": (n.signatures_at > 0).then(|| now - n.signatures_at) }))
        .collect();
    Ok(Json(json!({ "node": st.node, "this_node": this, "nodes": runs })))
}

/// The query of `GET /api/v1/conditions`.
#[derive(Debug, Default, serde::Deserialize)]
struct ConditionsQuery {
    contract: Option<String>,
}

/// `GET /api/v1/conditions[?contract=ID]`: the measured findings, as `mxshield conditions
/// --json`; a token bound to contracts sees its own only.
async fn conditions(
    State(st): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ConditionsQuery>,
) -> Result<Json<Value>, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, false).await?;
    let visibility = Visibility::of(&token);
    if let Some(c) = &q.contract
        && !visibility.sees(c)
    {
        return Err(Problem::not_found(format!("no contract {c:?}")));
    }
    let now = chrono::Utc::now().timestamp();
    let findings = st.operator.conditions(q.contract.as_deref(), &st.conditions, &st.store, now).await?;
    let when = |t: Option<i64>| t.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|d| d.to_rfc3339());
    let items: Vec<Value> = findings
        .iter()
        .filter(|f| visibility.sees(&f.contract))
        .map(|f| {
            let counts: serde_json::Map<String, Value> =
                f.counts.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            json!({ "contract": f.contract, "kind": f.kind, "level": f.level, "state": f.state,
                    "window": f.window, "counts": counts, "threshold": f.threshold,
                    "first_seen": when(f.first_seen), "last_seen": when(f.last_seen),
                    "acknowledged_at": when(f.acknowledged_at), "cleared_at": when(f.cleared_at),
                    "evidence": f.evidence })
        })
        .collect();
    Ok(Json(json!({ "findings": items })))
}

/// The body of a clearing.
#[derive(Debug, Default, serde::Deserialize)]
struct ClearBody {
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/conditions/{contract}/{kind}/clear` with `{"reason": "…"}`: the finding's
/// measure restarts now (every node applies it at its next check); `…/acknowledge`: the
/// operator has seen it (it stays open, and keeps holding mail under `defer` or `refuse`).
/// Both audited; a clearing needs its reason.
async fn handle_condition(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((contract, kind, action)): Path<(String, String, String)>,
    body: Option<Json<ClearBody>>,
) -> Result<Json<Value>, Problem> {
    if crate::conditions::Handling::parse(&action).is_none() {
        return Err(Problem::not_found(format!("no action {action:?} (clear, acknowledge)")));
    }
    let token = authorize(&st, &headers, Resource::Contracts, true).await?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let mut errors = Vec::new();
    if !crate::conditions::KINDS.contains(&kind.as_str()) {
        errors.push(
            json!({ "pointer": "/kind", "detail": format!("{kind:?}: one of {}", crate::conditions::KINDS.join(", ")) }),
        );
    }
    if action == "clear" && reason.trim().is_empty() {
        errors.push(json!({ "pointer": "/reason", "detail": "required: why the finding is cleared" }));
    }
    if !errors.is_empty() {
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Content", "nothing was changed");
        p.errors = errors;
        return Err(p);
    }
    let (contracts, _, _) = st.operator.contracts_visible(&Visibility::All).await?;
    if !contracts.iter().any(|c| c.id == contract) {
        return Err(Problem::not_found(format!("no contract {contract:?}")));
    }
    let actor = format!("{} ({})", token.id, token.name);
    let how = crate::conditions::Handling::parse(&action).unwrap_or(crate::conditions::Handling::Acknowledge);
    let now = st.store.handle_finding(&contract, &kind, how, &actor, "api", &reason).await?;
    let at = if how == crate::conditions::Handling::Clear { "cleared_at" } else { "acknowledged_at" };
    Ok(Json(json!({ "contract": contract, "kind": kind, at: now })))
}

/// The query of `GET /api/v1/audit`.
#[derive(Debug, Default, serde::Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/audit`: the audit log searched, newest first.
async fn audit_search(
    State(st): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Result<Json<Value>, Problem> {
    authorize(&st, &headers, Resource::Admin, false).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Content", "the search is not valid");
        p.errors = vec![json!({ "pointer": "/limit", "detail": "from 1 to 1000" })];
        return Err(p);
    }
    let filter =
        crate::store::AuditFilter { actor: q.actor, action: q.action, target: q.target, since: q.since, limit };
    let entries: Vec<Value> = st
        .store
        .audit_search(&filter)
        .await?
        .into_iter()
        .map(|(at, e)| {
            json!({ "at": at, "actor": e.actor, "source": e.source, "action": e.action, "target": e.target,
                    "before": e.before, "after": e.after, "outcome": e.outcome })
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

/// `/metrics`, for a token with `metrics:read`: the Prometheus text format.
async fn metrics_text(State(st): State<AdminState>, headers: HeaderMap) -> Result<Response, Problem> {
    authorize(&st, &headers, Resource::Metrics, false).await?;
    let Some(rec) = &st.metrics else {
        return Err(Problem::not_found("no metrics are recorded in this process"));
    };
    let mut resp = rec.render().into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(resp)
}

/// Any valid token may read the description.
async fn openapi(State(st): State<AdminState>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    authenticate(&st, &headers).await?;
    Ok(Json(openapi_document()))
}

/// The OpenAPI 3.1 description of the API; a test checks every route is in it.
pub fn openapi_document() -> Value {
    let get_op = |summary: &str, scope: &str| {
        json!({ "get": {
            "summary": summary,
            "security": [{ "bearer": [scope] }],
            "responses": {
                "200": { "description": "OK" },
                "401": { "$ref": "#/components/responses/Problem" },
                "403": { "$ref": "#/components/responses/Problem" },
                "404": { "$ref": "#/components/responses/Problem" }
            }
        }})
    };
    let op = |summary: &str, scope: &str, ok: &str| {
        json!({
            "summary": summary,
            "security": [{ "bearer": [scope] }],
            "responses": {
                ok: { "description": "OK" },
                "401": { "$ref": "#/components/responses/Problem" },
                "403": { "$ref": "#/components/responses/Problem" },
                "404": { "$ref": "#/components/responses/Problem" },
                "409": { "$ref": "#/components/responses/Problem" },
                "422": { "$ref": "#/components/responses/Problem" }
            }
        })
    };
    let mut contracts = get_op(
        "The contracts the token may see, with their state; filtered by `state`, `customer` (part of the name), `domain`",
        "contracts:read",
    );
    contracts["post"] =
        op("Create a contract (`Idempotency-Key` honoured; `?dry_run=true`: the plan only)", "contracts:write", "201");
    let mut contract = get_op("One contract: its revisions, pending changes and events; `ETag`", "contracts:read");
    contract["put"] =
        op("The contract from `effective` (default today); `If-Match` required", "contracts:write", "200");
    json!({
        "openapi": "3.1.0",
        "info": { "title": "mxshield operator API", "version": "1" },
        "servers": [{ "url": "/api/v1" }],
        "paths": {
            "/contracts": contracts,
            "/contracts/{id}": contract,
            "/contracts/export": get_op("Every contract the token may see as a contracts file (TOML)", "contracts:read"),
            "/contracts/apply": { "post": op("A contracts file (TOML body) planned and applied as `contracts apply` (`dry_run`, `prune`, `effective`, `reason`)", "contracts:write", "200") },
            "/contracts/{id}/accounts": { "post": op("Accounts of one domain added and removed in one change (`domain`, `add`, `remove`, `effective`, `reason`)", "contracts:write", "200") },
            "/contracts/{id}/cancellation": { "post": op("The cancellation quote (`?dry_run=true`, contracts:read), then the cancellation", "contracts:write", "200") },
            "/contracts/{id}/revisions/{rev}": { "delete": op("Withdraw a change or a cancellation scheduled for a later day", "contracts:write", "200") },
            "/domains/{name}": get_op("Which contract holds a domain", "contracts:read"),
            "/log": get_op("Search the message log: since (required) and until at most 31 days apart, the `log search` filters, limit (1-500), cursor; newest first, `next` names the next page", "log:read"),
            "/log/stats": get_op("Per hour or day: messages received by direction, verdict and action, infected, refused, bytes, recipients' outcomes — from the roll-ups (since default 24h, at most 31 days; bucket hour|day; contract)", "log:read"),
            "/log/{queue_id}": get_op("One message of the log with its parts and recipients, every delivery outcome as it happened (`timeline`), and the warnings and DSNs generated about it (`related`)", "log:read"),
            "/queue": get_op("A node's queued messages, oldest first (`node=`: another node's, through its admin listener; also on the other queue routes)", "queue:read"),
            "/price_tables": get_op("The price tables as configured, each with its versions by effective day (ranges, monthly fees, minimum term, early-termination fee and tax, proration)", "billing:read"),
            "/statements": get_op("The month's draft statements (`month=YYYY-MM`; `format=csv` for CSV)", "billing:read"),
            "/statements/issue": { "post": op("Issue the month's statements: numbered, frozen; a changed one issued again as its correction", "billing:write", "200") },
            "/statements/issued": get_op("The statements issued (`month=`; `format=csv`)", "billing:read"),
            "/statements/issued/{number}": get_op("One issued statement as issued (`format=csv`)", "billing:read"),
            "/signatures": get_op("This node's signature updater (release in use, source, key, last check, last refused) and the release each node runs", "nodes:read"),
            "/nodes": get_op("Every node: state, signature release and age, contracts generation, queue", "nodes:read"),
            "/queue/{id}": {
                "get": get_op("One queued message: envelope, recipients' states, header", "queue:read")["get"].clone(),
                "delete": op("Delete a queued message without delivery; `reason` required", "queue:write", "200"),
            },
            "/queue/flush": { "post": op("Retry every deferred message now: `?dry_run=true` first, then `?confirm=` with its value", "queue:write", "200") },
            "/openapi.json": get_op("This description", "any"),
            "/conditions": get_op("The conditions of use measured per contract (`contract=`): bulk, undeliverable, spam rejections, spam score, open relay — each with its level, state (open, acknowledged, cleared), window, counts, thresholds, first and last seen, evidence", "contracts:read"),
            "/conditions/{contract}/{kind}/clear": { "post": op("Clear a finding (`undeliverable`, `spam-rejections`, `spam-score`, `bulk`, `open-relay`): its measure counts only what happens from now on, so a held contract can send again; `reason` required; audited", "contracts:write", "200") },
            "/conditions/{contract}/{kind}/acknowledge": { "post": op("Acknowledge a finding: the operator has seen it; it stays open (and keeps holding mail under `defer` or `refuse`); `reason` optional; audited", "contracts:write", "200") },
            "/audit": get_op("The audit log, newest first: who (`actor`, part of it), `action`, `target`, `since`, `limit` (1-1000, default 100) — every state-changing request of the API, the console and the CLI, with its client address, before and after", "admin:read"),
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": { "Problem": {
                "description": "An RFC 9457 problem",
                "content": { "application/problem+json": { "schema": {
                    "type": "object",
                    "properties": {
                        "type": { "type": "string" }, "title": { "type": "string" },
                        "status": { "type": "integer" }, "detail": { "type": "string" },
                        "errors": { "type": "array" }
                    }
                }}}
            }}
        }
    })
}

/// A contract as the API shows it.
fn contract_json(c: &contracts::Contract, scheduled: &[contracts::Scheduled], today: chrono::NaiveDate) -> Value {
    json!({
        "id": c.id,
        "customer": c.customer,
        "state": contracts::state_on(c, scheduled, today),
        "accounts_limit": c.accounts_limit,
        "accounts_used": c.accounts_used(),
        "starts": c.starts,
        "ends": c.ends,
        "functions": c.functions.names(),
        "price_table": c.price_table.as_deref().unwrap_or(rating::PriceBook::DEFAULT),
        "sending_servers": c.sending_servers.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "encrypted_attachments": c.encrypted.as_str(),
        "unreadable_attachments": c.unreadable.as_str(),
        "domains": c.domains.iter().map(|d| json!({
            "name": d.name,
            "receiving_servers": d.receiving_servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "accounts": d.accounts,
        })).collect::<Vec<_>>(),
    })
}

/// How the admin listener serves connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// TLS on every connection (`[admin] tls`), with the SMTP listener's certificate.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connections open at once; a further one waits in the kernel's queue until one closes.
    pub max_connections: usize,
    /// How long a client may take for the TLS handshake and for each request's header.
    pub header_timeout: std::time::Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { tls: None, max_connections: 64, header_timeout: std::time::Duration::from_secs(10) }
    }
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Serves `router` on `listener` until `shutdown` completes (then lets the requests in flight
/// finish, for at most 5 seconds): HTTP/1.1, optionally over TLS, at most
/// `options.max_connections` connections at once, each request's header within
/// `options.header_timeout` (a client that trickles its header is cut off, so a few slow
/// clients cannot hold the operator out). Handlers see the peer as `ConnectInfo`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // out of descriptors, say: wait a little rather than spin
                    tracing::warn!(event = "admin_accept_failed", error = %e);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let (router, tls, timeout, mut stop) =
            (router.clone(), options.tls.clone(), options.header_timeout, stop_rx.clone());
        connections.spawn(async move {
            let _permit = permit;
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    _ => return,
                },
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), req)
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeout);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
