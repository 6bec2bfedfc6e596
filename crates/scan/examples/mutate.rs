//! A mutation campaign over the `unpack` fuzz corpus, for machines without libFuzzer's
//! nightly toolchain: each seed is mutated (bytes flipped, set to boundary values, cut,
//! repeated) and run through its unpacker and the whole scan, with the fuzz target's checks.
//! A panic prints the input's file. `cargo run --release -p mxshield-scan --example mutate --
//! [SECONDS] [PATTERN]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mxshield_scan as scan;
use scan::limits::{Budget, Limits};
use scan::unpack::UNPACKABLE;
use scan::{Engine, Signatures};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let pattern = args.get(2).cloned().unwrap_or_default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/unpack");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(&pattern))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    seeds.sort();
    let limits = Limits { max_expanded: 8_000_000, max_time: Duration::from_secs(5), ..Limits::default() };
    let engine = Engine::new(Arc::new(Signatures::builtin()), limits);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut runs, mut slowest) = (0u64, (Duration::ZERO, String::new()));
    let out = std::env::temp_dir().join("mxshield-mutate-input");
    while Instant::now() < deadline {
        for (name, seed) in &seeds {
            let mut d = seed.clone();
            for _ in 0..=(rand() % 8) {
                if d.len() < 2 {
                    break;
                }
                let at = 1 + (rand() as usize) % (d.len() - 1);
                match rand() % 6 {
                    0 => d[at] ^= 1 << (rand() % 8),
                    1 => d[at] = [0, 0xff, 0x7f, 0x80, 1][(rand() % 5) as usize],
                    2 => d.truncate(at),
                    3 => {
                        let n = (rand() as usize % 16).min(d.len() - at);
                        let chunk = d[at..at + n].to_vec();
                        d.splice(at..at, chunk);
                    }
                    4 => {
                        let v = (rand() as u32).to_le_bytes();
                        for (i, b) in v.iter().enumerate() {
                            if at + i < d.len() {
                                d[at + i] = *b;
                            }
                        }
                    }
                    _ => d[at] = d[at].wrapping_add(1),
                }
            }
            std::fs::write(&out, &d).unwrap();
            let t = Instant::now();
            let (&selector, rest) = d.split_first().unwrap();
            let mut budget = Budget::new(limits);
            let _ = scan::unpack::unpack(UNPACKABLE[selector as usize % UNPACKABLE.len()], rest, &mut budget);
            assert!(budget.expanded <= 8_000_000 + 64 * 1024, "{name}: over the budget");
            let _ = engine.scan_bytes("fuzz", rest);
            let took = t.elapsed();
            if took > slowest.0 {
                slowest = (took, name.clone());
            }
            runs += 1;
        }
    }
    println!("{runs} runs over {} seeds; slowest {:?} from {}", seeds.len(), slowest.0, slowest.1);
}
