#!/usr/bin/env bash
# The mail path measured with Postfix's standard load tools (issue 13): smtp-sink plays the
# customer server, smtp-source the Internet. Three rounds, interleaved, of three workloads —
#   (a) 2,000 x 10 KiB over 8 sessions, one connection per message
#   (b) the same with connections reused (smtp-source -d)
#   (c) 200 messages with a 1 MiB base64 attachment over 8 sessions
# each sent straight to smtp-sink (the ceiling) and through mxshield (durable spool on disk,
# scanning on) to the same sink. Prints accepted msg/s (smtp-source done: every 250 in),
# end-to-end msg/s (every message delivered to the sink), the gateway's CPU per message, the
# medians and the ratio to the ceiling. A second reference, when run as root: the same load
# through a private Postfix instance relaying to the same sink without a filter (POSTFIX=0
# leaves it out).
#
# Needs smtp-source/smtp-sink (Debian's postfix package; scripts/test.sh installs it, no
# system instance is started). Usage: scripts/bench-standard.sh [path/to/mxshield]
#   ROUNDS=3 DATA_DIR_PARENT=<dir for the gateway's data_dir, default: target/bench-standard>
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
mxshield_binary "${1:-}"
ROUNDS=${ROUNDS:-3}
parent=${DATA_DIR_PARENT:-target/bench-standard}
mkdir -p "$parent"; parent=$(realpath "$parent")
# the sink's files are the customer's disk, not ours: kept in memory where possible
sinkroot=$(mktemp -d -p "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )")
SINK=127.0.0.1:25525 GW=127.0.0.1:25526
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$sinkroot"' EXIT

# the 1 MiB-attachment message, pre-formatted for smtp-source -F: lines end in LF, because
# smtp-source sends each line of the file with CRLF (a file with CRLF would arrive with a bare
# CR before every line end)
big="$sinkroot/big.eml"
python3 - "$big" <<'PY'
import base64, random, sys
random.seed(13)
data = bytes(random.getrandbits(8) for _ in range(1 << 20))
b64 = base64.encodebytes(data).decode()
body = ("From: bench@remote.test\nTo: alice@acme.example\nSubject: bench 1 MiB\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n"
        "--B\nContent-Type: text/plain\n\nsee attached\n"
        "--B\nContent-Type: application/octet-stream; name=\"data.bin\"\n"
        "Content-Transfer-Encoding: base64\n\n" + b64 + "--B--\n")
open(sys.argv[1], "w", newline="").write(body)
PY

