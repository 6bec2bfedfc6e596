//! Issue 8 black-box regressions: what a hostile client sent, and what the gateway let through
//! or took too long over. Each test is named after what it guards.

mod common;

use common::*;
use testkit::client::RawClient;
use testkit::wire::{WireConfig, WireServer, bare_line_ends, lenient_ends};

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Sends `data` (raw, already dot-stuffed, ending with the strict end marker) in one
/// transaction to alice and returns the reply to the final dot.
async fn send_raw_data(gw: std::net::SocketAddr, data: &[u8]) -> testkit::client::RawReply {
    let (mut c, _) = RawClient::connect(gw).await.unwrap();
    c.cmd("EHLO attacker.test").await.unwrap();
    assert_eq!(c.cmd("MAIL FROM:<x@remote.test>").await.unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@acme.example>").await.unwrap().code, 250);
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(data).await.unwrap();
    c.reply().await.unwrap()
}

/// SMTP smuggling through bare CR: `CR . CR` (and `CR . CRLF`, `CRLF . CR`, `CR . LF`) must not
/// reach the customer server as anything a normalising receiver reads as the end of data, and
/// the smuggled "second message" must not exist anywhere downstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_cr_cannot_smuggle_a_second_message_downstream() {
    let customer = WireServer::start(WireConfig::default()).await;
    let (gw, _dir) = gateway("smuggle", &quoted(customer.addr), down_addr(), |c| c);
    let b64 = mime::encode::base64_lines(EICAR.as_bytes()).replace("\r\n", "\r");
    for (n, end) in ["\r.\r", "\r.\r\n", "\r\n.\r", "\r.\n"].iter().enumerate() {
        let smuggled = format!(
            "MAIL FROM:<ceo@acme.example>\rRCPT TO:<alice@acme.example>\rDATA\rFrom: ceo@acme.example\r\
             Content-Type: multipart/mixed; boundary=x\r\r--x\rContent-Type: application/octet-stream\r\
             Content-Transfer-Encoding: base64\r\r{b64}--x--\r.\rQUIT\r"
        );
        let data = format!(
            "From: x@remote.test\r\nTo: alice@acme.example\r\nSubject: carrier {n}\r\n\r\nhello{end}{smuggled}\r\n.\r\n"
        );
        let r = send_raw_data(gw.addr, data.as_bytes()).await;
        assert!(r.code == 250 || r.code >= 500, "{end:?}: {r:?}");
    }
    let got = customer.wait_for(4, WAIT).await;
    for m in &got {
        assert_eq!(bare_line_ends(&m.raw), 0, "bare CR/LF delivered:\n{:?}", String::from_utf8_lossy(&m.raw));
        assert_eq!(lenient_ends(&m.raw), 0, "an end of data a lenient receiver would see:\n{:?}", m.raw);
    }
    let mails: Vec<_> = customer.commands().into_iter().filter(|c| c.starts_with("MAIL")).collect();
    assert!(mails.iter().all(|m| !m.contains("ceo@acme.example")), "{mails:?}");
    assert!(mails.len() <= 4, "{mails:?}");
}

/// A part's `Content-Transfer-Encoding: base64` hidden behind a bare CR in its header: the scanner
/// must see the same header lines a receiver sees, so the base64 EICAR is decoded and found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_behind_a_bare_cr_is_decoded_and_scanned() {
    let customer = WireServer::start(WireConfig::default()).await;
    let (gw, _dir) = gateway("hidden-cte", &quoted(customer.addr), down_addr(), |c| c);
    let data = format!(
        "From: x@remote.test\r\nTo: alice@acme.example\r\nSubject: hidden\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"e.com\"\rContent-Transfer-Encoding: base64\r\n\r\n\
         {}--b--\r\n.\r\n",
        mime::encode::base64_lines(EICAR.as_bytes())
    );
    let r = send_raw_data(gw.addr, data.as_bytes()).await;
    assert_eq!(r.code, 250, "{r:?}");
    let log = gw.wait_log("Eicar-Test-Signature", WAIT).await;
    assert!(!log.contains("result=clean"), "{log}");
    let got: Vec<_> = customer.wait_for(2, WAIT).await.into_iter().filter(|m| !m.mail.contains("FROM:<>")).collect();
    assert_eq!(got.len(), 1, "the cleaned message is delivered (besides the warning)");
    let text = String::from_utf8_lossy(&got[0].raw);
    assert!(!text.contains(&mime::encode::base64(EICAR.as_bytes())[..40]), "{text}");
    assert!(!text.contains("X-Mxshield-Scan: clean"), "{text}");
    assert_eq!(bare_line_ends(&got[0].raw), 0);
}

/// A zip whose only member is infected is replaced by the notice, not delivered as an empty
/// archive (issue 8.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_with_only_infected_members_becomes_the_notice_not_an_empty_zip() {
    let w = world("only-infected").await;
    let archive = testkit::mail::zip(&[("eicar.com", EICAR.as_bytes())]);
    let body = testkit::mail::with_attachment("x@remote.test", "only", "see attached", "only.zip", &archive);
    let r = testkit::client::send_one(w.gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    let got = w.customer.wait_for(2, WAIT).await;
    let delivered: Vec<_> = got.iter().filter(|m| !m.from.is_empty()).collect();
    assert_eq!(delivered.len(), 1);
    let raw = &delivered[0].data;
    let msg = mime::parse(raw);
    let parts: Vec<_> = msg.root.walk().into_iter().filter(|(p, _)| p.len() == 1).collect();
    assert_eq!(parts.len(), 2);
    let notice = parts[1].1;
    assert_eq!(notice.content_type, "text/plain", "{}", delivered[0].text());
    let text = String::from_utf8(notice.decoded_body(raw)).unwrap();
    assert!(text.contains("The attachment \"only.zip\" was removed"), "{text}");
    assert!(w.gw.log().contains("removed: only.zip"), "{}", w.gw.log());
}

