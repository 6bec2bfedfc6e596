//! The admin API called in-process (the router itself, over a real SQLite store): every route's
//! authentication and scope refusals, tenant isolation for a token bound to a contract,
//! problem+json bodies, and an OpenAPI description that names every route.

use std::collections::BTreeSet;
use std::sync::Arc;

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

async fn world(name: &str) -> World {
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
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
    let app = router(AdminState { operator: Arc::new(operator), store: store.clone(), today: Arc::new(move || today) });
    World { app, store, _dir: dir }
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
}

#[tokio::test]
async fn the_openapi_description_names_every_route() {
    let w = world("openapi").await;
    let t = token(&w, "contracts:read", &[]).await;
    let (status, _, doc) = get(&w, "/api/v1/openapi.json", Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    for route in ROUTES {
        let templated = route
            .trim_start_matches("/api/v1")
            .replace("/contracts/acme", "/contracts/{id}")
            .replace("/domains/acme.example", "/domains/{name}");
        assert!(paths.contains(&templated), "{route} ({templated}) is not described: {paths:?}");
    }
    assert_eq!(paths.len(), ROUTES.len(), "every described path is a route");
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
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
    let app = router(AdminState {
        operator: Arc::new(operator),
        store: AdminStore::lazy(&url),
        today: Arc::new(move || today),
    });
    let w = World { app, store: AdminStore::lazy(&url), _dir: std::env::temp_dir() };
    assert_eq!(get(&w, "/healthz", None).await.0, StatusCode::OK);
    let (status, ctype, _) = get(&w, "/readyz", None).await;
    assert_eq!((status, ctype.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json"));
    let (status, _, body) = get(&w, "/api/v1/contracts", Some("mxs_anything")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
