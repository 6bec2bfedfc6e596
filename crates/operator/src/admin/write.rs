//! The contract routes that change something: create, change with an effective date, cancel
//! (with its quote), withdraw a scheduled revision. Each goes through the same function as the
//! CLI (`apply_contracts`, `cancel`, `withdraw`), so the rules and the words are the CLI's;
//! validation problems come back all at once with JSON pointers into the request. A change
//! needs `If-Match` with the contract's `ETag`; a creation may carry `Idempotency-Key`. Every
//! request, accepted or refused, is written to the audit log with the contract before and after.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;

use super::{AdminState, Problem, Visibility, authorize};
use crate::store::{AuditEntry, Resource, Token};
use crate::{ApplyOptions, CancelRequest, OperatorError};

/// `?dry_run=true`: the plan or the quote only.
#[derive(Debug, Default, Deserialize)]
pub(super) struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

/// The contract's `ETag`: a hash of its stored form and the changes scheduled for it.
pub(super) fn etag(c: &contracts::Contract, scheduled: &[contracts::Scheduled]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(contracts::to_toml(c).as_bytes());
    for s in scheduled.iter().filter(|s| s.id == c.id) {
        h.update(format!("{}:{}:", s.rev, s.effective_from).as_bytes());
        h.update(s.contract.as_ref().map(contracts::to_toml).unwrap_or_default().as_bytes());
    }
    let hex: String = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// A contract in the API's JSON as a `[[contract]]` block, with the request's own fields
/// (`effective`, `reason`) taken out.
pub(super) fn to_contract_toml(body: &Value) -> Result<(String, Option<chrono::NaiveDate>, String), Problem> {
    let Some(obj) = body.as_object() else {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Content",
            "the body must be a JSON object",
        ));
    };
    let mut fields = obj.clone();
    let effective = match fields.remove("effective") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.parse::<chrono::NaiveDate>().map_err(|_| {
            invalid(vec![json!({"pointer": "/effective", "detail": format!("{s:?} is not a date (YYYY-MM-DD)")})])
        })?),
        Some(_) => {
            return Err(invalid(vec![json!({"pointer": "/effective", "detail": "must be a date (YYYY-MM-DD)"})]));
        }
    };
    let reason = match fields.remove("reason") {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    // the file's names: domains are [[contract.domain]] blocks
    if let Some(domains) = fields.remove("domains") {
        fields.insert("domain".into(), domains);
    }
    for computed in ["state", "accounts_used", "pending", "revisions", "events"] {
        fields.remove(computed);
    }
    let doc = json!({ "contract": [Value::Object(fields)] });
    let toml = toml::to_string(&doc).map_err(|e| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Content", format!("not a contract: {e}"))
    })?;
    Ok((toml, effective, reason))
}

/// A `422` listing `errors`.
fn invalid(errors: Vec<Value>) -> Problem {
    let mut p = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Unprocessable Content",
        "the contract is not valid; nothing was changed",
    );
    p.errors = errors;
    p
}

/// A contracts-file key path (`contract[0].domain[1].accounts`) as a JSON pointer into the
/// request (`/domains/1/accounts`).
pub(super) fn pointer(key: &str) -> String {
    let rest = key.strip_prefix("contract[0]").unwrap_or(key).trim_start_matches('.');
    let rest = rest.replace("domain[", "domains[");
    let mut out = String::new();
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        match part.split_once('[') {
            Some((name, idx)) => {
                out.push('/');
                out.push_str(name);
                out.push('/');
                out.push_str(idx.trim_end_matches(']'));
            }
            None => {
                out.push('/');
                out.push_str(part);
            }
        }
    }
    out
}

/// The problem for a refused apply, with each issue where it is.
fn refused(e: OperatorError) -> Problem {
    match e {
        OperatorError::InvalidContracts(issues) => {
            invalid(issues.0.iter().map(|i| json!({ "pointer": pointer(&i.key), "detail": i.why })).collect())
        }
        OperatorError::ContractConflicts(problems) => {
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "Conflict",
                "the change conflicts with the stored contracts; nothing was changed",
            );
            p.errors = problems.into_iter().map(|d| json!({ "detail": d })).collect();
            p
        }
        e @ (OperatorError::BackDated { .. } | OperatorError::AlreadyEnds(..) | OperatorError::NoContract(..)) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Content", format!("{e}; nothing was changed"))
        }
        other => other.into(),
    }
}

fn who(token: &Token) -> String {
    format!("{} ({})", token.id, token.name)
}

