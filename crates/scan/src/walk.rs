//! The recursion driver: a buffer → its type → signatures → encrypted documents → containers
//! (archives, MIME messages) → each member, depth first, under one [`Budget`].

use crate::encrypted;
use crate::filetype::FileType;
use crate::limits::{Budget, Limit};
use crate::matcher::Signatures;
use crate::report::Layer;
use crate::unpack::{self, Entry, UnpackError};
use crate::verdict::{Unreadable, Verdict};

/// An executable unpacker: the rebuilt executable, `Ok(None)` when the file is not its kind.
type Unpacker = fn(&[u8], &mut crate::limits::Budget) -> Result<Option<Vec<u8>>, UnpackError>;

/// The packers whose executables are unpacked, and the name their member is given.
const PACKERS: &[(&str, Unpacker)] = &[
    ("UPX-unpacked", unpack::upx::unpack),
    ("WWPack-unpacked", unpack::wwpack::unpack),
    ("Petite-unpacked", unpack::petite::unpack),
    ("ASPack-unpacked", unpack::aspack::unpack),
    ("yC-decrypted", unpack::yc::unpack),
    ("PESpin-unpacked", unpack::pespin::unpack),
    ("MEW-unpacked", unpack::mew::unpack),
    ("Upack-unpacked", unpack::upack::unpack),
];

/// The archives a self-extracting executable carries after its stub, by their magic.
const SFX_ARCHIVES: [(&[u8], FileType); 4] = [
    (b"MSCF\0\0\0\0", FileType::Cab),
    (&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c], FileType::SevenZip),
    (b"Rar!\x1a\x07", FileType::Rar),
    (&[0x60, 0xea], FileType::Arj),
];

/// One scan in progress.
pub struct Walker<'a> {
    sigs: &'a Signatures,
    /// What the scan may still use.
    pub budget: Budget,
    /// Bytes given to the matchers.
    pub scanned: u64,
    /// The type of the container the buffer being scanned came out of (for `.ldb`
    /// `Container:` conditions); `None` at the top.
    container: Option<FileType>,
    /// The `data:` URIs of the HTML just matched, to scan as its members.
    data_uris: Vec<Vec<u8>>,
    /// The files its scripts carry as base64 (HTML smuggling), to scan as its members.
    script_blobs: Vec<Vec<u8>>,
    /// The executable about to be scanned was found embedded in another, whose search found
    /// every executable after it: it is not searched again.
    embedded_pe: bool,
}

impl<'a> Walker<'a> {
    /// A walker over `sigs` with a fresh budget.
    pub fn new(sigs: &'a Signatures, budget: Budget) -> Self {
        Walker {
            sigs,
            budget,
            scanned: 0,
            container: None,
            data_uris: Vec::new(),
            script_blobs: Vec::new(),
            embedded_pe: false,
        }
    }

    /// Scans `data` (named `name`, at container depth `depth`); `mail` forces MIME parsing.
    pub fn scan(&mut self, name: String, data: &[u8], depth: usize, mail: bool) -> Layer {
        let ft = if mail { FileType::Mail } else { FileType::detect(data) };
        self.scan_as(name, data, depth, ft)
    }

