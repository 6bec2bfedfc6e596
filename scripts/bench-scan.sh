#!/usr/bin/env bash
# Benchmark of the scanning engine (issue 3): the synthetic ClamAV database (100,000 .ndb +
# 1,000,000 .hdb) and the 512 MiB synthetic corpus from bench/, scanned by `mxshield scan`
# and by `clamscan` (Debian's clamav) with the identical database, in the same run.
# Prints DB load time, scan time, MiB/s and peak RSS of both. Set RUNS (default 3) for the
# number of mxshield runs (the median is reported); SKIP_CLAMSCAN=1 skips clamscan (~2.5 min).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v clamscan >/dev/null 2>&1 || need+=(clamav)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
cargo build --release --quiet -p mxshield
W=target/bench
[ -f "$W/sigs/synth.hdb" ] || python3 bench/gen-sigs.py --out "$W/sigs"
[ -d "$W/corpus/zip" ] || python3 bench/gen-corpus.py --out "$W/corpus"
MIB=$(du -sm --apparent-size "$W/corpus" | cut -f1)
BIN=target/release/mxshield

# DB load alone, then the full scan (load + scan); /usr/bin/time gives wall seconds and peak KB
load=$(/usr/bin/time -f "%e %M" "$BIN" sigs info --db "$W/sigs" 2>&1 >/dev/null | tail -1)
runs=()
for _ in $(seq "${RUNS:-3}"); do
  runs+=("$(/usr/bin/time -f "%e %M" "$BIN" scan --db "$W/sigs" "$W/corpus" 2>&1 >/dev/null | tail -1)")
done
median=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(( (${#runs[@]} + 1) / 2 ))p")

row() { # name load_s total_s rss_kb
  awk -v n="$1" -v l="$2" -v t="$3" -v r="$4" -v mib="$MIB" 'BEGIN {
    s = t - l; printf "%-10s %9.2f %9.2f %9.2f %10.1f %8.0f\n", n, l, t, s, mib / s, r / 1024 }'
}
echo "corpus: $MIB MiB in $(find "$W/corpus" -type f | wc -l) files; database: $(wc -l < "$W/sigs/synth.ndb") .ndb + $(wc -l < "$W/sigs/synth.hdb") .hdb"
echo "mxshield runs (wall s, peak KB): ${runs[*]}"
printf "%-10s %9s %9s %9s %10s %8s\n" tool "load s" "total s" "scan s" "MiB/s" "RSS MiB"
row mxshield "${load%% *}" "${median%% *}" "${median##* }"
if [ -z "${SKIP_CLAMSCAN:-}" ]; then
  : > "$W/empty.txt"
  # clamscan exits 1 on a finding and 2 on errors; the timing line is what matters here
  cload=$( { /usr/bin/time -f "%e %M" clamscan --no-summary --database="$W/sigs" "$W/empty.txt" >/dev/null; } 2>&1 | tail -1 || true)
  cscan=$( { /usr/bin/time -f "%e %M" clamscan --no-summary -i -r --database="$W/sigs" "$W/corpus" >/dev/null; } 2>&1 | tail -1 || true)
  row clamscan "${cload%% *}" "${cscan%% *}" "${cscan##* }"
fi

# The document-heavy corpus (issue 17): PDF, OLE2, OOXML, RTF, HTML and ISO files from
# bench/gen-docs.py (128 MiB), every container opened; the same database, the same rows.
# SKIP_DOCS=1 skips it.
if [ -z "${SKIP_DOCS:-}" ]; then
  D=$W/docs
  [ -d "$D/pdf" ] || python3 bench/gen-docs.py --out "$D" >/dev/null
  DMIB=$(du -sm --apparent-size "$D" | cut -f1)
  druns=()
  for _ in $(seq "${RUNS:-3}"); do
    druns+=("$(/usr/bin/time -f "%e %M" "$BIN" scan --db "$W/sigs" "$D" 2>&1 >/dev/null | tail -1)")
  done
  dmedian=$(printf '%s\n' "${druns[@]}" | sort -n | sed -n "$(( (${#druns[@]} + 1) / 2 ))p")
  echo
  echo "documents: $DMIB MiB in $(find "$D" -type f | wc -l) files (pdf, ole, docx, rtf, html, iso)"
  echo "mxshield runs (wall s, peak KB): ${druns[*]}"
  printf "%-10s %9s %9s %9s %10s %8s\n" tool "load s" "total s" "scan s" "MiB/s" "RSS MiB"
  MIB=$DMIB row mxshield "${load%% *}" "${dmedian%% *}" "${dmedian##* }"
  if [ -z "${SKIP_CLAMSCAN:-}" ]; then
    dscan=$( { /usr/bin/time -f "%e %M" clamscan --no-summary -i -r --database="$W/sigs" "$D" >/dev/null; } 2>&1 | tail -1 || true)
    MIB=$DMIB row clamscan "${cload%% *}" "${dscan%% *}" "${dscan##* }"
  fi
fi
