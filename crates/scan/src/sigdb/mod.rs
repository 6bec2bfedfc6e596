//! Loading ClamAV-format signature databases from a directory.
//!
//! Read: `.hdb`/`.hdu` (MD5), `.hsb`/`.hsu` (SHA1/SHA256), `.ndb`/`.ndu` (body signatures),
//! `.ldb`/`.ldu` (logical signatures, a subset), `.fp`/`.sfp` (allow-lists), `.ign2`/`.ign`
//! (signature names to drop), and `.cvd`/`.cld`/`.cud` containers as freshclam writes them.
//! Signatures of kinds or syntax not supported are counted by reason ([`LoadStats`]), never
//! silently dropped; a malformed line is an error naming the file and line.

pub mod bytecmp;
pub mod cvd;
pub mod hashes;
pub mod logical;
pub mod pattern;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use hashes::{ANY_SIZE, DigestTables, HashKind, digest_bytes};
use logical::Expr;
use md5::Digest;
use pattern::{Pattern, PatternError};

/// Where a body signature may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// Anywhere.
    Any,
    /// At exactly this offset.
    Exact(u64),
    /// Between these offsets (inclusive).
    Window(u64, u64),
    /// At this many bytes before the end (and up to `1` more bytes later).
    FromEnd(u64, u64),
    /// An executable's layout (target types 1, PE, and 6, ELF), plus up to `shift` more bytes.
    Exe {
        /// Where it counts from.
        base: ExeBase,
        /// The shift (`,n`).
        shift: u64,
    },
}

/// What an executable-relative offset counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeBase {
    /// `EP+n` (`n` ≥ 0) or `EP-n` (negative).
    EntryPoint(i64),
    /// `Sx+n`: section `x`'s file offset plus `n`.
    Section(u32, u64),
    /// `SL+n`: the last section's file offset plus `n`.
    LastSection(u64),
    /// `SEx`: anywhere in section `x`.
    WholeSection(u32),
}

impl Offset {
    /// The first and last start this offset allows in a buffer of `len` bytes laid out as
    /// `layout`; `None` when it allows none (libclamav: `CLI_OFF_NONE`). An executable whose
    /// header does not parse has no relative offset at all, not even `EOF-n`, as in libclamav.
    pub fn resolve(self, len: u64, layout: &Layout) -> Option<(u64, u64)> {
        match (self, layout) {
            (Offset::Any, _) => Some((0, len)),
            (Offset::Exact(n), _) => Some((n, n)),
            (Offset::Window(a, b), _) => Some((a, b)),
            (Offset::FromEnd(..) | Offset::Exe { .. }, Layout::BrokenExe) => None,
            (Offset::FromEnd(n, shift), _) => len.checked_sub(n).map(|s| (s, s + shift)),
            (Offset::Exe { .. }, Layout::Plain) => None,
            (Offset::Exe { base, shift }, Layout::Pe(pe) | Layout::Elf(pe) | Layout::MachO(pe)) => {
                let section = |x: u32| pe.sections.get(x as usize);
                let start = match base {
                    ExeBase::EntryPoint(n) => u64::from(pe.ep).checked_add_signed(n)?,
                    ExeBase::Section(x, n) => u64::from(section(x)?.raw) + n,
                    ExeBase::LastSection(n) => u64::from(pe.sections.last()?.raw) + n,
                    ExeBase::WholeSection(x) => {
                        let s = section(x)?;
                        return Some((u64::from(s.raw), u64::from(s.raw) + u64::from(s.rsz) + shift));
                    }
                };
                Some((start, start + shift))
            }
        }
    }
}

/// How a buffer is laid out, for offsets relative to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Not an executable: offsets from the start and the end only.
    Plain,
    /// A PE file whose header parsed.
    Pe(crate::pe::PeInfo),
    /// An ELF file whose headers parsed (its entry point and sections).
    Elf(crate::pe::PeInfo),
    /// A Mach-O file whose header parsed (its entry point and sections).
    MachO(crate::pe::PeInfo),
    /// An executable whose header did not parse.
    BrokenExe,
}

impl Layout {
    /// The layout of `data`, of type `ft`.
    pub fn of(data: &[u8], ft: crate::FileType) -> Layout {
        match ft {
            crate::FileType::Pe => crate::pe::parse(data).map_or(Layout::BrokenExe, Layout::Pe),
            crate::FileType::Elf => crate::elf::parse(data).map_or(Layout::BrokenExe, Layout::Elf),
            crate::FileType::MachO => crate::macho::parse(data).map_or(Layout::BrokenExe, Layout::MachO),
            _ => Layout::Plain,
        }
    }
}

/// A body signature (`.ndb`).
#[derive(Debug, Clone)]
pub struct BodySig {
    /// Index of its name.
    pub name: u32,
    /// ClamAV target type (0 = any file).
    pub target: u32,
    /// Where the pattern must match.
    pub offset: Offset,
    /// The pattern.
    pub pattern: Pattern,
}

