//! Carrying out a rewrite decision on the raw message: each infected attachment is either
//! disinfected (a zip rebuilt without the infected members the report named,
//! [`scan::disinfect`]) or replaced by
//! a short `text/plain` notice in Japanese and English. Every other byte of the message stays
//! as it was.

use std::ops::Range;

use mime::encode::base64_lines;

use super::decision::{Fix, PartFix};
pub use crate::notify::DoneKind;
use scan::disinfect::{self, Infected};

/// What was done to one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The attachment's (decoded) file name or part name.
    pub name: String,
    /// Viruses found in it.
    pub viruses: Vec<String>,
    /// What was done with it.
    pub what: DoneKind,
}

/// Why a rewrite could not be done (the message is then dropped instead: never delivered
/// with the virus).
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The part to rewrite is not in the message.
    #[error("part {0:?} to rewrite is not in the message")]
    NoSuchPart(Vec<usize>),
    /// Two parts to rewrite overlap.
    #[error("parts to rewrite overlap")]
    Overlap,
    /// The part is empty.
    #[error("part {0:?} to rewrite is empty")]
    Empty(Vec<usize>),
}

/// Applies `fixes` to `raw`; `is_infected` scans an archive member's bytes.
pub fn rewrite(
    raw: &[u8],
    fixes: &[PartFix],
    limits: scan::Limits,
    is_infected: &mut dyn FnMut(&[u8]) -> Result<bool, String>,
) -> Result<(Vec<u8>, Vec<Done>), RewriteError> {
    let msg = mime::parse(raw);
    let parts = msg.root.walk();
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    let mut done = Vec::new();
    for fix in fixes {
        let part = parts
            .iter()
            .find(|(p, _)| *p == fix.mime_path)
            .map(|(_, part)| *part)
            .filter(|_| !fix.mime_path.is_empty())
            .ok_or_else(|| RewriteError::NoSuchPart(fix.mime_path.clone()))?;
        if part.header.start == part.body.end {
            // nothing there (an empty embedded message): nothing can be infected, nothing to cut
            return Err(RewriteError::Empty(fix.mime_path.clone()));
        }
        let disinfected = match &fix.fix {
            Fix::Disinfect(members) => {
                // an engine that names no members (clamd) is asked about each one instead
                let infected =
                    if members.is_empty() { Infected::Ask(&mut *is_infected) } else { Infected::Named(members) };
                disinfect::rebuild_zip(&part.decoded_body(raw), limits, infected)
                    .map_err(|e| tracing::warn!(event = "disinfect_failed", part = %fix.name, error = %e))
                    .ok()
                    // an archive with nothing left is replaced by the notice, not delivered empty
                    .filter(|r| !r.removed.is_empty() && r.kept > 0)
            }
            Fix::Remove => None,
        };
        let (replacement, what) = match disinfected {
            Some(rebuilt) => (encoded_part(raw, part, &rebuilt.data), DoneKind::Disinfected(rebuilt.removed)),
            None => (notice_part(&fix.name, &fix.viruses), DoneKind::Removed),
        };
        let mut replacement = replacement;
        let rest = &raw[part.body.end..];
        if !rest.is_empty() && !rest.starts_with(b"\n") && !rest.starts_with(b"\r\n") {
            // an empty part whose line break went to its header section: the next delimiter
            // line must still start on a line of its own
            replacement.extend_from_slice(b"\r\n");
        }
        edits.push((part.header.start..part.body.end, replacement));
        done.push(Done { name: fix.name.clone(), viruses: fix.viruses.clone(), what });
    }
    edits.sort_by_key(|(r, _)| r.start);
    if edits.windows(2).any(|w| w[0].0.end > w[1].0.start) {
        return Err(RewriteError::Overlap);
    }
    Ok((mime::apply_edits(raw, edits), done))
}

/// The part with a new body in base64: its header section is kept byte for byte when it was
/// base64 already, otherwise only its `Content-Transfer-Encoding` field changes.
fn encoded_part(raw: &[u8], part: &mime::Part, body: &[u8]) -> Vec<u8> {
    let header = &raw[part.header.clone()];
    let mut out = if part.encoding == mime::TransferEncoding::Base64 {
        header.to_vec()
    } else {
        let mut h = without_field(header, "content-transfer-encoding");
        h.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        h
    };
    out.extend_from_slice(base64_lines(body).trim_end().as_bytes());
    out
}

