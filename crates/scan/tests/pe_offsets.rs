//! PE-aware signatures against ClamAV (issue 11): for every Windows executable among ClamAV's
//! own test files (plain and packed by UPX, ASPack, FSG, MEW, NSIS, PESpin, Petite, Upack,
//! WWPack, yC, AutoIt, InstallShield — headers as real tools write them, several unusual),
//! signatures are made from the bytes at the entry point, each section, the last section, with
//! shifts, `SEx`, `EP-n`, logical conditions `EntryPoint:` and `NumberOfSections:` and PCREs at
//! `EP+n`, section hashes (`.mdb`, `.msb`), import table hashes (`.imp`) — some made to miss
//! by one byte — and each is
//! matched by the engine and by clamscan
//! (Debian's clamav, installed by scripts/test.sh). They must agree, and most must match.

use mxshield_scan as scan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};
use scan::sigdb::SigDb;
use scan::{FileType, Signatures};
use sha2::Sha256;

const TESTFILES: &str = "/usr/share/clamav-testfiles";

fn executables() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(TESTFILES)
        .unwrap_or_else(|e| panic!("{TESTFILES}: {e} (scripts/test.sh installs clamav-testfiles)"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "exe"))
        .collect();
    v.sort();
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// (kind, name, line) signatures made from `data`'s layout.
fn signatures(stem: &str, data: &[u8], pe: &scan::pe::PeInfo, target: u32) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let at = |o: u64, n: usize| data.get(o as usize..o as usize + n).map(hex);
    let mut ndb = |label: &str, offset: String, o: u64| {
        if let Some(h) = at(o, 12) {
            let name = format!("Pe.{stem}.{label}");
            out.push(("ndb", name.clone(), format!("{name}:{target}:{offset}:{h}")));
        }
    };
    let ep = u64::from(pe.ep);
    ndb("Ep0", "EP+0".into(), ep);
    ndb("Ep7", "EP+7".into(), ep + 7);
    if ep >= 2 {
        ndb("EpMinus2", "EP-2".into(), ep - 2);
    }
    ndb("Ep1Miss", "EP+1".into(), ep);
    ndb("EpShift", "EP+0,6".into(), ep + 4);
    ndb("EpShiftMiss", "EP+0,2".into(), ep + 4);
    for (i, s) in pe.sections.iter().enumerate() {
        if s.rsz >= 32 {
            ndb(&format!("S{i}"), format!("S{i}+3"), u64::from(s.raw) + 3);
        }
    }
    if let Some(last) = pe.sections.last() {
        ndb("Sl1", "SL+1".into(), u64::from(last.raw) + 1);
    }
    let n = pe.sections.len();
    let mut lines = Vec::new();
    for (i, s) in pe.sections.iter().enumerate() {
        // with a wildcard, as libclamav's Aho-Corasick matcher takes it (anywhere in the section)
        if s.rsz >= 64
            && let Some(h) = at(u64::from(s.raw) + u64::from(s.rsz) / 3, 12)
        {
            let name = format!("Pe.{stem}.Se{i}");
            lines.push(("ndb", name.clone(), format!("{name}:{target}:SE{i}:{}??{}", &h[..10], &h[12..])));
        }
    }
    if let Some(h) = at(ep, 12) {
        for (label, cond) in [
            ("LdbEp", format!("EntryPoint:{ep}-{ep},NumberOfSections:{n}-{n}")),
            ("LdbEpMiss", format!("EntryPoint:{}-{}", ep + 1, ep + 100)),
            ("LdbNosMiss", format!("NumberOfSections:{}-{}", n + 1, n + 5)),
        ] {
            let name = format!("Pe.{stem}.{label}");
            lines.push(("ldb", name.clone(), format!("{name};Engine:81-255,Target:{target},{cond};0;{h}")));
        }
        let re: String =
            h.as_bytes().chunks(2).take(6).map(|c| format!("\\x{}", std::str::from_utf8(c).unwrap())).collect();
        for (label, off) in [("PcreEp", "EP+0"), ("PcreEpMiss", "EP+1")] {
            let name = format!("Pe.{stem}.{label}");
            lines.push(("ldb", name.clone(), format!("{name};Engine:81-255,Target:{target};0&1;{h};{off}:0/{re}/")));
        }
    }
    out.extend(lines);
    if target != 1 {
        return out;
    }
    // section hashes: MD5 (.mdb) and SHA-256 (.msb) of each section's bytes, and one with the
    // wrong size (a section with the same bytes as an earlier one — Upack's — once: one hash,
    // one name)
    let mut seen = BTreeSet::new();
    for (i, s) in pe.sections.iter().enumerate().filter(|(_, s)| s.rsz != 0 && seen.insert((s.raw, s.rsz))) {
        let bytes = &data[s.raw as usize..(s.raw + s.rsz) as usize];
        let name = format!("Pe.{stem}.Md5S{i}");
        out.push(("mdb", name.clone(), format!("{}:{}:{name}", s.rsz, hex(&Md5::digest(bytes)))));
        let name = format!("Pe.{stem}.Sha256S{i}");
        out.push(("msb", name.clone(), format!("{}:{}:{name}", s.rsz, hex(&Sha256::digest(bytes)))));
        let name = format!("Pe.{stem}.Md5S{i}Miss");
        out.push(("mdb", name.clone(), format!("{}:{}:{name}", s.rsz + 1, hex(&Md5::digest(bytes)))));
    }
    // the import table hash (.imp), and one with the wrong size — except where an import by
    // ordinal from one of the DLLs libclamav names ordinals of (a known difference)
    // (a size of 0 is malformed, as for every hash signature)
    if let Some(text) = pe.import_table(data).filter(|t| !t.is_empty()) {
        let named_ordinals = ["ws2_32.ord", "wsock32.ord", "oleaut32.ord"];
        if !named_ordinals.iter().any(|o| text.windows(o.len()).any(|w| w == o.as_bytes())) {
            let name = format!("Pe.{stem}.Imp");
            out.push(("imp", name.clone(), format!("{}:{}:{name}", hex(&Md5::digest(&text)), text.len())));
            let name = format!("Pe.{stem}.ImpMiss");
            out.push(("imp", name.clone(), format!("{}:{}:{name}", hex(&Md5::digest(&text)), text.len() + 1)));
        }
    }
    out
}

