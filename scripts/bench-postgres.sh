#!/usr/bin/env bash
# The 10 KiB mail path with Postfix's smtp-source/smtp-sink (issue 12's figure, with the
# standard tools): 2,000 x 10 KiB over 8 sessions through mxshield with its stores on SQLite and
# with [store] url on PostgreSQL (a fresh schema each time, dropped after), interleaved, four
# rounds; each run checks that the message log holds every message.
# Usage: scripts/bench-postgres.sh [mxshield]   PG=postgres://postgres@127.0.0.1:5432/test
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
mxshield_binary "${1:-}"
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
mkdir -p target
sinkroot=$(mktemp -d -p "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )")
for round in 1 2 3 4; do for store in postgres sqlite; do
  dump=$sinkroot/dump; rm -rf $dump; mkdir -p $dump
  smtp-sink -u root -d "$dump/%H%M%S" 127.0.0.1:25540 256 & sink=$!
  d=$(mktemp -d -p target)
  printf 'data_dir = "data"\n[smtp]\nlisten = ["127.0.0.1:25541"]\nhostname = "mx.bench"\n[log]\nlevel = "warn"\n' > $d/mxshield.toml
  if [ $store = postgres ]; then
    schema=pgstd_$$_$round; psql -X -q -d "$PG" -c "CREATE SCHEMA $schema"
    printf '[store]\nurl = "%s?options=-c%%20search_path%%3D%s"\n' "$PG" $schema >> $d/mxshield.toml
  fi
  printf '[[contract]]\nid = "bench"\ncustomer = "Bench"\naccounts_limit = 1\nstarts = "2026-01-01"\n[[contract.domain]]\nname = "acme.example"\nreceiving_servers = ["127.0.0.1:25540"]\naccounts = ["alice"]\n' > $d/contracts.toml
  (cd $d && $bin --config mxshield.toml contracts apply contracts.toml >/dev/null)
  (cd $d && exec $bin --config mxshield.toml serve 2>log >/dev/null) & gw=$!
  for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/25541) 2>/dev/null && break; sleep 0.05; done
  t0=$(date +%s.%N); smtp-source -s 8 -m 2000 -l 10240 -f a@remote.test -t alice@acme.example 127.0.0.1:25541; t1=$(date +%s.%N)
  while [ "$(find $dump -type f | wc -l)" -lt 2000 ]; do sleep 0.02; done; t2=$(date +%s.%N)
  sleep 0.5; logged=$(cd $d && $bin --config mxshield.toml log search --limit 100000 --json | grep -c '"queue_id"' || true)
  kill $gw; wait $gw 2>/dev/null || true; kill $sink; wait $sink 2>/dev/null || true
  printf "round %d %-8s accepted %5.0f msg/s, end-to-end %5.0f msg/s, %d logged\n" $round $store "$(echo "2000/($t1-$t0)" | bc -l)" "$(echo "2000/($t2-$t0)" | bc -l)" $logged
  [ $store = postgres ] && psql -X -q -d "$PG" -c "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE"
  rm -rf $d
done; done
rm -rf $sinkroot
