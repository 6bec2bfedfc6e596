//! One delivery attempt of one queued message: route each destination domain, deliver, record
//! each recipient's outcome in the spool, bounce what failed, and say when to try again.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use chrono::{DateTime, Utc};
use spool::{Envelope, QueueId, RcptState, RcptStatus, SpoolError, Status};

use super::Ctx;
use super::courier::Outcome;
use super::dsn::{self, FailedRcpt};
use super::now_ms;
use msglog::{DeliveryRecord, MessageRecord};
use spool::attrs;

/// What the scheduler should do with the message next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Delivered, bounced or gone: forget it.
    Done,
    /// Try again at this Unix time in milliseconds.
    RetryAt(u64),
    /// Every destination of the message had its share of the workers: try again as soon as
    /// `domain` gives a slot back, or at this Unix time in milliseconds at the latest.
    Busy {
        /// A destination it waits for.
        domain: String,
        /// The latest time to try again.
        at: u64,
    },
}

/// How soon a message whose destination was busy is looked at again (plus up to as much again
/// of jitter).
const BUSY_RETRY_MS: u64 = 2_000;

/// Attempts delivery of every recipient of `id` not yet delivered or failed.
pub async fn attempt(ctx: &Ctx, id: &QueueId) -> Next {
    // the envelope (the head of the file) and the small status file, read here: a queued
    // message was just written and is in the page cache, and a hand-off to the blocking pool
    // and back cost more than these reads
    let loaded = (|| -> Result<(Envelope, Status), SpoolError> {
        let env = match ctx.spool.recent(id) {
            Some(m) => m.envelope.clone(),
            None => ctx.spool.open_message(id)?.envelope,
        };
        let (status, reset) = ctx.spool.read_status_or_reset(id, env.recipients.len())?;
        if let Some(why) = reset {
            tracing::error!(event = "spool_status_reset", queue_id = %id, reason = %why);
        }
        Ok((env, status))
    })();
    let (env, mut status) = match loaded {
        Ok((env, _)) if env.attr(attrs::DROPPED).is_some() => {
            // a deleted message's marker (its warnings are queued): never delivered
            let _ = ctx.spool.remove(id);
            return Next::Done;
        }
        Ok(x) => x,
        Err(SpoolError::NotFound(_)) => return Next::Done,
        Err(e) => {
            tracing::error!(event = "spool_error", queue_id = %id, error = %e);
            return Next::RetryAt(now_ms() + ctx.cfg.retry_min.as_millis() as u64);
        }
    };
    let log = LogFields::of(id, &env);
    let mut newly_failed = Vec::new();
    let groups = pending_by_domain(&env, &status);
    let mut busy = 0;
    let mut busy_domain = String::new();
    for (domain, idxs) in &groups {
        let Some(_slot) = ctx.destinations.try_take(domain, ctx.cfg.per_destination) else {
            // the destination already has its share of the workers: not an attempt, try soon
            tracing::debug!(event = "destination_busy", queue_id = %id, domain = %domain);
            busy += 1;
            busy_domain = domain.to_ascii_lowercase();
            continue;
        };
        let rcpts: Vec<String> = idxs.iter().map(|&i| env.recipients[i].clone()).collect();
        let outcomes = match ctx.router.route(domain).await {
            Ok(candidates) => ctx.courier.deliver(&ctx.spool, id, &env.sender, &rcpts, &candidates).await,
            Err(e) if e.is_temporary() => {
                vec![Outcome::Deferred { remote: String::new(), error: e.to_string() }; rcpts.len()]
            }
            Err(e) => {
                vec![
                    Outcome::Failed { remote: String::new(), status: e.status(), diagnostic: e.to_string() };
                    rcpts.len()
                ]
            }
        };
        for (&i, outcome) in idxs.iter().zip(outcomes) {
            let rcpt = &env.recipients[i];
            status.rcpts[i] = record(&log, rcpt, &outcome);
            ctx.msglog.delivery(delivery_record(id, rcpt, &outcome));
            if let Outcome::Failed { remote, status: st, diagnostic } = outcome {
                newly_failed.push(FailedRcpt { rcpt: rcpt.clone(), status: st, remote, diagnostic });
            }
        }
    }
    let now = now_ms();
    if busy > 0 && busy == groups.len() {
        return Next::Busy { domain: busy_domain, at: now + BUSY_RETRY_MS + fastrand::u64(0..BUSY_RETRY_MS) };
    }
    status.attempts += 1;
    // received_at has whole seconds: round up so a message never expires early.
    let expires = (env.received_at + 1) * 1000 + ctx.cfg.queue_lifetime.as_millis() as u64;
    if now >= expires {
        newly_failed.extend(expire(ctx, &log, &env, &mut status));
    }
    if !newly_failed.is_empty() {
        if env.sender.is_empty() {
            tracing::info!(event = "dsn_suppressed", queue_id = %id, reason = "null sender");
        } else if let Err(e) = queue_dsn(ctx, id, &env, &newly_failed).await {
            tracing::error!(event = "dsn_failed", queue_id = %id, error = %e);
        } else {
            status.dsn_sent = true;
        }
    }
    if status.is_complete() {
        if let Err(e) = ctx.spool.remove(id) {
            tracing::error!(event = "spool_error", queue_id = %id, error = %e);
        }
        return Next::Done;
    }
    let mut next = (now + backoff_ms(ctx, status.attempts)).min(expires.max(now + 1000));
    if busy > 0 {
        next = next.min(now + BUSY_RETRY_MS + fastrand::u64(0..BUSY_RETRY_MS));
    }
    status.next_attempt = next;
    if let Err(e) = ctx.spool.write_status(id, &status) {
        tracing::error!(event = "spool_error", queue_id = %id, error = %e);
    }
    Next::RetryAt(next)
}

