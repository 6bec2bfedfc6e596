//! The admin API called in-process (the router itself, over a real SQLite store): every route's
//! authentication and scope refusals, tenant isolation for a token bound to a contract,
//! problem+json bodies, and an OpenAPI description that names every route.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Datelike;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mxshield_operator::admin::{AdminState, router};
use mxshield_operator::store::{AdminStore, Scope};
use mxshield_operator::{ApplyOptions, Operator, Paths};
use serde_json::Value;
use tower::ServiceExt;

const CONTRACTS: &str = r#"
[[contract]]
id = "acme"
customer = "ACME Corp."
accounts_limit = 5
starts = "2026-01-01"
[[contract.domain]]
name = "acme.example"
receiving_servers = ["192.0.2.1"]
accounts = ["alice"]

[[contract]]
id = "beta"
customer = "Beta K.K."
accounts_limit = 5
starts = "2026-01-01"
[[contract.domain]]
name = "beta.example"
receiving_servers = ["192.0.2.2"]
accounts = ["bob"]
"#;

/// Every route that needs a token, as a GET path.
const ROUTES: [&str; 4] =
    ["/api/v1/contracts", "/api/v1/contracts/acme", "/api/v1/domains/acme.example", "/api/v1/openapi.json"];

struct World {
    app: axum::Router,
    store: AdminStore,
    _dir: std::path::PathBuf,
}

/// The operator's day, as the store records revisions on it (the tests' dates follow it, so
/// that they hold on any day they run).
fn today() -> chrono::NaiveDate {
    contracts::Calendar::default().today()
}

/// `n` days from [`today`], as a form or the API writes it.
fn day(n: i64) -> String {
    (today() + chrono::Duration::days(n)).to_string()
}

/// The month before [`today`]'s (`YYYY-MM`): a month the contracts starting 2026-01-01 were billed.
fn last_month() -> String {
    let first = today().with_day(1).unwrap();
    first.pred_opt().unwrap().format("%Y-%m").to_string()
}

async fn world(name: &str) -> World {
    world_with(name, false).await
}

