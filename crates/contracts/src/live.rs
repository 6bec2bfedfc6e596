//! The contracts snapshot in force, swapped whole when the store changes.

use std::sync::Arc;
use std::time::Duration;

use crate::{Calendar, Snapshot, Store, StoreError};
use arc_swap::ArcSwap;

/// Shared handle on the current [`Snapshot`].
#[derive(Clone)]
pub struct LiveContracts {
    current: Arc<ArcSwap<Snapshot>>,
    calendar: Calendar,
}

impl LiveContracts {
    /// Loads the snapshot from the store.
    pub async fn load(store: &Store, calendar: Calendar) -> Result<LiveContracts, StoreError> {
        let (contracts, generation) = store.load().await?;
        let snap = Snapshot::new(contracts, generation);
        Ok(LiveContracts { current: Arc::new(ArcSwap::from_pointee(snap)), calendar })
    }

    /// Today in the operator's calendar: the day contracts are in force on.
    pub fn today(&self) -> chrono::NaiveDate {
        self.calendar.today()
    }

    /// The snapshot in force now; holders keep it as long as they need.
    pub fn get(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Polls the store's generation every `interval`; reloads and swaps when it changes.
    pub fn watch(&self, store: Store, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let seen = me.get().generation;
                match store.generation().await {
                    Ok(g) if g != seen => match store.load().await {
                        Ok((contracts, generation)) => {
                            let n = contracts.len();
                            me.current.store(Arc::new(Snapshot::new(contracts, generation)));
                            tracing::info!(event = "contracts_reloaded", generation, contracts = n);
                        }
                        Err(e) => tracing::warn!(event = "contracts_reload_failed", error = %e),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!(event = "contracts_reload_failed", error = %e),
                }
            }
        })
    }
}
