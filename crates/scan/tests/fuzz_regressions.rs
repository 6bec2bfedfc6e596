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

/// The `pe_parse` fuzzer's corpus (`fuzz/corpus/pe_parse`, each input after `MZ`): headers
/// that parse or not, import tables walked or refused, PE-aware signatures matched — never a
/// panic (the fuzz target's own work).
#[test]
fn the_pe_fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pe_parse");
    let mut db = scan::sigdb::SigDb::default();
    db.load_file("f.ndb", b"Ep:1:EP+0:4d5a\nSec:1:S1+4,100:4142\nLast:1:SL+0:4142??44\nWhole:1:SE0:41??4344\n")
        .unwrap();
    db.load_file("f.mdb", b"*:44d88612fea8a8f36de82e1278abb02f:Sect:73\n").unwrap();
    db.load_file("f.imp", b"44d88612fea8a8f36de82e1278abb02f:*:Imp:73\n").unwrap();
    let sigs = Signatures::compile(db.finished());
    let (mut n, mut parsed) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let mut pe = b"MZ".to_vec();
        pe.extend(std::fs::read(e.unwrap().path()).unwrap());
        if let Some(info) = scan::pe::parse(&pe) {
            parsed += 1;
            let _ = info.import_table(&pe);
        }
        let _ = sigs.check(&pe, scan::FileType::Pe);
        let mut elf = b"\x7fELF".to_vec();
        elf.extend(&pe[2..]);
        let _ = scan::elf::parse(&elf);
        for magic in [[0xcf, 0xfa, 0xed, 0xfe], [0xfe, 0xed, 0xfa, 0xce]] {
            let mut macho = magic.to_vec();
            macho.extend(&pe[2..]);
            let _ = scan::macho::parse(&macho);
            let _ = sigs.check(&macho, scan::FileType::MachO);
        }
        n += 1;
    }
    assert!(n > 100 && parsed > 10, "only {n} inputs, {parsed} parsed");
}

/// The `sigdb_load` fuzzer's corpus: each input (its first byte picks the file kind) loads or
/// is refused with an error, and what loads compiles and matches — never a panic.
#[test]
fn the_sigdb_fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/sigdb_load");
    let names = ["f.hdb", "f.hsb", "f.ndb", "f.ldb", "f.fp", "f.ign2", "f.mdb", "f.msb", "f.imp"];
    let (mut n, mut loaded) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let Some((&selector, rest)) = data.split_first() else { continue };
        let mut db = scan::sigdb::SigDb::default();
        if db.load_file(names[selector as usize % names.len()], rest).is_ok() {
            let sigs = Signatures::compile(db.finished());
            let _ = sigs.check(rest, scan::FileType::Binary);
            let _ = sigs.check(rest, scan::FileType::Pe);
            loaded += 1;
        }
        n += 1;
    }
    assert!(n > 1000 && loaded > 100, "only {n} inputs, {loaded} loaded");
}

/// The `html_normalise` fuzzer's corpus: every input normalises (typing, forms, `data:` URIs)
/// without a panic and within the fuzz target's bounds on size.
#[test]
fn the_html_fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/html_normalise");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let _ = scan::html::is_html(&data);
        let norm = scan::html::normalise(&data);
        assert!(norm.nocomment.len() <= 8 * data.len() + 16);
        n += 1;
    }
    assert!(n > 100, "only {n} inputs");
}
