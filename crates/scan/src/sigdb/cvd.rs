//! `.cvd` / `.cld` / `.cud` containers: a 512-byte text header, then a (gzipped) tar of
//! database files. The header's MD5 of the payload is checked.

use std::io::Read;

use md5::{Digest, Md5};

use super::LoadError;

/// Largest container accepted once decompressed.
const MAX_UNPACKED: u64 = 2 * 1024 * 1024 * 1024;

/// Files of a container: (name, content).
pub type Members = Vec<(String, Vec<u8>)>;

/// Returns `name:version` and the member files.
pub fn open(file: &str, data: &[u8]) -> Result<(String, Members), LoadError> {
    let err = |why: String| LoadError { file: file.to_string(), line: 0, why };
    if data.len() < 512 || !data.starts_with(b"ClamAV-VDB:") {
        return Err(err("not a ClamAV container (no ClamAV-VDB header)".into()));
    }
    let header = String::from_utf8_lossy(&data[..512]);
    let fields: Vec<&str> = header.trim_end_matches(['\0', ' ']).split(':').collect();
    let version = fields.get(2).copied().unwrap_or("?");
    let payload = &data[512..];
    if let Some(md5) = fields.get(5).filter(|m| m.len() == 32) {
        let got: String = Md5::digest(payload).iter().map(|b| format!("{b:02x}")).collect();
        if !got.eq_ignore_ascii_case(md5) {
            return Err(err(format!("payload MD5 {got} does not match the header ({md5}): damaged download")));
        }
    }
    let mut tar_bytes = Vec::new();
    if payload.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(payload)
            .take(MAX_UNPACKED)
            .read_to_end(&mut tar_bytes)
            .map_err(|e| err(format!("cannot decompress: {e}")))?;
    } else {
        tar_bytes = payload.to_vec();
    }
    let mut members = Vec::new();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    for entry in archive.entries().map_err(|e| err(format!("bad tar: {e}")))? {
        let mut entry = entry.map_err(|e| err(format!("bad tar: {e}")))?;
        let name = entry.path().map_err(|e| err(format!("bad tar: {e}")))?.to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| err(format!("bad tar: {e}")))?;
        members.push((name, content));
    }
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    Ok((format!("{stem}:{version}"), members))
}
