//! One client's session as the gateway sees it: the relay policy for each command, the
//! message streamed into the spool with a `Received:` header, loop detection, the filter
//! stage, and `250` only once the message is durable.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;
use contracts::Snapshot;
use smtp::server::{DataAbort, MailParams, Policy};
use smtp::{Path, Reply};
use spool::{Envelope, QueueId, Writer};

use super::hops::HopCounter;
use super::policy::{RcptDecision, canary_token, client_direction, decide_rcpt, decide_sender};
use super::refusal::Cause;
use super::{CanaryArrival, InboundContext};
use filter::decision::ContentPolicy;
use filter::{Decision, FilterVerdict, MessageFacts};
use msglog::{MessageRecord, MessageSummary, RcptState};
use spool::attrs::{self, Direction};

/// The gateway's answer to every SMTP decision of one connection.
pub struct GatewaySession {
    ctx: Arc<InboundContext>,
    client: IpAddr,
    helo: String,
    esmtp: bool,
    tls: bool,
    txn: Option<Transaction>,
}

struct Transaction {
    snapshot: Arc<Snapshot>,
    sender: String,
    direction: Direction,
    contracts: Vec<String>,
    rcpts: Vec<String>,
    /// [`recipient_key`] of each of `rcpts`.
    rcpt_keys: std::collections::HashSet<String>,
    /// The client declared `SMTPUTF8`: the message is sent on only with SMTPUTF8.
    smtputf8: bool,
    writer: Option<Writer>,
    hops: HopCounter,
    strip: mime::header::FieldDropper,
    failed: bool,
    received_at: u64,
    /// Tokens of the open-relay canaries among the recipients (not delivered anywhere).
    canaries: Vec<String>,
    /// The message's beginning, kept when it carries a canary (its evidence).
    canary_head: Vec<u8>,
}

/// How much of a canary message is kept as evidence.
const CANARY_HEAD_MAX: usize = 16 * 1024;

impl GatewaySession {
    /// A session for a client at `client`.
    pub fn new(ctx: Arc<InboundContext>, client: IpAddr) -> Self {
        GatewaySession { ctx, client, helo: String::new(), esmtp: false, tls: false, txn: None }
    }

    /// Reports the canaries of `txn` (received whole) to whoever records them.
    fn canaries_arrived(&self, txn: &mut Transaction) {
        let Some(c) = &self.ctx.canaries else { return };
        let head = String::from_utf8_lossy(&txn.canary_head).into_owned();
        for token in txn.canaries.drain(..) {
            tracing::warn!(
                event = "relay_canary", token = %token, client_ip = %self.client, helo = %self.helo,
                from = %txn.sender, "an open-relay probe's canary arrived: the server that relayed it is an open relay"
            );
            let arrival = CanaryArrival {
                token,
                at: Utc::now().timestamp(),
                client: self.client,
                helo: self.helo.clone(),
                sender: txn.sender.clone(),
                head: head.clone(),
            };
            if c.arrivals.try_send(arrival).is_err() {
                tracing::warn!(
                    event = "relay_canary_unrecorded",
                    "the canary's arrival could not be queued for recording"
                );
            }
        }
    }

    /// Logs a refused command with its cause and gives the reply for it.
    fn refused(&self, stage: &str, to: &str, cause: &Cause) -> Reply {
        let from = self.txn.as_ref().map(|t| t.sender.as_str()).unwrap_or("");
        self.log_refused(stage, from, to, cause)
    }

    fn log_refused(&self, stage: &str, from: &str, to: &str, cause: &Cause) -> Reply {
        let reply = cause.reply();
        tracing::info!(
            event = "refused", stage, client_ip = %self.client, helo = %self.helo,
            from, to, cause = %cause, reply = %reply.one_line()
        );
        reply
    }

    /// What the filter needs to know about the transaction.
    fn facts(&self, txn: &Transaction) -> MessageFacts {
        let policy = txn
            .snapshot
            .contracts()
            .iter()
            .filter(|c| txn.contracts.contains(&c.id))
            .map(|c| ContentPolicy { encrypted: c.encrypted, unreadable: c.unreadable })
            .fold(ContentPolicy::default(), ContentPolicy::strictest);
        MessageFacts {
            received_headers: txn.hops.count,
            direction: txn.direction,
            sender: txn.sender.clone(),
            recipients: txn.rcpts.clone(),
            policy,
        }
    }