/// A logical signature (`.ldb`).
#[derive(Debug, Clone)]
pub struct LogicalSig {
    /// Index of its name.
    pub name: u32,
    /// ClamAV target type (0 = any file).
    pub target: u32,
    /// File size range, if any.
    pub file_size: Option<(u64, u64)>,
    /// `Container:` — the type of container the buffer must have come out of; `Some(None)`
    /// for `CL_TYPE_ANY`, which libclamav compares with the type of "no container": the
    /// buffer must be the top layer.
    pub container: Option<Option<crate::FileType>>,
    /// `EntryPoint:a-b` — the entry point's file offset (a PE whose header parsed).
    pub entry_point: Option<(u64, u64)>,
    /// `NumberOfSections:a-b` (a PE whose header parsed).
    pub sections: Option<(u64, u64)>,
    /// The logical expression over the subsignatures.
    pub expr: Expr,
    /// The subsignatures, each in one or more forms (`::wa`: plain and wide), whose matches
    /// count together; a PCRE sub-signature has no form here (see `regexes`).
    pub subs: Vec<(Offset, Vec<Pattern>)>,
    /// The PCRE sub-signatures, by sub-signature number, in order.
    pub regexes: Vec<(usize, RegexSub)>,
    /// The byte-compare sub-signatures, by sub-signature number.
    pub compares: Vec<(usize, bytecmp::ByteCompare)>,
}

/// A PCRE sub-signature of a logical signature: `[Offset:]Trigger/PCRE/[Flags]`. It runs after
/// the other sub-signatures were counted, when its trigger (an expression over the
/// sub-signatures before it) holds.
#[derive(Debug, Clone)]
pub struct RegexSub {
    /// Where the match must start (see the flags).
    pub offset: Offset,
    /// When to run it.
    pub trigger: Expr,
    /// The compiled expression.
    pub regex: std::sync::Arc<crate::pcre::Regex>,
    /// `g`: count every match, not only the first.
    pub global: bool,
    /// `r`: search from the offset on instead of only at it.
    pub rolling: bool,
    /// `e`: confine the search to the offset's window.
    pub encompass: bool,
}

/// Counts of what was loaded and of what was not supported, by reason.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// MD5 hash signatures.
    pub md5: usize,
    /// SHA-1 hash signatures.
    pub sha1: usize,
    /// SHA-256 hash signatures.
    pub sha256: usize,
    /// PE section hash signatures (`.mdb`, `.msb`).
    pub sections: usize,
    /// PE import table hash signatures (`.imp`).
    pub imports: usize,
    /// Body signatures.
    pub body: usize,
    /// Logical signatures.
    pub logical: usize,
    /// Allow-list entries.
    pub allow: usize,
    /// Names to ignore.
    pub ignored_names: usize,
    /// Signatures left out by an `.ign2` `NAME:MD5` entry.
    pub ignored_lines: usize,
    /// reason → number of signatures.
    pub unsupported: BTreeMap<String, usize>,
    /// Signatures of a supported kind skipped because something in them is not built here,
    /// with where they are (the first [`MAX_SKIPPED_LISTED`]).
    pub skipped: Vec<Skipped>,
    /// Skipped signatures beyond those listed.
    pub skipped_more: usize,
    /// Signatures for other engine functionality levels, skipped as ClamAV skips them.
    pub other_level: usize,
    /// PUA database files not loaded (PUA detection is off).
    pub pua_files_skipped: usize,
    /// Files read (container members as `daily.cvd/daily.ndb`).
    pub files: Vec<String>,
}

/// Choices about what a database load takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Load the PUA databases (`.ndu`, `.ldu`, `.hdu`, `.hsu`: potentially unwanted
    /// applications). Off by default, as in ClamAV.
    pub pua: bool,
}

/// The functionality level (FLEVEL) of the ClamAV engine whose signature semantics this
/// engine follows (ClamAV 1.4.6). A signature whose minimum or maximum level excludes it is
/// skipped, as ClamAV skips signatures written for other engine versions.
pub const FUNCTIONALITY_LEVEL: u32 = 216;

/// Whether a signature for levels `min..=max` (either optional) applies at
/// [`FUNCTIONALITY_LEVEL`]; a field that is not a number is malformed.
fn level_applies(min: Option<&str>, max: Option<&str>) -> Result<bool, String> {
    let parse = |v: Option<&str>| -> Result<Option<u32>, String> {
        match v.map(str::trim) {
            None | Some("") => Ok(None),
            Some(t) => t.parse().map(Some).map_err(|_| format!("functionality level {t:?} is not a number")),
        }
    };
    let (min, max) = (parse(min)?, parse(max)?);
    Ok(min.is_none_or(|m| m <= FUNCTIONALITY_LEVEL) && max.is_none_or(|m| m >= FUNCTIONALITY_LEVEL))
}

/// How many skipped signatures are listed with their place.
pub const MAX_SKIPPED_LISTED: usize = 1000;

/// A signature skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file (or container member).
    pub file: String,
    /// Its line.
    pub line: usize,
    /// What is not supported.
    pub why: String,
}

impl LoadStats {
    /// Records a skipped signature.
    pub fn skip(&mut self, s: Skipped) {
        if self.skipped.len() < MAX_SKIPPED_LISTED {
            self.skipped.push(s);
        } else {
            self.skipped_more += 1;
        }
    }

