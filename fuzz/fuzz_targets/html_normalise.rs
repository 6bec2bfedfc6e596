//! The HTML normaliser and typing: any bytes normalise in bounded time and memory (the forms
//! are never much larger than the input), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scan::html::is_html(data);
    let _ = scan::html::holds_html(data);
    let n = scan::html::normalise(data);
    // entities grow at most 8 times (`&#xNNNN;` for `&a;`), tags by their re-quoting
    assert!(n.nocomment.len() <= 8 * data.len() + 16, "{} from {}", n.nocomment.len(), data.len());
    assert!(n.data_uris.iter().map(Vec::len).sum::<usize>() <= 2 * data.len() + 256 * n.data_uris.len());
});