/// Writes the audit record of a request; a failure to write it is logged, never hidden.
async fn audit(
    st: &AdminState,
    token: &Token,
    action: &str,
    target: &str,
    before: Option<String>,
    after: Option<String>,
    outcome: &str,
) {
    let entry = AuditEntry {
        actor: who(token),
        source: "api".into(),
        action: action.into(),
        target: target.into(),
        before,
        after,
        outcome: outcome.into(),
    };
    st.store.audit_or_log(&entry).await;
}

fn applied_json(a: &crate::Applied, effective: Option<chrono::NaiveDate>) -> Value {
    let p = &a.plan;
    json!({
        "added": p.added,
        "changed": p.changed.iter().map(|(id, f)| json!({ "id": id, "fields": f })).collect::<Vec<_>>(),
        "cancelled": p.cancelled.iter().map(|(id, fee)| json!({ "id": id, "fee": fee })).collect::<Vec<_>>(),
        "carried_over": p.rebased.iter().map(|r| json!({ "id": r.id, "rev": r.rev, "effective_from": r.effective_from })).collect::<Vec<_>>(),
        "price_changes": a.price_changes.iter().map(|(id, b, n)| json!({ "id": id, "before": b, "after": n })).collect::<Vec<_>>(),
        "effective": effective,
        "generation": a.generation,
        "dry_run": a.generation.is_none(),
    })
}

/// `POST /api/v1/contracts`: creates a contract (from its start, or `effective`).
pub(super) async fn create(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<DryRun>,
    Json(body): Json<Value>,
) -> Result<Response, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, true).await?;
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(key) = &key
        && let Some((status, saved)) = st.store.idempotent(&token.id, key).await?
    {
        // the same request again: the first answer, not a second contract
        return Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(saved)).into_response());
    }
    let (toml, effective, reason) = to_contract_toml(&body)?;
    let id = body.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    let (existing, _, _) = st.operator.contracts_visible(&Visibility::All).await?;
    if existing.iter().any(|c| c.id == id) {
        audit(&st, &token, "contracts.create", &id, None, None, "refused: exists").await;
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("contract {id:?} exists: change it with PUT"),
        ));
    }
    let opts = options(&st, &token, effective, reason, q.dry_run);
    match st.operator.apply_contracts(&toml, opts).await {
        Ok(a) => {
            let out = applied_json(&a, effective);
            let status = if q.dry_run { StatusCode::OK } else { StatusCode::CREATED };
            if !q.dry_run {
                audit(&st, &token, "contracts.create", &id, None, Some(toml), "ok").await;
                if let Some(key) = &key {
                    st.store.remember_idempotent(&token.id, key, status.as_u16(), &out).await?;
                }
            }
            let mut resp = (status, Json(out)).into_response();
            if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/contracts/{id}")) {
                resp.headers_mut().insert(header::LOCATION, loc);
            }
            Ok(resp)
        }
        Err(e) => {
            audit(&st, &token, "contracts.create", &id, None, Some(toml), "refused").await;
            Err(refused(e))
        }
    }
}

fn options(
    st: &AdminState,
    token: &Token,
    effective: Option<chrono::NaiveDate>,
    reason: String,
    dry_run: bool,
) -> ApplyOptions {
    ApplyOptions {
        prune: false,
        dry_run,
        today: Some((st.today)()),
        effective,
        actor: who(token),
        reason,
        tables: st.tables.as_ref().clone(),
    }
}

/// `PUT /api/v1/contracts/{id}`: the contract as it is to be from `effective` (today by
/// default); `If-Match` with its current `ETag` is required.
pub(super) async fn change(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DryRun>,
    Json(body): Json<Value>,
) -> Result<Response, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, true).await?;
    let (contracts, scheduled, _) = st.operator.contracts_visible(&Visibility::All).await?;
    let Some(current) = contracts.iter().find(|c| c.id == id) else {
        return Err(Problem::not_found(format!("no contract {id:?}")));
    };
    let tag = etag(current, &scheduled);
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => {
            return Err(Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "Precondition Required",
                "send If-Match with the contract's ETag (GET it first): changes are never made blind",
            ));
        }
        Some(m) if m != tag && m != "*" => {
            audit(&st, &token, "contracts.change", &id, None, None, "refused: stale ETag").await;
            return Err(Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "Precondition Failed",
                "the contract changed since that ETag was given: GET it again",
            ));
        }
        Some(_) => {}
    }
    if body.get("id").and_then(Value::as_str).is_some_and(|b| b != id) {
        return Err(invalid(vec![
            json!({ "pointer": "/id", "detail": format!("must be {id:?}, the contract in the path") }),
        ]));
    }
    let mut body = body;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("id".into(), Value::String(id.clone()));
    }
    let (toml, effective, reason) = to_contract_toml(&body)?;
    let before = contracts::to_toml(current);
    match st.operator.apply_contracts(&toml, options(&st, &token, effective, reason, q.dry_run)).await {
        Ok(a) => {
            if !q.dry_run {
                audit(&st, &token, "contracts.change", &id, Some(before), Some(toml), "ok").await;
            }
            Ok(Json(applied_json(&a, effective)).into_response())
        }
        Err(e) => {
            audit(&st, &token, "contracts.change", &id, Some(before), Some(toml), "refused").await;
            Err(refused(e))
        }
    }
}

