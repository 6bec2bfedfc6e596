//! Inputs the fuzzers found crashing, kept so they never crash again.

use mxshield_scan as scan;
use std::path::Path;
use std::sync::Arc;

use scan::limits::{Budget, Limits};
use scan::unpack::UNPACKABLE;
use scan::{Engine, Signatures};

#[test]
fn fuzz_crashes_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let engine = Engine::new(Arc::new(Signatures::builtin()), Limits::default());
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let Some((&selector, rest)) = data.split_first() else { continue };
        let mut budget = Budget::new(Limits::default());
        let _ = scan::unpack::unpack(UNPACKABLE[selector as usize % UNPACKABLE.len()], rest, &mut budget);
        let _ = engine.scan_bytes("fuzz", rest);
        let _ = engine.scan_bytes("whole", &data);
    }
}

/// The `unpack` fuzzer's corpus (`fuzz/corpus/unpack`), replayed: every input stays within the
/// limits and never panics (the fuzz target's own checks).
#[test]
fn the_unpack_fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/unpack");
    let limits = Limits { max_expanded: 8_000_000, ..Limits::default() };
    let engine = Engine::new(Arc::new(Signatures::builtin()), limits);
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let Some((&selector, rest)) = data.split_first() else { continue };
        let mut budget = Budget::new(limits);
        let _ = scan::unpack::unpack(UNPACKABLE[selector as usize % UNPACKABLE.len()], rest, &mut budget);
        assert!(budget.expanded <= 8_000_000 + 64 * 1024);
        let _ = engine.scan_bytes("fuzz", rest);
        n += 1;
    }
    assert!(n > 100, "only {n} inputs");
}

/// The `cvd_container` fuzzer's corpus: malformed containers are errors, never panics.
#[test]
fn the_cvd_fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/cvd_container");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let _ = scan::sigdb::cvd::open("f.cvd", &data);
        n += 1;
    }
    assert!(n > 10, "only {n} inputs");
}