/// The status of a recipient given up on: delivery time expired (RFC 3463).
const EXPIRED: smtp::Status = smtp::Status::new(4, 4, 7);

/// Fails every recipient not yet final (status 4.4.7: the queue lifetime is over).
fn expire(ctx: &Ctx, log: &LogFields, env: &Envelope, status: &mut Status) -> Vec<FailedRcpt> {
    let lifetime = humantime::format_duration(ctx.cfg.queue_lifetime);
    let mut failed = Vec::new();
    for (i, st) in status.rcpts.iter_mut().enumerate() {
        if st.state.is_final() {
            continue;
        }
        let diagnostic = format!("gave up after {lifetime} in the queue; last error: {}", st.last_error);
        tracing::info!(
            event = "bounced", queue_id = %log.id, contract = %log.contract, direction = %log.direction,
            client_ip = %log.client_ip, from = %log.from, to = %env.recipients[i], remote = %st.remote, status = %EXPIRED, reply = %diagnostic
        );
        failed.push(FailedRcpt {
            rcpt: env.recipients[i].clone(),
            status: EXPIRED,
            remote: st.remote.clone(),
            diagnostic: diagnostic.clone(),
        });
        ctx.msglog.delivery(DeliveryRecord {
            queue_id: log.id.clone(),
            rcpt: env.recipients[i].clone(),
            state: msglog::RcptState::Bounced,
            remote: st.remote.clone(),
            reply: diagnostic.clone(),
            at: Utc::now().timestamp(),
            ..Default::default()
        });
        *st = RcptStatus { state: RcptState::Failed, last_error: diagnostic, remote: st.remote.clone() };
    }
    failed
}

/// Recipients not yet final, grouped by lower-case domain (one transaction per domain).
fn pending_by_domain(env: &Envelope, status: &Status) -> BTreeMap<String, Vec<usize>> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, st) in status.rcpts.iter().enumerate() {
        if st.state.is_final() {
            continue;
        }
        let domain = env.recipients[i].rsplit_once('@').map(|(_, d)| d).unwrap_or("").to_ascii_lowercase();
        groups.entry(domain).or_default().push(i);
    }
    groups
}

/// Retry delay after `attempts` attempts: `retry_min` doubling up to `retry_max`, ±20 % jitter.
fn backoff_ms(ctx: &Ctx, attempts: u32) -> u64 {
    let min = ctx.cfg.retry_min.as_millis() as u64;
    let max = ctx.cfg.retry_max.as_millis() as u64;
    let base = min.saturating_mul(1u64 << attempts.saturating_sub(1).min(20)).min(max);
    let jitter = base / 5;
    base - jitter + fastrand::u64(0..=2 * jitter)
}

struct LogFields {
    id: String,
    contract: String,
    direction: String,
    client_ip: String,
    from: String,
}

impl LogFields {
    fn of(id: &QueueId, env: &Envelope) -> Self {
        LogFields {
            id: id.to_string(),
            contract: env.attr(attrs::CONTRACT).unwrap_or("").to_string(),
            direction: env.attr(attrs::DIRECTION).unwrap_or("").to_string(),
            client_ip: env.attr(attrs::CLIENT_IP).unwrap_or("").to_string(),
            from: env.sender.clone(),
        }
    }
}

