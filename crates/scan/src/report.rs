//! The report of a scan: a tree of layers (message › part › archive member …), each with its
//! type, size, verdict and evidence.

use serde::Serialize;

use crate::filetype::FileType;
use crate::verdict::Verdict;

/// One layer of what was scanned.
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// This layer's own name: `message`, `part 3 (invoice.zip)`, `docs/eicar.com` …
    pub name: String,
    #[serde(rename = "type")]
    /// What it holds.
    pub file_type: FileType,
    /// Its size in bytes.
    pub size: u64,
    #[serde(flatten)]
    /// What was found in it (itself, not its children).
    pub verdict: Verdict,
    /// What matched (signature and where), or why the verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The container said this member is damaged (`Broken.Zip: CRC mismatch`); its bytes were
    /// scanned all the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
    /// MIME part path (1-based) for parts of a message, e.g. `[2, 1]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_path: Option<Vec<usize>>,
    /// Decoded file name, when the layer had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// A MIME part that is the text or HTML body a reader sees (not an attachment).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_text: bool,
    /// A part found outside the declared MIME structure (in a preamble, an epilogue or a
    /// plain-text body): it cannot be cut out of the message on its own.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub loose: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    /// What it contains (members, parts).
    pub children: Vec<Layer>,
}

impl Layer {
    /// A clean layer with no children yet.
    pub fn new(name: impl Into<String>, file_type: FileType, size: u64) -> Layer {
        Layer {
            name: name.into(),
            file_type,
            size,
            verdict: Verdict::Clean,
            evidence: None,
            damaged: None,
            mime_path: None,
            filename: None,
            body_text: false,
            loose: false,
            children: Vec::new(),
        }
    }

    /// The worst verdict in this subtree.
    pub fn overall(&self) -> Verdict {
        self.children.iter().fold(self.verdict.clone(), |v, c| v.worst(c.overall()))
    }

    /// Every layer whose own verdict is not clean, with its path (`a › b › c`).
    pub fn findings(&self) -> Vec<(String, &Layer)> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect<'a>(&'a self, path: &mut Vec<&'a str>, out: &mut Vec<(String, &'a Layer)>) {
        path.push(&self.name);
        if self.verdict != Verdict::Clean {
            out.push((path.join(" › "), self));
        }
        for c in &self.children {
            c.collect(path, out);
        }
        path.pop();
    }

    /// Number of layers in this subtree.
    pub fn count(&self) -> usize {
        1 + self.children.iter().map(Layer::count).sum::<usize>()
    }
}

/// A finished scan.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The whole tree, from the message or file scanned.
    pub root: Layer,
    /// Bytes examined by the matchers (decoded and expanded data included).
    pub bytes_scanned: u64,
    /// The signature database version used.
    pub signatures: String,
}

impl Report {
    /// The verdict of the whole scan.
    pub fn verdict(&self) -> Verdict {
        self.root.overall()
    }
}
