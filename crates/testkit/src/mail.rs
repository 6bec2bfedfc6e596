//! Building test mail: messages with attachments, zip archives, and reading zips back.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// A zip archive of `members` (deflated).
pub fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in members {
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        w.start_file(*name, options).expect("zip member");
        w.write_all(data).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// Member names of a zip archive, in order.
pub fn zip_names(data: &[u8]) -> Vec<String> {
    zip_members(data).into_iter().map(|m| m.0).collect()
}

/// Each member of a zip: (name, compressed bytes as stored, uncompressed bytes).
pub fn zip_members(data: &[u8]) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut a = ZipArchive::new(Cursor::new(data)).expect("a zip archive");
    (0..a.len())
        .map(|i| {
            let mut raw = Vec::new();
            a.by_index_raw(i).expect("member").read_to_end(&mut raw).expect("raw read");
            let mut f = a.by_index(i).expect("member");
            let name = f.name().expect("name").to_string();
            let mut plain = Vec::new();
            f.read_to_end(&mut plain).expect("read");
            (name, raw, plain)
        })
        .collect()
}

/// A multipart/mixed message: a text part and one base64 attachment named `filename`.
pub fn with_attachment(from: &str, subject: &str, text: &str, filename: &str, data: &[u8]) -> Vec<u8> {
    multipart(
        &format!(
            "From: {from}\r\nTo: alice@acme.example\r\nSubject: {subject}\r\nMessage-ID: <att.{}@remote.test>\r\nDate: Sat, 28 Nov 2026 07:00:00 +0000\r\n",
            subject.len()
        ),
        &[text_part(text), attachment_part(&format!("name=\"{filename}\""), data)],
    )
}

/// A `text/plain` part.
pub fn text_part(text: &str) -> String {
    format!("Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n")
}

/// A base64 `application/octet-stream` part; `name_params` is e.g. `name="a.zip"` or an
/// RFC 2231 `name*=…` parameter.
pub fn attachment_part(name_params: &str, data: &[u8]) -> String {
    format!(
        "Content-Type: application/octet-stream; {name_params}\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        mime::encode::base64_lines(data)
    )
}

/// A multipart/mixed message from a header section (CRLF lines) and parts.
pub fn multipart(headers: &str, parts: &[String]) -> Vec<u8> {
    let mut m = format!(
        "{headers}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\nThis is MIME.\r\n"
    );
    for p in parts {
        m.push_str("--=_b\r\n");
        m.push_str(p);
        if !p.ends_with("\r\n") {
            m.push_str("\r\n");
        }
    }
    m.push_str("--=_b--\r\n");
    m.into_bytes()
}