/// `unreadable_attachments = "refuse"` refuses content the scanner cannot open; the default
/// delivers it marked unscanned (issue 8.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_content_is_refused_when_the_contract_says_so() {
    let w = world("unreadable").await;
    // a zip member compressed with a method nobody implements any more (6: implode is not
    // built; 77 is unassigned)
    let mut archive = testkit::mail::zip(&[("old.txt", b"ancient data".as_slice())]);
    archive[8] = 77;
    let central = archive.windows(4).position(|x| x == b"PK\x01\x02").unwrap();
    archive[central + 10] = 77;
    let body = testkit::mail::with_attachment("x@remote.test", "old", "see attached", "old.zip", &archive);
    let send = || testkit::client::send_one(w.gw.addr, "x@remote.test", &["alice@acme.example"], &body);
    let r = send().await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    let got = w.customer.wait_for(1, WAIT).await;
    assert!(got[0].text().contains("X-Mxshield-Scan: unscanned: unreadable old.txt"), "{}", got[0].text());
    let strict = contracts(&format!("\"{}\"", w.customer.addr))
        .replace("starts = ", "unreadable_attachments = \"refuse\"\nstarts = ");
    apply(&w.gw, &strict);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = send().await.unwrap();
    assert_eq!((r.code, r.enhanced()), (554, Some("5.7.1")), "{r:?}");
}

/// Runs `sh -c script` in `dir` (building hostile archives with the standard tools).
fn sh(dir: &std::path::Path, script: &str) {
    let out = std::process::Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Sends `attachment` to alice through the gateway; returns the reply and how much the
/// gateway's peak memory (`VmHWM`, its own address space) rose while it was handled.
async fn peak_rise_kib(w: &World, name: &str, attachment: &[u8]) -> (testkit::client::RawReply, u64) {
    let before = w.gw.peak_rss_kib().unwrap();
    let body = testkit::mail::with_attachment("x@remote.test", name, "see attached", name, attachment);
    let r = testkit::client::send_one(w.gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
    let after = w.gw.peak_rss_kib().unwrap();
    println!("{name}: reply {} {}, gateway peak RSS {before} -> {after} KiB", r.code, r.text);
    (r, after.saturating_sub(before))
}

/// A 7z of 1 GB of zeros (LZMA2, 7-Zip's defaults, ~150 KB): the scan stops at the expansion
/// limit within bounded memory. Before the fix the multi-threaded decoder held 2.4 GiB for
/// 2 GB of zeros (issue 8.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sevenz_memory_bomb_is_refused_within_bounded_memory() {
    let w = world("7z-bomb").await;
    sh(w.dir.path(), "head -c 1000000000 /dev/zero | 7z a -bd -bso0 -si zeros.7z");
    let bomb = std::fs::read(w.dir.path().join("zeros.7z")).unwrap();
    let (r, rise) = peak_rise_kib(&w, "zeros.7z", &bomb).await;
    assert_eq!((r.code, r.enhanced()), (552, Some("5.3.4")), "{r:?}");
    assert!(rise < 250 * 1024, "peak RSS rose by {rise} KiB");
}

/// A RAR5 vint.
fn vint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A RAR5 file header whose extra area is 20 MB of empty records: reading it costs memory
/// proportional to nothing, not 8 bytes per byte (issue 8.6: 35 MB took 354 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rar5_extra_area_costs_no_memory_per_record() {
    let extra_len = 20_000_000u64;
    let mut body = Vec::new();
    vint(2, &mut body); // file header
    vint(1, &mut body); // flags: extra area present
    vint(extra_len, &mut body);
    vint(0, &mut body); // file flags
    vint(5, &mut body); // unpacked size
    vint(0, &mut body); // attributes
    vint(0, &mut body); // compression: stored
    vint(0, &mut body); // host
    vint(5, &mut body);
    body.extend_from_slice(b"a.txt");
    body.resize(body.len() + extra_len as usize, 0);
    let mut rar = b"Rar!\x1a\x07\x01\x00".to_vec();
    rar.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    vint(body.len() as u64, &mut rar);
    rar.extend_from_slice(&body);
    let w = world("rar5-extra").await;
    let (r, rise) = peak_rise_kib(&w, "x.rar", &rar).await;
    assert_eq!(r.code, 250, "{r:?}");
    // the message itself (27 MB of base64, 20 MB decoded) and the scan's copies; before the fix
    // the record list alone was 160 MB more
    assert!(rise < 130 * 1024, "peak RSS rose by {rise} KiB");
}

