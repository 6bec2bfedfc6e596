//! The conditions of use on a running gateway (R18): every `[conditions] check_every` it
//! measures every contract (from the shared store: the cluster's counts), holds the outbound
//! mail of contracts whose flagged findings have the policy `defer` or `refuse`, mails the
//! operator about those with `warn` (one node, once per finding and clearing), and probes each
//! contract's servers for an open relay on schedule and when they change (one node per run).
//! The canaries of those probes that arrive here are recorded in the shared store.
//!
//! A measurement that fails (the database away) keeps the last holds: metering never stops
//! mail by itself, and never lets it through unmeasured either.

use std::collections::{HashMap, HashSet};

/// A scheduled probe run: contract, period, digest of its servers.
type RunKey = (String, i64, String);
use std::sync::Arc;

use operator::conditions::{self, Policy, Settings};
use operator::relay_probe::{self, ProbeSettings};
use operator::store::AdminStore;
use tokio::sync::{mpsc, watch};

/// What the monitor needs of the running gateway.
pub struct Monitor {
    /// `[conditions]`.
    pub settings: Settings,
    /// The operations (measures come from the message log through it).
    pub operator: operator::Operator,
    /// The operator's tables (clearings, probes, notices).
    pub store: AdminStore,
    /// Where holds are published for the sessions.
    pub held: inbound::HeldContracts,
    /// The contracts in force (whose servers are probed).
    pub contracts: contracts::LiveContracts,
    /// The probe's settings.
    pub probe: ProbeSettings,
    /// Where a `warn` mail is queued, and who is told it was.
    pub spool: spool::Spool,
    /// Tells delivery that a message was queued.
    pub queued: mpsc::Sender<spool::QueueId>,
    /// Who the `warn` mails go to.
    pub notify: String,
    /// The gateway's host name.
    pub hostname: String,
    /// This node's name.
    pub node: String,
}

/// Starts the monitor (`None` when nothing would come of it: every policy `observe` and no
/// scheduled probe).
pub fn start(m: Monitor, shutdown: watch::Receiver<bool>) -> Option<tokio::task::JoinHandle<()>> {
    if !m.settings.acts() && m.settings.relay.every.is_none() {
        return None;
    }
    Some(tokio::spawn(m.run(shutdown)))
}

