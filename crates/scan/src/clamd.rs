//! An optional external engine: a running `clamd`, over TCP or a Unix socket, with the
//! `INSTREAM` command. Each MIME part (decoded) is sent on its own, so per-part verdicts work
//! as with the built-in engine; clamd opens archives itself.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::filetype::FileType;
use crate::limits::Limit;
use crate::report::{Layer, Report};
use crate::verdict::Verdict;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for ClamdAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddr::Tcp(a) => write!(f, "{a}"),
            ClamdAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl ClamdAddr {
    /// `host:port`, `tcp:host:port`, `/path/to/socket` or `unix:/path`.
    pub fn parse(s: &str) -> Result<ClamdAddr, String> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(ClamdAddr::Unix(p.into()));
        }
        if s.starts_with('/') {
            return Ok(ClamdAddr::Unix(s.into()));
        }
        let hp = s.strip_prefix("tcp:").unwrap_or(s);
        hp.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(ClamdAddr::Tcp)
            .ok_or_else(|| format!("{s:?} is not host:port or a socket path"))
    }
}

/// What clamd said about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdVerdict {
    /// Nothing found.
    Clean,
    /// A signature matched: its name.
    Found(String),
    /// clamd refused or failed (e.g. `INSTREAM size limit exceeded`).
    Error(String),
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A clamd client.
#[derive(Debug, Clone)]
pub struct Clamd {
    /// Where clamd listens.
    pub addr: ClamdAddr,
    /// Per request.
    pub timeout: Duration,
}

impl Clamd {
    fn connect(&self) -> io::Result<Box<dyn Stream>> {
        Ok(match &self.addr {
            ClamdAddr::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, self.timeout)?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                Box::new(s)
            }
            ClamdAddr::Unix(p) => {
                let s = UnixStream::connect(p)?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                Box::new(s)
            }
        })
    }

    fn command(&self, cmd: &[u8], body: Option<&[u8]>) -> io::Result<String> {
        let mut s = self.connect()?;
        let sent = (|| -> io::Result<()> {
            s.write_all(cmd)?;
            if let Some(data) = body {
                for chunk in data.chunks(64 * 1024) {
                    s.write_all(&(chunk.len() as u32).to_be_bytes())?;
                    s.write_all(chunk)?;
                }
                s.write_all(&0u32.to_be_bytes())?;
            }
            s.flush()
        })();
        // clamd may answer and close before it has read everything (a stream over its size
        // limit): its answer, if there is one, is the result, not the broken pipe
        let mut reply = Vec::new();
        let read = s.take(64 * 1024).read_to_end(&mut reply);
        match (sent, read) {
            (Err(e), _) if reply.is_empty() => return Err(e),
            (_, Err(e)) if reply.is_empty() => return Err(e),
            _ => {}
        }
        Ok(String::from_utf8_lossy(&reply).trim_end_matches(['\0', '\n']).to_string())
    }

    /// clamd's version line (`ClamAV 1.4.6/27451/…`).
    pub fn version(&self) -> io::Result<String> {
        self.command(b"zVERSION\0", None)
    }

    /// Scans one buffer with `INSTREAM`.
    pub fn instream(&self, data: &[u8]) -> io::Result<ClamdVerdict> {
        let reply = self.command(b"zINSTREAM\0", Some(data))?;
        let text = reply.strip_prefix("stream: ").unwrap_or(&reply);
        Ok(if text == "OK" {
            ClamdVerdict::Clean
        } else if let Some(name) = text.strip_suffix(" FOUND") {
            ClamdVerdict::Found(name.to_string())
        } else {
            ClamdVerdict::Error(text.to_string())
        })
    }

    /// Scans a message part by part (every leaf, parts hidden by malformed structure,
    /// uuencoded files). A connection failure is returned as an error: the caller must not
    /// pass the message unscanned.
    pub fn scan_message(&self, raw: &[u8], signatures: &str) -> io::Result<Report> {
        let msg = mime::parse(raw);
        let mut root = Layer::new("message", FileType::Mail, raw.len() as u64);
        let mut scanned = 0u64;
        // parts and uuencoded files sent to clamd, bounded like the built-in engine's entries
        let mut entries = 0usize;
        let max_entries = crate::Limits::default().max_entries;
        for sp in crate::walk::message_parts(raw, &msg.root) {
            let p = &*sp.part;
            let decoded = p.decoded_body(raw);
            let mut layer = self.layer(sp.name(), &decoded)?;
            scanned += decoded.len() as u64;
            if p.content_type.starts_with("text/") {
                for f in mime::uuencode::find(&decoded) {
                    entries += 1;
                    if entries > max_entries {
                        root.verdict = Verdict::LimitExceeded(Limit::Entries { max: max_entries });
                        return Ok(Report { root, bytes_scanned: scanned, signatures: signatures.to_string() });
                    }
                    let mut uu = self.layer(format!("uuencoded {}", f.name), &f.data)?;
                    uu.filename = Some(f.name);
                    layer.children.push(uu);
                }
            }
            layer.mime_path = Some(sp.path.clone());
            layer.filename = p.filename();
            layer.loose = sp.is_loose();
            layer.body_text = sp.is_body_text();
            root.children.push(layer);
        }
        Ok(Report { root, bytes_scanned: scanned, signatures: signatures.to_string() })
    }

    fn layer(&self, name: String, data: &[u8]) -> io::Result<Layer> {
        let mut l = Layer::new(name, FileType::detect(data), data.len() as u64);
        l.verdict = match self.instream(data)? {
            ClamdVerdict::Clean => Verdict::Clean,
            ClamdVerdict::Found(n) if n.starts_with("Heuristics.Encrypted") => Verdict::Encrypted(n),
            ClamdVerdict::Found(n) if n.starts_with("Heuristics.Limits.Exceeded") => {
                Verdict::LimitExceeded(Limit::Engine(n))
            }
            ClamdVerdict::Found(n) => {
                l.evidence = Some("clamd".into());
                Verdict::Infected(n)
            }
            ClamdVerdict::Error(e) if e.contains("size limit") => {
                Verdict::LimitExceeded(Limit::Engine(format!("clamd: {e}")))
            }
            ClamdVerdict::Error(e) => return Err(io::Error::other(format!("clamd: {e}"))),
        };
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ClamdAddr::parse("/run/clamav/clamd.ctl").unwrap(), ClamdAddr::Unix("/run/clamav/clamd.ctl".into()));
        assert_eq!(ClamdAddr::parse("unix:/tmp/s").unwrap(), ClamdAddr::Unix("/tmp/s".into()));
        assert_eq!(ClamdAddr::parse("tcp:127.0.0.1:3310").unwrap(), ClamdAddr::Tcp("127.0.0.1:3310".parse().unwrap()));
        assert!(ClamdAddr::parse("nowhere").is_err());
    }
}