/// uuencoded files in a text part count against `max_entries` like archive members: 20,000
/// tiny files are refused at the limit, not scanned one by one into memory (issue 8.7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uuencoded_files_count_against_the_entry_limit() {
    let w = world("uu-entries").await;
    let files = "begin 644 a.txt\r\n#86)C\r\n`\r\nend\r\n".repeat(20_000);
    let body = format!("From: x@remote.test\r\nTo: alice@acme.example\r\nSubject: uu\r\n\r\n{files}");
    let r =
        testkit::client::send_one(w.gw.addr, "x@remote.test", &["alice@acme.example"], body.as_bytes()).await.unwrap();
    assert_eq!((r.code, r.enhanced()), (552, Some("5.3.4")), "{r:?}");
    // the wire gets generic text; the log names the limit
    assert!(!r.text.contains("10000"), "{r:?}");
    let log = w.gw.log();
    assert!(log.contains("content exceeds a scanning limit: more than 10000 entries"), "{log}");
}

/// Scans wait for a slot (`[scan] max_concurrent`) instead of each session scanning its own copy
/// at once: eight 6 MB messages sent together are all accepted, one scan at a time, and the
/// gateway's peak memory stays near one scan's worth (issue 8.8: 16 slow 45 MB scans held
/// 1.1 GiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scans_wait_for_a_slot_within_bounded_memory() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("admission", &quoted(customer.addr), down_addr(), |c| {
        c.replace("[delivery]", "[scan]\nmax_concurrent = 1\n\n[delivery]")
    });
    let payload: Vec<u8> = (0..6_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let body = testkit::mail::with_attachment("x@remote.test", "big", "see attached", "big.bin", &payload);
    let before = gw.peak_rss_kib().unwrap();
    let sends = (0..8).map(|_| {
        let body = body.clone();
        let addr = gw.addr;
        tokio::spawn(async move {
            testkit::client::send_one(addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap()
        })
    });
    for s in sends.collect::<Vec<_>>() {
        assert_eq!(s.await.unwrap().code, 250);
    }
    let peak = gw.peak_rss_kib().unwrap();
    println!("8 x 8 MB messages, max_concurrent = 1: peak RSS {peak} KiB (before: {before} KiB)");
    let log = gw.log();
    let waited = log.lines().filter(|l| l.contains("event=\"received\"") && !l.contains("scan_wait_ms=0 ")).count();
    assert!(waited >= 4, "scans did not queue:\n{log}");
    assert!(peak < before + 80 * 1024, "peak RSS {peak} KiB, {before} KiB before the messages");
}

/// Header content that used to cost quadratic time — a Content-Type of 100,000 parameters,
/// 100,000 RFC 2231 sections, a Subject of 200,000 unterminated encoded words, a 20 MB header
/// line — is answered in bounded time, and the gateway greets a new client meanwhile (issue
/// 8.9: 2 minutes, 200 s, 79 s, and greetings stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quadratic_header_content_is_answered_in_bounded_time() {
    let w = world("quadratic").await;
    let params: String = (0..100_000).map(|i| format!(";\r\n p{i}=v")).collect();
    let sections: String = (0..100_000).map(|i| format!(";\r\n name*{i}=x")).collect();
    let words = "=?x?Q? ".repeat(200_000);
    let long_line = "a".repeat(20_000_000);
    let messages = [
        format!("Subject: params\r\nContent-Type: text/plain{params}\r\n\r\nhi\r\n"),
        format!(
            "Subject: sections\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream{sections}\r\n\r\nhi\r\n--b--\r\n"
        ),
        format!("Subject: {words}\r\n\r\nhi\r\n"),
        format!("Subject: {long_line}\r\n\r\nhi\r\n"),
    ];
    let started = std::time::Instant::now();
    let sends: Vec<_> = messages
        .into_iter()
        .map(|m| {
            let addr = w.gw.addr;
            tokio::spawn(async move {
                testkit::client::send_one(addr, "x@remote.test", &["alice@acme.example"], m.as_bytes()).await.unwrap()
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let greeted = std::time::Instant::now();
    let (_c, greeting) = RawClient::connect(w.gw.addr).await.unwrap();
    assert_eq!(greeting.code, 220);
    assert!(greeted.elapsed() < std::time::Duration::from_secs(2), "greeting took {:?}", greeted.elapsed());
    for s in sends {
        let r = s.await.unwrap();
        assert!(r.code == 250 || r.code == 552, "{r:?}");
    }
    println!("four quadratic-header messages answered in {:?}", started.elapsed());
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
}

/// One address cannot hold every session slot, and strangers cannot take the slots kept for
/// the contracts' own sending servers (issue 8.10: 1,000 trickling connections from one
/// stranger kept every other client at `421`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_session_slot() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("slots", &quoted(customer.addr), down_addr(), |c| {
        c.replace(
            "hostname = \"mx.test\"",
            "hostname = \"mx.test\"\nmax_connections = 6\nreserved_connections = 2\nmax_connections_per_client = 3",
        )
    });
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let (c, g) = RawClient::connect_from(ip("127.0.0.9"), gw.addr).await.unwrap();
        assert_eq!(g.code, 220);
        held.push(c);
    }
    let (_c, g) = RawClient::connect_from(ip("127.0.0.9"), gw.addr).await.unwrap();
    assert_eq!((g.code, g.enhanced()), (421, Some("4.7.0")), "{g:?}");
    // another stranger takes the last shared slot; a third finds them all taken
    let (c, g) = RawClient::connect_from(ip("127.0.0.10"), gw.addr).await.unwrap();
    assert_eq!(g.code, 220);
    held.push(c);
    let (_c, g) = RawClient::connect_from(ip("127.0.0.11"), gw.addr).await.unwrap();
    assert_eq!((g.code, g.enhanced()), (421, Some("4.3.2")), "{g:?}");
    // the contract's sending server still gets in, on a reserved slot, and may relay
    let (mut c, g) = RawClient::connect_from(ip(SENDING_SERVER), gw.addr).await.unwrap();
    assert_eq!(g.code, 220);
    c.cmd("EHLO mail.acme.example").await.unwrap();
    c.cmd("MAIL FROM:<alice@acme.example>").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<someone@remote.test>").await.unwrap().code, 250);
    // a slot given back is free again
    drop(held.pop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_c, g) = RawClient::connect_from(ip("127.0.0.11"), gw.addr).await.unwrap();
    assert_eq!(g.code, 220);
}

