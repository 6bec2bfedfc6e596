//! Benchmark of the mail path: N messages of S bytes over P parallel SMTP sessions, sent
//! (a) straight to a sink and (b) through the real `mxshield` binary to the same sink, in the
//! same run. Prints messages/s for both. Usage:
//!
//! ```text
//! mxshield-bench [--messages 2000] [--size 10240] [--attachment BYTES] [--sessions 8] [--mxshield PATH]
//!                [--postgres URL]
//! ```
//!
//! With `--postgres URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`) the run through
//! mxshield is made twice, alternately, with everything on local SQLite and with `[store] url`
//! on that database (contracts, message log and node registry; a schema of its own, dropped
//! after), so the two figures come from the same run.
//!
//! With `--attachment BYTES` each message also carries a base64 attachment of that many
//! pseudo-random bytes (the issue 4 workload uses `--messages 200 --attachment 1048576`).

use mxshield_testkit as testkit;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtp::client::Client;
use testkit::gateway::Gateway;
use testkit::sink::{Behaviour, Sink};
use testkit::{TempDir, free_port};

struct Args {
    messages: usize,
    size: usize,
    attachment: usize,
    sessions: usize,
    bin: PathBuf,
    postgres: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        messages: 2000,
        size: 10 * 1024,
        attachment: 0,
        sessions: 8,
        bin: std::env::current_exe()?.with_file_name("mxshield"),
        postgres: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--messages" => a.messages = value.parse()?,
            "--size" => a.size = value.parse()?,
            "--attachment" => a.attachment = value.parse()?,
            "--sessions" => a.sessions = value.parse()?,
            "--mxshield" => a.bin = value.into(),
            "--postgres" => a.postgres = Some(value),
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

/// A deterministic message of about `size` bytes of text (headers + 76-column lines), with a
/// base64 attachment of `attachment` pseudo-random bytes when non-zero.
fn message(i: usize, size: usize, attachment: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bench <bench@remote.test>\r\nTo: alice@acme.example\r\nSubject: bench message {i}\r\nMessage-ID: <bench.{i}@remote.test>\r\nDate: Sat, 28 Nov 2026 07:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BENCH\"\r\n\r\n--BENCH\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    let mut n = i as u64;
    let mut next = || {
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (n >> 33) as u8
    };
    while m.len() + 78 <= size {
        for _ in 0..76 {
            m.push(b'a' + next() % 26);
        }
        m.extend_from_slice(b"\r\n");
    }
    if attachment > 0 {
        m.extend_from_slice(b"--BENCH\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        let data: Vec<u8> = (0..attachment).map(|_| next()).collect();
        m.extend_from_slice(mime::encode::base64_lines(&data).as_bytes());
    }
    m.extend_from_slice(b"--BENCH--\r\n");
    m
}

/// Sends `count` messages over `sessions` connections; returns when every reply is in.
/// The messages are built before the clock starts, so that the client's work of making them
/// does not take CPU from what is measured.
async fn push(addr: SocketAddr, messages: Arc<Vec<Vec<u8>>>, sessions: usize) -> anyhow::Result<Duration> {
    let count = messages.len();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let share = count / sessions + usize::from(s < count % sessions);
        let messages = messages.clone();
        tasks.push(tokio::spawn(async move {
            let mut c =
                Client::connect(addr, Default::default()).await?.map_err(|r| anyhow::anyhow!("greeting {r}"))?;
            c.ehlo("bench.test").await?;
            let rcpts = vec!["alice@acme.example".to_string()];
            for k in 0..share {
                let body = &messages[(k * sessions + s) % count];
                let tx = c.send("bench@remote.test", &rcpts, Some(body.len() as u64), &body[..]).await?;
                let code = tx.data.map(|r| r.code).unwrap_or(0);
                anyhow::ensure!(code == 250, "message refused: {code}");
            }
            c.quit().await;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    anyhow::ensure!(a.bin.exists(), "mxshield binary not found at {} (build with --release)", a.bin.display());
    println!(
        "workload: {} messages of {} bytes of text{} over {} sessions",
        a.messages,
        a.size,
        if a.attachment > 0 { format!(" + a {}-byte base64 attachment", a.attachment) } else { String::new() },
        a.sessions
    );

    let messages: Arc<Vec<Vec<u8>>> = Arc::new((0..a.messages).map(|i| message(i, a.size, a.attachment)).collect());

    // (a) straight to the sink
    let direct = Sink::start(Behaviour::Accept).await;
    let t_direct = push(direct.addr, messages.clone(), a.sessions).await?;
    anyhow::ensure!(direct.messages().len() == a.messages, "sink got {} messages", direct.messages().len());
    drop(direct);

    // (b) through mxshield (durable spool) to a sink acting as the customer server; with
    // --postgres, on SQLite and on PostgreSQL in turn (twice each, the better of each kept)
    let mut results = vec![("sqlite", through_mxshield(&a, &messages, None).await?)];
    if let Some(url) = &a.postgres {
        // SAFETY: set before any other thread reads the environment
        unsafe { std::env::set_var("MXSHIELD_TEST_PG", url) };
        for round in 0..2 {
            let schema = testkit::pg::Schema::new("bench");
            let pg = through_mxshield(&a, &messages, Some(&schema.url())).await?;
            results.push(("postgres", pg));
            if round == 0 {
                results.push(("sqlite", through_mxshield(&a, &messages, None).await?));
            }
        }
    }

    println!(
        "straight to sink:            {:>8.0} msg/s  ({:.2} s)",
        rate(a.messages, t_direct),
        t_direct.as_secs_f64()
    );
    for (store, (t_accept, t_end)) in &results {
        println!(
            "mxshield ({store:>8}), accepted (250): {:>8.0} msg/s  ({:.2} s)",
            rate(a.messages, *t_accept),
            t_accept.as_secs_f64()
        );
        println!(
            "mxshield ({store:>8}), end-to-end:     {:>8.0} msg/s  ({:.2} s)",
            rate(a.messages, *t_end),
            t_end.as_secs_f64()
        );
    }
    if a.postgres.is_some() {
        let best =
            |name: &str| results.iter().filter(|r| r.0 == name).map(|r| rate(a.messages, r.1.0)).fold(0.0f64, f64::max);
        let (sqlite, pg) = (best("sqlite"), best("postgres"));
        println!(
            "accepted, best of each: sqlite {sqlite:.0} msg/s, postgres {pg:.0} msg/s ({:+.1} %)",
            (pg / sqlite - 1.0) * 100.0
        );
    }
    Ok(())
}

/// Sends the messages through a fresh mxshield (its contracts, message log and registry on
/// local SQLite, or on the database at `store`); returns the time to the last `250` and to the
/// last delivery.
async fn through_mxshield(
    a: &Args,
    messages: &Arc<Vec<Vec<u8>>>,
    store: Option<&str>,
) -> anyhow::Result<(Duration, Duration)> {
    let sink = Sink::start(Behaviour::Accept).await;
    let dir = TempDir::new("bench");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut config = format!(
        "data_dir = \"data\"\n[smtp]\nlisten = [\"{addr}\"]\nhostname = \"mx.bench\"\n[log]\nlevel = \"warn\"\n[contracts]\nreload_interval = \"1s\"\n"
    );
    if let Some(url) = store {
        config.push_str(&format!("[store]\nurl = \"{url}\"\n"));
    }
    let mut gw = Gateway::new(&a.bin, dir.path(), addr, &config);
    let contracts = format!(
        "[[contract]]\nid = \"bench\"\ncustomer = \"Bench\"\naccounts_limit = 1\nstarts = \"2026-01-01\"\n[[contract.domain]]\nname = \"acme.example\"\nreceiving_servers = [\"{}\"]\naccounts = [\"alice\"]\n",
        sink.addr
    );
    std::fs::write(dir.path().join("contracts.toml"), contracts)?;
    let out = gw.cli(&["contracts", "apply", "contracts.toml"]);
    anyhow::ensure!(out.status.success(), "contracts apply: {}", String::from_utf8_lossy(&out.stderr));
    gw.spawn();
    let start = Instant::now();
    let t_accept = push(addr, messages.clone(), a.sessions).await?;
    let got = sink.wait_for(a.messages, Duration::from_secs(600)).await;
    let t_end = start.elapsed();
    anyhow::ensure!(got.len() == a.messages, "customer sink got {} of {} messages", got.len(), a.messages);
    gw.terminate();
    if store.is_some() {
        // every record of the run reached the shared log
        let log = gw.cli(&["log", "search", "--limit", "1000000", "--json"]);
        let found: serde_json::Value = serde_json::from_slice(&log.stdout)?;
        let n = found.as_array().map_or(0, |v| v.len());
        anyhow::ensure!(n == a.messages, "the shared message log holds {n} of {} messages", a.messages);
    }
    Ok((t_accept, t_end))
}