    /// What committing a message needs from the session, taken before the scan so that the
    /// commit can follow it on the scan's blocking thread.
    fn commit_plan(&self, txn: &Transaction, id: &QueueId) -> CommitPlan {
        let mut attrs = vec![
            (attrs::CONTRACT.into(), txn.contracts.join(",")),
            (attrs::DIRECTION.into(), txn.direction.as_str().into()),
            (attrs::CLIENT_IP.into(), self.client.to_string()),
            (attrs::HELO.into(), self.helo.clone()),
        ];
        if txn.smtputf8 {
            attrs.push((attrs::SMTPUTF8.into(), "1".into()));
        }
        CommitPlan {
            spool: self.ctx.spool.clone(),
            attrs,
            trace: self.received_header(id.as_str(), &txn.rcpts),
            sender: txn.sender.clone(),
            rcpts: txn.rcpts.clone(),
            received_at: txn.received_at,
            contract: txn.contracts.join(","),
            bulk: self.ctx.bulk.clone(),
        }
    }

    /// After the commit (on the async side): the warnings logged, delivery told, the reply.
    fn accepted(&self, txn: &Transaction, committed: Committed) -> Reply {
        let Committed { id, warnings, deliver, message } = committed;
        let count = warnings.len();
        self.log_warnings(txn, &id, warnings);
        if !deliver {
            return Reply::new(250, (2, 0, 0), format!("Ok: {id} deleted: virus found; {count} warning(s) sent"));
        }
        let _ = self.ctx.queued.try_send(id.clone());
        if let (Some(meter), Direction::Outbound, Some(contract)) =
            (&self.ctx.spam, txn.direction, txn.contracts.first())
        {
            let at = Utc::now().timestamp();
            let message = message.as_ref().and_then(bulk::meter::Body::in_memory);
            meter.offer(bulk::spam::SpamOffer { contract: contract.clone(), at, message });
        }
        if let (Some(meter), Some(message)) = (&self.ctx.bulk, message) {
            let at = Utc::now().timestamp();
            for (contract, copies) in self.copies_by_contract(txn) {
                meter.offer(bulk::meter::Offer { contract, copies, at, message: message.clone() });
            }
        }
        Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
    }

    /// The copies of a message each contract delivers: all of them for the sender's contract
    /// (outbound) or the only contract; otherwise each recipient's domain's.
    fn copies_by_contract(&self, txn: &Transaction) -> Vec<(String, u64)> {
        if txn.direction == spool::attrs::Direction::Outbound || txn.contracts.len() == 1 {
            return txn.contracts.first().map(|c| vec![(c.clone(), txn.rcpts.len() as u64)]).unwrap_or_default();
        }
        let day = self.ctx.contracts.today();
        let mut out: Vec<(String, u64)> = Vec::new();
        for r in &txn.rcpts {
            let Some(domain) = r.rsplit_once('@').map(|(_, d)| d) else { continue };
            let Some(d) = txn.snapshot.active_domain(domain, day) else { continue };
            match out.iter_mut().find(|(c, _)| *c == d.contract.id) {
                Some((_, n)) => *n += 1,
                None => out.push((d.contract.id.clone(), 1)),
            }
        }
        out
    }

    /// Logs the warning mails queued about `about` and tells delivery.
    fn log_warnings(&self, txn: &Transaction, about: &QueueId, queued: Vec<(QueueId, (String, usize))>) {
        let contract = txn.contracts.join(",");
        for (wid, (to, size)) in queued {
            tracing::info!(event = "warning_queued", queue_id = %wid, warning_of = %about, to = %to);
            let record = MessageRecord::generated(
                wid.as_str(),
                &contract,
                "warning",
                "virus warning",
                size as u64,
                about.as_str(),
                &to,
            );
            self.ctx.msglog.message(record);
            let _ = self.ctx.queued.try_send(wid);
        }
    }

    /// The message log's record of this message.
    fn record(
        &self,
        txn: &Transaction,
        queue_id: &str,
        size: u64,
        d: &Decision,
        initial_state: RcptState,
    ) -> MessageRecord {
        MessageRecord {
            summary: MessageSummary {
                at: txn.received_at as i64,
                queue_id: queue_id.to_string(),
                contract: txn.contracts.join(","),
                direction: txn.direction.as_str().into(),
                client_ip: self.client.to_string(),
                sender: txn.sender.clone(),
                size,
                message_id: d.original.message_id.clone(),
                subject: d.original.subject.clone(),
                verdict: d.verdict_text.clone(),
                signatures: d.signatures.clone(),
                viruses: d.viruses.clone(),
                action: d.action.into(),
                result: d.result.clone(),
                reply: String::new(),
                related: String::new(),
                parts: d.parts.clone(),
                // the writer stamps its node
                node: String::new(),
            },
            recipients: txn.rcpts.clone(),
            initial_state,
        }
    }

