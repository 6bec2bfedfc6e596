#!/usr/bin/env bash
# Memory under concurrency (issue 13): the gateway's peak RSS (VmHWM) with 1,000 idle sessions,
# and with 200 sessions each sending a 25 MB message at once (smtp-source; they all come from
# one address, so max_connections_per_client is raised for the run). Spool on disk under
# target/bench-memory (5 GB are written; removed after). Usage: scripts/bench-memory.sh [mxshield]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
mxshield_binary "${1:-}"
work=target/bench-memory
rm -rf "$work"; mkdir -p "$work"; work=$(realpath "$work")
SINK=127.0.0.1:25532 GW=127.0.0.1:25533
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
ulimit -n 4096 2>/dev/null || true

smtp-sink -u "$(id -un)" "$SINK" 512 &
cd "$work"
printf 'data_dir = "data"\n[smtp]\nlisten = ["%s"]\nhostname = "mx.bench"\nmax_connections = 1200\nmax_connections_per_client = 1100\n[log]\nlevel = "warn"\n' "$GW" > mxshield.toml
printf '[[contract]]\nid = "bench"\ncustomer = "Bench"\naccounts_limit = 1\nstarts = "2026-01-01"\n[[contract.domain]]\nname = "acme.example"\nreceiving_servers = ["%s"]\naccounts = ["alice"]\n' "$SINK" > contracts.toml
"$bin" --config mxshield.toml contracts apply contracts.toml >/dev/null

start_gateway() {
  rm -rf data/spool
  "$bin" --config mxshield.toml serve 2>>log >/dev/null & gw=$!
  for _ in $(seq 200); do (echo > /dev/tcp/${GW%:*}/${GW#*:}) 2>/dev/null && break; sleep 0.05; done
}
hwm() { awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' /proc/$gw/status; }

start_gateway
echo "at start: $(hwm)"
python3 - "$GW" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
socks = []
for _ in range(1000):
    s = socket.create_connection((host, int(port)))
    assert s.recv(512).startswith(b"220")
    socks.append(s)
time.sleep(1)
PY
echo "1,000 idle sessions: peak RSS $(hwm) (target <= 100 MiB)"
kill $gw; wait $gw 2>/dev/null || true

start_gateway
t0=$(date +%s.%N)
smtp-source -s 200 -m 200 -l 25000000 -f bench@remote.test -t alice@acme.example "$GW"
t1=$(date +%s.%N)
echo "200 x 25 MB at once: accepted in $(echo "$t1-$t0" | bc -l | cut -c1-5) s, peak RSS $(hwm) (target <= 1 GiB)"
kill $gw; wait $gw 2>/dev/null || true
