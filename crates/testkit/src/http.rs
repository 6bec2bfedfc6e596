//! A static HTTP/1.1 file server for tests of the signature update path: it serves a
//! directory (with `ETag` and `304 Not Modified`), and can misbehave the ways a real source
//! does — stall half-way through the files under a path prefix, or answer garbage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How the server behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Serves the files.
    Serve,
    /// Serves the files, except that a file under this path prefix is sent half and then
    /// the connection stalls (a download that never ends).
    StallUnder(String),
    /// Answers every request `200` with bytes that are no release.
    Garbage,
}

/// A running server; stops when dropped.
pub struct HttpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How it behaves from now on.
    pub mode: Arc<Mutex<Mode>>,
    /// Paths requested so far.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// How many requests were answered `304 Not Modified`.
    pub not_modified: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Serves `root` on a free loopback port.
    pub async fn start(root: PathBuf, mode: Mode) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let addr = listener.local_addr().expect("http addr");
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let not_modified = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (m, r, nm) = (mode.clone(), requests.clone(), not_modified.clone());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (root, mode, requests, nm) = (root.clone(), m.clone(), r.clone(), nm.clone());
                tokio::spawn(async move {
                    let mut s = BufReader::new(s);
                    let mut request = String::new();
                    let mut etag = None;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if request.is_empty() {
                            request = line.clone();
                        } else if line.trim().is_empty() {
                            break;
                        } else if let Some(v) =
                            line.strip_prefix("If-None-Match:").or(line.strip_prefix("if-none-match:"))
                        {
                            etag = Some(v.trim().to_string());
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                    requests.lock().unwrap().push(path.clone());
                    let mode = mode.lock().unwrap().clone();
                    let s = s.get_mut();
                    if mode == Mode::Garbage {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n\x00\xffgarbage",
                            )
                            .await;
                        return;
                    }
                    let Ok(body) = std::fs::read(root.join(&path)) else {
                        let _ = s
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        return;
                    };
                    let tag = format!("\"{:08x}-{}\"", crc(&body), body.len());
                    if etag.as_deref() == Some(tag.as_str()) {
                        nm.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = s.write_all(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n").await;
                        return;
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {tag}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    if let Mode::StallUnder(prefix) = &mode
                        && path.starts_with(prefix.as_str())
                    {
                        let _ = s.write_all(&body[..body.len() / 2]).await;
                        let _ = s.flush().await;
                        std::future::pending::<()>().await;
                    }
                    let _ = s.write_all(&body).await;
                });
            }
        });
        HttpServer { addr, mode, requests, not_modified, task }
    }

    /// `http://addr/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn crc(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A response as [`request`] read it.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header field `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request to `addr` over a new connection (`Connection: close`): enough for black-box
/// tests of the admin listener. `headers` are sent as given; bodies are not chunked.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the HTTP listener");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("send request");
    s.write_all(body).await.expect("send body");
    // the head, then the body by its length (a server may keep the connection open)
    let read = async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let split = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = s.read(&mut buf).await.expect("read response");
            assert!(n > 0, "the connection closed before a complete head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut body = raw[split + 4..].to_vec();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        loop {
            let done = match length {
                Some(n) => body.len() >= n,
                None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
                None => false,
            };
            if done {
                break;
            }
            let n = s.read(&mut buf).await.expect("read response");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        (head, body)
    };
    let (head, mut body) =
        tokio::time::timeout(std::time::Duration::from_secs(20), read).await.expect("response within 20 s");
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}
