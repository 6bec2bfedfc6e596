//! Accepted mail survives SIGKILL: after the 250, and during delivery. Damaged spool files are
//! set aside, not guessed at. SIGTERM lets sessions in progress finish.

mod common;

use std::time::Duration;

use common::*;
use testkit::client::{RawClient, message, send_one};
use testkit::sink::{Behaviour, Sink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_right_after_250_loses_nothing() {
    // The customer server is down while the message is received.
    let customer_addr = down_addr();
    let remote = Sink::start(Behaviour::Accept).await;
    let (mut gw, _dir) = gateway("kill-after-250", &quoted(customer_addr), remote.addr, |c| c);
    let mut bodies = Vec::new();
    let (mut c, _) = RawClient::connect(gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    for i in 0..5 {
        let body = message(&format!("durable {i}"), &format!("payload {i}\r\n{}", "z".repeat(20_000)));
        let r = c.send_mail("a@remote.test", &["alice@acme.example"], &body).await.unwrap();
        assert_eq!(r.code, 250);
        bodies.push(body);
    }
    gw.kill9();
    let customer = Sink::start_on(customer_addr, Behaviour::Accept, false).await;
    gw.spawn();
    let got = customer.wait_for(5, WAIT).await;
    assert_eq!(got.len(), 5, "log:\n{}", gw.log());
    for body in &bodies {
        assert!(got.iter().any(|m| m.data.ends_with(body)), "a message was lost or altered");
    }
}

/// The rewritten message and the warnings are all durable before the 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_right_after_250_keeps_the_cleaned_message_and_the_warnings() {
    let customer_addr = down_addr();
    let remote = Sink::start(Behaviour::Accept).await;
    let (mut gw, _dir) = gateway("kill-after-clean", &quoted(customer_addr), remote.addr, |c| c);
    let eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let zip = testkit::mail::zip(&[("ok.txt", b"fine"), ("bad.com", eicar.as_bytes())]);
    let msg = testkit::mail::with_attachment("a@remote.test", "cleaned", "hi", "files.zip", &zip);
    let r = send_one(gw.addr, "a@remote.test", &["alice@acme.example", "bob@acme.example"], &msg).await.unwrap();
    assert_eq!(r.code, 250);
    gw.kill9();
    let customer = Sink::start_on(customer_addr, Behaviour::Accept, false).await;
    gw.spawn();
    let got = customer.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3, "the message and two warnings:\n{}", gw.log());
    let cleaned = got.iter().find(|m| !m.from.is_empty()).expect("the cleaned message");
    assert_eq!(cleaned.rcpts.len(), 2);
    assert!(!cleaned.text().contains("EICAR") && cleaned.text().contains("disinfected: files.zip (bad.com)"));
    assert_eq!(got.iter().filter(|m| m.from.is_empty()).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_delivery_redelivers_after_restart() {
    let w = world_with("kill-during-delivery", "", "", Behaviour::SlowData(Duration::from_secs(30))).await;
    let mut w = w;
    let body = message("in flight", "being delivered when the gateway dies");
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250);
    // the customer server has the data but has not answered the final dot yet
    let got = w.customer.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    w.gw.kill9();
    w.customer.set_behaviour(Behaviour::Accept);
    w.gw.spawn();
    let got = w.customer.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "delivered again after restart (at least once):\n{}", w.gw.log());
    assert!(got[1].data.ends_with(&body));
    w.gw.wait_log("event=\"delivered\"", WAIT).await;
    let q = w.gw.cli(&["queue", "list"]);
    assert!(String::from_utf8_lossy(&q.stdout).contains("(0 messages)"));
}

