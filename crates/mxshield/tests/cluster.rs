//! Several nodes on one PostgreSQL database (issue 12), black-box: real `mxshield serve`
//! processes, each with its own data_dir and port, on the PostgreSQL server of this machine
//! kind (a schema per test). A database outage is played by a TCP proxy that is cut, never by
//! stopping the shared server.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use testkit::client::{RawClient, message};
use testkit::gateway::Gateway;
use testkit::pg::Schema;
use testkit::proxy::Proxy;
use testkit::sink::{Behaviour, Sink};
use testkit::{TempDir, free_port};

/// A node's configuration: the standard one, named, pointed at `url`, with a short heartbeat
/// and no explicit reload interval (so a change within a second shows `LISTEN/NOTIFY` at work).
fn node_config(name: &str, port: u16, remote: SocketAddr, url: &str) -> String {
    let top = format!("node_id = \"{name}\"");
    config(port, remote, "", &top).replace("reload_interval = \"100ms\"\n", "")
        + &format!("\n[store]\nurl = \"{url}\"\n\n[node]\nheartbeat = \"1s\"\ndown_after = \"3s\"\n")
}

fn node(name: &str, url: &str, remote: SocketAddr) -> (Gateway, TempDir) {
    let dir = TempDir::new(name);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let gw = Gateway::new(Path::new(BIN), dir.path(), addr, &node_config(name, port, remote, url));
    (gw, dir)
}

