//! Other projects' files: no false positive on clean mail, and ClamAV's own test files found
//! in every carrier the engine opens.

use mxshield_scan as scan;
use std::path::Path;
use std::sync::Arc;

use scan::{Engine, Limits, Signatures, Verdict};

fn engine() -> Engine {
    Engine::new(Arc::new(Signatures::builtin()), Limits::default())
}

/// Every message of the corpus except ClamAV's virus test files scans without a detection
/// and within the limits (a limit means a refusal at the gateway).
#[test]
fn zero_false_positives_on_the_mail_corpus() {
    let all = testkit::corpus::files();
    let engine = engine();
    let mut scanned = 0;
    let mut detections = Vec::new();
    for f in all.iter().filter(|f| !f.to_string_lossy().contains("clamav-upstream-extra")) {
        let raw = std::fs::read(f).unwrap();
        let r = engine.scan_message(&raw);
        scanned += 1;
        match r.verdict() {
            Verdict::Infected(name) => detections.push(format!("{}: {name}", f.display())),
            Verdict::LimitExceeded(why) => detections.push(format!("{}: limit: {why}", f.display())),
            _ => {}
        }
    }
    assert!(scanned > 700);
    assert!(detections.is_empty(), "false positives:\n{}", detections.join("\n"));
}

/// Debian's clamav-testfiles (installed by scripts/test.sh): the plain, zip, 7z, tar, gzip,
/// bzip2, cpio, mail/mbox (base64, uuencoded), TNEF, HTML (a `data:` URI), SZDD, BinHex and
/// RTF, Word 97 and PowerPoint 97 (a packaged object) PDF (an embedded file) and CAB carriers of clam.exe must all be detected, and clam.exe 18
/// layers deep in nine nested .tgz (ClamAV's default recursion of 17 reaches it); clam.exe
/// embedded at the end of an FSG-packed executable and in an InstallShield setup stream, and
/// imploded (PKZIP 2's method 6) in a zip, and packed by UPX (NRV2B; unpacked and rebuilt, the
/// payload found at the rebuilt file's end as libclamav finds it), WWPack32 or Petite.
#[test]
fn clamav_testfiles_required_carriers() {
    let dir = Path::new("/usr/share/clamav-testfiles");
    assert!(dir.is_dir(), "clamav-testfiles is not installed: run scripts/test.sh, which installs it");
    let required = [
        "clam.exe",
        "clam.zip",
        "clam.bz2.zip",
        "clam.d64.zip",
        "clam.7z",
        "clam.tar.gz",
        "clam.exe.bz2",
        "clam.exe.mbox.base64",
        "clam.exe.mbox.uu",
        "clam.mail",
        "clam.newc.cpio",
        "clam.odc.cpio",
        "clam.bin-le.cpio",
        "clam.bin-be.cpio",
        "clam.tnef",
        "clam.exe.html",
        "clam.exe.szdd",
        "clam.exe.binhex",
        "clam.exe.rtf",
        "clam.ole.doc",
        "clam.ppt",
        "clam.pdf",
        "clam.cab",
        "clam_cache_emax.tgz",
        "clam-fsg.exe",
        "clam_IScab_ext.exe",
        "clam.impl.zip",
        "clam-upx.exe",
        "clam-nsis.exe",
        "clam.sis",
        "clam.arj",
        "clam.chm",
        "clam_ISmsi_ext.exe",
        "clam_ISmsi_int.exe",
        "clam_IScab_int.exe",
        "clam-wwpack.exe",
        "clam-petite.exe",
        "clam.ea05.exe",
        "clam.ea06.exe",
        "clam-aspack.exe",
        "clam-yc.exe",
        "clam-pespin.exe",
        "clam-mew.exe",
        "clam-upack.exe",
    ];
    let engine = engine();
    for name in required {
        let data = std::fs::read(dir.join(name)).unwrap();
        let v = engine.scan_bytes(name, &data).verdict();
        assert_eq!(v, Verdict::Infected("ClamAV-Test-File".into()), "{name}");
    }
}

