//! The sink and our SMTP client against each other.

use mxshield_testkit as testkit;
use std::time::Duration;

use smtp::client::Client;
use testkit::sink::{Behaviour, Sink};

async fn send(sink: &Sink, from: &str, rcpts: &[&str]) -> smtp::client::Transaction {
    let mut c = Client::connect(sink.addr, Default::default()).await.unwrap().unwrap();
    c.ehlo("client.test").await.unwrap();
    let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
    let body = b"Subject: t\r\n\r\nbody\r\n";
    tokio::time::timeout(Duration::from_secs(5), c.send(from, &rcpts, None, &body[..])).await.expect("no hang").unwrap()
}

#[tokio::test]
async fn data_refusal_is_reported() {
    let sink = Sink::start(Behaviour::DataReply(451, (4, 3, 0))).await;
    let tx = send(&sink, "a@x.test", &["b@y.test"]).await;
    assert_eq!(tx.data.unwrap().code, 451);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn all_recipients_refused() {
    let sink = Sink::start(Behaviour::UnknownUsers(vec!["bob".into()])).await;
    let tx = send(&sink, "", &["bob@y.test"]).await;
    assert_eq!(tx.rcpts[0].code, 550);
    assert!(tx.data.is_none());
}

#[tokio::test]
async fn accepted_and_recorded() {
    let sink = Sink::start(Behaviour::Accept).await;
    let tx = send(&sink, "a@x.test", &["b@y.test", "c@y.test"]).await;
    assert_eq!(tx.data.unwrap().code, 250);
    let m = sink.messages();
    assert_eq!(m[0].rcpts, vec!["b@y.test", "c@y.test"]);
    assert_eq!(m[0].data, b"Subject: t\r\n\r\nbody\r\n");
}