/// Logs an outcome and turns it into the recipient's new status.
fn record(log: &LogFields, rcpt: &str, outcome: &Outcome) -> RcptStatus {
    let (id, contract, direction, client_ip, from) =
        (&log.id, &log.contract, &log.direction, &log.client_ip, &log.from);
    metrics::counter!("mxshield_deliveries_total", "result" => outcome.state().as_str()).increment(1);
    match outcome {
        Outcome::Delivered { remote, reply } => {
            tracing::info!(event = "delivered", queue_id = %id, contract = %contract, direction = %direction, client_ip = %client_ip, from = %from, to = %rcpt, remote = %remote, reply = %reply);
            RcptStatus { state: RcptState::Delivered, last_error: String::new(), remote: remote.clone() }
        }
        Outcome::Failed { remote, status, diagnostic } => {
            tracing::info!(event = "bounced", queue_id = %id, contract = %contract, direction = %direction, client_ip = %client_ip, from = %from, to = %rcpt, remote = %remote, status = %status, reply = %diagnostic);
            RcptStatus { state: RcptState::Failed, last_error: diagnostic.clone(), remote: remote.clone() }
        }
        Outcome::Deferred { remote, error } => {
            tracing::info!(event = "deferred", queue_id = %id, contract = %contract, direction = %direction, client_ip = %client_ip, from = %from, to = %rcpt, remote = %remote, reply = %error);
            RcptStatus { state: RcptState::Deferred, last_error: error.clone(), remote: remote.clone() }
        }
    }
}

/// The message log's record of an outcome.
fn delivery_record(id: &QueueId, rcpt: &str, outcome: &Outcome) -> DeliveryRecord {
    let (remote, reply) = match outcome {
        Outcome::Delivered { remote, reply } => (remote, reply),
        Outcome::Failed { remote, diagnostic, .. } => (remote, diagnostic),
        Outcome::Deferred { remote, error } => (remote, error),
    };
    DeliveryRecord {
        queue_id: id.to_string(),
        rcpt: rcpt.to_string(),
        state: outcome.state(),
        remote: remote.clone(),
        reply: reply.clone(),
        at: Utc::now().timestamp(),
        // the log gives it an event id when it is sent
        ..Default::default()
    }
}

/// Builds a DSN for `failed` recipients and queues it (from `<>` to the original sender).
async fn queue_dsn(ctx: &Ctx, id: &QueueId, env: &Envelope, failed: &[FailedRcpt]) -> Result<(), crate::DeliveryError> {
    let spool = ctx.spool.clone();
    let original = id.clone();
    let headers = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, crate::DeliveryError> {
        let mut m = spool.open_message(&original)?;
        m.file.seek(SeekFrom::Start(m.data_offset))?;
        let mut buf = Vec::new();
        (&mut m.file).take(m.data_len.min(64 * 1024)).read_to_end(&mut buf)?;
        Ok(mime::header::section(&buf, 64 * 1024).to_vec())
    })
    .await??;
    let arrival = DateTime::<Utc>::from_timestamp(env.received_at as i64, 0).unwrap_or_else(Utc::now);
    let body = dsn::build(&dsn::DsnInput {
        reporting_host: &ctx.hostname,
        postmaster: &ctx.postmaster,
        original_sender: &env.sender,
        queue_id: id.as_str(),
        arrival,
        failed,
        original_headers: &headers,
    });
    let contract = env.attr(attrs::CONTRACT).unwrap_or("");
    let dsn_env = attrs::generated(&env.sender, contract, "dsn", attrs::DSN_OF, id.as_str());
    let spool = ctx.spool.clone();
    let body_len = body.len();
    let dsn_id = tokio::task::spawn_blocking(move || -> Result<QueueId, SpoolError> {
        let mut w = spool.create()?;
        w.write(&body)?;
        w.commit(&dsn_env)
    })
    .await??;
    tracing::info!(event = "dsn_queued", queue_id = %dsn_id, dsn_of = %id, to = %env.sender, recipients = failed.len());
    let subject = "Undelivered Mail Returned to Sender";
    let record =
        MessageRecord::generated(dsn_id.as_str(), contract, "dsn", subject, body_len as u64, id.as_str(), &env.sender);
    ctx.msglog.message(record);
    let _ = ctx.queued.try_send(dsn_id); // a full channel: the scheduler's rescan finds it
    Ok(())
}
