//! The open-relay probe (issue 16), black-box: the contract's sending server is a loopback
//! open relay (it passes any message on to its smarthost, the gateway) and its receiving server
//! refuses relaying. `mxshield conditions relay-test` asks each to relay a message to a canary
//! address of the gateway; the canary that arrives proves the open relay, with the transcript
//! kept as evidence. With the policy `defer`, the contract's outbound mail is then held until
//! the operator clears the finding; on schedule, with `warn`, the operator is mailed.

mod common;

use std::time::Duration;

use common::*;
use testkit::client::RawClient;
use testkit::sink::{Behaviour, Sink};

/// The open-relay finding of contract acme (`Null` if none).
fn relay_finding(gw: &testkit::gateway::Gateway) -> serde_json::Value {
    let out = gw.cli(&["conditions", "--contract", "acme", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "open-relay"))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Waits (bounded) until the outbound `RCPT` is answered `code`.
async fn wait_outbound(gw: std::net::SocketAddr, code: u16) -> (u16, String) {
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = outbound_rcpt(gw).await;
        if last.0 == code {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_relay_is_proven_by_its_canary_a_closed_server_is_not_and_defer_holds_until_cleared() {
    let relay_port = testkit::free_port();
    // the receiving server relays for nobody but its own domain
    let customer = Sink::start(Behaviour::RefuseRelay(vec!["acme.example".into()])).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (gw, _dir) = gateway("open-relay", &quoted(customer.addr), remote.addr, |c| {
        with_conditions(
            &c,
            &format!(
                "open_relay = \"defer\"\ncheck_every = \"1s\"\nrelay_test_port = {relay_port}\nrelay_test_wait = \"10s\"\n"
            ),
        )
    });
    // the sending server (127.0.0.5) is an open relay whose smarthost is the gateway
    let relay =
        Sink::start_on(format!("127.0.0.5:{relay_port}").parse().unwrap(), Behaviour::Relay(gw.addr), false).await;
    assert_eq!(outbound_rcpt(gw.addr).await.0, 250, "nothing measured yet");

    let out = gw.cli(&["conditions", "relay-test", "acme"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "an open relay found: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let open = text.split("\n\n").find(|s| s.contains("127.0.0.5")).unwrap_or_default();
    assert!(open.contains("OPEN RELAY: the canary arrived"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(open.contains("C: RCPT TO:<relay-canary-") && open.contains("S: 250"), "the transcript: {text}");
    let closed = text.split("\n\n").find(|s| s.contains(&customer.addr.to_string())).unwrap_or_default();
    assert!(closed.contains("refused to relay") && closed.contains("554 5.7.1"), "{text}");
    // the canary reached the gateway through the relay, and went nowhere else
    assert_eq!(relay.count(), 1);
    assert!(
        customer.messages().is_empty() && remote.messages().is_empty(),
        "{:?} {:?}",
        customer.messages(),
        remote.messages()
    );

    let f = relay_finding(&gw);
    assert_eq!(f["level"], "flag", "{f}");
    assert_eq!(f["state"], "open", "{f}");
    assert_eq!(f["counts"]["relayed_canary"], 1.0, "{f}");
    assert_eq!(f["counts"]["servers_probed"], 2.0, "{f}");
    let evidence = f["evidence"].to_string();
    assert!(evidence.contains("127.0.0.5") && evidence.contains("relayed canary"), "{f}");
    assert!(evidence.contains("C: MAIL FROM:<relay-probe@mx.test>"), "the transcript is the evidence: {f}");
    assert!(evidence.contains("open relay"), "the relay's own Received: field: {f}");

    // defer: the contract's outbound mail is held while the finding is open …
    let held = wait_outbound(gw.addr, 451).await;
    assert!(held.1.contains("4.7.1") && held.1.contains("open-relay"), "{held:?}");
    // … and acknowledged (seen, still open)
    let out = gw.cli(&["conditions", "acknowledge", "acme", "open-relay"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(relay_finding(&gw)["state"], "acknowledged");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(outbound_rcpt(gw.addr).await.0, 451, "acknowledged is not cleared");
    // cleared: released at the next check
    let out = gw.cli(&["conditions", "clear", "acme", "open-relay"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(wait_outbound(gw.addr, 250).await.0, 250, "released once cleared");
    let f = relay_finding(&gw);
    assert_eq!((f["level"].as_str(), f["state"].as_str()), (Some("ok"), Some("cleared")), "{f}");
    let audit = String::from_utf8_lossy(&gw.cli(&["audit"]).stdout).into_owned();
    assert!(audit.contains("conditions.acknowledge") && audit.contains("conditions.clear"), "{audit}");
    // a forged canary (a token no probe made) is accepted and recorded nowhere
    let (mut c, _) = RawClient::connect(gw.addr).await.unwrap();
    c.cmd("EHLO forger.test").await.unwrap();
    let forged = format!("relay-canary-{}@mx.test", "0".repeat(32));
    let r = c.send_mail("x@remote.test", &[&forged], b"Subject: x\r\n\r\nx\r\n").await.unwrap();
    assert_eq!(r.code, 250);
    gw.wait_log("relay_canary_unknown", WAIT).await;
    assert_eq!(relay_finding(&gw)["counts"]["relayed_canary"], 0.0);
}

/// On schedule (`relay_test_every`), the running gateway probes by itself; with the policy
/// `warn` it mails the operator once about the open relay, with the evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_probe_finds_an_open_relay_and_warn_mails_the_operator() {
    let relay_port = testkit::free_port();
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (gw, _dir) = gateway("open-relay-scheduled", &quoted(customer.addr), remote.addr, |c| {
        with_conditions(&c, &format!(
            "open_relay = \"warn\"\nnotify = \"ops@remote.test\"\ncheck_every = \"1s\"\nrelay_test_port = {relay_port}\nrelay_test_wait = \"5s\"\n"
        ))
        .replace("relay_test_every = \"0s\"", "relay_test_every = \"1h\"\nrelay_test_delay = \"0s\"")
    });
    let _relay =
        Sink::start_on(format!("127.0.0.5:{relay_port}").parse().unwrap(), Behaviour::Relay(gw.addr), false).await;
    let got = remote.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{}", gw.log());
    assert_eq!(got[0].rcpts, ["ops@remote.test"]);
    let text = got[0].text();
    assert!(text.contains("Subject: [mxshield] conditions of use: open-relay flagged for contract acme"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap().replace("\r\n", "");
    let body = String::from_utf8(mime::decode::base64(body.as_bytes())).unwrap();
    assert!(body.contains("relayed canary") && body.contains("RCPT TO:<relay-canary-"), "{body}");
    assert!(body.contains("利用条件"), "Japanese too: {body}");
    // the receiving server took the canary without relaying it: suspect, not proven
    let f = relay_finding(&gw);
    assert_eq!(f["counts"]["took_canary_not_arrived"], 1.0, "{f}");
    assert_eq!(f["level"], "flag", "{f}");
    // one mail per finding, not one per check
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(remote.count(), 1);
    assert!(customer.messages().iter().all(|m| m.rcpts[0].starts_with("relay-canary-")));
}