/// The header section without the fields named `name` and without its closing empty line
/// (its last line ends with CRLF, so a field can follow).
fn without_field(header: &[u8], name: &str) -> Vec<u8> {
    let mut out = mime::header::without_fields(header, &[name]);
    for empty_line in [&b"\r\n"[..], b"\n"] {
        if out == empty_line || out.ends_with(&[b"\n", empty_line].concat()) {
            out.truncate(out.len() - empty_line.len());
            break;
        }
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The `text/plain` part that takes a removed attachment's place.
fn notice_part(name: &str, viruses: &[String]) -> Vec<u8> {
    let viruses = viruses.join(", ");
    let text = format!(
        "添付ファイル「{name}」はウイルス（{viruses}）に感染していたため、\r\n\
         ウイルスチェックサービス mxshield が削除しました。\r\n\
         \r\n\
         The attachment \"{name}\" was removed by the mxshield virus scanning\r\n\
         service because it contained a virus ({viruses}).\r\n"
    );
    let mut out = b"Content-Type: text/plain; charset=UTF-8\r\n\
        Content-Transfer-Encoding: base64\r\n\
        Content-Disposition: inline\r\n\
        Content-Description: mxshield removed an infected attachment\r\n\r\n"
        .to_vec();
    out.extend_from_slice(base64_lines(text.as_bytes()).trim_end().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &[u8]) -> Result<bool, String> {
        Ok(false)
    }

    const MSG: &str = "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\npre\r\n\
        --B\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
        --B\r\nContent-Type: application/octet-stream; name=\"x.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nQkFE\r\n\
        --B\r\nContent-Type: text/plain\r\n\r\nbye\r\n--B--\r\nepilogue\r\n";

    #[test]
    fn removed_attachment_becomes_a_notice_and_nothing_else_changes() {
        let fix = PartFix { mime_path: vec![2], name: "x.exe".into(), viruses: vec!["Eicar".into()], fix: Fix::Remove };
        let (out, done) = rewrite(MSG.as_bytes(), &[fix], scan::Limits::default(), &mut never).unwrap();
        assert_eq!(done[0].what, DoneKind::Removed);
        let m = mime::parse(&out);
        assert_eq!(m.root.children.len(), 3);
        let notice = &m.root.children[1];
        let text = String::from_utf8(notice.decoded_body(&out)).unwrap();
        assert!(text.contains("添付ファイル「x.exe」") && text.contains("(Eicar)"), "{text}");
        let (before, after) = MSG.split_once("--B\r\nContent-Type: application").unwrap();
        assert!(out.starts_with(before.as_bytes()));
        assert!(String::from_utf8_lossy(&out).ends_with(after.split_once("QkFE").unwrap().1));
    }

    #[test]
    fn header_of_a_non_base64_part_changes_only_its_encoding() {
        let h = b"Content-Type: application/zip\r\nContent-Transfer-Encoding:\r\n  8bit\r\nX-Keep: 1\r\n\r\n";
        assert_eq!(
            without_field(h, "content-transfer-encoding"),
            b"Content-Type: application/zip\r\nX-Keep: 1\r\n".to_vec()
        );
    }

    #[test]
    fn unknown_part_is_an_error() {
        let fix = PartFix { mime_path: vec![9], name: "x".into(), viruses: vec![], fix: Fix::Remove };
        assert!(rewrite(MSG.as_bytes(), &[fix], scan::Limits::default(), &mut never).is_err());
    }

    /// Every part of every corpus message (malformed MIME included) can be replaced, and the
    /// result still parses with the notice where the part was.
    #[test]
    fn every_corpus_part_can_be_replaced() {
        let files = testkit::corpus::files();
        let mut replaced = 0;
        for f in files {
            let raw = std::fs::read(&f).unwrap();
            if raw.len() > 2_000_000 {
                continue;
            }
            let msg = mime::parse(&raw);
            for (path, part) in msg.root.walk().into_iter().take(50) {
                if path.is_empty() || part.kind != mime::PartKind::Leaf || part.header.start == part.body.end {
                    continue;
                }
                let fix =
                    PartFix { mime_path: path.clone(), name: "x".into(), viruses: vec!["V".into()], fix: Fix::Remove };
                let (out, _) = rewrite(&raw, &[fix], scan::Limits::default(), &mut never)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                let again = mime::parse(&out);
                let notice = again.root.walk().into_iter().find(|(p, _)| *p == path).map(|(_, p)| p.decoded_body(&out));
                let text = String::from_utf8_lossy(notice.as_deref().unwrap_or_default()).to_string();
                assert!(
                    text.contains("The attachment \"x\" was removed"),
                    "{} part {path:?}: {part:?}\n{}",
                    f.display(),
                    String::from_utf8_lossy(&out)
                );
                replaced += 1;
            }
        }
        assert!(replaced > 500, "{replaced}");
    }
}
