//! The MIME parser against mail written by other projects (`testdata/corpus`).

use mxshield_mime as mime;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every file parses without panic, in bounded time, and every leaf decodes.
#[test]
fn every_corpus_file_parses() {
    let mut all = Vec::new();
    files(&corpus(), &mut all);
    assert!(all.len() > 700, "corpus missing? found {}", all.len());
    let start = Instant::now();
    let mut parts = 0;
    for f in &all {
        let raw = std::fs::read(f).unwrap();
        let t = Instant::now();
        let m = mime::parse(&raw);
        for (_, p) in m.root.walk() {
            let decoded = p.decoded_body(&raw);
            assert!(decoded.len() <= raw.len() + 16, "{}: decoding grew the data", f.display());
            let _ = p.filename();
            parts += 1;
        }
        assert!(t.elapsed().as_secs() < 2, "{} took {:?}", f.display(), t.elapsed());
    }
    eprintln!("{} files, {parts} parts in {:?}", all.len(), start.elapsed());
}

/// The MIME-tools messages of james-mime4j come with their correctly decoded parts
/// (`X_decoded_1_2.txt` is part 1.2): our decoding must match them byte for byte.
#[test]
fn mimetools_decoded_parts_match_the_oracle() {
    let dir = corpus().join("james-mime4j/core/src/test/resources/mimetools-testmsgs");
    let mut checked = 0;
    let mut failures = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let Some((stem, rest)) = name.split_once("_decoded_") else { continue };
        let path_str = rest.rsplit_once('.').map_or(rest, |(a, _)| a);
        let path: Vec<usize> = path_str.split('_').map(|n| n.parse().unwrap()).collect();
        let raw = std::fs::read(dir.join(format!("{stem}.msg"))).unwrap();
        let expected = std::fs::read(&p).unwrap();
        if KNOWN_DIFFERENT.iter().any(|(f, _)| name == *f) {
            continue;
        }
        let Some(got) = decoded_at(&raw, &path[1..]) else {
            failures.push(format!("{name}: no part at {path:?}"));
            continue;
        };
        if normalise(&got) != normalise(&expected) {
            failures.push(format!("{name}: {} bytes, expected {}", got.len(), expected.len()));
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} oracle files");
    assert!(failures.is_empty(), "{} of {checked} differ:\n{}", failures.len(), failures.join("\n"));
}

/// Oracle files where we decide differently on purpose, and why.
const KNOWN_DIFFERENT: &[(&str, &str)] = &[
    (
        "hdr-fakeout_decoded_1.txt",
        "a line with one space ends no header section for MIME-tools, which then treats the whole text as \
         header; we start the body at the first line that is not a header field, so the text is scanned",
    ),
    (
        "frag_decoded_1_2_1_2_1_2_1_2.bin",
        "the base64 ends with an incomplete quantum (27 characters); MIME-tools drops it, we decode the \
         2 bytes it holds (lenient decoding: a scanner sees everything that is there)",
    ),
    (
        "multi-frag_decoded_1_3_2.bin",
        "the closing delimiter is broken (`XXXXXX--unique-boundary-2--`); MIME-tools drops that line, \
         we decode its base64 letters too (lenient decoding)",
    ),
];

/// Decoded bytes of the part at a MIME-tools path (1-based; an embedded message is one
/// child). A transfer-encoded `message/rfc822` is decoded and parsed, as a scanner does.
fn decoded_at(raw: &[u8], path: &[usize]) -> Option<Vec<u8>> {
    let m = mime::parse(raw);
    let mut part = &m.root;
    for (k, &i) in path.iter().enumerate() {
        if part.kind == mime::PartKind::Leaf && part.content_type.starts_with("message/") {
            let inner = part.decoded_body(raw);
            return if i == 1 { decoded_at(&inner, &path[k + 1..]) } else { None };
        }
        part = part.children.get(i - 1)?;
    }
    Some(part.decoded_body(raw))
}

/// MIME-tools writes text parts with LF line ends.
fn normalise(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    while out.last() == Some(&b'\n') {
        out.pop();
    }
    out
}

fn ruby(name: &str) -> Vec<u8> {
    std::fs::read(corpus().join("ruby-mail-gem/spec/fixtures/emails/multi_charset").join(name)).unwrap()
}

#[test]
fn japanese_attachment_names_decode() {
    let raw = ruby("japanese_attachment.eml");
    let m = mime::parse(&raw);
    let names: Vec<String> = m.root.walk().iter().filter_map(|(_, p)| p.filename()).collect();
    assert_eq!(names, vec!["てすと.txt"]);

    let raw = ruby("japanese_attachment_long_name.eml");
    let m = mime::parse(&raw);
    let names: Vec<String> = m.root.walk().iter().filter_map(|(_, p)| p.filename()).collect();
    assert_eq!(names, vec!["かきくけこ".repeat(5) + ".txt"]);
    let subject = m.root.header_text(&raw, "subject").unwrap();
    assert_eq!(subject, "まみむめも".repeat(10));
}

#[test]
fn japanese_bodies_decode_with_their_charsets() {
    for (file, needle) in [("japanese_shift_jis.eml", "\u{3042}"), ("japanese_iso_2022.eml", "")] {
        let raw = ruby(file);
        let m = mime::parse(&raw);
        let body = m.root.decoded_body(&raw);
        let text = mime::charset::decode(&body, m.root.charset());
        assert!(!text.contains('\u{fffd}'), "{file}: replacement characters in {text:?}");
        assert!(text.contains(needle));
    }
}

/// The `mime_parse` fuzzer's corpus (`fuzz/corpus/mime_parse`), replayed with the fuzz
/// target's checks.
#[test]
fn the_mime_fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mime_parse");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let m = mime::parse(&data);
        for (_, part) in m.root.walk() {
            let decoded = part.decoded_body(&data);
            assert!(decoded.len() <= data.len() + 16);
            let _ = part.filename();
            let _ = part.header_text(&data, "subject");
            mime::uuencode::find(&decoded).for_each(drop);
            let rebuilt = mime::remove_part(&data, part);
            assert!(rebuilt.len() <= data.len());
        }
        if let Some(seven) = mime::to_seven_bit(&data) {
            let again = mime::parse(&seven);
            assert!(again.root.walk().len() <= m.root.walk().len() + 1);
        }
        n += 1;
    }
    assert!(n > 100, "only {n} inputs");
}