/// One byte per `data_timeout` cannot keep a DATA phase open for ever: the whole of one
/// message's data has `data_total_timeout` (issue 8.10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_data_is_cut_at_the_total_deadline() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("trickle", &quoted(customer.addr), down_addr(), |c| {
        c.replace(
            "hostname = \"mx.test\"",
            "hostname = \"mx.test\"\ndata_timeout = \"1s\"\ndata_total_timeout = \"2s\"",
        )
    });
    let (mut c, _) = RawClient::connect(gw.addr).await.unwrap();
    c.cmd("EHLO slow.test").await.unwrap();
    c.cmd("MAIL FROM:<x@remote.test>").await.unwrap();
    c.cmd("RCPT TO:<alice@acme.example>").await.unwrap();
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    let started = std::time::Instant::now();
    let trickle = async {
        for _ in 0..40 {
            if c.send_raw(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    };
    trickle.await;
    let r = c.reply().await.unwrap();
    assert_eq!((r.code, r.enhanced()), (421, Some("4.4.2")), "{r:?}");
    assert!(r.text.contains("took too long"), "{r:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(13));
    assert_eq!(customer.count(), 0);
}

/// A customer server that never answers holds at most `per_destination` delivery workers:
/// another customer's mail goes through meanwhile (issue 8.11: 64 messages to a tarpit held
/// all 64 workers, and another customer got 0 of 5 messages in 100 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tarpitting_customer_server_cannot_take_every_delivery_worker() {
    let tarpit = testkit::sink::Tarpit::start().await;
    let other = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("tarpit", &quoted(tarpit.addr), down_addr(), |c| {
        c.replace("connect_timeout = \"2s\"", "connect_timeout = \"2s\"\nworkers = 4\nper_destination = 2")
    });
    let two = format!(
        "{}\n[[contract]]\nid = \"beta\"\ncustomer = \"Beta\"\naccounts_limit = 5\nstarts = \"2026-01-01\"\n\
         [[contract.domain]]\nname = \"beta.example\"\nreceiving_servers = [\"{}\"]\naccounts = [\"carol\"]\n",
        contracts(&quoted(tarpit.addr)),
        other.addr
    );
    apply(&gw, &two);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    for i in 0..8 {
        let body = testkit::client::message(&format!("to the tarpit {i}"), "hello");
        let r = testkit::client::send_one(gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
        assert_eq!(r.code, 250);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    for i in 0..3 {
        let body = testkit::client::message(&format!("to beta {i}"), "hello");
        let r = testkit::client::send_one(gw.addr, "x@remote.test", &["carol@beta.example"], &body).await.unwrap();
        assert_eq!(r.code, 250);
    }
    let got = other.wait_for(3, std::time::Duration::from_secs(15)).await;
    assert_eq!(got.len(), 3, "log:\n{}", gw.log());
    println!("3 messages to another customer delivered in {:?} beside a tarpit", started.elapsed());
}

/// A customer server that refuses DATA and keeps the transaction open (Postfix with
/// `smtpd_data_restrictions = defer`): the connection is reset before it is used again, so no
/// innocent message meets "503 nested MAIL command" and bounces (issue 8.12: 2 of 3 bounced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_data_does_not_bounce_the_next_message() {
    let customer = WireServer::start(WireConfig { refuse_data: 1, ..WireConfig::default() }).await;
    let remote = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("rset", &quoted(customer.addr), remote.addr, |c| c);
    for i in 0..3 {
        let body = testkit::client::message(&format!("message {i}"), "hello");
        let r = testkit::client::send_one(gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
        assert_eq!(r.code, 250);
        if i == 0 {
            // the first is refused at DATA; the next ones go over the same connection
            gw.wait_log("event=\"deferred\"", WAIT).await;
        } else {
            customer.wait_for(i, WAIT).await;
        }
    }
    let got = customer.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3, "commands: {:#?}\nlog:\n{}", customer.commands(), gw.log());
    let commands = customer.commands();
    assert_eq!(commands.iter().filter(|c| c.starts_with("EHLO")).count(), 1, "{commands:#?}");
    let refused = commands.iter().position(|c| c == "DATA").unwrap();
    assert_eq!(commands[refused + 1], "RSET", "{commands:#?}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(remote.count(), 0, "a DSN was sent: {}", gw.log());
    assert!(!gw.log().contains("event=\"bounced\""), "{}", gw.log());
}

/// The result header names a bounded number of parts and counts the rest: 3,000 unreadable
/// members make a short header, not one entry each (issue 8.13: 100,000 names overflowed the
/// spool envelope and the message was retried for ever without a DSN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_header_is_bounded() {
    let w = world("result-header").await;
    let names: Vec<String> = (0..3000).map(|i| format!("member-{i:05}.txt")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), b"data".as_slice())).collect();
    let mut archive = testkit::mail::zip(&members);
    for sig in [b"PK\x03\x04", b"PK\x01\x02"] {
        let at: Vec<usize> = archive.windows(4).enumerate().filter(|(_, x)| x == sig).map(|(i, _)| i).collect();
        for i in at {
            let method = if sig == b"PK\x03\x04" { i + 8 } else { i + 10 };
            archive[method] = 77;
        }
    }
    let body = testkit::mail::with_attachment("x@remote.test", "many", "see attached", "many.zip", &archive);
    let r = testkit::client::send_one(w.gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    let got = w.customer.wait_for(1, WAIT).await;
    let text = got[0].text();
    let header = mime::parse(&got[0].data).root.header_text(&got[0].data, "X-Mxshield-Scan").unwrap();
    assert!(header.len() < 3000, "{} bytes", header.len());
    assert!(header.ends_with("; and 2980 more"), "{header}");
    assert!(text.len() < body.len() + 6000);
}

/// An accepted message whose status file got one bit flipped is still delivered after a
/// restart (issue 8.14: it was moved to `corrupt/` and never delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_a_status_file_does_not_strand_the_message() {
    let customer_addr = down_addr();
    let (mut gw, dir) = gateway("status-flip", &quoted(customer_addr), down_addr(), |c| c);
    let body = testkit::client::message("keep me", "hello");
    let r = testkit::client::send_one(gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250);
    gw.wait_log("event=\"deferred\"", WAIT).await;
    // the status file is written after the attempt is logged
    let queue = dir.path().join("data/spool/queue");
    let status_file = || {
        std::fs::read_dir(&queue).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "st"))
    };
    let deadline = std::time::Instant::now() + WAIT;
    while status_file().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gw.kill9();
    let st = status_file().expect("a status file");
    let mut bytes = std::fs::read(&st).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x04;
    std::fs::write(&st, bytes).unwrap();
    let customer = testkit::sink::Sink::start_on(customer_addr, testkit::sink::Behaviour::Accept, false).await;
    gw.spawn();
    let got = customer.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "log:\n{}", gw.log());
    assert!(gw.log().contains("event=\"spool_status_reset\""), "{}", gw.log());
}