    /// How many signatures were skipped in all.
    pub fn skipped_total(&self) -> usize {
        self.skipped.len() + self.skipped_more
    }
}

/// A malformed database.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}{}: {why}", if *line > 0 { format!(":{line}") } else { String::new() })]
pub struct LoadError {
    /// The file (or container member).
    pub file: String,
    /// The line (0: the whole file).
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

/// Signature names in one arena: name `i` ends at `ends[i]` and starts where `i - 1` ends.
#[derive(Debug, Default)]
pub struct Names {
    text: String,
    ends: Vec<u32>,
}

impl Names {
    fn add(&mut self, name: &str) -> u32 {
        self.text.push_str(name);
        self.ends.push(self.text.len() as u32);
        (self.ends.len() - 1) as u32
    }

    /// The name with this index.
    pub fn get(&self, i: u32) -> &str {
        let end = self.ends[i as usize] as usize;
        let start = if i == 0 { 0 } else { self.ends[i as usize - 1] as usize };
        &self.text[start..end]
    }

    fn reserve(&mut self, names: usize, bytes: usize) {
        self.ends.reserve(names);
        self.text.reserve(bytes);
    }

    fn shrink(&mut self) {
        self.ends.shrink_to_fit();
        self.text.shrink_to_fit();
    }
}

/// A loaded signature database (not yet compiled into matchers).
#[derive(Debug, Default)]
pub struct SigDb {
    /// Signature names.
    pub names: Names,
    /// Whole-file hash signatures (`.hdb`, `.hsb`).
    pub files: DigestTables,
    /// Allow-listed hashes (`.fp`, `.sfp`).
    pub allow: DigestTables,
    /// PE section hashes (`.mdb`, `.msb`), by section size.
    pub sections: DigestTables,
    /// PE import table hashes (`.imp`), by the hashed text's length.
    pub imports: DigestTables,
    /// Body signatures.
    pub body: Vec<BodySig>,
    /// Logical signatures.
    pub logical: Vec<LogicalSig>,
    /// Names to ignore (`.ign2`, `.ign`): every signature of the name.
    pub ignored: HashSet<String>,
    /// `.ign2` entries `NAME:MD5`: only the signature whose database line has this MD5.
    pub ignored_lines: HashSet<(String, [u8; 16])>,
    /// `ignored_lines` of every file, given before loading (a line they name is left out).
    pub drop_lines: std::sync::Arc<HashSet<(String, [u8; 16])>>,
    /// How to load.
    pub options: LoadOptions,
    /// What was loaded, and what not.
    pub stats: LoadStats,
    /// Container versions (`daily:27451`) or a digest of loose files.
    pub version: String,
    /// The file and line being read (for [`Skipped`]).
    position: (String, usize),
}

/// Whether a file in a database directory is a signature database (read or known and counted
/// as unsupported): what a release carries. freshclam's state files (`freshclam.dat`,
/// `mirrors.dat`) and the like are not.
pub fn is_database_file(name: &str) -> bool {
    const READ: &[&str] = &[
        "cvd", "cld", "cud", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "fp", "sfp", "ndb", "ndu", "ldb",
        "ldu", "ign", "ign2",
    ];
    let ext = extension(name);
    !name.starts_with('.') && (READ.contains(&ext.as_str()) || UNSUPPORTED_KINDS.iter().any(|(e, _)| *e == ext))
}

/// Extensions of ClamAV database kinds we know of but do not read.
const UNSUPPORTED_KINDS: &[(&str, &str)] = &[
    ("cdb", "container metadata (.cdb)"),
    ("cbc", "bytecode (.cbc)"),
    ("crb", "certificate rules (.crb)"),
    ("pdb", "phishing domains (.pdb)"),
    ("gdb", "phishing domains (.gdb)"),
    ("wdb", "phishing allow-list (.wdb)"),
    ("ftm", "file type magic (.ftm)"),
    ("idb", "icon signatures (.idb)"),
    ("yar", "YARA rules (.yar)"),
    ("yara", "YARA rules (.yara)"),
    ("pwdb", "archive passwords (.pwdb)"),
];

impl SigDb {
    /// An empty database loading as `options` say and leaving out the lines `drop_lines`
    /// name (`.ign2` `NAME:MD5`).
    pub fn with(options: LoadOptions, drop_lines: std::sync::Arc<HashSet<(String, [u8; 16])>>) -> SigDb {
        SigDb { drop_lines, options, ..SigDb::default() }
    }

    /// Loads every database file in `dir` (not recursive) into one database.
    pub fn load_dir(dir: &Path) -> Result<SigDb, LoadError> {
        SigDb::load_dir_with(dir, LoadOptions::default())
    }

    /// [`SigDb::load_dir`] with `options`.
    pub fn load_dir_with(dir: &Path, options: LoadOptions) -> Result<SigDb, LoadError> {
        let mut first = SigDb::with(options, Default::default());
        let mut digest = crc32fast::Hasher::new();
        let mut versions = Vec::new();
        let mut loose = false;
        for p in files_in(dir)? {
            match first.load_path(&p, &mut digest)? {
                Some(v) => versions.push(v),
                None => loose = true,
            }
        }
        // `NAME:MD5` entries name database lines: read again with them, leaving those out
        let mut db = if first.ignored_lines.is_empty() {
            first
        } else {
            let mut again = SigDb::with(options, std::sync::Arc::new(first.ignored_lines.clone()));
            for p in files_in(dir)? {
                again.load_path(&p, &mut crc32fast::Hasher::new())?;
            }
            again
        };
        db.finish();
        if loose {
            versions.push(format!("local:{:08x}", digest.finalize()));
        }
        db.version = version_text(versions);
        Ok(db)
    }

