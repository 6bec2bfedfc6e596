//! The admin listener of the real binary (issue 15): `serve` starts it on `[admin] listen`;
//! tokens made with `mxshield tokens create` open the API, scoped and bound to contracts;
//! revoked ones no longer do; every token change is in the audit log.

mod common;

use common::*;
use testkit::http::request;

/// The admin address of a gateway started with `[admin] listen` on a free port.
fn admin_config(c: String, admin: u16) -> String {
    format!("{c}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n")
}

fn created_secret(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find(|l| l.starts_with("mxs_")).expect("the secret is printed once").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_tokens_made_on_the_command_line() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let admin_port = testkit::free_port();
    let (gw, _dir) = gateway("admin", &quoted(customer.addr), customer.addr, |c| {
        admin_config(c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", ""), admin_port)
    });
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    assert_eq!(request(admin, "GET", "/healthz", &[], b"").await.status, 200);
    assert!(gw.log().contains("event=\"admin_listening\""), "{}", gw.log());
    // no token: refused as a problem
    let r = request(admin, "GET", "/api/v1/contracts", &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    // a token from the CLI
    let secret = created_secret(&gw.cli(&["tokens", "create", "--name", "help desk", "--scope", "contracts:read"]));
    let auth = format!("Bearer {secret}");
    let r = request(admin, "GET", "/api/v1/contracts", &[("Authorization", &auth)], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let list = r.json();
    assert_eq!(list["contracts"][0]["id"], "acme");
    assert_eq!(list["contracts"][0]["domains"][0]["name"], "acme.example");
    let r = request(admin, "GET", "/api/v1/domains/acme.example", &[("Authorization", &auth)], b"").await;
    assert_eq!(r.json()["contract"], "acme");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // bound to a contract that is not acme's: acme is invisible
    apply(
        &gw,
        &(contracts(&quoted(customer.addr))
            + "\n[[contract]]\nid = \"beta\"\ncustomer = \"Beta\"\naccounts_limit = 1\nstarts = \"2026-01-01\"\n[[contract.domain]]\nname = \"beta.example\"\nreceiving_servers = [\"127.0.0.1:1\"]\naccounts = []\n"),
    );
    let bound = created_secret(&gw.cli(&[
        "tokens",
        "create",
        "--name",
        "beta",
        "--scope",
        "contracts:read",
        "--contract",
        "beta",
    ]));
    let bound_auth = format!("Bearer {bound}");
    let r = request(admin, "GET", "/api/v1/contracts/acme", &[("Authorization", &bound_auth)], b"").await;
    assert_eq!(r.status, 404);
    let r = request(admin, "GET", "/api/v1/contracts", &[("Authorization", &bound_auth)], b"").await;
    let ids: Vec<String> =
        r.json()["contracts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["beta"]);
    // refused at creation: a write scope on a bound token, an unknown contract, a bad scope
    let out =
        gw.cli(&["tokens", "create", "--name", "x", "--scope", "contracts:write,money:read", "--contract", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown resource") && err.contains("\"nobody\": no such contract") && err.contains("read-only"),
        "{err}"
    );
    // nor the operator's own data on a bound token
    let out = gw.cli(&["tokens", "create", "--name", "y", "--scope", "queue:read", "--contract", "beta"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not queue"), "{}", String::from_utf8_lossy(&out.stderr));
    // revoked: refused from then on
    let list = String::from_utf8_lossy(&gw.cli(&["tokens", "list"]).stdout).into_owned();
    let id =
        list.lines().find(|l| l.contains("help desk")).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    let help_desk = list.lines().find(|l| l.contains("help desk")).unwrap();
    assert!(help_desk.contains("contracts:read") && help_desk.contains("(all)"), "{list}");
    assert!(gw.cli(&["tokens", "revoke", &id]).status.success());
    let r = request(admin, "GET", "/api/v1/contracts", &[("Authorization", &auth)], b"").await;
    assert_eq!(r.status, 401);
    // every token change is audited: who, from where, what
    let audit = String::from_utf8_lossy(&gw.cli(&["audit"]).stdout).into_owned();
    assert!(audit.contains("tokens.create") && audit.contains(&format!("tokens.revoke {id}")), "{audit}");
    // the secret itself is nowhere in the store
    let db = std::fs::read(gw.dir.join("data/contracts.db")).unwrap_or_default();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()), "only a hash is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_can_be_switched_off_and_never_takes_an_smtp_port() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("admin-off", &quoted(customer.addr), customer.addr, |c| {
        c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", "\n[admin]\nenabled = false\n")
    });
    assert!(!gw.log().contains("admin_listening"), "{}", gw.log());
    // an [admin] listen on the SMTP address is a configuration error
    let smtp = gw.addr;
    std::fs::write(gw.dir.join("clash.toml"), format!("[smtp]\nlisten = [\"{smtp}\"]\n[admin]\nlisten = \"{smtp}\"\n"))
        .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--config", "clash.toml", "check-config"])
        .current_dir(&gw.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is an SMTP address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The message log through the API: a bounded time window, pages joined by a cursor, one
/// message with its recipients, its delivery timeline and the warning it caused; refused to a
/// token bound to contracts (issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_log_is_searched_a_page_at_a_time() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let admin_port = testkit::free_port();
    let (gw, _dir) = gateway("admin-log", &quoted(customer.addr), customer.addr, |c| {
        admin_config(c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", ""), admin_port)
    });
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    for i in 0..3 {
        let body = testkit::client::message(&format!("page test {i}"), "hello");
        let r = testkit::client::send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap();
        assert_eq!(r.code, 250);
    }
    customer.wait_for(3, WAIT).await;
    let secret = created_secret(&gw.cli(&["tokens", "create", "--name", "desk", "--scope", "log:read"]));
    let auth = format!("Bearer {secret}");
    let get = |path: String| {
        let auth = auth.clone();
        async move { request(admin, "GET", &path, &[("Authorization", &auth)], b"").await }
    };
    // the records reach the log a moment after delivery
    let mut first = get("/api/v1/log?since=1h&limit=2".into()).await;
    for _ in 0..100 {
        if first.json()["messages"].as_array().is_some_and(|m| m.len() == 2) && !first.json()["next"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        first = get("/api/v1/log?since=1h&limit=2".into()).await;
    }
    let page1 = first.json();
    assert_eq!(page1["messages"].as_array().unwrap().len(), 2, "{page1}");
    let next = page1["next"].as_str().expect("a next page").to_string();
    let page2 = get(format!("/api/v1/log?since=1h&limit=2&cursor={next}")).await.json();
    assert_eq!(page2["messages"].as_array().unwrap().len(), 1, "{page2}");
    assert!(page2["next"].is_null());
    let mut subjects: Vec<String> = page1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["messages"].as_array().unwrap())
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["page test 0", "page test 1", "page test 2"], "every message once");
    // one message, with its recipients
    let id = page2["messages"][0]["queue_id"].as_str().unwrap().to_string();
    let one = get(format!("/api/v1/log/{id}")).await.json();
    assert_eq!(one["recipients"][0]["rcpt"], "alice@acme.example");
    assert_eq!(one["recipients"][0]["state"], "delivered");
    // the hourly roll-ups: three received and delivered, then one infected (deleted)
    let eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let body = testkit::client::message("infected", eicar);
    assert_eq!(
        testkit::client::send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap().code,
        250
    );
    let total = |v: &serde_json::Value, field: &str| -> i64 {
        v["buckets"].as_array().unwrap().iter().map(|b| b[field].as_i64().unwrap_or(0)).sum()
    };
    let mut stats = serde_json::Value::Null;
    for _ in 0..100 {
        stats = get("/api/v1/log/stats?since=2h".into()).await.json();
        if stats["buckets"].is_array() && total(&stats, "infected") == 1 && total(&stats, "received") == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // the four sent, and the warning the virus caused (a message of its own)
    assert_eq!((total(&stats, "received"), total(&stats, "infected")), (5, 1), "{stats}");
    let sum = |path: [&str; 2]| -> i64 {
        stats["buckets"].as_array().unwrap().iter().map(|b| b[path[0]][path[1]].as_i64().unwrap_or(0)).sum()
    };
    assert_eq!((sum(["by_direction", "inbound"]), sum(["by_direction", "warning"])), (4, 1), "{stats}");
    assert_eq!(sum(["by_action", "drop"]), 1, "{stats}");
    // the infected message: its warning is found with it, and a delivered one has its timeline
    let infected = get("/api/v1/log?since=1h&infected=true".into()).await.json();
    let infected_id = infected["messages"][0]["queue_id"].as_str().expect("the infected message").to_string();
    let mut detail = serde_json::Value::Null;
    for _ in 0..100 {
        detail = get(format!("/api/v1/log/{infected_id}")).await.json();
        if detail["related"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(detail["related"][0]["direction"], "warning", "{detail}");
    assert_eq!(detail["related"][0]["related"], infected_id.as_str());
    let one = get(format!("/api/v1/log/{id}")).await.json();
    let timeline = one["timeline"].as_array().expect("a timeline");
    assert!(
        timeline
            .iter()
            .any(|e| e["rcpt"] == "alice@acme.example" && e["state"] == "delivered" && e["at"].as_i64() > Some(0)),
        "{one}"
    );
    assert!(stats["buckets"].as_array().unwrap().len() >= 2, "an hourly bucket for each hour of the window");
    // a window is required, and bounded
    let r = get("/api/v1/log".into()).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["errors"][0]["pointer"], "/since");
    assert_eq!(get("/api/v1/log?since=60d".into()).await.status, 422);
    assert_eq!(get("/api/v1/log?since=1h&cursor=garbage!".into()).await.status, 422);
    // not for a token bound to a contract, nor one without the scope
    let bound =
        created_secret(&gw.cli(&["tokens", "create", "--name", "acme", "--scope", "log:read", "--contract", "acme"]));
    let r = request(admin, "GET", "/api/v1/log?since=1h", &[("Authorization", &format!("Bearer {bound}"))], b"").await;
    assert_eq!(r.status, 403);
    assert!(r.json()["detail"].as_str().unwrap().contains("no message log"));
}

/// `/metrics` on the admin listener, for a token with `metrics:read`: what the mail path
/// recorded, in the Prometheus text format, with bounded labels (issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_what_the_mail_path_recorded() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let admin_port = testkit::free_port();
    let (gw, _dir) = gateway("admin-metrics", &quoted(customer.addr), customer.addr, |c| {
        admin_config(c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", ""), admin_port)
    });
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let body = testkit::client::message("counted", "hello");
    let r = testkit::client::send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250);
    customer.wait_for(1, WAIT).await;
    gw.wait_log("event=\"delivered\"", WAIT).await;
    let secret = created_secret(&gw.cli(&["tokens", "create", "--name", "prometheus", "--scope", "metrics:read"]));
    let r = request(admin, "GET", "/metrics", &[("Authorization", &format!("Bearer {secret}"))], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    for want in [
        "# TYPE mxshield_deliveries_total counter",
        "mxshield_deliveries_total{result=\"delivered\"} 1",
        "# TYPE mxshield_scan_duration_seconds histogram",
        "mxshield_scan_duration_seconds_count 1",
        "mxshield_signatures ",
        // per contract ([admin] metrics_by_contract, on by default): the contract's id, never its domains
        "mxshield_contract_messages_total{contract=\"acme\",direction=\"inbound\",result=\"accepted\"} 1",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // bounded labels: no address, queue id or recipient anywhere
    assert!(!text.contains("127.0.0.1") && !text.contains("alice") && !text.contains("acme.example"), "{text}");
    // a token without the scope
    let other = created_secret(&gw.cli(&["tokens", "create", "--name", "desk", "--scope", "contracts:read"]));
    let r = request(admin, "GET", "/metrics", &[("Authorization", &format!("Bearer {other}"))], b"").await;
    assert_eq!(r.status, 403);
    // the nodes, as `mxshield nodes` shows them
    let nodes = created_secret(&gw.cli(&["tokens", "create", "--name", "watch", "--scope", "nodes:read"]));
    let auth = format!("Bearer {nodes}");
    let mut listed = serde_json::Value::Null;
    for _ in 0..100 {
        listed = request(admin, "GET", "/api/v1/nodes", &[("Authorization", &auth)], b"").await.json();
        if listed["nodes"].as_array().is_some_and(|n| !n.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed["nodes"][0]["id"], "mx.test", "{listed}");
    assert_eq!(listed["nodes"][0]["state"], "up", "{listed}");
    assert!(listed["nodes"][0]["signatures"].as_str().is_some_and(|s| s.starts_with("builtin")), "{listed}");
    // which release runs where; this node's updater is off (no [signatures] source)
    let sigs = request(admin, "GET", "/api/v1/signatures", &[("Authorization", &auth)], b"").await.json();
    assert_eq!(sigs["this_node"]["updates"], "off", "{sigs}");
    assert_eq!(sigs["nodes"][0]["node"], "mx.test", "{sigs}");
}

/// This node's queue through the API: list, one message, a flush that needs its dry run first,
/// a deletion that needs a reason; each audited (issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_managed_through_the_api() {
    let admin_port = testkit::free_port();
    let remote = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    // the customer's server is down: the mail waits in the queue
    let (gw, _dir) = gateway("admin-queue", &quoted(down_addr()), remote.addr, |c| {
        admin_config(c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", ""), admin_port)
    });
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    for i in 0..2 {
        let body = testkit::client::message(&format!("waiting {i}"), "hello");
        assert_eq!(
            testkit::client::send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap().code,
            250
        );
    }
    let writer = created_secret(&gw.cli(&["tokens", "create", "--name", "ops", "--scope", "queue:write"]));
    let auth = format!("Bearer {writer}");
    let call = |method: &'static str, path: String, body: &'static [u8]| {
        let auth = auth.clone();
        async move {
            request(admin, method, &path, &[("Authorization", &auth), ("Content-Type", "application/json")], body).await
        }
    };
    let list = call("GET", "/api/v1/queue".into(), b"").await.json();
    assert_eq!(list["node"], "mx.test");
    let ids: Vec<String> =
        list["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2, "{list}");
    let one = call("GET", format!("/api/v1/queue/{}", ids[0]), b"").await.json();
    assert_eq!(one["recipients"][0]["rcpt"], "alice@acme.example");
    assert!(one["headers"].as_str().unwrap().contains("Subject: waiting"), "{one}");
    // a flush: refused blind, then its dry run, then with the dry run's confirm value
    assert_eq!(call("POST", "/api/v1/queue/flush".into(), b"").await.status, 428);
    let dry = call("POST", "/api/v1/queue/flush?dry_run=true".into(), b"").await.json();
    assert_eq!(dry["would_retry"], 2);
    assert_eq!(call("POST", "/api/v1/queue/flush?confirm=00000000".into(), b"").await.status, 409);
    let confirm = dry["confirm"].as_str().unwrap();
    let done = call("POST", format!("/api/v1/queue/flush?confirm={confirm}"), b"").await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    // a deletion: a reason is required
    let r = call("DELETE", format!("/api/v1/queue/{}", ids[0]), b"{}").await;
    assert_eq!((r.status, r.json()["errors"][0]["pointer"].as_str()), (422, Some("/reason")));
    let r = call("DELETE", format!("/api/v1/queue/{}", ids[0]), b"{\"reason\": \"customer asked\"}").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["pending_recipients"][0], "alice@acme.example");
    assert_eq!(call("GET", format!("/api/v1/queue/{}", ids[0]), b"").await.status, 404);
    assert_eq!(call("GET", "/api/v1/queue/not-an-id".into(), b"").await.status, 422);
    let audit = String::from_utf8_lossy(&gw.cli(&["audit"]).stdout).into_owned();
    assert!(
        audit.contains(&format!("queue.delete {}", ids[0]))
            && audit.contains("customer asked")
            && audit.contains("queue.flush"),
        "{audit}"
    );
    // read-only tokens may look, not act
    let reader = created_secret(&gw.cli(&["tokens", "create", "--name", "look", "--scope", "queue:read"]));
    let r = request(admin, "POST", "/api/v1/queue/flush", &[("Authorization", &format!("Bearer {reader}"))], b"").await;
    assert_eq!(r.status, 403);
}

/// The console of the real binary: a user added on the command line (password on standard
/// input) signs in over HTTP and finds the mail just received counted on the dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_user_signs_in_and_sees_the_mail_on_the_dashboard() {
    use std::io::Write;
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let admin_port = testkit::free_port();
    let (gw, _dir) = gateway("console", &quoted(customer.addr), customer.addr, |c| {
        admin_config(c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", ""), admin_port)
    });
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    for i in 0..2 {
        let body = testkit::client::message(&format!("dashboard {i}"), "hello");
        assert_eq!(
            testkit::client::send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap().code,
            250
        );
    }
    customer.wait_for(2, WAIT).await;
    let add = |password: &str| {
        let mut child = std::process::Command::new(BIN)
            .args(["--config", gw.config.to_str().unwrap(), "users", "add", "suzuki", "--role", "auditor"])
            .current_dir(&gw.dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let short = add("short");
    assert_eq!(short.status.code(), Some(2), "a short password is refused");
    assert!(add("a long enough pass").status.success());
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request(admin, "POST", "/console/login", &form, b"user=suzuki&password=a+long+enough+pass").await;
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let mut inbound = String::new();
    for _ in 0..100 {
        let page = request(admin, "GET", "/console/", &[("Cookie", &cookie), ("Accept-Language", "en")], b"").await;
        assert_eq!(page.status, 200);
        let text = String::from_utf8_lossy(&page.body).into_owned();
        inbound = text.split("<td id=\"inbound\">").nth(1).and_then(|t| t.split('<').next()).unwrap_or("").to_string();
        if inbound == "2" {
            assert!(text.contains("Signed in as suzuki (auditor)"), "{text}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(inbound, "2", "the two messages counted from the roll-ups");
    // the message trace: a GET form (no script), the messages found, each one's timeline
    let headers = [("Cookie", cookie.as_str()), ("Accept-Language", "en")];
    let found = request(admin, "GET", "/console/trace?since=1h&recipient=alice%40acme.example", &headers, b"").await;
    let text = String::from_utf8_lossy(&found.body).into_owned();
    assert!(
        text.contains("dashboard 0") && text.contains("dashboard 1") && text.contains("alice@acme.example (delivered)"),
        "{text}"
    );
    let link = text.split("<a href=\"/console/trace/").nth(1).and_then(|t| t.split('"').next()).unwrap().to_string();
    let one = request(admin, "GET", &format!("/console/trace/{link}"), &headers, b"").await;
    assert_eq!(one.status, 200);
    let detail = String::from_utf8_lossy(&one.body).into_owned();
    assert!(
        detail.contains("<tr class=\"rcpt\"><td>alice@acme.example</td>") && detail.contains("delivered"),
        "{detail}"
    );
    let none = request(admin, "GET", "/console/trace?since=1h&sender=nobody%40x.test", &headers, b"").await;
    assert!(String::from_utf8_lossy(&none.body).contains("id=\"nothing\""));
    // detections: a virus sent, counted by virus, contract and day, linking into the trace
    let eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let body = testkit::client::message("infected", eicar);
    assert_eq!(
        testkit::client::send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap().code,
        250
    );
    let mut text = String::new();
    for _ in 0..100 {
        let page = request(admin, "GET", "/console/detections?since=1h", &headers, b"").await;
        text = String::from_utf8_lossy(&page.body).into_owned();
        if text.contains("contract=acme\">acme</a></td><td>1</td>") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(text.contains("contract=acme\">acme</a></td><td>1</td>"), "{text}");
    let by_virus = text.split("id=\"by-virus\"").nth(1).unwrap_or_default();
    assert_eq!(by_virus.split("</table>").next().unwrap_or_default().matches("<td>1</td>").count(), 1, "{text}");
    // signed out: every page sends to the sign-in page
    assert_eq!(request(admin, "GET", "/console/trace", &[], b"").await.status, 303);
    let audit = String::from_utf8_lossy(&gw.cli(&["audit"]).stdout).into_owned();
    assert!(audit.contains("users.add suzuki"), "{audit}");
}

/// `[admin] tls = true`: the listener speaks only TLS, with `[smtp.tls]`'s certificate, checked
/// by curl against that certificate; a plain request gets no answer (issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_speaks_tls_with_the_smtp_certificate() {
    let certs = testkit::TempDir::new("admin-tls-certs");
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let out = std::process::Command::new(BIN)
        .args(["tls", "self-signed", "--hostname", "mx.test", "--cert", cert.to_str().unwrap()])
        .args(["--key", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let port = testkit::free_port();
    let (gw, _dir) = gateway("admin-tls", &quoted(customer.addr), customer.addr, |c| {
        format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntls = true\n[smtp.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", ""),
            cert.display(),
            key.display()
        )
    });
    assert!(gw.log().contains("tls=true"), "{}", gw.log());
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", cert.to_str().unwrap()])
        .args(["--resolve", &format!("mx.test:{port}:127.0.0.1"), &format!("https://mx.test:{port}/healthz")])
        .output()
        .expect("curl (scripts/test.sh installs it)");
    assert!(curl.status.success(), "{}", String::from_utf8_lossy(&curl.stderr));
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "ok\n");
    let plain = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("http://127.0.0.1:{port}/healthz")])
        .output()
        .unwrap();
    assert!(!plain.status.success() && plain.stdout.is_empty(), "no answer in the clear");
    // [admin] tls without a certificate is a configuration error
    std::fs::write(gw.dir.join("no-cert.toml"), "[admin]\ntls = true\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--config", "no-cert.toml", "check-config"])
        .current_dir(&gw.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[smtp.tls]"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A few clients cannot hold the operator out: past `max_connections` a client waits until a
/// connection closes, and a client that never finishes its request header is cut off after
/// `header_timeout` (issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let port = testkit::free_port();
    let (_gw, _dir) = gateway("admin-slow", &quoted(customer.addr), customer.addr, |c| {
        format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:{port}\"\nmax_connections = 2\nheader_timeout = \"2s\"\n",
            c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", "")
        )
    });
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // two clients that start a request and never finish its header
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // a third one waits: no answer while both are held
    let waiting = tokio::spawn(async move { request(addr, "GET", "/healthz", &[], b"").await.status });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "past max_connections a client waits");
    // the slow ones are cut off after header_timeout, and the third is answered
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await.expect("answered").unwrap();
    assert_eq!(status, 200);
    for mut s in slow {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await.expect("closed");
        // hyper answers a timed-out header with nothing or a 408, then closes
        let text = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).to_string();
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
}
