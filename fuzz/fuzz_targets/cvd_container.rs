//! `.cvd` containers (header, MD5, gzipped tar): malformed ones are errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scan::sigdb::cvd::open("f.cvd", data);
});