    /// Scans `data` as type `ft`.
    fn scan_as(&mut self, name: String, data: &[u8], depth: usize, ft: FileType) -> Layer {
        let mut layer = Layer::new(name, ft, data.len() as u64);
        if let Err(l) = self.budget.check_time() {
            layer.verdict = Verdict::LimitExceeded(l);
            return layer;
        }
        // a layer allow-listed by its hash (`.fp`) is clean with everything inside it
        if self.sigs.is_allow_listed(data) {
            return layer;
        }
        // A container's own bytes are matched after its members, so that a finding names the
        // innermost layer; they are matched at all only if the members could not all be read.
        let hit = ft != FileType::Mail && !ft.is_container() && self.matched(&mut layer, data, ft);
        // an HTML document's `data:` URIs: scanned as the small messages libclamav makes of them
        let uris = std::mem::take(&mut self.data_uris);
        let blobs = std::mem::take(&mut self.script_blobs);
        if hit {
            return layer;
        }
        if !blobs.is_empty() && depth <= self.budget.limits.max_depth {
            for (i, blob) in blobs.iter().enumerate() {
                if let Err(l) = self.budget.spend(blob.len() as u64) {
                    layer.verdict = Verdict::LimitExceeded(l);
                    return layer;
                }
                if !self.member_slice(&mut layer, format!("script base64 {}", i + 1), blob, depth, ft) {
                    return layer;
                }
            }
        }
        if !uris.is_empty() && depth <= self.budget.limits.max_depth {
            for (i, uri) in uris.into_iter().enumerate() {
                // each counts as a member (a page may hold a million of them)
                if let Err(l) = self.budget.entry() {
                    layer.verdict = Verdict::LimitExceeded(l);
                    break;
                }
                let child = self.inside(ft, |w| w.scan(format!("data: URI {}", i + 1), &uri, depth + 1, true));
                let stop = child.overall().is_limit();
                layer.children.push(child);
                if stop {
                    break;
                }
            }
        }
        if let Some(kind) = encrypted::document_encryption(ft, data) {
            layer.verdict = Verdict::Encrypted(kind.to_string());
            return layer;
        }
        if ft == FileType::Pe && depth <= self.budget.limits.max_depth {
            self.executable(&mut layer, data, depth);
            if layer.overall().is_limit() {
                return layer;
            }
        }
        if !ft.is_container() {
            // a zip may hide in any other type (a self-extractor, a zip appended to an image or
            // after a text prefix longer than the type detection looks at)
            if unpack::has_zip_signature(data) {
                self.embedded_zip(&mut layer, data, depth);
            }
            return layer;
        }
        if depth > self.budget.limits.max_depth {
            layer.verdict = Verdict::LimitExceeded(Limit::Depth { max: self.budget.limits.max_depth });
            return layer;
        }
        if ft == FileType::Mail {
            self.message(&mut layer, data, depth);
        } else {
            match unpack::unpack(ft, data, &mut self.budget) {
                Ok(entries) => self.entries(&mut layer, entries, depth, ft),
                Err(UnpackError::Limit(l)) => layer.verdict = Verdict::LimitExceeded(l),
                Err(UnpackError::Encrypted(kind)) => layer.verdict = Verdict::Encrypted(kind.to_string()),
                Err(UnpackError::Broken(why)) => layer.verdict = Verdict::Unscannable(why),
            }
        }
        // ClamAV matches every layer's own bytes as well as its members' (a zip's headers and
        // names, a message's raw text); a finding inside names the innermost layer first
        if !layer.overall().is_infected() && !layer.overall().is_limit() {
            let hit = self.sigs.check_in(data, ft, self.container);
            self.scanned += data.len() as u64;
            if let Some(d) = hit {
                layer.verdict = Verdict::Infected(d.name);
                layer.evidence = Some(d.evidence);
            }
        }
        layer
    }

    /// Members of a zip inside a file of another type (a self-extractor, a zip after a prefix or
    /// with a damaged first signature): scanned as children; nothing if no member is found.
    fn embedded_zip(&mut self, layer: &mut Layer, data: &[u8], depth: usize) {
        if depth > self.budget.limits.max_depth {
            return;
        }
        match unpack::unpack(FileType::Zip, data, &mut self.budget) {
            Ok(entries) => self.entries(layer, entries, depth, FileType::Zip),
            Err(UnpackError::Limit(l)) => layer.verdict = Verdict::LimitExceeded(l),
            Err(_) => {}
        }
    }