    fn received_header(&self, id: &str, rcpts: &[String]) -> String {
        let proto = match (self.esmtp, self.tls) {
            (false, _) => "SMTP",
            (true, false) => "ESMTP",
            (true, true) => "ESMTPS",
        };
        let helo = self.helo.replace(|c: char| c.is_control() || c == '(' || c == ')', "");
        let for_part = match rcpts {
            [one] => format!("\r\n\tfor <{one}>;"),
            _ => ";".to_string(),
        };
        let ip = match self.client {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("IPv6:{v6}"),
        };
        format!(
            "Received: from {helo} ([{ip}])\r\n\tby {host} (mxshield) with {proto} id {id}{for_part} {date}\r\n",
            host = self.ctx.smtp.hostname,
            date = Utc::now().to_rfc2822(),
        )
    }
}

impl Policy for GatewaySession {
    async fn helo(&mut self, name: &str, esmtp: bool) -> Result<(), Reply> {
        self.helo = name.to_string();
        self.esmtp = esmtp;
        Ok(())
    }

    fn tls_started(&mut self) {
        self.tls = true;
    }

    async fn mail_from(&mut self, from: &Path, params: &MailParams) -> Result<(), Reply> {
        if let Err(cause) = decide_sender(from) {
            return Err(self.refused("mail", "", &cause));
        }
        let snapshot = self.ctx.contracts.get();
        let (direction, _) = client_direction(&snapshot, self.client, self.ctx.contracts.today());
        self.txn = Some(Transaction {
            snapshot,
            sender: from.to_string(),
            direction,
            contracts: Vec::new(),
            rcpts: Vec::new(),
            rcpt_keys: Default::default(),
            smtputf8: params.smtputf8,
            writer: None,
            hops: HopCounter::default(),
            strip: super::strip::own_fields(),
            failed: false,
            received_at: 0,
            canaries: Vec::new(),
            canary_head: Vec::new(),
        });
        Ok(())
    }

    async fn rcpt_to(&mut self, to: &Path) -> Result<(), Reply> {
        let Some(txn) = self.txn.as_mut() else {
            return Err(Reply::new(503, (5, 5, 1), "Need MAIL before RCPT"));
        };
        if let Some(token) = self.ctx.canaries.as_ref().and_then(|c| canary_token(to, &c.domain)) {
            // the open-relay probe's: whoever relays it, it is recorded and goes nowhere
            if !txn.canaries.contains(&token) {
                txn.canaries.push(token);
            }
            return Ok(());
        }
        match decide_rcpt(&txn.snapshot, self.client, self.ctx.contracts.today(), to, &self.ctx.postmaster) {
            RcptDecision::Postmaster => {
                // the operator's: to `postmaster_forward`, else the postmaster address itself
                let target = self.ctx.postmaster_forward.clone().unwrap_or_else(|| self.ctx.postmaster.clone());
                if txn.rcpt_keys.insert(target.to_ascii_lowercase()) {
                    txn.rcpts.push(target);
                }
                Ok(())
            }
            RcptDecision::Accept { direction, contract } => {
                if direction == spool::attrs::Direction::Outbound
                    && let Some(hold) = self.ctx.held.get(&contract)
                {
                    tracing::info!(event = "outbound_held", contract = %contract, hold = ?hold);
                    return Err(match hold {
                        crate::Hold::Defer(why) => Reply::new(451, (4, 7, 1), format!("outbound mail held: {why}")),
                        crate::Hold::Refuse(why) => Reply::new(550, (5, 7, 1), format!("outbound mail refused: {why}")),
                    });
                }
                txn.direction = direction;
                if !txn.contracts.contains(&contract) {
                    txn.contracts.push(contract);
                }
                // the same mailbox named twice (or in another case at a registered domain, whose
                // accounts are case-insensitive) is one recipient: one copy, one warning
                let key = recipient_key(&txn.snapshot, to);
                if txn.rcpt_keys.insert(key) {
                    txn.rcpts.push(to.to_string());
                }
                Ok(())
            }
            RcptDecision::Refuse(cause) => Err(self.refused("rcpt", &to.to_string(), &cause)),
        }
    }

    async fn data_start(&mut self) -> Result<(), Reply> {
        if self.txn.is_none() {
            return Err(Reply::new(503, (5, 5, 1), "Need MAIL command"));
        }
        let writer = self.ctx.spool.create().map_err(|e| spool_error(e).reply())?;
        if let Some(t) = self.txn.as_mut() {
            t.writer = Some(writer);
            t.received_at = Utc::now().timestamp() as u64;
        }
        Ok(())
    }

