//! Ed25519 keys and signatures in minisign's formats, so an operator can also sign or verify
//! a release with the `minisign` tool.
//!
//! - Public key: `Ed` ‖ key id (8 bytes) ‖ public key (32), base64 (the `RW…` line).
//! - Secret key: `Ed` ‖ KDF (`\0\0`: not encrypted) ‖ `B2` ‖ salt (32) ‖ opslimit (8) ‖
//!   memlimit (8) ‖ key id (8) ‖ secret key (64: seed ‖ public key) ‖ BLAKE2b-256 checksum of
//!   `Ed` ‖ key id ‖ secret key (32), base64.
//! - Signature: `ED` ‖ key id ‖ Ed25519 signature of the file's BLAKE2b-512 (the "prehashed"
//!   form), then a trusted comment and a global signature of signature ‖ trusted comment.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Why a key or a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not in minisign's format.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// A public key, a secret key or a signature.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A secret key protected by a password (this tool reads only unencrypted ones).
    #[error("the secret key is encrypted with a password; make one with `mxshield sigs keygen` or `minisign -G -W`")]
    Encrypted,
    /// The secret key's checksum does not match (damaged or wrong file).
    #[error("the secret key's checksum does not match")]
    Checksum,
    /// Signed with a key that is not trusted.
    #[error("signed with key {0}, which is not trusted")]
    Untrusted(String),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// A key file could not be written.
    #[error("{path}: {why}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
}

fn malformed(what: &'static str, why: impl Into<String>) -> KeyError {
    KeyError::Malformed { what, why: why.into() }
}

/// A public key and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key id (minisign's "key number").
    pub id: [u8; 8],
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses a public key: the base64 line alone (`RWQ…`) or a whole minisign `.pub` file.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let raw = key_bytes(text, "public key")?;
        if raw.len() != 42 || &raw[..2] != b"Ed" {
            return Err(malformed("public key", "not an Ed25519 minisign key"));
        }
        let key = VerifyingKey::from_bytes(raw[10..42].try_into().expect("32 bytes"))
            .map_err(|e| malformed("public key", e.to_string()))?;
        Ok(PublicKey { id: raw[2..10].try_into().expect("8 bytes"), key })
    }

    /// The base64 line (what `trusted_keys` holds).
    pub fn to_base64(&self) -> String {
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(self.key.as_bytes());
        B64.encode(raw)
    }

    /// The key id as minisign prints it.
    pub fn id_hex(&self) -> String {
        id_hex(&self.id)
    }

    /// The whole `.pub` file.
    pub fn to_file_text(&self) -> String {
        format!("untrusted comment: minisign public key {}\n{}\n", self.id_hex(), self.to_base64())
    }
}

/// The decoded key line of a key file (or of the line alone), skipping its comment.
fn key_bytes(text: &str, what: &'static str) -> Result<Vec<u8>, KeyError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .ok_or_else(|| malformed(what, "empty"))?;
    B64.decode(line).map_err(|e| malformed(what, e.to_string()))
}

fn id_hex(id: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*id))
}

/// A secret (signing) key.
pub struct SecretKey {
    id: [u8; 8],
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", id_hex(&self.id))
    }
}

const SECRET_LEN: usize = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32;

impl SecretKey {
    /// A new random key pair.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        let mut id = [0u8; 8];
        let no_random = |e: getrandom::Error| KeyError::Io { path: "getrandom".into(), why: e.to_string() };
        getrandom::fill(&mut seed).map_err(no_random)?;
        getrandom::fill(&mut id).map_err(no_random)?;
        Ok(SecretKey { id, key: SigningKey::from_bytes(&seed) })
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey { id: self.id, key: self.key.verifying_key() }
    }

    /// Parses an unencrypted minisign secret key file.
    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        let raw = key_bytes(text, "secret key")?;
        if raw.len() != SECRET_LEN || &raw[..2] != b"Ed" || &raw[4..6] != b"B2" {
            return Err(malformed("secret key", "not an Ed25519 minisign secret key"));
        }
        if raw[2..4] != [0, 0] {
            return Err(KeyError::Encrypted);
        }
        let keynum = &raw[54..];
        let (id, sk, checksum) = (&keynum[..8], &keynum[8..72], &keynum[72..104]);
        // `minisign -G -W` (0.11) leaves the checksum of an unencrypted key zero
        if checksum != secret_checksum(id, sk).as_slice() && checksum.iter().any(|&b| b != 0) {
            return Err(KeyError::Checksum);
        }
        let key = SigningKey::from_bytes(sk[..32].try_into().expect("32 bytes"));
        if key.verifying_key().as_bytes() != &sk[32..] {
            return Err(malformed("secret key", "its public half does not match"));
        }
        Ok(SecretKey { id: id.try_into().expect("8 bytes"), key })
    }

    /// The secret key file (unencrypted: protect it with the file's permissions).
    pub fn to_file_text(&self) -> String {
        let mut sk = self.key.to_bytes().to_vec();
        sk.extend_from_slice(self.key.verifying_key().as_bytes());
        let mut raw = Vec::with_capacity(SECRET_LEN);
        raw.extend_from_slice(b"Ed\0\0B2");
        raw.extend_from_slice(&[0u8; 48]);
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&sk);
        raw.extend_from_slice(&secret_checksum(&self.id, &sk));
        format!("untrusted comment: minisign secret key {}\n{}\n", id_hex(&self.id), B64.encode(raw))
    }

    /// Signs `data`, minisign's prehashed way, with `trusted_comment` (one line) signed too.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        let trusted_comment = trusted_comment.replace(['\r', '\n'], " ");
        let signature = self.key.sign(&Blake2b512::digest(data));
        let mut line = b"ED".to_vec();
        line.extend_from_slice(&self.id);
        line.extend_from_slice(&signature.to_bytes());
        let mut global = signature.to_bytes().to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global = self.key.sign(&global);
        format!(
            "untrusted comment: signature from mxshield secret key {}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            id_hex(&self.id),
            B64.encode(line),
            B64.encode(global.to_bytes())
        )
    }
}