    /// What an executable carries, as libclamav looks for it: the files of an InstallShield
    /// setup stream in its overlay (and its cabinet set), the executable UPX packed into it, the
    /// files of an InstallShield MSI setup, of a self-extractor's archive and of a Nullsoft
    /// installer, and the executables embedded in it (each scanned up to the next one, the last
    /// with the rest of the file; one found this way is not searched again — the search of the
    /// outer file found every one after it).
    fn executable(&mut self, layer: &mut Layer, data: &[u8], depth: usize) {
        let searched = !std::mem::take(&mut self.embedded_pe);
        let overlay = crate::pe::parse(data).and_then(|pe| pe.overlay_start());
        let stream = overlay.map(|s| unpack::exe::installshield_files(data, s as usize)).unwrap_or_default();
        for (name, range) in &stream {
            if !self.member_slice(layer, name.clone(), &data[range.clone()], depth, FileType::Pe) {
                return;
            }
        }
        // a cabinet set in the stream: data1.hdr's file table and the dataN.cab files
        let leaf = |name: &str| name.rsplit(['\\', '/']).next().unwrap_or(name).to_ascii_lowercase();
        let hdr = stream.iter().find(|(n, _)| leaf(n) == "data1.hdr").map(|(_, r)| &data[r.clone()]);
        let cabs: Vec<(u16, &[u8])> = stream
            .iter()
            .filter_map(|(n, r)| {
                let no = leaf(n).strip_prefix("data")?.strip_suffix(".cab")?.parse().ok()?;
                Some((no, &data[r.clone()]))
            })
            .collect();
        if let Some(hdr) = hdr.filter(|_| !cabs.is_empty()) {
            let found = unpack::ishield::cab_files(hdr, &cabs, &mut self.budget);
            if !self.carried(layer, found, depth, FileType::Pe) {
                return;
            }
        }
        // packers: the executable each rebuilds, scanned as a member
        for (name, unpacker) in PACKERS {
            match unpacker(data, &mut self.budget) {
                Ok(Some(rebuilt)) => {
                    if !self.member_slice(layer, (*name).into(), &rebuilt, depth, FileType::Pe) {
                        return;
                    }
                }
                Ok(None) => {}
                Err(UnpackError::Limit(l)) => {
                    layer.verdict = Verdict::LimitExceeded(l);
                    return;
                }
                Err(_) => {}
            }
        }
        if let Some(at) = unpack::ishield::find_msi(data) {
            let found = unpack::ishield::msi_files(data, at, &mut self.budget);
            if !self.carried(layer, found, depth, FileType::Pe) {
                return;
            }
        }
        // self-extractors: an archive after the stub (IExpress's cabinet, 7-Zip's, WinRAR's and
        // ARJ's SFX modules); the first of each kind, opened if it reads as one
        for (magic, kind) in SFX_ARCHIVES {
            let Some(at) = data.get(1..).and_then(|d| memchr::memmem::find(d, magic)).map(|a| a + 1) else { continue };
            if FileType::detect(&data[at..]) != kind {
                continue;
            }
            let found = unpack::unpack(kind, &data[at..], &mut self.budget);
            if !self.carried(layer, found, depth, kind) {
                return;
            }
        }
        // an AutoIt executable's script archive (the script and the files it installs)
        for at in unpack::autoit::find(data) {
            let found = unpack::autoit::unpack(&data[at..], &mut self.budget);
            if !self.carried(layer, found, depth, FileType::Pe) {
                return;
            }
        }
        if let Some(at) = unpack::nsis::find(data) {
            let found = unpack::nsis::unpack(&data[at..], &mut self.budget);
            if !self.carried(layer, found, depth, FileType::Pe) {
                return;
            }
        }
        if !searched {
            return;
        }
        let mut found = Vec::new();
        for at in unpack::exe::mz_offsets(data) {
            if let Err(l) = self.budget.check_time() {
                layer.verdict = Verdict::LimitExceeded(l);
                return;
            }
            if unpack::exe::embedded_pe_at(data, at) {
                found.push(at);
            }
        }
        // each up to the next one (the last one with the rest of the file, as libclamav scans
        // it): every byte scanned once however many there are
        let ends = found.iter().skip(1).copied().chain(std::iter::once(data.len()));
        for (at, end) in found.iter().copied().zip(ends) {
            self.embedded_pe = true;
            let go_on =
                self.member_slice(layer, format!("executable at offset {at}"), &data[at..end], depth, FileType::Pe);
            self.embedded_pe = false;
            if !go_on {
                return;
            }
        }
    }

