//! `mxshield serve`: wires the spool, the contract store, delivery and the SMTP listeners,
//! and shuts down gracefully on SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use contracts::Store;
use smtp::server::SessionConfig;
use spool::{Recovered, Spool};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, ScanConfig};
use crate::{logging, nodes, tls};
use contracts::LiveContracts;
use delivery::DeliveryContext;
use delivery::courier::Courier;
use delivery::route::Router;
use delivery::scheduler::{self, Known};
use filter::notify::{Notifier, Templates};
use filter::{Admission, Filter, Scanner};
use inbound::{self, InboundContext};
use msglog::MessageLog;

/// What `serve` builds from the configuration before it starts, each checked by
/// [`prepare`]: `check-config` checks exactly what `serve` needs.
pub struct Prepared {
    tls: Option<tokio_rustls::TlsAcceptor>,
    scanner: Scanner,
    /// The signature release the built-in engine starts with (`None`: the configured or
    /// built-in database).
    release: Option<(sigupdate::manifest::Manifest, Arc<scan::Signatures>)>,
    notifier: Option<Arc<Notifier>>,
}

/// Loads and checks everything `serve` needs beyond a valid configuration file — the TLS
/// certificate and key, the signature database (or clamd, reached), the warning templates,
/// a usable `data_dir` — and returns every problem at once.
pub fn prepare(config: &Config) -> Result<Prepared, Vec<String>> {
    let mut problems = Vec::new();
    let mut note = |e: anyhow::Error| problems.push(format!("{e:#}"));
    if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
        note(anyhow::anyhow!("cannot create data_dir {}: {e}", config.data_dir.display()));
    }
    let tls = config.smtp.tls.as_ref().map(tls::acceptor).transpose().map_err(&mut note).ok().flatten();
    let scanner = scanner(config).map_err(&mut note).ok();
    let notifier = notifier(config).map_err(&mut note).ok().flatten();
    match scanner {
        Some((scanner, release)) if problems.is_empty() => Ok(Prepared { tls, scanner, release, notifier }),
        _ => Err(problems),
    }
}

