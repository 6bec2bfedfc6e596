//! `mxshield sigs keygen|publish|verify|status`: the operator's side of signature releases
//! and a node's view of its own (formatting only; the work is in `sigupdate`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sigupdate::keys::{PublicKey, SecretKey};
use sigupdate::release::{self, Check, Judge};
use sigupdate::source::Source;
use sigupdate::store::Store;

use crate::config::Config;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `sigs keygen`: a new key pair; the secret key file gets mode 0600 and is never printed.
pub fn keygen(secret: &Path, public: &Path) -> anyhow::Result<ExitCode> {
    let pk = sigupdate::keys::write_key_pair(secret, public)?;
    println!("wrote {} (secret, mode 0600) and {}", secret.display(), public.display());
    println!("trusted_keys = [\"{}\"]", pk.to_base64());
    Ok(ExitCode::SUCCESS)
}

/// `sigs publish`: a new release of `db` in `repo`.
pub fn publish(db: &Path, secret: &Path, repo: &Path, expires: Duration) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(secret).with_context(|| format!("cannot read {}", secret.display()))?;
    let key = SecretKey::parse(&text).with_context(|| format!("{}", secret.display()))?;
    let p = release::Publish { db, repo, expires, now: now() };
    let m = release::publish(&p, &key)?;
    let bytes: u64 = m.payloads.iter().map(|p| p.size).sum();
    println!(
        "published release {} in {}: {} payloads ({bytes} bytes), {} signatures, {} self-test samples, expires {}",
        m.version,
        repo.display(),
        m.payloads.len(),
        m.signatures,
        m.vectors.len(),
        time(m.expires)
    );
    Ok(ExitCode::SUCCESS)
}

/// `sigs verify`: checks the newest release of `source` as a node would, installing nothing.
/// Exit 0 = it would be installed, 1 = refused.
pub fn verify(config: &Config, source: &str, keys: &[String]) -> anyhow::Result<ExitCode> {
    let source = Source::parse(source).map_err(anyhow::Error::msg)?;
    let trusted: Vec<PublicKey> = if keys.is_empty() {
        config.signatures.trusted.clone()
    } else {
        keys.iter().map(|k| PublicKey::parse(k)).collect::<Result<_, _>>()?
    };
    anyhow::ensure!(!trusted.is_empty(), "no trusted key: give --key or set [signatures] trusted_keys");
    let staging = std::env::temp_dir().join(format!("mxshield-verify-{}-{}", std::process::id(), now()));
    std::fs::create_dir_all(&staging)?;
    let judge = Judge {
        trusted: &trusted,
        in_use: None,
        now: now(),
        limits: config.scan.limits,
        previous: None,
        options: config.scan.load,
    };
    let result = release::check(&source, &judge, None, &staging, &|_| None);
    let _ = std::fs::remove_dir_all(&staging);
    match result {
        Ok((Check::New(s), _)) => {
            let m = &s.manifest;
            println!(
                "release {} OK: signed by {}, {} signatures, {} payloads verified, self-test passed ({} samples), expires {}",
                m.version,
                s.key_id,
                m.signatures,
                m.payloads.len(),
                m.vectors.len(),
                time(m.expires)
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok((Check::UpToDate, _)) => unreachable!("nothing is in use here"),
        Err(refusal) => {
            println!("refused: {refusal}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `sigs status`: the release this node uses and what its updater last did.
pub fn status(config: &Config) -> anyhow::Result<ExitCode> {
    let Some(source) = &config.signatures.source else {
        println!("updates: off ([signatures] source is not set)");
        return Ok(ExitCode::SUCCESS);
    };
    let store = Store::open(&config.signatures_dir())?;
    let s = store.status();
    let source = match source {
        Source::Dir(d) => d.display().to_string(),
        Source::Http(u) => u.clone(),
    };
    println!("source:        {source}");
    match s.version {
        Some(v) => {
            let age = now() - s.created;
            let stale =
                if age > config.signatures.max_age.as_secs() as i64 { "  STALE (older than max_age)" } else { "" };
            println!("in use:        release {v} ({} signatures, signed by {})", s.signatures, s.key_id);
            println!("since:         {}", time(s.since));
            println!("published:     {} (age {}){stale}", time(s.created), humantime::format_duration(secs(age)));
        }
        None => println!("in use:        no release installed (the configured or built-in database)"),
    }
    match s.last_check {
        0 => println!("last check:    never"),
        t => println!("last check:    {} — {}", time(t), s.last_outcome),
    }
    if let Some(r) = &s.last_refused {
        println!("last refused:  {} — {}", time(r.at), r.reason);
    }
    Ok(ExitCode::SUCCESS)
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

fn time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339()).unwrap_or_else(|| unix.to_string())
}
