//! The SMTP command parser and the DATA decoder never panic; decoding never grows the data
//! by more than the line-end normalisation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp::data::DataDecoder;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let _ = smtp::Command::parse(line);
    }
    let mut d = DataDecoder::new();
    let mut out = Vec::new();
    let mut used = 0;
    for chunk in data.chunks(7) {
        used += d.feed(chunk, &mut out);
        if d.is_done() {
            break;
        }
    }
    assert!(used <= data.len());
    assert!(out.len() <= 2 * data.len() + 2);
    // every line ending of the decoded data is CRLF (no bare CR or LF is passed on); a CR may
    // end the output only when its line ending is still undecided
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\r' => assert!(out.get(i + 1).is_none_or(|&n| n == b'\n')),
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r'),
            _ => {}
        }
    }
});
