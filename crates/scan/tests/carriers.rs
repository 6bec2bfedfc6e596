//! EICAR in every carrier the gateway meets, built here with the standard tools (zip, 7z,
//! tar, gzip, bzip2, xz) or by hand; encrypted archives; bombs; look-alikes.

use mxshield_scan as scan;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use scan::limits::Limit;
use scan::{Engine, Limits, Signatures, Verdict};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn engine() -> Engine {
    Engine::new(Arc::new(Signatures::builtin()), Limits::default())
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("mxshield-carriers-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, data).unwrap();
        p
    }
    fn run(&self, cmd: &str, args: &[&str]) {
        let out = Command::new(cmd)
            .args(args)
            .current_dir(&self.0)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/test.sh installs it)"));
        assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.0.join(name)).unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn verdict(data: &[u8]) -> Verdict {
    engine().scan_bytes("sample", data).verdict()
}

fn infected() -> Verdict {
    Verdict::Infected("Eicar-Test-Signature".into())
}

#[test]
fn plain_and_padded_eicar() {
    assert_eq!(verdict(EICAR), infected());
    let mut padded = EICAR.to_vec();
    padded.extend_from_slice(b"\r\n   \r\n");
    assert_eq!(verdict(&padded), infected());
    let mut inside = b"some text before ".to_vec();
    inside.extend_from_slice(EICAR);
    assert_eq!(verdict(&inside), infected());
}

#[test]
fn one_byte_look_alikes_are_clean() {
    for i in [0, 10, 33, EICAR.len() - 1] {
        let mut v = EICAR.to_vec();
        v[i] ^= 0x01;
        assert_eq!(verdict(&v), Verdict::Clean, "byte {i} changed");
    }
    let mut shorter = EICAR.to_vec();
    shorter.pop();
    assert_eq!(verdict(&shorter), Verdict::Clean);
}

fn b64(data: &[u8]) -> String {
    mime::encode::base64_lines(data)
}

fn qp(data: &[u8]) -> String {
    data.iter()
        .map(|&b| if b == b'=' || !(33..=126).contains(&b) { format!("={b:02X}") } else { (b as char).to_string() })
        .collect()
}

fn uuencode(name: &str, data: &[u8]) -> String {
    let mut s = format!("begin 644 {name}\n");
    for line in data.chunks(45) {
        s.push((32 + line.len() as u8) as char);
        for c in line.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for k in 0..4 {
                let v = (n >> (18 - 6 * k) & 63) as u8;
                s.push(if v == 0 { '`' } else { (32 + v) as char });
            }
        }
        s.push('\n');
    }
    s.push_str("`\nend\n");
    s
}

fn multipart(parts: &[String]) -> Vec<u8> {
    let mut m = String::from(
        "From: a@remote.test\r\nTo: alice@acme.example\r\nSubject: carrier\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\npreamble\r\n",
    );
    for p in parts {
        m.push_str("--BOUNDARY\r\n");
        m.push_str(p);
        m.push_str("\r\n");
    }
    m.push_str("--BOUNDARY--\r\n");
    m.into_bytes()
}

fn message_findings(raw: &[u8]) -> Vec<String> {
    let r = engine().scan_message(raw);
    r.root.findings().into_iter().map(|(path, l)| format!("{path}: {}", l.verdict.label())).collect()
}

#[test]
fn eicar_in_mail_encodings_and_parts() {
    let text = "Content-Type: text/plain\r\n\r\nhello";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "base64 attachment",
            multipart(&[
                text.into(),
                format!(
                    "Content-Type: application/octet-stream; name=\"eicar.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                    b64(EICAR)
                ),
            ]),
            "message › part 2 (eicar.com): Eicar-Test-Signature FOUND",
        ),
        (
            "quoted-printable part",
            multipart(&[format!(
                "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
                qp(EICAR)
            )]),
            "message › part 1: Eicar-Test-Signature FOUND",
        ),
        (
            "uuencoded in a text body",
            multipart(&[format!("Content-Type: text/plain\r\n\r\nsee below\r\n{}", uuencode("eicar.com", EICAR))]),
            "message › part 1 › uuencoded eicar.com: Eicar-Test-Signature FOUND",
        ),
        (
            "HTML part",
            multipart(&[format!(
                "Content-Type: text/html\r\n\r\n<html><body><p>{}</p></body></html>",
                String::from_utf8_lossy(EICAR)
            )]),
            "message › part 1: Eicar-Test-Signature FOUND",
        ),
        (
            "single-part body",
            [b"From: a@remote.test\r\nSubject: plain\r\n\r\n".to_vec(), EICAR.to_vec(), b"\r\n".to_vec()].concat(),
            "message › part body: Eicar-Test-Signature FOUND",
        ),
        (
            "nested message/rfc822",
            multipart(&[
                text.into(),
                format!(
                    "Content-Type: message/rfc822\r\n\r\nFrom: b@remote.test\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Type: application/octet-stream; name=\"x.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--inner--\r\n",
                    b64(EICAR)
                ),
            ]),
            "message › part 2.1.1 (x.com): Eicar-Test-Signature FOUND",
        ),
        (
            "base64-encoded message/rfc822",
            multipart(&[format!(
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                b64(&[b"Subject: inner\r\n\r\n".to_vec(), EICAR.to_vec()].concat())
            )]),
            "message › part 1 › part body: Eicar-Test-Signature FOUND",
        ),
    ];
    for (what, raw, expected) in cases {
        let found = message_findings(&raw);
        assert_eq!(found, vec![expected.to_string()], "{what}");
    }
}