/// A damaged `messages.db` is set aside and a new one started: reception and delivery go on
/// (issue 8.15: "file is not a database" stopped `serve` from starting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_message_log_never_stops_mail() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let dir = testkit::TempDir::new("damaged-log");
    let port = testkit::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut gw =
        testkit::gateway::Gateway::new(std::path::Path::new(BIN), dir.path(), addr, &config(port, down_addr(), "", ""));
    apply(&gw, &contracts(&quoted(customer.addr)));
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/messages.db"), vec![0x5a; 8192]).unwrap();
    gw.spawn();
    let body = testkit::client::message("after the damage", "hello");
    let r = testkit::client::send_one(gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250);
    assert_eq!(customer.wait_for(1, WAIT).await.len(), 1);
    assert!(gw.log().contains("event=\"message_log_damaged\""), "{}", gw.log());
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("messages.db.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // the new log records the message
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let out = gw.cli(&["log", "search", "--json"]);
        let found = String::from_utf8_lossy(&out.stdout).contains("after the damage");
        if found || std::time::Instant::now() > deadline {
            assert!(found, "{}", String::from_utf8_lossy(&out.stderr));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// While another process holds `messages.db` locked for longer than the busy wait, records
/// wait and are written once it is free — none is dropped (issue 8.15: 1,028 lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_log_records_survive_a_locked_file() {
    let w = world("locked-log").await;
    // make sure the log exists, then lock it for 13 s (the busy wait is 10 s)
    let r = testkit::client::send_one(
        w.gw.addr,
        "x@remote.test",
        &["alice@acme.example"],
        &testkit::client::message("first", "x"),
    )
    .await
    .unwrap();
    assert_eq!(r.code, 250);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let db = w.dir.path().join("data/messages.db");
    let mut locker = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3,time\nc=sqlite3.connect({:?},isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\ntime.sleep(13)\nc.execute('COMMIT')",
            db.display().to_string()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    for i in 0..20 {
        let body = testkit::client::message(&format!("while locked {i}"), "x");
        let r = testkit::client::send_one(w.gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
        assert_eq!(r.code, 250);
    }
    assert!(locker.wait().unwrap().success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let out = w.gw.cli(&["log", "search", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let n = (0..20).filter(|i| text.contains(&format!("while locked {i}\""))).count();
        if n == 20 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {n} of 20 logged:\n{}", w.gw.log());
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(w.gw.log().contains("event=\"message_log_recovered\""), "{}", w.gw.log());
}

/// A second `serve` on the same configuration stops before touching the spool: the first
/// one's message in reception survives (issue 8.16: the second ran recovery, deleting it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_data_dir_refuses_to_start() {
    let w = world("double-serve").await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    c.cmd("MAIL FROM:<x@remote.test>").await.unwrap();
    c.cmd("RCPT TO:<alice@acme.example>").await.unwrap();
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: in reception\r\n\r\nfirst half\r\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // the same configuration file (same data_dir), another process
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&w.gw.config)
        .arg("serve")
        .current_dir(&w.gw.dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("locked by another mxshield process"), "{err}");
    c.send_raw(b"second half\r\n.\r\n").await.unwrap();
    let r = c.reply().await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(w.customer.wait_for(1, WAIT).await.len(), 1);
}

/// A deleted message's warnings are queued in the same commit as (a marker of) the message,
/// and the `received` line counts them (issue 8.17; 8.24: it said `warnings=0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_are_committed_with_their_message_and_counted() {
    let w = world("warning-group").await;
    let body = format!("From: x@remote.test\r\nTo: alice@acme.example\r\nSubject: bad\r\n\r\n{EICAR}\r\n");
    let r = testkit::client::send_one(
        w.gw.addr,
        "x@remote.test",
        &["alice@acme.example", "bob@acme.example"],
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    assert!(r.text.contains("2 warning(s) sent"), "{r:?}");
    let got = w.customer.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m.from.is_empty()));
    let log = w.gw.wait_log("event=\"received\"", WAIT).await;
    let line = log.lines().find(|l| l.contains("event=\"received\"")).unwrap();
    assert!(line.contains("warnings=2"), "{line}");
    // the marker of the deleted message is gone: only warnings were ever in the queue
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let queue = w.dir.path().join("data/spool/queue");
    assert_eq!(std::fs::read_dir(queue).unwrap().count(), 0);
}

/// The same recipient named many times (or in another case) is one recipient: one copy
/// downstream, one warning (issue 8.18: 100 RCPTs of alice gave 100 warnings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_recipients_are_merged() {
    let w = world("dup-rcpt").await;
    let mut rcpts: Vec<&str> = vec!["alice@acme.example"; 50];
    rcpts.extend(["ALICE@ACME.EXAMPLE", "Alice@Acme.Example", "bob@acme.example", "BOB@acme.example"]);
    let clean = testkit::client::message("dups", "hello");
    let r = testkit::client::send_one(w.gw.addr, "x@remote.test", &rcpts, &clean).await.unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    let got = w.customer.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["alice@acme.example", "bob@acme.example"]);
    let infected = format!("From: x@remote.test\r\nTo: alice@acme.example\r\nSubject: bad\r\n\r\n{EICAR}\r\n");
    let r = testkit::client::send_one(w.gw.addr, "x@remote.test", &rcpts, infected.as_bytes()).await.unwrap();
    assert!(r.text.contains("2 warning(s) sent"), "{r:?}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let warnings = w.customer.messages().into_iter().filter(|m| m.from.is_empty()).count();
    assert_eq!(warnings, 2);
}

/// `postmaster` is always accepted (RFC 5321 §4.5.1): `<postmaster>` and the gateway's own
/// postmaster address (the `From:` of every warning and DSN) reach the operator, and
/// `postmaster@` a registered domain reaches the customer (issue 8.19: 501, 550, and
/// "Relaying denied").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_is_accepted_and_routed() {
    let w = world("postmaster").await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO stranger.test").await.unwrap();
    for (rcpt, code) in [("<Postmaster>", 250), ("<postmaster@mx.test>", 250), ("<postmaster@acme.example>", 250)] {
        c.cmd("RSET").await.unwrap();
        assert_eq!(c.cmd("MAIL FROM:<someone@remote.test>").await.unwrap().code, 250);
        let r = c.cmd(&format!("RCPT TO:{rcpt}")).await.unwrap();
        assert_eq!(r.code, code, "{rcpt}: {r:?}");
    }
    // the operator's postmaster: forwarded where the configuration says
    let operator = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let body = testkit::client::message("to the postmaster", "hello");
    let (gw, _dir) = gateway("postmaster-forward", &quoted(w.customer.addr), operator.addr, |c| {
        c.replace(
            "postmaster = \"postmaster@mx.test\"",
            "postmaster = \"postmaster@mx.test\"\npostmaster_forward = \"ops@remote.test\"",
        )
    });
    let (mut c, _) = RawClient::connect(gw.addr).await.unwrap();
    c.cmd("EHLO stranger.test").await.unwrap();
    c.cmd("MAIL FROM:<someone@elsewhere.test>").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<postmaster>").await.unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<POSTMASTER@mx.test>").await.unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<postmaster@acme.example>").await.unwrap().code, 250);
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(&body).await.unwrap();
    c.send_raw(b".\r\n").await.unwrap();
    assert_eq!(c.reply().await.unwrap().code, 250);
    let got = operator.wait_for(1, WAIT).await;
    assert_eq!(got[0].rcpts, vec!["ops@remote.test"], "one copy for the operator");
    let got = w.customer.wait_for(1, WAIT).await;
    assert_eq!(got[0].rcpts, vec!["postmaster@acme.example"]);
}

