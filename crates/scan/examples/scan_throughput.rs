//! Scan throughput of the engine alone, without file reading: loads a database directory,
//! reads every file under a corpus directory into memory, then scans them all `RUNS` times
//! (default 5) and prints MiB/s per run and the median. For A/B comparisons of the matcher,
//! where `mxshield scan`'s figures also hold file reading and start-up.
//!
//! `cargo run --release -p mxshield-scan --example scan_throughput -- DB_DIR CORPUS_DIR`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mxshield_scan::{Engine, Limits, Signatures};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("corpus directory") {
        let p = e.expect("directory entry").path();
        if p.is_dir() { files(&p, out) } else { out.push(p) }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (db, corpus) = match &args[1..] {
        [db, corpus] => (PathBuf::from(db), PathBuf::from(corpus)),
        _ => {
            eprintln!("usage: scan_throughput DB_DIR CORPUS_DIR");
            std::process::exit(2);
        }
    };
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let sigs = Arc::new(Signatures::load_dir(&db).expect("database"));
    let engine = Engine::new(sigs, Limits::default());
    let mut paths = Vec::new();
    files(&corpus, &mut paths);
    paths.sort();
    let data: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).expect("corpus file")).collect();
    let mib = data.iter().map(Vec::len).sum::<usize>() as f64 / (1 << 20) as f64;
    let mut rates = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut infected = 0;
        for d in &data {
            infected += usize::from(engine.scan_bytes("f", d).verdict().is_infected());
        }
        let rate = mib / t.elapsed().as_secs_f64();
        println!("{mib:.0} MiB in {} files, {infected} infected: {rate:.0} MiB/s", data.len());
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median {:.0} MiB/s", rates[rates.len() / 2]);
}