/// Real password-protected attachments from the SpamAssassin test data: an encrypted Word
/// document (OOXML in an OLE2 container with EncryptionInfo) and a ZipCrypto archive.
#[test]
fn real_encrypted_attachments() {
    let dir = testkit::corpus::dir().join("spamassassin-tdata/t/data/spam/olevbmacro");
    let engine = engine();
    for (file, path, kind) in [
        ("encrypted.eml", "message › part 2 (encrypted_word_doc.docx)", "Encrypted.Office"),
        ("zippwmacro.eml", "message › part 2 (macro.zip) › macro.xlsm", "Encrypted.Zip"),
    ] {
        let r = engine.scan_message(&std::fs::read(dir.join(file)).unwrap());
        let found: Vec<(String, Verdict)> =
            r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.clone())).collect();
        assert_eq!(found, vec![(path.to_string(), Verdict::Encrypted(kind.into()))], "{file}");
    }
}

/// RAR from ClamAV's unit tests: members are listed; compressed ones are reported as not
/// unpacked (never clean); the file-encrypted flag and the encrypted-headers flag of the same
/// archive are recognised.
#[test]
fn rar_members_and_encryption() {
    let path = testkit::corpus::dir().join("clamav-upstream-extra/clam-v3.rar");
    let rar = std::fs::read(path).unwrap();
    let engine = engine();
    let r = engine.scan_bytes("clam-v3.rar", &rar);
    let found: Vec<(String, String)> = r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.label())).collect();
    assert_eq!(found, vec![("clam-v3.rar › clam.exe".to_string(), "Unpack.RAR UNSCANNABLE".to_string())]);
    let mut member_encrypted = rar.clone();
    member_encrypted[23] |= 0x04; // file header flags: encrypted
    let r = engine.scan_bytes("x.rar", &member_encrypted);
    assert_eq!(r.root.children[0].verdict, Verdict::Encrypted("Encrypted.RAR".into()));
    let mut headers_encrypted = rar;
    headers_encrypted[10] |= 0x80; // archive header flags: encrypted headers
    assert_eq!(engine.scan_bytes("y.rar", &headers_encrypted).verdict(), Verdict::Encrypted("Encrypted.RAR".into()));
}

/// An imploded member cut short, or with its trees damaged, is scanned as far as it decodes and
/// reported damaged (or unscannable), never silently clean and never a panic.
#[test]
fn a_damaged_imploded_member_is_reported() {
    let zip = std::fs::read("/usr/share/clamav-testfiles/clam.impl.zip").unwrap();
    let engine = engine();
    let reported = |r: &scan::report::Report| {
        r.verdict() != Verdict::Clean
            || r.root.children.iter().any(|c| c.damaged.is_some() || c.verdict != Verdict::Clean)
    };
    let data_start = 30 + 8; // the local header and the name CLAM.EXE
    let mut cut = zip[..data_start + 100].to_vec();
    cut.extend_from_slice(&zip[zip.len() - 100..]);
    assert!(reported(&engine.scan_bytes("cut.zip", &cut)));
    for at in [data_start, data_start + 1, data_start + 50] {
        let mut bad = zip.clone();
        bad[at] ^= 0xff;
        let r = engine.scan_bytes("bad.zip", &bad);
        assert!(reported(&r), "byte {at}: {:?}", r.root);
    }
}