/// For a file whose header does not parse: a signature at an absolute offset (it matches), and
/// ones relative to the end and to the entry point (no relative offset matches, as in
/// libclamav).
fn broken_signatures(stem: &str, data: &[u8], target: u32) -> Vec<(&'static str, String, String)> {
    let n = data.len();
    [
        ("Start", "0".to_string(), &data[..12]),
        ("End", "EOF-12".into(), &data[n - 12..]),
        ("Ep", "EP+0".into(), &data[..12]),
    ]
    .into_iter()
    .map(|(label, offset, bytes)| {
        let name = format!("Broken.{stem}.{label}");
        ("ndb", name.clone(), format!("{name}:{target}:{offset}:{}", hex(bytes)))
    })
    .collect()
}

fn clamscan_all(db: &Path, file: &Path) -> BTreeSet<String> {
    let out = Command::new("clamscan")
        .args(["--no-summary", "--allmatch", "-d"])
        .arg(db)
        .arg(file)
        .output()
        .expect("clamscan (scripts/test.sh installs clamav)");
    assert!(out.status.code().is_some_and(|c| c <= 1), "clamscan failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.rsplit_once(": ")?.1.strip_suffix(" FOUND").map(|n| n.trim_end_matches(".UNOFFICIAL").to_string())
        })
        .collect()
}

