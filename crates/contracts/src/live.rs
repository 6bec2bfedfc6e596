//! The contracts snapshot in force, swapped whole when the store changes.
//!
//! With a shared (PostgreSQL) store a node also keeps a **last-good copy** on local disk — an
//! SQLite store written in one transaction whenever a new snapshot is loaded — so that the
//! database is never on the mail path's critical line: a node that cannot reach it at start-up
//! serves its last-good copy (and says it is stale), one that loses it keeps what it has, and
//! both pick up changes when it returns. A node never starts with an empty set because the
//! database was unreachable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{Calendar, Snapshot, Store, StoreError};
use arc_swap::ArcSwap;
use tokio::sync::Notify;

/// Shared handle on the current [`Snapshot`].
#[derive(Clone)]
pub struct LiveContracts {
    current: Arc<ArcSwap<Snapshot>>,
    calendar: Calendar,
    stale: Arc<AtomicBool>,
}

/// How often a node looks at an SQLite store's generation (by default).
pub const RELOAD_LOCAL: Duration = Duration::from_millis(500);

/// How often a node looks at a shared store's generation (by default): `LISTEN/NOTIFY` wakes
/// it at once, this poll only catches a lost notification.
pub const RELOAD_SHARED: Duration = Duration::from_secs(5);

/// How long a node waits for the shared store at start-up before it serves its last-good copy.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a node cannot start serving contracts.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The shared store is unreachable and there is no last-good copy to serve.
    #[error("{why}, and there is no last-good copy of the contracts at {last_good}: not starting with none")]
    NoContracts {
        /// Why the store could not be read.
        why: String,
        /// Where the copy would be.
        last_good: String,
    },
    /// The last-good copy could not be read.
    #[error("{why}; the last-good copy of the contracts cannot be read either: {source}")]
    LastGoodUnreadable {
        /// Why the store could not be read.
        why: String,
        /// Why the copy could not.
        source: StoreError,
    },
}

/// What [`LiveContracts::start`] found.
pub struct Started {
    /// The contracts in force.
    pub live: LiveContracts,
    /// The shared store, if it was reached.
    pub store: Option<Store>,
    /// The local last-good copy.
    pub last_good: Store,
}

impl LiveContracts {
    /// Loads the snapshot from the store.
    pub async fn load(store: &Store, calendar: Calendar) -> Result<LiveContracts, StoreError> {
        let (contracts, scheduled, generation) = store.load_all().await?;
        Ok(LiveContracts::serving(Snapshot::with_schedule(contracts, scheduled, generation), calendar, false))
    }

    fn serving(snap: Snapshot, calendar: Calendar, stale: bool) -> LiveContracts {
        LiveContracts {
            current: Arc::new(ArcSwap::from_pointee(snap)),
            calendar,
            stale: Arc::new(AtomicBool::new(stale)),
        }
    }

