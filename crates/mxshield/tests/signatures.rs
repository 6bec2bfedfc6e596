//! Signature releases end to end (issue 10): the operator's `sigs keygen` and `sigs publish`,
//! a node that picks releases up from a directory or over HTTP, scans with them, records the
//! version with each verdict, refuses a bad release while keeping the one in use, and starts
//! with the last good release after SIGKILL.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::releases::{Operator, keygen};
use common::*;
use testkit::client::send_one;
use testkit::sink::Behaviour;

fn mail(subject: &str, body: &str) -> Vec<u8> {
    format!("From: a@remote.test\r\nTo: alice@acme.example\r\nSubject: {subject}\r\n\r\n{body}\r\n").into_bytes()
}

/// Sends a message whose body is `body` and asserts it was deleted for a virus.
async fn assert_deleted(w: &World, subject: &str, body: &str) {
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &mail(subject, body)).await.unwrap();
    assert!(r.code == 250 && r.text.contains("deleted"), "{subject}: {r:?}");
}

/// Waits (bounded) until `sigs status` says `needle`.
async fn wait_status(w: &World, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let out = w.gw.cli(&["sigs", "status"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "sigs status never said {needle:?}:\n{text}\nlog:\n{}", w.gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The message-log record of the message with `subject`, as JSON; waits (bounded) for it, as
/// the log is written in batches after the reply.
fn logged(w: &World, subject: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = w.gw.cli(&["log", "search", "--json"]);
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(found) = all.into_iter().find(|m| m["subject"] == subject) {
            return found;
        }
        assert!(Instant::now() < deadline, "{subject} not logged");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_picked_up_recorded_refused_and_kept_over_a_crash() {
    let root = testkit::TempDir::new("sigs-ops");
    let op = Operator::with_release_one(root.path());
    let section = op.signatures_section(op.repo().to_str().unwrap());
    let mut w = world_with("sigs", "", &section, Behaviour::Accept).await;

    // picked up within a check interval or so, then used for every verdict
    let status = wait_status(&w, "release 1", Duration::from_secs(10)).await;
    assert!(status.contains("last check:"), "{status}");
    assert_deleted(&w, "one", "MARKER-ONE-3f9c1d").await;
    let rec = logged(&w, "one");
    assert_eq!((rec["verdict"].as_str(), rec["signatures"].as_str()), (Some("infected"), Some("release-1")), "{rec:#}");

    // the next release, with a marker only it detects; a clean message carries its version
    op.add("Operator.Marker.Two", "MARKER-TWO-77ab02");
    let published = Instant::now();
    op.publish();
    wait_status(&w, "release 2", Duration::from_secs(10)).await;
    assert!(published.elapsed() < Duration::from_secs(5), "took {:?}", published.elapsed());
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &mail("clean", "hello")).await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    // the customer has the warning about "one" too
    let got = w.customer.wait_for(2, WAIT).await;
    let clean = got.iter().find(|m| m.text().contains("Subject: clean\r\n")).expect("the clean message");
    assert!(clean.text().contains("signatures release-2"), "{}", clean.text());
    assert_eq!(logged(&w, "clean")["signatures"], "release-2");
    // `mxshield scan` on the node scans with the release in use, and says which
    let sample = w.dir.path().join("two.txt");
    std::fs::write(&sample, "MARKER-TWO-77ab02").unwrap();
    let out = w.gw.cli(&["scan", "--json", sample.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&json["summary"]["signatures"], &json["summary"]["infected"]), (&"release-2".into(), &1.into()));

    // a release with a damaged payload is refused with its reason; release 2 stays in use
    op.add("Operator.Marker.Three", "MARKER-THREE-c0ffee");
    op.publish();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(op.repo().join("releases/3/manifest.json")).unwrap()).unwrap();
    let changed = m["payloads"].as_array().unwrap().iter().find(|p| p["name"] == "operator.ndb").unwrap();
    let payload = op.repo().join("payloads").join(changed["sha256"].as_str().unwrap());
    let mut bytes = std::fs::read(&payload).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&payload, bytes).unwrap();
    let status = wait_status(&w, "last refused:", Duration::from_secs(10)).await;
    assert!(status.contains("release 2") && status.contains("payload operator.ndb"), "{status}");
    assert!(w.gw.log().contains("signatures_refused"));
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &mail("three", "MARKER-THREE-c0ffee"))
        .await
        .unwrap();
    assert!(r.code == 250 && !r.text.contains("deleted"), "release 3 is not in use: {r:?}");

    // SIGKILL, then a restart scans at once with the last good release
    w.gw.kill9();
    w.gw.spawn();
    assert_deleted(&w, "two", "MARKER-TWO-77ab02").await;
    assert_eq!(logged(&w, "two")["signatures"], "release-2");
}

