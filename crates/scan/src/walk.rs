//! The recursion driver: a buffer → its type → signatures → encrypted documents → containers
//! (archives, MIME messages) → each member, depth first, under one [`Budget`].

use crate::encrypted;
use crate::filetype::FileType;
use crate::limits::Budget;
use crate::matcher::Signatures;
use crate::report::Layer;
use crate::unpack::{self, Entry, UnpackError};
use crate::verdict::Verdict;

/// One scan in progress.
pub struct Walker<'a> {
    sigs: &'a Signatures,
    pub budget: Budget,
    /// Bytes given to the matchers.
    pub scanned: u64,
}

impl<'a> Walker<'a> {
    /// A walker over `sigs` with a fresh budget.
    pub fn new(sigs: &'a Signatures, budget: Budget) -> Self {
        Walker { sigs, budget, scanned: 0 }
    }

    /// Scans `data` (named `name`, at container depth `depth`); `mail` forces MIME parsing.
    pub fn scan(&mut self, name: String, data: &[u8], depth: usize, mail: bool) -> Layer {
        let ft = if mail { FileType::Mail } else { FileType::detect(data) };
        let mut layer = Layer::new(name, ft, data.len() as u64);
        if let Err(l) = self.budget.check_time() {
            layer.verdict = Verdict::LimitExceeded(l.0);
            return layer;
        }
        if ft != FileType::Mail {
            self.scanned += data.len() as u64;
            if let Some(d) = self.sigs.check(data, ft) {
                layer.verdict = Verdict::Infected(d.name);
                layer.evidence = Some(d.evidence);
                return layer;
            }
        }
        if let Some(kind) = encrypted::document_encryption(ft, data) {
            layer.verdict = Verdict::Encrypted(kind.to_string());
            return layer;
        }
        if !ft.is_container() {
            return layer;
        }
        if depth >= self.budget.limits.max_depth {
            layer.verdict = Verdict::LimitExceeded(format!("nested deeper than {}", self.budget.limits.max_depth));
            return layer;
        }
        if ft == FileType::Mail {
            self.message(&mut layer, data, depth);
            return layer;
        }
        match unpack::unpack(ft, data, &mut self.budget) {
            Ok(entries) => {
                for e in entries {
                    let child = self.entry(e, depth);
                    let stop = matches!(child.overall(), Verdict::LimitExceeded(_));
                    layer.children.push(child);
                    if stop {
                        break;
                    }
                }
            }
            Err(UnpackError::Limit(l)) => layer.verdict = Verdict::LimitExceeded(l.0),
            Err(UnpackError::Encrypted(kind)) => layer.verdict = Verdict::Encrypted(kind.to_string()),
            Err(UnpackError::Broken(why)) => layer.verdict = Verdict::Unscannable(why),
        }
        layer
    }

    fn entry(&mut self, e: Entry, depth: usize) -> Layer {
        match e {
            Entry::File { name, data } => {
                let mut child = self.scan(name.clone(), &data, depth + 1, false);
                child.filename = Some(name);
                child
            }
            Entry::Encrypted { name, kind } => {
                let mut l = Layer::new(name.clone(), FileType::Binary, 0);
                l.verdict = Verdict::Encrypted(kind.to_string());
                l.filename = Some(name);
                l
            }
            Entry::Broken { name, why } => {
                let mut l = Layer::new(name.clone(), FileType::Binary, 0);
                l.verdict = Verdict::Unscannable(why);
                l.filename = Some(name);
                l
            }
        }
    }

    /// Scans every leaf part of a MIME message (and uuencoded files in text parts).
    fn message(&mut self, layer: &mut Layer, raw: &[u8], depth: usize) {
        let msg = mime::parse(raw);
        if msg.truncated {
            layer.verdict = Verdict::LimitExceeded(format!(
                "MIME structure beyond {} levels or {} parts",
                mime::MAX_DEPTH,
                mime::MAX_PARTS
            ));
        }
        for (path, part) in msg.root.walk() {
            if part.kind != mime::PartKind::Leaf {
                continue;
            }
            if let Err(l) = self.budget.entry() {
                layer.verdict = Verdict::LimitExceeded(l.0);
                return;
            }
            let filename = part.filename();
            let label = if path.is_empty() {
                "body".to_string()
            } else {
                path.iter().map(usize::to_string).collect::<Vec<_>>().join(".")
            };
            let name = match &filename {
                Some(f) => format!("part {label} ({f})"),
                None => format!("part {label}"),
            };
            let decoded = part.decoded_body(raw);
            let mut child = if part.content_type == "message/partial" {
                let mut l = Layer::new(name, FileType::Mail, decoded.len() as u64);
                l.verdict =
                    Verdict::Unscannable("Partial.Message: a message/partial fragment cannot be scanned".into());
                l
            } else {
                let embedded =
                    part.content_type.starts_with("message/") && part.content_type != "message/delivery-status";
                self.scan(name, &decoded, depth + 1, embedded)
            };
            if part.content_type.starts_with("text/") && child.verdict == Verdict::Clean {
                for f in mime::uuencode::find(&decoded) {
                    let mut uu = self.scan(format!("uuencoded {}", f.name), &f.data, depth + 2, false);
                    uu.filename = Some(f.name);
                    child.children.push(uu);
                }
            }
            child.mime_path = Some(path);
            child.filename = filename;
            layer.children.push(child);
            if matches!(layer.overall(), Verdict::LimitExceeded(_)) {
                return;
            }
        }
    }
}
