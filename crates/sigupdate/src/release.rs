//! Releases: publishing one into a publishing directory, and fetching one from a source the
//! way a node does — every check made, the database loaded and self-tested — without
//! installing it.
//!
//! A publishing directory holds `latest` (the newest version, one line, replaced last),
//! `releases/<version>/manifest.json` with `manifest.json.minisig`, and `payloads/<sha256>`
//! (database files and self-test samples, by content).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use scan::sigdb::LoadOptions;
use scan::{Engine, Limits, Signatures, Verdict};
use sha2::{Digest, Sha256};

use crate::keys::{self, KeyError, PublicKey, SecretKey};
use crate::manifest::{self, Manifest, Payload, Vector};
use crate::source::{FetchError, Fetched, Source, hex, sha256_file};

/// Largest pointer file read.
const MAX_POINTER: u64 = 64;
/// Largest manifest or signature read.
const MAX_MANIFEST: u64 = 4 << 20;
/// Time allowed for one payload.
const PAYLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The name of the marker payload each release adds.
pub const MARKER_FILE: &str = "mxshield-release-marker.ndb";

/// The path of a release's manifest in a publishing directory.
pub fn manifest_path(version: u64) -> String {
    format!("releases/{version}/manifest.json")
}

/// The path of a payload.
pub fn payload_path(sha256: &str) -> String {
    format!("payloads/{sha256}")
}

/// The signature-database version string of a release (`Signatures::version`, in headers
/// and logs).
pub fn version_label(version: u64) -> String {
    format!("release-{version}")
}

/// Why a release was refused. The database in use is never touched by a refused release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The source could not be read.
    #[error("source: {0}")]
    Fetch(#[from] FetchError),
    /// The signature is missing, malformed, by an untrusted key, or does not verify.
    #[error("signature: {0}")]
    Signature(#[from] KeyError),
    /// The manifest (or the pointer) is not well-formed.
    #[error("{0}")]
    Malformed(String),
    /// Not newer than the release in use (no rollback: publish old payloads as a new version).
    #[error("version {offered} is not newer than {in_use}, the one in use")]
    NotNewer {
        /// The version offered.
        offered: u64,
        /// The version in use.
        in_use: u64,
    },
    /// Past its expiry time.
    #[error("expired at {0} (Unix time)")]
    Expired(i64),
    /// Needs a newer mxshield.
    #[error("needs mxshield {0} or newer")]
    EngineTooOld(String),
    /// A payload's size or SHA-256 differs from the manifest's.
    #[error("payload {name}: {why}")]
    Payload {
        /// The payload (or vector) name.
        name: String,
        /// What differs.
        why: String,
    },
    /// The database does not load.
    #[error("the database does not load: {0}")]
    Load(String),
    /// A self-test sample was not scanned as the manifest says it must be.
    #[error("self-test failed: {0}")]
    SelfTest(String),
    /// Local storage failed.
    #[error("local storage: {0}")]
    Io(String),
}

impl From<manifest::Malformed> for Refusal {
    fn from(m: manifest::Malformed) -> Refusal {
        Refusal::Malformed(m.to_string())
    }
}

fn io(e: std::io::Error) -> Refusal {
    Refusal::Io(e.to_string())
}

/// A release fetched, verified, loaded and self-tested, staged in a directory of its own.
pub struct Staged {
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's bytes, as signed.
    pub manifest_bytes: Vec<u8>,
    /// The `.minisig` text.
    pub minisig: String,
    /// Which key signed it.
    pub key_id: String,
    /// The staging directory: `db/` (payloads by name) and `vectors/` (by hash).
    pub dir: PathBuf,
    /// The compiled database (version set to [`version_label`]).
    pub signatures: Arc<Signatures>,
}

/// What a check of a source found.
pub enum Check {
    /// The newest release is the one in use (or the pointer did not change).
    UpToDate,
    /// A new release, ready to install.
    New(Box<Staged>),
}

/// What a node needs to know to judge a release.
#[derive(Clone)]
pub struct Judge<'a> {
    /// The keys it trusts.
    pub trusted: &'a [PublicKey],
    /// The version in use (`None`: none installed yet).
    pub in_use: Option<u64>,
    /// Now (Unix seconds).
    pub now: i64,
    /// The scan limits the self-test runs under.
    pub limits: Limits,
    /// The database in use: the compiled parts of files it holds unchanged are taken over
    /// instead of built again beside it.
    pub previous: Option<&'a Signatures>,
    /// How the database is loaded (PUA databases or not).
    pub options: LoadOptions,
}

