//! The spool's status files: a damaged file is an error, never a panic; what decodes encodes
//! back to something that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = spool::Status::decode(data) {
        let again = spool::Status::decode(&status.encode()).expect("re-encoded status decodes");
        assert_eq!(again, status);
    }
});