/// Each signature of `signatures` made for each of `files` (of type `ft`, parsed by `parse`),
/// matched alone by the engine and all together by clamscan: (executables parsed, signatures,
/// found by clamscan, disagreements).
fn compare(
    files: &[PathBuf],
    ft: FileType,
    target: u32,
    parse: fn(&[u8]) -> Option<scan::pe::PeInfo>,
) -> (usize, usize, usize, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("mxshield-exe-{target}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut cases, mut found, mut parsed) = (0, 0, 0);
    let mut differ = Vec::new();
    for file in files {
        let data = std::fs::read(file).unwrap();
        assert_eq!(FileType::detect(&data), ft, "{}", file.display());
        let stem = file.file_stem().unwrap().to_string_lossy().replace(['.', '-', '[', ']'], "_");
        let sigs = match parse(&data) {
            Some(info) => {
                parsed += 1;
                signatures(&stem, &data, &info, target)
            }
            None => broken_signatures(&stem, &data, target),
        };
        if sigs.is_empty() {
            continue;
        }
        let mut by_kind: BTreeMap<&str, String> = BTreeMap::new();
        for (kind, _, line) in &sigs {
            let text = by_kind.entry(kind).or_default();
            text.push_str(line);
            text.push('\n');
        }
        let db = dir.join(&stem);
        std::fs::create_dir_all(&db).unwrap();
        for (kind, text) in &by_kind {
            std::fs::write(db.join(format!("exe.{kind}")), text).unwrap();
        }
        let theirs = clamscan_all(&db, file);
        for (kind, name, line) in &sigs {
            let mut one = SigDb::default();
            one.load_file(&format!("one.{kind}"), format!("{line}\n").as_bytes()).unwrap();
            let ours = Signatures::compile(one.finished()).check(&data, ft).is_some();
            let clam = theirs.contains(name);
            cases += 1;
            found += usize::from(clam);
            if ours != clam {
                differ.push(format!("{}: {line}: mxshield {ours}, clamscan {clam}", file.display()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (parsed, cases, found, differ)
}

#[test]
fn pe_offsets_agree_with_clamscan() {
    let files = executables();
    assert!(files.len() >= 10, "ClamAV's test executables are missing");
    let (parsed, cases, found, differ) = compare(&files, FileType::Pe, 1, scan::pe::parse);
    println!(
        "PE offsets: {parsed} executables, {cases} signatures, clamscan found {found}, {} disagreements",
        differ.len()
    );
    assert!(parsed >= 10, "only {parsed} executables parsed");
    assert!(found * 2 > cases && found < cases, "clamscan found {found} of {cases}: not testing anything");
    assert!(differ.is_empty(), "{} disagreements:\n{}", differ.len(), differ.join("\n"));
}

/// The same for ELF files (target type 6): the system's own programs, whatever this machine
/// has of a list of small ones every Debian system carries.
#[test]
fn elf_offsets_agree_with_clamscan() {
    let names =
        ["ls", "cat", "env", "id", "head", "tail", "wc", "sort", "touch", "true", "false", "sleep", "tee", "uname"];
    let files: Vec<PathBuf> = names.iter().map(|n| Path::new("/usr/bin").join(n)).filter(|p| p.is_file()).collect();
    assert!(files.len() >= 8, "only {} of the usual programs in /usr/bin", files.len());
    let (parsed, cases, found, differ) = compare(&files, FileType::Elf, 6, scan::elf::parse);
    println!(
        "ELF offsets: {parsed} executables, {cases} signatures, clamscan found {found}, {} disagreements",
        differ.len()
    );
    assert!(parsed >= 8, "only {parsed} ELF files parsed");
    assert!(found * 2 > cases && found < cases, "clamscan found {found} of {cases}: not testing anything");
    assert!(differ.is_empty(), "{} disagreements:\n{}", differ.len(), differ.join("\n"));
}

/// A Mach-O file as a generator makes it: 32 or 64 bits, either byte order, a CPU type, segments
/// with sections (offsets, sizes, alignments), a thread command whose entry point lies in a
/// section (or not), other commands — and some broken the ways libclamav refuses.
fn macho(rng: &mut fastrand::Rng) -> Vec<u8> {
    let wide = rng.bool();
    let big = rng.u8(..4) == 0;
    let cpu: u32 = [7, 0x0100_0007, 18, 0x0100_0012, 12, 0x0100_000c][rng.usize(..6)];
    let mut cmds: Vec<Vec<u8>> = Vec::new();
    let put32 = |v: &mut Vec<u8>, x: u32| v.extend(if big { x.to_be_bytes() } else { x.to_le_bytes() });
    let put64 = |v: &mut Vec<u8>, x: u64| v.extend(if big { x.to_be_bytes() } else { x.to_le_bytes() });
    let file_len = 16384u32;
    let mut addrs = Vec::new();
    for seg in 0..rng.u32(1..4) {
        let nsects = if rng.u8(..20) == 0 { 256 } else { rng.u32(0..5) };
        let mut c = Vec::new();
        let mut name = [0u8; 16];
        name[..6].copy_from_slice(b"__SEG0");
        c.extend(name);
        let vmaddr = 0x1000 * (seg + 1) + rng.u32(..16) * 0x100;
        if wide {
            for x in [u64::from(vmaddr), 0x4000, 0, u64::from(file_len)] {
                put64(&mut c, x);
            }
        } else {
            for x in [vmaddr, 0x4000, 0, file_len] {
                put32(&mut c, x);
            }
        }
        for x in [7, 5, nsects, 0] {
            put32(&mut c, x);
        }
        for i in 0..nsects.min(8) {
            let (addr, size) = (vmaddr + i * 0x200 + rng.u32(..0x40), rng.u32(0..0x300));
            let offset = rng.u32(0x800..file_len - 0x400);
            let align = match rng.u8(..12) {
                0 => 31,
                1 if !wide => 33,
                1 => 40,
                _ => rng.u32(0..13),
            };
            addrs.push((addr, size));
            c.extend(b"__sect\0\0\0\0\0\0\0\0\0\0__SEG0\0\0\0\0\0\0\0\0\0\0");
            if wide {
                put64(&mut c, u64::from(addr));
                put64(&mut c, u64::from(size));
            } else {
                put32(&mut c, addr);
                put32(&mut c, size);
            }
            for x in [offset, align, 0, 0, 0, 0, 0] {
                put32(&mut c, x);
            }
            if wide {
                put32(&mut c, 0);
            }
        }
        let cmd = if wide { 0x19 } else { 0x01 };
        cmds.push(
            [cmd, c.len() as u32 + 8]
                .into_iter()
                .flat_map(|x| if big { x.to_be_bytes() } else { x.to_le_bytes() })
                .chain(c)
                .collect(),
        );
    }
    if rng.u8(..4) != 0 {
        // the thread command: PowerPC's program counter is the entry point
        let state = match cpu {
            7 => 64,
            0x0100_0012 => 312,
            _ => 160,
        };
        let ep = match addrs.get(rng.usize(..addrs.len().max(1))) {
            Some(&(addr, size)) if rng.u8(..8) != 0 => addr + rng.u32(0..size.max(1)),
            _ => 0x9000_0000 + rng.u32(..0x1000),
        };
        let mut c = Vec::new();
        put32(&mut c, [4, 5][rng.usize(..2)]);
        put32(&mut c, 16 + state);
        put32(&mut c, 1);
        put32(&mut c, state / 4);
        let mut st = vec![0u8; state as usize];
        if state == 312 {
            st[..8].copy_from_slice(&if big { u64::from(ep).to_be_bytes() } else { u64::from(ep).to_le_bytes() });
        } else {
            st[..4].copy_from_slice(&if big { ep.to_be_bytes() } else { ep.to_le_bytes() });
        }
        c.extend(st);
        cmds.insert(rng.usize(..=cmds.len()), c);
    }
    if rng.bool() {
        // LC_MAIN and LC_UUID, which libclamav passes over by their size
        let mut c = Vec::new();
        for x in [0x8000_0028u32, 24, 0x100, 0, 0, 0] {
            put32(&mut c, x);
        }
        cmds.insert(rng.usize(..=cmds.len()), c);
    }
    let ncmds = if rng.u8(..25) == 0 { 0 } else { cmds.len() as u32 };
    let magic: u32 = if wide { 0xfeed_facf } else { 0xfeed_face };
    let mut out = Vec::new();
    put32(&mut out, magic);
    for x in [cpu, 3, 2, ncmds, cmds.iter().map(|c| c.len() as u32).sum(), 0] {
        put32(&mut out, x);
    }
    if wide {
        put32(&mut out, 0);
    }
    for c in cmds {
        out.extend(c);
    }
    while out.len() < file_len as usize {
        out.push(rng.u8(..));
    }
    out
}

/// The same for Mach-O files (target type 9), made by a generator (this machine has none):
/// 60 files, some broken as libclamav refuses them (`MACHO_SEED=n` runs another set).
#[test]
fn macho_offsets_agree_with_clamscan() {
    let dir = std::env::temp_dir().join(format!("mxshield-macho-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = fastrand::Rng::with_seed(std::env::var("MACHO_SEED").map_or(9, |s| s.parse().unwrap()));
    let files: Vec<PathBuf> = (0..60)
        .map(|i| {
            let p = dir.join(format!("m{i:02}.bin"));
            std::fs::write(&p, macho(&mut rng)).unwrap();
            p
        })
        .collect();
    let (parsed, cases, found, differ) = compare(&files, FileType::MachO, 9, scan::macho::parse);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "Mach-O offsets: {parsed} of {} files parsed, {cases} signatures, clamscan found {found}, {} disagreements",
        files.len(),
        differ.len()
    );
    assert!(parsed >= 30 && parsed < files.len(), "{parsed} of {} parsed: the generator tests too little", files.len());
    assert!(found * 2 > cases && found < cases, "clamscan found {found} of {cases}: not testing anything");
    assert!(differ.is_empty(), "{} disagreements:\n{}", differ.len(), differ.join("\n"));
}
