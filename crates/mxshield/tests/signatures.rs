//! Signature releases end to end (issue 10): the operator's `sigs keygen` and `sigs publish`,
//! a node that picks releases up from a directory or over HTTP, scans with them, records the
//! version with each verdict, refuses a bad release while keeping the one in use, and starts
//! with the last good release after SIGKILL.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use testkit::client::send_one;
use testkit::sink::Behaviour;

/// The operator's side: a key pair and a database directory, published with the CLI.
struct Operator {
    dir: PathBuf,
    public: String,
}

impl Operator {
    fn new(root: &Path) -> Operator {
        let dir = root.join("operator");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let out = Command::new(BIN)
            .args(["sigs", "keygen", "--secret", "op.key", "--public", "op.pub"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains(&std::fs::read_to_string(dir.join("op.key")).unwrap()), "secret printed");
        let public = std::fs::read_to_string(dir.join("op.pub")).unwrap().lines().nth(1).unwrap().to_string();
        Operator { dir, public }
    }

    /// Adds a body signature `name` for `marker` to the operator's database.
    fn add(&self, name: &str, marker: &str) {
        let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
        let file = self.dir.join("db").join("operator.ndb");
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(&format!("{name}:0:*:{hex}\n"));
        std::fs::write(file, text).unwrap();
    }

    fn publish(&self) {
        let out = Command::new(BIN)
            .args(["sigs", "publish", "--db", "db", "--secret", "op.key", "--out", "repo"])
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    fn signatures_section(&self, source: &str) -> String {
        format!("[signatures]\nsource = \"{source}\"\ntrusted_keys = [\"{}\"]\ncheck_every = \"300ms\"\n", self.public)
    }
}

fn mail(subject: &str, body: &str) -> Vec<u8> {
    format!("From: a@remote.test\r\nTo: alice@acme.example\r\nSubject: {subject}\r\n\r\n{body}\r\n").into_bytes()
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

/// The message-log record of the message with `subject`, as JSON.
fn logged(w: &World, subject: &str) -> serde_json::Value {
    let out = w.gw.cli(&["log", "search", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.into_iter().find(|m| m["subject"] == subject).unwrap_or_else(|| panic!("{subject} not logged"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_picked_up_recorded_refused_and_kept_over_a_crash() {
    let root = testkit::TempDir::new("sigs-ops");
    let op = Operator::new(root.path());
    op.add("Operator.Marker.One", "MARKER-ONE-3f9c1d");
    op.publish();
    let section = op.signatures_section(op.repo().to_str().unwrap());
    let mut w = world_with("sigs", "", &section, Behaviour::Accept).await;

    // picked up within a check interval or so, then used for every verdict
    let status = wait_status(&w, "release 1", Duration::from_secs(10)).await;
    assert!(status.contains("last check:"), "{status}");
    let r =
        send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &mail("one", "MARKER-ONE-3f9c1d")).await.unwrap();
    assert!(r.code == 250 && r.text.contains("deleted"), "{r:?}");
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
    let r =
        send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &mail("two", "MARKER-TWO-77ab02")).await.unwrap();
    assert!(r.code == 250 && r.text.contains("deleted"), "{r:?}");
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
    let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &mail("http", "MARKER-HTTP-5150aa"))
        .await
        .unwrap();
    assert!(r.code == 250 && r.text.contains("deleted"), "{r:?}");
    let verify = w.gw.cli(&["sigs", "verify", &format!("http://127.0.0.1:{port}/")]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let _ = server.kill();
    let _ = server.wait();
}
