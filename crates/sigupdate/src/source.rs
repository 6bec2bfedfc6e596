//! Where releases are read from: a directory, or a static web server over HTTP(S). Every read
//! is bounded in size and time, so a source that is slow, huge or a tarpit cannot hold an
//! update (or anything else) forever.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A place releases are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A publishing directory, read directly (also `file://` URLs).
    Dir(PathBuf),
    /// A base URL (ending with `/`).
    Http(String),
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The file is not there (404, or no such file).
    #[error("{0}: not found")]
    NotFound(String),
    /// Larger than allowed.
    #[error("{what}: larger than {max} bytes")]
    TooLarge {
        /// What was read.
        what: String,
        /// The bound.
        max: u64,
    },
    /// Anything else: connection, timeout, HTTP status, file system.
    #[error("{what}: {why}")]
    Failed {
        /// What was read.
        what: String,
        /// What went wrong.
        why: String,
    },
}

/// What a conditional read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The content, and its validator for the next conditional read.
    Body {
        /// The bytes.
        bytes: Vec<u8>,
        /// An `ETag` (or, for a directory, size and modification time).
        etag: Option<String>,
    },
    /// Unchanged since the validator given.
    NotModified,
}

/// Time allowed for reading a small file (the pointer, a manifest).
const SMALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Source {
    /// `https://…/`, `http://…/`, `file:///…` or a directory path.
    pub fn parse(text: &str) -> Result<Source, String> {
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Source::Dir(PathBuf::from(path)));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            let base = if text.ends_with('/') { text.to_string() } else { format!("{text}/") };
            return Ok(Source::Http(base));
        }
        if text.contains("://") {
            return Err(format!("{text:?}: only http://, https:// and file:// sources are supported"));
        }
        if text.is_empty() {
            return Err("empty source".into());
        }
        Ok(Source::Dir(PathBuf::from(text)))
    }

    /// Reads `rel` (at most `max` bytes); `etag` makes it conditional.
    pub fn get(&self, rel: &str, max: u64, etag: Option<&str>) -> Result<Fetched, FetchError> {
        match self {
            Source::Dir(dir) => {
                let path = dir.join(rel);
                let meta = std::fs::metadata(&path).map_err(|e| io_error(rel, e))?;
                let tag = dir_etag(&meta);
                if etag == Some(tag.as_str()) {
                    return Ok(Fetched::NotModified);
                }
                let mut bytes = Vec::new();
                let file = std::fs::File::open(&path).map_err(|e| io_error(rel, e))?;
                file.take(max + 1).read_to_end(&mut bytes).map_err(|e| io_error(rel, e))?;
                if bytes.len() as u64 > max {
                    return Err(FetchError::TooLarge { what: rel.into(), max });
                }
                Ok(Fetched::Body { bytes, etag: Some(tag) })
            }
            Source::Http(base) => {
                let mut req = agent(SMALL_TIMEOUT).get(format!("{base}{rel}"));
                if let Some(tag) = etag {
                    req = req.header("If-None-Match", tag);
                }
                let resp = req.call().map_err(|e| http_error(rel, e))?;
                if resp.status().as_u16() == 304 {
                    return Ok(Fetched::NotModified);
                }
                let tag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
                let mut bytes = Vec::new();
                resp.into_body()
                    .into_reader()
                    .take(max + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| FetchError::Failed { what: rel.into(), why: e.to_string() })?;
                if bytes.len() as u64 > max {
                    return Err(FetchError::TooLarge { what: rel.into(), max });
                }
                Ok(Fetched::Body { bytes, etag: tag })
            }
        }
    }

    /// Copies `rel` into the new file `to`, at most `max` bytes within `timeout`, and returns
    /// its size and SHA-256 (lower-case hex).
    pub fn copy_to(&self, rel: &str, to: &Path, max: u64, timeout: Duration) -> Result<(u64, String), FetchError> {
        let failed = |e: std::io::Error| FetchError::Failed { what: rel.into(), why: e.to_string() };
        let reader: Box<dyn Read> = match self {
            Source::Dir(dir) => Box::new(std::fs::File::open(dir.join(rel)).map_err(|e| io_error(rel, e))?),
            Source::Http(base) => {
                let resp = agent(timeout).get(format!("{base}{rel}")).call().map_err(|e| http_error(rel, e))?;
                Box::new(resp.into_body().into_reader())
            }
        };
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(to).map_err(failed)?;
        let mut hash = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        let mut reader = reader.take(max + 1);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(failed(e)),
            };
            total += n as u64;
            if total > max {
                return Err(FetchError::TooLarge { what: rel.into(), max });
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(failed)?;
        }
        out.sync_all().map_err(failed)?;
        Ok((total, hex(&hash.finalize())))
    }
}

/// The size and SHA-256 (lower-case hex) of a file, read as a stream.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf)? {
            0 => break,
            k => {
                hash.update(&buf[..k]);
                n += k as u64;
            }
        }
    }
    Ok((n, hex(&hash.finalize())))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn dir_etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    format!("{}-{}", meta.len(), mtime.as_nanos())
}

fn io_error(rel: &str, e: std::io::Error) -> FetchError {
    if e.kind() == std::io::ErrorKind::NotFound {
        FetchError::NotFound(rel.into())
    } else {
        FetchError::Failed { what: rel.into(), why: e.to_string() }
    }
}

fn http_error(rel: &str, e: ureq::Error) -> FetchError {
    match e {
        ureq::Error::StatusCode(404) => FetchError::NotFound(rel.into()),
        other => FetchError::Failed { what: rel.into(), why: other.to_string() },
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(Duration::from_secs(10)))
        .http_status_as_error(true)
        .user_agent(concat!("mxshield/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(Source::parse("https://u.example/m").unwrap(), Source::Http("https://u.example/m/".into()));
        assert_eq!(Source::parse("file:///srv/r").unwrap(), Source::Dir("/srv/r".into()));
        assert_eq!(Source::parse("/srv/r").unwrap(), Source::Dir("/srv/r".into()));
        assert!(Source::parse("ftp://x/").is_err());
        assert!(Source::parse("").is_err());
    }

    #[test]
    fn directory_reads_are_bounded_and_conditional() {
        let dir = std::env::temp_dir().join(format!("mxshield-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("latest"), b"7\n").unwrap();
        let s = Source::Dir(dir.clone());
        let Fetched::Body { bytes, etag } = s.get("latest", 100, None).unwrap() else { panic!() };
        assert_eq!(bytes, b"7\n");
        assert_eq!(s.get("latest", 100, etag.as_deref()).unwrap(), Fetched::NotModified);
        assert!(matches!(s.get("latest", 1, None), Err(FetchError::TooLarge { .. })));
        assert!(matches!(s.get("nothing", 1, None), Err(FetchError::NotFound(_))));
        let to = dir.join("copy");
        let (n, sha) = s.copy_to("latest", &to, 100, SMALL_TIMEOUT).unwrap();
        assert_eq!((n, sha.len()), (2, 64));
        assert!(matches!(s.copy_to("latest", &dir.join("copy2"), 1, SMALL_TIMEOUT), Err(FetchError::TooLarge { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
