//! The conditions of use, measured (issue 16, first part), black-box: a contract's outbound
//! mail through the real gateway to a remote server that refuses some recipients as unknown
//! (550 5.1.1) and some as spam (550 5.7.1 … spam); `mxshield conditions` then shows the
//! hard-bounce rate flagged and the spam rejections warned, with the counts, the window and
//! the thresholds applied.

mod common;

use common::*;
use testkit::client::{RawClient, message};
use testkit::sink::{Behaviour, Sink};

/// The remote server: of 300 recipients, 30 unknown (10 %: flagged) and 15 refused as spam
/// (a day's 15: warned at 10, not flagged at 50).
async fn remote_server() -> Sink {
    let unknown: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    let spam: Vec<String> = (0..15).map(|i| format!("s{i}")).collect();
    Sink::start(Behaviour::UnknownAndSpam(unknown, spam)).await
}

/// The contract's newsletter to those 300 recipients, 100 a message, from its sending server.
async fn send_newsletter(gw: std::net::SocketAddr) {
    let mut rcpts: Vec<String> = (0..255).map(|i| format!("ok{i}@remote.test")).collect();
    rcpts.extend((0..30).map(|i| format!("u{i}@remote.test")));
    rcpts.extend((0..15).map(|i| format!("s{i}@remote.test")));
    for (n, chunk) in rcpts.chunks(100).enumerate() {
        let (mut c, _) = RawClient::connect_from(SENDING_SERVER.parse().unwrap(), gw).await.unwrap();
        c.cmd("EHLO mail.acme.example").await.unwrap();
        let list: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let r = c.send_mail("alice@acme.example", &list, &message(&format!("newsletter {n}"), "hello")).await.unwrap();
        assert_eq!(r.code, 250);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_and_spam_rejections_of_outbound_mail_are_measured_per_contract() {
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = remote_server().await;
    let (gw, _dir) = gateway("conditions", &quoted(customer.addr), remote.addr, |c| c);
    send_newsletter(gw.addr).await;
    remote.wait_for(3, WAIT).await;
    // every outcome in the message log (it is written a moment after delivery)
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        let out = gw.cli(&["conditions", "--contract", "acme", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        report = serde_json::from_slice(&out.stdout).unwrap();
        let undeliverable = report["findings"].as_array().and_then(|f| f.iter().find(|f| f["kind"] == "undeliverable"));
        let copies = undeliverable.map_or(0.0, |f| f["counts"]["copies_window"].as_f64().unwrap_or(0.0));
        if copies >= 300.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let findings = report["findings"].as_array().expect("findings");
    let undeliverable = findings.iter().find(|f| f["kind"] == "undeliverable").expect("the bounce rate");
    assert_eq!(undeliverable["contract"], "acme");
    assert_eq!(undeliverable["counts"]["copies_window"], 300.0, "{report}");
    assert_eq!(undeliverable["counts"]["hard_bounces_window"], 30.0, "{report}");
    assert_eq!(undeliverable["counts"]["policy_rejections_window"], 15.0, "{report}");
    assert_eq!(undeliverable["level"], "flag", "10 % of 300 copies: {report}");
    assert!(undeliverable["threshold"].as_str().unwrap().contains("flag at 10 %"));
    assert!(undeliverable["evidence"][0].as_str().unwrap().contains("5.1.1"), "{report}");
    assert!(undeliverable["first_seen"].is_string());
    let spam_rejections = findings.iter().find(|f| f["kind"] == "spam-rejections").expect("the spam rejections");
    assert_eq!(spam_rejections["counts"]["today"], 15.0, "{report}");
    assert_eq!(spam_rejections["level"], "warn", "{report}");
    assert!(spam_rejections["evidence"][0].as_str().unwrap().contains("spam"), "{report}");
    // the operator's thresholds: stricter, then the same counts flag the spam too
    let text = with_conditions(&std::fs::read_to_string(&gw.config).unwrap(), "spam_flag_per_day = 15\n");
    std::fs::write(&gw.config, text).unwrap();
    let out = gw.cli(&["conditions"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table.lines().find(|l| l.contains("spam-rejections")).expect("a line per finding");
    assert!(line.contains("flag") && line.contains("flag at 15"), "{table}");
    // a bad threshold is a configuration error
    std::fs::write(gw.dir.join("bad.toml"), "[conditions]\nbounce_warn_percent = 20\nbounce_flag_percent = 10\n")
        .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--config", "bad.toml", "check-config"])
        .current_dir(&gw.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bounce_flag_percent"));
}

/// The policy `defer`: once the bounce rate is flagged, the contract's outbound mail is
/// answered `451 4.7.1` (its inbound mail still flows); cleared by the operator, it is accepted
/// again (issue 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_contract_is_deferred_until_the_operator_clears_it() {
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = remote_server().await;
    let (gw, _dir) = gateway("conditions-defer", &quoted(customer.addr), remote.addr, |c| {
        with_conditions(&c, "undeliverable = \"defer\"\ncheck_every = \"1s\"\n")
    });
    assert_eq!(outbound_rcpt(gw.addr).await.0, 250, "nothing measured yet");
    send_newsletter(gw.addr).await;
    remote.wait_for(3, WAIT).await;
    let mut held = (0, String::new());
    for _ in 0..100 {
        held = outbound_rcpt(gw.addr).await;
        if held.0 == 451 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(held.0, 451, "{held:?}");
    assert!(held.1.contains("4.7.1") && held.1.contains("undeliverable"), "{held:?}");
    // inbound mail to the contract's domain is not held
    let (mut c, _) = RawClient::connect(gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    let r = c.send_mail("x@remote.test", &["alice@acme.example"], &message("inbound", "x")).await.unwrap();
    assert_eq!(r.code, 250);
    // cleared: measured from now on, so accepted again at the next check
    let out = gw.cli(&["conditions", "clear", "acme", "undeliverable"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut code = 0;
    for _ in 0..100 {
        code = outbound_rcpt(gw.addr).await.0;
        if code == 250 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(code, 250, "released once cleared");
    assert!(gw.log().contains("outbound_hold_off"), "{}", gw.log());
    let audit = String::from_utf8_lossy(&gw.cli(&["audit", "--action", "conditions.clear"]).stdout).into_owned();
    assert!(audit.contains("acme undeliverable"), "{audit}");
}

/// `messages` personalised newsletters, each to 100 recipients, from the contract's sending
/// server (copies: 100 a message).
async fn send_campaign(gw: std::net::SocketAddr, messages: usize) {
    let (mut c, _) = RawClient::connect_from(SENDING_SERVER.parse().unwrap(), gw).await.unwrap();
    c.cmd("EHLO mail.acme.example").await.unwrap();
    for m in 0..messages {
        let rcpts: Vec<String> = (0..100).map(|i| format!("r{m}x{i}@remote.test")).collect();
        let list: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let r = c.send_mail("news@acme.example", &list, &newsletter_ja(m)).await.unwrap();
        assert_eq!(r.code, 250, "message {m}");
    }
}

/// The bulk finding of contract acme once `copies` copies are counted (`None` if never).
async fn bulk_finding(gw: &testkit::gateway::Gateway, copies: f64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let out = gw.cli(&["conditions", "--contract", "acme", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(f) = report["findings"].as_array().and_then(|f| f.iter().find(|f| f["kind"] == "bulk")) {
            last = f.clone();
            if f["counts"]["copies_24h"].as_f64() >= Some(copies) {
                return last;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

/// Bulk (R18: 5,000 or more substantially identical messages): 5,000 copies of a Japanese
/// newsletter personalised per message flag the contract, 4,000 only warn, and real unrelated
/// mail (the clean corpora) forms no campaign (issue 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_personalised_copies_flag_the_contract_four_thousand_do_not() {
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (gw, _dir) = gateway("conditions-bulk", &quoted(customer.addr), remote.addr, |c| {
        with_conditions(&c, "bulk_flush = \"200ms\"\n")
    });
    send_campaign(gw.addr, 40).await;
    let f = bulk_finding(&gw, 4000.0).await;
    assert_eq!(f["counts"]["copies_24h"], 4000.0, "{f}");
    assert_eq!(f["level"], "warn", "4,000 copies: warned, not flagged: {f}");
    send_campaign(gw.addr, 10).await;
    let f = bulk_finding(&gw, 5000.0).await;
    assert_eq!(f["counts"]["copies_24h"], 5000.0, "{f}");
    assert_eq!(f["level"], "flag", "{f}");
    assert!(f["evidence"][0].as_str().unwrap().contains("冬のセール"), "the subject as sample: {f}");
    assert!(f["threshold"].as_str().unwrap().contains("flag at 5000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_real_mail_forms_no_campaign() {
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (gw, _dir) = gateway("conditions-unrelated", &quoted(customer.addr), remote.addr, |c| {
        with_conditions(&c, "bulk_flush = \"200ms\"\n")
    });
    let (mut c, _) = RawClient::connect_from(SENDING_SERVER.parse().unwrap(), gw.addr).await.unwrap();
    c.cmd("EHLO mail.acme.example").await.unwrap();
    let mut sent = 0;
    let dirs =
        ["spamassassin-tdata", "stalwart-mail-parser", "ruby-mail-gem", "cpython-test-email", "james-mime4j", "enmime"];
    for p in dirs.iter().flat_map(|d| testkit::corpus::files_in(&testkit::corpus::dir().join(d))) {
        let Ok(bytes) = std::fs::read(&p) else { continue };
        if bytes.len() > 200_000 {
            continue;
        }
        let rcpts: Vec<String> = (0..10).map(|i| format!("u{sent}x{i}@remote.test")).collect();
        let list: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let r = c.send_mail("news@acme.example", &list, &bytes).await.unwrap();
        if r.code == 250 {
            sent += 1;
        } else {
            // a refused message (a virus in the corpus, say) ends the transaction; go on
            let _ = c.cmd("RSET").await;
        }
    }
    assert!(sent > 200, "{sent} messages accepted");
    // every offer flushed (every 200 ms): then one look
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let out = gw.cli(&["conditions", "--contract", "acme", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = report["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "bulk").expect("metered").clone();
    let largest = f["counts"]["copies_24h"].as_f64().unwrap_or(0.0);
    assert_eq!(f["level"], "ok", "{sent} unrelated messages x 10 copies: the largest group has {largest}: {f}");
    println!(
        "unrelated real mail: {sent} messages, {} copies; the largest group of near-duplicates: {largest} copies",
        sent * 10
    );
}

/// A campaign of messages too large for the spool's copies in memory (a 300 KiB flyer each,
/// the text personalised) is metered from the spool files: 1,200 copies warn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_of_large_messages_is_metered_from_the_spool_files() {
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (gw, _dir) = gateway("conditions-bulk-large", &quoted(customer.addr), remote.addr, |c| {
        with_conditions(&c, "bulk_flush = \"200ms\"\n")
    });
    let flyer: String = (0..300 * 1024 / 57)
        .map(|i| format!("{:057}\r\n", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10u64.pow(18)))
        .collect();
    let (mut c, _) = RawClient::connect_from(SENDING_SERVER.parse().unwrap(), gw.addr).await.unwrap();
    c.cmd("EHLO mail.acme.example").await.unwrap();
    for m in 0..12 {
        let rcpts: Vec<String> = (0..100).map(|i| format!("big{m}x{i}@remote.test")).collect();
        let list: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let msg = format!(
            "From: news@acme.example\r\nTo: customers@acme.example\r\nSubject: Winter flyer\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             Dear customer no. {m}, our winter flyer is attached.\r\n--b\r\nContent-Type: application/pdf; name=\"flyer.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{flyer}--b--\r\n"
        );
        assert!(msg.len() > 256 * 1024);
        let r = c.send_mail("news@acme.example", &list, msg.as_bytes()).await.unwrap();
        assert_eq!(r.code, 250, "message {m}");
    }
    let f = bulk_finding(&gw, 1200.0).await;
    assert_eq!(f["counts"]["copies_24h"], 1200.0, "{f}");
    assert_eq!(f["level"], "warn", "{f}");
}

/// The spam score of outbound mail (issue 16): a real spamd started here scores the contract's
/// outbound messages after their `250`; GTUBE counts as spam per day against the thresholds,
/// plain mail does not, and with the engine down mail still flows, counted unmeasured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_spam_is_scored_by_a_real_spamd_and_an_engine_down_never_stops_mail() {
    const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
    let spamd = tokio::task::spawn_blocking(testkit::spamd::SpamdProcess::start).await.unwrap();
    let customer = Sink::start(Behaviour::Accept).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let engine = spamd.addr();
    let (gw, _dir) = gateway("conditions-spam-score", &quoted(customer.addr), remote.addr, |c| {
        with_conditions(&c, "bulk_flush = \"200ms\"\nspam_score_warn_per_day = 2\nspam_score_flag_per_day = 3\n")
            + &format!("\n[conditions.spam_engine]\nkind = \"spamd\"\naddress = \"{engine}\"\ntimeout = \"30s\"\n")
    });
    let send = |subject: &'static str, body: String| async move {
        let (mut c, _) = RawClient::connect_from(SENDING_SERVER.parse().unwrap(), gw.addr).await.unwrap();
        c.cmd("EHLO mail.acme.example").await.unwrap();
        let r = c.send_mail("alice@acme.example", &["bob@remote.test"], &message(subject, &body)).await.unwrap();
        assert_eq!(r.code, 250, "{subject}");
    };
    for i in 0..3 {
        send("offer", format!("Buy now! {i}\r\n{GTUBE}")).await;
    }
    send("lunch", "Shall we have lunch on Friday? Bob".into()).await;
    send("minutes", "The minutes of Tuesday's meeting are attached below. Alice".into()).await;
    let finding = |gw: &testkit::gateway::Gateway| {
        let out = gw.cli(&["conditions", "--contract", "acme", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["findings"].as_array().and_then(|f| f.iter().find(|f| f["kind"] == "spam-score").cloned())
    };
    let mut f = None;
    for _ in 0..300 {
        f = finding(&gw);
        if f.as_ref().is_some_and(|f| f["counts"]["scored_window"] == 5.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let f = f.expect("a spam-score finding");
    assert_eq!(f["counts"]["scored_window"], 5.0, "{f}");
    assert_eq!(f["counts"]["spam_window"], 3.0, "GTUBE three times: {f}");
    assert_eq!(f["counts"]["today"], 3.0, "{f}");
    assert_eq!(f["level"], "flag", "3 in a day, flagged at 3: {f}");
    assert!(f["threshold"].as_str().unwrap().contains("flag at 3"), "{f}");
    // the engine down: mail flows, counted unmeasured
    drop(spamd);
    send("after", "The engine is down now.".into()).await;
    remote.wait_for(6, WAIT).await;
    let mut unmeasured = serde_json::Value::Null;
    for _ in 0..200 {
        unmeasured = finding(&gw).map(|f| f["counts"]["unmeasured_window"].clone()).unwrap_or_default();
        if unmeasured == 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(unmeasured, 1.0);
    assert_eq!(remote.count(), 6, "every message delivered, spam or not: scoring only measures");
}