    /// Scans what a search inside an executable found (`found`: its members) as members of
    /// `layer`; a container that turned out not to be one is nothing. False when a limit
    /// stops the walk.
    fn carried(
        &mut self,
        layer: &mut Layer,
        found: Result<Vec<Entry>, UnpackError>,
        depth: usize,
        container: FileType,
    ) -> bool {
        match found {
            Ok(entries) => self.entries(layer, entries, depth, container),
            Err(UnpackError::Limit(l)) => layer.verdict = Verdict::LimitExceeded(l),
            Err(_) => {}
        }
        !layer.overall().is_limit()
    }

    /// Scans a part of a buffer as its member (an entry of the budget); false when a limit
    /// stops the walk.
    fn member_slice(
        &mut self,
        layer: &mut Layer,
        name: String,
        bytes: &[u8],
        depth: usize,
        container: FileType,
    ) -> bool {
        if let Err(l) = self.budget.entry() {
            layer.verdict = Verdict::LimitExceeded(l);
            return false;
        }
        let mut child = self.inside(container, |w| w.scan(name.clone(), bytes, depth + 1, false));
        child.filename = Some(name);
        let stop = child.overall().is_limit();
        layer.children.push(child);
        !stop
    }

    /// Runs `f` with `container` as the type of the container being looked into.
    fn inside<T>(&mut self, container: FileType, f: impl FnOnce(&mut Self) -> T) -> T {
        let outer = self.container.replace(container);
        let r = f(self);
        self.container = outer;
        r
    }

    /// Scans each member as a child of `layer`, stopping at the first that hits a limit.
    fn entries(&mut self, layer: &mut Layer, entries: Vec<Entry>, depth: usize, container: FileType) {
        for e in entries {
            let child = self.inside(container, |w| w.entry(e, depth));
            let stop = child.overall().is_limit();
            layer.children.push(child);
            if stop {
                break;
            }
        }
    }

    /// Runs the signatures on a non-container buffer — and, as ClamAV does, on the normalised
    /// forms of HTML (`nocomment`, `notags`: target types 0 and 3; its normalised scripts as
    /// HTML and as text: 0, 3 and 7) for a file typed HTML or
    /// text holding HTML, else on the normalised copy of text (target types 0 and 7); true if
    /// one matched.
    fn matched(&mut self, layer: &mut Layer, data: &[u8], ft: FileType) -> bool {
        self.scanned += data.len() as u64;
        let container = self.container;
        let html = ft == FileType::Html
            || (ft == FileType::Text && crate::filetype::is_ascii_text(data) && crate::html::holds_html(data));
        let hit = self.sigs.check_in(data, ft, container).or_else(|| {
            if html {
                let n = crate::html::normalise(data);
                self.scanned += (n.nocomment.len() + n.notags.len() + n.javascript.len()) as u64;
                self.data_uris = n.data_uris;
                self.script_blobs = crate::html::smuggling::script_blobs(data);
                let js = &n.javascript;
                self.sigs
                    .check_in(&n.nocomment, FileType::Html, container)
                    .or_else(|| self.sigs.check_in(&n.notags, FileType::Html, container))
                    // the scripts, as HTML and as text (target types 3 and 7)
                    .or_else(|| if js.is_empty() { None } else { self.sigs.check_in(js, FileType::Html, container) })
                    .or_else(|| {
                        if js.is_empty() || !self.sigs.has_normalized() {
                            None
                        } else {
                            self.sigs.check_normalized(js, container)
                        }
                    })
            } else if ft == FileType::Text && self.sigs.has_normalized() {
                self.sigs.check_normalized(&crate::filetype::normalize_text(data), container)
            } else {
                None
            }
        });
        match hit {
            Some(d) => {
                layer.verdict = Verdict::Infected(d.name);
                layer.evidence = Some(d.evidence);
                true
            }
            None => false,
        }
    }

