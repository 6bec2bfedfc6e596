#!/usr/bin/env bash
# The message-trace API over 1,000,000 message-log records (issue 15): the log is generated
# once per store (SQLite under target/, a PostgreSQL database of its own), then 600 filtered
# searches of one-day windows go through GET /api/v1/log over HTTP on loopback; p50/p99 per
# kind of filter and overall, next to the target (p99 <= 200 ms).
# Usage: scripts/bench-trace.sh [RECORDS]   PG=postgres://postgres@127.0.0.1:5432
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
cargo build --release -q -p mxshield-operator --example trace_load
mkdir -p target/trace-bench
./target/release/examples/trace_load "sqlite://$PWD/target/trace-bench/log-$records.db" "$records"
db=mxshield_trace_bench_$records
psql -X -q -d "$PG/test" -tc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
  || psql -X -q -d "$PG/test" -c "CREATE DATABASE $db"
./target/release/examples/trace_load "$PG/$db" "$records"
