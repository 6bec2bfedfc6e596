//! The MIME parser and everything a scanner asks of a part must never panic, and decoding
//! must stay proportional to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m = mime::parse(data);
    for (_, part) in m.root.walk() {
        let decoded = part.decoded_body(data);
        assert!(decoded.len() <= data.len() + 16);
        let _ = part.filename();
        let _ = part.header_text(data, "subject");
        mime::uuencode::find(&decoded).for_each(drop);
        for lp in mime::loose_parts(data, part.body.clone()) {
            let _ = lp.decoded_body(data);
        }
        let rebuilt = mime::remove_part(data, part);
        assert!(rebuilt.len() <= data.len());
    }
    if let Some(seven) = mime::to_seven_bit(data) {
        let _ = mime::parse(&seven);
    }
});
