//! The conditions of use, measured (issue 16, first part), black-box: a contract's outbound
//! mail through the real gateway to a remote server that refuses some recipients as unknown
//! (550 5.1.1) and some as spam (550 5.7.1 … spam); `mxshield conditions` then shows the
//! hard-bounce rate flagged and the spam rejections warned, with the counts, the window and
//! the thresholds applied.

mod common;

use common::*;
use testkit::client::{RawClient, message};
use testkit::sink::{Behaviour, Sink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_and_spam_rejections_of_outbound_mail_are_measured_per_contract() {
    let customer = Sink::start(Behaviour::Accept).await;
    // of 300 recipients, 30 unknown (10 %: flagged) and 15 refused as spam (a day's 15:
    // warned at 10, not flagged at 50)
    let unknown: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    let spam: Vec<String> = (0..15).map(|i| format!("s{i}")).collect();
    let remote = Sink::start(Behaviour::UnknownAndSpam(unknown.clone(), spam.clone())).await;
    let (gw, _dir) = gateway("conditions", &quoted(customer.addr), remote.addr, |c| c);
    let mut rcpts: Vec<String> = (0..255).map(|i| format!("ok{i}@remote.test")).collect();
    rcpts.extend(unknown.iter().map(|u| format!("{u}@remote.test")));
    rcpts.extend(spam.iter().map(|s| format!("{s}@remote.test")));
    for (n, chunk) in rcpts.chunks(100).enumerate() {
        let (mut c, _) = RawClient::connect_from(SENDING_SERVER.parse().unwrap(), gw.addr).await.unwrap();
        c.cmd("EHLO mail.acme.example").await.unwrap();
        let list: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let r = c.send_mail("alice@acme.example", &list, &message(&format!("newsletter {n}"), "hello")).await.unwrap();
        assert_eq!(r.code, 250);
    }
    remote.wait_for(3, WAIT).await;
    // every outcome in the message log (it is written a moment after delivery)
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        let out = gw.cli(&["conditions", "--contract", "acme", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        report = serde_json::from_slice(&out.stdout).unwrap();
        let copies = report["findings"][0]["counts"]["copies_window"].as_f64().unwrap_or(0.0);
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
    let text = std::fs::read_to_string(&gw.config).unwrap() + "\n[conditions]\nspam_flag_per_day = 15\n";
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