/// Reads the newest release from `source` and checks it as a node does, staging it in
/// `staging` (a new directory). `pointer_etag` makes the first read conditional; the new
/// validator is returned with the result. `have` finds a payload already held locally by
/// its hash (it is then not fetched again).
pub fn check(
    source: &Source,
    judge: &Judge<'_>,
    pointer_etag: Option<&str>,
    staging: &Path,
    have: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<(Check, Option<String>), Refusal> {
    let (bytes, etag) = match source.get("latest", MAX_POINTER, pointer_etag)? {
        Fetched::NotModified => return Ok((Check::UpToDate, pointer_etag.map(str::to_string))),
        Fetched::Body { bytes, etag } => (bytes, etag),
    };
    let latest: u64 = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| Refusal::Malformed("the `latest` pointer is not a version number".into()))?;
    if judge.in_use == Some(latest) {
        return Ok((Check::UpToDate, etag));
    }
    let staged = fetch_version(source, latest, judge, staging, have)?;
    Ok((Check::New(Box::new(staged)), etag))
}

/// Fetches and checks release `version` (see [`check`]).
pub fn fetch_version(
    source: &Source,
    version: u64,
    judge: &Judge<'_>,
    staging: &Path,
    have: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<Staged, Refusal> {
    let body = |rel: &str| -> Result<Vec<u8>, Refusal> {
        match source.get(rel, MAX_MANIFEST, None)? {
            Fetched::Body { bytes, .. } => Ok(bytes),
            Fetched::NotModified => Err(Refusal::Malformed(format!("{rel}: not modified without a validator"))),
        }
    };
    let manifest_rel = manifest_path(version);
    let manifest_bytes = body(&manifest_rel)?;
    let minisig = String::from_utf8(body(&format!("{manifest_rel}.minisig"))?)
        .map_err(|_| Refusal::Signature(KeyError::Malformed { what: "signature", why: "not text".into() }))?;
    let verified = keys::verify(judge.trusted, &manifest_bytes, &minisig)?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    if manifest.version != version {
        return Err(Refusal::Malformed(format!(
            "the manifest says version {} but was published as {version}",
            manifest.version
        )));
    }
    if let Some(in_use) = judge.in_use
        && manifest.version <= in_use
    {
        return Err(Refusal::NotNewer { offered: manifest.version, in_use });
    }
    if judge.now >= manifest.expires {
        return Err(Refusal::Expired(manifest.expires));
    }
    if manifest::version_at_least(env!("CARGO_PKG_VERSION"), &manifest.min_engine) != Some(true) {
        return Err(Refusal::EngineTooOld(manifest.min_engine.clone()));
    }
    let db = staging.join("db");
    let vectors = staging.join("vectors");
    std::fs::create_dir_all(&db).map_err(io)?;
    std::fs::create_dir_all(&vectors).map_err(io)?;
    for p in &manifest.payloads {
        obtain(source, &p.name, &p.sha256, p.size, &db.join(&p.name), have)?;
    }
    for v in &manifest.vectors {
        obtain(source, &format!("vector {}", v.sha256), &v.sha256, v.size, &vectors.join(&v.sha256), have)?;
    }
    let mut signatures =
        Signatures::load_dir_reusing(&db, judge.previous, judge.options).map_err(|e| Refusal::Load(e.to_string()))?;
    signatures.version = version_label(version);
    let signatures = Arc::new(signatures);
    self_test(&signatures, &manifest.vectors, &vectors, judge.limits)?;
    Ok(Staged { manifest, manifest_bytes, minisig, key_id: verified.key_id, dir: staging.to_path_buf(), signatures })
}

/// Puts the payload `sha256` at `to`: linked from what is held locally, else fetched; its
/// size and hash checked either way.
fn obtain(
    source: &Source,
    name: &str,
    sha256: &str,
    size: u64,
    to: &Path,
    have: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<(), Refusal> {
    if let Some(local) = have(sha256)
        && std::fs::hard_link(&local, to).is_ok()
    {
        return Ok(());
    }
    let (got, hash) = match source.copy_to(&payload_path(sha256), to, size, PAYLOAD_TIMEOUT) {
        Ok(x) => x,
        Err(FetchError::TooLarge { .. }) => {
            return Err(Refusal::Payload { name: name.into(), why: format!("larger than the {size} bytes listed") });
        }
        Err(e) => return Err(e.into()),
    };
    if got != size {
        return Err(Refusal::Payload { name: name.into(), why: format!("{got} bytes, the manifest lists {size}") });
    }
    if hash != sha256 {
        return Err(Refusal::Payload { name: name.into(), why: format!("SHA-256 {hash} differs from the manifest's") });
    }
    Ok(())
}

/// Scans each vector (the files in `dir`, by hash) with the new database: each must be found
/// as its `expect` name, or be clean.
pub fn self_test(sigs: &Arc<Signatures>, vectors: &[Vector], dir: &Path, limits: Limits) -> Result<(), Refusal> {
    let engine = Engine::new(sigs.clone(), limits);
    for v in vectors {
        let data = std::fs::read(dir.join(&v.sha256)).map_err(io)?;
        let got = engine.scan_bytes("self-test", &data).verdict();
        let ok = match (&v.expect, &got) {
            (Some(name), Verdict::Infected(found)) => found == name,
            (None, Verdict::Clean) => true,
            _ => false,
        };
        if !ok {
            let want = v.expect.as_deref().unwrap_or("clean");
            return Err(Refusal::SelfTest(format!("sample {} must be {want}, was {}", v.sha256, got.label())));
        }
    }
    Ok(())
}

/// Why publishing failed (nothing new is visible in the publishing directory then).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The database directory holds no database file.
    #[error("{0}: no signature database files")]
    Empty(String),
    /// The database does not load: never published.
    #[error("the database does not load: {0}")]
    Load(String),
    /// The new database fails its own self-test (e.g. it finds a clean sample).
    #[error("{0}")]
    SelfTest(String),
    /// A file name that cannot be a payload name.
    #[error("{0:?}: payload names may hold only letters, digits, '.', '_' and '-'")]
    BadName(String),
    /// File system.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    /// The database directory (freshclam's, plus the operator's own files).
    pub db: &'a Path,
    /// The publishing directory.
    pub repo: &'a Path,
    /// How long nodes may install the release.
    pub expires: Duration,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Publishes a new release of `p.db` into `p.repo`, signed with `secret`. The database is
/// loaded and self-tested first; payloads already in the directory are not written again;
/// `latest` is replaced last, so a reader sees the old release or the new one, whole.
pub fn publish(p: &Publish<'_>, secret: &SecretKey) -> Result<Manifest, PublishError> {
    let previous = std::fs::read_to_string(p.repo.join("latest")).ok().and_then(|t| t.trim().parse::<u64>().ok());
    let version = previous.map_or(1, |v| v + 1);
    let staging = p.repo.join(format!(".staging-{version}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = build(p, secret, version, &staging);
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn build(p: &Publish<'_>, secret: &SecretKey, version: u64, staging: &Path) -> Result<Manifest, PublishError> {
    let db = staging.join("db");
    std::fs::create_dir_all(&db)?;
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(p.db)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() || !scan::sigdb::is_database_file(&name) || name == MARKER_FILE {
            continue;
        }
        if !manifest::is_file_name(&name) {
            return Err(PublishError::BadName(name));
        }
        std::fs::copy(entry.path(), db.join(&name))?;
        names.push(name);
    }
    if names.is_empty() {
        return Err(PublishError::Empty(p.db.display().to_string()));
    }
    // the marker: a signature only this release has, and the sample it must find
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let marker_name = format!("Mxshield.Release.Marker.{version}");
    let marker = format!("MXSHIELD-RELEASE-MARKER-{version}-{}", hex(&nonce));
    std::fs::write(db.join(MARKER_FILE), format!("{marker_name}:0:*:{}\n", hex(marker.as_bytes())))?;
    names.push(MARKER_FILE.into());
    names.sort();
    // every file must load, PUA databases included (nodes may be configured to use them)
    let all = LoadOptions { pua: true };
    let sigs = Signatures::load_dir_reusing(&db, None, all).map_err(|e| PublishError::Load(e.to_string()))?;
    let count = sigs.len() as u64;
    // samples: the marker, EICAR if the database finds it, and two clean ones
    let sigs = Arc::new(sigs);
    let engine = Engine::new(sigs.clone(), Limits::default());
    let eicar = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*".to_vec();
    let mut samples: Vec<(Vec<u8>, Option<String>)> = vec![(marker.into_bytes(), Some(marker_name))];
    if let Verdict::Infected(name) = engine.scan_bytes("eicar", &eicar).verdict() {
        samples.push((eicar, Some(name)));
    }
    samples.push((b"This is a clean self-test sample from mxshield.\r\n".to_vec(), None));
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    samples.push((noise, None));
    let vectors_dir = staging.join("vectors");
    std::fs::create_dir_all(&vectors_dir)?;
    let mut vectors = Vec::new();
    for (data, expect) in samples {
        let sha256 = hex(&Sha256::digest(&data));
        std::fs::write(vectors_dir.join(&sha256), &data)?;
        vectors.push(Vector { size: data.len() as u64, sha256, expect });
    }
    self_test(&sigs, &vectors, &vectors_dir, Limits::default()).map_err(|e| PublishError::SelfTest(e.to_string()))?;
    // payloads by content: what is already there is not written again
    let payloads_dir = p.repo.join("payloads");
    std::fs::create_dir_all(&payloads_dir)?;
    let mut payloads = Vec::new();
    // hashed as streams: a database file may be hundreds of megabytes
    let store = |path: &Path| -> Result<(u64, String), PublishError> {
        let (size, sha256) = sha256_file(path)?;
        let target = payloads_dir.join(&sha256);
        // a payload already there is kept only if it still is what its name says (a damaged
        // or altered file would otherwise be listed in every release to come)
        let intact = sha256_file(&target).is_ok_and(|(_, old)| old == sha256);
        if !intact {
            let tmp = payloads_dir.join(format!(".{sha256}.tmp"));
            std::fs::copy(path, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &target)?;
        }
        Ok((size, sha256))
    };
    for name in &names {
        let (size, sha256) = store(&db.join(name))?;
        payloads.push(Payload { name: name.clone(), size, sha256 });
    }
    for v in &vectors {
        store(&vectors_dir.join(&v.sha256))?;
    }
    let manifest = Manifest {
        format: manifest::FORMAT,
        version,
        created: p.now,
        expires: p.now + p.expires.as_secs() as i64,
        min_engine: env!("CARGO_PKG_VERSION").into(),
        signatures: count,
        payloads,
        vectors,
    };
    let bytes = manifest.to_bytes();
    let release = p.repo.join("releases").join(version.to_string());
    let tmp_release = p.repo.join("releases").join(format!(".{version}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp_release);
    std::fs::create_dir_all(&tmp_release)?;
    std::fs::write(tmp_release.join("manifest.json"), &bytes)?;
    let comment = format!("mxshield release {version} created {} expires {}", manifest.created, manifest.expires);
    std::fs::write(tmp_release.join("manifest.json.minisig"), secret.sign(&bytes, &comment))?;
    std::fs::rename(&tmp_release, &release)?;
    let tmp_latest = p.repo.join(".latest.tmp");
    std::fs::write(&tmp_latest, format!("{version}\n"))?;
    std::fs::File::open(&tmp_latest)?.sync_all()?;
    std::fs::rename(&tmp_latest, p.repo.join("latest"))?;
    Ok(manifest)
}