    fn entry(&mut self, e: Entry, depth: usize) -> Layer {
        match e {
            Entry::File { name, data } => {
                let mut child = self.scan(name.clone(), &data, depth + 1, false);
                child.filename = Some(name);
                child
            }
            Entry::Damaged { name, data, why } => {
                let mut child = self.scan(name.clone(), &data, depth + 1, false);
                child.filename = Some(name);
                child.damaged = Some(why);
                child
            }
            Entry::Encrypted { name, kind } => {
                let mut l = Layer::new(name.clone(), FileType::Binary, 0);
                l.verdict = Verdict::Encrypted(kind.to_string());
                l.filename = Some(name);
                l
            }
            Entry::Macro { name, data } => {
                let mut child = self.scan_as(name.clone(), &data, depth + 1, FileType::Vba);
                child.filename = Some(name);
                child
            }
            Entry::Script { name, data } => {
                let mut child = self.scan_as(name.clone(), &data, depth + 1, FileType::Text);
                child.filename = Some(name);
                child
            }
            Entry::Broken { name, why } => {
                let mut l = Layer::new(name.clone(), FileType::Binary, 0);
                l.verdict = Verdict::Unscannable(why);
                l.filename = Some(name);
                l
            }
        }
    }

    /// Scans every leaf part of a MIME message (and uuencoded files in text parts), and the
    /// parts a mail reader might see where the declared structure says there are none.
    fn message(&mut self, layer: &mut Layer, raw: &[u8], depth: usize) {
        let msg = mime::parse(raw);
        if msg.truncated {
            layer.verdict =
                Verdict::LimitExceeded(Limit::MimeStructure { depth: mime::MAX_DEPTH, parts: mime::MAX_PARTS });
        }
        // the layer's overall verdict, kept up to date instead of re-walking the tree per part
        let mut worst = layer.verdict.clone();
        for sp in message_parts(raw, &msg.root) {
            if let Err(l) = self.budget.entry() {
                layer.verdict = Verdict::LimitExceeded(l);
                return;
            }
            let child = self.inside(FileType::Mail, |w| w.part(raw, &sp, depth));
            worst = worst.worst(child.overall());
            layer.children.push(child);
            if worst.is_limit() {
                return;
            }
        }
    }

    fn part(&mut self, raw: &[u8], sp: &ScanPart<'_>, depth: usize) -> Layer {
        let part = &*sp.part;
        let filename = part.filename();
        let name = sp.name();
        let decoded = part.decoded_body(raw);
        let mut child = if part.content_type == "message/partial" {
            let mut l = Layer::new(name, FileType::Mail, decoded.len() as u64);
            l.verdict = Verdict::Unscannable(Unreadable::partial());
            l
        } else {
            let embedded = part.content_type.starts_with("message/") && part.content_type != "message/delivery-status";
            let ft = if embedded { FileType::Mail } else { FileType::detect(&decoded) };
            // A body that is the whole message again (no header section was found) is not
            // parsed as a message once more: that would only repeat itself to the depth limit.
            let ft = if ft == FileType::Mail && !embedded && part.body.start == 0 { FileType::Text } else { ft };
            self.scan_as(name, &decoded, depth + 1, ft)
        };
        // another reading of the same body, for readers that take a later
        // Content-Transfer-Encoding field
        for enc in part.other_encodings(raw) {
            let other = part.decoded_body_as(raw, &enc);
            let mut alt = self.scan(format!("as {}", enc.name()), &other, depth + 2, false);
            alt.filename = part.filename();
            child.children.push(alt);
        }
        if part.content_type.starts_with("text/") && child.verdict == Verdict::Clean {
            for f in mime::uuencode::find(&decoded) {
                // each file is an entry like an archive member
                if let Err(l) = self.budget.entry() {
                    child.verdict = Verdict::LimitExceeded(l);
                    break;
                }
                let mut uu = self.scan(format!("uuencoded {}", f.name), &f.data, depth + 2, false);
                uu.filename = Some(f.name);
                let stop = uu.overall().is_limit();
                child.children.push(uu);
                if stop {
                    break;
                }
            }
        }
        child.mime_path = Some(sp.path.clone());
        child.filename = filename;
        child.loose = sp.is_loose();
        child.body_text = sp.is_body_text();
        child
    }
}