fn secret_checksum(id: &[u8], sk: &[u8]) -> [u8; 32] {
    let mut h = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    h.update(b"Ed");
    h.update(id);
    h.update(sk);
    h.finalize().into()
}

/// A verified signature: which key made it and what its trusted comment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key's id, as minisign prints it.
    pub key_id: String,
    /// The trusted comment (signed with the data).
    pub trusted_comment: String,
}

/// Verifies a minisign signature (`.minisig` text) of `data` made by one of `trusted`.
pub fn verify(trusted: &[PublicKey], data: &[u8], minisig: &str) -> Result<Verified, KeyError> {
    let mut lines = minisig.lines();
    let mut next = |prefix: Option<&str>| -> Result<String, KeyError> {
        let l = lines.next().ok_or_else(|| malformed("signature", "too short"))?.trim_end_matches('\r');
        match prefix {
            Some(p) => {
                l.strip_prefix(p).map(str::to_string).ok_or_else(|| malformed("signature", format!("no {p:?} line")))
            }
            None => Ok(l.to_string()),
        }
    };
    next(Some("untrusted comment:"))?;
    let sig_line = B64.decode(next(None)?.trim()).map_err(|e| malformed("signature", e.to_string()))?;
    let trusted_comment = next(Some("trusted comment: "))?;
    let global = B64.decode(next(None)?.trim()).map_err(|e| malformed("signature", e.to_string()))?;
    if sig_line.len() != 74 || global.len() != 64 {
        return Err(malformed("signature", "wrong length"));
    }
    let id: [u8; 8] = sig_line[2..10].try_into().expect("8 bytes");
    let key = trusted.iter().find(|k| k.id == id).ok_or_else(|| KeyError::Untrusted(id_hex(&id)))?;
    let signature = Signature::from_bytes(sig_line[10..74].try_into().expect("64 bytes"));
    let signed = match &sig_line[..2] {
        b"ED" => Blake2b512::digest(data).to_vec(),
        b"Ed" => data.to_vec(),
        _ => return Err(malformed("signature", "unknown algorithm")),
    };
    key.key.verify_strict(&signed, &signature).map_err(|_| KeyError::BadSignature)?;
    let mut global_signed = signature.to_bytes().to_vec();
    global_signed.extend_from_slice(trusted_comment.as_bytes());
    let global = Signature::from_bytes(global[..].try_into().expect("64 bytes"));
    key.key.verify_strict(&global_signed, &global).map_err(|_| KeyError::BadSignature)?;
    Ok(Verified { key_id: key.id_hex(), trusted_comment })
}

/// Writes a new key pair: the secret key with mode 0600 (never over an existing file), the
/// public key beside it.
pub fn write_key_pair(secret: &Path, public: &Path) -> Result<PublicKey, KeyError> {
    let key = SecretKey::generate()?;
    fn io(p: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
        move |e| KeyError::Io { path: p.display().to_string(), why: e.to_string() }
    }
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(secret).map_err(io(secret))?;
        f.write_all(key.to_file_text().as_bytes()).map_err(io(secret))?;
        f.sync_all().map_err(io(secret))?;
    }
    let pk = key.public();
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(public).map_err(io(public))?;
    f.write_all(pk.to_file_text().as_bytes()).map_err(io(public))?;
    Ok(pk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_signatures_verify() {
        let sk = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&sk.to_file_text()).unwrap();
        assert_eq!(again.public(), sk.public());
        let pk = PublicKey::parse(&sk.public().to_file_text()).unwrap();
        assert_eq!(PublicKey::parse(&pk.to_base64()).unwrap(), pk);
        assert!(pk.to_base64().starts_with("RW"));
        let sig = sk.sign(b"manifest", "version 7");
        let v = verify(std::slice::from_ref(&pk), b"manifest", &sig).unwrap();
        assert_eq!(v.trusted_comment, "version 7");
        assert_eq!(verify(std::slice::from_ref(&pk), b"manifesT", &sig), Err(KeyError::BadSignature));
        let forged = sig.replace("trusted comment: version 7", "trusted comment: version 8");
        assert_eq!(verify(std::slice::from_ref(&pk), b"manifest", &forged), Err(KeyError::BadSignature));
        let other = SecretKey::generate().unwrap().public();
        assert!(matches!(verify(&[other], b"manifest", &sig), Err(KeyError::Untrusted(_))));
        assert!(matches!(verify(&[pk], b"manifest", "garbage"), Err(KeyError::Malformed { .. })));
    }

    #[test]
    fn a_damaged_secret_key_is_refused() {
        let text = SecretKey::generate().unwrap().to_file_text();
        let line = text.lines().nth(1).unwrap();
        let mut raw = B64.decode(line).unwrap();
        raw[100] ^= 1;
        let damaged = format!("untrusted comment: x\n{}\n", B64.encode(&raw));
        assert!(matches!(SecretKey::parse(&damaged), Err(KeyError::Checksum | KeyError::Malformed { .. })));
        raw[100] ^= 1;
        raw[2] = b'S';
        let encrypted = format!("untrusted comment: x\n{}\n", B64.encode(&raw));
        assert_eq!(SecretKey::parse(&encrypted).unwrap_err(), KeyError::Encrypted);
    }
}