    async fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        let Some(txn) = self.txn.as_mut() else { return Ok(()) };
        txn.hops.feed(chunk);
        if !txn.canaries.is_empty() && txn.canary_head.len() < CANARY_HEAD_MAX {
            let room = CANARY_HEAD_MAX - txn.canary_head.len();
            txn.canary_head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let kept = txn.strip.feed(chunk);
        let Some(w) = txn.writer.as_mut() else { return Ok(()) };
        if let Err(e) = w.write(&kept) {
            txn.failed = true;
            txn.writer = None;
            return Err(spool_error(e).reply());
        }
        Ok(())
    }

    async fn data_end(&mut self) -> Reply {
        let Some(mut txn) = self.txn.take() else {
            return Reply::new(503, (5, 5, 1), "No transaction");
        };
        let Some(mut writer) = txn.writer.take() else {
            return spool_error("the message was not written").reply();
        };
        if !txn.canaries.is_empty() {
            self.canaries_arrived(&mut txn);
            if txn.rcpts.is_empty() {
                // nothing else to deliver: the spool file is discarded with its writer
                return Reply::new(250, (2, 0, 0), "Ok: relay test received");
            }
        }
        let rest = txn.strip.finish();
        if let Err(e) = writer.write(&rest) {
            return spool_error(e).reply();
        }
        let size = writer.data_len();
        let queue_id = writer.id().to_string();
        let facts = self.facts(&txn);
        let plan = self.commit_plan(&txn, writer.id());
        let (decision, committed) = self.ctx.filter.check_then(&facts, writer, move |w, d| commit(plan, w, d)).await;
        let warnings = match &committed {
            Some(Ok(c)) => c.warnings.len(),
            _ => 0,
        };
        let outcome = match committed {
            Some(Ok(c)) => Ok(self.accepted(&txn, c)),
            Some(Err(cause)) => Err(cause),
            None => Err(Cause::Content(match &decision.verdict {
                FilterVerdict::Refuse(r) => r.clone(),
                FilterVerdict::Accept => filter::Refusal::ScanFailed("scanner task panicked".into()),
            })),
        };
        let cause = outcome.as_ref().err().map(|c| c.to_string()).unwrap_or_default();
        let reply = outcome.unwrap_or_else(|c| c.reply());
        let initial_state = match decision.deliver {
            _ if !reply.is_positive() => RcptState::Refused,
            false => RcptState::Dropped,
            true => RcptState::Queued,
        };
        tracing::info!(
            event = if reply.is_positive() { "received" } else { "refused" }, stage = "data", queue_id = %queue_id,
            contract = %txn.contracts.join(","), direction = %txn.direction.as_str(), client_ip = %self.client,
            helo = %self.helo, from = %txn.sender, to = %txn.rcpts.join(","), size,
            verdict = %decision.verdict_text, action = %decision.action, result = %decision.result,
            signatures = %decision.signatures,
            findings = %decision.findings, scan_wait_ms = decision.wait_ms, scan_ms = decision.scan_ms,
            warnings = if reply.is_positive() { warnings } else { 0 },
            cause, reply = %reply.one_line(),
        );
        if self.ctx.metrics_by_contract {
            for contract in &txn.contracts {
                metrics::counter!(
                    "mxshield_contract_messages_total",
                    "contract" => contract.clone(),
                    "direction" => txn.direction.as_str(),
                    "result" => match (reply.is_positive(), decision.verdict_text.as_str()) {
                        (false, _) => "refused",
                        (true, "infected") => "infected",
                        (true, _) => "accepted",
                    },
                )
                .increment(1);
            }
        }
        let mut record = self.record(&txn, &queue_id, size, &decision, initial_state);
        record.summary.reply = reply.one_line();
        self.ctx.msglog.message(record);
        reply
    }

    async fn data_abort(&mut self, why: DataAbort) {
        if why == DataAbort::GoneBeforeReply {
            // the message's work was dropped with its future; nothing was committed
            tracing::info!(event = "aborted", client_ip = %self.client, reason = "client gone before the reply");
        }
        if let Some(txn) = self.txn.take() {
            drop(txn.writer);
            if why == DataAbort::TooBig {
                self.log_refused("data", &txn.sender, &txn.rcpts.join(","), &Cause::TooBig);
            } else if !txn.failed {
                tracing::info!(event = "aborted", client_ip = %self.client, from = %txn.sender, reason = ?why);
            }
        }
    }

    fn reset(&mut self) {
        self.txn = None;
    }
}

/// Logs a spool failure and makes it the cause of a refusal.
fn spool_error(e: impl std::fmt::Display) -> Cause {
    tracing::error!(event = "spool_error", error = %e);
    Cause::Spool(e.to_string())
}