#[test]
fn archives_built_by_the_standard_tools() {
    let d = Dir::new("archives");
    d.file("docs/eicar.com", EICAR);
    d.file("docs/readme.txt", b"nothing to see\n");
    d.run("zip", &["-q", "-r", "e.zip", "docs"]);
    d.run("7z", &["a", "-bd", "-bso0", "e.7z", "docs"]);
    d.run("tar", &["czf", "e.tar.gz", "docs"]);
    d.run("tar", &["cf", "e.tar", "docs"]);
    std::fs::copy(d.0.join("docs/eicar.com"), d.0.join("eicar.com")).unwrap();
    d.run("bzip2", &["-k", "eicar.com"]);
    d.run("xz", &["-k", "eicar.com"]);
    d.run("gzip", &["-k", "eicar.com"]);
    for (file, path) in [
        ("e.zip", "e.zip › docs/eicar.com"),
        ("e.7z", "e.7z › docs/eicar.com"),
        ("e.tar.gz", "e.tar.gz › gzip content › docs/eicar.com"),
        ("e.tar", "e.tar › docs/eicar.com"),
        ("eicar.com.bz2", "eicar.com.bz2 › bzip2 content"),
        ("eicar.com.xz", "eicar.com.xz › xz content"),
        ("eicar.com.gz", "eicar.com.gz › eicar.com"),
    ] {
        let r = engine().scan_bytes(file, &d.read(file));
        let found: Vec<String> =
            r.root.findings().into_iter().map(|(p, l)| format!("{p}: {}", l.verdict.label())).collect();
        assert_eq!(found, vec![format!("{path}: Eicar-Test-Signature FOUND")], "{file}");
    }
}

#[test]
fn zip_in_zip_three_deep() {
    let d = Dir::new("nested");
    d.file("eicar.com", EICAR);
    d.run("zip", &["-q", "l1.zip", "eicar.com"]);
    d.run("zip", &["-q", "l2.zip", "l1.zip"]);
    d.run("zip", &["-q", "l3.zip", "l2.zip"]);
    let r = engine().scan_bytes("l3.zip", &d.read("l3.zip"));
    let found: Vec<String> = r.root.findings().into_iter().map(|(p, _)| p).collect();
    assert_eq!(found, vec!["l3.zip › l2.zip › l1.zip › eicar.com"]);
}

#[test]
fn encrypted_archives_are_encrypted_not_clean() {
    let d = Dir::new("encrypted");
    d.file("eicar.com", EICAR);
    d.run("zip", &["-q", "-P", "secret", "zipcrypto.zip", "eicar.com"]);
    d.run("7z", &["a", "-bd", "-bso0", "-tzip", "-mem=AES256", "-psecret", "aes.zip", "eicar.com"]);
    d.run("7z", &["a", "-bd", "-bso0", "-psecret", "aes.7z", "eicar.com"]);
    d.run("7z", &["a", "-bd", "-bso0", "-psecret", "-mhe=on", "aes-headers.7z", "eicar.com"]);
    for (file, kind) in [
        ("zipcrypto.zip", "Encrypted.Zip"),
        ("aes.zip", "Encrypted.Zip"),
        ("aes.7z", "Encrypted.7z"),
        ("aes-headers.7z", "Encrypted.7z"),
    ] {
        let v = verdict(&d.read(file));
        assert_eq!(v, Verdict::Encrypted(kind.into()), "{file}");
    }
}