/// A part of a message to scan: a leaf of the MIME tree, or a part found where the declared
/// structure hides one ([`loose_regions`]).
pub struct ScanPart<'a> {
    /// MIME path of the tree part it belongs to (1-based).
    pub path: Vec<usize>,
    /// `1.2` for tree parts, `1.2~1` for loose ones, `body` for a single-part message.
    pub label: String,
    /// The part.
    pub part: std::borrow::Cow<'a, mime::Part>,
    /// Inside a message attached to this one (`message/rfc822`): to the reader, part of an
    /// attachment.
    pub attached: bool,
}

impl ScanPart<'_> {
    /// Found outside the declared structure ([`loose_regions`]).
    pub fn is_loose(&self) -> bool {
        matches!(self.part, std::borrow::Cow::Owned(_))
    }

    /// The text or HTML body the reader of this message sees (not an attachment, not inside
    /// an attached message, not hidden outside the structure).
    pub fn is_body_text(&self) -> bool {
        !self.is_loose() && !self.attached && self.part.is_body_text()
    }

    /// `part 1.2 (name.zip)` or `part 1.2`.
    pub fn name(&self) -> String {
        match self.part.filename() {
            Some(f) => format!("part {} ({f})", self.label),
            None => format!("part {}", self.label),
        }
    }
}

/// Every part of a message a scanner must look at, in order.
pub fn message_parts<'a>(raw: &[u8], root: &'a mime::Part) -> Vec<ScanPart<'a>> {
    let mut out = Vec::new();
    // paths of embedded messages seen so far (the walk visits ancestors first)
    let mut embedded: Vec<Vec<usize>> = Vec::new();
    for (path, part) in root.walk() {
        let attached = embedded.iter().any(|m| path.len() > m.len() && path.starts_with(m));
        if part.kind == mime::PartKind::Message {
            embedded.push(path.clone());
        }
        let label = if path.is_empty() {
            "body".to_string()
        } else {
            path.iter().map(usize::to_string).collect::<Vec<_>>().join(".")
        };
        if part.kind == mime::PartKind::Leaf {
            out.push(ScanPart {
                path: path.clone(),
                label: label.clone(),
                part: std::borrow::Cow::Borrowed(part),
                attached,
            });
        }
        let loose = loose_regions(part).into_iter().flat_map(|r| mime::loose_parts(raw, r));
        for (k, lp) in loose.enumerate() {
            out.push(ScanPart {
                path: path.clone(),
                label: format!("{label}~{}", k + 1),
                part: std::borrow::Cow::Owned(lp),
                attached,
            });
        }
    }
    out
}

/// Regions of a part where a mail reader might find parts the declared structure hides: the
/// preamble and epilogue of a multipart, the body of a multipart whose boundary never occurs,
/// and a plain-text body (headers garbled on purpose).
pub fn loose_regions(part: &mime::Part) -> Vec<std::ops::Range<usize>> {
    match part.kind {
        mime::PartKind::Multipart => {
            let first = part.children.first().map_or(part.body.end, |c| c.outer.start);
            let last = part.children.last().map_or(part.body.end, |c| c.body.end);
            vec![part.body.start..first.max(part.body.start), last.min(part.body.end)..part.body.end]
        }
        mime::PartKind::Leaf
            if part.encoding == mime::TransferEncoding::Identity
                && (part.content_type.starts_with("multipart/") || part.content_type == "text/plain") =>
        {
            vec![part.body.clone()]
        }
        _ => Vec::new(),
    }
}