/// Installers made by a real tool (`makensis`, Debian's nsis): a 239 KB text file, found by a
/// hash signature of its own bytes (so only its decompression can find it) in installers
/// compressed with zlib, NSIS's own bzip2 and LZMA, block by block and solid (issue 17).
#[test]
fn installers_made_by_makensis_are_opened() {
    let tool = Path::new("/usr/bin/makensis");
    assert!(tool.exists(), "makensis is not installed: run scripts/test.sh, which installs nsis");
    let tmp = testkit::TempDir::new("nsis");
    let dir = tmp.path();
    let big: Vec<u8> =
        (0..8_000).flat_map(|i| format!("line {} of the big text file\n", i % 997).into_bytes()).collect();
    std::fs::write(dir.join("big.txt"), &big).unwrap();
    let md5: String = <md5::Md5 as md5::Digest>::digest(&big).iter().map(|b| format!("{b:02x}")).collect();
    let line = format!("{md5}:{}:Test.Big\n", big.len());
    std::fs::write(dir.join("big.hdb"), &line).unwrap();
    let mut db = scan::sigdb::SigDb::default();
    db.load_file("big.hdb", line.as_bytes()).unwrap();
    let engine = Engine::new(Arc::new(Signatures::compile(db.finished())), Limits::default());
    for compressor in ["zlib", "lzma", "bzip2", "/SOLID zlib", "/SOLID lzma", "/SOLID bzip2"] {
        let script = format!(
            "Name \"t\"\nOutFile \"t.exe\"\nSetCompressor {compressor}\nSection\nSetOutPath $INSTDIR\nFile \"big.txt\"\nSectionEnd\n"
        );
        std::fs::write(dir.join("t.nsi"), script).unwrap();
        let out = std::process::Command::new(tool).args(["-V1", "t.nsi"]).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "{compressor}: {}", String::from_utf8_lossy(&out.stdout));
        let exe = std::fs::read(dir.join("t.exe")).unwrap();
        assert!(memchr::memmem::find(&exe, &big[..1000]).is_none(), "{compressor}: the file is compressed");
        let r = engine.scan_bytes("t.exe", &exe);
        let hits: Vec<String> =
            r.root.findings().into_iter().map(|(p, l)| format!("{p}: {}", l.verdict.label())).collect();
        assert_eq!(hits, ["t.exe › content.001: Test.Big FOUND"], "{compressor}");
        // clamscan finds it too
        let clam = std::process::Command::new("clamscan")
            .args(["--no-summary", "-d", "big.hdb", "t.exe"])
            .current_dir(dir)
            .output()
            .expect("clamscan (scripts/test.sh installs clamav)");
        let said = String::from_utf8_lossy(&clam.stdout);
        assert!(said.contains("Test.Big.UNOFFICIAL FOUND"), "clamscan, {compressor}: {said}");
    }
}