    /// Loads one database file (a `.cvd` container with all its members, or a plain
    /// file) into this database. A plain file's name and bytes are fed to `digest`; a
    /// container's version (`daily:27451`) is returned.
    pub fn load_path(&mut self, p: &Path, digest: &mut crc32fast::Hasher) -> Result<Option<String>, LoadError> {
        let name = file_name(p);
        if !self.options.pua && is_pua(&name) {
            self.stats.pua_files_skipped += 1;
            return Ok(None);
        }
        let io = |e: std::io::Error| LoadError { file: name.clone(), line: 0, why: e.to_string() };
        let ext = extension(&name);
        if matches!(ext.as_str(), "cvd" | "cld" | "cud") {
            let data = std::fs::read(p).map_err(io)?;
            let (version, members) = cvd::open(&name, &data)?;
            for (member, content) in members {
                self.load_file(&format!("{name}/{member}"), &content)?;
            }
            return Ok(Some(version));
        }
        digest.update(name.as_bytes());
        let file = std::fs::File::open(p).map_err(io)?;
        if matches!(ext.as_str(), "hdb" | "hdu" | "hsb" | "hsu") {
            // about 55 bytes a line, a third of it the name: size the arrays once
            let bytes = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
            self.names.reserve(bytes / 50, bytes / 3);
            self.files.md5.reserve(bytes / 50);
        }
        self.load_reader(&name, std::io::BufReader::with_capacity(256 * 1024, file), digest)?;
        Ok(None)
    }

    /// Loads one database file (in memory) by its name's extension.
    pub fn load_file(&mut self, name: &str, data: &[u8]) -> Result<(), LoadError> {
        if !self.options.pua && is_pua(name) {
            self.stats.pua_files_skipped += 1;
            return Ok(());
        }
        self.load_reader(name, data, &mut crc32fast::Hasher::new())
    }

    /// Loads one database file line by line, feeding its bytes to `digest`.
    pub fn load_reader(
        &mut self,
        name: &str,
        mut reader: impl std::io::BufRead,
        digest: &mut crc32fast::Hasher,
    ) -> Result<(), LoadError> {
        let ext = extension(name);
        let kind = match ext.as_str() {
            "hdb" | "hdu" | "hsb" | "hsu" => Kind::Hash { to: HashDest::Files },
            "fp" | "sfp" => Kind::Hash { to: HashDest::Allow },
            "mdb" | "mdu" | "msb" | "msu" => Kind::Hash { to: HashDest::Sections },
            "imp" => Kind::Hash { to: HashDest::Imports },
            "ndb" | "ndu" => Kind::Body,
            "ldb" | "ldu" => Kind::Logical,
            "ign" | "ign2" => Kind::Ignore,
            "info" | "cfg" | "sign" | "txt" | "md" => return Ok(()),
            other => Kind::Unsupported(
                UNSUPPORTED_KINDS
                    .iter()
                    .find(|(e, _)| *e == other)
                    .map(|(_, r)| r.to_string())
                    .unwrap_or_else(|| format!("unknown database kind (.{other})")),
            ),
        };
        // Whole lines are taken from the reader's buffer; only a line split across two reads
        // is copied.
        let mut carry: Vec<u8> = Vec::new();
        let mut n = 0;
        let err = |n: usize, why: String| LoadError { file: name.to_string(), line: n, why };
        loop {
            let buf = reader.fill_buf().map_err(|e| err(n, e.to_string()))?;
            if buf.is_empty() {
                break;
            }
            let len = buf.len();
            digest.update(buf);
            let mut start = 0;
            while let Some(p) = memchr::memchr(b'\n', &buf[start..]) {
                let end = start + p;
                n += 1;
                let line: &[u8] = if carry.is_empty() {
                    &buf[start..end]
                } else {
                    carry.extend_from_slice(&buf[start..end]);
                    &carry
                };
                let line = trim_line(line);
                if !line.is_empty() && line[0] != b'#' {
                    self.position = (name.to_string(), n);
                    self.load_line(&kind, line).map_err(|why| err(n, why))?;
                }
                carry.clear();
                start = end + 1;
            }
            carry.extend_from_slice(&buf[start..]);
            reader.consume(len);
        }
        let last = trim_line(&carry);
        if !last.is_empty() && last[0] != b'#' {
            n += 1;
            self.position = (name.to_string(), n);
            self.load_line(&kind, last).map_err(|why| err(n, why))?;
        }
        self.stats.files.push(name.to_string());
        Ok(())
    }