#[test]
fn zip_bomb_stops_at_the_limit() {
    let d = Dir::new("bomb");
    // 200 MB of zeros compresses to about 200 KB
    let f = std::fs::File::create(d.0.join("zeros.bin")).unwrap();
    f.set_len(200_000_000).unwrap();
    d.run("zip", &["-q", "bomb.zip", "zeros.bin"]);
    std::fs::remove_file(d.0.join("zeros.bin")).unwrap();
    let bomb = d.read("bomb.zip");
    assert!(bomb.len() < 1_000_000);
    let r = engine().scan_bytes("bomb.zip", &bomb);
    assert!(matches!(r.verdict(), Verdict::LimitExceeded(_)), "{:?}", r.verdict());
    // with a generous ratio the expanded-size limit stops it
    let limits = Limits { max_ratio: u64::MAX, ..Limits::default() };
    let r = Engine::new(Arc::new(Signatures::builtin()), limits).scan_bytes("bomb.zip", &bomb);
    let Verdict::LimitExceeded(why) = r.verdict() else { panic!("{:?}", r.verdict()) };
    assert_eq!(why, Limit::Expanded { max: 60_000_000 }, "{why}");
}

#[test]
fn nesting_deeper_than_the_limit() {
    let d = Dir::new("deep");
    d.file("f0.txt", b"harmless");
    let mut prev = "f0.txt".to_string();
    for i in 1..=20 {
        let name = format!("n{i}.zip");
        d.run("zip", &["-q", &name, &prev]);
        prev = name;
    }
    let r = engine().scan_bytes(&prev, &d.read(&prev));
    let Verdict::LimitExceeded(why) = r.verdict() else { panic!("{:?}", r.verdict()) };
    assert_eq!(why, Limit::Depth { max: 17 }, "{why}");
}

#[test]
fn clamav_test_file_in_the_corpus_mails() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus/clamav-upstream-extra");
    for f in [
        "clam.mail-boundary-content-disposition.eml",
        "clam.mail-disposition-rfc2231-boundary.eml",
        "clam.mail-semicolon-boundary.eml",
        "clam.mail-nested-comment-header-name.eml",
    ] {
        let raw = std::fs::read(corpus.join(f)).unwrap();
        let r = engine().scan_message(&raw);
        assert_eq!(r.verdict(), Verdict::Infected("ClamAV-Test-File".into()), "{f}: {:#?}", r.root);
    }
}

/// The first central-directory record of a zip (offset of `PK\x01\x02`).
fn central(zip: &[u8]) -> usize {
    zip.windows(4).position(|w| w == b"PK\x01\x02").expect("a central directory")
}

fn findings(name: &str, data: &[u8]) -> Vec<String> {
    engine()
        .scan_bytes(name, data)
        .root
        .findings()
        .into_iter()
        .map(|(p, l)| format!("{p}: {}", l.verdict.label()))
        .collect()
}

/// Zips that unzip, 7-Zip or Python's zipfile extract although they are not well formed: what
/// an extractor gets out of a file, the scanner scans (issue 8.3).
#[test]
fn zip_evasions_that_extractors_open_are_scanned() {
    let d = Dir::new("zip-evasions");
    d.file("eicar.com", EICAR);
    d.run("zip", &["-q", "-X", "stored.zip", "-0", "eicar.com"]);
    d.run("zip", &["-q", "-X", "deflated.zip", "eicar.com"]);
    let stored = d.read("stored.zip");
    let deflated = d.read("deflated.zip");
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // a self-extractor: an executable stub, then the archive (offsets relative to the archive)
    let mut sfx = b"MZ\x90\x00".to_vec();
    sfx.extend(std::iter::repeat_n(0u8, 4096));
    sfx.extend_from_slice(&deflated);
    cases.push(("sfx.exe", sfx));
    // any prefix before the archive
    cases.push(("prefixed.zip", [b"hello there\r\n".to_vec(), deflated.clone()].concat()));
    // the first local header's signature damaged
    let mut damaged = deflated.clone();
    damaged[3] = 0x05;
    cases.push(("damaged-signature.zip", damaged));
    // the central directory calls the member a directory; the local header holds eicar.com
    let mut dir = deflated.clone();
    let c = central(&dir);
    let nlen = u16::from_le_bytes([dir[c + 28], dir[c + 29]]) as usize;
    dir[c + 46 + nlen - 1] = b'/';
    dir[c + 38] = 0x10;
    cases.push(("directory.zip", dir));
    // wrong CRC in both headers
    let mut crc = deflated.clone();
    let c = central(&crc);
    for at in [14, c + 16] {
        crc[at] ^= 0xff;
    }
    cases.push(("bad-crc.zip", crc));
    // the central directory halves the compressed size
    let mut halved = deflated.clone();
    let c = central(&halved);
    let size = u32::from_le_bytes(halved[c + 20..c + 24].try_into().unwrap());
    halved[c + 20..c + 24].copy_from_slice(&(size / 2).to_le_bytes());
    cases.push(("halved.zip", halved));
    // the central directory says "stored" for a deflated member
    let mut says_stored = deflated.clone();
    let c = central(&says_stored);
    says_stored[c + 10] = 0;
    cases.push(("says-stored.zip", says_stored));
    // a stored member whose local header says deflate
    let mut says_deflate = stored.clone();
    says_deflate[8] = 8;
    cases.push(("local-says-deflate.zip", says_deflate));
    // PPMd, as 7-Zip writes it
    d.run("7z", &["a", "-bd", "-bso0", "-tzip", "-mm=PPMd", "ppmd.zip", "eicar.com"]);
    cases.push(("ppmd.zip", d.read("ppmd.zip")));
    for (name, data) in cases {
        let found = findings(name, &data);
        assert!(
            found.iter().any(|f| f.ends_with("Eicar-Test-Signature FOUND")),
            "{name}: {found:?}\n{:#?}",
            engine().scan_bytes(name, &data).root
        );
    }
}