    /// Loads the snapshot from the shared store at `url` (waiting at most `timeout`) and saves it
    /// as the last-good copy at `last_good`; when the store cannot be read, serves the last-good
    /// copy instead — stale, logged — and fails only when there is none.
    pub async fn start(
        url: &str,
        last_good: &Path,
        calendar: Calendar,
        timeout: Duration,
    ) -> Result<Started, StartError> {
        let copy_err = |why: &str| {
            let why = why.to_string();
            move |source| StartError::LastGoodUnreadable { why, source }
        };
        let shared = tokio::time::timeout(timeout, async {
            let store = Store::connect(url).await?;
            let loaded = store.load_all().await?;
            Ok::<_, StoreError>((store, loaded))
        })
        .await
        .unwrap_or_else(|_| Err(StoreError::Invalid(format!("no answer in {timeout:?}"))));
        match shared {
            Ok((store, (contracts, scheduled, generation))) => {
                let copy = Store::open(last_good).await.map_err(copy_err("saving the last-good copy"))?;
                if let Err(e) = copy.mirror(&contracts, &scheduled, generation).await {
                    tracing::error!(event = "contracts_last_good_unsaved", path = %last_good.display(), error = %e);
                }
                let live =
                    LiveContracts::serving(Snapshot::with_schedule(contracts, scheduled, generation), calendar, false);
                Ok(Started { live, store: Some(store), last_good: copy })
            }
            Err(e) => {
                let why = format!("the contract store {} cannot be read: {e}", store::redact(url));
                if !last_good.exists() {
                    return Err(StartError::NoContracts { why, last_good: last_good.display().to_string() });
                }
                let copy = Store::open(last_good).await.map_err(copy_err(&why))?;
                let (contracts, scheduled, generation) = copy.load_all().await.map_err(copy_err(&why))?;
                if generation == 0 {
                    return Err(StartError::NoContracts { why, last_good: last_good.display().to_string() });
                }
                tracing::warn!(
                    event = "contracts_stale", generation, contracts = contracts.len(), error = %e,
                    store = %store::redact(url), last_good = %last_good.display(),
                    "serving the last-good copy of the contracts until the store can be read"
                );
                let live =
                    LiveContracts::serving(Snapshot::with_schedule(contracts, scheduled, generation), calendar, true);
                Ok(Started { live, store: None, last_good: copy })
            }
        }
    }

    /// Today in the operator's calendar: the day contracts are in force on.
    pub fn today(&self) -> chrono::NaiveDate {
        self.calendar.today()
    }

    /// The snapshot in force now; holders keep it as long as they need.
    pub fn get(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Whether the snapshot is a last-good copy served because the shared store cannot be read.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Polls the store's generation every `interval`; reloads and swaps when it changes.
    pub fn watch(&self, store: Store, interval: Duration) -> tokio::task::JoinHandle<()> {
        self.follow(Follow { url: String::new(), store: Some(store), last_good: None, poll: interval, wake: None })
    }

    /// Follows a store: looks at its generation every `poll` and whenever `wake` is notified,
    /// reloads and swaps when it changed (saving the last-good copy), connects again when it
    /// had not been reached, and logs when the store goes away and when it returns.
    pub fn follow(&self, f: Follow) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let Follow { url, mut store, last_good, poll, wake } = f;
            let wake = wake.unwrap_or_default();
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = wake.notified() => {}
                }
                if store.is_none() {
                    match tokio::time::timeout(START_TIMEOUT, Store::connect(&url)).await {
                        Ok(Ok(s)) => store = Some(s),
                        Ok(Err(e)) => {
                            me.unreachable(&e.to_string());
                            continue;
                        }
                        Err(_) => {
                            me.unreachable("no answer");
                            continue;
                        }
                    }
                }
                let Some(s) = &store else { continue };
                if let Err(e) = me.refresh(s, last_good.as_ref()).await {
                    me.unreachable(&e.to_string());
                }
            }
        })
    }

    /// One look at the store.
    async fn refresh(&self, store: &Store, last_good: Option<&Store>) -> Result<(), StoreError> {
        let seen = self.get().generation;
        let generation = store.generation().await?;
        if generation != seen {
            let (contracts, scheduled, generation) = store.load_all().await?;
            let n = contracts.len();
            if let Some(copy) = last_good
                && let Err(e) = copy.mirror(&contracts, &scheduled, generation).await
            {
                tracing::error!(event = "contracts_last_good_unsaved", error = %e);
            }
            self.current.store(Arc::new(Snapshot::with_schedule(contracts, scheduled, generation)));
            tracing::info!(event = "contracts_reloaded", generation, contracts = n);
        }
        if self.stale.swap(false, Ordering::Relaxed) {
            tracing::info!(event = "contracts_fresh", generation, "the contract store can be read again");
        }
        Ok(())
    }

    /// Marks the snapshot stale, logging only when it becomes so.
    fn unreachable(&self, why: &str) {
        if !self.stale.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                event = "contracts_stale", generation = self.get().generation, error = %why,
                "the contract store cannot be read: serving the contracts in force until it returns"
            );
        }
    }
}

