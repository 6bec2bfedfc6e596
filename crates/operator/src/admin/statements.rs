//! The statement routes: a month's drafts, issuing them (numbered, frozen; a changed one
//! issued again as its correction), the issued ones — as JSON, or CSV with `?format=csv`,
//! through the same functions and the same CSV as `mxshield billing`. A token bound to
//! contracts reads the statements that bill them (its customer's), and issues none. The
//! price tables statements are priced by, as configured.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminState, Problem, authorize};
use crate::store::{AuditEntry, Resource};
use crate::{OperatorError, StatementDoc, statement_number, statements_csv};

/// `?month=YYYY-MM&format=csv`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct StatementQuery {
    month: Option<String>,
    format: Option<String>,
}

fn month_of(m: Option<&str>) -> Result<chrono::NaiveDate, Problem> {
    let bad = |detail: String| {
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Content", "the month is not valid");
        p.errors = vec![json!({ "pointer": "/month", "detail": detail })];
        p
    };
    let m = m.ok_or_else(|| bad("required: the month (YYYY-MM)".into()))?;
    chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
        .map_err(|_| bad(format!("{m:?} is not a month (YYYY-MM)")))
}

/// The caller's token, and the contracts whose customers' statements it may read (`None`:
/// all). A token bound to contracts reads the statements that bill them — its customer's —
/// and issues none (bound tokens are read-only).
async fn billing_reader(
    st: &AdminState,
    headers: &HeaderMap,
    write: bool,
) -> Result<(crate::store::Token, Option<Vec<String>>), Problem> {
    let token = authorize(st, headers, Resource::Billing, write).await?;
    let bound = (!token.contracts.is_empty()).then(|| token.contracts.clone());
    Ok((token, bound))
}

/// Whether a statement may be shown to a caller bound to `bound`: one of its lines bills one
/// of those contracts.
fn visible(bound: &Option<Vec<String>>, d: &StatementDoc) -> bool {
    bound.as_ref().is_none_or(|own| d.lines.iter().any(|l| own.contains(&l.contract)))
}

async fn drafts(st: &AdminState, month: chrono::NaiveDate) -> Result<Vec<StatementDoc>, Problem> {
    if st.tables.is_empty() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Conflict",
            "the configuration has no [[billing.price_table]]: nothing to price contracts with",
        ));
    }
    match st.operator.statement_docs(month, &st.tables, st.rounding, &st.issuer).await {
        Ok(d) => Ok(d),
        Err(e @ (OperatorError::Rating(_) | OperatorError::InvalidRevision(_))) => {
            Err(Problem::new(StatusCode::CONFLICT, "Conflict", e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

fn csv_response(text: String) -> Response {
    let mut resp = text.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    resp
}

fn issued_json(i: &contracts::IssuedStatement, d: &StatementDoc) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("number".into(), statement_number(i.number).into());
        obj.insert("issued_at".into(), i.issued_at.clone().into());
        obj.insert("issued_by".into(), i.issued_by.clone().into());
        obj.insert("corrects".into(), i.corrects.map(statement_number).into());
    }
    v
}

/// `GET /api/v1/statements?month=YYYY-MM[&format=csv]`: the month's drafts.
pub(super) async fn list_drafts(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<StatementQuery>,
) -> Result<Response, Problem> {
    let (_, bound) = billing_reader(&st, &headers, false).await?;
    let mut docs = drafts(&st, month_of(q.month.as_deref())?).await?;
    docs.retain(|d| visible(&bound, d));
    if q.format.as_deref() == Some("csv") {
        let shown: Vec<_> = docs.iter().map(|d| (None, d)).collect();
        return Ok(csv_response(statements_csv(&shown)));
    }
    Ok(Json(json!({ "statements": docs })).into_response())
}

/// The body of `POST /api/v1/statements/issue`.
#[derive(Debug, Deserialize)]
pub(super) struct IssueBody {
    month: String,
}

/// `POST /api/v1/statements/issue` `{"month": "YYYY-MM"}`.
pub(super) async fn issue(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Json(body): Json<IssueBody>,
) -> Result<Json<Value>, Problem> {
    let (token, _) = billing_reader(&st, &headers, true).await?;
    let docs = drafts(&st, month_of(Some(&body.month))?).await?;
    let actor = format!("{} ({})", token.id, token.name);
    let issued = st.operator.issue_statements(&docs, &actor).await?;
    let mut out = Vec::new();
    for ((i, new), d) in issued.iter().zip(&docs) {
        if *new {
            let entry = AuditEntry {
                actor: actor.clone(),
                source: "api".into(),
                action: "statements.issue".into(),
                target: statement_number(i.number),
                before: i.corrects.map(statement_number),
                after: Some(format!("{} {} total {}", i.month, i.customer, i.total)),
                outcome: "ok".into(),
            };
            st.store.audit_or_log(&entry).await;
        }
        let mut v = issued_json(i, d);
        v["newly_issued"] = (*new).into();
        out.push(v);
    }
    Ok(Json(json!({ "statements": out })))
}

/// `GET /api/v1/statements/issued[?month=YYYY-MM][&format=csv]`.
pub(super) async fn list_issued(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<StatementQuery>,
) -> Result<Response, Problem> {
    let (_, bound) = billing_reader(&st, &headers, false).await?;
    if let Some(m) = q.month.as_deref() {
        month_of(Some(m))?;
    }
    let mut issued = st.operator.issued_statements(q.month.as_deref()).await?;
    issued.retain(|(_, d)| visible(&bound, d));
    if q.format.as_deref() == Some("csv") {
        let shown: Vec<_> = issued.iter().map(|(i, d)| (Some(i), d)).collect();
        return Ok(csv_response(statements_csv(&shown)));
    }
    Ok(Json(json!({ "statements": issued.iter().map(|(i, d)| issued_json(i, d)).collect::<Vec<_>>() })).into_response())
}

/// `GET /api/v1/statements/issued/{number}[?format=csv]` (`S-000012` or `12`).
pub(super) async fn one_issued(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(number): Path<String>,
    Query(q): Query<StatementQuery>,
) -> Result<Response, Problem> {
    let (_, bound) = billing_reader(&st, &headers, false).await?;
    let n: Option<i64> = number.trim_start_matches("S-").trim_start_matches("s-").parse().ok();
    let issued = st.operator.issued_statements(None).await?;
    // another customer's statement is as missing as one never issued
    let Some((i, d)) = issued.iter().find(|(i, d)| Some(i.number) == n && visible(&bound, d)) else {
        return Err(Problem::not_found(format!("no statement {number} has been issued")));
    };
    if q.format.as_deref() == Some("csv") {
        return Ok(csv_response(statements_csv(&[(Some(i), d)])));
    }
    Ok(Json(issued_json(i, d)).into_response())
}

/// `GET /api/v1/price_tables`: the price tables as configured (`[[billing.price_table]]`),
/// each with its versions by the day they take effect — ranges of accounts and monthly fees,
/// minimum term, early-termination fee and its tax category, proration.
pub(super) async fn price_tables(State(st): State<AdminState>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    authorize(&st, &headers, Resource::Billing, false).await?;
    let tables: Vec<Value> = st
        .tables
        .tables
        .iter()
        .map(|(name, versioned)| {
            let mut versions = versioned.versions.clone();
            versions.sort_by_key(|(from, _)| *from);
            json!({
                "name": name,
                "default": name == rating::PriceBook::DEFAULT,
                "versions": versions.iter().map(|(from, t)| json!({ "from": from, "table": t })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "price_tables": tables })))
}
