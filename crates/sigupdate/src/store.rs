//! A node's installed releases, under `data_dir/signatures/`:
//!
//! ```text
//! objects/<sha256>                     verified payloads and self-test samples
//! releases/<version>/manifest.json     the signed manifest and its .minisig
//! releases/<version>/db/<name>         the database files (hard links into objects/)
//! current                              the version in use (replaced by rename)
//! status.json                          the updater's last outcomes, for `sigs status`
//! tmp/                                 downloads in progress (emptied at start)
//! ```
//!
//! Everything is written under a temporary name and renamed into place, so a node killed in
//! the middle of an update restarts with the last good release, never a half-written one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scan::sigdb::LoadOptions;
use scan::{Limits, Signatures};
use serde::{Deserialize, Serialize};

use crate::keys::{self, PublicKey};
use crate::manifest::Manifest;
use crate::release::{self, Staged};

/// Releases kept on disk (the one in use and the ones before it).
const KEEP: usize = 3;

/// The installed releases of one node.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A release loaded from the store.
pub struct Loaded {
    /// Its manifest.
    pub manifest: Manifest,
    /// The compiled database.
    pub signatures: Arc<Signatures>,
}

/// What the updater last did, for `mxshield sigs status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The release in use (`None`: the built-in database).
    pub version: Option<u64>,
    /// Since when (Unix seconds).
    pub since: i64,
    /// When the release in use was published (its age is counted from this).
    pub created: i64,
    /// The source it came from.
    pub source: String,
    /// The key that signed it.
    pub key_id: String,
    /// Signatures in it.
    pub signatures: u64,
    /// The last check (Unix seconds).
    pub last_check: i64,
    /// What the last check found (`up to date`, `installed 7`, or the error).
    pub last_outcome: String,
    /// The last release refused, and why.
    pub last_refused: Option<Refused>,
}

/// A refused release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// When.
    pub at: i64,
    /// Why.
    pub reason: String,
}

impl Store {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> std::io::Result<Store> {
        for d in ["objects", "releases", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(Store { root: root.to_path_buf() })
    }

