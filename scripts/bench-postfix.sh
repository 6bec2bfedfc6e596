#!/usr/bin/env bash
# Mail path measured with Postfix's smtp-source/smtp-sink (apt-get install postfix): 2,000 x
# 10 KiB messages over 8 sessions, straight to smtp-sink as the reference, then through each
# mxshield binary given (durable spool) to the same sink. N, S, L override count, sessions, size.
# Usage: scripts/bench-postfix.sh target/release/mxshield [/path/to/other/build ...]
set -euo pipefail
N=${N:-2000}; S=${S:-8}; L=${L:-10240}
sinkdir=$(mktemp -d); mkdir -p "$sinkdir/dump"
smtp-sink -u root -d "$sinkdir/dump/%H%M%S" 127.0.0.1:25525 256 & sink=$!
trap 'kill $sink 2>/dev/null || true; rm -rf "$sinkdir"' EXIT
sleep 0.5
count() { find "$sinkdir/dump" -type f | wc -l; }
wait_for() { local want=$1 end=$((SECONDS+600)); while [ "$(count)" -lt "$want" ] && [ $SECONDS -lt $end ]; do sleep 0.05; done; }
t0=$(date +%s.%N)
smtp-source -s $S -m $N -l $L -f a@remote.test -t alice@acme.example 127.0.0.1:25525
wait_for $N
t1=$(date +%s.%N)
printf "%-40s %8.0f msg/s\n" "straight to smtp-sink" "$(echo "$N/($t1-$t0)" | bc -l)"
for bin in "$@"; do
  bin=$(realpath "$bin")
  rm -rf "$sinkdir/dump"; mkdir -p "$sinkdir/dump"
  d=$(mktemp -d)
  printf 'data_dir = "data"\n[smtp]\nlisten = ["127.0.0.1:25526"]\nhostname = "mx.bench"\n[log]\nlevel = "warn"\n' > "$d/mxshield.toml"
  printf '[[contract]]\nid = "bench"\ncustomer = "Bench"\naccounts_limit = 1\nstarts = "2026-01-01"\n[[contract.domain]]\nname = "acme.example"\nreceiving_servers = ["127.0.0.1:25525"]\naccounts = ["alice"]\n' > "$d/contracts.toml"
  (cd "$d" && "$bin" --config mxshield.toml contracts apply contracts.toml >/dev/null)
  (cd "$d" && exec "$bin" --config mxshield.toml serve 2>"$d/log" >/dev/null) & gw=$!
  for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/25526) 2>/dev/null && break; sleep 0.05; done
  cpu() { awk '{print $14+$15}' /proc/$gw/stat; }
  c0=$(cpu)
  t0=$(date +%s.%N)
  smtp-source -s $S -m $N -l $L -f a@remote.test -t alice@acme.example 127.0.0.1:25526
  t1=$(date +%s.%N)
  wait_for $N
  t2=$(date +%s.%N)
  c1=$(cpu)
  printf "%-40s accepted %6.0f msg/s, end-to-end %6.0f msg/s (%d delivered), gateway CPU %.0f us/msg\n" "$bin" \
    "$(echo "$N/($t1-$t0)" | bc -l)" "$(echo "$N/($t2-$t0)" | bc -l)" "$(count)" \
    "$(echo "($c1-$c0)*1000000/$(getconf CLK_TCK)/$N" | bc -l)"
  kill $gw; wait $gw 2>/dev/null || true
  grep -v "^$" "$d/log" | tail -3 || true; rm -rf "$d"
done