    fn load_line(&mut self, kind: &Kind, line: &[u8]) -> Result<(), String> {
        match kind {
            Kind::Hash { to } => self.hash_line(line, *to),
            Kind::Unsupported(reason) => {
                *self.stats.unsupported.entry(reason.clone()).or_default() += 1;
                Ok(())
            }
            _ => {
                let l = std::str::from_utf8(line).map_err(|_| "line is not valid UTF-8".to_string())?;
                match kind {
                    Kind::Body => self.body_line(l),
                    Kind::Logical => self.logical_line(l),
                    _ => self.ignore_line(l),
                }
            }
        }
    }

    /// `.ign2`: `NAME` (every signature of the name) or `NAME:MD5` (the one whose database line
    /// has this MD5); `DB:LINE:NAME` (the old `.ign` form) ignores the name.
    fn ignore_line(&mut self, l: &str) -> Result<(), String> {
        let f: Vec<&str> = l.split(':').map(str::trim).collect();
        match f[..] {
            [name] | [_, _, name] => {
                self.ignored.insert(name.to_string());
            }
            [name, md5] => {
                let d = digest_bytes(md5.as_bytes())
                    .filter(|_| md5.len() == 32)
                    .ok_or_else(|| format!("malformed MD5 string {md5:?}"))?;
                self.ignored_lines.insert((name.to_string(), d[..16].try_into().expect("16 bytes")));
            }
            _ => return Err(format!("expected NAME or NAME:MD5, found {l:?}")),
        }
        self.stats.ignored_names += 1;
        Ok(())
    }

    /// Whether the signature `name` on database line `line` is one an `NAME:MD5` entry drops.
    fn dropped(&mut self, name: &str, line: &[u8]) -> bool {
        if self.drop_lines.is_empty() || !self.drop_lines.iter().any(|(n, _)| n == name) {
            return false;
        }
        let md5: [u8; 16] = md5::Md5::digest(line).into();
        let hit = self.drop_lines.contains(&(name.to_string(), md5));
        if hit {
            self.stats.ignored_lines += 1;
        }
        hit
    }

    fn unsupported(&mut self, reason: impl Into<String>) {
        let why = reason.into();
        let (file, line) = self.position.clone();
        self.stats.skip(Skipped { file, line, why: why.clone() });
        *self.stats.unsupported.entry(why).or_default() += 1;
    }

    fn hash_line(&mut self, l: &[u8], to: HashDest) -> Result<(), String> {
        let text = || String::from_utf8_lossy(l).into_owned();
        let mut f = l.splitn(4, |&b| b == b':');
        let (Some(first), Some(second), Some(name)) = (f.next(), f.next(), f.next()) else {
            return Err(format!("expected HASH:SIZE:NAME (SIZE:HASH:NAME for sections), found {:?}", text()));
        };
        // section hashes give the size first
        let (hash, size) = if to == HashDest::Sections { (second, first) } else { (first, second) };
        let levels = f.next().map(|r| String::from_utf8_lossy(r).into_owned());
        let (min, max) = match levels.as_deref().map(|r| r.split_once(':').unwrap_or((r, ""))) {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        if size == b"*" && min.and_then(|m| m.trim().parse::<u32>().ok()).is_none_or(|m| m < 73) {
            return Err("the minimum functionality level field must be at least 73 for a wildcard size".into());
        }
        if !level_applies(min, max)? {
            self.stats.other_level += 1;
            return Ok(());
        }
        let kind = HashKind::from_hex_len(hash.len())
            .ok_or_else(|| format!("{:?} is not an MD5, SHA1 or SHA256", String::from_utf8_lossy(hash)))?;
        let digest =
            digest_bytes(hash).ok_or_else(|| format!("{:?} is not hexadecimal", String::from_utf8_lossy(hash)))?;
        let size = match size {
            b"*" => ANY_SIZE,
            // as libclamav: a decimal number, not 0, below 0xffffffff
            s => std::str::from_utf8(s)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|&n| n != 0 && n < 0xffff_ffff)
                .map(|n| n as u32)
                .ok_or_else(|| format!("{:?} is not a valid size", String::from_utf8_lossy(s)))?,
        };
        let name = std::str::from_utf8(name).map_err(|_| "signature name is not valid UTF-8".to_string())?;
        if self.dropped(name, l) {
            return Ok(());
        }
        let name = self.names.add(name);
        let (tables, count) = match to {
            HashDest::Files => (
                &mut self.files,
                match kind {
                    HashKind::Md5 => &mut self.stats.md5,
                    HashKind::Sha1 => &mut self.stats.sha1,
                    HashKind::Sha256 => &mut self.stats.sha256,
                },
            ),
            HashDest::Allow => (&mut self.allow, &mut self.stats.allow),
            HashDest::Sections => (&mut self.sections, &mut self.stats.sections),
            HashDest::Imports => (&mut self.imports, &mut self.stats.imports),
        };
        tables.push(kind, digest, size, name);
        *count += 1;
        Ok(())
    }