/// The same over HTTP, from Python's web server on loopback serving the publishing directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_fetched_over_http() {
    let root = testkit::TempDir::new("sigs-http");
    let op = Operator::new(root.path());
    op.add("Operator.Marker.Http", "MARKER-HTTP-5150aa");
    op.publish();
    let port = testkit::free_port();
    let mut server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(op.repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "python3 -m http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let section = op.signatures_section(&format!("http://127.0.0.1:{port}/"));
    let w = world_with("sigs-http", "", &section, Behaviour::Accept).await;
    wait_status(&w, "release 1", Duration::from_secs(10)).await;
    assert_deleted(&w, "http", "MARKER-HTTP-5150aa").await;
    let verify = w.gw.cli(&["sigs", "verify", &format!("http://127.0.0.1:{port}/")]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let _ = server.kill();
    let _ = server.wait();
}

/// Swap under load: 8 SMTP sessions send clean, EICAR and marker mail continuously while 20
/// releases are published one after another, release k adding the signature of marker k.
/// Every message is answered `250` (none refused because of a swap), every accepted message
/// is delivered or acted on, and each recorded verdict agrees with the version recorded with
/// it: marker k is found exactly when the release that scanned it is k or later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_swap_under_load_with_nothing_dropped() {
    const RELEASES: u64 = 20;
    const SESSIONS: usize = 8;
    let root = testkit::TempDir::new("sigs-load");
    let op = Operator::new(root.path());
    let eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    op.add("Load.Eicar", eicar);
    let marker = |k: u64| format!("LOAD-MARKER-{k:02}-e1d2");
    op.add("Load.Marker.1", &marker(1));
    op.publish();
    let section = op.signatures_section(op.repo().to_str().unwrap());
    let w = world_with("sigs-load", "", &section, Behaviour::Accept).await;
    wait_status(&w, "release 1 ", Duration::from_secs(10)).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..SESSIONS {
        let (addr, stop) = (w.gw.addr, stop.clone());
        let eicar = eicar.to_string();
        senders.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(s as u64);
            let (mut c, _) = testkit::client::RawClient::connect(addr).await.unwrap();
            c.cmd("EHLO load.test").await.unwrap();
            let mut sent: Vec<(String, u16, Option<u64>)> = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2_000 {
                n += 1;
                let subject = format!("s{s}-n{n}");
                let kind = rng.u64(0..=RELEASES + 1);
                let (body, marker_k) = match kind {
                    0 => ("nothing to see here".to_string(), None),
                    k if k > RELEASES => (eicar.clone(), Some(0)),
                    k => (format!("LOAD-MARKER-{k:02}-e1d2"), Some(k)),
                };
                let r = c.send_mail("a@remote.test", &["alice@acme.example"], &mail(&subject, &body)).await.unwrap();
                sent.push((subject, r.code, marker_k));
                c.cmd("RSET").await.unwrap();
            }
            sent
        }));
    }
    for k in 2..=RELEASES {
        op.add(&format!("Load.Marker.{k}"), &marker(k));
        op.publish();
        wait_status(&w, &format!("release {k} "), Duration::from_secs(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    for t in senders {
        sent.extend(t.await.unwrap());
    }
    let refused: Vec<_> = sent.iter().filter(|(_, code, _)| *code != 250).collect();
    assert!(refused.is_empty(), "refused during swaps: {refused:?}");

    // every message logged, with the version that scanned it
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let out = w.gw.cli(&["log", "search", "--json", "--direction", "inbound", "--limit", "1000000"]);
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if all.len() >= sent.len() || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_subject: std::collections::HashMap<String, &serde_json::Value> =
        records.iter().map(|r| (r["subject"].as_str().unwrap().to_string(), r)).collect();
    let mut versions = std::collections::BTreeSet::new();
    let mut clean_subjects = Vec::new();
    for (subject, _, marker_k) in &sent {
        let r = by_subject.get(subject).unwrap_or_else(|| panic!("{subject} accepted but not logged"));
        let version: u64 = r["signatures"].as_str().unwrap().strip_prefix("release-").unwrap().parse().unwrap();
        versions.insert(version);
        let infected = r["verdict"] == "infected";
        let expected = match marker_k {
            None => false,
            Some(0) => true,
            Some(k) => version >= *k,
        };
        assert_eq!(infected, expected, "{subject} (marker {marker_k:?}) scanned with release {version}: {r}");
        if infected {
            assert_eq!(r["action"], "drop", "{r}");
        } else {
            clean_subjects.push(subject.clone());
        }
    }
    // every message not dropped reaches the customer's server
    let got = w.customer.wait_for(clean_subjects.len(), Duration::from_secs(60)).await;
    let delivered: std::collections::HashSet<String> = got
        .iter()
        .filter_map(|m| m.text().lines().find_map(|l| l.strip_prefix("Subject: ").map(str::to_string)))
        .collect();
    for s in &clean_subjects {
        assert!(delivered.contains(s), "{s} accepted, not dropped, but not delivered");
    }
    println!(
        "swap under load: {} messages over {SESSIONS} sessions, {} releases installed, {} versions seen in verdicts, none refused",
        sent.len(),
        RELEASES,
        versions.len()
    );
    assert!(versions.len() as u64 >= RELEASES - 2, "verdicts made with only {versions:?}");
}

/// A download that stalls half-way does not hold mail up; a node killed during it restarts at
/// once with the last good release (the half-written file is cleared), and installs the new
/// release once the source serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_holds_nothing_and_a_kill_during_it_keeps_the_last_release() {
    use testkit::http::{HttpServer, Mode};
    let root = testkit::TempDir::new("sigs-stall");
    let op = Operator::with_release_one(root.path());
    let server = HttpServer::start(op.repo(), Mode::Serve).await;
    let mut w = world_with("sigs-stall", "", &op.signatures_section(&server.url()), Behaviour::Accept).await;
    wait_status(&w, "release 1", Duration::from_secs(10)).await;

    *server.mode.lock().unwrap() = Mode::StallUnder("payloads/".into());
    server.requests.lock().unwrap().clear();
    // a payload big enough to be caught half-way
    let big: String = (0..20_000).map(|i| format!("Filler.{i}:0:*:{:08x}{:08x}\n", i * 7919 + 1, i)).collect();
    std::fs::write(op.dir.join("db").join("filler.ndb"), big).unwrap();
    op.add("Operator.Marker.Two", "MARKER-TWO-77ab02");
    op.publish();
    let tmp = w.dir.path().join("data/signatures/tmp");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.requests.lock().unwrap().iter().any(|p| p.starts_with("payloads/")) || dir_bytes(&tmp) == 0 {
        assert!(Instant::now() < deadline, "the node never started downloading");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // mail goes on, scanned with release 1
    let started = Instant::now();
    assert_deleted(&w, "during", "MARKER-ONE-3f9c1d").await;
    assert!(started.elapsed() < Duration::from_secs(5), "mail waited {:?} for the update", started.elapsed());

    w.gw.kill9();
    assert!(dir_bytes(&tmp) > 0, "a half-written download was there");
    *server.mode.lock().unwrap() = Mode::StallUnder("payloads/".into());
    w.gw.spawn();
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &mail("after", "MARKER-ONE-3f9c1d"))
        .await
        .unwrap();
    assert!(r.code == 250 && r.text.contains("deleted"), "scans with release 1 at once: {r:?}");
    assert_eq!(logged(&w, "after")["signatures"], "release-1");
    assert!(w.gw.log().contains("signatures_loaded") && w.gw.log().contains("release-1"));

    *server.mode.lock().unwrap() = Mode::Serve;
    // the stalled request of the restarted node times out only after minutes; a fresh start
    // checks at once
    w.gw.kill9();
    w.gw.spawn();
    wait_status(&w, "release 2", Duration::from_secs(20)).await;
    assert_deleted(&w, "two", "MARKER-TWO-77ab02").await;
}

/// A source that answers garbage is refused with the reason; one that is down is retried with
/// back-off; mail flows all along and the release in use stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_or_dead_source_is_refused_or_retried_while_mail_flows() {
    use testkit::http::{HttpServer, Mode};
    let root = testkit::TempDir::new("sigs-garbage");
    let op = Operator::with_release_one(root.path());
    let server = HttpServer::start(op.repo(), Mode::Serve).await;
    let w = world_with("sigs-garbage", "", &op.signatures_section(&server.url()), Behaviour::Accept).await;
    wait_status(&w, "release 1", Duration::from_secs(10)).await;
    // later checks are conditional: the unchanged pointer is answered 304, nothing else read
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.not_modified.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "no conditional request: {:?}", server.requests.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after_install: Vec<String> = server.requests.lock().unwrap().clone();
    let manifests = after_install.iter().filter(|p| p.ends_with("manifest.json")).count();
    assert_eq!(manifests, 1, "the manifest is read once: {after_install:?}");
    *server.mode.lock().unwrap() = Mode::Garbage;
    let status = wait_status(&w, "last refused:", Duration::from_secs(10)).await;
    assert!(status.contains("not a version number") && status.contains("release 1"), "{status}");
    assert_deleted(&w, "g", "MARKER-ONE-3f9c1d").await;
    drop(server);
    let status = wait_status(&w, "failed:", Duration::from_secs(10)).await;
    assert!(status.contains("release 1"), "{status}");
    assert!(w.gw.log().contains("signature_check_failed"));
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &mail("d", "hello")).await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        total += if p.is_dir() { dir_bytes(&p) } else { e.metadata().map(|m| m.len()).unwrap_or(0) };
    }
    total
}