/// A gzip whose CRC is wrong: gunzip writes the data out (and complains); the scanner scans it
/// and reports the damage.
#[test]
fn gzip_with_a_wrong_crc_is_scanned_and_reported_damaged() {
    let d = Dir::new("gzip-crc");
    d.file("eicar.com", EICAR);
    d.run("gzip", &["-k", "eicar.com"]);
    let mut gz = d.read("eicar.com.gz");
    let n = gz.len();
    gz[n - 8] ^= 0xff;
    let r = engine().scan_bytes("bad.gz", &gz);
    assert_eq!(r.verdict(), infected(), "{:#?}", r.root);
    let member = &r.root.children[0];
    assert!(member.damaged.as_deref().is_some_and(|w| w.starts_with("Broken.Gzip")), "{member:#?}");
    // and a zip with a wrong CRC that is clean says so too
    d.file("clean.txt", b"nothing here\n");
    d.run("zip", &["-q", "-X", "clean.zip", "clean.txt"]);
    let mut zip = d.read("clean.zip");
    zip[14] ^= 0xff;
    let c = central(&zip);
    zip[c + 16] ^= 0xff;
    let r = engine().scan_bytes("clean.zip", &zip);
    assert_eq!(r.verdict(), Verdict::Clean);
    assert_eq!(r.root.children[0].damaged.as_deref(), Some("Broken.Zip: CRC mismatch"));
}

/// `Content-Transfer-Encoding` written in ways mail readers still understand: a comment, a
/// trailing `;`, quotes, and a second field that some readers take instead of the first.
#[test]
fn transfer_encoding_variants_readers_decode_are_scanned() {
    let body = b64(EICAR);
    let cte = [
        "Content-Transfer-Encoding: base64 (comment)",
        "Content-Transfer-Encoding: (c) base64",
        "Content-Transfer-Encoding: base64;",
        "Content-Transfer-Encoding: \"base64\"",
        "Content-Transfer-Encoding: (a (nested) comment)BASE64",
        "Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64",
        "Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit",
    ];
    for field in cte {
        let raw =
            multipart(&[format!("Content-Type: application/octet-stream; name=\"e.com\"\r\n{field}\r\n\r\n{body}")]);
        let r = engine().scan_message(&raw);
        assert_eq!(r.verdict(), infected(), "{field:?}: {:#?}", r.root);
    }
    // the raw body read as 7bit by a reader that takes the last field
    let raw = multipart(&[format!(
        "Content-Type: application/octet-stream; name=\"e.com\"\r\nContent-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{}",
        String::from_utf8_lossy(EICAR)
    )]);
    assert_eq!(engine().scan_message(&raw).verdict(), infected());
}

/// A 7z whose LZMA2 dictionary is declared as 4 GiB (property 40): 7-Zip extracts it, so the
/// scanner reads it too — the window grows with the output, not with the declaration.
#[test]
fn sevenz_with_a_4_gib_dictionary_is_read() {
    let d = Dir::new("7z-dict");
    d.file("eicar.com", EICAR);
    d.run("7z", &["a", "-bd", "-bso0", "-mhc=off", "-m0=lzma2", "e.7z", "eicar.com"]);
    let mut a = d.read("e.7z");
    let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap()) as usize;
    let (offset, size) = (le64(&a[12..20]), le64(&a[20..28]));
    let header = 32 + offset;
    // coder: flags 0x21 (1-byte id, properties), id 0x21 (LZMA2), 1 byte of properties
    let at = header + a[header..].windows(3).position(|w| w == [0x21, 0x21, 0x01]).expect("LZMA2 coder");
    a[at + 3] = 40;
    let crc = crc32fast::hash(&a[header..header + size]);
    a[28..32].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&a[12..32]);
    a[8..12].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(verdict(&a), infected());
}

