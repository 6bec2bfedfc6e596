//! The signature loader: malformed databases are errors, never panics. The first byte picks
//! the file kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scan::sigdb::SigDb;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let names = ["f.hdb", "f.hsb", "f.ndb", "f.ldb", "f.fp", "f.ign2", "f.mdb", "f.msb", "f.imp"];
    let mut db = SigDb::default();
    if db.load_file(names[selector as usize % names.len()], rest).is_ok() {
        let sigs = scan::Signatures::compile(db.finished());
        let _ = sigs.check(rest, scan::FileType::Binary);
        let _ = sigs.check(rest, scan::FileType::Pe);
    }
});
