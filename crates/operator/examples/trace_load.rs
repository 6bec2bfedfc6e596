//! The message-trace API under load (issue 15): a message log of N generated records (default
//! 1,000,000 over 30 days, each with one to three recipients, about 1 % infected), then
//! filtered searches through `GET /api/v1/log` over HTTP on loopback — the admin listener as
//! `serve` runs it — each over a one-day window, with p50/p99 latency per kind of filter.
//!
//! ```sh
//! cargo run --release -p mxshield-operator --example trace_load -- sqlite:///tmp/trace/log.db
//! cargo run --release -p mxshield-operator --example trace_load -- postgres://postgres@127.0.0.1/test
//! ```
//! (`scripts/bench-trace.sh` runs both.) The log is generated once and reused while it holds
//! at least N records.

use std::sync::Arc;
use std::time::Instant;

use msglog::{LogLocation, LogStore, MessageRecord, MessageSummary, RcptState};
use mxshield_operator::admin::{AdminState, ServeOptions, router, serve};
use mxshield_operator::store::{AdminStore, Scope};
use mxshield_operator::{Operator, Paths};

/// Deterministic pseudo-random numbers (xorshift), so every run has the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A kind of search: the query parameters of one search.
type Filter = fn(&mut Rng) -> String;

const DAYS: i64 = 30;
const CONTRACTS: u64 = 500;
const USERS: u64 = 20;
const VIRUSES: [&str; 5] =
    ["Win.Trojan.Emotet-1", "Doc.Dropper.Agent-2", "Html.Phishing.Bank-3", "Eicar-Test-Signature", "Js.Downloader-4"];

fn record(i: u64, n: u64, end: i64, rng: &mut Rng) -> MessageRecord {
    let span = DAYS * 86_400;
    let at = end - span + (i as i64 * span) / n.max(1) as i64;
    let contract = rng.below(CONTRACTS);
    let inbound = rng.below(3) > 0;
    let infected = rng.below(100) == 0;
    let local = |rng: &mut Rng| format!("user{}@c{contract}.example", rng.below(USERS));
    let remote = |rng: &mut Rng| format!("sender{}@remote{}.test", rng.below(5000), rng.below(2000));
    let sender = if inbound { remote(rng) } else { local(rng) };
    let recipients: Vec<String> =
        (0..1 + rng.below(3)).map(|_| if inbound { local(rng) } else { remote(rng) }).collect();
    let viruses = if infected { vec![VIRUSES[rng.below(5) as usize].to_string()] } else { Vec::new() };
    MessageRecord {
        summary: MessageSummary {
            at,
            queue_id: format!("{:013X}0001{:03X}", at as u64 * 1_000_000 + i % 1_000_000, i % 4096),
            node: "mx1".into(),
            contract: format!("c{contract}"),
            direction: if inbound { "inbound" } else { "outbound" }.into(),
            client_ip: format!("192.0.2.{}", rng.below(250)),
            sender,
            size: 2_000 + rng.below(200_000),
            message_id: format!("<{i}.{}@mail.test>", rng.next()),
            subject: format!("Message {i}"),
            verdict: if infected { "infected" } else { "clean" }.into(),
            viruses,
            action: if infected { "drop" } else { "deliver" }.into(),
            reply: "250 2.0.0 queued".into(),
            ..Default::default()
        },
        recipients,
        initial_state: RcptState::Queued,
    }
}