/// What makes two recipients the same mailbox: the domain in any case; the local part in any
/// case too where the domain is registered (accounts are case-insensitive), exactly as written
/// elsewhere (RFC 5321 §2.4 leaves a remote local part's case to its server).
fn recipient_key(snapshot: &Snapshot, to: &Path) -> String {
    match &to.mailbox {
        Some(m) => {
            let domain = contracts::normalize_domain(&m.domain).unwrap_or_else(|| m.domain.to_ascii_lowercase());
            if snapshot.domain(&domain).is_some() {
                format!("{}@{domain}", m.local.to_ascii_lowercase())
            } else {
                format!("{}@{domain}", m.local)
            }
        }
        None => to.to_string(),
    }
}

/// What the blocking commit needs of the session (see `GatewaySession::commit_plan`).
struct CommitPlan {
    spool: spool::Spool,
    attrs: Vec<(String, String)>,
    trace: String,
    sender: String,
    rcpts: Vec<String>,
    received_at: u64,
    contract: String,
    /// The bulk meter, for a message too large for the spool's recent copies (read from its
    /// file).
    bulk: Option<bulk::meter::Meter>,
}

/// A message committed: its id, its warnings (id, recipient, size) and whether it is delivered.
struct Committed {
    id: QueueId,
    warnings: Vec<(QueueId, (String, usize))>,
    deliver: bool,
    /// The message as committed, for the meters (in memory, or its open file).
    message: Option<bulk::meter::Body>,
}

/// Queues the message (or, if it was dropped, a marker of it) together with its warnings in
/// one commit, so that after a crash there are either both or neither; runs on the scan's
/// blocking thread, and the `250` is sent only once everything is durable. A refused message
/// is not committed.
fn commit(plan: CommitPlan, writer: Option<Writer>, decision: &mut Decision) -> Result<Committed, Cause> {
    let writer = match (&decision.verdict, writer) {
        (FilterVerdict::Refuse(r), _) => return Err(Cause::Content(r.clone())),
        (FilterVerdict::Accept, None) => return Err(spool_error("the filter gave the message back to nobody")),
        (FilterVerdict::Accept, Some(w)) => w,
    };
    let CommitPlan { spool, mut attrs, trace, sender, rcpts, received_at, contract, bulk } = plan;
    let warnings = std::mem::take(&mut decision.warnings);
    if decision.eight_bit {
        attrs.push((attrs::EIGHT_BIT.into(), "1".into()));
    }
    if decision.deliver {
        // trace header first, then the scan result; the message itself stays as received
        // (or as the filter rewrote it)
        attrs.push((attrs::PREPEND.into(), format!("{trace}{}", decision.headers)));
    } else {
        // the commit point of a deleted message's warnings: an empty marker, removed at once
        attrs.push((attrs::DROPPED.into(), "1".into()));
    }
    let envelope = Envelope { sender, recipients: rcpts, received_at, attrs };
    let data = if decision.deliver { decision.rewritten.take() } else { Some(Vec::new()) };
    let about = writer.id().to_string();
    let deliver = decision.deliver;
    let committed = (|| -> Result<_, spool::SpoolError> {
        let mut writer = writer;
        if let Some(data) = data {
            writer.replace_data(&data)?;
        }
        let mut companions = Vec::with_capacity(warnings.len());
        let mut sent = Vec::with_capacity(warnings.len());
        for (to, mail) in warnings {
            let mut w = spool.create()?;
            w.write(&mail)?;
            let env = attrs::generated(&to, &contract, "warning", attrs::WARNING_OF, &about);
            sent.push((to, mail.len()));
            companions.push((w, env));
        }
        let (id, warning_ids) = writer.commit_group(&envelope, companions)?;
        if !deliver {
            let _ = spool.remove(&id);
        }
        Ok((id, warning_ids.into_iter().zip(sent).collect::<Vec<_>>()))
    })();
    let (id, warnings) = committed.map_err(spool_error)?;
    // taken now, before delivery can remove it: from memory, else the open file (the meter
    // reads it later, even once delivered)
    let message = if deliver {
        spool.recent(&id).map(bulk::meter::Body::Memory).or_else(|| {
            let slot = bulk.as_ref()?.large_slot()?;
            let m = spool.open_message(&id).ok()?;
            Some(bulk::meter::Body::File(Arc::new(bulk::meter::LargeMessage::new(
                m.file,
                m.data_offset,
                m.data_len,
                slot,
            ))))
        })
    } else {
        None
    };
    Ok(Committed { id, warnings, deliver, message })
}
