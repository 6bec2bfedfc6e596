//! `mxshield scan` (a clamscan-like command line) and `mxshield sigs info`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use scan::{Engine, Layer, Signatures, Verdict};

use crate::config::Config;

/// Loads `--db DIR`, else the node's signature release in use (with `[signatures] source`),
/// else `[scan] signatures`, else the built-in database.
fn load_signatures(config: &Config, db: Option<&Path>) -> anyhow::Result<(Signatures, Duration)> {
    if db.is_none() && config.signatures.source.is_some() {
        let started = Instant::now();
        let store = sigupdate::store::Store::open(&config.signatures_dir())?;
        if let (Some(loaded), _) = store.load(&config.signatures.trusted, config.scan.limits, config.scan.load) {
            let sigs = std::sync::Arc::try_unwrap(loaded.signatures)
                .map_err(|_| anyhow::anyhow!("the loaded database is shared"))?;
            return Ok((sigs, started.elapsed()));
        }
    }
    signatures(db.or(config.scan.signatures.as_deref()), config.scan.load)
}

/// The database in `dir`, or the built-in one; and how long loading took. The one way `scan`,
/// `sigs info` and `serve` load signatures.
pub fn signatures(dir: Option<&Path>, load: scan::sigdb::LoadOptions) -> anyhow::Result<(Signatures, Duration)> {
    let started = Instant::now();
    let sigs = match dir {
        Some(dir) => Signatures::load_dir_reusing(dir, None, load)
            .with_context(|| format!("cannot load signatures from {}", dir.display()))?,
        None => Signatures::builtin(),
    };
    Ok((sigs, started.elapsed()))
}

