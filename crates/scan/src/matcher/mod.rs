//! Compiled signatures: [`Signatures`], shared read-only (an `Arc`) by every scan.
//!
//! A database is made of **parts**, one per database file (a `.cvd` container with all its
//! members, or a plain file): each part's hash signatures and allow-lists are compiled once and
//! shared, behind an `Arc`, by every database that holds the same file unchanged; the body and
//! logical signatures of all parts are compiled together into one matcher (one pass over the
//! data). A new release thus rebuilds only the parts whose files changed plus the body matcher,
//! instead of the whole database beside the one in use ([`Signatures::load_dir_reusing`]).

pub mod body;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::filetype::FileType;
use crate::sigdb::bytecmp::ByteCompare;
use crate::sigdb::hashes::{DigestTables, HashKind};
use crate::sigdb::logical::Expr;
use crate::sigdb::{BodySig, Layout, LoadError, LoadOptions, LoadStats, LogicalSig, Names, Offset, RegexSub, SigDb};
use body::{BodyMatcher, Owner};

/// A signature that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The signature's name.
    pub name: String,
    /// How it matched: `md5 …`, `body signature at offset …`, `logical signature`.
    pub evidence: String,
}

struct Logical {
    /// `Container:` — the type of container the buffer must have come out of (`Some(None)`:
    /// none, the top layer).
    container: Option<Option<FileType>>,
    part: u32,
    name: u32,
    target: u32,
    file_size: Option<(u64, u64)>,
    entry_point: Option<(u64, u64)>,
    sections: Option<(u64, u64)>,
    expr: Expr,
    first_sub: u32,
    subs: u32,
    /// PCRE sub-signatures, by sub-signature number, in order.
    regexes: Vec<(usize, RegexSub)>,
    /// Byte-compare sub-signatures, by sub-signature number.
    compares: Vec<(usize, ByteCompare)>,
}

/// libclamav's default: no PCRE runs over a buffer larger than this.
const PCRE_MAX_SIZE: usize = 100 << 20;
/// Matches of one `g` (global) PCRE sub-signature counted in one buffer at most (each match
/// attempt is bounded by PCRE2's match limits; this bounds how many there are).
const MAX_REGEX_MATCHES: u32 = 10_000;

/// How many times PCRE sub-signature `r` matches `data`, as libclamav counts: the search starts
/// at the offset (anywhere for `*`), anchored there unless the offset has a window or the
/// flag `r` is given; a match starting beyond the window does not count (`e`: the search never
/// looks beyond it); `g` counts every match, each search going on from the end of the last.
fn regex_matches(r: &RegexSub, data: &[u8], layout: &Layout) -> u32 {
    let len = data.len() as u64;
    if data.len() > PCRE_MAX_SIZE {
        return 0;
    }
    let anywhere = r.offset == Offset::Any;
    let Some((start, end)) = r.offset.resolve(len, layout) else { return 0 };
    let shift = if anywhere { 0 } else { end - start };
    if start >= len {
        return 0;
    }
    let anchored = !anywhere && !r.rolling && shift == 0;
    let start = start as usize;
    let region =
        if r.encompass && shift != 0 { &data[start..(start as u64 + shift).min(len) as usize] } else { &data[start..] };
    let mut count = 0;
    let mut at = 0;
    while let Ok((s, e)) = r.regex.find_at(region, at, anchored) {
        if !r.encompass && shift != 0 && s as u64 > shift {
            break;
        }
        count += 1;
        // (libclamav searches again from an empty match's end, finding it again for ever)
        at = if e > s { e } else { e + 1 };
        if !r.global || count >= MAX_REGEX_MATCHES || at >= region.len() {
            break;
        }
    }
    count
}

