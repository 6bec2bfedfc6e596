//! Every unpacker (the first byte picks one) and the whole recursive scan must never panic
//! and must stay within the limits, whatever the bytes.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use scan::limits::{Budget, Limits};
use scan::unpack::UNPACKABLE;
use scan::{Engine, Signatures};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let limits = Limits { max_expanded: 8_000_000, ..Limits::default() };
        Engine::new(Arc::new(Signatures::builtin()), limits)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let ft = UNPACKABLE[selector as usize % UNPACKABLE.len()];
    let mut budget = Budget::new(Limits { max_expanded: 8_000_000, ..Limits::default() });
    let _ = scan::unpack::unpack(ft, rest, &mut budget);
    assert!(budget.expanded <= 8_000_000 + 64 * 1024);
    let _ = engine().scan_bytes("fuzz", rest);
});