/// A zip made with Info-ZIP from files named in Shift_JIS (as Japanese Windows names them; no
/// UTF-8 flag): the report names the infected member in Japanese, and disinfection removes
/// exactly the member the report named, keeping the other byte for byte (issue 9).
#[test]
fn a_shift_jis_named_member_is_disinfected_as_the_report_names_it() {
    use std::os::unix::ffi::OsStrExt;
    let d = Dir::new("sjis");
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("見積書.com");
    std::fs::write(d.0.join(std::ffi::OsStr::from_bytes(&sjis)), EICAR).unwrap();
    d.file("keep.txt", b"keep me");
    let out = Command::new("zip")
        .args(["-q", "files.zip", "keep.txt"])
        .arg(std::ffi::OsStr::from_bytes(&sjis))
        .env("LANG", "C")
        .current_dir(&d.0)
        .output()
        .expect("zip (scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let archive = d.read("files.zip");
    assert!(archive.windows(sjis.len()).any(|w| w == &sjis[..]), "the name is stored in Shift_JIS");

    let report = engine().scan_bytes("files.zip", &archive);
    let named: Vec<String> =
        report.root.children.iter().filter(|m| m.overall().is_infected()).map(|m| m.name.clone()).collect();
    assert_eq!(named, ["見積書.com"]);

    let rebuilt =
        scan::disinfect::rebuild_zip(&archive, Limits::default(), scan::disinfect::Infected::Named(&named)).unwrap();
    assert_eq!(rebuilt.removed, ["見積書.com"]);
    assert_eq!(rebuilt.kept, 1);
    let after = engine().scan_bytes("files.zip", &rebuilt.data);
    assert_eq!(after.verdict(), Verdict::Clean);
    let names: Vec<&str> = after.root.children.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["keep.txt"]);

    // a name the archive does not hold removes nothing
    let other = ["other.com".to_string()];
    let none = scan::disinfect::rebuild_zip(&archive, Limits::default(), scan::disinfect::Infected::Named(&other));
    assert_eq!(none.unwrap().data, archive);
}

/// A sub-signature split by `*` that matched once, followed by millions of its last part:
/// counting its match ends (libclamav's count) must stay bounded, not look back from every
/// one of them (a CPU bomb a sender controls).
#[test]
fn counting_a_split_sub_signature_is_bounded_on_hostile_data() {
    let d = Dir::new("split-bomb");
    d.file("t.ldb", b"T.Split;Target:0;0>1;41424344*45464748\n");
    let sigs = Signatures::load_dir(&d.0).unwrap();
    let mut data = b"\x00\x00\x00\x00ABCD EFGH ".to_vec();
    for _ in 0..2_500_000 {
        data.extend_from_slice(b"EFGH");
    }
    let started = std::time::Instant::now();
    let r = Engine::new(Arc::new(sigs), Limits::default()).scan_bytes("bomb", &data);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(r.verdict().is_infected(), "{:?}", r.verdict());
    // the last parts first, then one whole match: each of them would look back to the start
    let mut data = b"\x00\x00\x00\x00".to_vec();
    for _ in 0..2_500_000 {
        data.extend_from_slice(b"EFGH");
    }
    data.extend_from_slice(b" ABCD EFGH EFGH");
    let sigs = Signatures::load_dir(&d.0).unwrap();
    let started = std::time::Instant::now();
    let r = Engine::new(Arc::new(sigs), Limits::default()).scan_bytes("bomb", &data);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(!r.verdict().is_limit(), "{:?}", r.verdict());
}

/// An HTML page's `data:` URIs are scanned (EICAR in base64 in an `<img src>`, as clamscan
/// finds it), and a page with more of them than a scan may open members stops at the limit
/// instead of scanning a hundred thousand small messages.
#[test]
fn data_uris_in_html_are_scanned_and_counted() {
    let uri = format!("<img src=\"data:application/octet-stream;base64,{}\">", b64(EICAR));
    assert_eq!(verdict(format!("<html><body>{uri}</body></html>").as_bytes()), infected());
    let many = format!("<html><body>{}</body></html>", "<img src=\"data:text/plain,x\">".repeat(100_000));
    let v = verdict(many.as_bytes());
    assert!(matches!(v, Verdict::LimitExceeded(Limit::Entries { .. })), "{v:?}");
}
