//! Structured logs: one line per event (`event=received queue_id=… …`), text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber; `MXSHIELD_LOG` (same syntax as `RUST_LOG`) overrides the
/// configured level.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_env("MXSHIELD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,mxshield={}", cfg.level)));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if cfg.json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