/// Runs the gateway until a termination signal. A configuration that cannot be served is
/// reported, every problem at once, with exit status 2.
pub async fn run(config: Config) -> anyhow::Result<ExitCode> {
    logging::init(&config.log);
    // before anything listens: a SIGTERM that arrives once a client could connect must shut
    // down gracefully, not kill the process with the signal's default action
    let signals = Signals::install()?;
    // before anything records a metric
    recorder();
    let Prepared { tls, scanner, release, notifier } = match prepare(&config) {
        Ok(p) => p,
        Err(problems) => {
            for p in problems {
                eprintln!("mxshield: {p}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let spool = Spool::open(config.spool_dir())?.with_node(config.node_id);
    // before anything touches the spool: one gateway per data_dir
    let _spool_lock = spool.lock_exclusive()?;
    let contracts = start_contracts(&config).await?;
    let (msglog, msglog_writer) =
        MessageLog::start(&config.log.message_log, config.log.retention, &config.node_name).await;

    let known = recover(&spool)?;
    let queued_at_start = known.len();
    // bounded: when full, a notice is dropped and the scheduler's rescan of the spool finds the message
    let (queued_tx, queued_rx) = mpsc::channel(10_000);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let delivery = Arc::new(DeliveryContext {
        router: Router::new(&config.delivery, contracts.clone())?,
        courier: Courier::new(config.delivery.clone()),
        cfg: config.delivery.clone(),
        spool: spool.clone(),
        hostname: config.smtp.hostname.clone(),
        postmaster: config.postmaster.clone(),
        queued: queued_tx.clone(),
        msglog: msglog.clone(),
        destinations: Default::default(),
        queue_size: Default::default(),
    });
    let scheduler = tokio::spawn(scheduler::run(delivery.clone(), known, queued_rx, shutdown_rx.clone()));
    let spool_at_shutdown = spool.clone();

    let mut listeners = Vec::new();
    for addr in &config.smtp.listen {
        let l = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(l);
    }
    let session_config = SessionConfig {
        hostname: config.smtp.hostname.clone(),
        max_message_size: config.smtp.max_message_size,
        max_recipients: config.smtp.max_recipients,
        max_line_length: config.smtp.max_line_length,
        command_timeout: config.smtp.command_timeout,
        data_timeout: config.smtp.data_timeout,
        data_total_timeout: config.smtp.data_total_timeout,
        max_errors: config.smtp.max_errors,
        tls,
    };
    let listen: Vec<String> = config.smtp.listen.iter().map(|a| a.to_string()).collect();
    tracing::info!(
        event = "started", version = env!("CARGO_PKG_VERSION"), listen = %listen.join(","),
        hostname = %config.smtp.hostname, data_dir = %config.data_dir.display(), queued = queued_at_start,
        contracts = contracts.get().contracts().len()
    );
    if contracts::test_clock_offset() != 0 {
        tracing::warn!(
            event = "test_clock",
            offset_seconds = contracts::test_clock_offset(),
            "{} is set: the operator's calendar runs on a shifted clock (for tests only)",
            contracts::TEST_CLOCK_VARIABLE
        );
    }
    let scanner = filter::live(scanner);
    let updater = start_updates(&config, &scanner, release.as_ref(), shutdown_rx.clone())?;
    let held = inbound::HeldContracts::default();
    // the spam engine (R18), when the operator runs one: outbound mail scored after its 250
    let (spam_meter, spam_task) = match &config.spam_engine {
        Some(engine) => {
            let (m, t) = bulk::spam::SpamMeter::start(
                engine.clone(),
                config.log.message_log.clone(),
                config.conditions.bulk_flush,
            );
            (Some(m), Some(t))
        }
        None => (None, None),
    };
    // the open-relay probe's canaries that arrive here, recorded in the shared store
    let (canary_tx, canary_rx) = mpsc::channel(1_000);
    let canary_recorder =
        crate::conditions_monitor::record_canaries(operator::store::AdminStore::lazy(&config.contracts.url), canary_rx);
    let probe = crate::conditions_cli::probe_settings(&config);
    // the bulk meter (R18): fed after each 250, flushing into the message log's database
    let (bulk_meter, bulk_thread) = if config.conditions.bulk_metering {
        let (m, t) = bulk::meter::Meter::start(
            config.log.message_log.clone(),
            config.conditions.bulk_flush,
            tokio::runtime::Handle::current(),
        );
        (Some(m), Some(t))
    } else {
        (None, None)
    };
    let ctx = Arc::new(InboundContext {
        postmaster: config.postmaster.clone(),
        postmaster_forward: config.postmaster_forward.clone(),
        held: held.clone(),
        bulk: bulk_meter.clone(),
        spam: spam_meter.clone(),
        canaries: Some(inbound::Canaries { domain: probe.canary_domain.clone(), arrivals: canary_tx }),
        metrics_by_contract: config.admin.metrics_by_contract,
        smtp: config.smtp.clone(),
        spool,
        contracts,
        filter: Filter {
            max_received_headers: config.smtp.max_received_headers,
            scanner,
            notifier,
            admission: Arc::new(Admission::new(
                config.scan.max_concurrent,
                config.scan.max_memory,
                config.scan.limits.max_expanded,
            )),
            max_time: config.scan.limits.max_time,
        },
        queued: queued_tx,
        msglog,
    });
    let running = nodes::Running {
        contracts: ctx.contracts.clone(),
        scanner: ctx.filter.scanner.clone(),
        delivery,
        loaded_at: &LOADED_AT,
    };
    let (admin, admin_url) = match start_admin(&config, shutdown_rx.clone()).await? {
        Some((handle, url)) => (Some(handle), url),
        None => (None, None),
    };
    let heartbeat = nodes::start_heartbeat(&config, running, admin_url, shutdown_rx.clone());
    let monitor = crate::conditions_monitor::Monitor {
        settings: config.conditions.clone(),
        operator: crate::cli::operator(&config),
        store: operator::store::AdminStore::lazy(&config.contracts.url),
        held,
        contracts: ctx.contracts.clone(),
        probe,
        spool: ctx.spool.clone(),
        queued: ctx.queued.clone(),
        notify: config
            .conditions
            .notify
            .clone()
            .or_else(|| config.postmaster_forward.clone())
            .unwrap_or_else(|| config.postmaster.clone()),
        hostname: config.smtp.hostname.clone(),
        node: config.node_name.clone(),
    };
    let conditions = crate::conditions_monitor::start(monitor, shutdown_rx.clone());
    let server = tokio::spawn(inbound::serve(ctx, listeners, session_config, shutdown_rx));
    signals.wait().await;
    tracing::info!(event = "shutting_down");
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    let _ = scheduler.await;
    // messages committed through the journal and not yet delivered get their files: the queue
    // left on disk is whole without the journal (which would restore them at the next start)
    let spool = spool_at_shutdown;
    let not_written = tokio::task::spawn_blocking(move || spool.write_out_all()).await.unwrap_or(0);
    if not_written > 0 {
        tracing::warn!(
            event = "spool_write_out_failed",
            messages = not_written,
            "queued messages kept in the commit journal only; restored at the next start"
        );
    }
    if let Some(u) = updater {
        let _ = u.await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), heartbeat).await;
    if let Some(c) = conditions {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c).await;
    }
    // every session is gone, so is every handle of the spam meter: it flushes once more and ends
    drop(spam_meter);
    if let Some(t) = spam_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
    }
    // every session is gone, so is the sender of canaries: the recorder finishes what it has
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), canary_recorder).await;
    // every session is gone, so is every handle of the meter: it flushes once more and ends
    drop(bulk_meter);
    if let Some(t) = bulk_thread {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tokio::task::spawn_blocking(move || t.join()))
            .await;
    }
    if let Some(a) = admin {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), a).await;
    }
    // every sender of the message log is gone now: its writer finishes what it has (bounded,
    // so that a sender kept alive somewhere cannot hold the process)
    if tokio::time::timeout(std::time::Duration::from_secs(10), msglog_writer).await.is_err() {
        tracing::warn!(event = "message_log_unfinished", "the message log writer did not finish in 10 s");
    }
    tracing::info!(event = "stopped");
    Ok(ExitCode::SUCCESS)
}