dump=""
start_sink() {
  dump="$sinkroot/dump"; rm -rf "$dump"; mkdir -p "$dump"
  smtp-sink -u "$(id -un)" -d "$dump/%H%M%S" "$SINK" 256 & sinkpid=$!
  for _ in $(seq 100); do (echo > /dev/tcp/${SINK%:*}/${SINK#*:}) 2>/dev/null && break; sleep 0.05; done
}
stop_sink() { kill $sinkpid 2>/dev/null || true; wait $sinkpid 2>/dev/null || true; }
count() { find "$dump" -type f | wc -l; }
wait_for() { local want=$1 end=$((SECONDS+600)); while [ "$(count)" -lt "$want" ] && [ $SECONDS -lt $end ]; do sleep 0.02; done; }

# smtp-source arguments of each workload, and its message count
args_a="-s 8 -m 2000 -l 10240"
args_b="-s 8 -m 2000 -l 10240 -d"
args_c="-s 8 -m 200 -F $big"
n_a=2000; n_b=2000; n_c=200

source_to() { # workload target
  local a="args_$1"
  # shellcheck disable=SC2086
  smtp-source ${!a} -f bench@remote.test -t alice@acme.example "$2"
}

# the disk's own ceiling where the spool lives: durable commits/s (write 10 KiB, fdatasync,
# rename, directory fsync) from 8 writers, as the gateway makes them
python3 - "$parent" <<'PY'
import os, sys, tempfile, threading, time
root = tempfile.mkdtemp(dir=sys.argv[1]); q = os.path.join(root, "q"); t = os.path.join(root, "t")
os.makedirs(q); os.makedirs(t)
data = os.urandom(10240); n = 1000
def writer(k):
    for i in range(k, n, 8):
        p = os.path.join(t, str(i)); f = os.open(p, os.O_WRONLY | os.O_CREAT); os.write(f, data); os.fdatasync(f); os.close(f)
        os.rename(p, os.path.join(q, str(i))); d = os.open(q, os.O_RDONLY); os.fsync(d); os.close(d)
start = time.time(); ts = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
[x.start() for x in ts]; [x.join() for x in ts]
print(f"disk: {n / (time.time() - start):.0f} durable commits/s from 8 writers in {sys.argv[1]}")
for d in (q, t):
    for f in os.listdir(d): os.remove(os.path.join(d, f))
    os.rmdir(d)
os.rmdir(root)
PY

# the second reference (POSTFIX=0 to leave it out): a private Postfix instance (Debian's postfix
# package, the one that brings smtp-source) relaying the same mail to the same sink without a
# filter or a scanner — a store-and-forward MTA's own cost on this machine. Its queue lives
# beside the gateway's spool; it needs root (Postfix starts as root and drops to "postfix").
POSTFIX=${POSTFIX:-1}; PF=127.0.0.1:25527; pfroot=""
if [ "$POSTFIX" = 1 ] && { [ "$(id -u)" -ne 0 ] || ! [ -x /usr/sbin/postfix ] || ! id postfix >/dev/null 2>&1; }; then
  echo "no Postfix reference: it needs root and Debian's postfix package (POSTFIX=0 skips it)"; POSTFIX=0
fi
if [ "$POSTFIX" = 1 ]; then
  pfroot=$(mktemp -d -p "$parent"); chmod 755 "$pfroot"; mkdir -p "$pfroot/conf" "$pfroot/queue" "$pfroot/data"
  chown postfix "$pfroot/data"
  # Debian's master.cf, with smtpd on its own port and no service chrooted
  awk -v listen="$PF" '/^[a-z]/ && NF >= 8 { if ($1 == "smtp" && $2 == "inet") $1 = listen; $5 = "n" } { print }' \
    /etc/postfix/master.cf > "$pfroot/conf/master.cf"
  cat > "$pfroot/conf/main.cf" <<MAINCF
compatibility_level = 3.6
queue_directory = $pfroot/queue
data_directory = $pfroot/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = ${PF%:*}
inet_protocols = ipv4
myhostname = postfix.bench
mydestination =
relay_domains = acme.example
transport_maps = inline:{ acme.example=smtp:[${SINK%:*}]:${SINK#*:} }
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
default_process_limit = 100
message_size_limit = 52428800
maillog_file_prefixes = $pfroot
maillog_file = $pfroot/maillog
MAINCF
  postfix -c "$pfroot/conf" start >/dev/null 2>&1 || { echo "Postfix did not start:"; tail -5 "$pfroot/maillog"; exit 1; }
  trap 'postfix -c "$pfroot/conf" stop >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$sinkroot" "$pfroot"' EXIT
fi

results="$sinkroot/results"; : > "$results"
for round in $(seq "$ROUNDS"); do
  for w in a b c; do
    n_var="n_$w"; n=${!n_var}
    # the ceiling: straight to the sink
    start_sink
    t0=$(date +%s.%N); source_to $w "$SINK"; wait_for "$n"; t1=$(date +%s.%N)
    got=$(count); stop_sink
    [ "$got" -eq "$n" ] || { echo "sink got $got of $n"; exit 1; }
    echo "$w sink $(echo "$n/($t1-$t0)" | bc -l) $(echo "$n/($t1-$t0)" | bc -l) 0" >> "$results"
    # through mxshield
    start_sink
    d=$(mktemp -d -p "$parent")
    printf 'data_dir = "data"\n[smtp]\nlisten = ["%s"]\nhostname = "mx.bench"\nmax_connections = 512\n[log]\nlevel = "warn"\n' "$GW" > "$d/mxshield.toml"
    printf '[[contract]]\nid = "bench"\ncustomer = "Bench"\naccounts_limit = 1\nstarts = "2026-01-01"\n[[contract.domain]]\nname = "acme.example"\nreceiving_servers = ["%s"]\naccounts = ["alice"]\n' "$SINK" > "$d/contracts.toml"
    (cd "$d" && "$bin" --config mxshield.toml contracts apply contracts.toml >/dev/null)
    (cd "$d" && exec "$bin" --config mxshield.toml serve 2>"$d/log" >/dev/null) & gw=$!
    for _ in $(seq 200); do (echo > /dev/tcp/${GW%:*}/${GW#*:}) 2>/dev/null && break; sleep 0.05; done
    c0=$(awk '{print $14+$15}' /proc/$gw/stat)
    t0=$(date +%s.%N); source_to $w "$GW"; t1=$(date +%s.%N); wait_for "$n"; t2=$(date +%s.%N)
    c1=$(awk '{print $14+$15}' /proc/$gw/stat)
    got=$(count); kill $gw; wait $gw 2>/dev/null || true; stop_sink
    [ "$got" -eq "$n" ] || { echo "through mxshield the sink got $got of $n; log:"; tail -5 "$d/log"; exit 1; }
    rm -rf "$d"
    echo "$w mxshield $(echo "$n/($t1-$t0)" | bc -l) $(echo "$n/($t2-$t0)" | bc -l) $(echo "($c1-$c0)*1000000/$(getconf CLK_TCK)/$n" | bc -l)" >> "$results"
    printf "round %d %s: sink %6.0f msg/s; mxshield accepted %6.0f, end-to-end %6.0f msg/s, CPU %4.0f us/msg\n" "$round" "$w" \
      "$(grep "^$w sink" "$results" | tail -1 | cut -d' ' -f3)" $(grep "^$w mxshield" "$results" | tail -1 | cut -d' ' -f3-5)
    if [ "$POSTFIX" = 1 ]; then
      # through Postfix, no filter
      start_sink
      t0=$(date +%s.%N); source_to $w "$PF"; t1=$(date +%s.%N); wait_for "$n"; t2=$(date +%s.%N)
      got=$(count); stop_sink
      [ "$got" -eq "$n" ] || { echo "through Postfix the sink got $got of $n; log:"; tail -5 "$pfroot/maillog"; exit 1; }
      echo "$w postfix $(echo "$n/($t1-$t0)" | bc -l) $(echo "$n/($t2-$t0)" | bc -l) 0" >> "$results"
      printf "round %d %s: Postfix (no filter) accepted %6.0f, end-to-end %6.0f msg/s\n" "$round" "$w" \
        $(grep "^$w postfix" "$results" | tail -1 | cut -d' ' -f3-4)
    fi
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
names = {"a": "(a) 2,000 x 10 KiB, a connection per message",
         "b": "(b) 2,000 x 10 KiB, connections reused (-d)",
         "c": "(c) 200 x 1 MiB base64 attachment"}
def med(w, kind, column):  # column 2: accepted msg/s, 3: end-to-end msg/s, 4: CPU us/msg
    return statistics.median(float(r[column]) for r in rows if r[0] == w and r[1] == kind)
def table(kind, title, last_title, last):  # one row per workload: `kind` against the sink
    print()
    print(f"{title:<46} {'sink':>8} {'accepted':>9} {'end-to-end':>11} {'ratio':>6} {last_title:>9}")
    for w, name in names.items():
        sink, e2e = med(w, "sink", 2), med(w, kind, 3)
        print(f"{name:<46} {sink:>8.0f} {med(w, kind, 2):>9.0f} {e2e:>11.0f} {e2e / sink:>6.0%} {last(w, e2e):>9}")
table("mxshield", "workload", "CPU/msg", lambda w, e2e: f"{med(w, 'mxshield', 4):.0f} us")
print("(msg/s, medians of the rounds; ratio: end-to-end to the sink's rate in the same rounds)")
if any(r[1] == "postfix" for r in rows):
    table("postfix", "second reference: Postfix relaying, no filter", "mxshield",
          lambda w, e2e: f"{med(w, 'mxshield', 3) / e2e:.1f}x")
    print("(mxshield: its end-to-end rate, scanning on, as a multiple of Postfix's without a filter)")
PY