    /// Empties `tmp/` (what an update interrupted by a crash left); only the node that
    /// updates this store calls it, at start.
    pub fn clear_tmp(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(self.root.join("tmp"))? {
            let p = e?.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
        Ok(())
    }

    /// A new, empty staging directory under `tmp/`.
    pub fn staging(&self) -> std::io::Result<PathBuf> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = self.root.join("tmp").join(format!("{nanos}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// A verified payload held here, by hash.
    pub fn have(&self, sha256: &str) -> Option<PathBuf> {
        let p = self.root.join("objects").join(sha256);
        p.is_file().then_some(p)
    }

    /// The version in use.
    pub fn current(&self) -> Option<u64> {
        std::fs::read_to_string(self.root.join("current")).ok()?.trim().parse().ok()
    }

    /// Installs a staged release and makes it current; older releases beyond the last few are
    /// removed with the payloads only they used.
    pub fn install(&self, staged: &Staged) -> std::io::Result<()> {
        let objects = self.root.join("objects");
        let m = &staged.manifest;
        let mut files: Vec<(PathBuf, &str)> =
            m.payloads.iter().map(|p| (staged.dir.join("db").join(&p.name), p.sha256.as_str())).collect();
        files.extend(m.vectors.iter().map(|v| (staged.dir.join("vectors").join(&v.sha256), v.sha256.as_str())));
        for (from, sha) in files {
            let to = objects.join(sha);
            if !to.exists() {
                std::fs::File::open(&from)?.sync_all()?;
                std::fs::rename(&from, &to)?;
            }
        }
        sync_dir(&objects)?;
        let releases = self.root.join("releases");
        let tmp = releases.join(format!(".{}.tmp", m.version));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("db"))?;
        for p in &m.payloads {
            std::fs::hard_link(objects.join(&p.sha256), tmp.join("db").join(&p.name))?;
        }
        write_synced(&tmp.join("manifest.json"), &staged.manifest_bytes)?;
        write_synced(&tmp.join("manifest.json.minisig"), staged.minisig.as_bytes())?;
        sync_dir(&tmp.join("db"))?;
        sync_dir(&tmp)?;
        let dest = releases.join(m.version.to_string());
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest)?;
        sync_dir(&releases)?;
        self.replace("current", format!("{}\n", m.version).as_bytes())?;
        let _ = std::fs::remove_dir_all(&staged.dir);
        self.prune();
        Ok(())
    }

    /// Loads the newest good release: the current one, else the ones before it (each checked
    /// again: signature, sizes, self-test). `Ok(None)`: none installed. The errors of releases
    /// passed over are returned for the log.
    pub fn load(&self, trusted: &[PublicKey], limits: Limits, options: LoadOptions) -> (Option<Loaded>, Vec<String>) {
        let mut versions = self.versions();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(cur) = self.current() {
            versions.retain(|v| *v <= cur);
        }
        let mut errors = Vec::new();
        for v in versions {
            match self.load_version(v, trusted, limits, options) {
                Ok(l) => return (Some(l), errors),
                Err(e) => errors.push(format!("release {v}: {e}")),
            }
        }
        (None, errors)
    }

    fn load_version(
        &self,
        version: u64,
        trusted: &[PublicKey],
        limits: Limits,
        options: LoadOptions,
    ) -> Result<Loaded, String> {
        let dir = self.root.join("releases").join(version.to_string());
        let bytes = std::fs::read(dir.join("manifest.json")).map_err(|e| e.to_string())?;
        let sig = std::fs::read_to_string(dir.join("manifest.json.minisig")).map_err(|e| e.to_string())?;
        keys::verify(trusted, &bytes, &sig).map_err(|e| e.to_string())?;
        let manifest = Manifest::parse(&bytes).map_err(|e| e.to_string())?;
        for p in &manifest.payloads {
            let len = std::fs::metadata(dir.join("db").join(&p.name)).map_err(|e| format!("{}: {e}", p.name))?.len();
            if len != p.size {
                return Err(format!("{}: {len} bytes, the manifest lists {}", p.name, p.size));
            }
        }
        let mut sigs = Signatures::load_dir_reusing(&dir.join("db"), None, options).map_err(|e| e.to_string())?;
        sigs.version = release::version_label(version);
        let sigs = Arc::new(sigs);
        release::self_test(&sigs, &manifest.vectors, &self.root.join("objects"), limits).map_err(|e| e.to_string())?;
        Ok(Loaded { manifest, signatures: sigs })
    }

    fn versions(&self) -> Vec<u64> {
        std::fs::read_dir(self.root.join("releases"))
            .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Keeps the newest [`KEEP`] releases and the objects they use.
    fn prune(&self) {
        let mut versions = self.versions();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        let releases = self.root.join("releases");
        for old in versions.iter().skip(KEEP) {
            let _ = std::fs::remove_dir_all(releases.join(old.to_string()));
        }
        let mut used = std::collections::HashSet::new();
        for v in versions.iter().take(KEEP) {
            if let Ok(m) = std::fs::read(releases.join(v.to_string()).join("manifest.json"))
                .map_err(|e| e.to_string())
                .and_then(|b| Manifest::parse(&b).map_err(|e| e.to_string()))
            {
                used.extend(m.payloads.into_iter().map(|p| p.sha256));
                used.extend(m.vectors.into_iter().map(|v| v.sha256));
            } else {
                // a release that cannot be read: keep every object rather than guess
                return;
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.root.join("objects")) {
            for e in rd.flatten() {
                if !used.contains(e.file_name().to_string_lossy().as_ref()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// The updater's status.
    pub fn status(&self) -> Status {
        std::fs::read(self.root.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records the updater's status.
    pub fn set_status(&self, status: &Status) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
        self.replace("status.json", &bytes)
    }

    /// Replaces the file `name` in the root by rename.
    fn replace(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.root.join("tmp").join(format!(".{name}.new"));
        write_synced(&tmp, bytes)?;
        std::fs::rename(&tmp, self.root.join(name))?;
        sync_dir(&self.root)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