fn stdout(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `check` holds, for at most `limit`; returns how long it took.
async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// RCPT's reply code through `gw` from `src` (MAIL from `from`).
async fn rcpt_code(gw: SocketAddr, src: &str, from: &str, rcpt: &str) -> u16 {
    let (mut c, _) = RawClient::connect_from(src.parse().unwrap(), gw).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    c.cmd(&format!("MAIL FROM:<{from}>")).await.unwrap();
    let code = c.cmd(&format!("RCPT TO:<{rcpt}>")).await.unwrap().code;
    let _ = c.cmd("QUIT").await;
    code
}

async fn send(gw: SocketAddr, rcpt: &str, subject: &str) -> u16 {
    let (mut c, _) = RawClient::connect(gw).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    c.send_mail("someone@remote.test", &[rcpt], &message(subject, "x")).await.unwrap().code
}

/// Two nodes on one database: a contract change through A is enforced by B within a second
/// (accounts, relay, removal); a message through each is found by `log search` on the other,
/// with its node; `nodes` lists both, then B as down once it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_contracts_log_and_registry() {
    let schema = Schema::new("cluster_two");
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (mut a, _da) = node("mx-a", &schema.url(), remote.addr);
    let (mut b, _db) = node("mx-b", &schema.url(), remote.addr);
    let standard = contracts(&quoted(customer.addr));
    apply(&a, &standard);
    a.spawn();
    b.spawn();

    // a message through each node, each found on the other with the node that handled it
    assert_eq!(send(a.addr, "alice@acme.example", "through a").await, 250);
    assert_eq!(send(b.addr, "bob@acme.example", "through b").await, 250);
    customer.wait_for(2, WAIT).await;
    within(WAIT, "both messages in the log of the other node", async || {
        let on_b = stdout(&b, &["log", "search", "--json"]);
        let on_a = stdout(&a, &["log", "search", "--node", "mx-b", "--json"]);
        on_b.contains("\"node\": \"mx-a\"") && on_b.contains("\"node\": \"mx-b\"") && on_a.contains("through b")
    })
    .await;
    let table = stdout(&b, &["log", "search", "--recipient", "alice@acme.example"]);
    assert!(table.contains("mx-a") && table.contains("delivered"), "{table}");

    // accounts: carol added through A is accepted by B within a second
    assert_eq!(rcpt_code(b.addr, "127.0.0.1", "x@remote.test", "carol@acme.example").await, 550);
    apply(&a, &standard.replace("\"alice\", \"bob\"", "\"alice\", \"bob\", \"carol\""));
    let took = within(Duration::from_secs(1), "B accepts carol", async || {
        rcpt_code(b.addr, "127.0.0.1", "x@remote.test", "carol@acme.example").await == 250
    })
    .await;
    println!("account added through A, enforced by B after {took:?}");
    // relay: the sending server removed through A may no longer relay through B
    assert_eq!(rcpt_code(b.addr, SENDING_SERVER, "alice@acme.example", "x@remote.test").await, 250);
    apply(&a, &standard.replace(&format!("sending_servers = [\"{SENDING_SERVER}\"]"), "sending_servers = []"));
    within(Duration::from_secs(1), "B refuses the relay", async || {
        rcpt_code(b.addr, SENDING_SERVER, "alice@acme.example", "x@remote.test").await == 550
    })
    .await;
    // removal: the contract gone, B refuses its domain
    apply_pruning(&a, "");
    within(Duration::from_secs(1), "B refuses the removed domain", async || {
        rcpt_code(b.addr, "127.0.0.1", "x@remote.test", "alice@acme.example").await >= 500
    })
    .await;

    // the registry: both up, with what they run; B down after it is killed
    within(WAIT, "both nodes up at the last generation", async || {
        let json: serde_json::Value = serde_json::from_str(&stdout(&b, &["nodes", "--json"])).unwrap();
        let rows = json.as_array().unwrap().clone();
        rows.len() == 2 && rows.iter().all(|n| n["contracts_generation"] == 4 && n["state"] == "up")
    })
    .await;
    let nodes = stdout(&a, &["nodes"]);
    for column in ["NODE", "STATE", "ADDRESS", "VERSION", "SIGNATURES (AGE)", "CONTRACTS", "QUEUE A/D", "HEARTBEAT"] {
        assert!(nodes.contains(column), "{nodes}");
    }
    assert!(nodes.contains(&b.addr.to_string()) && nodes.contains(env!("CARGO_PKG_VERSION")), "{nodes}");
    // a third node configured more leniently (a larger size limit) is shown as differing
    let (mut c, _dc) = node("mx-c", &schema.url(), remote.addr);
    let path = c.dir.join("mxshield.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen("[smtp]\n", "[smtp]\nmax_message_size = 99999999\n", 1);
    std::fs::write(&path, text).unwrap();
    c.spawn();
    within(WAIT, "C shown as differing", async || {
        let nodes = stdout(&a, &["nodes"]);
        let line = |id: &str| nodes.lines().find(|l| l.starts_with(id)).unwrap_or_default().to_string();
        line("mx-c").contains(" differs ") && line("mx-a").contains(" up ") && line("mx-b").contains(" up ")
    })
    .await;
    c.kill9();
    b.kill9();
    within(Duration::from_secs(10), "B shown as down", async || {
        stdout(&a, &["nodes"]).lines().any(|l| l.starts_with("mx-b") && l.contains(" down "))
    })
    .await;
    a.terminate();
}

/// The database made unreachable under load (a proxy cut, the server untouched): mail keeps
/// flowing with the last-good contracts; once it is back every message-log record is in the
/// database exactly once. A node started while the database is unreachable serves from its
/// last-good copy; one that never had a copy does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_loses_no_record_and_writes_none_twice() {
    let schema = Schema::new("cluster_outage");
    let proxy = Proxy::start(testkit::pg::server_addr());
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (mut a, _da) = node("mx-a", &schema.url_via(Some(proxy.addr)), remote.addr);
    apply(&a, &contracts(&quoted(customer.addr)));
    a.spawn();

    const TOTAL: usize = 60;
    let mut sent = 0;
    let mut cut_at = None;
    let started = Instant::now();
    while sent < TOTAL {
        if sent == 15 {
            proxy.cut();
            cut_at = Some(Instant::now());
        }
        if sent == 45 {
            // at least three seconds without the database, with mail flowing
            let since = cut_at.unwrap().elapsed();
            if since < Duration::from_secs(3) {
                tokio::time::sleep(Duration::from_secs(3) - since).await;
            }
            proxy.restore();
        }
        let rcpt = if sent % 2 == 0 { "alice@acme.example" } else { "bob@acme.example" };
        assert_eq!(send(a.addr, rcpt, &format!("load {sent}")).await, 250, "message {sent}; log:\n{}", a.log());
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{TOTAL} messages in {:?}, the database cut for messages 15 to 44", started.elapsed());
    customer.wait_for(TOTAL, WAIT).await;
    let log = a.log();
    assert!(log.contains("contracts_stale") && log.contains("message_log_journaling"), "{log}");
    within(WAIT, "the journal drained", async || a.log().contains("message_log_journal_drained")).await;
    within(WAIT, "every record in the database", async || {
        schema.query("SELECT count(*) FROM recipients WHERE state = 'delivered'") == TOTAL.to_string()
    })
    .await;
    assert_eq!(schema.query("SELECT count(*) FROM messages"), TOTAL.to_string());
    assert_eq!(
        schema.query("SELECT count(DISTINCT subject) FROM messages WHERE subject LIKE 'load %'"),
        TOTAL.to_string()
    );
    // each delivery applied once: one attempt per recipient, one event per delivery
    assert_eq!(schema.query("SELECT count(*) FROM recipients WHERE attempts <> 1"), "0");
    assert_eq!(schema.query("SELECT count(*) FROM delivery_events"), TOTAL.to_string());
    assert_eq!(schema.query("SELECT count(*) FROM messages WHERE node <> 'mx-a'"), "0");

    // started while the database is unreachable: serves its last-good copy
    a.kill9();
    proxy.cut();
    a.spawn();
    assert_eq!(send(a.addr, "alice@acme.example", "while away").await, 250);
    assert_eq!(rcpt_code(a.addr, "127.0.0.1", "x@remote.test", "x@unknown.example").await / 100, 5);
    assert!(a.log().contains("serving the last-good copy"), "{}", a.log());
    customer.wait_for(TOTAL + 1, WAIT).await;
    proxy.restore();
    within(WAIT, "the record written after the restart", async || {
        schema.query("SELECT count(*) FROM messages WHERE subject = 'while away'") == "1"
    })
    .await;
    a.terminate();

    // a node that never had a copy does not start with an empty set
    let (fresh, _df) = node("mx-new", &schema.url_via(Some(proxy.addr)), remote.addr);
    proxy.cut();
    let out = std::process::Command::new(BIN)
        .args(["--config", fresh.dir.join("mxshield.toml").to_str().unwrap(), "serve"])
        .current_dir(&fresh.dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no last-good copy of the contracts"), "{err}");
}

/// A sending MTA's way with a primary and a secondary MX (try the primary, then the secondary
/// on a connection failure or a 4xx): mail sent continuously while the primary is killed and
/// later restarted is all accepted by one of the two and delivered; the primary's queued mail
/// after its restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_secondary_loses_nothing() {
    let schema = Schema::new("cluster_failover");
    // the customer's server defers at first, so that the primary holds queued mail when killed
    let customer = Sink::start(Behaviour::RcptReply(451, (4, 3, 0))).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (mut primary, _dp) = node("mx1", &schema.url(), remote.addr);
    let (mut secondary, _ds) = node("mx2", &schema.url(), remote.addr);
    apply(&primary, &contracts(&quoted(customer.addr)));
    primary.spawn();
    secondary.spawn();

    const TOTAL: usize = 45;
    let mut by = [0usize; 2];
    for i in 0..TOTAL {
        if i == 10 {
            primary.kill9();
        }
        if i == 25 {
            customer.set_behaviour(Behaviour::Accept);
        }
        if i == 30 {
            primary.spawn();
        }
        let mut accepted = false;
        for (n, mx) in [primary.addr, secondary.addr].into_iter().enumerate() {
            let Ok(Ok((mut c, greeting))) = tokio::time::timeout(Duration::from_secs(5), RawClient::connect(mx)).await
            else {
                continue;
            };
            if greeting.code != 220 {
                continue;
            }
            let _ = c.cmd("EHLO sender.test").await;
            match c.send_mail("someone@remote.test", &["alice@acme.example"], &message(&format!("mail {i}"), "x")).await
            {
                Ok(r) if r.code == 250 => {
                    by[n] += 1;
                    accepted = true;
                    break;
                }
                Ok(r) => assert!(r.code / 100 == 4, "message {i} refused by {mx}: {r:?}"),
                Err(_) => {}
            }
        }
        assert!(accepted, "message {i} accepted by neither MX");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("accepted by the primary: {}, by the secondary: {}", by[0], by[1]);
    assert!(by[0] >= 10 && by[1] >= 15, "{by:?}");
    let got = customer.wait_for(TOTAL, Duration::from_secs(60)).await;
    let mut subjects: Vec<String> = got
        .iter()
        .filter_map(|m| {
            let text = String::from_utf8_lossy(&m.data).into_owned();
            text.lines().find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), TOTAL, "{subjects:?}");
    primary.terminate();
    secondary.terminate();
}

/// Signature releases are shared: both nodes follow one source and install the same release;
/// a node that has not installed the newest one (here: one that checks the source only hourly)
/// is shown by `nodes` as behind, with the release it uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lagging_behind_the_shared_releases_is_shown() {
    let schema = Schema::new("cluster_sigs");
    let root = TempDir::new("cluster-sigs");
    let op = common::releases::Operator::with_release_one(root.path());
    let remote = Sink::start(Behaviour::Accept).await;
    let customer = Sink::start(Behaviour::Accept).await;
    let source = op.repo().display().to_string();
    let (mut a, _da) = node("mx-a", &schema.url(), remote.addr);
    let (mut b, _db) = node("mx-b", &schema.url(), remote.addr);
    for (gw, every) in [(&a, "300ms"), (&b, "1h")] {
        let path = gw.dir.join("mxshield.toml");
        let sigs =
            op.signatures_section(&source).replace("check_every = \"300ms\"", &format!("check_every = \"{every}\""));
        let text = std::fs::read_to_string(&path).unwrap().replacen("\n[smtp]", &format!("\n{sigs}\n[smtp]"), 1);
        std::fs::write(&path, text).unwrap();
    }
    apply(&a, &contracts(&quoted(customer.addr)));
    a.spawn();
    b.spawn();
    let nodes_json = |gw: &Gateway| -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&stdout(gw, &["nodes", "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    within(WAIT, "both nodes on release 1", async || {
        let rows = nodes_json(&a);
        rows.len() == 2 && rows.iter().all(|n| n["signatures"] == "release-1" && n["state"] == "up")
    })
    .await;
    op.add("Operator.Marker.Two", "MARKER-TWO-77ab02");
    op.publish();
    within(WAIT, "A on release 2, B shown behind", async || {
        let rows = nodes_json(&b);
        let of = |id: &str| rows.iter().find(|n| n["id"] == id).cloned().unwrap_or_default();
        of("mx-a")["signatures"] == "release-2" && of("mx-a")["state"] == "up" && of("mx-b")["state"] == "behind"
    })
    .await;
    let table = stdout(&a, &["nodes"]);
    let line = table.lines().find(|l| l.starts_with("mx-b")).unwrap();
    assert!(line.contains("behind") && line.contains("release-1"), "{table}");
    a.terminate();
    b.terminate();
}

/// A change scheduled for a later day (`contracts apply --on DAY`), like a contract whose start
/// is a later day, is in force from that day in
/// the operator's calendar, in running servers, with no restart: two nodes share one store, A
/// counts days in Pacific/Kiritimati (UTC+14), B in Etc/GMT+12 (UTC−12) — B's day is always
/// before A's, so a change for A's today is already in force on A and not yet on B. Withdrawn,
/// it is gone from both; back-dating is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_change_takes_effect_on_its_day() {
    let schema = Schema::new("cluster_scheduled");
    let old_server = Sink::start(Behaviour::Accept).await;
    let new_server = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let zone = |gw: (Gateway, TempDir), tz: &str| {
        let config = std::fs::read_to_string(gw.0.dir.join("mxshield.toml")).unwrap();
        std::fs::write(gw.0.dir.join("mxshield.toml"), format!("{config}\n[operator]\ntimezone = \"{tz}\"\n")).unwrap();
        gw
    };
    let (mut a, _da) = zone(node("mx-east", &schema.url(), remote.addr), "Pacific/Kiritimati");
    let (mut b, _db) = zone(node("mx-west", &schema.url(), remote.addr), "Etc/GMT+12");
    let standard = contracts(&quoted(old_server.addr));
    apply(&a, &standard);
    a.spawn();
    b.spawn();
    let east_today = chrono::Utc::now().with_timezone(&chrono_tz::Pacific::Kiritimati).date_naive();
    let west_today = chrono::Utc::now().with_timezone(&chrono_tz::Etc::GMTPlus12).date_naive();
    assert!(west_today < east_today);

    // carol added and mail sent to a new server from east's today, scheduled through B (for B,
    // a later day)
    let changed = contracts(&quoted(new_server.addr)).replace("\"alice\", \"bob\"", "\"alice\", \"bob\", \"carol\"");
    std::fs::write(b.dir.join("changed.toml"), &changed).unwrap();
    let day = east_today.to_string();
    let out = stdout(&b, &["contracts", "apply", "--on", &day, "--reason", "form 7", "changed.toml"]);
    assert!(
        out.contains(&format!("scheduled from {day}")) && out.contains("~ acme: receiving_servers, accounts"),
        "{out}"
    );
    within(Duration::from_secs(2), "A serves the change of its today", async || {
        rcpt_code(a.addr, "127.0.0.1", "x@remote.test", "carol@acme.example").await == 250
    })
    .await;
    assert_eq!(rcpt_code(b.addr, "127.0.0.1", "x@remote.test", "carol@acme.example").await, 550, "B: not yet");
    assert_eq!(send(a.addr, "alice@acme.example", "to the new server").await, 250);
    assert_eq!(send(b.addr, "alice@acme.example", "to the old server").await, 250);
    new_server.wait_for(1, WAIT).await;
    old_server.wait_for(1, WAIT).await;
    // listed as scheduled, kept in the history as pending
    let list = stdout(&b, &["contracts", "list"]);
    assert!(list.contains(&format!("scheduled from {day} (revision 2)")), "{list}");
    let history = stdout(&b, &["contracts", "history", "acme"]);
    assert!(history.contains("form 7") && history.contains("scheduled"), "{history}");

    // withdrawn (B's today is before the day): A is back to the contract as it is now
    let out = stdout(&b, &["contracts", "withdraw", "acme", "2"]);
    assert!(out.contains("withdrawn"), "{out}");
    within(Duration::from_secs(2), "A drops the withdrawn change", async || {
        rcpt_code(a.addr, "127.0.0.1", "x@remote.test", "carol@acme.example").await == 550
    })
    .await;
    // A cannot withdraw it (nor anything else) on or after its day
    let out = a.cli(&["contracts", "withdraw", "acme", "2"]);
    assert_eq!(out.status.code(), Some(1));
    // a contract whose start is east's today: accepted there, refused on west until its day
    let newco = "[[contract]]\nid = \"newco\"\ncustomer = \"NewCo\"\naccounts_limit = 1\nstarts = \"DAY\"\n\
                 [[contract.domain]]\nname = \"newco.example\"\nreceiving_servers = [\"SERVER\"]\naccounts = [\"dan\"]\n"
        .replace("DAY", &day)
        .replace("SERVER", &new_server.addr.to_string());
    std::fs::write(b.dir.join("newco.toml"), newco).unwrap();
    stdout(&b, &["contracts", "apply", "newco.toml"]);
    within(Duration::from_secs(2), "A accepts the contract that starts on its today", async || {
        rcpt_code(a.addr, "127.0.0.1", "x@remote.test", "dan@newco.example").await == 250
    })
    .await;
    assert_eq!(rcpt_code(b.addr, "127.0.0.1", "x@remote.test", "dan@newco.example").await, 550, "B: before its start");
    // back-dating is refused, nothing changed
    let yesterday = west_today.pred_opt().unwrap().to_string();
    let out = b.cli(&["contracts", "apply", "--on", &yesterday, "changed.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("before today"));
    assert_eq!(rcpt_code(b.addr, "127.0.0.1", "x@remote.test", "carol@acme.example").await, 550);
}

/// The admin address a node's log names (`admin_listening listen=…`).
async fn admin_addr(gw: &Gateway) -> SocketAddr {
    let log = gw.wait_log("admin_listening", Duration::from_secs(10)).await;
    let line = log.lines().find(|l| l.contains("admin_listening")).unwrap();
    line.split("listen=").nth(1).unwrap().split_whitespace().next().unwrap().trim_matches('"').parse().unwrap()
}

/// Every node's queue through one node (issue 15): a message deferred on B is listed, shown
/// and deleted through A's API with `?node=mx-b` — forwarded to B's admin listener, found in
/// the registry, with the caller's own token; B refuses a request meant for another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nodes_api_reaches_every_nodes_queue() {
    use testkit::http::request;
    let schema = Schema::new("cluster_queues");
    let customer = Sink::start(Behaviour::DataReply(451, (4, 3, 0))).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (mut a, _da) = node("mx-a", &schema.url(), remote.addr);
    let (mut b, _db) = node("mx-b", &schema.url(), remote.addr);
    apply(&a, &contracts(&quoted(customer.addr)));
    a.spawn();
    b.spawn();
    let admin_a = admin_addr(&a).await;
    within(Duration::from_secs(10), "B takes the contracts", async || {
        send(b.addr, "alice@acme.example", "deferred on B").await == 250
    })
    .await;
    let out = a.cli(&["tokens", "create", "--name", "ops", "--scope", "queue:write"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("mxs_")).unwrap().to_string();
    let auth = format!("Bearer {secret}");
    let h = [("Authorization", auth.as_str())];
    // B's queue through A, once B's heartbeat has registered its admin listener
    let mut id = String::new();
    within(Duration::from_secs(15), "B's queue through A", async || {
        let r = request(admin_a, "GET", "/api/v1/queue?node=mx-b", &h, b"").await;
        let body = r.json();
        if r.status == 200 && body["node"] == "mx-b" && body["messages"].as_array().is_some_and(|m| m.len() == 1) {
            id = body["messages"][0]["id"].as_str().unwrap().to_string();
            return true;
        }
        false
    })
    .await;
    let own = request(admin_a, "GET", "/api/v1/queue", &h, b"").await.json();
    assert_eq!((own["node"].as_str(), own["messages"].as_array().map(Vec::len)), (Some("mx-a"), Some(0)), "{own}");
    let r = request(admin_a, "GET", &format!("/api/v1/queue/{id}?node=mx-b"), &h, b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["headers"].as_str().unwrap().contains("deferred on B"));
    // the console on A: B's queue, a deletion confirmed there — with a second message
    assert_eq!(send(b.addr, "alice@acme.example", "second on B").await, 250);
    let mut child = std::process::Command::new(BIN)
        .args(["--config", a.config.to_str().unwrap(), "users", "add", "ono", "--role", "operator"])
        .current_dir(&a.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"console password 9\n").unwrap();
    assert!(child.wait().unwrap().success());
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request(admin_a, "POST", "/console/login", &form, b"user=ono&password=console+password+9").await;
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let page = |path: String| {
        let cookie = cookie.clone();
        async move { request(admin_a, "GET", &path, &[("Cookie", &cookie)], b"").await }
    };
    let mut second = String::new();
    within(Duration::from_secs(15), "B's second message on A's console", async || {
        let html = String::from_utf8_lossy(&page("/console/queue?node=mx-b".into()).await.body).into_owned();
        let ids: Vec<String> =
            html.split("<tr class=\"queued\"><td>").skip(1).map(|r| r.split('<').next().unwrap().to_string()).collect();
        match ids.iter().find(|i| **i != id) {
            Some(other) if ids.len() == 2 => {
                second = other.clone();
                html.contains("<h1>Queue (mx-b)")
            }
            _ => false,
        }
    })
    .await;
    let confirm =
        String::from_utf8_lossy(&page(format!("/console/queue/{second}/delete?node=mx-b")).await.body).into_owned();
    assert!(confirm.contains("Subject:"), "B's message header through A: {confirm}");
    let csrf = confirm.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let post = [("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let body = format!("csrf={csrf}&reason=asked+by+phone");
    let r =
        request(admin_a, "POST", &format!("/console/queue/{second}/delete?node=mx-b"), &post, body.as_bytes()).await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/console/queue?node=mx-b")),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let audit = stdout(&a, &["audit"]);
    assert!(
        audit.contains(&second) && audit.contains("console (ono) via mx-a"),
        "audited by B, naming the user: {audit}"
    );
    // deleted on B through A, with a reason, audited
    let del = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r =
        request(admin_a, "DELETE", &format!("/api/v1/queue/{id}?node=mx-b"), &del, br#"{"reason":"customer asked"}"#)
            .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let left = request(admin_a, "GET", "/api/v1/queue?node=mx-b", &h, b"").await.json();
    assert_eq!(left["messages"].as_array().map(Vec::len), Some(0), "{left}");
    let audit = stdout(&a, &["audit"]);
    assert!(audit.contains("queue.delete") && audit.contains(&id), "{audit}");
    // an unknown node, no token, a request meant for another node
    assert_eq!(request(admin_a, "GET", "/api/v1/queue?node=mx-z", &h, b"").await.status, 404);
    assert_eq!(request(admin_a, "GET", "/api/v1/queue?node=mx-b", &[], b"").await.status, 401);
    let misdirected = [("Authorization", auth.as_str()), ("X-Mxshield-Node", "mx-b")];
    assert_eq!(request(admin_a, "GET", "/api/v1/queue", &misdirected, b"").await.status, 421);
}

/// Bulk across nodes (issue 16): 5,000 copies of one campaign, half through each node — each
/// node sees 2,500, below the flag — are summed in the shared store and flag the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_spread_over_two_nodes_is_counted_whole() {
    let schema = Schema::new("cluster_bulk");
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (mut a, _da) = node("mx-a", &schema.url(), remote.addr);
    let (mut b, _db) = node("mx-b", &schema.url(), remote.addr);
    for gw in [&a, &b] {
        let text = with_conditions(&std::fs::read_to_string(&gw.config).unwrap(), "bulk_flush = \"200ms\"\n");
        std::fs::write(&gw.config, text).unwrap();
    }
    apply(&a, &contracts(&quoted(customer.addr)));
    a.spawn();
    b.spawn();
    for (gw, first) in [(&a, 0), (&b, 25)] {
        let (mut c, _) = RawClient::connect_from(SENDING_SERVER.parse().unwrap(), gw.addr).await.unwrap();
        c.cmd("EHLO mail.acme.example").await.unwrap();
        for m in first..first + 25 {
            let rcpts: Vec<String> = (0..100).map(|i| format!("r{m}x{i}@remote.test")).collect();
            let list: Vec<&str> = rcpts.iter().map(String::as_str).collect();
            assert_eq!(c.send_mail("news@acme.example", &list, &newsletter_ja(m)).await.unwrap().code, 250);
        }
    }
    let mut finding = serde_json::Value::Null;
    within(Duration::from_secs(20), "the campaign counted whole", async || {
        let report: serde_json::Value =
            serde_json::from_str(&stdout(&a, &["conditions", "--contract", "acme", "--json"])).unwrap();
        if let Some(f) = report["findings"].as_array().and_then(|f| f.iter().find(|f| f["kind"] == "bulk")) {
            finding = f.clone();
            return f["counts"]["copies_24h"] == 5000.0;
        }
        false
    })
    .await;
    assert_eq!(finding["level"], "flag", "{finding}");
}

/// The open-relay probe across nodes (issue 16): node A probes, the relaying server delivers
/// the canary to node B (its smarthost), B records the arrival in the shared store, and A's
/// probe finds it there — the open relay is proven whichever node the canary reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_reaches_another_node_proves_the_open_relay() {
    let schema = Schema::new("cluster_relay");
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let relay_port = free_port();
    let (mut a, _da) = node("mx-a", &schema.url(), remote.addr);
    let (mut b, _db) = node("mx-b", &schema.url(), remote.addr);
    for gw in [&a, &b] {
        let keys = format!("relay_test_port = {relay_port}\nrelay_test_wait = \"5s\"\n");
        let text = with_conditions(&std::fs::read_to_string(&gw.config).unwrap(), &keys);
        std::fs::write(&gw.config, text).unwrap();
    }
    apply(&a, &contracts(&quoted(customer.addr)));
    a.spawn();
    b.spawn();
    let _relay =
        Sink::start_on(format!("127.0.0.5:{relay_port}").parse().unwrap(), Behaviour::Relay(b.addr), false).await;
    let out = a.cli(&["conditions", "relay-test", "acme", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let relayed: Vec<&serde_json::Value> =
        report["probes"].as_array().unwrap().iter().filter(|p| !p["arrived_at"].is_null()).collect();
    assert_eq!(relayed.len(), 1, "{report}");
    assert_eq!(relayed[0]["node"], "mx-a", "probed by A: {report}");
    assert!(b.log().contains("relay_canary_recorded"), "received by B: {}", b.log());
    assert!(!a.log().contains("relay_canary_recorded"));
    let f: serde_json::Value =
        serde_json::from_str(&stdout(&b, &["conditions", "--contract", "acme", "--json"])).unwrap();
    let f = f["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "open-relay").cloned().unwrap();
    assert_eq!(f["level"], "flag", "seen from either node: {f}");
}