/// The body of a cancellation.
#[derive(Debug, Deserialize)]
pub(super) struct CancelBody {
    /// The first day without service.
    on: chrono::NaiveDate,
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/contracts/{id}/cancellation[?dry_run=true]`: the quote, then the cancellation.
pub(super) async fn cancel(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DryRun>,
    Json(body): Json<CancelBody>,
) -> Result<Json<Value>, Problem> {
    // a quote reads; a cancellation writes
    let token = authorize(&st, &headers, Resource::Contracts, !q.dry_run).await?;
    if !Visibility::of(&token).sees(&id) {
        return Err(Problem::not_found(format!("no contract {id:?}")));
    }
    let actor = who(&token);
    let req = CancelRequest {
        today: (st.today)(),
        tables: &st.tables,
        actor: &actor,
        reason: &body.reason,
        dry_run: q.dry_run,
    };
    match st.operator.cancel(&id, body.on, &req).await {
        Ok(quote) => {
            if !q.dry_run {
                audit(
                    &st,
                    &token,
                    "contracts.cancel",
                    &id,
                    None,
                    Some(format!("ends {} fee {}", quote.ends, quote.fee)),
                    "ok",
                )
                .await;
            }
            Ok(Json(json!({
                "contract": quote.contract,
                "customer": quote.customer,
                "starts": quote.starts,
                "ends": quote.ends,
                "min_term_end": quote.min_term_end,
                "monthly_fee": quote.monthly_fee,
                "fee": quote.fee,
                "fee_tax": match quote.fee_tax { rating::TaxCategory::NonTaxable => "non_taxable", rating::TaxCategory::Standard => "standard" },
                "removed": quote.removed,
                "last_lines": quote.last_lines,
                "generation": quote.generation,
                "dry_run": quote.generation.is_none(),
            })))
        }
        Err(OperatorError::NoContract(..)) => Err(Problem::not_found(format!("no contract {id:?} in force then"))),
        Err(e) => {
            if !q.dry_run {
                audit(&st, &token, "contracts.cancel", &id, None, None, "refused").await;
            }
            Err(refused(e))
        }
    }
}

/// `DELETE /api/v1/contracts/{id}/revisions/{rev}`: withdraws a change or a cancellation
/// scheduled for a later day.
pub(super) async fn withdraw(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((id, rev)): Path<(String, i64)>,
) -> Result<Json<Value>, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, true).await?;
    let actor = who(&token);
    match st.operator.withdraw(&id, rev, (st.today)(), &actor, "withdrawn through the API").await {
        Ok(true) => {
            audit(&st, &token, "contracts.withdraw", &format!("{id} revision {rev}"), None, None, "ok").await;
            Ok(Json(json!({ "contract": id, "rev": rev, "withdrawn": true })))
        }
        Ok(false) => Err(Problem::not_found(format!("{id} has no revision {rev} scheduled for a later day"))),
        Err(e) => {
            audit(&st, &token, "contracts.withdraw", &format!("{id} revision {rev}"), None, None, "refused").await;
            Err(refused(e))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_paths_become_json_pointers() {
        assert_eq!(super::pointer("contract[0].accounts_limit"), "/accounts_limit");
        assert_eq!(super::pointer("contract[0].domain[1].accounts"), "/domains/1/accounts");
        assert_eq!(super::pointer("contract[0].sending_servers"), "/sending_servers");
        assert_eq!(super::pointer("contract[0]"), "");
    }
}

/// The body of `POST /api/v1/contracts/{id}/accounts`.
#[derive(Debug, Deserialize)]
pub(super) struct AccountsBody {
    domain: String,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
    effective: Option<chrono::NaiveDate>,
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/contracts/{id}/accounts`: accounts of one domain added and removed in one
/// change (from `effective`, default today), validated like any change (the account limit,
/// the names).
pub(super) async fn accounts(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DryRun>,
    Json(body): Json<AccountsBody>,
) -> Result<Json<Value>, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, true).await?;
    let today = (st.today)();
    let effective = body.effective.unwrap_or(today);
    let (now, scheduled, _) = st.operator.contracts_visible(&Visibility::All).await?;
    let then = contracts::in_force_on(now, &scheduled, effective);
    let Some(mut c) = then.into_iter().find(|c| c.id == id) else {
        return Err(Problem::not_found(format!("no contract {id:?} on {effective}")));
    };
    let before = contracts::to_toml(&c);
    let name = contracts::normalize_domain(&body.domain).unwrap_or_else(|| body.domain.to_ascii_lowercase());
    let Some(d) = c.domains.iter_mut().find(|d| d.name == name) else {
        return Err(invalid(vec![
            json!({ "pointer": "/domain", "detail": format!("contract {id:?} has no domain {name:?}") }),
        ]));
    };
    let mut errors = Vec::new();
    for (i, gone) in body.remove.iter().enumerate() {
        let lower = gone.to_ascii_lowercase();
        match d.accounts.iter().position(|a| *a == lower) {
            Some(at) => {
                d.accounts.remove(at);
            }
            None => errors.push(
                json!({ "pointer": format!("/remove/{i}"), "detail": format!("{gone:?} is not an account of {name}") }),
            ),
        }
    }
    for (i, new) in body.add.iter().enumerate() {
        let lower = new.to_ascii_lowercase();
        if d.accounts.contains(&lower) {
            errors.push(
                json!({ "pointer": format!("/add/{i}"), "detail": format!("{new:?} is already an account of {name}") }),
            );
        } else {
            d.accounts.push(lower);
        }
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let toml = contracts::to_toml(&c);
    let effective = (effective > today).then_some(effective);
    match st.operator.apply_contracts(&toml, options(&st, &token, effective, body.reason, q.dry_run)).await {
        Ok(a) => {
            if !q.dry_run {
                audit(&st, &token, "contracts.accounts", &id, Some(before), Some(toml), "ok").await;
            }
            Ok(Json(applied_json(&a, effective)))
        }
        Err(OperatorError::InvalidContracts(issues)) => {
            audit(&st, &token, "contracts.accounts", &id, Some(before), Some(toml), "refused").await;
            // the file's words, pointed at the request: an over-limit or a bad name
            Err(invalid(issues.0.iter().map(|i| json!({ "pointer": "/add", "detail": i.why })).collect()))
        }
        Err(e) => {
            audit(&st, &token, "contracts.accounts", &id, Some(before), Some(toml), "refused").await;
            Err(refused(e))
        }
    }
}