    fn body_line(&mut self, l: &str) -> Result<(), String> {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return Err(format!("expected NAME:TARGET:OFFSET:HEX, found {l:?}"));
        }
        let target: u32 = f[1].parse().map_err(|_| format!("target type {:?} is not a number", f[1]))?;
        if !level_applies(f.get(4).copied(), f.get(5).copied())? {
            self.stats.other_level += 1;
            return Ok(());
        }
        if let Some(reason) = unsupported_target(target) {
            self.unsupported(reason);
            return Ok(());
        }
        let offset = match parse_offset(f[2], target) {
            Ok(o) => o,
            Err(Unsupported(r)) => {
                self.unsupported(r);
                return Ok(());
            }
            Err(Malformed(e)) => return Err(e),
        };
        let pattern = match Pattern::parse(f[3]) {
            Ok(p) => p,
            Err(PatternError::Unsupported(r)) => {
                self.unsupported(format!("body signature: {r}"));
                return Ok(());
            }
            Err(PatternError::Syntax(e)) => return Err(e),
        };
        if self.dropped(f[0], l.as_bytes()) {
            return Ok(());
        }
        let name = self.names.add(f[0]);
        self.body.push(BodySig { name, target, offset, pattern });
        self.stats.body += 1;
        Ok(())
    }

