//! SMTP dialogues with a server `Session` over in-memory I/O, written as scripts:
//! `C:` lines are sent as they are (CRLF added; `\r` and `\n` inside a line stand for bare CR
//! and LF), `S:` lines are the expected reply lines (a trailing `*` matches the rest of the
//! line). The protocol alone is tested here; the gateway's policy is tested against the binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mxshield_smtp as smtp;
use smtp::server::{DataAbort, MailParams, Policy, Session, SessionConfig};
use smtp::{Path, Reply};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Accepts everything except recipients whose local part is `nobody`; keeps each message.
#[derive(Clone, Default)]
struct Recorder {
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
    current: Vec<u8>,
}

impl Policy for Recorder {
    async fn helo(&mut self, _name: &str, _esmtp: bool) -> Result<(), Reply> {
        Ok(())
    }
    async fn mail_from(&mut self, _from: &Path, _params: &MailParams) -> Result<(), Reply> {
        Ok(())
    }
    async fn rcpt_to(&mut self, to: &Path) -> Result<(), Reply> {
        match &to.mailbox {
            Some(m) if m.local == "nobody" => Err(Reply::new(550, (5, 1, 1), "no such user")),
            _ => Ok(()),
        }
    }
    async fn data_start(&mut self) -> Result<(), Reply> {
        self.current.clear();
        Ok(())
    }
    async fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        self.current.extend_from_slice(chunk);
        Ok(())
    }
    async fn data_end(&mut self) -> Reply {
        self.messages.lock().unwrap().push(std::mem::take(&mut self.current));
        Reply::new(250, (2, 0, 0), "queued")
    }
    async fn data_abort(&mut self, _why: DataAbort) {
        self.current.clear();
    }
    fn reset(&mut self) {}
}

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        max_message_size: 1000,
        max_recipients: 3,
        max_line_length: 512,
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
        data_total_timeout: Duration::from_secs(10),
        max_errors: 3,
        tls: None,
    }
}

/// Plays `script` against a fresh session; returns the messages the policy received.
async fn play(script: &str) -> Vec<Vec<u8>> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let policy = Recorder::default();
    let messages = policy.messages.clone();
    let session = tokio::spawn(Session::new(Box::new(server), policy, config(), None).run());
    let mut client = BufReader::new(client);
    for (n, line) in script.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        if let Some(sent) = line.strip_prefix("C: ").or((line == "C:").then_some("")) {
            let bytes = sent.replace("\\r", "\r").replace("\\n", "\n") + "\r\n";
            client.get_mut().write_all(bytes.as_bytes()).await.unwrap();
        } else if let Some(expected) = line.strip_prefix("S: ") {
            let mut got = String::new();
            let read = tokio::time::timeout(Duration::from_secs(5), client.read_line(&mut got)).await;
            let got = got.trim_end_matches(['\r', '\n']);
            assert!(read.is_ok(), "script line {}: no reply, expected {expected:?}", n + 1);
            let matches = match expected.strip_suffix('*') {
                Some(prefix) => got.starts_with(prefix),
                None => got == expected,
            };
            assert!(matches, "script line {}: expected {expected:?}, got {got:?}", n + 1);
        } else {
            panic!("script line {}: {line:?} is neither C: nor S:", n + 1);
        }
    }
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
    messages.lock().unwrap().clone()
}

#[tokio::test]
async fn a_plain_transaction() {
    let got = play(
        r"
        S: 220 mx.test ESMTP mxshield
        C: EHLO client.example
        S: 250-mx.test*
        S: 250-PIPELINING
        S: 250-SIZE 1000
        S: 250-8BITMIME
        S: 250-ENHANCEDSTATUSCODES
        S: 250 SMTPUTF8
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 *
        C: RCPT TO:<c@d.example>
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: Subject: hi
        C:
        C: ..leading dot
        C: .
        S: 250 2.0.0 queued
        C: QUIT
        S: 221 2.0.0 *
        ",
    )
    .await;
    assert_eq!(got, vec![b"Subject: hi\r\n\r\n.leading dot\r\n".to_vec()]);
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    play(
        r"
        S: 220 *
        C: EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<nobody@d.example>\r\nRCPT TO:<c@d.example>
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250 SMTPUTF8
        S: 250 2.1.0 *
        S: 550 5.1.1 no such user
        S: 250 2.1.5 *
        C: QUIT
        S: 221 *
        ",
    )
    .await;
}

#[tokio::test]
async fn bare_cr_ends_a_line_but_never_the_data() {
    let got = play(
        r"
        S: 220 *
        C: HELO client.example
        S: 250 *
        C: MAIL FROM:<a@b.example>
        S: 250 *
        C: RCPT TO:<c@d.example>
        S: 250 *
        C: DATA
        S: 354 *
        C: one\r.\rMAIL FROM:<evil@b.example>\rtwo\n.\nthree
        C: .
        S: 250 2.0.0 queued
        ",
    )
    .await;
    assert_eq!(got, vec![b"one\r\n\r\nMAIL FROM:<evil@b.example>\r\ntwo\r\n\r\nthree\r\n".to_vec()]);
}

#[tokio::test]
async fn postmaster_without_a_domain_is_a_recipient() {
    play(
        r"
        S: 220 *
        C: HELO client.example
        S: 250 *
        C: MAIL FROM:<a@b.example>
        S: 250 *
        C: RCPT TO:<Postmaster>
        S: 250 2.1.5 *
        C: RCPT TO:<someone>
        S: 501 *
        ",
    )
    .await;
}

#[tokio::test]
async fn limits_and_sequence_errors() {
    play(
        r"
        S: 220 *
        C: RCPT TO:<c@d.example>
        S: 503 5.5.1 *
        C: HELO client.example
        S: 250 *
        C: MAIL FROM:<a@b.example> SIZE=5000
        S: 552 5.3.4 *
        C: MAIL FROM:<a@b.example>
        S: 250 *
        C: RCPT TO:<c1@d.example>
        S: 250 *
        C: RCPT TO:<c2@d.example>
        S: 250 *
        C: RCPT TO:<c3@d.example>
        S: 250 *
        C: RCPT TO:<c4@d.example>
        S: 452 4.5.3 *
        C: STARTTLS
        S: 502 5.5.1 *
        C: NOOP
        S: 250 *
        ",
    )
    .await;
}
