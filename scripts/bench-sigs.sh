#!/usr/bin/env bash
# Signature database at ClamAV's scale (issue 10): 4,000,000 MD5 + 1,000,000 SHA-256 + 150,000
# body + 20,000 logical signatures from bench/gen-sigs.py, and a daily change of 1 % of that
# (its own files, as daily.cvd is beside main.cvd). mxshield (a node with [signatures], the
# change published as a release) and clamd (Debian's clamav-daemon, the change copied in and
# RELOAD) load the same files in the same run. Prints load time, steady RSS, peak RSS while
# the change is swapped in, and mxshield's scan speed on the synthetic corpus (one core).
# SKIP_CLAMD=1 skips clamd.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
cargo build --release --quiet -p mxshield
W=target/bench/sigs-clamav-scale
[ -f "$W/main/synth.hdb" ] || python3 bench/gen-sigs.py --out "$W/main" --hdb 4000000 --hsb 1000000 --ndb 150000 --ldb 20000
[ -f "$W/daily/daily.hdb" ] || python3 bench/gen-sigs.py --out "$W/daily" --name daily --seed 7 --hdb 40000 --hsb 10000 --ndb 1500 --ldb 200
[ -d target/bench/corpus/zip ] || python3 bench/gen-corpus.py --out target/bench/corpus
BIN=$PWD/target/release/mxshield
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
wait_for() { # seconds command...
  local limit=$1; shift
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- mxshield: a node that starts with release 1 (main), then installs release 2 (main + daily)
mkdir -p "$T/db"
cp "$W"/main/* "$T/db/"
"$BIN" sigs keygen --secret "$T/k" --public "$T/k.pub" >/dev/null
"$BIN" sigs publish --db "$T/db" --secret "$T/k" --out "$T/repo" >/dev/null
cat > "$T/mx.toml" <<EOF
data_dir = "$T/data"
[smtp]
listen = ["127.0.0.1:$(free_port)"]
hostname = "bench.test"
[signatures]
source = "$T/repo"
trusted_keys = ["$(tail -1 "$T/k.pub")"]
check_every = "1s"
EOF
status_has() { "$BIN" --config "$T/mx.toml" sigs status | grep -q "release $1 "; }
# the first start installs release 1; measured is a node started again, loading it from its store
"$BIN" --config "$T/mx.toml" serve 2>"$T/mx1.log" &
wait_for 300 status_has 1
kill %1; wait %1 || true
start=$(date +%s.%N)
"$BIN" --config "$T/mx.toml" serve 2>"$T/mx.log" &
pid=$!
wait_for 300 grep -q '"started"\|event="started"\|started' "$T/mx.log"
mx_load=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
sleep 2
mx_steady=$(kib $pid VmRSS)
echo 5 > "/proc/$pid/clear_refs"   # the high-water mark from now on
cp "$W"/daily/* "$T/db/"
"$BIN" sigs publish --db "$T/db" --secret "$T/k" --out "$T/repo" >/dev/null
swap_start=$(date +%s.%N)
wait_for 600 status_has 2
mx_swap=$(awk -v s="$swap_start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
mx_peak=$(kib $pid VmHWM)
mx_after=$(kib $pid VmRSS)
kill $pid; wait $pid || true
reused=$(grep -o 'files_unchanged=[0-9]*' "$T/mx.log" | tail -1)

# scan speed with the same database (main + daily), one core, load time subtracted
MIB=$(du -sm --apparent-size target/bench/corpus | cut -f1)
sload=$(/usr/bin/time -f "%e" taskset -c 0 "$BIN" sigs info --db "$T/db" 2>&1 >/dev/null | tail -1)
stotal=$(/usr/bin/time -f "%e" taskset -c 0 "$BIN" scan --db "$T/db" target/bench/corpus 2>&1 >/dev/null | tail -1)
speed=$(awk -v m="$MIB" -v t="$stotal" -v l="$sload" 'BEGIN {printf "%.0f", m / (t - l)}')

echo "database: $(cat "$W"/main/* | wc -l) signatures; daily change: $(cat "$W"/daily/* | wc -l) ($reused of the files unchanged)"
printf "%-10s %10s %12s %14s %12s %10s\n" "" "load s" "steady MiB" "peak swap MiB" "peak/steady" "swap s"
printf "%-10s %10s %12s %14s %12s %10s\n" mxshield "$mx_load" "$(mib "$mx_steady")" "$(mib "$mx_peak")" \
  "$(awk -v p="$mx_peak" -v s="$mx_steady" 'BEGIN {printf "%.2f", p / s}')" "$mx_swap"

if [ -z "${SKIP_CLAMD:-}" ]; then
  mkdir -p "$T/clamdb"
  cp "$W"/main/* "$T/clamdb/"
  port=$(free_port)
  cat > "$T/clamd.conf" <<EOF
Foreground yes
DatabaseDirectory $T/clamdb
TCPSocket $port
TCPAddr 127.0.0.1
LogFile $T/clamd.log
TemporaryDirectory $T
PidFile $T/clamd.pid
EOF
  ping() { python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$port),1); s.sendall(b'zPING\0'); sys.exit(0 if s.recv(16).startswith(b'PONG') else 1)"; }
  start=$(date +%s.%N)
  /usr/sbin/clamd --config-file="$T/clamd.conf" >/dev/null 2>&1 &
  cpid=$!
  wait_for 600 ping
  c_load=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
  sleep 2
  c_steady=$(kib $cpid VmRSS)
  echo 5 > "/proc/$cpid/clear_refs"
  cp "$W"/daily/* "$T/clamdb/"
  swap_start=$(date +%s.%N)
  python3 -c "import socket; s=socket.create_connection(('127.0.0.1',$port)); s.sendall(b'zRELOAD\0'); s.recv(64)"
  wait_for 600 grep -q "Database correctly reloaded" "$T/clamd.log"
  c_swap=$(awk -v s="$swap_start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
  c_peak=$(kib $cpid VmHWM)
  kill $cpid; wait $cpid || true
  printf "%-10s %10s %12s %14s %12s %10s\n" clamd "$c_load" "$(mib "$c_steady")" "$(mib "$c_peak")" \
    "$(awk -v p="$c_peak" -v s="$c_steady" 'BEGIN {printf "%.2f", p / s}')" "$c_swap"
  echo "mxshield/clamd: load $(awk -v a="$mx_load" -v b="$c_load" 'BEGIN {printf "%.2f", a / b}'), steady RSS $(awk -v a="$mx_steady" -v b="$c_steady" 'BEGIN {printf "%.2f", a / b}') (targets: <= 0.33, <= 0.5)"
fi
echo "mxshield scan on this database: $speed MiB/s on one core ($MIB MiB corpus; target >= 300); RSS after the swap $(mib "$mx_after") MiB"