/// A small message gets no file of its own at first: the commit journal is what is on disk
/// before the `250`, and the gateway's memory its only other copy until it is delivered (or
/// needs a file: deferred, 5 s old). Killed in its first delivery attempt, the gateway leaves
/// no file in `queue/`; the restart restores it from the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_file_was_lost_in_a_crash_is_restored_from_the_journal() {
    let mut w = world_with("journal-replay", "", "", Behaviour::SlowData(Duration::from_secs(30))).await;
    let body = message("journaled", "on disk in the commit journal only");
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250);
    // in its first delivery attempt: not settled yet
    assert_eq!(w.customer.wait_for(1, WAIT).await.len(), 1);
    w.gw.kill9();
    let queue = w.dir.path().join("data/spool/queue");
    let files: Vec<_> = std::fs::read_dir(&queue).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.is_empty(), "{files:?}");
    w.customer.set_behaviour(Behaviour::Accept);
    w.gw.spawn();
    let got = w.customer.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "restored and delivered:\n{}", w.gw.log());
    assert!(got[1].data.ends_with(&body));
    w.gw.wait_log("event=\"delivered\"", WAIT).await;
    let journal = w.dir.path().join("data/spool/journal");
    let segments: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert!(segments.len() <= 1, "the replayed journal was cleared: {segments:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_spool_files_move_to_corrupt_at_startup() {
    let customer_addr = down_addr();
    let remote = Sink::start(Behaviour::Accept).await;
    let (mut gw, dir) = gateway("corrupt", &quoted(customer_addr), remote.addr, |c| c);
    for i in 0..2 {
        let r = send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &message(&format!("m{i}"), "body"))
            .await
            .unwrap();
        assert_eq!(r.code, 250);
    }
    // deferred (the customer server is down): from then on their files are what counts, not
    // the commit journal's copies
    let queue = dir.path().join("data/spool/queue");
    let statuses = || {
        std::fs::read_dir(&queue)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "st"))
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while statuses() < 2 {
        assert!(std::time::Instant::now() < deadline, "never deferred:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.kill9();
    let mut msgs: Vec<_> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "msg"))
        .collect();
    msgs.sort();
    assert_eq!(msgs.len(), 2);
    let mut bytes = std::fs::read(&msgs[0]).unwrap();
    let n = bytes.len();
    bytes[n.min(24)] ^= 0x55; // inside the message data: only the checksum can tell
    std::fs::write(&msgs[0], bytes).unwrap();
    let customer = Sink::start_on(customer_addr, Behaviour::Accept, false).await;
    gw.spawn();
    let got = customer.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].text().contains("Subject: m1"));
    let log = gw.wait_log("spool_corrupt", WAIT).await;
    assert!(log.contains("checksum mismatch"), "{log}");
    let moved = dir.path().join("data/spool/corrupt").join(msgs[0].file_name().unwrap());
    assert!(moved.exists(), "damaged file kept for the operator in corrupt/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_session_in_progress_finish() {
    let mut w = world("graceful").await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test>").await.unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@acme.example>").await.unwrap().code, 250);
    w.gw.signal_term();
    w.gw.wait_log("shutting_down", WAIT).await;
    // new connections are no longer accepted
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(RawClient::connect(w.gw.addr).await.is_err());
    let r = c.data(&message("last one", "finishing")).await.unwrap();
    assert_eq!(r.code, 250, "the transaction in progress completes");
    let r = c.cmd("MAIL FROM:<a@remote.test>").await.unwrap();
    assert_eq!(r.code, 421, "no new transaction during shutdown");
    let status = w.gw.wait_exit(Duration::from_secs(20)).expect("gateway exits");
    assert!(status.success(), "{status:?}");
    let log = w.gw.log();
    assert!(log.contains("event=\"stopped\"") && !log.contains("message_log_unfinished"), "{log}");
    // what the message log was given before the signal is in it
    let out = w.gw.cli(&["log", "search", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"subject\": \"last one\""));
    // the accepted message is in the spool, delivered after a restart at the latest
    w.gw.spawn();
    let got = w.customer.wait_for(1, WAIT).await;
    assert!(got.iter().any(|m| m.text().contains("Subject: last one")));
}

/// A message in its first delivery attempt has no file of its own yet (the commit journal holds
/// it); a graceful stop writes it out, so the queue another process sees is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_out_the_messages_held_in_memory() {
    let mut w = world_with("write-out", "", "", Behaviour::SlowData(Duration::from_secs(60))).await;
    let body = message("held", "in memory and in the journal");
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250);
    assert_eq!(w.customer.wait_for(1, WAIT).await.len(), 1);
    let queue = w.dir.path().join("data/spool/queue");
    let files = || -> Vec<_> { std::fs::read_dir(&queue).unwrap().map(|e| e.unwrap().path()).collect() };
    assert!(files().is_empty(), "{:?}", files());
    w.gw.signal_term();
    let status = w.gw.wait_exit(Duration::from_secs(30)).expect("gateway exits");
    assert!(status.success(), "{status:?}");
    let listing = String::from_utf8_lossy(&w.gw.cli(&["queue", "list"]).stdout).into_owned();
    assert!(listing.contains("(1 messages)"), "{listing}\n{}", w.gw.log());
    assert!(files().iter().any(|p| p.extension().is_some_and(|x| x == "msg")), "{:?}", files());
}

/// On SIGTERM an idle client hears `421 4.3.2` within a second, not after its command timeout
/// (issue 9), and the gateway exits without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_idle_sessions_at_once() {
    let mut w = world("idle-shutdown").await;
    let (mut idle, _) = RawClient::connect(w.gw.addr).await.unwrap();
    idle.cmd("EHLO idle.test").await.unwrap();
    let started = std::time::Instant::now();
    w.gw.signal_term();
    let r = tokio::time::timeout(Duration::from_secs(5), idle.reply()).await.expect("a reply").unwrap();
    assert_eq!((r.code, r.enhanced()), (421, Some("4.3.2")), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let status = w.gw.wait_exit(Duration::from_secs(10)).expect("gateway exits");
    assert!(status.success(), "{status:?}");
}

/// A message in the spool that nobody announced to the scheduler (its notice lost, or put there
/// from outside) is picked up by the periodic rescan, never stranded until a restart (issue 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unannounced_message_in_the_spool_is_delivered() {
    // a committed message file, made by a gateway whose customer server is down
    let (mut maker, maker_dir) = gateway("rescan-maker", &quoted(down_addr()), down_addr(), |c| c);
    let r = send_one(maker.addr, "a@remote.test", &["alice@acme.example"], &message("unannounced", "x")).await.unwrap();
    assert_eq!(r.code, 250);
    // deferred, the message gets its file in `queue/`
    let queued = || {
        std::fs::read_dir(maker_dir.path().join("data/spool/queue"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "msg"))
    };
    let deadline = std::time::Instant::now() + WAIT;
    while queued().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    maker.kill9();
    let msg = queued().expect("a file in the queue once deferred");
    // a running gateway finds it in its queue without being told
    let w = world("rescan").await;
    let target = w.dir.path().join("data/spool/queue").join(msg.file_name().unwrap());
    std::fs::copy(&msg, &target).unwrap();
    let got = w.customer.wait_for(1, Duration::from_secs(50)).await;
    assert_eq!(got.len(), 1, "{}", w.gw.log());
    assert!(got[0].text().contains("Subject: unannounced"));
    assert!(w.gw.log().contains("event=\"queue_rescan\""));
}
