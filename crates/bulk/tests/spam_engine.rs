//! The spam engine backend against a real spamd (Debian's, with its shipped rules, network
//! tests off) on loopback: GTUBE is spam, a plain note is not, an engine that is down is an
//! error (counted unmeasured by the meter), never a score.

use std::time::Duration;

use mxshield_bulk::spam::{Engine, EngineKind};

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@acme.example>\r\nTo: bob@remote.test\r\nSubject: {subject}\r\n\
         Date: Thu, 03 Dec 2026 09:00:00 +0000\r\nMessage-ID: <{}@acme.example>\r\n\r\n{body}\r\n",
        subject.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn spamd_scores_gtube_as_spam_and_a_plain_note_as_not() {
    let spamd = tokio::task::spawn_blocking(testkit::spamd::SpamdProcess::start).await.unwrap();
    let engine =
        Engine { kind: EngineKind::Spamd, addr: spamd.addr(), timeout: Duration::from_secs(30), max_size: 512 * 1024 };
    let spam = engine.check(&message("offer", &format!("Buy now!\r\n{GTUBE}"))).await.unwrap();
    assert!(spam.spam && spam.score >= 1000.0, "{spam:?}");
    assert!(spam.threshold > 0.0);
    let ham = engine.check(&message("lunch", "Shall we have lunch on Friday? Bob")).await.unwrap();
    assert!(!ham.spam && ham.score < ham.threshold, "{ham:?}");
    println!(
        "spamd: GTUBE {:.1}/{:.1}, a plain note {:.1}/{:.1}",
        spam.score, spam.threshold, ham.score, ham.threshold
    );
    let port = spamd.port;
    drop(spamd);
    let down = Engine { addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)), ..engine.clone() };
    assert!(down.check(&message("x", "y")).await.is_err(), "an engine that is down gives no score");
    let small = Engine { max_size: 10, ..engine };
    assert!(matches!(small.check(&message("x", "y")).await, Err(mxshield_bulk::spam::SpamError::TooLarge(_))));
}

#[tokio::test]
async fn rspamd_scores_gtube_as_spam_and_a_plain_note_as_not() {
    let rspamd = tokio::task::spawn_blocking(testkit::rspamd::RspamdProcess::start).await.unwrap();
    let engine = Engine {
        kind: EngineKind::Rspamd,
        addr: rspamd.addr(),
        timeout: Duration::from_secs(30),
        max_size: 512 * 1024,
    };
    let spam = engine.check(&message("offer", &format!("Buy now!\r\n{GTUBE}"))).await.unwrap();
    assert!(spam.spam, "{spam:?}");
    let ham = engine.check(&message("lunch", "Shall we have lunch on Friday? Bob")).await.unwrap();
    assert!(!ham.spam, "{ham:?}");
    println!(
        "rspamd: GTUBE {:.1}/{:.1}, a plain note {:.1}/{:.1}",
        spam.score, spam.threshold, ham.score, ham.threshold
    );
}