/// A DSN about a message with UTF-8 headers is 7-bit with `message/global-headers` (RFC 6533),
/// so a strict receiver takes it (issue 8.20: raw 8-bit in `text/rfc822-headers`; the DSN was
/// refused and, being from `<>`, lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dsn_about_utf8_headers_is_seven_bit() {
    let w = world_with("dsn-utf8", "", "", testkit::sink::Behaviour::RcptReply(550, (5, 1, 1))).await;
    let body = "From: 山田 <x@remote.test>\r\nTo: alice@acme.example\r\nSubject: 請求書のご送付\r\n\r\nhello\r\n";
    let r =
        testkit::client::send_one(w.gw.addr, "x@remote.test", &["alice@acme.example"], body.as_bytes()).await.unwrap();
    assert_eq!(r.code, 250);
    let got = w.remote.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "no DSN:\n{}", w.gw.log());
    let dsn = &got[0].data;
    assert!(dsn.is_ascii(), "{}", got[0].text());
    let msg = mime::parse(dsn);
    let headers =
        msg.root.children.iter().find(|p| p.content_type == "message/global-headers").expect("global headers");
    let original = String::from_utf8(headers.decoded_body(dsn)).unwrap();
    assert!(original.contains("Subject: 請求書のご送付"), "{original}");
}