/// `GET /api/v1/contracts/export`: every contract as a contracts file (TOML), the form
/// `contracts apply` and `POST /api/v1/contracts/apply` read.
pub(super) async fn export(State(st): State<AdminState>, headers: HeaderMap) -> Result<Response, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, false).await?;
    let (contracts, _, _) = st.operator.contracts_visible(&Visibility::of(&token)).await?;
    let text: Vec<String> = contracts.iter().map(contracts::to_toml).collect();
    let mut resp = text.join("\n").into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/toml; charset=utf-8"));
    Ok(resp)
}

/// `?prune=true&effective=YYYY-MM-DD&dry_run=true&reason=…` of the declarative apply.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ApplyQuery {
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    dry_run: bool,
    effective: Option<chrono::NaiveDate>,
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/contracts/apply` with a contracts file (TOML) as the body: the same plan and
/// apply as `mxshield contracts apply` (`dry_run=true`: the plan only; `prune=true`: what the
/// file leaves out is cancelled by the cancellation rules).
pub(super) async fn apply_file(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<ApplyQuery>,
    body: String,
) -> Result<Json<Value>, Problem> {
    let token = authorize(&st, &headers, Resource::Contracts, !q.dry_run).await?;
    if !token.contracts.is_empty() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "a token bound to contracts cannot apply a contracts file",
        ));
    }
    let mut opts = options(&st, &token, q.effective, q.reason, q.dry_run);
    opts.prune = q.prune;
    match st.operator.apply_contracts(&body, opts).await {
        Ok(a) => {
            if !q.dry_run {
                audit(&st, &token, "contracts.apply", "(file)", None, Some(body), "ok").await;
            }
            Ok(Json(applied_json(&a, q.effective)))
        }
        Err(OperatorError::InvalidContracts(issues)) => {
            // a file: its lines, as the CLI gives them
            Err(invalid(issues.0.iter().map(|i| json!({ "line": i.line, "key": i.key, "detail": i.why })).collect()))
        }
        Err(e) => {
            if !q.dry_run {
                audit(&st, &token, "contracts.apply", "(file)", None, Some(body), "refused").await;
            }
            Err(refused(e))
        }
    }
}
