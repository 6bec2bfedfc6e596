//! An SMTP sink: accepts connections on loopback, records each message, and answers as told.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp::Reply;
use smtp::server::{DataAbort, MailParams, Policy, Session, SessionConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How the sink answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 250 to everything.
    Accept,
    /// This reply to every RCPT.
    RcptReply(u16, (u8, u16, u16)),
    /// This reply to the final dot (the message is not recorded).
    DataReply(u16, (u8, u16, u16)),
    /// Wait this long before answering the final dot (the message is recorded first).
    SlowData(Duration),
    /// Refuse recipients whose local part is in the list with 550 5.1.1.
    UnknownUsers(Vec<String>),
    /// Refuse recipients whose local part is in the first list with 550 5.1.1, and those in the
    /// second as spam (550 5.7.1).
    UnknownAndSpam(Vec<String>, Vec<String>),
    /// An open relay: takes any message for anyone and passes it on (with its own `Received:`
    /// field first, as an MTA does) to this smarthost, after answering the final dot.
    Relay(SocketAddr),
    /// A server that is not an open relay: recipients outside these domains get
    /// `554 5.7.1 Relay access denied` (Postfix's words).
    RefuseRelay(Vec<String>),
}

/// A message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender.
    pub from: String,
    /// The recipients.
    pub rcpts: Vec<String>,
    /// The message, decoded.
    pub data: Vec<u8>,
    /// Whether it came over TLS.
    pub tls: bool,
}

impl Received {
    /// The data as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    connections: usize,
}

/// A running sink.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Starts a sink on a free loopback port.
    pub async fn start(behaviour: Behaviour) -> Sink {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), behaviour, false).await
    }

    /// Starts a sink on `addr`, optionally offering STARTTLS with a self-signed certificate.
    pub async fn start_on(addr: SocketAddr, behaviour: Behaviour, tls: bool) -> Sink {
        let listener = TcpListener::bind(addr).await.expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let state = Arc::new(Mutex::new(State::default()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let config = SessionConfig {
            hostname: "sink.test".into(),
            max_message_size: 100 * 1024 * 1024,
            max_recipients: 1000,
            max_line_length: 4096,
            command_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(60),
            data_total_timeout: Duration::from_secs(600),
            max_errors: 1000,
            tls: tls.then(self_signed_acceptor),
        };
        let (st, bh) = (state.clone(), behaviour.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                st.lock().expect("sink state").connections += 1;
                let policy = SinkPolicy { state: st.clone(), behaviour: bh.clone(), txn: None, tls: false };
                let cfg = config.clone();
                tokio::spawn(async move {
                    let _ = Session::new(Box::new(stream), policy, cfg, None).run().await;
                });
            }
        });
        Sink { addr, state, behaviour, task }
    }

    /// Changes how the sink answers from now on.
    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.lock().expect("sink behaviour") = b;
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().expect("sink state").messages.clone()
    }

    /// How many messages were accepted so far (without copying them).
    pub fn count(&self) -> usize {
        self.state.lock().expect("sink state").messages.len()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("sink state").connections
    }

    /// Waits until at least `n` messages arrived (or `limit` passes); returns them.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.count() >= n || tokio::time::Instant::now() >= deadline {
                return self.messages();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops listening (the port refuses connections afterwards).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct SinkPolicy {
    state: Arc<Mutex<State>>,
    behaviour: Arc<Mutex<Behaviour>>,
    txn: Option<Received>,
    tls: bool,
}

impl SinkPolicy {
    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().expect("sink behaviour").clone()
    }
}

impl Policy for SinkPolicy {
    async fn helo(&mut self, _name: &str, _esmtp: bool) -> Result<(), Reply> {
        Ok(())
    }

    fn tls_started(&mut self) {
        self.tls = true;
    }