/// Archives made by a real tool (Debian's `arj`), one per method (stored, the three LZ77 +
/// Huffman levels, "fastest"): a 1.3 MB text over many Huffman blocks, 100 KB of random bytes
/// and EICAR, every member read whole with its CRC-32 right, EICAR found; a garbled (encrypted)
/// archive reported encrypted (issue 17).
#[test]
fn archives_made_by_arj_are_opened() {
    let tool = Path::new("/usr/bin/arj");
    assert!(tool.exists(), "arj is not installed: run scripts/test.sh, which installs it");
    let tmp = testkit::TempDir::new("arj");
    let dir = tmp.path();
    let big: Vec<u8> = (0..20_000u32)
        .flat_map(|i| {
            format!("line {} of the big text file {}\n", i % 997, i.wrapping_mul(2_654_435_761) % 100_000).into_bytes()
        })
        .collect();
    let random = testkit::pseudo_random(11, 100_000);
    std::fs::write(dir.join("big.txt"), &big).unwrap();
    std::fs::write(dir.join("rand.bin"), &random).unwrap();
    std::fs::write(dir.join("eicar.com"), b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
        .unwrap();
    let engine = engine();
    for method in ["-m0", "-m1", "-m2", "-m3", "-m4"] {
        let name = format!("t{method}.arj");
        let out = std::process::Command::new(tool)
            .args(["a", method, "-y", &name, "big.txt", "rand.bin", "eicar.com"])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{method}: {}", String::from_utf8_lossy(&out.stdout));
        let r = engine.scan_bytes(&name, &std::fs::read(dir.join(&name)).unwrap());
        let members: Vec<(String, u64, Option<String>)> =
            r.root.children.iter().map(|c| (c.name.clone(), c.size, c.damaged.clone())).collect();
        assert_eq!(
            members,
            vec![
                ("big.txt".to_string(), big.len() as u64, None),
                ("rand.bin".to_string(), 100_000, None),
                ("eicar.com".to_string(), 68, None)
            ],
            "{method}"
        );
        assert_eq!(r.verdict(), Verdict::Infected("Eicar-Test-Signature".into()), "{method}");
    }
    let out = std::process::Command::new(tool)
        .args(["a", "-gsecret", "-y", "g.arj", "eicar.com"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = engine.scan_bytes("g.arj", &std::fs::read(dir.join("g.arj")).unwrap());
    assert_eq!(r.verdict(), Verdict::Encrypted("Encrypted.ARJ".into()));
}

/// A compiled help file (ClamAV's `clam.chm`, made by Microsoft's help compiler): every file it
/// lists, stored and LZX-compressed, is read byte for byte as 7-Zip extracts it (issue 17).
#[test]
fn a_help_file_is_read_as_7zip_reads_it() {
    let chm = Path::new("/usr/share/clamav-testfiles/clam.chm");
    let tmp = testkit::TempDir::new("chm");
    let dir = tmp.path();
    let status = std::process::Command::new("7z")
        .arg("x")
        .arg("-y")
        .arg(format!("-o{}", dir.display()))
        .arg(chm)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("7z (scripts/test.sh installs p7zip-full)");
    assert!(status.success());
    let r = engine().scan_bytes("clam.chm", &std::fs::read(chm).unwrap());
    // the empty files hold nothing to scan
    let extracted: Vec<_> =
        testkit::corpus::files_in(dir).into_iter().filter(|f| std::fs::metadata(f).unwrap().len() > 0).collect();
    assert_eq!(
        r.root.children.len(),
        extracted.len(),
        "{:?}",
        r.root.children.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    let mut engine_files = std::collections::BTreeMap::new();
    for c in &r.root.children {
        assert!(c.damaged.is_none(), "{}: {:?}", c.name, c.damaged);
        engine_files.insert(c.name.clone(), c.size);
    }
    for f in extracted {
        let name = f.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let size = std::fs::metadata(&f).unwrap().len();
        assert_eq!(engine_files.get(&name), Some(&size), "{name}");
    }
    let found: Vec<(String, String)> = r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.label())).collect();
    assert_eq!(found, vec![("clam.chm › clam.exe.txt".to_string(), "ClamAV-Test-File FOUND".to_string())]);
}

/// A PDF written by a real tool (`qpdf`: compressed streams, object streams, EICAR attached as
/// an embedded file): the attachment is found in its decoded stream, the file itself holding no
/// plain EICAR (issue 17).
#[test]
fn a_pdf_made_by_qpdf_gives_up_its_attachment() {
    let tool = Path::new("/usr/bin/qpdf");
    assert!(tool.exists(), "qpdf is not installed: run scripts/test.sh, which installs it");
    let tmp = testkit::TempDir::new("qpdf");
    let dir = tmp.path();
    // a one-page PDF to start from
    const CONTENT: &str = "BT /F1 12 Tf 72 712 Td (Invoice attached) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_string(),
        format!("<< /Length {} >>\nstream\n{CONTENT}\nendstream", CONTENT.len()),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).into_bytes());
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for o in offsets {
        pdf.extend(format!("{o:010} 00000 n \n").into_bytes());
    }
    pdf.extend(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).into_bytes(),
    );
    std::fs::write(dir.join("base.pdf"), pdf).unwrap();
    std::fs::write(dir.join("eicar.txt"), b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
        .unwrap();
    let status = std::process::Command::new(tool)
        .args(["--compress-streams=y", "--object-streams=generate", "--add-attachment", "eicar.txt", "--"])
        .args(["base.pdf", "out.pdf"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let out = std::fs::read(dir.join("out.pdf")).unwrap();
    assert!(memchr::memmem::find(&out, b"EICAR").is_none(), "the attachment is compressed");
    let r = engine().scan_bytes("out.pdf", &out);
    let found: Vec<(String, String)> = r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.label())).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.ends_with("(embedded file)"), "{found:?}");
    assert_eq!(found[0].1, "Eicar-Test-Signature FOUND");
}

/// A cabinet compressed with LZX by Microsoft's tools (the `engine32.cab` inside ClamAV's
/// `clam_IScab_int.exe` InstallShield setup): every member decoded — its DLLs are executables
/// whose headers parse, its registry scripts text — nothing reported unsupported (issue 17).
#[test]
fn an_lzx_cabinet_is_opened() {
    let setup = std::fs::read("/usr/share/clamav-testfiles/clam_IScab_int.exe").unwrap();
    let r = engine().scan_bytes("clam_IScab_int.exe", &setup);
    let cab = r.root.children.iter().find(|c| c.name.ends_with("engine32.cab")).expect("engine32.cab");
    assert_eq!(cab.file_type, scan::FileType::Cab);
    let members: Vec<(&str, scan::FileType, u64)> =
        cab.children.iter().map(|c| (c.name.as_str(), c.file_type, c.size)).collect();
    assert_eq!(members.len(), 13, "{members:?}");
    assert!(members.contains(&("IKernel.dll", scan::FileType::Pe, 753_664)), "{members:?}");
    assert!(members.contains(&("iKernel.rgs", scan::FileType::Text, 38_081)), "{members:?}");
    assert!(cab.children.iter().all(|c| c.verdict == Verdict::Clean && c.damaged.is_none()), "{:?}", cab.children);
    // the same setup's InstallShield cabinets (data1.hdr's file table, data1.cab and data2.cab:
    // chunks of raw deflate): every file whole, its MD5 as the table gives it
    let names: Vec<&str> = r.root.children.iter().map(|c| c.name.as_str()).collect();
    for want in ["isrt.dll", "_IsRes.dll", "license.rtf", "clam.exe"] {
        let c = r.root.children.iter().find(|c| c.name == want).unwrap_or_else(|| panic!("{want} in {names:?}"));
        assert!(c.damaged.is_none(), "{want}: {:?}", c.damaged);
    }
}

