//! The corpus of other projects' mail and archives (`testdata/corpus`).

use std::path::{Path, PathBuf};

/// The corpus directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus")
}

/// Every file below `dir`, recursively, in a stable (sorted) order.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() { dirs.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

/// Every file of the corpus.
pub fn files() -> Vec<PathBuf> {
    files_in(&dir())
}