/// Each kind of bad release, published to a node's directory source, is refused with its
/// reason in `sigs status` while the release in use stays; the next good release installs.
/// Tampered manifests are signed again with the `minisign` tool where the point is not the
/// signature itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_release_is_refused_with_its_reason() {
    let root = testkit::TempDir::new("sigs-refusals");
    let op = Operator::with_release_one(root.path());
    let section = op
        .signatures_section(op.repo().to_str().unwrap())
        .replace("[signatures]\n", "[signatures]\nmax_age = \"1h\"\n");
    let w = world_with("sigs-refusals", "", &section, Behaviour::Accept).await;
    wait_status(&w, "release 1 ", Duration::from_secs(10)).await;
    let other = root.path().join("other");
    keygen(&other, "o");

    let repo = op.repo();
    let latest = || std::fs::read_to_string(repo.join("latest")).unwrap().trim().parse::<u64>().unwrap();
    let manifest = |v: u64| repo.join(format!("releases/{v}/manifest.json"));
    let sign = |key: &Path, v: u64| {
        let m = manifest(v);
        let out = Command::new("minisign")
            .args(["-S", "-s"])
            .arg(key)
            .arg("-m")
            .arg(&m)
            .arg("-x")
            .arg(m.with_extension("json.minisig"))
            .args(["-t", "re-signed"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("minisign (scripts/test.sh installs it)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let edit = |v: u64, f: &dyn Fn(&mut serde_json::Value)| {
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest(v)).unwrap()).unwrap();
        f(&mut m);
        std::fs::write(manifest(v), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    };
    let payload = |v: u64, name: &str| {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest(v)).unwrap()).unwrap();
        let p = m["payloads"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
        repo.join("payloads").join(p["sha256"].as_str().unwrap())
    };
    let op_key = op.dir.join("op.key");
    let other_key = other.join("o.key");
    let mut in_use = 1;
    let mut n = 0;
    type Tamper<'a> = Box<dyn Fn(u64) + 'a>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("the signature does not verify", Box::new(|v| edit(v, &|m| m["signatures"] = 999.into()))),
        ("which is not trusted", Box::new(|v| sign(&other_key, v))),
        (
            "SHA-256",
            Box::new(|v| {
                let p = payload(v, "operator.ndb");
                let mut b = std::fs::read(&p).unwrap();
                b[0] ^= 0x20;
                std::fs::write(p, b).unwrap();
            }),
        ),
        (
            "bytes, the manifest lists",
            Box::new(|v| {
                let p = payload(v, "operator.ndb");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(p, &b[..b.len() - 3]).unwrap();
            }),
        ),
        ("is not newer than", Box::new(|_| std::fs::write(repo.join("latest"), "1\n").unwrap())),
        (
            "expired at",
            Box::new(|v| {
                edit(v, &|m| {
                    m["created"] = 1_000.into();
                    m["expires"] = 2_000.into();
                });
                sign(&op_key, v);
            }),
        ),
        (
            "malformed manifest",
            Box::new(|v| {
                std::fs::write(manifest(v), b"{\"format\": 1, \"version\": 2}").unwrap();
                sign(&op_key, v);
            }),
        ),
        (
            "self-test failed",
            Box::new(|v| {
                edit(v, &|m| m["vectors"][0]["expect"] = "Some.Other.Name".into());
                sign(&op_key, v);
            }),
        ),
    ];
    for (reason, tamper) in &cases {
        n += 1;
        // a new marker, so that each release differs
        op.add(&format!("Operator.Case.{n}"), &format!("CASE-MARKER-{n:02}-aa"));
        op.publish();
        let v = latest();
        tamper(v);
        let status = wait_status(&w, reason, Duration::from_secs(10)).await;
        assert!(status.contains(&format!("release {in_use} ")), "{reason}: release {in_use} stays in use:\n{status}");
        // repair by publishing a good release after it
        std::fs::write(repo.join("latest"), format!("{v}\n")).unwrap();
        op.publish();
        in_use = latest();
        wait_status(&w, &format!("release {in_use} "), Duration::from_secs(10)).await;
    }
    assert_eq!(in_use, 1 + 2 * cases.len() as u64);
}