/// ISO 9660 images and OneNote notebooks from ClamAV's own tests (testdata): clam.exe in a
/// plain image and in a Joliet image, and attached to OneNote 2007 and 2010 notebooks (issue
/// 17), and in the notebook exported by the OneNote web app (its files in MS-FSSHTTPB Object
/// Data BLOBs).
#[test]
fn clam_exe_in_disk_images_and_notebooks() {
    let dir = testkit::corpus::dir().join("clamav-upstream-extra");
    let engine = engine();
    for (name, path) in [
        ("clam.iso", "clam.iso › DIR/CLAM.EXE"),
        ("clamjol.iso", "clamjol.iso › long_dir_is_long/clam_exe_with_a_long_name.exe"),
        ("clam.exe.2007.one", "clam.exe.2007.one › embedded file 1"),
        ("clam.exe.2010.one", "clam.exe.2010.one › embedded file 2"),
        ("clam.exe.webapp-export.one", "clam.exe.webapp-export.one › data blob 3"),
    ] {
        let r = engine.scan_bytes(name, &std::fs::read(dir.join(name)).unwrap());
        let found: Vec<(String, String)> = r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.label())).collect();
        assert_eq!(found, vec![(path.to_string(), "ClamAV-Test-File FOUND".to_string())], "{name}");
    }
}

/// Disk images made by a real tool (`genisoimage`, plain, with Joliet and Rock Ridge names, and
/// a tree of directories; and its UDF volume alone): EICAR found in its file two directories
/// down, every file read (issue 17).
#[test]
fn a_disk_image_made_by_genisoimage_is_opened() {
    let tool = Path::new("/usr/bin/genisoimage");
    assert!(tool.exists(), "genisoimage is not installed: run scripts/test.sh, which installs it");
    let tmp = testkit::TempDir::new("iso");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("tree/docs/deeper")).unwrap();
    let eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    std::fs::write(dir.join("tree/docs/deeper/invoice 2026.pdf.exe"), eicar).unwrap();
    std::fs::write(dir.join("tree/readme.txt"), b"nothing to see").unwrap();
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(dir.join("tree/docs/big.bin"), &big).unwrap();
    // the plain image has ISO 9660 level-1 names (8.3, upper case); Joliet keeps the real ones
    for (image, flags, path) in [
        ("plain.iso", &[][..], "plain.iso › DOCS/DEEPER/"),
        ("joliet.iso", &["-J", "-R"][..], "joliet.iso › docs/deeper/invoice 2026.pdf.exe"),
    ] {
        let status = std::process::Command::new(tool)
            .args(["-quiet", "-o", image])
            .args(flags)
            .arg("tree")
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "{image}");
        let iso = std::fs::read(dir.join(image)).unwrap();
        let r = engine().scan_bytes(image, &iso);
        let found: Vec<(String, String)> = r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.label())).collect();
        assert_eq!(found.len(), 1, "{image}: {found:?}");
        assert!(found[0].0.starts_with(path), "{image}: {found:?}");
        assert_eq!(found[0].1, "Eicar-Test-Signature FOUND");
        let sizes: Vec<u64> = r.root.children.iter().map(|c| c.size).collect();
        assert!(sizes.contains(&(big.len() as u64)), "{image}: the big file read whole: {sizes:?}");
    }
    // UDF only: genisoimage's UDF volume (`-udf`) with its ISO 9660 descriptors taken out and
    // the UDF recognition sequence moved up to sector 16, as an image Windows writes begins
    let status = std::process::Command::new(tool)
        .args(["-quiet", "-udf", "-o", "hybrid.iso", "tree"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "genisoimage -udf");
    let mut image = std::fs::read(dir.join("hybrid.iso")).unwrap();
    const SECTOR: usize = 2048;
    let descriptors: Vec<Vec<u8>> =
        (16..32).map(|s| image[s * SECTOR..(s + 1) * SECTOR].to_vec()).take_while(|d| d[1..6] != [0; 5]).collect();
    let recognition: Vec<&Vec<u8>> = descriptors.iter().filter(|d| &d[1..6] != b"CD001").collect();
    assert_eq!(recognition.len(), 3, "BEA01, NSR02, TEA01");
    image[16 * SECTOR..(16 + descriptors.len()) * SECTOR].fill(0);
    for (i, d) in recognition.iter().enumerate() {
        image[(16 + i) * SECTOR..(17 + i) * SECTOR].copy_from_slice(d);
    }
    assert!(memchr::memmem::find(&image, b"CD001").is_none());
    let r = engine().scan_bytes("udf.iso", &image);
    let found: Vec<(String, String)> = r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.label())).collect();
    assert_eq!(
        found,
        [("udf.iso › docs/deeper/invoice 2026.pdf.exe".to_string(), "Eicar-Test-Signature FOUND".to_string())]
    );
    let files: Vec<(Option<&str>, u64)> = r.root.children.iter().map(|c| (c.filename.as_deref(), c.size)).collect();
    assert!(files.contains(&(Some("docs/big.bin"), big.len() as u64)), "the big file read whole: {files:?}");
    assert!(files.contains(&(Some("readme.txt"), 14)), "{files:?}");
}