    async fn mail_from(&mut self, from: &smtp::Path, _params: &MailParams) -> Result<(), Reply> {
        self.txn = Some(Received { from: from.to_string(), rcpts: Vec::new(), data: Vec::new(), tls: self.tls });
        Ok(())
    }

    async fn rcpt_to(&mut self, to: &smtp::Path) -> Result<(), Reply> {
        match self.behaviour() {
            Behaviour::RcptReply(code, e) => return Err(Reply::new(code, e, "sink says no")),
            Behaviour::UnknownAndSpam(unknown, spam) => {
                let local = to.mailbox.as_ref().map(|m| m.local.to_ascii_lowercase()).unwrap_or_default();
                if unknown.contains(&local) {
                    return Err(Reply::new(550, (5, 1, 1), "no such user here"));
                }
                if spam.contains(&local) {
                    return Err(Reply::new(550, (5, 7, 1), "message rejected as spam by content filter"));
                }
            }
            Behaviour::RefuseRelay(local) => {
                let domain = to.mailbox.as_ref().map(|m| m.domain.to_ascii_lowercase()).unwrap_or_default();
                if !local.contains(&domain) {
                    return Err(Reply::new(554, (5, 7, 1), format!("<{to}>: Relay access denied")));
                }
            }
            Behaviour::UnknownUsers(users) => {
                let local = to.mailbox.as_ref().map(|m| m.local.to_ascii_lowercase()).unwrap_or_default();
                if users.contains(&local) {
                    return Err(Reply::new(550, (5, 1, 1), "no such user here"));
                }
            }
            _ => {}
        }
        if let Some(t) = self.txn.as_mut() {
            t.rcpts.push(to.to_string());
        }
        Ok(())
    }

    async fn data_start(&mut self) -> Result<(), Reply> {
        Ok(())
    }

    async fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        if let Some(t) = self.txn.as_mut() {
            t.data.extend_from_slice(chunk);
        }
        Ok(())
    }

    async fn data_end(&mut self) -> Reply {
        let Some(msg) = self.txn.take() else { return Reply::new(503, (5, 5, 1), "no transaction") };
        match self.behaviour() {
            Behaviour::DataReply(code, e) => return Reply::new(code, e, "sink refuses the data"),
            Behaviour::SlowData(d) => {
                self.state.lock().expect("sink state").messages.push(msg);
                tokio::time::sleep(d).await;
            }
            Behaviour::Relay(smarthost) => {
                let mut data = format!(
                    "Received: from client by sink.test (open relay) for <{}>; {}\r\n",
                    msg.rcpts.first().map(String::as_str).unwrap_or(""),
                    chrono::Utc::now().to_rfc2822()
                )
                .into_bytes();
                data.extend_from_slice(&msg.data);
                let (from, rcpts) = (msg.from.clone(), msg.rcpts.clone());
                self.state.lock().expect("sink state").messages.push(msg);
                tokio::spawn(async move {
                    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
                    let _ = crate::client::send_one(smarthost, &from, &rcpts, &data).await;
                });
            }
            _ => self.state.lock().expect("sink state").messages.push(msg),
        }
        Reply::new(250, (2, 0, 0), "sink queued it")
    }

    async fn data_abort(&mut self, _why: DataAbort) {
        self.txn = None;
    }

    fn reset(&mut self) {
        self.txn = None;
    }
}

/// A TLS acceptor with a fresh self-signed certificate for `sink.test`.
pub fn self_signed_acceptor() -> TlsAcceptor {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let pair = rcgen::generate_simple_self_signed(vec!["sink.test".to_string()]).expect("cert");
    let cert = pair.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

/// A server that accepts TCP connections and never says anything (a hung mail server).
pub struct Tarpit {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Tarpit {
    /// Starts a tarpit on a free loopback port.
    pub async fn start() -> Tarpit {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tarpit");
        let addr = listener.local_addr().expect("tarpit addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        Tarpit { addr, task }
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.task.abort();
    }
}