async fn count(url: &str) -> i64 {
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM messages").fetch_one(&pool).await.unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    sqlx::any::install_default_drivers();
    let url = std::env::args().nth(1).expect("usage: trace_load DATABASE_URL [RECORDS]");
    let n: u64 = std::env::args().nth(2).map(|s| s.parse().expect("records")).unwrap_or(1_000_000);
    let backend = if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
    let (log, location) = if let Some(path) = url.strip_prefix("sqlite://") {
        let path = std::path::PathBuf::from(path.split('?').next().unwrap());
        (LogStore::open(&path).await.expect("open"), LogLocation::File(path))
    } else {
        let journal = std::env::temp_dir().join("mxshield-trace-load-journal.db");
        (
            LogStore::connect(&url).await.expect("connect"),
            LogLocation::Shared { url: url.clone(), journal, journal_max: 1 << 20 },
        )
    };
    let count_url = match &location {
        LogLocation::File(p) => format!("sqlite://{}", p.display()),
        LogLocation::Shared { url, .. } => url.clone(),
    };
    // the log: generated once (the newest record an hour ago)
    let end = chrono::Utc::now().timestamp() - 3600;
    let have = count(&count_url).await;
    if have < n as i64 {
        eprintln!("{backend}: generating {n} records ({have} there)…");
        let started = Instant::now();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut batch = Vec::with_capacity(5000);
        for i in 0..n {
            batch.push(record(i, n, end, &mut rng));
            if batch.len() == 5000 || i + 1 == n {
                log.write(&batch, &[]).await.expect("write");
                batch.clear();
            }
        }
        eprintln!("{backend}: {n} records written in {:.0} s", started.elapsed().as_secs_f64());
        // what autovacuum does after a bulk load, at once (the planner needs the statistics)
        if backend == "PostgreSQL" {
            let pool = sqlx::AnyPool::connect(&count_url).await.expect("connect");
            sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
        }
    }
    let total = count(&count_url).await;
    // the admin listener over that log, as serve runs it
    let dir = std::env::temp_dir().join(format!("mxshield-trace-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let contracts = if backend == "SQLite" {
        format!("sqlite://{}?mode=rwc", dir.join("contracts.db").display())
    } else {
        url.clone()
    };
    let store = AdminStore::connect(&contracts).await.expect("admin store");
    let scopes = ["log:read".parse::<Scope>().unwrap()].into_iter().collect();
    let (_, secret) = store.create_token("trace-load", &scopes, &[], None, "bench").await.expect("token");
    let operator =
        Operator::new(Paths { spool: dir.join("spool"), contracts: contracts.clone(), message_log: location });
    let app = router(AdminState {
        operator: Arc::new(operator),
        store,
        today: Arc::new(|| chrono::Utc::now().date_naive()),
        tables: Arc::new(rating::PriceBook::default()),
        rounding: rating::Rounding::Floor,
        issuer: mxshield_operator::Issuer::default(),
        node: "mx1".into(),
        down_after: std::time::Duration::from_secs(30),
        signatures: None,
        bound_tokens_read_log: false,
        conditions: Default::default(),
        metrics: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, ServeOptions::default(), std::future::pending()));
    let auth = format!("Bearer {secret}");
    // one-day windows ending at random points of the 30 days, with each kind of filter
    let mut rng = Rng(7);
    let kinds: [(&str, Filter); 6] = [
        ("recipient", |r| format!("recipient=user{}%40c{}.example", r.below(USERS), r.below(CONTRACTS))),
        ("sender", |r| format!("sender=user{}%40c{}.example", r.below(USERS), r.below(CONTRACTS))),
        ("contract", |r| format!("contract=c{}", r.below(CONTRACTS))),
        ("virus", |r| format!("virus={}", VIRUSES[r.below(5) as usize].split('-').next().unwrap())),
        ("action=drop", |_| "action=drop".to_string()),
        ("none (first page)", |_| String::new()),
    ];
    println!("message-trace API, {backend}, {total} records over {DAYS} days, one-day windows, limit 50");
    println!("{:<20} {:>8} {:>10} {:>10} {:>10}", "filter", "queries", "p50 ms", "p99 ms", "found avg");
    let mut all = Vec::new();
    for (name, make) in kinds {
        let mut times = Vec::new();
        let mut found = 0usize;
        for _ in 0..100 {
            let until = end - rng.below(DAYS as u64 - 1) as i64 * 86_400;
            let time =
                |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            let path = format!("/api/v1/log?since={}&until={}&{}", time(until - 86_400), time(until), make(&mut rng));
            let started = Instant::now();
            let r = testkit::http::request(addr, "GET", &path, &[("Authorization", &auth)], b"").await;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
            found += r.json()["messages"].as_array().map_or(0, Vec::len);
        }
        times.sort_by(f64::total_cmp);
        let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!("{name:<20} {:>8} {:>10.1} {:>10.1} {:>10.1}", times.len(), p(0.5), p(0.99), found as f64 / 100.0);
        all.extend(times);
    }
    all.sort_by(f64::total_cmp);
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    println!("{:<20} {:>8} {:>10.1} {:>10.1}   (target p99 <= 200 ms)", "all", all.len(), p(0.5), p(0.99));
    let _ = std::fs::remove_dir_all(&dir);
}