/// A cabinet made by a real tool (`gcab -z`: MSZIP, a 200 KB member spanning several 32 KiB
/// blocks that refer back across block boundaries, then the EICAR file): every member read
/// whole, EICAR found in its member (issue 17).
#[test]
fn a_cabinet_made_by_gcab_is_opened() {
    let gcab = Path::new("/usr/bin/gcab");
    assert!(gcab.exists(), "gcab is not installed: run scripts/test.sh, which installs it");
    let tmp = testkit::TempDir::new("gcab");
    let dir = tmp.path();
    let big: Vec<u8> =
        (0..8_000).flat_map(|i| format!("line {} of the big text file\n", i % 997).into_bytes()).collect();
    std::fs::write(dir.join("big.txt"), &big).unwrap();
    let eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    std::fs::write(dir.join("eicar.com"), eicar).unwrap();
    let status = std::process::Command::new(gcab)
        .args(["-c", "-z", "test.cab", "big.txt", "eicar.com"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let cab = std::fs::read(dir.join("test.cab")).unwrap();
    assert!(cab.len() < big.len() / 2, "compressed: {} bytes", cab.len());
    let r = engine().scan_bytes("test.cab", &cab);
    let found: Vec<(String, String)> = r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.label())).collect();
    assert_eq!(found, vec![("test.cab › eicar.com".to_string(), "Eicar-Test-Signature FOUND".to_string())]);
    assert_eq!(r.root.children.len(), 2);
    assert_eq!(r.root.children[0].size, big.len() as u64, "the whole member inflated");
    assert!(r.root.children.iter().all(|c| c.damaged.is_none()));
}

/// The depth limit counts as ClamAV's `MaxRecursion` does: `clamscan --max-recursion=17`
/// finds clam.exe in `clam_cache_emax.tgz` (18 layers: nine gzip + tar pairs) and 16 does not
/// (checked with Debian's clamscan 1.4 and the same SHA-256 signature); so here: 17 reaches
/// it, 16 stops at the limit (refused rather than passed as clean).
#[test]
fn the_depth_limit_counts_as_clamav_counts_it() {
    let data = std::fs::read("/usr/share/clamav-testfiles/clam_cache_emax.tgz").unwrap();
    let scan = |max_depth| {
        Engine::new(Arc::new(Signatures::builtin()), Limits { max_depth, ..Limits::default() })
            .scan_bytes("clam_cache_emax.tgz", &data)
            .verdict()
    };
    assert_eq!(scan(17), Verdict::Infected("ClamAV-Test-File".into()));
    assert!(matches!(scan(16), Verdict::LimitExceeded(_)), "{:?}", scan(16));
}