/// What [`LiveContracts::follow`] follows.
pub struct Follow {
    /// The store's URL (to connect when `store` is `None`).
    pub url: String,
    /// The store, if already reached.
    pub store: Option<Store>,
    /// The local last-good copy to keep up to date (shared stores only).
    pub last_good: Option<Store>,
    /// How often to look at the generation when nothing wakes the follower.
    pub poll: Duration,
    /// Woken by change notifications (PostgreSQL `LISTEN/NOTIFY`).
    pub wake: Option<Arc<Notify>>,
}

/// The default place of the last-good copy in a node's data directory.
pub fn last_good_path(data_dir: &Path) -> PathBuf {
    data_dir.join("contracts-last-good.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
[[contract]]
id = "acme"
customer = "ACME Corp."
accounts_limit = 5
starts = 2026-01-01
[[contract.domain]]
name = "acme.example"
receiving_servers = ["127.0.0.1:2600"]
accounts = ["alice"]
"#;

    fn calendar() -> Calendar {
        Calendar::default()
    }

    /// A node whose notifications never arrive still serves a change, at its next poll: a lost
    /// notification delays a change, never loses it.
    #[tokio::test]
    async fn without_notifications_the_poll_finds_a_change() {
        let schema = testkit::pg::Schema::new("live_poll");
        let dir = testkit::TempDir::new("live-poll");
        let writer = Store::connect(&schema.url()).await.unwrap();
        writer.apply(&crate::parse_file(ONE).unwrap()).await.unwrap();
        let started =
            LiveContracts::start(&schema.url(), &last_good_path(dir.path()), calendar(), START_TIMEOUT).await.unwrap();
        let live = started.live.clone();
        assert_eq!((live.get().generation, live.is_stale()), (1, false));
        // nobody listens: only the poll can see the change
        let follower = live.follow(Follow {
            url: schema.url(),
            store: started.store,
            last_good: Some(started.last_good),
            poll: Duration::from_millis(200),
            wake: None,
        });
        writer.apply(&[]).await.unwrap();
        let t = std::time::Instant::now();
        while live.get().generation != 2 {
            assert!(t.elapsed() < Duration::from_secs(5), "the poll never saw the change");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(live.get().contracts().is_empty());
        // and the last-good copy is what is served now
        let copy = Store::open(&last_good_path(dir.path())).await.unwrap().load().await.unwrap();
        assert_eq!(copy, (vec![], 2));
        follower.abort();
    }

    /// Unreachable store: the last-good copy is served, stale; with no copy, no start.
    #[tokio::test]
    async fn an_unreachable_store_serves_the_last_good_copy_or_does_not_start() {
        let dir = testkit::TempDir::new("live-last-good");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("postgres://mx:secret@{}/mx", listener.local_addr().unwrap());
        drop(listener);
        let path = last_good_path(dir.path());
        let err = LiveContracts::start(&dead, &path, calendar(), START_TIMEOUT).await.err().unwrap();
        let text = err.to_string();
        assert!(text.contains("no last-good copy") && !text.contains("secret"), "{text}");
        // a copy that was never written (generation 0) is no copy either
        Store::open(&path).await.unwrap();
        assert!(matches!(
            LiveContracts::start(&dead, &path, calendar(), START_TIMEOUT).await,
            Err(StartError::NoContracts { .. })
        ));
        Store::open(&path).await.unwrap().mirror(&crate::parse_file(ONE).unwrap(), &[], 7).await.unwrap();
        let started = LiveContracts::start(&dead, &path, calendar(), START_TIMEOUT).await.unwrap();
        assert!(started.store.is_none() && started.live.is_stale());
        assert_eq!(started.live.get().generation, 7);
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        assert!(started.live.get().active_domain("acme.example", day).is_some());
    }
}
