//! The operator's side of signature releases, for the tests that need releases.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::BIN;

/// The operator's side: a key pair and a database directory, published with the CLI.
pub struct Operator {
    pub dir: PathBuf,
    pub public: String,
}

impl Operator {
    /// An operator who has published release 1, detecting `MARKER-ONE-3f9c1d`.
    pub fn with_release_one(root: &Path) -> Operator {
        let op = Operator::new(root);
        op.add("Operator.Marker.One", "MARKER-ONE-3f9c1d");
        op.publish();
        op
    }

    pub fn new(root: &Path) -> Operator {
        let dir = root.join("operator");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let public = keygen(&dir, "op");
        Operator { dir, public }
    }

    /// Adds a body signature `name` for `marker` to the operator's database.
    pub fn add(&self, name: &str, marker: &str) {
        let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
        let file = self.dir.join("db").join("operator.ndb");
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(&format!("{name}:0:*:{hex}\n"));
        std::fs::write(file, text).unwrap();
    }

    pub fn publish(&self) {
        let out = Command::new(BIN)
            .args(["sigs", "publish", "--db", "db", "--secret", "op.key", "--out", "repo"])
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    pub fn signatures_section(&self, source: &str) -> String {
        format!("[signatures]\nsource = \"{source}\"\ntrusted_keys = [\"{}\"]\ncheck_every = \"300ms\"\n", self.public)
    }
}

/// `mxshield sigs keygen` into `dir` (`NAME.key`, `NAME.pub`); returns the public key line.
pub fn keygen(dir: &Path, name: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let (secret, public) = (format!("{name}.key"), format!("{name}.pub"));
    let out = Command::new(BIN)
        .args(["sigs", "keygen", "--secret", &secret, "--public", &public])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(&std::fs::read_to_string(dir.join(&secret)).unwrap()), "secret printed");
    std::fs::read_to_string(dir.join(public)).unwrap().lines().nth(1).unwrap().to_string()
}