/// A release older than `max_age` is reported stale, and scanning goes on with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_release_is_reported_stale() {
    let root = testkit::TempDir::new("sigs-stale");
    let op = Operator::with_release_one(root.path());
    let section = op
        .signatures_section(op.repo().to_str().unwrap())
        .replace("[signatures]\n", "[signatures]\nmax_age = \"1s\"\n");
    let w = world_with("sigs-stale", "", &section, Behaviour::Accept).await;
    wait_status(&w, "release 1 ", Duration::from_secs(10)).await;
    let status = wait_status(&w, "STALE", Duration::from_secs(10)).await;
    assert!(status.contains("release 1 "), "{status}");
    w.gw.wait_log("signatures_stale", Duration::from_secs(5)).await;
    assert_deleted(&w, "old", "MARKER-ONE-3f9c1d").await;
}

/// Key rotation: with both keys trusted, a release signed with the new key is installed after
/// one signed with the old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_signed_with_a_second_trusted_key_is_installed() {
    let root = testkit::TempDir::new("sigs-rotate");
    let op = Operator::with_release_one(root.path());
    let new = root.path().join("new");
    let new_pub = keygen(&new, "n");
    let section = op
        .signatures_section(op.repo().to_str().unwrap())
        .replace(&format!("[\"{}\"]", op.public), &format!("[\"{}\", \"{new_pub}\"]", op.public));
    let w = world_with("sigs-rotate", "", &section, Behaviour::Accept).await;
    wait_status(&w, "release 1 ", Duration::from_secs(10)).await;
    op.add("Operator.Marker.Two", "MARKER-TWO-77ab02");
    let out = Command::new(BIN)
        .args(["sigs", "publish", "--db", "db", "--secret"])
        .arg(new.join("n.key"))
        .args(["--out", "repo"])
        .current_dir(&op.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = wait_status(&w, "release 2 ", Duration::from_secs(10)).await;
    let new_id =
        Command::new(BIN).args(["sigs", "verify", op.repo().to_str().unwrap(), "--key", &new_pub]).output().unwrap();
    assert!(new_id.status.success(), "{}", String::from_utf8_lossy(&new_id.stdout));
    let signer = String::from_utf8_lossy(&new_id.stdout)
        .split("signed by ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    assert!(status.contains(&format!("signed by {signer}")), "{status}");
}