/// The process's metrics recorder, installed as the global one the first time it is asked for.
fn recorder() -> operator::metrics::PrometheusRecorder {
    static RECORDER: std::sync::OnceLock<operator::metrics::PrometheusRecorder> = std::sync::OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let rec = operator::metrics::PrometheusRecorder::default();
            if metrics::set_global_recorder(rec.clone()).is_err() {
                tracing::warn!(event = "metrics_recorder_taken", "another metrics recorder is installed");
            }
            rec
        })
        .clone()
}

/// Starts the operator's HTTP API on `[admin] listen` (`None` when `[admin] enabled = false`),
/// with the URL other nodes reach it at; it stops with the gateway.
async fn start_admin(
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<(tokio::task::JoinHandle<()>, Option<String>)>> {
    if !config.admin.enabled {
        return Ok(None);
    }
    let addr = config.admin.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("admin listener: cannot listen on {addr}: {e} (set [admin] listen, or [admin] enabled = false)")
    })?;
    let local = listener.local_addr()?;
    let tls = match (config.admin.tls, &config.smtp.tls) {
        (true, Some(files)) => Some(crate::tls::acceptor(files)?),
        _ => None,
    };
    let options = operator::admin::ServeOptions {
        tls,
        max_connections: config.admin.max_connections,
        header_timeout: config.admin.header_timeout,
    };
    // connected at first use: the listener starts, and mail flows, while the database is away
    let store = operator::store::AdminStore::lazy(&config.contracts.url);
    let calendar = config.calendar;
    let state = operator::admin::AdminState {
        operator: Arc::new(crate::cli::operator(config)),
        store,
        today: Arc::new(move || calendar.today()),
        tables: Arc::new(config.billing.tables.clone()),
        rounding: config.billing.rounding,
        issuer: operator::Issuer {
            name: config.billing.issuer.clone(),
            registration_number: config.billing.registration_number.clone(),
        },
        node: config.node_name.clone(),
        down_after: config.down_after,
        signatures: config.signatures.source.is_some().then(|| config.signatures_dir()),
        bound_tokens_read_log: config.admin.bound_tokens_read_log,
        conditions: config.conditions.thresholds.clone(),
        metrics: Some(recorder()),
    };
    let app = operator::admin::router(state);
    tracing::info!(event = "admin_listening", listen = %local, tls = config.admin.tls);
    let handle = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = operator::admin::serve(listener, app, options, stop).await {
            tracing::error!(event = "admin_error", error = %e);
        }
    });
    Ok(Some((handle, config.admin.url(local))))
}

