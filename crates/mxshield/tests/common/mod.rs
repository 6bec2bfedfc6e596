//! The world of the black-box tests: the real binary, a customer server sink, a remote MX
//! sink, one contract, all on loopback.
#![allow(dead_code)]

pub mod releases;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use testkit::gateway::Gateway;
use testkit::sink::{Behaviour, Sink};
use testkit::{TempDir, free_port};

pub const BIN: &str = env!("CARGO_BIN_EXE_mxshield");

/// IP of the registered sending server (outbound relay) in the standard contract.
pub const SENDING_SERVER: &str = "127.0.0.5";

pub struct World {
    pub gw: Gateway,
    pub customer: Sink,
    pub remote: Sink,
    pub dir: TempDir,
}

/// Standard configuration; `extra` is appended inside `[delivery]` (keys) before the routes.
pub fn config(port: u16, remote: SocketAddr, delivery_extra: &str, top_extra: &str) -> String {
    format!(
        r#"data_dir = "data"
postmaster = "postmaster@mx.test"
{top_extra}
[smtp]
listen = ["127.0.0.1:{port}"]
hostname = "mx.test"
command_timeout = "20s"

[delivery]
retry_min = "1s"
retry_max = "2s"
dead_host_ttl = "1s"
connect_timeout = "2s"
{delivery_extra}

[delivery.routes]
"remote.test" = "{remote}"

[conditions]
# the open-relay probe on demand only: the test sinks take any message offered
relay_test_every = "0s"

[contracts]
reload_interval = "100ms"
"#
    ) + if top_extra.contains("[admin]") { "" } else { "\n[admin]\nlisten = \"127.0.0.1:0\"\n" }
}

/// The standard contract: acme.example (alice, bob) received by `customer`, sending server
/// 127.0.0.5.
pub fn contracts(customer: &str) -> String {
    format!(
        r#"[[contract]]
id = "acme"
customer = "ACME Corp."
accounts_limit = 5
starts = "2026-01-01"
sending_servers = ["{SENDING_SERVER}"]
[[contract.domain]]
name = "acme.example"
receiving_servers = [{customer}]
accounts = ["alice", "bob"]
"#
    )
}

pub fn apply(gw: &Gateway, contracts_toml: &str) {
    let file = gw.dir.join("contracts.toml");
    std::fs::write(&file, contracts_toml).unwrap();
    let out = gw.cli(&["contracts", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Applies `contracts_toml` as the whole set: stored contracts it does not list are removed.
#[allow(dead_code)]
pub fn apply_pruning(gw: &Gateway, contracts_toml: &str) {
    let file = gw.dir.join("contracts.toml");
    std::fs::write(&file, contracts_toml).unwrap();
    let out = gw.cli(&["contracts", "apply", "--prune", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts a gateway whose acme.example lists `receiving` (TOML array items) as its servers,
/// with the standard configuration passed through `edit` first.
pub fn gateway(name: &str, receiving: &str, remote: SocketAddr, edit: impl Fn(String) -> String) -> (Gateway, TempDir) {
    let dir = TempDir::new(name);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut gw = Gateway::new(Path::new(BIN), dir.path(), addr, &edit(config(port, remote, "", "")));
    apply(&gw, &contracts(receiving));
    gw.spawn();
    (gw, dir)
}

/// A customer server address where nothing listens (yet).
pub fn down_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// `config` with `keys` added to its `[conditions]` section.
pub fn with_conditions(config: &str, keys: &str) -> String {
    assert!(config.contains("\n[conditions]\n"), "the standard configuration has a [conditions] section");
    config.replacen("\n[conditions]\n", &format!("\n[conditions]\n{keys}"), 1)
}

/// `"addr"` as a TOML array item.
pub fn quoted(addr: SocketAddr) -> String {
    format!("\"{addr}\"")
}

/// Starts sinks and the gateway with the standard contract.
pub async fn world(name: &str) -> World {
    world_with(name, "", "", Behaviour::Accept).await
}

pub async fn world_with(name: &str, delivery_extra: &str, top_extra: &str, customer_behaviour: Behaviour) -> World {
    let dir = TempDir::new(name);
    let customer = Sink::start(customer_behaviour).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut gw = Gateway::new(Path::new(BIN), dir.path(), addr, &config(port, remote.addr, delivery_extra, top_extra));
    apply(&gw, &contracts(&format!("\"{}\"", customer.addr)));
    gw.spawn();
    World { gw, customer, remote, dir }
}

pub const WAIT: Duration = Duration::from_secs(15);

/// A Japanese newsletter (bulk tests, issue 16) personalised for recipient `r` (name, member number, coupon, tracking
/// link), as the contract's sending server sends it.
pub fn newsletter_ja(r: usize) -> Vec<u8> {
    let names = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"];
    let name = names[r % names.len()];
    let member = 100_000 + r * 7919 % 900_000;
    let token: String = (0..24).map(|i| char::from(b'a' + ((r * 31 + i * 7) % 26) as u8)).collect();
    let body = format!(
        "{name}様（会員番号 {member}）\r\n\r\nいつも当店をご利用いただき誠にありがとうございます。\
         冬のセールのお知らせをお届けします。全商品が大幅に値下がりしております。\
         送料は期間中すべて無料となりますので、この機会をお見逃しなく。\
         人気の商品は早めに売り切れることがございますので、お早めにご覧ください。\r\n\
         今回ご利用いただけるクーポンは {} 円分です。\r\n\
         詳しくは https://shop.example.jp/news/1?uid={member}&tk={token} をご覧ください。\r\n",
        500 + r * 10
    );
    format!(
        "From: news@acme.example\r\nTo: customer{r}@remote.test\r\nSubject: =?UTF-8?B?5Yas44Gu44K744O844Or?=\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}"
    )
    .into_bytes()
}

/// The reply (code and text) to `RCPT` of one more outbound message of the standard contract,
/// from its sending server.
pub async fn outbound_rcpt(gw: SocketAddr) -> (u16, String) {
    let (mut c, _) = testkit::client::RawClient::connect_from(SENDING_SERVER.parse().unwrap(), gw).await.unwrap();
    c.cmd("EHLO mail.acme.example").await.unwrap();
    c.cmd("MAIL FROM:<alice@acme.example>").await.unwrap();
    let r = c.cmd("RCPT TO:<someone@remote.test>").await.unwrap();
    let _ = c.cmd("QUIT").await;
    (r.code, r.text)
}
