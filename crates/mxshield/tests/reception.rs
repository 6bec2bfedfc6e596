//! Black-box tests of SMTP reception: the real binary over loopback.

mod common;

use std::time::Duration;

use common::*;
use testkit::client::{RawClient, message, send_one};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_mail_is_relayed_to_the_customer_server_with_a_trace_header() {
    let w = world("inbound").await;
    let (mut c, greeting) = RawClient::connect(w.gw.addr).await.unwrap();
    assert_eq!(greeting.code, 220);
    assert!(greeting.text.starts_with("mx.test"));
    let ehlo = c.cmd("EHLO client.test").await.unwrap();
    assert_eq!(ehlo.code, 250);
    for ext in ["PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"] {
        assert!(ehlo.text.lines().any(|l| l == ext), "EHLO lacks {ext}: {}", ehlo.text);
    }
    assert_eq!(c.cmd("VRFY alice").await.unwrap().code, 252);
    assert_eq!(c.cmd("NOOP").await.unwrap().code, 250);
    let body = message("hello alice", "Hi Alice,\r\n.leading dot line\r\nbye");
    let r = c.send_mail("sender@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    assert!(r.text.contains("queued as"));
    assert_eq!(c.cmd("QUIT").await.unwrap().code, 221);
    let got = w.customer.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "log:\n{}", w.gw.log());
    let m = &got[0];
    assert_eq!(m.from, "sender@remote.test");
    assert_eq!(m.rcpts, vec!["alice@acme.example"]);
    let text = m.text();
    assert!(
        text.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mx.test (mxshield) with ESMTP id "),
        "{text}"
    );
    assert!(text.contains("for <alice@acme.example>;"));
    assert!(m.data.ends_with(&body), "original message must follow the added header fields unchanged");
    assert!(text.contains("\r\nX-Virus-Scanned: mxshield "), "{text}");
    assert!(text.contains("\r\nX-Mxshield-Scan: clean\r\n"), "{text}");
    let log = w.gw.wait_log("event=\"delivered\"", WAIT).await;
    assert!(log.contains("event=\"received\""));
    assert!(log.contains("verdict=clean action=deliver result=clean"), "{log}");
    assert!(log.contains("direction=inbound"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_tricks_are_refused_over_smtp() {
    let w = world("relay").await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO attacker.test").await.unwrap();
    // (RCPT argument, expected code, expected enhanced code)
    let table = [
        ("<victim@remote.test>", 550, "5.7.1"),
        ("<victim%remote.test@acme.example>", 550, "5.1.1"),
        ("<remote.test!victim@acme.example>", 550, "5.1.1"),
        ("<@acme.example:victim@remote.test>", 550, "5.7.1"),
        ("<\"victim@remote.test\"@acme.example>", 550, "5.1.1"),
        ("<alice@acme.example.>", 501, "5.1.3"),
        ("<victim@[127.0.0.1]>", 550, "5.7.1"),
        ("<VICTIM@REMOTE.TEST>", 550, "5.7.1"),
        ("<nobody@acme.example>", 550, "5.1.1"),
        ("<>", 501, "5.1.3"),
        ("<@acme.example>", 501, "5.1.3"),
        ("victim@remote.test", 501, "5.1.3"),
    ];
    let long_local = format!("<{}@acme.example>", "a".repeat(65));
    let long_path = format!("<a@{}.example>", "d".repeat(260));
    let mut rows: Vec<(String, u16, &str)> = table.iter().map(|(a, c, e)| (a.to_string(), *c, *e)).collect();
    rows.push((long_local, 501, "5.1.3"));
    rows.push((long_path, 501, "5.1.3"));
    for (arg, code, enhanced) in &rows {
        let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
        c.cmd("EHLO attacker.test").await.unwrap();
        assert_eq!(c.cmd("MAIL FROM:<attacker@remote.test>").await.unwrap().code, 250);
        let r = c.cmd(&format!("RCPT TO:{arg}")).await.unwrap();
        assert_eq!((r.code, r.enhanced()), (*code, Some(*enhanced)), "RCPT TO:{arg} -> {r:?}");
    }
    assert_eq!(c.cmd("MAIL FROM:<attacker@remote.test>").await.unwrap().code, 250);
    // mixed case registered address is accepted
    let r = c.cmd("RCPT TO:<ALICE@Acme.EXAMPLE>").await.unwrap();
    assert_eq!(r.code, 250);
    let r = c.cmd("MAIL FROM:<@relay.test:attacker@remote.test>").await.unwrap();
    assert_eq!(r.code, 503, "nested MAIL");
    assert_eq!(c.cmd("RSET").await.unwrap().code, 250);
    let r = c.cmd("MAIL FROM:<@relay.test:attacker@remote.test>").await.unwrap();
    assert_eq!((r.code, r.enhanced()), (553, Some("5.7.1")));
    assert!(w.gw.log().contains("event=\"refused\""));
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(w.remote.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_sending_server_may_relay_out() {
    let w = world("outbound").await;
    let (mut c, _) = RawClient::connect_from(SENDING_SERVER.parse().unwrap(), w.gw.addr).await.unwrap();
    c.cmd("EHLO mail.acme.example").await.unwrap();
    let body = message("outbound", "to the world");
    let r = c.send_mail("alice@acme.example", &["someone@remote.test", "bob@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    let remote = w.remote.wait_for(1, WAIT).await;
    let local = w.customer.wait_for(1, WAIT).await;
    assert_eq!(remote.len(), 1);
    assert_eq!(remote[0].rcpts, vec!["someone@remote.test"]);
    assert_eq!(local[0].rcpts, vec!["bob@acme.example"]);
    let log = w.gw.wait_log("direction=outbound", WAIT).await;
    assert!(log.contains(" contract=acme direction=outbound"), "{log}");
    // the same client from another IP may not relay
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO mail.acme.example").await.unwrap();
    c.cmd("MAIL FROM:<alice@acme.example>").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<someone@remote.test>").await.unwrap().code, 550);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_networks_that_would_open_the_relay_are_refused() {
    let w = world("open-relay").await;
    let stranger: std::net::IpAddr = "127.0.0.9".parse().unwrap();
    for wide in ["0.0.0.0/0", "::/0", "0.0.0.0/1", "::ffff:0:0/96", "10.0.0.0/8", "2001:db8::/32"] {
        let file = w.gw.dir.join("wide.toml");
        let toml = contracts(&format!("\"{}\"", w.customer.addr)).replace(SENDING_SERVER, wide);
        std::fs::write(&file, &toml).unwrap();
        let out = w.gw.cli(&["contracts", "apply", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{wide} was accepted: {err}");
        assert!(err.contains("sending_servers") && err.contains("wider than"), "{wide}: {err}");
    }
    // even with the named option, nothing covering the whole Internet
    let allow = |net: &str| {
        contracts(&format!("\"{}\"", w.customer.addr))
            .replace(SENDING_SERVER, net)
            .replace("starts = ", "allow_wide_sending_networks = true\nstarts = ")
    };
    for wide in ["0.0.0.0/0", "::ffff:0:0/96", "0.0.0.0/7", "::/0"] {
        let file = w.gw.dir.join("wide.toml");
        std::fs::write(&file, allow(wide)).unwrap();
        let out = w.gw.cli(&["contracts", "apply", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{wide} was accepted with allow_wide_sending_networks");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut c, _) = RawClient::connect_from(stranger, w.gw.addr).await.unwrap();
    c.cmd("EHLO stranger.test").await.unwrap();
    c.cmd("MAIL FROM:<x@remote.test>").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<victim@remote.test>").await.unwrap().code, 550, "relay opened");
    // the option allows a wide but bounded network, explicitly
    apply(&w.gw, &allow("127.0.0.0/8"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (mut c, _) = RawClient::connect_from(stranger, w.gw.addr).await.unwrap();
    c.cmd("EHLO mail.acme.example").await.unwrap();
    c.cmd("MAIL FROM:<alice@acme.example>").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<someone@remote.test>").await.unwrap().code, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_declared_and_actual() {
    let w = world_with("size", "", "", testkit::sink::Behaviour::Accept).await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    let r = c.cmd("MAIL FROM:<a@remote.test> SIZE=52428801").await.unwrap();
    assert_eq!((r.code, r.enhanced()), (552, Some("5.3.4")));
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test> SIZE=1000").await.unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@acme.example>").await.unwrap().code, 250);
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    // 53 MB of real data: drained, discarded, 552
    let line = format!("{}\r\n", "x".repeat(998));
    let chunk = line.repeat(1024);
    c.send_raw(b"Subject: big\r\n\r\n").await.unwrap();
    for _ in 0..53 {
        c.send_raw(chunk.as_bytes()).await.unwrap();
    }
    c.send_raw(b".\r\n").await.unwrap();
    let r = c.reply().await.unwrap();
    assert_eq!((r.code, r.enhanced()), (552, Some("5.3.4")));
    // the session is still usable afterwards
    let r = c.send_mail("a@remote.test", &["alice@acme.example"], &message("small", "ok")).await.unwrap();
    assert_eq!(r.code, 250);
    let got = w.customer.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].text().contains("Subject: small"));
    let queue = std::fs::read_dir(w.dir.path().join("data/spool/tmp")).unwrap().count();
    assert_eq!(queue, 0, "nothing of the refused message stays in the spool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_loops_are_refused() {
    let w = world("loop").await;
    let mut msg = String::new();
    for i in 0..31 {
        msg.push_str(&format!("Received: from hop{i}.test by hop{i}.test; Sat, 28 Nov 2026 07:00:00 +0000\r\n"));
    }
    msg.push_str("Subject: loop\r\n\r\nbody\r\n");
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], msg.as_bytes()).await.unwrap();
    assert_eq!((r.code, r.enhanced()), (554, Some("5.4.6")));
    // 30 is still fine
    let ok = msg.replacen("Received: from hop0.test by hop0.test; Sat, 28 Nov 2026 07:00:00 +0000\r\n", "", 1);
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], ok.as_bytes()).await.unwrap();
    assert_eq!(r.code, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_limit_and_pipelining() {
    let w = world("pipelining").await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    // one write with the whole transaction (RFC 2920)
    let mut batch = String::from(
        "MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@acme.example>\r\nRCPT TO:<nobody@acme.example>\r\nRCPT TO:<bob@acme.example>\r\nDATA\r\n",
    );
    c.send_raw(batch.as_bytes()).await.unwrap();
    let codes: Vec<u16> = [(); 5].iter().map(|_| 0).collect();
    let mut got = Vec::new();
    for _ in codes {
        got.push(c.reply().await.unwrap().code);
    }
    assert_eq!(got, vec![250, 250, 550, 250, 354]);
    batch = String::from_utf8(testkit::client::stuff(&message("piped", "x"))).unwrap();
    batch.push_str("QUIT\r\n");
    c.send_raw(batch.as_bytes()).await.unwrap();
    assert_eq!(c.reply().await.unwrap().code, 250);
    assert_eq!(c.reply().await.unwrap().code, 221);
    let m = w.customer.wait_for(1, WAIT).await;
    let mut rcpts = m[0].rcpts.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["alice@acme.example", "bob@acme.example"]);

    // 101st recipient: 452 4.5.3
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    c.cmd("MAIL FROM:<a@remote.test>").await.unwrap();
    for i in 0..100 {
        let r = c
            .cmd(if i % 2 == 0 { "RCPT TO:<alice@acme.example>" } else { "RCPT TO:<bob@acme.example>" })
            .await
            .unwrap();
        assert_eq!(r.code, 250);
    }
    let r = c.cmd("RCPT TO:<alice@acme.example>").await.unwrap();
    assert_eq!((r.code, r.enhanced()), (452, Some("4.5.3")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_and_error_limit() {
    let w = world("errors").await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test>").await.unwrap().code, 503);
    c.cmd("EHLO client.test").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<alice@acme.example>").await.unwrap().code, 503);
    assert_eq!(c.cmd("DATA").await.unwrap().code, 503);
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test> FROBNICATE=1").await.unwrap().code, 555);
    assert_eq!(c.cmd("AUTH PLAIN AAAA").await.unwrap().code, 502);
    let long = format!("NOOP {}", "x".repeat(5000));
    assert_eq!(c.cmd(&long).await.unwrap().code, 500);
    c.send_raw(b"\xff\xfe\r\n").await.unwrap();
    assert_eq!(c.reply().await.unwrap().code, 500);
    // errors so far: 7; three more reach the default limit of 10 -> 421 and close
    for _ in 0..2 {
        assert_eq!(c.cmd("BOGUS").await.unwrap().code, 502);
    }
    let r = c.cmd("BOGUS").await.unwrap();
    assert_eq!(r.code, 502);
    let r = c.reply().await.unwrap();
    assert_eq!(r.code, 421);
    assert!(c.cmd("NOOP").await.is_err(), "connection must be closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_offered_and_works() {
    let dir = testkit::TempDir::new("starttls-certs");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let out = std::process::Command::new(BIN)
        .args([
            "tls",
            "self-signed",
            "--hostname",
            "mx.test",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tls = format!("[smtp.tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display());
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    // [smtp.tls] goes after every other table of the standard config
    let (_gw, _wdir) = gateway("starttls", &quoted(customer.addr), customer.addr, |c| format!("{c}\n{tls}"));
    let addr = _gw.addr;
    // a real TLS client: our own smtp client with opportunistic TLS
    let mut client = smtp::client::Client::connect(addr, Default::default()).await.unwrap().unwrap();
    client.ehlo("client.test").await.unwrap();
    assert!(client.extensions.starttls);
    let name = rustls_pki_types::ServerName::try_from("mx.test").unwrap();
    assert!(client.starttls(&smtp::client::opportunistic_tls(), name).await.unwrap());
    client.ehlo("client.test").await.unwrap();
    assert!(!client.extensions.starttls, "STARTTLS is not offered twice");
    let body = message("secret", "over TLS");
    let tx = client.send("a@remote.test", &["alice@acme.example".to_string()], None, &body[..]).await.unwrap();
    assert_eq!(tx.data.unwrap().code, 250);
    let got = customer.wait_for(1, WAIT).await;
    assert!(got[0].text().contains("with ESMTPS id"), "{}", got[0].text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_changes_apply_without_restart_or_dropping_sessions() {
    let w = world("reload").await;
    // a session opened before the change stays up
    let (mut old, _) = RawClient::connect(w.gw.addr).await.unwrap();
    old.cmd("EHLO client.test").await.unwrap();
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    c.cmd("MAIL FROM:<a@remote.test>").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<carol@acme.example>").await.unwrap().code, 550);
    let updated =
        contracts(&format!("\"{}\"", w.customer.addr)).replace("\"alice\", \"bob\"", "\"alice\", \"bob\", \"carol\"");
    apply(&w.gw, &updated);
    let start = std::time::Instant::now();
    loop {
        c.cmd("RSET").await.unwrap();
        c.cmd("MAIL FROM:<a@remote.test>").await.unwrap();
        if c.cmd("RCPT TO:<carol@acme.example>").await.unwrap().code == 250 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "change not picked up within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = old.send_mail("a@remote.test", &["carol@acme.example"], &message("after reload", "x")).await.unwrap();
    assert_eq!(r.code, 250, "old session still works and sees the new contract");
    assert!(w.gw.log().contains("contracts_reloaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_connection_limit_gets_421() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("connlimit", &quoted(customer.addr), customer.addr, |c| {
        c.replace("hostname = \"mx.test\"", "hostname = \"mx.test\"\nmax_connections = 2\nreserved_connections = 0")
    });
    let (_a, g1) = RawClient::connect(gw.addr).await.unwrap();
    let (_b, g2) = RawClient::connect(gw.addr).await.unwrap();
    let (_c, g3) = RawClient::connect(gw.addr).await.unwrap();
    assert_eq!((g1.code, g2.code, g3.code), (220, 220, 421));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_time_out_with_421() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("timeouts", &quoted(customer.addr), customer.addr, |c| {
        c.replace("command_timeout = \"20s\"", "command_timeout = \"1s\"\ndata_timeout = \"1s\"")
    });
    let addr = gw.addr;
    // waiting for a command
    let (mut c, _) = RawClient::connect(addr).await.unwrap();
    let start = std::time::Instant::now();
    let r = c.reply().await.unwrap();
    assert_eq!((r.code, r.enhanced()), (421, Some("4.4.2")));
    assert!(start.elapsed() >= Duration::from_millis(900));
    // waiting for data, after part of a message: nothing is queued
    let (mut c, _) = RawClient::connect(addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    c.cmd("MAIL FROM:<a@remote.test>").await.unwrap();
    c.cmd("RCPT TO:<alice@acme.example>").await.unwrap();
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: half\r\n\r\nthe rest never comes").await.unwrap();
    let r = c.reply().await.unwrap();
    assert_eq!((r.code, r.enhanced()), (421, Some("4.4.2")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = gw.cli(&["queue", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(0 messages)"));
    assert!(customer.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_scan_headers_are_removed() {
    let w = world("forged").await;
    let msg = "From: a@remote.test\r\nSubject: claims to be scanned\r\nX-Mxshield-Scan: clean\r\nX-Virus-Scanned: forged\r\n  by someone\r\n\r\nhi\r\n";
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], msg.as_bytes()).await.unwrap();
    assert_eq!(r.code, 250);
    let got = w.customer.wait_for(1, WAIT).await;
    let text = got[0].text();
    assert!(text.contains("\r\nX-Mxshield-Scan: clean\r\n"), "{text}");
    assert_eq!(text.matches("X-Mxshield-Scan:").count(), 1, "forged result header removed: {text}");
    assert_eq!(text.matches("X-Virus-Scanned:").count(), 1, "forged header removed: {text}");
    assert!(!text.contains("by someone"), "its continuation line too: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamd_engine_in_the_gateway() {
    let sigs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scan/sigs");
    let clamd = testkit::clamd::ClamdProcess::start(&sigs);
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let scan_table = format!("[scan]\nengine = \"clamd\"\nclamd = \"{}\"\n", clamd.addr());
    let (gw, _dir) = gateway("clamd-engine", &quoted(customer.addr), customer.addr, |c| format!("{c}\n{scan_table}"));
    // a zip with a clean and an infected member: clamd finds the virus, and scans the members
    // one by one so that only the infected one is removed
    let eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let zip = testkit::mail::zip(&[("readme.txt", b"nothing to see"), ("eicar.com", eicar.as_bytes())]);
    let body = testkit::mail::with_attachment("a@remote.test", "v", "hello", "files.zip", &zip);
    let r = send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250);
    let got = customer.wait_for(2, WAIT).await;
    let delivered = got.iter().find(|m| m.text().contains("Subject: v\r\n")).expect("the message");
    let text = delivered.text().replace("\r\n ", " ");
    assert!(text.contains("X-Virus-Scanned: mxshield 0.1.0, signatures clamd ClamAV"), "{text}");
    assert!(text.contains("X-Mxshield-Scan: disinfected: files.zip (eicar.com)"), "{text}");
    let data = &delivered.data;
    let m = mime::parse(data);
    let zip = m.root.children[1].decoded_body(data);
    assert_eq!(testkit::mail::zip_names(&zip), ["readme.txt"]);
    // clamd gone: temporary failure, the message is not passed unscanned
    drop(clamd);
    let r = send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!((r.code, r.enhanced()), (451, Some("4.7.1")));
}

/// R6: content that expands beyond the scanning limits is refused before 250, never passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_bomb_is_refused_at_smtp_time() {
    let w = world("zipbomb").await;
    let dir = testkit::TempDir::new("zipbomb-build");
    std::fs::File::create(dir.path().join("zeros.bin")).unwrap().set_len(200_000_000).unwrap();
    let out = std::process::Command::new("zip")
        .args(["-q", "bomb.zip", "zeros.bin"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "zip (installed by scripts/test.sh)");
    let bomb = std::fs::read(dir.path().join("bomb.zip")).unwrap();
    let b64 = mime::encode::base64_lines(&bomb);
    let msg = format!(
        "From: a@remote.test\r\nSubject: bomb\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/zip; name=\"bomb.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
    );
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], msg.as_bytes()).await.unwrap();
    assert_eq!((r.code, r.enhanced()), (552, Some("5.3.4")), "{r:?}");
    let log = w.gw.wait_log("action=refuse", WAIT).await;
    assert!(log.contains("Limits.Exceeded"), "{log}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(w.customer.messages().is_empty());
}

/// A contract's days are the operator's (`[operator] timezone`): a contract starting today at
/// UTC+14 is in force for an operator there and not yet for one at UTC−12, whatever the hour
/// (issue 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_days_are_counted_in_the_operators_time_zone() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let kiribati_today = (chrono::Utc::now() + chrono::Duration::hours(14)).date_naive();
    for (zone, code) in [("Etc/GMT-14", 250), ("Etc/GMT+12", 550)] {
        let (gw, _dir) = gateway("timezone", &quoted(customer.addr), customer.addr, |c| {
            format!("{c}\n[operator]\ntimezone = \"{zone}\"\n")
        });
        let toml = contracts(&quoted(customer.addr)).replace("2026-01-01", &kiribati_today.to_string());
        apply(&gw, &toml);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (mut c, _) = RawClient::connect(gw.addr).await.unwrap();
        c.cmd("EHLO client.test").await.unwrap();
        c.cmd("MAIL FROM:<x@remote.test>").await.unwrap();
        let r = c.cmd("RCPT TO:<alice@acme.example>").await.unwrap();
        assert_eq!(r.code, code, "{zone}: {r:?}");
    }
}

/// Contract dates take effect at 00:00 of their day in a running server, with no operator
/// action and no restart (issue 14): the gateway runs on a test clock set a few seconds before
/// midnight (`MXSHIELD_TEST_CLOCK_OFFSET`, for tests only), and the same RCPTs are answered
/// differently once midnight has passed — a contract starting the next day, a change of
/// receiving server and accounts scheduled for it, a cancellation effective from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_dates_take_effect_at_midnight_in_a_running_server() {
    use testkit::sink::{Behaviour, Sink};
    let (old_server, new_server) = (Sink::start(Behaviour::Accept).await, Sink::start(Behaviour::Accept).await);
    // the shifted clock reads 23:59:48 UTC now
    let now = chrono::Utc::now();
    let midnight = (now + chrono::Days::new(1)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let offset = (midnight - now).num_seconds() - 12;
    let shifted = move || chrono::Utc::now() + chrono::Duration::seconds(offset);
    let today = shifted().date_naive();
    let tomorrow = today + chrono::Days::new(1);
    let dir = testkit::TempDir::new("midnight");
    let port = testkit::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = config(port, old_server.addr, "", "[operator]\ntimezone = \"UTC\"\n");
    let mut gw = testkit::gateway::Gateway::new(std::path::Path::new(BIN), dir.path(), addr, &config);
    gw.env.push(("MXSHIELD_TEST_CLOCK_OFFSET".into(), offset.to_string()));
    let block = |id: &str, domain: &str, starts: &str, server: std::net::SocketAddr, accounts: &str| {
        format!(
            "[[contract]]\nid = \"{id}\"\ncustomer = \"{id}\"\naccounts_limit = 5\nstarts = \"{starts}\"\n[[contract.domain]]\nname = \"{domain}\"\nreceiving_servers = [\"{server}\"]\naccounts = [{accounts}]\n"
        )
    };
    let beta = block("beta", "beta.example", "2026-01-01", old_server.addr, "\"carol\"");
    let gamma = block("gamma", "gamma.example", "2026-01-01", old_server.addr, "\"erin\"");
    apply(
        &gw,
        &format!(
            "{}\n{beta}\n{gamma}",
            block("acme", "acme.example", &tomorrow.to_string(), old_server.addr, "\"alice\"")
        ),
    );
    let cli = |args: &[&str]| {
        let out = gw.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(
        dir.path().join("beta2.toml"),
        block("beta", "beta.example", "2026-01-01", new_server.addr, "\"carol\", \"dave\""),
    )
    .unwrap();
    cli(&["contracts", "apply", "--on", &tomorrow.to_string(), "beta2.toml"]);
    cli(&["contracts", "cancel", "gamma", "--on", &tomorrow.to_string()]);
    gw.spawn();

    async fn rcpt(gw: &testkit::gateway::Gateway, to: &str) -> u16 {
        let (mut c, _) = RawClient::connect(gw.addr).await.unwrap();
        c.cmd("EHLO client.test").await.unwrap();
        c.cmd("MAIL FROM:<x@remote.test>").await.unwrap();
        c.cmd(&format!("RCPT TO:<{to}>")).await.unwrap().code
    }
    let before = [
        rcpt(&gw, "alice@acme.example").await,
        rcpt(&gw, "dave@beta.example").await,
        rcpt(&gw, "erin@gamma.example").await,
    ];
    let r = send_one(gw.addr, "x@remote.test", &["carol@beta.example"], &message("before", "old server")).await;
    assert_eq!(r.unwrap().code, 250);
    assert_eq!(shifted().date_naive(), today, "the checks before midnight took too long");
    assert_eq!(
        before,
        [550, 550, 250],
        "the day before: acme not started, dave not yet an account, gamma still served"
    );
    assert_eq!(old_server.wait_for(1, WAIT).await.len(), 1);
    // past midnight on the gateway's clock
    while shifted().date_naive() == today {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = [
        rcpt(&gw, "alice@acme.example").await,
        rcpt(&gw, "dave@beta.example").await,
        rcpt(&gw, "erin@gamma.example").await,
    ];
    assert_eq!(after, [250, 250, 550], "from midnight: acme started, dave registered, gamma cancelled");
    let r = send_one(gw.addr, "x@remote.test", &["dave@beta.example"], &message("after", "new server")).await;
    assert_eq!(r.unwrap().code, 250);
    let got = new_server.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "relayed to the server the change names:\n{}", gw.log());
    assert!(gw.log().contains("event=\"test_clock\""), "the shifted clock is announced");
}