/// The warning-mail builder, with every template checked now (not at the first virus).
fn notifier(config: &Config) -> anyhow::Result<Option<Arc<Notifier>>> {
    let templates = Templates::load(config.warnings.templates.as_deref())
        .map_err(|e| anyhow::anyhow!("invalid warning templates:\n{e}"))?;
    if !config.warnings.enabled {
        return Ok(None);
    }
    Ok(Some(Arc::new(Notifier {
        templates,
        charset: config.warnings.charset,
        postmaster: config.postmaster.clone(),
        hostname: config.smtp.hostname.clone(),
    })))
}

/// The scanner `[scan]` asks for: clamd (checked now, so a wrong address fails at start-up)
/// or the built-in engine — with the last good signature release installed here when
/// `[signatures] source` is set, else with `[scan] signatures` or the built-in database.
type Release = (sigupdate::manifest::Manifest, Arc<scan::Signatures>);

fn scanner(config: &Config) -> anyhow::Result<(Scanner, Option<Release>)> {
    let cfg = &config.scan;
    if let Some(addr) = &cfg.clamd {
        let c = scan::clamd::Clamd { addr: addr.clone(), timeout: cfg.clamd_timeout };
        let version = c.version().with_context(|| format!("cannot reach clamd at {addr}"))?;
        tracing::info!(event = "clamd_connected", version = %version);
        return Ok((Scanner::Clamd(c, format!("clamd {version}")), None));
    }
    if config.signatures.source.is_some() {
        let dir = config.signatures_dir();
        let store = sigupdate::store::Store::open(&dir)
            .with_context(|| format!("cannot open the signature store {}", dir.display()))?;
        let started = std::time::Instant::now();
        let (loaded, passed_over) = store.load(&config.signatures.trusted, cfg.limits, cfg.load);
        for why in passed_over {
            tracing::error!(event = "signature_release_unusable", reason = %why);
        }
        if let Some(l) = loaded {
            signatures_loaded(&l.signatures, started.elapsed());
            let engine = scan::Engine::new(l.signatures.clone(), cfg.limits);
            return Ok((Scanner::Builtin(Arc::new(engine)), Some((l.manifest, l.signatures))));
        }
        tracing::info!(
            event = "no_signature_release",
            "no release installed yet: starting with the configured database"
        );
    }
    Ok((Scanner::Builtin(Arc::new(load_engine(cfg)?)), None))
}

/// Starts checking `[signatures] source` for new releases (built-in engine only); each one
/// installed replaces the scanner, with the same limits.
fn start_updates(
    config: &Config,
    live: &filter::LiveScanner,
    release: Option<&Release>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(source) = config.signatures.source.clone() else { return Ok(None) };
    if config.scan.clamd.is_some() {
        // clamd reloads its own database
        return Ok(None);
    }
    let store = sigupdate::store::Store::open(&config.signatures_dir())?;
    store.clear_tmp()?;
    if let Some((m, _)) = release {
        store.set_status(&sigupdate::updater::started_with(&store, m.version, m.created, m.signatures))?;
    }
    let limits = config.scan.limits;
    let updater = sigupdate::updater::Updater {
        store,
        source,
        trusted: config.signatures.trusted.clone(),
        limits,
        options: config.scan.load,
        check_every: config.signatures.check_every,
        max_age: config.signatures.max_age,
    };
    let live = live.clone();
    let swap = move |sigs: Arc<scan::Signatures>| {
        signatures_loaded(&sigs, std::time::Duration::ZERO);
        live.store(Arc::new(Scanner::Builtin(Arc::new(scan::Engine::new(sigs, limits)))));
    };
    let in_use = release.map(|(m, sigs)| (m.version, sigs.clone()));
    Ok(Some(tokio::spawn(updater.run(in_use, swap, shutdown))))
}

