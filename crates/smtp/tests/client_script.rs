//! The SMTP client against a scripted server on loopback: `S:` lines are what the server sends,
//! `C:` lines what the client must send (a trailing `*` matches the rest of the line).

use std::time::Duration;

use mxshield_smtp as smtp;
use smtp::client::{Client, ClientTimeouts, MailOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Starts a server playing `script` once; returns its address and a handle that fails if the
/// client did not follow the script.
async fn server(script: &'static str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut s = BufReader::new(stream);
        for (n, line) in script.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
            if let Some(sent) = line.strip_prefix("S: ") {
                s.get_mut().write_all(format!("{sent}\r\n").as_bytes()).await.unwrap();
            } else if let Some(expected) = line.strip_prefix("C: ").or((line == "C:").then_some("")) {
                let mut got = String::new();
                tokio::time::timeout(Duration::from_secs(5), s.read_line(&mut got))
                    .await
                    .expect("client silent")
                    .unwrap();
                let got = got.trim_end_matches(['\r', '\n']);
                let ok = match expected.strip_suffix('*') {
                    Some(prefix) => got.starts_with(prefix),
                    None => got == expected,
                };
                assert!(ok, "script line {}: expected {expected:?}, got {got:?}", n + 1);
            }
        }
    });
    (addr, task)
}

fn timeouts() -> ClientTimeouts {
    ClientTimeouts {
        connect: Duration::from_secs(5),
        command: Duration::from_secs(5),
        data_end: Duration::from_secs(5),
    }
}

async fn connect(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr, timeouts()).await.unwrap().unwrap();
    c.ehlo("client.test").await.unwrap();
    c
}

/// A refused DATA leaves the transaction open on a server like Postfix: the client resets it
/// before anything else, so the connection can carry the next message.
#[tokio::test]
async fn a_refused_data_is_followed_by_rset() {
    let (addr, script) = server(
        r"
        S: 220 peer.test
        C: EHLO client.test
        S: 250-peer.test
        S: 250 PIPELINING
        C: MAIL FROM:<a@b.test>
        C: RCPT TO:<c@d.test>
        C: DATA
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 451 4.3.2 not now
        C: RSET
        S: 250 2.0.0 reset
        ",
    )
    .await;
    let mut c = connect(addr).await;
    let tx = c.send("a@b.test", &["c@d.test".into()], None, &b"Subject: x\r\n\r\nhi\r\n"[..]).await.unwrap();
    assert_eq!(tx.data.map(|d| d.code), Some(451));
    script.await.unwrap();
}

/// Without PIPELINING the client waits for each reply, and says `BODY=8BITMIME` only where the
/// server has 8BITMIME.
#[tokio::test]
async fn lockstep_without_pipelining() {
    let (addr, script) = server(
        r"
        S: 220 peer.test
        C: EHLO client.test
        S: 250 peer.test
        C: MAIL FROM:<a@b.test>
        S: 250 ok
        C: RCPT TO:<c@d.test>
        S: 250 ok
        C: DATA
        S: 354 go
        C: Subject: x
        C:
        C: ..dot
        C: .
        S: 250 queued
        ",
    )
    .await;
    let mut c = connect(addr).await;
    let tx = c.send("a@b.test", &["c@d.test".into()], None, &b"Subject: x\r\n\r\n.dot\r\n"[..]).await.unwrap();
    assert_eq!(tx.data.map(|d| d.code), Some(250));
    script.await.unwrap();
}

/// A message that needs SMTPUTF8 is not sent to a server without it: nothing crosses the wire
/// after EHLO, and the made-up reply is `553 5.6.7`.
#[tokio::test]
async fn no_smtputf8_no_utf8_message() {
    let (addr, script) = server(
        r"
        S: 220 peer.test
        C: EHLO client.test
        S: 250-peer.test
        S: 250 8BITMIME
        C: QUIT
        S: 221 bye
        ",
    )
    .await;
    let mut c = connect(addr).await;
    let opts = MailOptions { size: None, smtputf8: true };
    let tx = c.send_with("a@b.test", &["c@d.test".into()], &opts, &b"Subject: x\r\n\r\n"[..]).await.unwrap();
    assert_eq!((tx.mail.code, tx.mail.enhanced), (553, Some(smtp::Status::new(5, 6, 7))));
    c.quit().await;
    script.await.unwrap();
}