/// 8-bit data is made 7-bit for a next hop without 8BITMIME, and a message that needs SMTPUTF8
/// is never sent to a next hop without it (a `5.6.7` DSN instead); the client's `SMTPUTF8` is
/// passed on (issue 8.21).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bit_and_smtputf8_are_only_sent_where_the_next_hop_takes_them() {
    let seven_bit_only =
        WireServer::start(WireConfig { extensions: vec!["PIPELINING".into()], ..WireConfig::default() }).await;
    let remote = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let (gw, _dir) = gateway("8bit", &quoted(seven_bit_only.addr), remote.addr, |c| c);
    // 8-bit body, no SMTPUTF8: delivered, made 7-bit
    let body = "From: x@remote.test\r\nTo: alice@acme.example\r\nSubject: hello\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nこんにちは、世界\r\n";
    let r =
        testkit::client::send_one(gw.addr, "x@remote.test", &["alice@acme.example"], body.as_bytes()).await.unwrap();
    assert_eq!(r.code, 250);
    let got = seven_bit_only.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "{}", gw.log());
    assert!(got[0].raw.is_ascii(), "{}", String::from_utf8_lossy(&got[0].raw));
    assert!(!got[0].mail.contains("BODY=8BITMIME"), "{}", got[0].mail);
    let m = mime::parse(&got[0].raw);
    assert_eq!(m.root.decoded_body(&got[0].raw), "こんにちは、世界\r\n".as_bytes());
    // SMTPUTF8 declared by the client: not sent to a server without it; the sender gets a DSN
    let (mut c, _) = RawClient::connect(gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    assert_eq!(c.cmd("MAIL FROM:<x@remote.test> SMTPUTF8").await.unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@acme.example>").await.unwrap().code, 250);
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw("From: 山田 <x@remote.test>\r\nSubject: 請求書\r\n\r\nhi\r\n.\r\n".as_bytes()).await.unwrap();
    assert_eq!(c.reply().await.unwrap().code, 250);
    let dsn = remote.wait_for(1, WAIT).await;
    assert_eq!(dsn.len(), 1, "{}", gw.log());
    assert!(dsn[0].text().contains("Status: 5.6.7"), "{}", dsn[0].text());
    assert_eq!(seven_bit_only.messages().len(), 1, "the SMTPUTF8 message reached a server without SMTPUTF8");
    // to a server that has SMTPUTF8, the parameter is passed on
    let utf8 = WireServer::start(WireConfig::default()).await;
    let (gw2, _dir2) = gateway("smtputf8", &quoted(utf8.addr), remote.addr, |c| c);
    let (mut c, _) = RawClient::connect(gw2.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    c.cmd("MAIL FROM:<x@remote.test> SMTPUTF8").await.unwrap();
    c.cmd("RCPT TO:<alice@acme.example>").await.unwrap();
    c.cmd("DATA").await.unwrap();
    c.send_raw("Subject: 請求書\r\n\r\nhi\r\n.\r\n".as_bytes()).await.unwrap();
    assert_eq!(c.reply().await.unwrap().code, 250);
    let got = utf8.wait_for(1, WAIT).await;
    assert!(got[0].mail.contains("SMTPUTF8"), "{}", got[0].mail);
}

/// A recipient domain in U-label form matches its registered A-label and the other way round;
/// contracts may be written with U-labels (issue 8.22: "Relaying denied").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internationalized_domains_match_their_a_labels() {
    let w = world("idn").await;
    let toml = format!(
        "{}\n[[contract]]\nid = \"rei\"\ncustomer = \"Rei\"\naccounts_limit = 5\nstarts = \"2026-01-01\"\n\
         [[contract.domain]]\nname = \"例え.example\"\nreceiving_servers = [\"{}\"]\naccounts = [\"taro\"]\n\
         [[contract.domain]]\nname = \"xn--wgv71a.example\"\nreceiving_servers = [\"{}\"]\naccounts = [\"hanako\"]\n",
        contracts(&quoted(w.customer.addr)),
        w.customer.addr,
        w.customer.addr
    );
    apply(&w.gw, &toml);
    let list = String::from_utf8_lossy(&w.gw.cli(&["contracts", "list"]).stdout).into_owned();
    assert!(list.contains("xn--r8jz45g.example"), "{list}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    assert_eq!(c.cmd("MAIL FROM:<x@remote.test> SMTPUTF8").await.unwrap().code, 250);
    for rcpt in ["taro@例え.example", "taro@xn--r8jz45g.example", "TARO@XN--R8JZ45G.EXAMPLE", "hanako@日本.example"]
    {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await.unwrap();
        assert_eq!(r.code, 250, "{rcpt}: {r:?}");
    }
    assert_eq!(c.cmd("RCPT TO:<jiro@例え.example>").await.unwrap().code, 550);
}

/// `check-config` checks what `serve` checks, and both report every problem, without Rust debug
/// values, with exit status 2 (issue 8.23: "valid", then `serve` exit 1 with the first only).
#[test]
fn check_config_and_serve_report_every_start_up_problem() {
    let dir = testkit::TempDir::new("preflight");
    let port = testkit::free_port();
    let closed = testkit::free_port();
    let cfg = format!(
        "data_dir = \"data\"\n[smtp]\nlisten = [\"127.0.0.1:{port}\"]\n[smtp.tls]\ncert = \"missing-cert.pem\"\nkey = \"missing-key.pem\"\n\
         [scan]\nengine = \"clamd\"\nclamd = \"127.0.0.1:{closed}\"\n"
    );
    std::fs::write(dir.path().join("m.toml"), cfg).unwrap();
    for command in ["check-config", "serve"] {
        let out = std::process::Command::new(BIN)
            .args(["--config", "m.toml", command])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(err.contains("missing-cert.pem"), "{command}: {err}");
        assert!(err.contains(&format!("cannot reach clamd at 127.0.0.1:{closed}")), "{command}: {err}");
        assert!(!err.contains("Tcp("), "{command}: {err}");
    }
    // a missing signatures directory too
    let cfg =
        format!("data_dir = \"data\"\n[smtp]\nlisten = [\"127.0.0.1:{port}\"]\n[scan]\nsignatures = \"no-such-dir\"\n");
    std::fs::write(dir.path().join("s.toml"), cfg).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--config", "s.toml", "check-config"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dir"));
}