/// A world where tokens bound to contracts may read their contracts' log (or not).
async fn world_with(name: &str, bound_tokens_read_log: bool) -> World {
    let dir = std::env::temp_dir().join(format!("mxshield-admin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("contracts.db").display());
    let operator = Operator::new(Paths {
        spool: dir.join("spool"),
        contracts: url.clone(),
        message_log: msglog::LogLocation::File(dir.join("log.db")),
    });
    operator.apply_contracts(CONTRACTS, ApplyOptions::default()).await.unwrap();
    let store = AdminStore::connect(&url).await.unwrap();
    let today = today();
    let app = router(AdminState {
        operator: Arc::new(operator),
        store: store.clone(),
        today: Arc::new(move || today),
        tables: Arc::new(tables()),
        rounding: rating::Rounding::Floor,
        issuer: mxshield_operator::Issuer::default(),
        node: "mx-test".into(),
        down_after: std::time::Duration::from_secs(30),
        signatures: None,
        bound_tokens_read_log,
        conditions: Default::default(),
        metrics: None,
    });
    World { app, store, _dir: dir }
}

/// One price table: 3,000 yen a month, one month minimum, 5,000 yen to leave earlier.
fn tables() -> rating::PriceBook {
    let table = rating::PriceTable {
        tiers: vec![rating::Tier { min_accounts: 1, max_accounts: None, monthly_fee: 3000 }],
        min_term_months: 1,
        early_termination: rating::EarlyTermination::Fixed(5000),
        early_termination_tax: rating::TaxCategory::NonTaxable,
        proration: rating::Proration::None,
    };
    let day = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    rating::PriceBook { tables: [("standard".to_string(), rating::Versioned { versions: vec![(day, table)] })].into() }
}

async fn token(w: &World, scopes: &str, contracts: &[&str]) -> String {
    let scopes: BTreeSet<Scope> = scopes.split(',').map(|s| s.parse().unwrap()).collect();
    let bound: Vec<String> = contracts.iter().map(|s| s.to_string()).collect();
    w.store.create_token("test", &scopes, &bound, None, "tester").await.unwrap().1
}

async fn get(w: &World, path: &str, token: Option<&str>) -> (StatusCode, String, Value) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = w.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, ctype, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_is_open_everything_else_needs_a_valid_token() {
    let w = world("auth").await;
    assert_eq!(get(&w, "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(get(&w, "/readyz", None).await.0, StatusCode::OK);
    let good = token(&w, "contracts:read", &[]).await;
    let scopes: BTreeSet<Scope> = ["contracts:read".parse().unwrap()].into();
    let (made, revoked) = w.store.create_token("to revoke", &scopes, &[], None, "tester").await.unwrap();
    assert!(w.store.revoke(&made.id).await.unwrap());
    assert!(!w.store.revoke(&made.id).await.unwrap(), "once");
    let expired = {
        let scopes: BTreeSet<Scope> = ["contracts:read".parse().unwrap()].into();
        let past = chrono::Utc::now() - chrono::Duration::seconds(1);
        w.store.create_token("old", &scopes, &[], Some(past), "tester").await.unwrap().1
    };
    for route in ROUTES {
        for bad in [None, Some("mxs_not-a-token"), Some(revoked.as_str()), Some(expired.as_str()), Some("Basic x")] {
            let (status, ctype, body) = get(&w, route, bad).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{route} with {bad:?}");
            assert_eq!(ctype, "application/problem+json", "{route}");
            assert_eq!(body["status"], 401, "{route}: {body}");
        }
        let (status, _, body) = get(&w, route, Some(&good)).await;
        assert_eq!(status, StatusCode::OK, "{route}: {body}");
    }
    // the use is recorded
    let used = w.store.tokens().await.unwrap();
    assert!(used.iter().any(|t| t.name == "test" && t.last_used_at.is_some()), "{used:?}");
}

#[tokio::test]
async fn a_token_without_the_scope_is_refused() {
    let w = world("scope").await;
    let log_only = token(&w, "log:read", &[]).await;
    for route in &ROUTES[..3] {
        let (status, ctype, body) = get(&w, route, Some(&log_only)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{route}");
        assert_eq!(ctype, "application/problem+json");
        assert!(body["detail"].as_str().unwrap().contains("contracts:read"), "{body}");
    }
    // write includes read
    let writer = token(&w, "contracts:write", &[]).await;
    assert_eq!(get(&w, "/api/v1/contracts", Some(&writer)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_token_bound_to_a_contract_sees_only_that_contract() {
    let w = world("tenant").await;
    let acme = token(&w, "contracts:read", &["acme"]).await;
    let (_, _, list) = get(&w, "/api/v1/contracts", Some(&acme)).await;
    let ids: Vec<&str> = list["contracts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acme"]);
    // another tenant's data answers as if it did not exist, on every route that names it
    for route in ["/api/v1/contracts/beta", "/api/v1/domains/beta.example", "/api/v1/domains/BETA.Example."] {
        let (status, ctype, body) = get(&w, route, Some(&acme)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{route}: {body}");
        assert_eq!(ctype, "application/problem+json");
        assert!(!body.to_string().contains("Beta K.K."), "{body}");
    }
    let (status, _, own) = get(&w, "/api/v1/contracts/acme", Some(&acme)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["state"], "active");
    assert_eq!(own["revisions"][0]["changed"][0], "created");
    assert!(own["events"].as_array().unwrap().iter().any(|e| e["kind"] == "activated"), "{own}");
    // an unbound token sees both
    let all = token(&w, "contracts:read", &[]).await;
    let (_, _, list) = get(&w, "/api/v1/contracts", Some(&all)).await;
    assert_eq!(list["contracts"].as_array().unwrap().len(), 2);
    let (_, _, owner) = get(&w, "/api/v1/domains/beta.example", Some(&all)).await;
    assert_eq!((owner["contract"].as_str(), owner["customer"].as_str()), (Some("beta"), Some("Beta K.K.")));
    // a bound token is read-only whatever its scopes say
    let bound_writer = w
        .store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| !t.contracts.is_empty())
        .map(|mut t| {
            t.scopes.insert("contracts:write".parse().unwrap());
            t
        })
        .unwrap();
    assert!(!bound_writer.allows(mxshield_operator::store::Resource::Contracts, true));
    // nor does it read what is the operator's alone, whatever its scopes say
    let wide = token(&w, "queue:read,nodes:read,admin:read,metrics:read", &["acme"]).await;
    for route in [
        "/api/v1/queue",
        "/api/v1/queue?node=mx-test",
        "/api/v1/nodes",
        "/api/v1/signatures",
        "/api/v1/audit",
        "/metrics",
    ] {
        let (status, _, body) = get(&w, route, Some(&wide)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{route}: {body}");
    }
}

/// Every route of the API: method and path as the description names them.
const DESCRIBED: [(&str, &str); 29] = [
    ("get", "/contracts"),
    ("post", "/contracts"),
    ("get", "/contracts/{id}"),
    ("put", "/contracts/{id}"),
    ("post", "/contracts/{id}/cancellation"),
    ("get", "/contracts/export"),
    ("post", "/contracts/apply"),
    ("post", "/contracts/{id}/accounts"),
    ("delete", "/contracts/{id}/revisions/{rev}"),
    ("get", "/domains/{name}"),
    ("get", "/log"),
    ("get", "/log/stats"),
    ("get", "/log/{queue_id}"),
    ("get", "/queue"),
    ("get", "/nodes"),
    ("get", "/signatures"),
    ("get", "/statements"),
    ("post", "/statements/issue"),
    ("get", "/statements/issued"),
    ("get", "/statements/issued/{number}"),
    ("get", "/queue/{id}"),
    ("delete", "/queue/{id}"),
    ("post", "/queue/flush"),
    ("get", "/openapi.json"),
    ("get", "/price_tables"),
    ("get", "/audit"),
    ("get", "/conditions"),
    ("post", "/conditions/{contract}/{kind}/clear"),
    ("post", "/conditions/{contract}/{kind}/acknowledge"),
];

#[tokio::test]
async fn the_openapi_description_names_every_route() {
    let w = world("openapi").await;
    let t = token(&w, "contracts:read", &[]).await;
    let (status, _, doc) = get(&w, "/api/v1/openapi.json", Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            described.push((method.clone(), path.clone()));
        }
    }
    described.sort();
    let mut want: Vec<(String, String)> = DESCRIBED.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    want.sort();
    assert_eq!(described, want, "the description and the routes differ");
    // and each described route exists: answered by its handler, not by the fallback
    for (method, path) in DESCRIBED {
        let concrete = format!("/api/v1{path}")
            .replace("{id}", "acme")
            .replace("{name}", "acme.example")
            .replace("{rev}", "9")
            .replace("{number}", "S-000001")
            .replace("{queue_id}", "0640F3A2B1C4D00A1001")
            .replace("/queue/{id}", "/queue/0640F3A2B1C4D00A1001")
            .replace("{contract}", "acme")
            .replace("{kind}", "bulk");
        // without a token: refused, as a problem, whatever the route
        let anonymous = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&concrete)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let resp = w.app.clone().oneshot(anonymous).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {concrete} without a token");
        let req = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&concrete)
            .header("authorization", format!("Bearer {t}"))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let resp = w.app.clone().oneshot(req).await.unwrap();
        assert_ne!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {concrete} is not routed");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("no such route"), "{method} {concrete} is not routed");
    }
    // an unknown route: a problem too
    let (status, ctype, _) = get(&w, "/api/v1/nothing", Some(&t)).await;
    assert_eq!((status, ctype.as_str()), (StatusCode::NOT_FOUND, "application/problem+json"));
}

#[test]
fn scopes_are_resource_and_verb() {
    let s: Scope = "queue:write".parse().unwrap();
    assert_eq!(s.to_string(), "queue:write");
    assert!("queue".parse::<Scope>().unwrap_err().contains("resource:verb"));
    assert!("money:read".parse::<Scope>().unwrap_err().contains("unknown resource"));
    assert!("log:delete".parse::<Scope>().unwrap_err().contains("read or write"));
}

/// The database away: the listener still answers — alive, not ready, the API `503` — and
/// recovers by itself when it returns (the store connects at first use, retried at the next).
#[tokio::test]
async fn without_its_database_the_api_is_unavailable_not_dead() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("postgres://postgres@{closed}/test");
    let operator = Operator::new(Paths {
        spool: std::env::temp_dir().join("mxshield-admin-away-spool"),
        contracts: url.clone(),
        message_log: msglog::LogLocation::File(std::env::temp_dir().join("mxshield-admin-away.db")),
    });
    let today = today();
    let app = router(AdminState {
        operator: Arc::new(operator),
        store: AdminStore::lazy(&url),
        today: Arc::new(move || today),
        tables: Arc::new(tables()),
        rounding: rating::Rounding::Floor,
        issuer: mxshield_operator::Issuer::default(),
        node: "mx-test".into(),
        down_after: std::time::Duration::from_secs(30),
        signatures: None,
        bound_tokens_read_log: false,
        conditions: Default::default(),
        metrics: None,
    });
    let w = World { app, store: AdminStore::lazy(&url), _dir: std::env::temp_dir() };
    assert_eq!(get(&w, "/healthz", None).await.0, StatusCode::OK);
    let (status, ctype, _) = get(&w, "/readyz", None).await;
    assert_eq!((status, ctype.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json"));
    let (status, _, body) = get(&w, "/api/v1/contracts", Some("mxs_anything")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

async fn send(
    w: &World,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = w.app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A GET whose body is not JSON: its header fields and its text.
async fn raw(w: &World, path: &str, token: &str) -> (axum::http::HeaderMap, String) {
    let req = Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
    let resp = w.app.clone().oneshot(req).await.unwrap();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn gamma() -> Value {
    serde_json::json!({
        "id": "gamma", "customer": "Gamma", "accounts_limit": 2, "starts": day(-3),
        "domains": [{ "name": "gamma.example", "receiving_servers": ["192.0.2.3"], "accounts": ["carol"] }]
    })
}

/// Creating, changing with an ETag, cancelling with a quote and withdrawing through the API:
/// the CLI's rules and words, every problem at once with JSON pointers, nothing changed on
/// error, each request audited.
#[tokio::test]
async fn contracts_are_created_changed_and_cancelled_through_the_api() {
    let w = world("write").await;
    let writer = token(&w, "contracts:write", &[]).await;
    let reader = token(&w, "contracts:read", &[]).await;
    // a reader may not write; a bound token never
    assert_eq!(send(&w, "POST", "/api/v1/contracts", &reader, &[], gamma()).await.0, StatusCode::FORBIDDEN);
    // every problem at once, pointing into the request
    let mut bad = gamma();
    bad["accounts_limit"] = 0.into();
    bad["sending_servers"] = serde_json::json!(["0.0.0.0/0"]);
    bad["domains"][0]["accounts"] = serde_json::json!(["a%b"]);
    let (status, _, body) = send(&w, "POST", "/api/v1/contracts", &writer, &[], bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert!(pointers.contains(&"/sending_servers") && pointers.contains(&"/domains/0/accounts"), "{body}");
    // created once, whatever the number of retries with the same key
    let key = [("idempotency-key", "form-118")];
    let (status, headers, first) = send(&w, "POST", "/api/v1/contracts", &writer, &key, gamma()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(headers["location"], "/api/v1/contracts/gamma");
    assert_eq!(first["added"][0], "gamma");
    let (status, _, again) = send(&w, "POST", "/api/v1/contracts", &writer, &key, gamma()).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));
    let (status, _, _) = send(&w, "POST", "/api/v1/contracts", &writer, &[], gamma()).await;
    assert_eq!(status, StatusCode::CONFLICT, "a second creation without the key is a conflict");
    // a change needs the ETag it was based on
    let mut change = gamma();
    change["domains"][0]["accounts"] = serde_json::json!(["carol", "dave"]);
    change["effective"] = day(40).into();
    change["reason"] = "form 119".into();
    let (status, _, _) = send(&w, "PUT", "/api/v1/contracts/gamma", &writer, &[], change.clone()).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    let (status, _, _) =
        send(&w, "PUT", "/api/v1/contracts/gamma", &writer, &[("if-match", "\"stale\"")], change.clone()).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (headers, text) = raw(&w, "/api/v1/contracts/gamma", &reader).await;
    assert!(text.contains("\"gamma\""));
    let tag = headers["etag"].to_str().unwrap().to_string();
    let (status, _, plan) =
        send(&w, "PUT", "/api/v1/contracts/gamma", &writer, &[("if-match", &tag)], change.clone()).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["changed"][0]["fields"][0], "accounts");
    // scheduled: pending in the contract, with who and why in its history
    let (_, _, detail) = get(&w, "/api/v1/contracts/gamma", Some(&reader)).await;
    assert_eq!(detail["pending"][0]["effective_from"], day(40));
    let rev = detail["pending"][0]["rev"].as_i64().unwrap();
    let scheduled = detail["revisions"].as_array().unwrap().iter().find(|r| r["rev"] == rev).unwrap().clone();
    assert_eq!(scheduled["reason"], "form 119");
    assert!(scheduled["actor"].as_str().unwrap().starts_with("tok_"), "{scheduled}");
    // the old ETag is stale now
    let (status, _, _) = send(&w, "PUT", "/api/v1/contracts/gamma", &writer, &[("if-match", &tag)], change).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    // withdrawn, once
    let path = format!("/api/v1/contracts/gamma/revisions/{rev}");
    assert_eq!(send(&w, "DELETE", &path, &writer, &[], Value::Null).await.0, StatusCode::OK);
    assert_eq!(send(&w, "DELETE", &path, &writer, &[], Value::Null).await.0, StatusCode::NOT_FOUND);
    // cancellation: the quote (a reader may ask), then the cancellation
    let on = serde_json::json!({ "on": day(6), "reason": "letter" });
    let (status, _, quote) =
        send(&w, "POST", "/api/v1/contracts/gamma/cancellation?dry_run=true", &reader, &[], on.clone()).await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert_eq!((quote["fee"].as_i64(), quote["dry_run"].as_bool()), (Some(5000), Some(true)));
    assert_eq!(
        send(&w, "POST", "/api/v1/contracts/gamma/cancellation", &reader, &[], on.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _, done) = send(&w, "POST", "/api/v1/contracts/gamma/cancellation", &writer, &[], on).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(done["generation"].is_number());
    let (_, _, detail) = get(&w, "/api/v1/contracts/gamma", Some(&reader)).await;
    assert_eq!(detail["state"], "cancellation scheduled");
    // the audit log has every request, refused ones included
    let audit = w.store.audit_log(100).await.unwrap();
    let actions: Vec<(&str, &str)> = audit.iter().map(|(_, e)| (e.action.as_str(), e.outcome.as_str())).collect();
    for want in [
        ("contracts.create", "ok"),
        ("contracts.create", "refused"),
        ("contracts.change", "refused: stale ETag"),
        ("contracts.change", "ok"),
        ("contracts.withdraw", "ok"),
        ("contracts.cancel", "ok"),
    ] {
        assert!(actions.contains(&want), "{want:?} not in {actions:?}");
    }
    let changed = audit.iter().find(|(_, e)| e.action == "contracts.change" && e.outcome == "ok").unwrap();
    assert!(changed.1.before.as_deref().unwrap().contains("accounts = [\"carol\"]"));
    assert!(changed.1.after.as_deref().unwrap().contains("\"dave\""));
}

/// Statements through the API: the drafts, issuing (once; again only when the figures
/// changed), the issued ones as JSON and CSV — the CLI's functions and CSV (issue 15).
#[tokio::test]
async fn statements_are_drafted_issued_and_read_through_the_api() {
    let w = world("statements").await;
    let reader = token(&w, "billing:read", &[]).await;
    let writer = token(&w, "billing:write", &[]).await;
    let (status, _, drafts) = get(&w, &format!("/api/v1/statements?month={}", last_month()), Some(&reader)).await;
    assert_eq!(status, StatusCode::OK, "{drafts}");
    let totals: Vec<i64> =
        drafts["statements"].as_array().unwrap().iter().map(|s| s["totals"]["total"].as_i64().unwrap()).collect();
    assert_eq!(totals, [3300, 3300], "3,000 yen a month and 10 % tax, for each customer");
    assert_eq!(get(&w, "/api/v1/statements", Some(&reader)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    // issued once
    let month = serde_json::json!({ "month": last_month() });
    assert_eq!(
        send(&w, "POST", "/api/v1/statements/issue", &reader, &[], month.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _, issued) = send(&w, "POST", "/api/v1/statements/issue", &writer, &[], month.clone()).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let numbers: Vec<&str> =
        issued["statements"].as_array().unwrap().iter().map(|s| s["number"].as_str().unwrap()).collect();
    assert_eq!(numbers, ["S-000001", "S-000002"]);
    let (_, _, again) = send(&w, "POST", "/api/v1/statements/issue", &writer, &[], month).await;
    assert!(again["statements"].as_array().unwrap().iter().all(|s| s["newly_issued"] == false), "{again}");
    // read back as issued, as JSON and as CSV
    let (status, _, one) = get(&w, "/api/v1/statements/issued/S-000002", Some(&reader)).await;
    assert_eq!((status, one["customer"].as_str()), (StatusCode::OK, Some("Beta K.K.")));
    let (headers, text) =
        raw(&w, &format!("/api/v1/statements/issued?month={}&format=csv", last_month()), &reader).await;
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let csv = text;
    assert!(csv.starts_with("statement,customer,month,"), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.contains(",total,") && l.contains(",3300,")).count(), 2, "{csv}");
    assert_eq!(get(&w, "/api/v1/statements/issued/S-000009", Some(&reader)).await.0, StatusCode::NOT_FOUND);
    // a token bound to a contract reads its customer's statements only, and issues none
    let bound = token(&w, "billing:read", &["acme"]).await;
    let (status, _, own) = get(&w, &format!("/api/v1/statements?month={}", last_month()), Some(&bound)).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let customers: Vec<&str> =
        own["statements"].as_array().unwrap().iter().map(|s| s["customer"].as_str().unwrap()).collect();
    assert_eq!(customers, ["ACME Corp."]);
    let (_, _, issued_own) = get(&w, &format!("/api/v1/statements/issued?month={}", last_month()), Some(&bound)).await;
    assert_eq!(issued_own["statements"].as_array().unwrap().len(), 1, "{issued_own}");
    assert_eq!(get(&w, "/api/v1/statements/issued/S-000002", Some(&bound)).await.0, StatusCode::NOT_FOUND, "Beta's");
    assert_eq!(get(&w, "/api/v1/statements/issued/S-000001", Some(&bound)).await.0, StatusCode::OK);
    let month = serde_json::json!({ "month": last_month() });
    assert_eq!(send(&w, "POST", "/api/v1/statements/issue", &bound, &[], month).await.0, StatusCode::FORBIDDEN);
    // the price tables, as configured
    let (status, _, tables) = get(&w, "/api/v1/price_tables", Some(&reader)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tables["price_tables"][0]["name"], "standard");
    assert_eq!(tables["price_tables"][0]["default"], true);
    assert_eq!(tables["price_tables"][0]["versions"][0]["table"]["tiers"][0]["monthly_fee"], 3000, "{tables}");
    assert_eq!(get(&w, "/api/v1/price_tables", Some(&token(&w, "log:read", &[]).await)).await.0, StatusCode::FORBIDDEN);
}

/// Accounts in batches, and the whole set as a contracts file: exported, planned, applied —
/// `contracts apply`'s plan and rules (issue 15).
#[tokio::test]
async fn accounts_change_in_batches_and_the_set_goes_out_and_in_as_a_file() {
    let w = world("batches").await;
    let writer = token(&w, "contracts:write", &[]).await;
    let batch = serde_json::json!({ "domain": "ACME.example", "add": ["carol", "dave"], "remove": ["alice"], "reason": "form 3" });
    let (status, _, plan) = send(&w, "POST", "/api/v1/contracts/acme/accounts", &writer, &[], batch).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let (_, _, acme) = get(&w, "/api/v1/contracts/acme", Some(&writer)).await;
    assert_eq!(acme["domains"][0]["accounts"], serde_json::json!(["carol", "dave"]));
    // every problem at once, pointing into the batch
    let bad = serde_json::json!({ "domain": "acme.example", "add": ["carol"], "remove": ["zed"] });
    let (status, _, body) = send(&w, "POST", "/api/v1/contracts/acme/accounts", &writer, &[], bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/remove/0", "/add/0"], "{body}");
    // over the limit (5): the contract's rule, nothing changed
    let many = serde_json::json!({ "domain": "acme.example", "add": ["a1", "a2", "a3", "a4"] });
    let (status, _, body) = send(&w, "POST", "/api/v1/contracts/acme/accounts", &writer, &[], many).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("accounts_limit is 5"), "{body}");
    // the set as a file, and back: nothing to change
    let (headers, text) = raw(&w, "/api/v1/contracts/export", &writer).await;
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/toml"));
    let file = text;
    assert_eq!(file.matches("[[contract]]").count(), 2, "{file}");
    let apply = |query: &'static str, body: String| {
        let req = Request::post(format!("/api/v1/contracts/apply{query}"))
            .header("authorization", format!("Bearer {writer}"))
            .body(Body::from(body))
            .unwrap();
        let app = w.app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let (status, plan) = apply("?dry_run=true", file.clone()).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert!(plan["changed"].as_array().unwrap().is_empty() && plan["added"].as_array().unwrap().is_empty(), "{plan}");
    // a file with an error: its line and key, the CLI's words
    let (status, body) = apply("", file.replace("accounts_limit = 5", "accounts_limit = 1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["errors"][0]["line"].as_u64().unwrap() > 0
            && body["errors"][0]["key"].as_str().unwrap().contains("accounts_limit"),
        "{body}"
    );
}

/// A console request from `addr`, with `cookie` and `lang`; `form` makes it a POST.
async fn console(
    w: &World,
    path: &str,
    cookie: Option<&str>,
    lang: &str,
    form: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder()
        .method(if form.is_some() { "POST" } else { "GET" })
        .uri(path)
        .header("accept-language", lang)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header("cookie", format!("mxs_session={c}"));
    }
    let mut req = req.body(Body::from(form.unwrap_or("").to_string())).unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 9], 4000))));
    let resp = w.app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// The console: sign-in with a throttle, a session cookie that scripts cannot read and other
/// sites cannot send, a CSRF token on sign-out, the dashboard without any script, in Japanese
/// or English (issue 15).
#[tokio::test]
async fn console_sign_in_session_csrf_and_the_dashboard() {
    let w = world("console").await;
    assert!(w.store.add_user("sato", mxshield_operator::store::Role::Operator, "correct horse").await.unwrap());
    assert!(!w.store.add_user("sato", mxshield_operator::store::Role::Admin, "x").await.unwrap(), "taken");
    // not signed in: to the sign-in page
    let (status, headers, _) = console(&w, "/console/", None, "en", None).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/login"));
    let (status, headers, page) = console(&w, "/console/login", None, "ja", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("ログイン") && page.contains("lang=\"ja\""), "{page}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'")
    );
    assert!(!page.contains("<script"), "no script");
    // a wrong password: refused without saying which part was wrong
    let (status, _, page) = console(&w, "/console/login", None, "en", Some("user=sato&password=wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Wrong user name or password."), "{page}");
    // signed in: a cookie scripts cannot read and other sites cannot send
    let (status, headers, _) =
        console(&w, "/console/login", None, "en", Some("user=sato&password=correct+horse")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set = headers["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().trim_start_matches("mxs_session=").to_string();
    let (status, _, dash) = console(&w, "/console/", Some(&cookie), "en", None).await;
    assert_eq!(status, StatusCode::OK, "{dash}");
    assert!(dash.contains("Signed in as sato (operator)") && dash.contains("<svg id=\"per-hour\""), "{dash}");
    let svg =
        |id: &str| dash.split(&format!("<svg id=\"{id}\"")).nth(1).unwrap().split("</svg>").next().unwrap().to_string();
    assert_eq!(svg("per-hour").matches("<rect class=\"bar\"").count(), 24, "a bar per hour");
    assert_eq!(svg("per-hour-7d").matches("<rect class=\"bar\"").count(), 168, "a bar per hour of the week");
    for id in ["totals", "top-viruses", "virus-actions", "unscanned-reasons", "dash-nodes", "this-week"] {
        assert!(dash.contains(&format!("id=\"{id}\"")), "{id}");
    }
    let (_, _, ja) = console(&w, "/console/", Some(&cookie), "ja,en;q=0.8", None).await;
    assert!(ja.contains("ダッシュボード") && ja.contains("過去24時間"), "{ja}");
    // contracts: the list, one contract's history, and a cancellation quoted before it is made
    let (_, _, list) = console(&w, "/console/contracts", Some(&cookie), "en", None).await;
    assert!(list.contains("href=\"/console/contracts/acme\"") && list.contains("Beta K.K."), "{list}");
    let (_, _, acme) = console(&w, "/console/contracts/acme", Some(&cookie), "en", None).await;
    assert!(acme.contains("<td>applied</td>") && acme.contains("<td>activated</td>"), "{acme}");
    let (status, _, quote) =
        console(&w, &format!("/console/contracts/acme/cancel?on={}", day(6)), Some(&cookie), "en", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(quote.contains("id=\"fee\">0<") && quote.contains("id=\"confirm\""), "past the minimum term: {quote}");
    let (_, _, still) = console(&w, "/console/contracts/acme", Some(&cookie), "en", None).await;
    assert!(still.contains("class=\"state\">active<"), "a quote changes nothing: {still}");
    let csrf_now = dash.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (status, _, _) =
        console(&w, "/console/contracts/acme/cancel", Some(&cookie), "en", Some(&format!("on={}&csrf=forged", day(6))))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let form = format!("on={}&csrf={csrf_now}", day(6));
    let (status, headers, _) = console(&w, "/console/contracts/acme/cancel", Some(&cookie), "en", Some(&form)).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/contracts/acme"));
    let (_, _, after) = console(&w, "/console/contracts/acme", Some(&cookie), "en", None).await;
    assert!(
        after.contains("class=\"state\">cancellation scheduled<") && after.contains("cancellation_requested"),
        "{after}"
    );
    assert!(
        w.store
            .audit_log(10)
            .await
            .unwrap()
            .iter()
            .any(|(_, e)| e.action == "contracts.cancel" && e.source.starts_with("console"))
    );
    // sign-out needs the session's CSRF token
    let (status, _, _) = console(&w, "/console/logout", Some(&cookie), "en", Some("csrf=forged")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = dash.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (status, _, _) = console(&w, "/console/logout", Some(&cookie), "en", Some(&format!("csrf={csrf}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(console(&w, "/console/", Some(&cookie), "en", None).await.0, StatusCode::SEE_OTHER, "the session ended");
    // an auditor reads, and cannot cancel even with its own CSRF token
    assert!(w.store.add_user("kato", mxshield_operator::store::Role::Auditor, "auditor password").await.unwrap());
    let (_, headers, _) = console(&w, "/console/login", None, "en", Some("user=kato&password=auditor+password")).await;
    let kato = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("mxs_session=")
        .to_string();
    let (_, _, page) = console(&w, "/console/contracts/beta", Some(&kato), "en", None).await;
    assert!(page.contains("Your role cannot change contracts."), "{page}");
    let (_, _, dash) = console(&w, "/console/", Some(&kato), "en", None).await;
    let token = dash.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let form = format!("on={}&csrf={token}", day(6));
    assert_eq!(
        console(&w, "/console/contracts/beta/cancel", Some(&kato), "en", Some(&form)).await.0,
        StatusCode::FORBIDDEN
    );
    // five failures: the sixth attempt is not even checked, right password or not
    for _ in 0..4 {
        console(&w, "/console/login", None, "en", Some("user=sato&password=nope")).await;
    }
    let (status, _, page) = console(&w, "/console/login", None, "en", Some("user=sato&password=correct+horse")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
}

/// The console's queue: the messages of this node, a deletion confirmed with a reason, a retry
/// confirmed for exactly the messages shown (issue 15).
#[tokio::test]
async fn the_console_queue_acts_only_after_a_confirmation() {
    let w = world("console-queue").await;
    let dir = std::env::temp_dir().join(format!("mxshield-admin-console-queue-{}", std::process::id()));
    let spool = spool::Spool::open(dir.join("spool")).unwrap();
    let mut ids = Vec::new();
    for i in 0..2 {
        let mut writer = spool.create().unwrap();
        writer.write(format!("Subject: waiting {i}\r\n\r\nhello\r\n").as_bytes()).unwrap();
        let env = spool::Envelope {
            sender: "a@remote.test".into(),
            recipients: vec!["alice@acme.example".into()],
            received_at: 1_800_000_000,
            attrs: vec![],
        };
        ids.push(writer.commit(&env).unwrap().to_string());
    }
    assert!(w.store.add_user("ito", mxshield_operator::store::Role::Operator, "queue password").await.unwrap());
    let (_, headers, _) = console(&w, "/console/login", None, "en", Some("user=ito&password=queue+password")).await;
    let cookie = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("mxs_session=")
        .to_string();
    let (status, _, page) = console(&w, "/console/queue", Some(&cookie), "en", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("<tr class=\"queued\">").count(), 2, "{page}");
    // a deletion: its page first (the message's header), then the POST with a reason
    let (_, _, confirm) = console(&w, &format!("/console/queue/{}/delete", ids[0]), Some(&cookie), "en", None).await;
    assert!(confirm.contains("Subject: waiting 0") && confirm.contains("id=\"confirm\""), "{confirm}");
    let csrf = confirm.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let path = format!("/console/queue/{}/delete", ids[0]);
    let (status, _, _) = console(&w, &path, Some(&cookie), "en", Some(&format!("csrf={csrf}&reason="))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a reason is required");
    let (status, _, _) =
        console(&w, &path, Some(&cookie), "en", Some(&format!("csrf={csrf}&reason=spam+complaint"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(!spool.contains(&spool::QueueId::parse(&ids[0]).unwrap()), "deleted");
    // a retry confirmed for the queue as shown; one that changed since is refused
    let (_, _, flush) = console(&w, "/console/queue/flush", Some(&cookie), "en", None).await;
    assert!(flush.contains("<span id=\"would\">1</span>"), "{flush}");
    let confirm = flush.split("name=\"confirm\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let stale =
        console(&w, "/console/queue/flush", Some(&cookie), "en", Some(&format!("csrf={csrf}&confirm=00"))).await.0;
    assert_eq!(stale, StatusCode::CONFLICT);
    let done =
        console(&w, "/console/queue/flush", Some(&cookie), "en", Some(&format!("csrf={csrf}&confirm={confirm}")))
            .await
            .0;
    assert_eq!(done, StatusCode::SEE_OTHER);
    let audit = w.store.audit_log(10).await.unwrap();
    assert!(audit.iter().any(|(_, e)| e.action == "queue.delete" && e.after.as_deref() == Some("spam complaint")));
    assert!(audit.iter().any(|(_, e)| e.action == "queue.flush" && e.source.starts_with("console")));
    let _ = std::fs::remove_dir_all(dir);
}

/// The console's statements: the month's drafts, issuing them (CSRF; operators), the issued
/// ones and their CSV (issue 15).
#[tokio::test]
async fn the_console_issues_the_months_statements() {
    let w = world("console-statements").await;
    assert!(w.store.add_user("abe", mxshield_operator::store::Role::Operator, "statement password").await.unwrap());
    let (_, headers, _) = console(&w, "/console/login", None, "en", Some("user=abe&password=statement+password")).await;
    let cookie = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("mxs_session=")
        .to_string();
    let (status, _, page) =
        console(&w, &format!("/console/statements?month={}", last_month()), Some(&cookie), "en", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("<tr class=\"draft\">").count(), 2, "{page}");
    assert!(page.contains("<td>ACME Corp.</td><td>3300</td>"), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let forged =
        console(&w, "/console/statements/issue", Some(&cookie), "en", Some(&format!("csrf=x&month={}", last_month())))
            .await
            .0;
    assert_eq!(forged, StatusCode::FORBIDDEN);
    let (status, headers, _) = console(
        &w,
        "/console/statements/issue",
        Some(&cookie),
        "en",
        Some(&format!("csrf={csrf}&month={}", last_month())),
    )
    .await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, format!("/console/statements?month={}", last_month()).as_str())
    );
    let (_, _, page) =
        console(&w, &format!("/console/statements?month={}", last_month()), Some(&cookie), "en", None).await;
    assert_eq!(page.matches("<tr class=\"issued\">").count(), 2, "{page}");
    assert!(page.contains("S-000001") && page.contains("S-000002"), "{page}");
    let (status, headers, csv) =
        console(&w, &format!("/console/statements.csv?month={}", last_month()), Some(&cookie), "en", None).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (StatusCode::OK, "text/csv; charset=utf-8"));
    assert_eq!(csv.lines().filter(|l| l.contains(",total,")).count(), 2, "{csv}");
}

/// The action of the first token's revoke form on the tokens page.
fn revoke_link(page: &str) -> String {
    let from = page.split("action=\"").find(|p| p.starts_with("/console/admin/tokens/")).expect("a revoke form");
    from.split('"').next().unwrap().to_string()
}

/// Signs `user` in on the console; the session cookie's value.
async fn sign_in(w: &World, user: &str, password: &str) -> String {
    let form = format!("user={user}&password={}", password.replace(' ', "+"));
    let (_, headers, _) = console(w, "/console/login", None, "en", Some(&form)).await;
    headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().trim_start_matches("mxs_session=").to_string()
}

/// The console's tokens and audit page: administrators only; a token revoked there stops
/// working on the API at once (issue 15).
#[tokio::test]
async fn an_administrator_revokes_a_token_from_the_console() {
    let w = world("console-admin").await;
    let secret = token(&w, "contracts:read", &[]).await;
    assert_eq!(get(&w, "/api/v1/contracts", Some(&secret)).await.0, StatusCode::OK);
    assert!(w.store.add_user("root", mxshield_operator::store::Role::Admin, "administrator pass").await.unwrap());
    assert!(w.store.add_user("op", mxshield_operator::store::Role::Operator, "operator password").await.unwrap());
    let op = sign_in(&w, "op", "operator password").await;
    assert_eq!(console(&w, "/console/admin", Some(&op), "en", None).await.0, StatusCode::FORBIDDEN);
    let root = sign_in(&w, "root", "administrator pass").await;
    let (status, _, page) = console(&w, "/console/admin", Some(&root), "en", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("<tr class=\"token\">").count(), 1, "{page}");
    assert!(!page.contains(&secret), "never the secret");
    let action = revoke_link(&page);
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (status, _, _) = console(&w, &action, Some(&root), "en", Some(&format!("csrf={csrf}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(get(&w, "/api/v1/contracts", Some(&secret)).await.0, StatusCode::UNAUTHORIZED, "revoked at once");
    let (_, _, page) = console(&w, "/console/admin", Some(&root), "en", None).await;
    assert!(page.contains("tokens.revoke") && page.contains("root (console)"), "{page}");
}

/// A form body from its fields, percent-encoded.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// The value of the first input named `name` in a page, unescaped.
fn input(page: &str, name: &str) -> String {
    let raw = page.split(&format!("name=\"{name}\" value=\"")).nth(1).unwrap().split('"').next().unwrap();
    raw.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The console's contract forms: a contract created (planned first, then confirmed), every
/// problem of a bad form listed at once with the form kept, a change scheduled from a later
/// day and shown in the timeline, a stale form refused, CSRF and roles enforced, audited
/// (issue 15).
#[tokio::test]
async fn contracts_are_created_and_changed_from_the_console_forms() {
    let w = world("console-forms").await;
    assert!(w.store.add_user("mori", mxshield_operator::store::Role::Operator, "operator password").await.unwrap());
    assert!(w.store.add_user("kato", mxshield_operator::store::Role::Auditor, "auditor password").await.unwrap());
    let cookie = sign_in(&w, "mori", "operator password").await;
    let secret = token(&w, "contracts:read", &[]).await;
    let (status, _, new) = console(&w, "/console/contracts/new", Some(&cookie), "en", None).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = input(&new, "csrf");
    let (starts, later) = (day(-1), day(40));
    let gamma = |step: &'static str, limit: &'static str| {
        vec![
            ("step", step),
            ("id", "gamma"),
            ("customer", "Gamma 株式会社"),
            ("accounts_limit", limit),
            ("starts", starts.as_str()),
            ("sending_servers", "192.0.2.30\n198.51.100.0/28"),
            ("fn_inbound", "on"),
            ("fn_outbound", "on"),
            ("encrypted", "pass"),
            ("unreadable", "refuse"),
            ("d0_name", "gamma.example"),
            ("d0_servers", "192.0.2.3, 192.0.2.4:2525"),
            ("d0_accounts", "carol\ndave"),
            ("d1_name", ""),
            ("reason", "paper form 12"),
        ]
    };
    // planned: the plan and a confirm button, nothing stored
    let mut fields = gamma("plan", "3");
    fields.push(("csrf", &csrf));
    let (status, _, plan) = console(&w, "/console/contracts/new", Some(&cookie), "en", Some(&form(&fields))).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert!(plan.contains("id=\"plan-result\"") && plan.contains("Created: gamma"), "{plan}");
    assert!(plan.contains("value=\"apply\" id=\"apply\""), "the confirm button: {plan}");
    assert!(plan.contains("value=\"Gamma 株式会社\""), "the form kept");
    assert_eq!(get(&w, "/api/v1/contracts/gamma", Some(&secret)).await.0, StatusCode::NOT_FOUND, "only planned");
    // every problem at once, the form kept
    let mut bad = gamma("plan", "ten");
    bad.retain(|(k, _)| *k != "sending_servers");
    bad.push(("sending_servers", "0.0.0.0/0"));
    bad.push(("csrf", &csrf));
    let (status, _, page) = console(&w, "/console/contracts/new", Some(&cookie), "en", Some(&form(&bad))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = page.split("id=\"errors\"").nth(1).unwrap().split("</div>").next().unwrap();
    assert!(errors.contains("accounts_limit") && errors.contains("0.0.0.0/0"), "both problems: {errors}");
    assert!(page.contains("value=\"ten\""), "the form kept: {page}");
    // confirmed
    let mut fields = gamma("apply", "3");
    fields.push(("csrf", &csrf));
    let (status, headers, _) = console(&w, "/console/contracts/new", Some(&cookie), "en", Some(&form(&fields))).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/contracts/gamma"));
    let (_, _, body) = get(&w, "/api/v1/contracts/gamma", Some(&secret)).await;
    assert_eq!(body["customer"], "Gamma 株式会社");
    assert_eq!(body["domains"][0]["accounts"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["unreadable_attachments"], "refuse", "{body}");
    // creating it again is refused
    let (status, _, _) = console(&w, "/console/contracts/new", Some(&cookie), "en", Some(&form(&fields))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // a change from a later day: the edit form carries the contract's ETag
    let (_, _, edit) = console(&w, "/console/contracts/gamma/edit", Some(&cookie), "en", None).await;
    assert!(edit.contains("value=\"gamma.example\"") && edit.contains("carol\ndave"), "filled: {edit}");
    let tag = input(&edit, "etag");
    let mut change = gamma("apply", "4");
    change.retain(|(k, _)| *k != "id");
    change.extend([("csrf", csrf.as_str()), ("etag", tag.as_str()), ("effective", later.as_str())]);
    change.retain(|(k, v)| *k != "d0_accounts" || v.is_empty());
    change.push(("d0_accounts", "carol\ndave\nerin"));
    let (status, headers, page) =
        console(&w, "/console/contracts/gamma/edit", Some(&cookie), "en", Some(&form(&change))).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(headers["location"].to_str().unwrap(), "/console/contracts/gamma");
    let (_, _, detail) = console(&w, "/console/contracts/gamma", Some(&cookie), "en", None).await;
    let events = detail.split("id=\"events\"").nth(1).unwrap();
    assert!(events.contains(&later), "the change in the timeline: {events}");
    let (_, _, body) = get(&w, "/api/v1/contracts/gamma", Some(&secret)).await;
    assert_eq!(body["accounts_limit"], 3, "unchanged until its day");
    assert_eq!(body["pending"].as_array().map(Vec::len), Some(1), "{body}");
    // the same form again: the contract changed meanwhile
    let (status, _, page) =
        console(&w, "/console/contracts/gamma/edit", Some(&cookie), "en", Some(&form(&change))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("Someone changed this contract"), "{page}");
    // CSRF and roles
    let forged: Vec<_> = change.iter().map(|(k, v)| if *k == "csrf" { (*k, "forged") } else { (*k, *v) }).collect();
    let status = console(&w, "/console/contracts/gamma/edit", Some(&cookie), "en", Some(&form(&forged))).await.0;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let kato = sign_in(&w, "kato", "auditor password").await;
    let (_, _, ro) = console(&w, "/console/contracts/gamma/edit", Some(&kato), "en", None).await;
    let kato_csrf = input(&ro, "csrf");
    assert!(!ro.contains("id=\"contract-form\""), "auditors get no form");
    let mut as_kato: Vec<_> = change.iter().filter(|(k, _)| *k != "csrf").copied().collect();
    as_kato.push(("csrf", &kato_csrf));
    let status = console(&w, "/console/contracts/gamma/edit", Some(&kato), "en", Some(&form(&as_kato))).await.0;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let audit = w.store.audit_log(50).await.unwrap();
    for action in ["contracts.create", "contracts.change"] {
        assert!(
            audit
                .iter()
                .any(|(_, e)| e.action == action && e.source.starts_with("console") && e.actor == "mori (console)"),
            "{action} audited"
        );
    }
}

/// With `[admin] bound_tokens_read_log`, a token bound to a contract reads that contract's
/// message log only: its searches are confined to it, another contract's message is `404`,
/// naming another contract is refused (issue 15).
#[tokio::test]
async fn a_bound_token_reads_only_its_contracts_log_when_the_operator_allows_it() {
    let w = world_with("bound-log", true).await;
    let log = msglog::LogStore::open(&w._dir.join("log.db")).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let record = |id: &str, contract: &str| msglog::MessageRecord {
        summary: msglog::MessageSummary {
            at: now - 60,
            queue_id: id.into(),
            contract: contract.into(),
            direction: "inbound".into(),
            sender: "a@remote.test".into(),
            verdict: "clean".into(),
            action: "deliver".into(),
            ..Default::default()
        },
        recipients: vec![format!("user@{contract}.example")],
        initial_state: msglog::RcptState::Queued,
    };
    log.write(&[record("AAAA000000000000A001", "acme"), record("BBBB000000000000B001", "beta")], &[]).await.unwrap();
    let all = token(&w, "log:read", &[]).await;
    let (_, _, body) = get(&w, "/api/v1/log?since=1h", Some(&all)).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 2, "an operator's token sees both: {body}");
    let acme = token(&w, "log:read", &["acme"]).await;
    let (status, _, body) = get(&w, "/api/v1/log?since=1h", Some(&acme)).await;
    assert_eq!(status, StatusCode::OK);
    let found: Vec<&str> =
        body["messages"].as_array().unwrap().iter().map(|m| m["contract"].as_str().unwrap()).collect();
    assert_eq!(found, ["acme"], "only its own contract's messages");
    let (status, _, body) = get(&w, "/api/v1/log?since=1h&contract=beta", Some(&acme)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/contract");
    assert_eq!(get(&w, "/api/v1/log/BBBB000000000000B001", Some(&acme)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&w, "/api/v1/log/AAAA000000000000A001", Some(&acme)).await.0, StatusCode::OK);
    let (status, _, stats) = get(&w, "/api/v1/log/stats?since=2h", Some(&acme)).await;
    assert_eq!(status, StatusCode::OK);
    let received: i64 = stats["buckets"].as_array().unwrap().iter().map(|b| b["received"].as_i64().unwrap_or(0)).sum();
    assert_eq!(received, 1, "its contract's roll-ups only: {stats}");
    assert_eq!(
        get(&w, "/api/v1/log/stats?since=2h&contract=beta", Some(&acme)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // without the operator's switch: refused
    let off = world("bound-log-off").await;
    let acme_off = token(&off, "log:read", &["acme"]).await;
    assert_eq!(get(&off, "/api/v1/log?since=1h", Some(&acme_off)).await.0, StatusCode::FORBIDDEN);
}

/// A console user's language setting wins over the browser's; cleared, the browser's counts
/// again; CSRF required (issue 15).
#[tokio::test]
async fn a_console_users_language_setting_wins_over_the_browsers() {
    let w = world("console-lang").await;
    assert!(w.store.add_user("endo", mxshield_operator::store::Role::Auditor, "auditor password").await.unwrap());
    let cookie = sign_in(&w, "endo", "auditor password").await;
    let (_, _, page) = console(&w, "/console/", Some(&cookie), "en", None).await;
    assert!(page.contains("Dashboard"));
    let csrf = input(&page, "csrf");
    let forged = console(&w, "/console/language", Some(&cookie), "en", Some("csrf=forged&lang=ja")).await.0;
    assert_eq!(forged, StatusCode::FORBIDDEN);
    let (status, _, _) =
        console(&w, "/console/language", Some(&cookie), "en", Some(&format!("csrf={csrf}&lang=ja"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = console(&w, "/console/", Some(&cookie), "en", None).await;
    assert!(page.contains("ダッシュボード") && page.contains("<html lang=\"ja\">"), "the user's Japanese: {page}");
    console(&w, "/console/language", Some(&cookie), "en", Some(&format!("csrf={csrf}&lang="))).await;
    let (_, _, page) = console(&w, "/console/", Some(&cookie), "en", None).await;
    assert!(page.contains("Dashboard"), "the browser's English again");
}

/// The audit log is searchable (who, what, on what, since when) and records where a request
/// came from (issue 15).
#[tokio::test]
async fn the_audit_log_is_searched_and_says_where_requests_came_from() {
    let w = world("audit-search").await;
    token(&w, "contracts:read", &[]).await;
    assert!(w.store.add_user("root", mxshield_operator::store::Role::Admin, "administrator pass").await.unwrap());
    let root = sign_in(&w, "root", "administrator pass").await;
    let (_, _, page) = console(&w, "/console/admin", Some(&root), "en", None).await;
    let action = revoke_link(&page);
    let csrf = input(&page, "csrf");
    assert_eq!(console(&w, &action, Some(&root), "en", Some(&format!("csrf={csrf}"))).await.0, StatusCode::SEE_OTHER);
    let auditor = token(&w, "admin:read", &[]).await;
    let (status, _, found) = get(&w, "/api/v1/audit?action=tokens.revoke", Some(&auditor)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let entries = found["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{found}");
    assert_eq!(entries[0]["actor"], "root (console)");
    assert_eq!(entries[0]["source"], "console 127.0.0.9", "the client's address");
    let (_, _, by_actor) = get(&w, "/api/v1/audit?actor=ROOT", Some(&auditor)).await;
    assert!(by_actor["entries"].as_array().unwrap().iter().all(|e| e["actor"] == "root (console)"), "{by_actor}");
    let (_, _, none) = get(&w, "/api/v1/audit?action=tokens.revoke&since=2999-01-01", Some(&auditor)).await;
    assert_eq!(none["entries"].as_array().unwrap().len(), 0);
    assert_eq!(get(&w, "/api/v1/audit?limit=0", Some(&auditor)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(get(&w, "/api/v1/audit", Some(&token(&w, "log:read", &[]).await)).await.0, StatusCode::FORBIDDEN);
    // the console's search form
    let (_, _, page) = console(&w, "/console/admin?action=tokens.revoke", Some(&root), "en", None).await;
    let rows = page.split("id=\"audit\"").nth(1).unwrap();
    assert_eq!(rows.matches("<tr class=\"audit\">").count(), 1, "{rows}");
}

/// The contracts list filtered by state, customer and domain, in the API and the console
/// (issue 15).
#[tokio::test]
async fn contracts_are_listed_by_state_customer_and_domain() {
    let w = world("contract-filter").await;
    let reader = token(&w, "contracts:read", &[]).await;
    let ids = |v: &Value| -> Vec<String> {
        v["contracts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&get(&w, "/api/v1/contracts", Some(&reader)).await.2), ["acme", "beta"]);
    assert_eq!(ids(&get(&w, "/api/v1/contracts?customer=beta%20k", Some(&reader)).await.2), ["beta"]);
    assert_eq!(ids(&get(&w, "/api/v1/contracts?domain=ACME.example.", Some(&reader)).await.2), ["acme"]);
    assert_eq!(ids(&get(&w, "/api/v1/contracts?state=active", Some(&reader)).await.2), ["acme", "beta"]);
    assert!(ids(&get(&w, "/api/v1/contracts?state=cancelled", Some(&reader)).await.2).is_empty());
    // bound: the filter works within what the token sees
    let bound = token(&w, "contracts:read", &["acme"]).await;
    assert!(ids(&get(&w, "/api/v1/contracts?customer=beta", Some(&bound)).await.2).is_empty());
    assert!(w.store.add_user("sato", mxshield_operator::store::Role::Auditor, "auditor password").await.unwrap());
    let cookie = sign_in(&w, "sato", "auditor password").await;
    let (_, _, page) = console(&w, "/console/contracts?customer=acme", Some(&cookie), "en", None).await;
    let table = page.split("id=\"contracts\"").nth(1).unwrap();
    assert!(table.contains("/console/contracts/acme") && !table.contains("/console/contracts/beta"), "{table}");
}

/// The conditions of use through the API: the findings with their counts and thresholds; a
/// token bound to another contract sees none of them (issue 16).
#[tokio::test]
async fn the_conditions_of_use_are_read_through_the_api() {
    let w = world("conditions-api").await;
    let log = msglog::LogStore::open(&w._dir.join("log.db")).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut messages = Vec::new();
    let mut deliveries = Vec::new();
    for i in 0..250 {
        let id = format!("{:020X}", 0xA000 + i);
        messages.push(msglog::MessageRecord {
            summary: msglog::MessageSummary {
                at: now - 600,
                queue_id: id.clone(),
                contract: "acme".into(),
                direction: "outbound".into(),
                ..Default::default()
            },
            recipients: vec![format!("r{i}@remote.test")],
            initial_state: msglog::RcptState::Queued,
        });
        let bounced = i < 50;
        deliveries.push(msglog::DeliveryRecord {
            event_id: format!("ev{i}"),
            queue_id: id,
            rcpt: format!("r{i}@remote.test"),
            state: if bounced { msglog::RcptState::Bounced } else { msglog::RcptState::Delivered },
            remote: "192.0.2.9".into(),
            reply: if bounced { "550 5.1.1 no such user".into() } else { "250 2.0.0 ok".into() },
            at: now - 500,
        });
    }
    log.write(&messages, &deliveries).await.unwrap();
    let reader = token(&w, "contracts:read", &[]).await;
    let (status, _, body) = get(&w, "/api/v1/conditions?contract=acme", Some(&reader)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let f = body["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "undeliverable").expect("measured");
    assert_eq!(f["level"], "flag", "50 of 250: {f}");
    assert_eq!(f["counts"]["hard_bounces_window"], 50.0);
    assert!(f["threshold"].as_str().unwrap().contains("flag at 10 %"));
    let beta = token(&w, "contracts:read", &["beta"]).await;
    let (_, _, theirs) = get(&w, "/api/v1/conditions", Some(&beta)).await;
    assert_eq!(theirs["findings"].as_array().unwrap().len(), 0, "{theirs}");
    assert_eq!(get(&w, "/api/v1/conditions?contract=acme", Some(&beta)).await.0, StatusCode::NOT_FOUND);
    // the console's page: the same finding, with its numbers and thresholds
    assert!(w.store.add_user("sato", mxshield_operator::store::Role::Auditor, "auditor password").await.unwrap());
    let cookie = sign_in(&w, "sato", "auditor password").await;
    let (status, _, page) = console(&w, "/console/conditions", Some(&cookie), "en", None).await;
    assert_eq!(status, StatusCode::OK);
    let row = |page: &str| {
        page.split("<tr class=\"finding flag\" data-kind=\"undeliverable\">")
            .nth(1)
            .expect("a flagged finding")
            .split("</tr>")
            .next()
            .unwrap()
            .to_string()
    };
    let flagged = row(&page);
    assert!(
        flagged.contains("undeliverable") && flagged.contains("rate_window 20.0 %") && flagged.contains("flag at 10 %"),
        "{flagged}"
    );
    assert!(flagged.contains("550 5.1.1 no such user"), "its evidence: {flagged}");
    assert!(flagged.contains(">open<") && !flagged.contains("<form"), "an auditor reads, never acts: {flagged}");
    // an operator acknowledges it in the console (the CSRF token required; audited)
    assert!(w.store.add_user("kato", mxshield_operator::store::Role::Operator, "operator password").await.unwrap());
    let op = sign_in(&w, "kato", "operator password").await;
    let (_, _, page) = console(&w, "/console/conditions", Some(&op), "ja", None).await;
    assert!(page.contains("確認済みにする") && page.contains("対応") || page.contains("状態"), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let path = "/console/conditions/acme/undeliverable/acknowledge";
    assert_eq!(console(&w, path, Some(&op), "en", Some("csrf=forged")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(console(&w, path, Some(&cookie), "en", Some(&format!("csrf={csrf}"))).await.0, StatusCode::FORBIDDEN);
    let (status, headers, _) = console(&w, path, Some(&op), "en", Some(&format!("csrf={csrf}"))).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/conditions"));
    let (_, _, page) = console(&w, "/console/conditions", Some(&op), "en", None).await;
    let acknowledged = row(&page);
    assert!(acknowledged.contains(">acknowledged<") && acknowledged.contains("/clear"), "{acknowledged}");
    let audit = w.store.audit_log(10).await.unwrap();
    assert!(
        audit.iter().any(|(_, e)| e.action == "conditions.acknowledge" && e.source.starts_with("console")),
        "{audit:?}"
    );
    // cleared through the API (a reason required; audited): measured from now on
    let writer = token(&w, "contracts:write", &[]).await;
    let (status, _, problem) =
        send(&w, "POST", "/api/v1/conditions/acme/undeliverable/clear", &writer, &[], serde_json::json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/reason");
    let body = serde_json::json!({ "reason": "customer cleaned its list" });
    let (status, _, _) =
        send(&w, "POST", "/api/v1/conditions/acme/undeliverable/clear", &reader, &[], body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "reading is not clearing");
    let (status, _, _) = send(&w, "POST", "/api/v1/conditions/acme/undeliverable/clear", &writer, &[], body).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, after) = get(&w, "/api/v1/conditions?contract=acme", Some(&reader)).await;
    let f = after["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "undeliverable");
    assert!(f.is_none_or(|f| f["level"] != "flag"), "cleared: {after}");
    assert!(w.store.audit_log(10).await.unwrap().iter().any(|(_, e)| e.action == "conditions.clear"));
}