/// The contracts in force, followed as the store changes: from the SQLite file, or from the
/// shared PostgreSQL database with a last-good copy in `data_dir` (served, stale, when the
/// database cannot be read) and `LISTEN/NOTIFY` waking the follower.
async fn start_contracts(config: &Config) -> anyhow::Result<LiveContracts> {
    let url = &config.contracts.url;
    if store::Backend::of(url) != Some(store::Backend::Postgres) {
        let store = Store::connect(url).await?;
        let contracts = LiveContracts::load(&store, config.calendar).await?;
        contracts.watch(store, config.contracts.reload_interval.unwrap_or(contracts::RELOAD_LOCAL));
        return Ok(contracts);
    }
    let last_good = contracts::last_good_path(&config.data_dir);
    let started = LiveContracts::start(url, &last_good, config.calendar, contracts::START_TIMEOUT).await?;
    let wake = Arc::new(tokio::sync::Notify::new());
    store::changes::listen(url.clone(), contracts::store::CHANGES_CHANNEL, wake.clone());
    started.live.follow(contracts::Follow {
        url: url.clone(),
        store: started.store,
        last_good: Some(started.last_good),
        poll: config.contracts.reload_interval.unwrap_or(contracts::RELOAD_SHARED),
        wake: Some(wake),
    });
    Ok(started.live)
}

/// When the signature database in use was put in use (Unix seconds).
static LOADED_AT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Records a database put in use.
fn signatures_loaded(sigs: &scan::Signatures, took: std::time::Duration) {
    LOADED_AT.store(chrono::Utc::now().timestamp(), std::sync::atomic::Ordering::Relaxed);
    let unsupported: usize = sigs.stats.unsupported.values().sum();
    metrics::gauge!("mxshield_signatures").set(sigs.len() as f64);
    metrics::gauge!("mxshield_signatures_loaded_timestamp_seconds").set(chrono::Utc::now().timestamp() as f64);
    tracing::info!(
        event = "signatures_loaded", version = %sigs.version, signatures = sigs.len(), unsupported,
        load_ms = took.as_millis() as u64
    );
    if let Some(first) = sigs.stats.skipped.first() {
        // signatures of a supported kind that use something not built here: loaded around,
        // never silently
        tracing::warn!(
            event = "signatures_skipped", count = sigs.stats.skipped_total(),
            first = %format!("{}:{}: {}", first.file, first.line, first.why),
            "some signatures were skipped: `mxshield sigs info` lists them"
        );
    }
}

/// Loads the signature database named by `[scan]` (or the built-in one).
pub fn load_engine(cfg: &ScanConfig) -> anyhow::Result<scan::Engine> {
    let (sigs, took) = crate::scan_cli::signatures(cfg.signatures.as_deref(), cfg.load)?;
    signatures_loaded(&sigs, took);
    Ok(scan::Engine::new(Arc::new(sigs), cfg.limits))
}

/// Validates the spool; returns what to deliver and logs what was set aside.
fn recover(spool: &Spool) -> anyhow::Result<Vec<Known>> {
    let mut known = Vec::new();
    for r in spool.recover()? {
        match r {
            Recovered::Ok { id, envelope, .. } if envelope.attr(spool::attrs::DROPPED).is_some() => {
                // the marker of a deleted message whose warnings are now queued
                let _ = spool.remove(&id);
            }
            Recovered::Ok { id, status, .. } => known.push(Known { id, next_attempt: status.next_attempt }),
            Recovered::Corrupt { file, moved_to, why } => tracing::error!(
                event = "spool_corrupt", file = %file.display(), moved_to = %moved_to.display(), reason = %why
            ),
            Recovered::StatusReset { id, why, .. } => {
                // the message is intact: it is delivered again to every recipient (at least
                // once), rather than set aside and never delivered
                tracing::error!(event = "spool_status_reset", queue_id = %id, reason = %why);
                known.push(Known { id, next_attempt: 0 });
            }
        }
    }
    Ok(known)
}

/// The termination signals (SIGTERM, SIGINT), caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
