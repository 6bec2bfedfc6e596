#!/usr/bin/env bash
# The differential test against clamscan (crates/scan/tests/differential.rs) for longer:
# SEEDS seeds (default 10) of CASES random signatures each (default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in $(seq 1 "${SEEDS:-10}"); do
  DIFF_SEED=$seed DIFF_CASES=${CASES:-2000} cargo test -q -p mxshield-scan --test differential -- --nocapture 2>&1 |
    grep -E "differential:|differ from" || true
done
