//! The `smtp_command` fuzzer's corpus (`fuzz/corpus/smtp_command`), replayed with the fuzz
//! target's checks: commands parse or fail cleanly, and the DATA decoder passes on no bare CR
//! or LF.

use mxshield_smtp as smtp;
use smtp::data::DataDecoder;

#[test]
fn the_smtp_fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/smtp_command");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
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
        for (i, &b) in out.iter().enumerate() {
            match b {
                b'\r' => assert!(out.get(i + 1).is_none_or(|&n| n == b'\n')),
                b'\n' => assert!(i > 0 && out[i - 1] == b'\r'),
                _ => {}
            }
        }
        n += 1;
    }
    assert!(n > 100, "only {n} inputs");
}

/// The `smtp_reply` fuzzer's corpus: replies a remote server might send parse or fail cleanly.
#[test]
fn the_reply_fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/smtp_reply");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let lines: Vec<String> = String::from_utf8_lossy(&data).split("\r\n").take(200).map(str::to_string).collect();
        if let Some(reply) = smtp::Reply::parse_lines(&lines) {
            let _ = reply.one_line();
        }
        n += 1;
    }
    assert!(n > 10, "only {n} inputs");
}
