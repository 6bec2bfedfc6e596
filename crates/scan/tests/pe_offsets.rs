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
        let Some(info) = parse(&data) else { continue };
        parsed += 1;
        let stem = file.file_stem().unwrap().to_string_lossy().replace(['.', '-', '[', ']'], "_");
        let sigs = signatures(&stem, &data, &info, target);
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
