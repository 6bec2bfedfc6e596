//! The on-disk format of a queued message.
//!
//! ```text
//! "MXSPOOL" 0x02                       magic and format version
//! 'D' message bytes ...                streamed as they arrive
//! 'E' u32-le length, envelope          strings, each u32-le length + UTF-8 bytes; written at
//!                                      commit, so it can hold what was decided after the data
//! "MXEND" u32-le crc32 u64-le length   CRC of everything before the trailer; data length
//! ```

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

const MAGIC: &[u8; 8] = b"MXSPOOL\x02";
/// Bytes before the message data: magic and the `D` tag.
pub(crate) const DATA_OFFSET: u64 = 9;
const TRAILER_MAGIC: &[u8; 5] = b"MXEND";
const TRAILER_LEN: u64 = 17;
pub(crate) const MAX_ENVELOPE: u32 = 16 * 1024 * 1024;

/// Who the message is from and to, and attributes the gateway attaches (contract, direction…).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Reverse-path without brackets; empty for `<>`.
    pub sender: String,
    /// Forward-paths without brackets.
    pub recipients: Vec<String>,
    /// Unix seconds when the message was accepted.
    pub received_at: u64,
    /// Free key/value pairs owned by the caller.
    pub attrs: Vec<(String, String)>,
}

impl Envelope {
    /// Value of an attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Why a spool file is not valid.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be read.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// It does not start as a spool file of this version does.
    #[error("not a spool file (bad magic or version)")]
    BadMagic,
    /// It ends too early, or its parts do not add up.
    #[error("truncated or inconsistent file")]
    Truncated,
    /// The envelope record cannot be decoded.
    #[error("bad envelope record")]
    BadEnvelope,
    /// The CRC32 of the file does not match its trailer.
    #[error("checksum mismatch")]
    Checksum,
    /// A status file cannot be decoded.
    #[error("bad status file")]
    BadStatus,
    /// An envelope too large to be read back: refused before it is written.
    #[error("envelope of {0} bytes is larger than a spool file may hold")]
    EnvelopeTooLarge(usize),
}

pub(crate) fn encode_start() -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(b'D');
    out
}

pub(crate) fn encode_envelope(env: &Envelope) -> Vec<u8> {
    let mut payload = Vec::new();
    put_str(&mut payload, &env.sender);
    put_str(&mut payload, &env.received_at.to_string());
    put_str(&mut payload, &env.recipients.len().to_string());
    for r in &env.recipients {
        put_str(&mut payload, r);
    }
    put_str(&mut payload, &env.attrs.len().to_string());
    for (k, v) in &env.attrs {
        put_str(&mut payload, k);
        put_str(&mut payload, v);
    }
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(b'E');
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

pub(crate) fn encode_trailer(crc: u32, data_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(TRAILER_LEN as usize);
    out.extend_from_slice(TRAILER_MAGIC);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn string(&mut self) -> Result<String, FormatError> {
        let len = self.0.get(..4).ok_or(FormatError::BadEnvelope)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let bytes = self.0.get(4..4 + len).ok_or(FormatError::BadEnvelope)?;
        self.0 = &self.0[4 + len..];
        String::from_utf8(bytes.to_vec()).map_err(|_| FormatError::BadEnvelope)
    }

    fn number(&mut self) -> Result<u64, FormatError> {
        self.string()?.parse().map_err(|_| FormatError::BadEnvelope)
    }
}

fn decode_envelope(payload: &[u8]) -> Result<Envelope, FormatError> {
    let mut c = Cursor(payload);
    let sender = c.string()?;
    let received_at = c.number()?;
    let n = c.number()? as usize;
    let mut recipients = Vec::with_capacity(n.min(10_000));
    for _ in 0..n {
        recipients.push(c.string()?);
    }
    let n = c.number()? as usize;
    let mut attrs = Vec::with_capacity(n.min(1000));
    for _ in 0..n {
        attrs.push((c.string()?, c.string()?));
    }
    if !c.0.is_empty() || recipients.is_empty() {
        return Err(FormatError::BadEnvelope);
    }
    Ok(Envelope { sender, recipients, received_at, attrs })
}

/// Reads the envelope record at `at` (just after the data); returns it and its length.
fn read_envelope(file: &mut File, at: u64, trailer_at: u64) -> Result<(Envelope, u64), FormatError> {
    if trailer_at < at + 5 {
        return Err(FormatError::Truncated);
    }
    file.seek(SeekFrom::Start(at))?;
    let mut head = [0u8; 5];
    file.read_exact(&mut head).map_err(|_| FormatError::Truncated)?;
    let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes"));
    if head[0] != b'E' || len > MAX_ENVELOPE || at + 5 + u64::from(len) != trailer_at {
        return Err(FormatError::BadEnvelope);
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact(&mut payload).map_err(|_| FormatError::Truncated)?;
    Ok((decode_envelope(&payload)?, 5 + u64::from(len)))
}

fn read_trailer(file: &mut File, size: u64) -> Result<(u32, u64), FormatError> {
    if size < DATA_OFFSET + TRAILER_LEN {
        return Err(FormatError::Truncated);
    }
    file.seek(SeekFrom::Start(size - TRAILER_LEN))?;
    let mut t = [0u8; TRAILER_LEN as usize];
    file.read_exact(&mut t)?;
    if &t[..5] != TRAILER_MAGIC {
        return Err(FormatError::Truncated);
    }
    let crc = u32::from_le_bytes(t[5..9].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(t[9..17].try_into().expect("8 bytes"));
    Ok((crc, len))
}

fn check_magic(file: &mut File) -> Result<(), FormatError> {
    file.seek(SeekFrom::Start(0))?;
    let mut m = [0u8; DATA_OFFSET as usize];
    file.read_exact(&mut m).map_err(|_| FormatError::Truncated)?;
    if &m[..8] != MAGIC || m[8] != b'D' {
        return Err(FormatError::BadMagic);
    }
    Ok(())
}

/// Reads the layout of an open spool file without checking the CRC.
pub(crate) fn read_layout(file: &mut File) -> Result<(Envelope, u64, u64), FormatError> {
    let size = file.metadata()?.len();
    let (_, data_len) = read_trailer(file, size)?;
    check_magic(file)?;
    let env_at = DATA_OFFSET.checked_add(data_len).ok_or(FormatError::Truncated)?;
    let (env, _) = read_envelope(file, env_at, size - TRAILER_LEN)?;
    Ok((env, DATA_OFFSET, data_len))
}

/// Fully validates a spool file (structure, lengths and CRC); returns its envelope.
pub(crate) fn validate_file(path: &Path) -> Result<Envelope, FormatError> {
    let mut file = File::open(path)?;
    let (env, _, _) = read_layout(&mut file)?;
    let size = file.metadata()?.len();
    let (crc, _) = read_trailer(&mut file, size)?;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut rest = BufReader::with_capacity(256 * 1024, file).take(size - TRAILER_LEN);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = rest.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if hasher.finalize() != crc {
        return Err(FormatError::Checksum);
    }
    Ok(env)
}
