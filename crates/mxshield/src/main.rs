//! `mxshield`: the email virus-scanning gateway (wiring only; the work is in the crates
//! `smtp`, `spool` and `contracts` and in the modules below).

mod cli;
mod conditions_cli;
mod conditions_monitor;
mod config;
mod log_cli;
mod logging;
mod nodes;
mod scan_cli;
mod serve;
mod sigs_cli;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the gateway allocates and frees per message on many threads; glibc's malloc cost
/// about 14 % of the CPU under load (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mxshield — an SMTP gateway that accepts mail for registered domains, scans it and relays it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without it, every default applies (see docs/config.md).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Manage contracts.
    #[command(subcommand)]
    Contracts(ContractsCmd),
    /// Rate contracts: monthly statements.
    #[command(subcommand)]
    Billing(BillingCmd),
    /// Inspect and manage the mail queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// API tokens of the admin listener (`[admin]`).
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Console users of the admin listener.
    #[command(subcommand)]
    Users(UsersCmd),
    /// The audit log of the operator plane: every state-changing request, newest first.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only entries whose actor contains this (any case).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (`contracts.change`, `queue.delete` …).
        #[arg(long)]
        action: Option<String>,
        /// Only this target (a contract id, a queue id, a token id …).
        #[arg(long)]
        target: Option<String>,
        /// Only from this time on (`2026-12-01`, `2026-12-01T09:00:00`).
        #[arg(long)]
        since: Option<String>,
    },
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCmd),
    /// Check the configuration file and the warning templates it names, and exit (0 = valid,
    /// 2 = errors printed).
    CheckConfig,
    /// Warning-mail templates.
    #[command(subcommand)]
    Templates(TemplatesCmd),
    /// Scan files, directories (recursively) and messages, like clamscan. Exit 0 = clean,
    /// 1 = virus found, 2 = error.
    Scan {
        /// Signature directory, or one database file (ClamAV formats); default: `[scan]
        /// signatures`, else built in.
        #[arg(long, value_name = "DIR|FILE")]
        db: Option<PathBuf>,
        /// Print the full report tree as JSON.
        #[arg(long)]
        json: bool,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Signature databases and releases (updates).
    #[command(subcommand)]
    Sigs(SigsCmd),
    /// The message log (every message's scan result, action and delivery outcome).
    #[command(subcommand)]
    Log(LogCmd),
    /// The conditions of use, measured per contract: hard-bounce rate, remote spam
    /// rejections, spam score, bulk mail, open relay — each with its counts, window,
    /// thresholds and state (open, acknowledged, cleared).
    Conditions {
        #[command(subcommand)]
        action: Option<ConditionsCmd>,
        /// Only this contract.
        #[arg(long)]
        contract: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The nodes sharing the store: each one's state, versions, contracts, queue and heartbeat.
    Nodes {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `conditions …`
#[derive(Subcommand, Debug)]
enum ConditionsCmd {
    /// Clear a finding: its measure counts only what happens from now on, so a contract whose
    /// outbound mail was held by `defer` or `refuse` can send again (audited).
    Clear {
        /// The contract.
        contract: String,
        /// `undeliverable`, `spam-rejections`, `spam-score`, `bulk` or `open-relay`.
        kind: String,
        /// Who clears it (default `$USER`).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Acknowledge a finding: the operator has seen it; it stays open (audited).
    Acknowledge {
        /// The contract.
        contract: String,
        /// `undeliverable`, `spam-rejections`, `spam-score`, `bulk` or `open-relay`.
        kind: String,
        /// Who acknowledges it (default `$USER`).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Probe the contract's registered servers for an open relay now: each is asked to relay a
    /// message to a canary address of this gateway; exit status 1 when a canary arrives.
    RelayTest {
        /// The contract.
        contract: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TemplatesCmd {
    /// Write the built-in templates into DIR (to edit, then name in `[warnings] templates`);
    /// existing files are left alone.
    Export { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
enum LogCmd {
    /// Find messages; every filter given must match. Newest first.
    Search {
        #[command(flatten)]
        filter: msglog::search::Filter,
        /// Print JSON (every field, with parts and recipients).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SigsCmd {
    /// Load a database and report what it holds and what is not supported.
    Info {
        /// Signature directory, or one database file; default: `[scan] signatures`, else
        /// built in.
        #[arg(long, value_name = "DIR|FILE")]
        db: Option<PathBuf>,
    },
    /// Make a signing key pair (minisign format; the secret key file gets mode 0600).
    Keygen {
        /// Secret key file to write (never overwritten).
        #[arg(long, value_name = "FILE")]
        secret: PathBuf,
        /// Public key file to write.
        #[arg(long, value_name = "FILE")]
        public: PathBuf,
    },
    /// Publish the database directory DB as a new signed release in the publishing directory.
    Publish {
        /// The database directory (freshclam's or cvdupdate's, plus your own files).
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        /// The secret key.
        #[arg(long, value_name = "FILE")]
        secret: PathBuf,
        /// The publishing directory (served by any static web server, or read directly).
        #[arg(long, value_name = "REPO")]
        out: PathBuf,
        /// How long nodes may install the release.
        #[arg(long, default_value = "48h", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Check the newest release of a publishing directory or URL as a node would, without
    /// installing it (exit 0 = acceptable, 1 = refused).
    Verify {
        /// The publishing directory or its URL.
        source: String,
        /// A trusted public key (default: `[signatures] trusted_keys`); may be repeated.
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
    },
    /// The release this node scans with, and what its updater last did.
    Status,
}

#[derive(Subcommand, Debug)]
enum ContractsCmd {
    /// Validate FILE (all errors at once), show what changes, and store its contracts: each
    /// created or replaced whole; contracts the file does not list are kept unless --prune.
    Apply {
        file: PathBuf,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove the stored contracts that FILE does not list (an empty FILE removes all).
        #[arg(long)]
        prune: bool,
        /// Why (kept in each revision recorded, with who: $USER, or --actor).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who makes the change (default: $USER).
        #[arg(long)]
        actor: Option<String>,
        /// The day the file's contracts take effect (YYYY-MM-DD, the operator's calendar):
        /// a later day schedules them; nothing changes before 00:00 that day.
        #[arg(long, value_name = "DATE")]
        on: Option<chrono::NaiveDate>,
    },
    /// Move a registered domain (its receiving servers and accounts) to another contract: one
    /// change of both, planned and validated like `apply`.
    MoveDomain {
        domain: String,
        /// The contract that takes it.
        #[arg(long)]
        to: String,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Why (kept in both revisions).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who moves it (default: $USER).
        #[arg(long)]
        actor: Option<String>,
        /// The day it moves (YYYY-MM-DD; default today).
        #[arg(long, value_name = "DATE")]
        on: Option<chrono::NaiveDate>,
    },
    /// Withdraw a change scheduled for a later day (its revision number: `contracts history`);
    /// the changes scheduled after it are carried over the withdrawal.
    Withdraw {
        id: String,
        rev: i64,
        /// Why (kept in the contract's events).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who withdraws it (default: $USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Cancel a contract from DATE (its first day without service): prints the quote — the
    /// early-termination fee from the `[billing]` price tables — then records the cancellation with it.
    Cancel {
        id: String,
        /// The first day without service (YYYY-MM-DD; today or later).
        #[arg(long, value_name = "DATE")]
        on: chrono::NaiveDate,
        /// Only print the quote.
        #[arg(long)]
        dry_run: bool,
        /// Why (kept in the revision).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who cancels (default: $USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Every recorded revision of one contract: when it took effect, what changed, who, why.
    History {
        id: String,
        /// Also print each revision's contract as it became.
        #[arg(long)]
        full: bool,
    },
    /// Show the stored contracts.
    List,
}

#[derive(Subcommand, Debug)]
enum BillingCmd {
    /// Draft statements of a month, one per customer: each contract's lines (split where its
    /// accounts or the price table change, the early-termination fee in its month), subtotal
    /// and tax per rate (computed once per rate), non-taxable sum, total.
    Statement {
        /// The month (YYYY-MM).
        #[arg(long)]
        month: String,
        /// JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV instead of a table: one row per line, then subtotals, taxes and total.
        #[arg(long)]
        csv: bool,
    },
    /// Issue the month's statements: each numbered and frozen (later changes to the contracts
    /// do not alter it); a statement whose figures changed since it was issued is issued again
    /// as its correction, one that did not is left as it is.
    Issue {
        /// The month (YYYY-MM).
        #[arg(long)]
        month: String,
        /// Who issues them (default: $USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// The statements issued: a list, or one statement (--number) as it was issued.
    Issued {
        /// Only those of this month (YYYY-MM).
        #[arg(long)]
        month: Option<String>,
        /// One statement, by number (`S-000012` or 12).
        #[arg(long, value_parser = parse_statement_number)]
        number: Option<i64>,
        /// JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

/// `S-000012` or `12`.
fn parse_statement_number(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix("S-").or_else(|| s.strip_prefix("s-")).unwrap_or(s);
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a statement number (S-000012 or 12)"))
}

fn statement_format(json: bool, csv: bool) -> cli::StatementFormat {
    match (json, csv) {
        (true, _) => cli::StatementFormat::Json,
        (_, true) => cli::StatementFormat::Csv,
        _ => cli::StatementFormat::Table,
    }
}

#[derive(Subcommand, Debug)]
enum UsersCmd {
    /// Add a console user; the password is read from standard input (its first line) and kept
    /// only as an argon2 hash.
    Add {
        name: String,
        /// admin, operator or auditor.
        #[arg(long, value_parser = ["admin", "operator", "auditor"])]
        role: String,
    },
}

#[derive(Subcommand, Debug)]
enum TokensCmd {
    /// Make a token; its secret is printed once and never stored (only a hash is).
    Create {
        /// What it is for.
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated resource:verb (contracts, billing, log, queue,
        /// nodes, admin, metrics; read or write — write includes read).
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Bind it to a contract (repeatable): it sees only their data, read-only.
        #[arg(long)]
        contract: Vec<String>,
        /// How long it works (like 90d or 12h); default: until revoked.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Every token: id, name, scopes, binding, created, expires, last used, revoked.
    List,
    /// Revoke a token by its id (`tok_…`).
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
enum QueueCmd {
    /// One line per queued message.
    List,
    /// Envelope, per-recipient status and headers of one message.
    Show { id: String },
    /// Retry every deferred message now.
    Flush,
    /// Remove one message from the queue without delivering it.
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
enum TlsCmd {
    /// Write a self-signed certificate and key (PEM) for development.
    SelfSigned {
        /// Certificate file to write.
        #[arg(long)]
        cert: PathBuf,
        /// Private key file to write.
        #[arg(long)]
        key: PathBuf,
        /// Host name in the certificate (default: smtp.hostname from the configuration).
        #[arg(long)]
        hostname: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => config::Config::load(path),
        None => Ok(config::Config::defaults()),
    };
    let config = match config {
        Ok(c) => c,
        Err(issues) => {
            let name = cli.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            eprintln!("mxshield: invalid configuration {name}:");
            for i in &issues.0 {
                eprintln!("  {name}:{i}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mxshield: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // `scan` answers as clamscan does: 1 means a virus was found, so an error is 2
    let error_code = if matches!(cli.command, Command::Scan { .. }) { 2 } else { 1 };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(config).await,
            Command::CheckConfig => match serve::prepare(&config) {
                // a shared database must be reachable and its schemas current
                Ok(_) if store::Backend::of(&config.contracts.url) == Some(store::Backend::Postgres) => {
                    match nodes::check_shared(&config).await {
                        Ok(()) => {
                            println!("configuration is valid");
                            Ok(ExitCode::SUCCESS)
                        }
                        Err(e) => {
                            eprintln!("mxshield: {e}");
                            Ok(ExitCode::from(2))
                        }
                    }
                }
                Ok(_) => {
                    println!("configuration is valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    for p in problems {
                        eprintln!("mxshield: {p}");
                    }
                    Ok(ExitCode::from(2))
                }
            },
            Command::Templates(TemplatesCmd::Export { dir }) => {
                let written = filter::notify::template::export(&dir)
                    .map_err(|e| anyhow::anyhow!("cannot write templates into {}: {e}", dir.display()))?;
                for f in &written {
                    println!("wrote {}", f.display());
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Scan { db, json, paths } => scan_cli::scan(&config, db.as_deref(), json, &paths),
            Command::Sigs(SigsCmd::Info { db }) => scan_cli::sigs_info(&config, db.as_deref()),
            Command::Sigs(SigsCmd::Keygen { secret, public }) => sigs_cli::keygen(&secret, &public),
            Command::Sigs(SigsCmd::Publish { db, secret, out, expires }) => {
                sigs_cli::publish(&db, &secret, &out, expires)
            }
            Command::Sigs(SigsCmd::Verify { source, keys }) => sigs_cli::verify(&config, &source, &keys),
            Command::Sigs(SigsCmd::Status) => sigs_cli::status(&config),
            Command::Contracts(ContractsCmd::Apply { file, dry_run, prune, reason, actor, on }) => {
                let actor = actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
                let today = Some(config.calendar.today());
                let opts = operator::ApplyOptions {
                    prune,
                    dry_run,
                    today,
                    effective: on,
                    actor,
                    reason,
                    tables: config.billing.tables.clone(),
                };
                cli::contracts_apply(&config, &file, opts).await
            }
            Command::Contracts(ContractsCmd::MoveDomain { domain, to, dry_run, reason, actor, on }) => {
                let actor = actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
                let opts = operator::ApplyOptions {
                    prune: false,
                    dry_run,
                    today: Some(config.calendar.today()),
                    effective: on,
                    actor,
                    reason,
                    tables: config.billing.tables.clone(),
                };
                cli::contracts_move_domain(&config, &domain, &to, opts).await
            }
            Command::Tokens(TokensCmd::Create { name, scope, contract, expires }) => {
                cli::tokens_create(&config, &name, &scope, &contract, expires.as_deref()).await
            }
            Command::Tokens(TokensCmd::List) => cli::tokens_list(&config).await,
            Command::Audit { limit, actor, action, target, since } => {
                let filter = operator::store::AuditFilter { actor, action, target, since, limit: limit.max(1) };
                cli::audit(&config, &filter).await
            }
            Command::Users(UsersCmd::Add { name, role }) => cli::users_add(&config, &name, &role).await,
            Command::Tokens(TokensCmd::Revoke { id }) => cli::tokens_revoke(&config, &id).await,
            Command::Contracts(ContractsCmd::History { id, full }) => cli::contracts_history(&config, &id, full).await,
            Command::Billing(BillingCmd::Statement { month, json, csv }) => {
                cli::billing_statement(&config, &month, statement_format(json, csv)).await
            }
            Command::Billing(BillingCmd::Issue { month, actor }) => {
                let actor = actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
                cli::billing_issue(&config, &month, &actor).await
            }
            Command::Billing(BillingCmd::Issued { month, number, json, csv }) => {
                cli::billing_issued(&config, month.as_deref(), number, statement_format(json, csv)).await
            }
            Command::Contracts(ContractsCmd::Withdraw { id, rev, reason, actor }) => {
                let actor = actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
                cli::contracts_withdraw(&config, &id, rev, &actor, &reason).await
            }
            Command::Contracts(ContractsCmd::Cancel { id, on, dry_run, reason, actor }) => {
                let actor = actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
                let req = operator::CancelRequest {
                    today: config.calendar.today(),
                    tables: &config.billing.tables,
                    actor: &actor,
                    reason: &reason,
                    dry_run,
                };
                cli::contracts_cancel(&config, &id, on, &req).await
            }
            Command::Contracts(ContractsCmd::List) => cli::contracts_list(&config).await,
            Command::Log(LogCmd::Search { filter, json }) => log_cli::run(&config, &filter, json).await,
            Command::Nodes { json } => nodes::list(&config, json).await,
            Command::Conditions { action: None, contract, json } => {
                conditions_cli::list(&config, contract.as_deref(), json).await
            }
            Command::Conditions { action: Some(ConditionsCmd::Clear { contract, kind, actor }), .. } => {
                let actor = actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
                conditions_cli::handle(&config, operator::conditions::Handling::Clear, &contract, &kind, &actor).await
            }
            Command::Conditions { action: Some(ConditionsCmd::Acknowledge { contract, kind, actor }), .. } => {
                let actor = actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
                conditions_cli::handle(&config, operator::conditions::Handling::Acknowledge, &contract, &kind, &actor)
                    .await
            }
            Command::Conditions { action: Some(ConditionsCmd::RelayTest { contract, json }), .. } => {
                conditions_cli::relay_test(&config, &contract, json).await
            }
            Command::Queue(QueueCmd::List) => cli::queue_list(&config),
            Command::Queue(QueueCmd::Show { id }) => cli::queue_show(&config, &id),
            Command::Queue(QueueCmd::Flush) => cli::queue_flush(&config),
            Command::Queue(QueueCmd::Delete { id }) => cli::queue_delete(&config, &id).await,
            Command::Tls(TlsCmd::SelfSigned { cert, key, hostname }) => {
                let host = hostname.unwrap_or_else(|| config.smtp.hostname.clone());
                tls::write_self_signed(&host, &cert, &key)?;
                println!("wrote {} and {} for {host}", cert.display(), key.display());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        // `mxshield scan … | head` closing the pipe is not an error worth a message
        Err(e) if is_broken_pipe(&e) => ExitCode::from(2),
        Err(e) => {
            eprintln!("mxshield: {e:#}");
            ExitCode::from(error_code)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}
