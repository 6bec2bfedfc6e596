//! Inputs the fuzzers found crashing, kept so they never crash again.

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
