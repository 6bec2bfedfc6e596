#!/usr/bin/env bash
# Benchmark of the mail path (issue 2): 2,000 x 10 KiB messages over 8 sessions through the
# gateway (durable spool) to a sink, next to the same load sent straight to the sink.
# Extra arguments go to mxshield-bench (--messages, --size, --sessions).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p mxshield -p mxshield-testkit --bins
exec target/release/mxshield-bench "$@"
