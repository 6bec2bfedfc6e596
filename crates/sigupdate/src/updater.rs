//! The node's update loop: every `check_every`, the source is checked on a background thread
//! of lower priority; a new release that passes every check is installed in the store and
//! handed to the caller to swap in. Nothing here runs on the SMTP path, and a source that is
//! down, slow or a tarpit only delays the next check (with back-off).

use std::sync::Arc;
use std::time::Duration;

use scan::{Limits, Signatures};
use tokio::sync::watch;

use crate::keys::PublicKey;
use crate::release::{self, Check, Judge, Refusal};
use crate::source::Source;
use crate::store::{Refused, Status, Store};

/// `[signatures]`: where releases come from and whom to trust.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// The publishing directory or URL (`None`: no updates; the configured or built-in
    /// database is used as it is).
    pub source: Option<Source>,
    /// Keys whose releases are accepted (two during a key rotation).
    pub trusted: Vec<PublicKey>,
    /// How often the source is checked.
    pub check_every: Duration,
    /// Older than this, the database in use is reported stale (scanning goes on).
    pub max_age: Duration,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            source: None,
            trusted: Vec::new(),
            check_every: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// First wait after a failed check; doubled each time, up to `check_every`.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// The update loop of one node.
pub struct Updater {
    /// The node's installed releases.
    pub store: Store,
    /// Where to look.
    pub source: Source,
    /// Whom to trust.
    pub trusted: Vec<PublicKey>,
    /// Limits the self-test scans run under.
    pub limits: Limits,
    /// How databases are loaded.
    pub options: scan::sigdb::LoadOptions,
    /// How often to check.
    pub check_every: Duration,
    /// When the database in use counts as stale.
    pub max_age: Duration,
}

impl Updater {
    /// Checks until `shutdown`; each newly installed database goes to `swap`. `in_use` is the
    /// release the node started with.
    pub async fn run(
        self,
        mut in_use: Option<(u64, Arc<Signatures>)>,
        swap: impl Fn(Arc<Signatures>) + Send + 'static,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let this = Arc::new(self);
        let mut etag: Option<String> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let now = chrono_now();
            let result = {
                let (this, etag, current) = (this.clone(), etag.clone(), in_use.clone());
                run_low_priority(move || this.check_and_install(current, etag.as_deref(), now))
                    .await
                    .unwrap_or_else(|e| Err(Refusal::Io(e)))
            };
            let mut status = this.store.status();
            status.last_check = now;
            let mut wait = this.check_every;
            match result {
                Ok((Check::UpToDate, tag)) => {
                    etag = tag;
                    backoff = FIRST_BACKOFF;
                    status.last_outcome = "up to date".into();
                    metrics::counter!("mxshield_signature_checks_total", "result" => "up_to_date").increment(1);
                }
                Ok((Check::New(staged), tag)) => {
                    etag = tag;
                    backoff = FIRST_BACKOFF;
                    let m = &staged.manifest;
                    let shared = in_use.as_ref().map_or(0, |(_, prev)| staged.signatures.parts_shared_with(prev));
                    in_use = Some((m.version, staged.signatures.clone()));
                    status.version = Some(m.version);
                    status.since = now;
                    status.created = m.created;
                    status.source = this.source_text();
                    status.key_id = staged.key_id.clone();
                    status.signatures = m.signatures;
                    status.last_outcome = format!("installed {}", m.version);
                    tracing::info!(
                        event = "signatures_updated", version = m.version, signatures = m.signatures,
                        files = m.payloads.len(), files_unchanged = shared, key_id = %staged.key_id,
                        source = %status.source
                    );
                    metrics::counter!("mxshield_signature_checks_total", "result" => "installed").increment(1);
                    swap(staged.signatures.clone());
                }
                Err(Refusal::Fetch(e)) => {
                    // the source is unreachable or slow: try again sooner, backing off
                    status.last_outcome = format!("failed: {e}");
                    tracing::warn!(event = "signature_check_failed", error = %e, retry_in = ?backoff.min(wait));
                    metrics::counter!("mxshield_signature_checks_total", "result" => "failed").increment(1);
                    wait = backoff.min(wait);
                    backoff = (backoff * 2).min(this.check_every);
                }
                Err(refusal) => {
                    etag = None;
                    let reason = refusal.to_string();
                    tracing::warn!(event = "signatures_refused", reason = %reason, in_use = ?in_use.as_ref().map(|u| u.0));
                    metrics::counter!("mxshield_signature_checks_total", "result" => "refused").increment(1);
                    status.last_outcome = format!("refused: {reason}");
                    status.last_refused = Some(Refused { at: now, reason });
                }
            }
            if let Some(v) = status.version {
                metrics::gauge!("mxshield_signatures_release").set(v as f64);
                metrics::gauge!("mxshield_signatures_age_seconds").set((now - status.created) as f64);
            }
            let stale = status.version.is_some() && now - status.created > this.max_age.as_secs() as i64;
            metrics::gauge!("mxshield_signatures_stale").set(if stale { 1.0 } else { 0.0 });
            if stale {
                tracing::warn!(
                    event = "signatures_stale", version = ?status.version, age_s = now - status.created,
                    max_age_s = this.max_age.as_secs()
                );
            }
            if let Err(e) = this.store.set_status(&status) {
                tracing::warn!(event = "signature_status_unwritable", error = %e);
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    fn source_text(&self) -> String {
        match &self.source {
            Source::Dir(d) => d.display().to_string(),
            Source::Http(u) => u.clone(),
        }
    }

    /// One check (blocking): fetch, verify, load, self-test, install.
    fn check_and_install(
        &self,
        in_use: Option<(u64, Arc<Signatures>)>,
        etag: Option<&str>,
        now: i64,
    ) -> Result<(Check, Option<String>), Refusal> {
        let staging = self.store.staging().map_err(|e| Refusal::Io(e.to_string()))?;
        let judge = Judge {
            trusted: &self.trusted,
            in_use: in_use.as_ref().map(|u| u.0),
            now,
            limits: self.limits,
            previous: in_use.as_ref().map(|u| &*u.1),
            options: self.options,
        };
        let result = release::check(&self.source, &judge, etag, &staging, &|h| self.store.have(h));
        if let Ok((Check::New(staged), _)) = &result {
            self.store.install(staged).map_err(|e| Refusal::Io(e.to_string()))?;
        }
        let _ = std::fs::remove_dir_all(&staging);
        result
    }
}

/// Runs `f` on a thread of its own at a lower scheduling priority (nice 10), so building a
/// large database never competes evenly with the SMTP sessions.
async fn run_low_priority<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("sig-update".into()).spawn(move || {
        // SAFETY: changes only this thread's nice value (Linux: per-thread priority).
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        }
        let _ = tx.send(f());
    });
    spawned.map_err(|e| format!("cannot start the update thread: {e}"))?;
    rx.await.map_err(|_| "the update thread panicked".to_string())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The status for a node that starts with `loaded` (a release from the store), keeping the
/// last check and refusal from before.
pub fn started_with(store: &Store, version: u64, created: i64, signatures: u64) -> Status {
    let mut s = store.status();
    if s.version != Some(version) {
        s.version = Some(version);
        s.created = created;
        s.signatures = signatures;
    }
    s.since = chrono_now();
    s
}