impl Monitor {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let me = Arc::new(self);
        let mut tick = tokio::time::interval(me.settings.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut current: HashMap<String, inbound::Hold> = Default::default();
        // one scheduled probe run at a time, off the measuring loop (it waits for canaries)
        let mut probing: Option<tokio::task::JoinHandle<()>> = None;
        let probes_from = tokio::time::Instant::now() + me.settings.relay.delay;
        // the runs this node has claimed or seen claimed: the store is asked once per run
        let tried: Arc<std::sync::Mutex<HashSet<RunKey>>> = Default::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            let now = chrono::Utc::now().timestamp();
            // measured only where a policy acts on it (the operator's own reads measure anew)
            if me.settings.acts() {
                current = me.act(current, now).await;
            }
            if tokio::time::Instant::now() >= probes_from && probing.as_ref().is_none_or(|p| p.is_finished()) {
                let m = me.clone();
                let tried = tried.clone();
                probing = Some(tokio::spawn(async move { m.scheduled_probes(now, &tried).await }));
            }
        }
        if let Some(p) = probing {
            p.abort();
        }
    }

    /// Measures every contract, publishes the holds of its `defer`/`refuse` findings and mails
    /// the operator about its `warn` ones; gives the holds now in force (`current` kept when
    /// the measurement fails).
    async fn act(&self, current: HashMap<String, inbound::Hold>, now: i64) -> HashMap<String, inbound::Hold> {
        let thresholds = &self.settings.thresholds;
        let findings = match self.operator.conditions(None, thresholds, &self.store, now).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(event = "conditions_unmeasured", error = %e, "keeping the last holds");
                return current;
            }
        };
        let holds: HashMap<String, inbound::Hold> = conditions::holds(&findings, &self.settings)
            .into_iter()
            .map(|(c, (p, why))| {
                (c, if p == Policy::Refuse { inbound::Hold::Refuse(why) } else { inbound::Hold::Defer(why) })
            })
            .collect();
        for (c, h) in &holds {
            if current.get(c) != Some(h) {
                tracing::warn!(event = "outbound_hold_on", contract = %c, hold = ?h);
            }
        }
        for c in current.keys().filter(|c| !holds.contains_key(*c)) {
            tracing::info!(event = "outbound_hold_off", contract = %c);
        }
        self.held.set(holds.clone());
        for f in conditions::to_warn(&findings, &self.settings) {
            if let Err(e) = self.warn(f, now).await {
                tracing::warn!(event = "conditions_notice_failed", contract = %f.contract, kind = f.kind, error = %e);
            }
        }
        holds
    }

    /// Mails the operator about flagged finding `f`, unless a node already did in its episode.
    async fn warn(&self, f: &conditions::Finding, now: i64) -> anyhow::Result<()> {
        let episode = f.cleared_at.unwrap_or(0);
        if !self.store.claim_notice(&f.contract, f.kind, episode, &self.node, now).await? {
            return Ok(());
        }
        let body = conditions::notice_message(f, &self.hostname, &self.notify);
        let env = spool::attrs::generated(&self.notify, &f.contract, "notice", "conditions_of", f.kind);
        let spool = self.spool.clone();
        let id = tokio::task::spawn_blocking(move || -> Result<spool::QueueId, spool::SpoolError> {
            let mut w = spool.create()?;
            w.write(&body)?;
            w.commit(&env)
        })
        .await??;
        tracing::warn!(event = "conditions_notice", queue_id = %id, contract = %f.contract, kind = f.kind, to = %self.notify);
        let _ = self.queued.try_send(id); // a full channel: the scheduler's rescan finds it
        Ok(())
    }

    /// Probes the servers of each contract in force whose run of this period (or whose set of
    /// servers) no node has claimed yet.
    async fn scheduled_probes(&self, now: i64, tried: &std::sync::Mutex<HashSet<RunKey>>) {
        let Some(every) = self.settings.relay.every else { return };
        let period = now / i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX);
        let snapshot = self.contracts.get();
        let today = self.contracts.today();
        tried.lock().unwrap_or_else(|e| e.into_inner()).retain(|k| k.1 == period);
        for c in snapshot.contracts().iter().filter(|c| c.is_active(today)) {
            let digest = relay_probe::registered_digest(c, self.probe.sending_port);
            let key = (c.id.clone(), period, digest.clone());
            if tried.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
                continue;
            }
            let claimed = self.store.claim_relay_run(&c.id, period, &digest, &self.node, now).await;
            if claimed.is_ok() {
                tried.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
            }
            match claimed {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(event = "relay_probe_unscheduled", contract = %c.id, error = %e);
                    return;
                }
            }
            let (targets, skipped) = relay_probe::targets(c, self.probe.sending_port).await;
            for s in &skipped {
                tracing::info!(event = "relay_probe_skipped", contract = %c.id, server = %s);
            }
            match relay_probe::run(&self.store, &c.id, &targets, &self.probe).await {
                Ok(probes) => {
                    for p in probes.iter().filter(|p| p.arrived_at.is_some()) {
                        tracing::warn!(event = "open_relay", contract = %c.id, server = %p.server, token = %p.token);
                    }
                }
                Err(e) => tracing::warn!(event = "relay_probe_failed", contract = %c.id, error = %e),
            }
        }
    }
}

/// Records the canaries that arrive here in the shared store, where the prober (on any node)
/// finds them; a store that is away is retried for a while, then the arrival is logged only.
pub fn record_canaries(
    store: AdminStore,
    mut arrivals: mpsc::Receiver<inbound::CanaryArrival>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(a) = arrivals.recv().await {
            let from = format!("{} ({})", a.client, a.helo);
            let mut recorded = None;
            for attempt in 0..5u32 {
                match store.canary_arrived(&a.token, a.at, &from, &a.head).await {
                    Ok(known) => {
                        recorded = Some(known);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(event = "relay_canary_unrecorded", token = %a.token, attempt, error = %e);
                        tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
                    }
                }
            }
            match recorded {
                Some(true) => tracing::warn!(event = "relay_canary_recorded", token = %a.token, from = %from),
                Some(false) => tracing::info!(event = "relay_canary_unknown", token = %a.token, from = %from,
                    "no probe has this token (a stray or replayed canary)"),
                None => tracing::error!(event = "relay_canary_lost", token = %a.token, from = %from),
            }
        }
    })
}