/// `mxshield sigs info`.
pub fn sigs_info(config: &Config, db: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (sigs, took) = load_signatures(config, db)?;
    let s = &sigs.stats;
    println!("version:           {}", sigs.version);
    println!("load time:         {:.3} s", took.as_secs_f64());
    println!("MD5 hashes:        {}", s.md5);
    println!("SHA1 hashes:       {}", s.sha1);
    println!("SHA256 hashes:     {}", s.sha256);
    println!("PE section hashes: {}", s.sections);
    println!("PE import hashes:  {}", s.imports);
    println!("body signatures:   {}", s.body);
    println!("logical:           {}", s.logical);
    println!("allow-list:        {}", s.allow);
    println!("ignored names:     {}", s.ignored_names);
    if s.pua_files_skipped > 0 {
        println!("PUA files:         {} not loaded ([scan] detect_pua is off)", s.pua_files_skipped);
    }
    println!(
        "other levels:      {} (signatures for engine functionality levels other than {}, skipped as ClamAV skips them)",
        s.other_level,
        scan::sigdb::FUNCTIONALITY_LEVEL
    );
    println!("files:             {}", s.files.join(", "));
    if s.unsupported.is_empty() {
        println!("unsupported:       none");
    } else {
        println!("unsupported (not loaded), by kind:");
        for (reason, n) in &s.unsupported {
            println!("  {n:>9}  {reason}");
        }
    }
    if !s.skipped.is_empty() {
        println!("skipped signatures (file:line: why):");
        for k in &s.skipped {
            println!("  {}:{}: {}", k.file, k.line, k.why);
        }
        if s.skipped_more > 0 {
            println!("  … and {} more", s.skipped_more);
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Totals {
    files: u64,
    infected: u64,
    errors: u64,
    bytes_read: u64,
    bytes_scanned: u64,
}

/// `mxshield scan [--db DIR] [--json] PATH…`.
pub fn scan(config: &Config, db: Option<&Path>, json: bool, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (sigs, _) = load_signatures(config, db)?;
    let known = sigs.len();
    let version = sigs.version.clone();
    let engine = Engine::new(Arc::new(sigs), config.scan.limits);
    let started = Instant::now();
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files);
    }
    let progress = std::io::stderr().is_terminal() && !json;
    let mut last_progress = Instant::now();
    let mut t = Totals { files: 0, infected: 0, errors: 0, bytes_read: 0, bytes_scanned: 0 };
    let mut json_files = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for f in &files {
        let data = match f {
            Ok(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) => Err(e.clone()),
        };
        let path_text = f.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|e| e.clone());
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                t.errors += 1;
                if json {
                    json_files.push(serde_json::json!({ "path": path_text, "error": e }));
                } else {
                    writeln!(out, "{e} ERROR")?;
                }
                continue;
            }
        };
        let name = Path::new(&path_text).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let report = engine.scan_bytes(&name, &data);
        t.files += 1;
        t.bytes_read += data.len() as u64;
        t.bytes_scanned += report.bytes_scanned;
        let verdict = report.verdict();
        match &verdict {
            Verdict::Infected(_) => t.infected += 1,
            Verdict::LimitExceeded(_) => t.errors += 1,
            _ => {}
        }
        if json {
            json_files.push(serde_json::json!({ "path": path_text, "verdict": verdict, "report": layer_json(&report.root, &path_text) }));
        } else {
            writeln!(out, "{path_text}: {}", verdict.label())?;
        }
        if progress && last_progress.elapsed() > Duration::from_millis(250) {
            eprint!("\r{} of {} files, {:.1} MB", t.files, files.len(), t.bytes_read as f64 / 1e6);
            last_progress = Instant::now();
        }
    }
    if progress {
        eprint!("\r{:60}\r", "");
    }
    let took = started.elapsed();
    if json {
        let summary = serde_json::json!({
            "files": t.files, "infected": t.infected, "errors": t.errors,
            "data_read_bytes": t.bytes_read, "data_scanned_bytes": t.bytes_scanned,
            "seconds": took.as_secs_f64(), "signatures": version, "known_signatures": known,
        });
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "files": json_files, "summary": summary }))?;
        writeln!(out)?;
    } else {
        writeln!(out, "\n----------- SCAN SUMMARY -----------")?;
        writeln!(out, "Known viruses: {known}")?;
        writeln!(out, "Engine version: mxshield {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(out, "Signatures: {version}")?;
        writeln!(out, "Scanned files: {}", t.files)?;
        writeln!(out, "Infected files: {}", t.infected)?;
        if t.errors > 0 {
            writeln!(out, "Total errors: {}", t.errors)?;
        }
        writeln!(out, "Data scanned: {:.2} MiB", t.bytes_scanned as f64 / 1_048_576.0)?;
        writeln!(out, "Data read: {:.2} MiB", t.bytes_read as f64 / 1_048_576.0)?;
        writeln!(out, "Time: {:.3} sec", took.as_secs_f64())?;
    }
    Ok(ExitCode::from(if t.infected > 0 {
        1
    } else if t.errors > 0 {
        2
    } else {
        0
    }))
}

/// Files under `p` (recursively, sorted); unreadable entries become errors. Symbolic links
/// are followed only when named on the command line (no loops through linked directories).
fn collect(p: &Path, out: &mut Vec<Result<PathBuf, String>>) {
    collect_at(p, out, true);
}

fn collect_at(p: &Path, out: &mut Vec<Result<PathBuf, String>>, top: bool) {
    let meta = if top { std::fs::metadata(p) } else { std::fs::symlink_metadata(p) };
    match meta {
        Err(e) => out.push(Err(format!("{}: {e}", p.display()))),
        Ok(m) if m.is_dir() => match std::fs::read_dir(p) {
            Err(e) => out.push(Err(format!("{}: {e}", p.display()))),
            Ok(rd) => {
                let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                for e in entries {
                    collect_at(&e, out, false);
                }
            }
        },
        Ok(m) if m.is_file() => out.push(Ok(p.to_path_buf())),
        Ok(_) => {}
    }
}

/// The report tree as JSON, each layer with its full path (`a › b › c`).
fn layer_json(l: &Layer, path: &str) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert("path".into(), path.into());
    if let serde_json::Value::Object(fields) = serde_json::to_value(l).unwrap_or_default() {
        for (k, v) in fields {
            if k != "children" {
                obj.insert(k, v);
            }
        }
    }
    let children: Vec<serde_json::Value> =
        l.children.iter().map(|c| layer_json(c, &format!("{path} › {}", c.name))).collect();
    if !children.is_empty() {
        obj.insert("children".into(), children.into());
    }
    obj.into()
}