/// The smaller defects of issue 8.24 seen from the command line: `scan`'s exit code for
/// results that are only UNSCANNABLE (0, as documented), `log search` refusing unknown
/// directions and actions, `tls self-signed` writing its key 0600 with the host name as CN.
#[test]
fn command_line_details() {
    use std::os::unix::fs::PermissionsExt;
    let dir = testkit::TempDir::new("cli-details");
    let run = |args: &[&str]| std::process::Command::new(BIN).args(args).current_dir(dir.path()).output().unwrap();
    // an encrypted zip: UNSCANNABLE, exit 0
    sh(dir.path(), "printf secret > s.txt && zip -q -P pw enc.zip s.txt");
    let out = run(&["scan", "enc.zip"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Encrypted.Zip UNSCANNABLE"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    for bad in [["--direction", "sideways"], ["--action", "explode"]] {
        let out = run(&["log", "search", bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"), "{bad:?}");
    }
    let out = run(&["tls", "self-signed", "--cert", "c.pem", "--key", "k.pem", "--hostname", "mx.example.net"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = std::fs::metadata(dir.path().join("k.pem")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(dir.path().join("c.pem")).unwrap();
    let der = mime::decode::base64(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>().as_bytes());
    assert!(der.windows(14).any(|w| w == b"mx.example.net"));
    assert!(!der.windows(4).any(|w| w == b"rcge"), "rcgen's default CN");
}

/// `queue delete` records each pending recipient `deleted` in the message log and says so
/// (issue 8.24: the log said "deferred" for ever, and no event was logged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_is_recorded_in_the_message_log() {
    let (gw, _dir) = gateway("queue-delete", &quoted(down_addr()), down_addr(), |c| c);
    let body = testkit::client::message("to be deleted", "x");
    let r = testkit::client::send_one(gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
    let id = r.text.rsplit(' ').next().unwrap().to_string();
    gw.wait_log("event=\"deferred\"", WAIT).await;
    let out = gw.cli(&["queue", "delete", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("event=\"deleted\""));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let out = gw.cli(&["log", "search", "--json", "--queue-id", &id]);
        let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let state = found[0]["recipients"][0]["state"].as_str().unwrap_or("").to_string();
        if state == "deleted" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "state {state:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A client that goes away while its message is scanned takes the work with it: the scan stops
/// at its next check instead of running to the end for no one (issue 8.9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_stops_when_its_client_has_gone() {
    let w = world("client-gone").await;
    let payload: Vec<u8> = (0..24_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let body = testkit::mail::with_attachment("x@remote.test", "big", "see attached", "big.bin", &payload);
    // the whole scan, for reference
    let r = testkit::client::send_one(w.gw.addr, "x@remote.test", &["alice@acme.example"], &body).await.unwrap();
    assert_eq!(r.code, 250);
    let log = w.gw.wait_log("event=\"received\"", WAIT).await;
    let full: u64 = log
        .lines()
        .find(|l| l.contains("event=\"received\""))
        .and_then(|l| l.split(" scan_ms=").nth(1))
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    // the same message, and the client closes the connection right after the final dot
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    c.cmd("MAIL FROM:<x@remote.test>").await.unwrap();
    c.cmd("RCPT TO:<alice@acme.example>").await.unwrap();
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(&body).await.unwrap();
    c.send_raw(b".\r\n").await.unwrap();
    c.shutdown_write().await.unwrap();
    // the session notices at once; the scan, if it had started, stops at its next check
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !w.gw.log().contains("client gone before the reply") {
        assert!(std::time::Instant::now() < deadline, "{}", w.gw.log());
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // a scan that had started ends (and says so) well within the time of a whole one
    let until = std::time::Instant::now() + std::time::Duration::from_millis(2 * full + 500);
    while !w.gw.log().contains("event=\"scan_abandoned\"") && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    drop(c);
    let log = w.gw.log();
    if let Some(line) = log.lines().find(|l| l.contains("event=\"scan_abandoned\"")) {
        let cut: u64 =
            line.split(" scan_ms=").nth(1).and_then(|v| v.split(' ').next()).and_then(|v| v.parse().ok()).unwrap();
        println!("full scan {full} ms, abandoned after {cut} ms");
        assert!(cut < full, "{line}");
    } else {
        println!("full scan {full} ms, abandoned before it started");
    }
    assert_eq!(log.matches("event=\"received\"").count(), 1, "{log}");
}