    fn logical_line(&mut self, l: &str) -> Result<(), String> {
        let f = ldb_tokens(l, ';', 2);
        if f.len() < 4 {
            return Err(format!("expected NAME;TARGET-DESCRIPTION;EXPRESSION;SUBSIG…, found {l:?}"));
        }
        let mut target = 0;
        let mut file_size = None;
        let mut container = None;
        let (mut entry_point, mut sections) = (None, None);
        let range = |v: &str| -> Result<(u64, u64), String> {
            let (a, b) = v.split_once('-').ok_or_else(|| format!("bad range {v:?}"))?;
            let num = |x: &str| x.parse::<u64>().map_err(|_| format!("bad range {v:?}"));
            Ok((num(a)?, num(b)?))
        };
        // libclamav reads every attribute before it applies any: an attribute other than
        // Engine and Target needs Engine with a minimum of at least 51, or the line is malformed
        let (mut engine, mut newer, mut skip) = (None, false, None);
        for (i, kv) in f[1].split(',').enumerate() {
            let (k, v) = kv.split_once(':').ok_or_else(|| format!("bad target description {kv:?}"))?;
            newer |= k != "Engine" && k != "Target";
            match k {
                "Engine" if i > 0 => {
                    return Err("the Engine attribute must come first in the target description".into());
                }
                "Engine" => engine = Some(v.split_once('-').ok_or_else(|| format!("bad Engine range {v:?}"))?),
                "Target" => target = v.parse().map_err(|_| format!("bad target {v:?}"))?,
                "Container" if v == "CL_TYPE_ANY" => container = Some(None),
                "Container" => match container_type(v) {
                    Some(t) => container = Some(Some(t)),
                    None => skip = Some(format!("logical signature: Container:{v}")),
                },
                "FileSize" => file_size = Some(range(v)?),
                "EntryPoint" => entry_point = Some(range(v)?),
                "NumberOfSections" => sections = Some(range(v)?),
                other => skip = skip.or(Some(format!("logical signature: target description {other}"))),
            }
        }
        if newer && engine.and_then(|(min, _)| min.trim().parse::<u32>().ok()).is_none_or(|min| min < 51) {
            return Err(
                "attributes other than Engine and Target need Engine with a minimum level of at least 51".into()
            );
        }
        if let Some((min, max)) = engine
            && !level_applies(Some(min), Some(max))?
        {
            self.stats.other_level += 1;
            return Ok(());
        }
        if let Some(why) = skip {
            self.unsupported(why);
            return Ok(());
        }
        if let Some(reason) = unsupported_target(target) {
            self.unsupported(format!("logical {reason}"));
            return Ok(());
        }
        let expr = match Expr::parse(f[2]) {
            Ok(e) => e,
            Err(e) if e.contains("not supported") => {
                self.unsupported(format!("logical signature: {e}"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut subs = Vec::new();
        let mut regexes = Vec::new();
        let mut compares = Vec::new();
        for sub in &f[3..] {
            if sub.contains('/') {
                match regex_sub(sub, subs.len(), target) {
                    Ok(r) => regexes.push((subs.len(), r)),
                    Err(Unsupported(r)) => {
                        self.unsupported(format!("logical signature: {r}"));
                        return Ok(());
                    }
                    Err(Malformed(e)) => return Err(e),
                }
                subs.push((Offset::Any, Vec::new()));
                continue;
            }
            // `HEX::iwaf` sub-signature modifiers
            let (sub, modifiers) = match sub.split_once("::") {
                Some((s, m)) if !s.contains('/') => (s, m),
                _ => (*sub, ""),
            };
            // libclamav's test: a '(' and two different '#'
            if sub.contains('(') && sub.find('#') != sub.rfind('#') {
                // (its reference may come later: it is read after every content sub-signature)
                compares.push((subs.len(), bytecmp::ByteCompare::parse(sub)?));
                subs.push((Offset::Any, Vec::new()));
                continue;
            }
            if sub.starts_with('$') {
                self.unsupported("logical signature: macros");
                return Ok(());
            }
            let (offset, hex) = match sub.split_once(':') {
                Some((o, h)) => match parse_offset(o, target) {
                    Ok(o) => (o, h),
                    Err(Unsupported(r)) => {
                        self.unsupported(format!("logical signature: {r}"));
                        return Ok(());
                    }
                    Err(Malformed(e)) => return Err(e),
                },
                None => (Offset::Any, sub),
            };
            let pattern = match Pattern::parse_unchecked(hex) {
                Ok(p) => p,
                Err(PatternError::Unsupported(r)) => {
                    self.unsupported(format!("logical signature: {r}"));
                    return Ok(());
                }
                Err(PatternError::Syntax(e)) => return Err(e),
            };
            match pattern.with_modifiers(modifiers) {
                Ok(forms) => subs.push((offset, forms)),
                Err(PatternError::Unsupported(r)) => {
                    self.unsupported(format!("logical signature: {r}"));
                    return Ok(());
                }
                Err(PatternError::Syntax(e)) => return Err(e),
            }
        }
        // ClamAV's rule: the highest sub-signature the expression names is the last one given
        if expr.max_sub() + 1 != subs.len() {
            return Err(format!(
                "the expression's highest sub-signature is {}, but the line gives {} sub-signatures",
                expr.max_sub(),
                subs.len()
            ));
        }
        if self.dropped(f[0], l.as_bytes()) {
            return Ok(());
        }
        let name = self.names.add(f[0]);
        self.logical.push(LogicalSig {
            name,
            target,
            file_size,
            container,
            entry_point,
            sections,
            expr,
            subs,
            regexes,
            compares,
        });
        self.stats.logical += 1;
        Ok(())
    }

    /// Finishes loading by hand (`load_file` calls): sorts tables, applies `.ign2`.
    pub fn finished(mut self) -> SigDb {
        self.finish();
        self
    }

    fn finish(&mut self) {
        self.names.shrink();
        for t in [&mut self.files, &mut self.allow, &mut self.sections, &mut self.imports] {
            t.finish();
        }
        if !self.ignored.is_empty() {
            let names = &self.names;
            let ignored = &self.ignored;
            self.body.retain(|s| !ignored.contains(names.get(s.name)));
            self.logical.retain(|s| !ignored.contains(names.get(s.name)));
        }
    }

    /// Total signatures loaded.
    pub fn len(&self) -> usize {
        self.files.len() + self.sections.len() + self.imports.len() + self.body.len() + self.logical.len()
    }

    /// Whether nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A PUA database (`.ndu`, `.ldu`, `.hdu`, `.hsu`), loaded only when asked for.
fn is_pua(name: &str) -> bool {
    matches!(extension(name).as_str(), "ndu" | "ldu" | "hdu" | "hsu" | "mdu" | "msu")
}

/// The regular files of a database directory, sorted by name; a database file alone when
/// `dir` is one (as `clamscan -d FILE` takes it).
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let err = |why: String| LoadError { file: dir.display().to_string(), line: 0, why };
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    if !dir.exists() {
        return Err(err("no such signature directory or database file".into()));
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(format!("cannot read signature directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The version of a database: its containers' versions, then `local:…` for plain files.
pub fn version_text(versions: Vec<String>) -> String {
    if versions.is_empty() { "empty".into() } else { versions.join(",") }
}

/// How the lines of a database file are read.
enum Kind {
    Hash { to: HashDest },
    Body,
    Logical,
    Ignore,
    Unsupported(String),
}

fn trim_line(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|c| !matches!(c, b'\n' | b'\r' | b' ' | b'\t')).map_or(0, |e| e + 1);
    &b[..end]
}

/// Which table a hash line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashDest {
    /// Whole-file hashes (`.hdb`, `.hsb`).
    Files,
    /// Allow-list (`.fp`, `.sfp`).
    Allow,
    /// PE section hashes (`.mdb`, `.msb`): `SIZE:HASH:NAME`.
    Sections,
    /// PE import table hashes (`.imp`).
    Imports,
}

enum OffsetError {
    Unsupported(String),
    Malformed(String),
}
use OffsetError::{Malformed, Unsupported};

/// Splits an `.ldb` line (or a sub-signature) at `delim` as libclamav does: from token
/// `skip` on, a `/` not preceded by a backslash opens or closes a regular expression, inside which
/// `delim` does not split.
fn ldb_tokens(line: &str, delim: char, skip: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut within = false;
    let mut start = 0;
    let mut prev = None;
    for (i, c) in line.char_indices() {
        if c == delim && !within {
            out.push(&line[start..i]);
            start = i + 1;
        } else if c == '/' && out.len() >= skip && i > 0 && prev != Some('\\') {
            within = !within;
        }
        prev = Some(c);
    }
    out.push(&line[start..]);
    out
}

/// Parses a PCRE sub-signature, number `index` of its logical signature.
fn regex_sub(sub: &str, index: usize, target: u32) -> Result<RegexSub, OffsetError> {
    let parts = ldb_tokens(sub, ':', 0);
    let (offset, sig) = match parts[..] {
        [sig] => (Offset::Any, sig),
        [off, sig] => (parse_offset(off, target)?, sig),
        _ => return Err(Malformed(format!("PCRE sub-signature {sub:?}: too many ':' fields"))),
    };
    let (Some(first), Some(last)) = (sig.find('/'), sig.rfind('/')) else {
        return Err(Malformed(format!("PCRE sub-signature {sub:?} has no '/'")));
    };
    if first == last {
        return Err(Malformed(format!("PCRE sub-signature {sub:?}: mismatched '/' delimiter")));
    }
    let (trigger, expression, flags) = (&sig[..first], &sig[first + 1..last], &sig[last + 1..]);
    if trigger.is_empty() || expression.is_empty() {
        return Err(Malformed(format!("PCRE sub-signature {sub:?}: the trigger and the expression must not be empty")));
    }
    let trigger = Expr::parse(trigger).map_err(|e| Malformed(format!("PCRE sub-signature trigger: {e}")))?;
    if trigger.max_sub() >= index {
        return Err(Malformed(format!(
            "PCRE sub-signature {index}: its trigger must name only sub-signatures before it"
        )));
    }
    let mut options = crate::pcre::Options::default();
    let (mut global, mut rolling, mut encompass) = (false, false, false);
    for c in flags.chars() {
        match c {
            'i' => options.caseless = true,
            's' => options.dotall = true,
            'm' => options.multiline = true,
            'x' => options.extended = true,
            'A' => options.anchored = true,
            'E' => options.dollar_endonly = true,
            'U' => options.ungreedy = true,
            'g' => global = true,
            'r' => rolling = true,
            'e' => encompass = true,
            other => return Err(Malformed(format!("PCRE sub-signature: unknown flag {other:?}"))),
        }
    }
    let regex = crate::pcre::Regex::new(expression, options).map_err(|e| Malformed(format!("/{expression}/: {e}")))?;
    Ok(RegexSub { offset, trigger, regex: std::sync::Arc::new(regex), global, rolling, encompass })
}

/// Parses an offset of a signature of target type `target`, as libclamav does: `*`, `n`,
/// `EOF-n`, and for executables `EP+n`, `EP-n`, `Sx+n`, `SEx`, `SL+n`, each but `*` with an
/// optional `,shift`.
fn parse_offset(s: &str, target: u32) -> Result<Offset, OffsetError> {
    let s = s.trim();
    if s == "*" {
        return Ok(Offset::Any);
    }
    let bad = || Malformed(format!("bad offset {s:?}"));
    let num = |x: &str| -> Result<u64, OffsetError> {
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        x.parse::<u64>().map_err(|_| bad())
    };
    let (base, shift) = match s.split_once(',') {
        Some((b, m)) => (b, num(m)?),
        None => (s, 0),
    };
    if let Some(n) = base.strip_prefix("EOF-") {
        return Ok(Offset::FromEnd(num(n)?, shift));
    }
    if base.starts_with("VI") || base.contains('$') {
        return Err(Unsupported(format!("version-information and macro offsets ({base})")));
    }
    let exe = if let Some(n) = base.strip_prefix("EP+") {
        Some(ExeBase::EntryPoint(num(n)? as i64))
    } else if let Some(n) = base.strip_prefix("EP-") {
        Some(ExeBase::EntryPoint(-(num(n)? as i64)))
    } else if let Some(x) = base.strip_prefix("SE") {
        Some(ExeBase::WholeSection(num(x)? as u32))
    } else if let Some(n) = base.strip_prefix("SL+") {
        Some(ExeBase::LastSection(num(n)?))
    } else if let Some(rest) = base.strip_prefix('S') {
        let (x, n) = rest.split_once('+').ok_or_else(bad)?;
        Some(ExeBase::Section(num(x)? as u32, num(n)?))
    } else {
        None
    };
    if let Some(base_) = exe {
        return match target {
            1 | 6 | 9 => Ok(Offset::Exe { base: base_, shift }),
            t => Err(Malformed(format!("offset {base} is not valid for target type {t}"))),
        };
    }
    let n = num(base)?;
    Ok(if shift == 0 { Offset::Exact(n) } else { Offset::Window(n, n + shift) })
}

/// The container a `Container:CL_TYPE_…` condition names, among those unpacked here.
fn container_type(name: &str) -> Option<crate::FileType> {
    use crate::FileType::*;
    Some(match name {
        "CL_TYPE_ZIP" => Zip,
        "CL_TYPE_RAR" => Rar,
        "CL_TYPE_7Z" => SevenZip,
        "CL_TYPE_GZ" => Gzip,
        "CL_TYPE_BZ" => Bzip2,
        "CL_TYPE_XZ" => Xz,
        "CL_TYPE_POSIX_TAR" | "CL_TYPE_OLD_TAR" => Tar,
        "CL_TYPE_CPIO_OLD" | "CL_TYPE_CPIO_ODC" | "CL_TYPE_CPIO_NEWC" | "CL_TYPE_CPIO_CRC" => Cpio,
        "CL_TYPE_MAIL" => Mail,
        "CL_TYPE_TNEF" => Tnef,
        "CL_TYPE_MACHO_UNIBIN" => MachOUniversal,
        _ => return None,
    })
}

/// Target types not matched here (13 and up: none yet in ClamAV's documentation).
fn unsupported_target(t: u32) -> Option<String> {
    match t {
        0..=7 | 9..=12 => None,
        n => Some(format!("target type {n}")),
    }
}

fn extension(name: &str) -> String {
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