/// What identifies a database file's content on disk without reading it: device, inode,
/// size and modification time. A release's files are hard links to content-addressed
/// objects, so an unchanged file has the same identity from release to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileKey {
    fn of(p: &Path) -> Option<FileKey> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).ok()?;
        Some(FileKey {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// One database file, loaded: its hash tables (compiled) and its body and logical signature
/// definitions (compiled into the database's matcher).
struct Part {
    /// The file's name and identity (`None`: not from a file, never reused).
    source: Option<(String, FileKey)>,
    names: Names,
    files: DigestTables,
    allow: DigestTables,
    sections: DigestTables,
    imports: DigestTables,
    body: Vec<BodySig>,
    logical: Vec<LogicalSig>,
    ignored: HashSet<String>,
    stats: LoadStats,
    /// A container's version (`daily:27451`); `None` for a plain file.
    version: Option<String>,
    /// CRC-32 of a plain file's name and bytes (for the `local:…` version).
    digest: Option<crc32fast::Hasher>,
    /// The `.ign2` `NAME:MD5` entries this part was loaded with (its lines they name left out).
    drop_lines: Arc<HashSet<(String, [u8; 16])>>,
    /// This part's own `NAME:MD5` entries.
    ignored_lines: HashSet<(String, [u8; 16])>,
    /// The options it was loaded with.
    options: LoadOptions,
}

impl Part {
    fn from_db(
        db: SigDb,
        source: Option<(String, FileKey)>,
        version: Option<String>,
        digest: Option<crc32fast::Hasher>,
    ) -> Part {
        Part {
            source,
            names: db.names,
            files: db.files,
            allow: db.allow,
            sections: db.sections,
            imports: db.imports,
            body: db.body,
            logical: db.logical,
            ignored: db.ignored,
            drop_lines: db.drop_lines,
            ignored_lines: db.ignored_lines,
            options: db.options,
            stats: db.stats,
            version,
            digest,
        }
    }

    fn load(p: &Path, options: LoadOptions, drop_lines: &Arc<HashSet<(String, [u8; 16])>>) -> Result<Part, LoadError> {
        let key = FileKey::of(p);
        let mut db = SigDb::with(options, drop_lines.clone());
        let mut digest = crc32fast::Hasher::new();
        let version = db.load_path(p, &mut digest)?;
        let db = db.finished();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let digest = version.is_none().then_some(digest);
        Ok(Part::from_db(db, key.map(|k| (name, k)), version, digest))
    }
}

/// Loads each file as a part, taking a part of `previous` for a file it holds unchanged and
/// loaded with the same `drop_lines`.
fn load_parts(
    files: &[std::path::PathBuf],
    previous: Option<&Signatures>,
    options: LoadOptions,
    drop_lines: &Arc<HashSet<(String, [u8; 16])>>,
) -> Result<Vec<Arc<Part>>, LoadError> {
    let mut parts = Vec::with_capacity(files.len());
    for p in files {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let key = FileKey::of(p);
        let reused = previous.and_then(|prev| {
            prev.parts.iter().find(|part| {
                part.source.as_ref().is_some_and(|(n, k)| *n == name && Some(*k) == key)
                    && *part.drop_lines == **drop_lines
                    && part.options == options
            })
        });
        parts.push(match reused {
            Some(part) => part.clone(),
            None => Arc::new(Part::load(p, options, drop_lines)?),
        });
    }
    Ok(parts)
}

/// Every signature of a database, ready to match.
pub struct Signatures {
    parts: Vec<Arc<Part>>,
    body: BodyMatcher,
    /// The body and logical sub-signatures of target types 0 and 7 that could match
    /// normalised text, for the normalised copy of text files.
    normalized: BodyMatcher,
    /// `Owner::Body(i)`: the body signature's (part, name).
    body_names: Vec<(u32, u32)>,
    logical: Vec<Logical>,
    sub_owner: Vec<u32>,
    /// Logical signatures whose expression holds with no sub-signature matched (`0=0`,
    /// `0<2`): they fire on every buffer of their target, whatever is counted in it, as in
    /// ClamAV (which also evaluates them where nothing is counted yet).
    true_without_matches: Vec<u32>,
    /// Logical signatures with a PCRE whose trigger holds with nothing matched: evaluated on
    /// every buffer of their target.
    regex_without_matches: Vec<u32>,
    /// Names dropped by `.ign2` files, in any part.
    ignored: HashSet<String>,
    /// What was loaded and what was not supported.
    pub stats: LoadStats,
    /// Database version (`daily:27451,main:62` or `local:…`).
    pub version: String,
}

const BUILTIN: &[(&str, &str)] = &[
    ("mxshield.hdb", include_str!("../../sigs/mxshield.hdb")),
    ("mxshield.ndb", include_str!("../../sigs/mxshield.ndb")),
];

impl Signatures {
    /// Compiles a loaded database.
    pub fn compile(db: SigDb) -> Signatures {
        let version = db.version.clone();
        let mut s = Signatures::from_parts(vec![Arc::new(Part::from_db(db, None, None, None))]);
        s.version = version;
        s
    }

    /// Builds the body matcher over `parts` (their hash tables are used as they are).
    fn from_parts(parts: Vec<Arc<Part>>) -> Signatures {
        let ignored: HashSet<String> = parts.iter().flat_map(|p| p.ignored.iter().cloned()).collect();
        let mut body = BodyMatcher::default();
        let mut normalized = BodyMatcher::default();
        let for_text =
            |target: u32, p: &crate::sigdb::pattern::Pattern| (target == 0 || target == 7) && p.can_match_normalized();
        let mut body_names = Vec::new();
        let mut logical = Vec::new();
        let mut sub_owner = Vec::new();
        for (pi, part) in parts.iter().enumerate() {
            let pi = pi as u32;
            for s in part.body.iter().filter(|s| !ignored.contains(part.names.get(s.name))) {
                let owner = Owner::Body(body_names.len() as u32);
                if for_text(s.target, &s.pattern) {
                    normalized.add(s.pattern.clone(), s.offset, s.target, owner);
                }
                body.add(s.pattern.clone(), s.offset, s.target, owner);
                body_names.push((pi, s.name));
            }
            for l in part.logical.iter().filter(|l| !ignored.contains(part.names.get(l.name))) {
                let li = logical.len() as u32;
                let first_sub = sub_owner.len() as u32;
                for (offset, forms) in &l.subs {
                    let owner = Owner::Sub(sub_owner.len() as u32);
                    for pattern in forms {
                        if for_text(l.target, pattern) {
                            normalized.add(pattern.clone(), *offset, l.target, owner);
                        }
                        body.add(pattern.clone(), *offset, l.target, owner);
                    }
                    sub_owner.push(li);
                }
                logical.push(Logical {
                    container: l.container,
                    part: pi,
                    name: l.name,
                    target: l.target,
                    file_size: l.file_size,
                    entry_point: l.entry_point,
                    sections: l.sections,
                    expr: l.expr.clone(),
                    first_sub,
                    subs: l.subs.len() as u32,
                    regexes: l.regexes.clone(),
                    compares: l.compares.clone(),
                });
            }
        }
        body.finish();
        normalized.finish();
        let zeros = |l: &Logical| vec![0; l.subs as usize];
        let true_without_matches = (0..logical.len() as u32)
            .filter(|&i| logical[i as usize].expr.eval(&zeros(&logical[i as usize])))
            .collect();
        let regex_without_matches = (0..logical.len() as u32)
            .filter(|&i| {
                let l = &logical[i as usize];
                l.regexes.iter().any(|(_, r)| r.trigger.eval(&zeros(l)))
            })
            .collect();
        let mut stats = LoadStats::default();
        let mut versions = Vec::new();
        let mut local: Option<crc32fast::Hasher> = None;
        for p in &parts {
            let st = &p.stats;
            stats.md5 += st.md5;
            stats.sha1 += st.sha1;
            stats.sha256 += st.sha256;
            stats.sections += st.sections;
            stats.imports += st.imports;
            stats.body += st.body;
            stats.logical += st.logical;
            stats.allow += st.allow;
            stats.ignored_names += st.ignored_names;
            stats.ignored_lines += st.ignored_lines;
            for (why, n) in &st.unsupported {
                *stats.unsupported.entry(why.clone()).or_default() += n;
            }
            for sk in &st.skipped {
                stats.skip(sk.clone());
            }
            stats.skipped_more += st.skipped_more;
            stats.other_level += st.other_level;
            stats.pua_files_skipped += st.pua_files_skipped;
            stats.files.extend(st.files.iter().cloned());
            if let Some(v) = &p.version {
                versions.push(v.clone());
            }
            if let Some(d) = &p.digest {
                local.get_or_insert_with(crc32fast::Hasher::new).combine(d);
            }
        }
        if let Some(d) = local {
            versions.push(format!("local:{:08x}", d.finalize()));
        }
        Signatures {
            parts,
            body,
            normalized,
            body_names,
            logical,
            sub_owner,
            true_without_matches,
            regex_without_matches,
            ignored,
            stats,
            version: crate::sigdb::version_text(versions),
        }
    }

    /// Loads and compiles every database in `dir` (PUA databases left out).
    pub fn load_dir(dir: &Path) -> Result<Signatures, LoadError> {
        Signatures::load_dir_reusing(dir, None, LoadOptions::default())
    }

    /// Loads every database in `dir`, taking the compiled hash tables of `previous` for each
    /// file it holds unchanged (the same file on disk: device, inode, size, time), so only
    /// changed files are parsed and compiled again (plus the shared body matcher).
    pub fn load_dir_reusing(
        dir: &Path,
        previous: Option<&Signatures>,
        options: LoadOptions,
    ) -> Result<Signatures, LoadError> {
        let files = crate::sigdb::files_in(dir)?;
        let none = Arc::new(HashSet::new());
        let mut parts = load_parts(&files, previous, options, &none)?;
        // `.ign2` entries `NAME:MD5` name database lines, in any file: the files are read
        // again with them (rare: the official `.ign2` lists names), leaving those lines out
        let lines: HashSet<(String, [u8; 16])> = parts.iter().flat_map(|p| p.ignored_lines.iter().cloned()).collect();
        if !lines.is_empty() {
            parts = load_parts(&files, previous, options, &Arc::new(lines))?;
        }
        Ok(Signatures::from_parts(parts))
    }

    /// How many of this database's files were taken over from `previous` unchanged.
    pub fn parts_shared_with(&self, previous: &Signatures) -> usize {
        self.parts.iter().filter(|p| previous.parts.iter().any(|q| Arc::ptr_eq(p, q))).count()
    }

    /// The database shipped inside mxshield (EICAR, the ClamAV test file, test markers).
    pub fn builtin() -> Signatures {
        let mut db = SigDb::default();
        for (name, text) in BUILTIN {
            db.load_file(name, text.as_bytes()).expect("the built-in database is valid");
        }
        let mut s = Signatures::compile(db.finished());
        s.version = format!("builtin-{}", env!("CARGO_PKG_VERSION"));
        s
    }

    /// Total signatures.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.files.len() + p.sections.len() + p.imports.len()).sum::<usize>() + self.body.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks one buffer (a file, a decoded part, an archive member) of type `ft`.
    pub fn check(&self, data: &[u8], ft: FileType) -> Option<Detection> {
        self.check_in(data, ft, None)
    }

    /// [`Signatures::check`] for a buffer that came out of a container of type `container`
    /// (what `.ldb` `Container:` conditions ask about).
    pub fn check_in(&self, data: &[u8], ft: FileType, container: Option<FileType>) -> Option<Detection> {
        let size = data.len() as u64;
        if let Some(d) = self.check_hashes(data, size) {
            return d;
        }
        let target_ok = |t: u32| ft.matches_target(t);
        let layout = Layout::of(data, ft);
        let hits = self.body.scan(data, &target_ok, &layout);
        // ClamAV evaluates every logical signature also where nothing was counted yet: one
        // that holds with no sub-signature matched fires on every buffer of its target
        self.body_or_logical(data, &layout, &hits, &target_ok, container, true).or_else(|| match &layout {
            Layout::Pe(pe) => self.check_sections(data, pe).or_else(|| self.check_imports(data, pe)),
            _ => None,
        })
    }

    /// PE section hashes (`.mdb`, `.msb`): each section in the file, its bytes as libclamav
    /// counts them (from its aligned file offset, its aligned size cut at the end of the file);
    /// the hashing is bounded (see the budget below), libclamav's is not.
    fn check_sections(&self, data: &[u8], pe: &crate::pe::PeInfo) -> Option<Detection> {
        if self.parts.iter().all(|p| p.sections.is_empty()) {
            return None;
        }
        // sections with the same bytes are hashed once, and all of them at most a few times
        // the file's size (a hostile file may have 65,535 sections over the same bytes)
        let mut seen = HashSet::new();
        let mut budget = 4 * data.len() as u64 + (1 << 20);
        for s in pe.sections.iter().filter(|s| s.rsz != 0 && seen.insert((s.raw, s.rsz))) {
            let Some(left) = budget.checked_sub(u64::from(s.rsz)) else { break };
            budget = left;
            let Some(bytes) = data.get(s.raw as usize..(s.raw as usize).saturating_add(s.rsz as usize)) else {
                continue;
            };
            if let Some(hit) = self.find_hash(bytes, |p| &p.sections, "PE section") {
                return Some(hit);
            }
        }
        None
    }

    /// PE import table hashes (`.imp`): the hash of the text libclamav builds from the import
    /// table ([`crate::pe::PeInfo::import_table`]), whose length is the size.
    fn check_imports(&self, data: &[u8], pe: &crate::pe::PeInfo) -> Option<Detection> {
        if self.parts.iter().all(|p| p.imports.is_empty()) {
            return None;
        }
        self.find_hash(&pe.import_table(data)?, |p| &p.imports, "PE import table")
    }

    /// The first signature of the tables `tables` picks in each part that names the hash of
    /// `bytes` (of their length), computing only the digests some table wants.
    fn find_hash(&self, bytes: &[u8], tables: impl Fn(&Part) -> &DigestTables, what: &str) -> Option<Detection> {
        let size = bytes.len() as u64;
        HashKind::ALL.into_iter().find_map(|kind| {
            if !self.parts.iter().any(|p| tables(p).wants(kind, size)) {
                return None;
            }
            let d = kind.digest(bytes);
            self.parts.iter().find_map(|p| {
                let n = tables(p).lookup(kind, &d, size)?;
                self.detection(p, n, &format!("{what} {}", kind.name()), kind, &d, size)
            })
        })
    }

    /// Whether any signature applies to normalised text (target types 0 and 7).
    pub fn has_normalized(&self) -> bool {
        !self.normalized.is_empty()
    }

    /// Matches the normalised copy of a text file ([`crate::filetype::normalize_text`]) with
    /// the body and logical signatures of target types 0 and 7, counted apart from the raw
    /// bytes' matches, as ClamAV does.
    pub fn check_normalized(&self, text: &[u8], container: Option<FileType>) -> Option<Detection> {
        let target_ok = |t: u32| t == 0 || t == 7;
        let hits = self.normalized.scan(text, &target_ok, &Layout::Plain);
        self.body_or_logical(text, &Layout::Plain, &hits, &target_ok, container, false)
    }

    /// The detection that body hits `hits` in `data` make: a body signature, else a logical
    /// signature over the counted sub-signatures and its PCRE sub-signatures (with
    /// `zero_true`, also one that holds, or triggers a PCRE, with nothing counted).
    fn body_or_logical(
        &self,
        data: &[u8],
        layout: &Layout,
        hits: &body::BodyHits,
        target_ok: &dyn Fn(u32) -> bool,
        container: Option<FileType>,
        zero_true: bool,
    ) -> Option<Detection> {
        if let Some((owner, at)) = hits.first {
            let (part, name) = self.body_names[owner as usize];
            return Some(Detection {
                name: self.parts[part as usize].names.get(name).to_string(),
                evidence: format!("body signature at offset {at}"),
            });
        }
        let size = data.len() as u64;
        let within = |v: u64, r: Option<(u64, u64)>| r.is_none_or(|(a, b)| v >= a && v <= b);
        let exe_ok = |l: &Logical| match layout {
            _ if l.entry_point.is_none() && l.sections.is_none() => true,
            Layout::Pe(pe) | Layout::Elf(pe) | Layout::MachO(pe) => {
                within(u64::from(pe.ep), l.entry_point) && within(pe.sections.len() as u64, l.sections)
            }
            _ => false,
        };
        let applies = |l: &Logical| {
            target_ok(l.target) && within(size, l.file_size) && l.container.is_none_or(|c| container == c) && exe_ok(l)
        };
        let detection = |l: &Logical| Detection {
            name: self.parts[l.part as usize].names.get(l.name).to_string(),
            evidence: "logical signature".into(),
        };
        if zero_true
            && let Some(l) = self.true_without_matches.iter().map(|&li| &self.logical[li as usize]).find(|l| applies(l))
        {
            return Some(detection(l));
        }
        let mut candidates: Vec<u32> = hits.sub_counts.iter().map(|(s, _)| self.sub_owner[*s as usize]).collect();
        if zero_true {
            candidates.extend(&self.regex_without_matches);
        }
        candidates.sort_unstable();
        candidates.dedup();
        for li in candidates {
            let l = &self.logical[li as usize];
            if !applies(l) {
                continue;
            }
            let mut counts = vec![0u32; l.subs as usize];
            for (s, n) in &hits.sub_counts {
                if self.sub_owner[*s as usize] == li {
                    counts[(*s - l.first_sub) as usize] = *n;
                }
            }
            // byte compares next, each once, where its reference matched (at the last match)
            for (i, c) in l.compares.iter().filter(|(_, c)| c.reference < l.subs as usize) {
                let reference = l.first_sub + c.reference as u32;
                if let Some(&at) = hits.sub_last.get(&reference) {
                    counts[*i] = u32::from(c.holds(data, at as u64));
                }
            }
            // PCREs run after the other sub-signatures were counted, each when its trigger
            // (over the sub-signatures before it, PCREs included) holds
            for (i, r) in &l.regexes {
                if r.trigger.eval(&counts) {
                    counts[*i] = regex_matches(r, data, layout);
                }
            }
            if l.expr.eval(&counts) {
                return Some(detection(l));
            }
        }
        None
    }

    /// Whether an allow-list (`.fp`, `.sfp`) names these bytes: then they and everything in
    /// them are clean.
    pub fn is_allow_listed(&self, data: &[u8]) -> bool {
        let size = data.len() as u64;
        let wants = self.parts.iter().any(|p| HashKind::ALL.iter().any(|&k| p.allow.wants(k, size)));
        wants && matches!(self.check_hashes(data, size), Some(None))
    }

    /// Only the whole-file hash signatures (for containers, whose members are matched
    /// separately).
    pub fn check_hashes_only(&self, data: &[u8]) -> Option<Detection> {
        self.check_hashes(data, data.len() as u64).flatten()
    }

    /// `Some(None)`: allow-listed; `Some(Some(d))`: a hash signature matched; `None`: go on.
    /// An allow-list of any file applies to the signatures of every file, and a name an
    /// `.ign2` file drops is dropped from every file.
    fn check_hashes(&self, data: &[u8], size: u64) -> Option<Option<Detection>> {
        let mut found = None;
        for kind in HashKind::ALL {
            if !self.parts.iter().any(|p| p.files.wants(kind, size) || p.allow.wants(kind, size)) {
                continue;
            }
            let d = kind.digest(data);
            if self.parts.iter().any(|p| p.allow.lookup(kind, &d, size).is_some()) {
                return Some(None);
            }
            if found.is_none() {
                found = self.parts.iter().find_map(|p| {
                    let n = p.files.lookup(kind, &d, size)?;
                    self.detection(p, n, kind.name(), kind, &d, size)
                });
            }
        }
        found.map(Some)
    }

    /// The detection of hash signature `name` of `part`, unless an `.ign2` drops it.
    fn detection(
        &self,
        part: &Part,
        name: u32,
        what: &str,
        kind: HashKind,
        digest: &[u8; 32],
        size: u64,
    ) -> Option<Detection> {
        let name = part.names.get(name);
        if self.ignored.contains(name) {
            return None;
        }
        let hex: String = digest[..kind.digest_len()].iter().map(|b| format!("{b:02x}")).collect();
        Some(Detection { name: name.to_string(), evidence: format!("{what} {hex}:{size}") })
    }
}

#[cfg(test)]
mod parts_tests {
    use super::*;

    const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

    fn dir(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mxshield-parts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (n, text) in files {
            std::fs::write(d.join(n), text).unwrap();
        }
        d
    }

    fn found(s: &Signatures, data: &[u8]) -> Option<String> {
        s.check(data, FileType::detect(data)).map(|d| d.name)
    }

    /// An allow-list or an `.ign2` in one file applies to the signatures of the others; the
    /// version is the one a single database of the same files has.
    #[test]
    fn files_apply_to_each_other() {
        let hdb = "44d88612fea8a8f36de82e1278abb02f:68:Eicar.Hash\n";
        let ndb = "Eicar.Body:0:*:4549434152\n";
        let d = dir("cross", &[("a.hdb", hdb), ("b.ndb", ndb)]);
        let s = Signatures::load_dir(&d).unwrap();
        assert_eq!(found(&s, EICAR).as_deref(), Some("Eicar.Hash"));
        assert_eq!(s.version, SigDb::load_dir(&d).unwrap().version);
        std::fs::write(d.join("c.ign2"), "Eicar.Hash\n").unwrap();
        assert_eq!(found(&Signatures::load_dir(&d).unwrap(), EICAR).as_deref(), Some("Eicar.Body"));
        std::fs::write(d.join("c.ign2"), "Eicar.Hash\nEicar.Body\n").unwrap();
        assert_eq!(found(&Signatures::load_dir(&d).unwrap(), EICAR), None);
        std::fs::remove_file(d.join("c.ign2")).unwrap();
        std::fs::write(d.join("z.fp"), hdb).unwrap();
        assert_eq!(found(&Signatures::load_dir(&d).unwrap(), EICAR), None, "allow-listed by another file");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// PUA databases load only when asked for.
    #[test]
    fn pua_databases_load_only_with_pua_detection() {
        let d = dir("pua", &[("p.ndu", "PUA.Test:0:*:4f4e452d4f4e45\n")]);
        assert_eq!(found(&Signatures::load_dir(&d).unwrap(), b"xx ONE-ONE xx"), None);
        let on = Signatures::load_dir_reusing(&d, None, LoadOptions { pua: true }).unwrap();
        assert_eq!(found(&on, b"xx ONE-ONE xx").as_deref(), Some("PUA.Test"));
        assert_eq!(Signatures::load_dir(&d).unwrap().stats.pua_files_skipped, 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A database loaded again over the same directory takes the unchanged files' compiled
    /// parts from the previous one and reads only the changed file.
    #[test]
    fn unchanged_files_are_shared_with_the_previous_database() {
        let d = dir(
            "reuse",
            &[
                ("main.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Eicar.Hash\n"),
                ("daily.ndb", "One:0:*:4f4e452d4f4e45\n"),
            ],
        );
        let first = Signatures::load_dir(&d).unwrap();
        let same = Signatures::load_dir_reusing(&d, Some(&first), LoadOptions::default()).unwrap();
        assert_eq!(same.parts_shared_with(&first), 2);
        // a new daily file (a new inode, as a release installs it)
        std::fs::remove_file(d.join("daily.ndb")).unwrap();
        std::fs::write(d.join("daily.ndb"), "One:0:*:4f4e452d4f4e45\nTwo:0:*:54574f2d54574f\n").unwrap();
        let next = Signatures::load_dir_reusing(&d, Some(&first), LoadOptions::default()).unwrap();
        assert_eq!(next.parts_shared_with(&first), 1);
        assert_eq!(found(&next, b"xx TWO-TWO xx").as_deref(), Some("Two"));
        assert_eq!(found(&next, EICAR).as_deref(), Some("Eicar.Hash"));
        assert_eq!(found(&first, b"xx TWO-TWO xx"), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
