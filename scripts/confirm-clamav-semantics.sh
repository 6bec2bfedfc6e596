#!/usr/bin/env bash
# Runs every case of crates/scan/tests/clamav/semantics.tsv through clamscan (Debian's clamav)
# and reports each whose expectation clamscan does not confirm. Exit 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clamscan >/dev/null || { echo "clamscan is needed (apt-get install clamav)" >&2; exit 2; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0; bad=0
while IFS=$'\t' read -r kind sig sample expected; do
  case "$kind" in ''|'#'*) continue ;; esac
  n=$((n + 1))
  rm -rf "$T/db" "$T/sample"; mkdir "$T/db"
  # several files: kinds `ndb,ign2` and their lines split by `|||`
  IFS=',' read -ra kinds <<<"$kind"
  rest=$sig
  for k in "${kinds[@]}"; do
    printf '%s\n' "${rest%%|||*}" > "$T/db/t.$k"
    rest=${rest#*|||}
  done
  printf '%b' "$sample" > "$T/sample"
  out=$(clamscan --no-summary -d "$T/db" "$T/sample" 2>&1 || true)
  if grep -q "Malformed database\|Can't load" <<<"$out"; then got=malformed
  elif grep -q " FOUND$" <<<"$out"; then got=$(sed -n 's/^.*: \(.*\) FOUND$/\1/p' <<<"$out" | sed 's/\.UNOFFICIAL$//')
  else got=clean; fi
  if [ "$got" != "$expected" ]; then
    bad=$((bad + 1)); echo "differs: $sig on '$sample': expected $expected, clamscan says $got"
  fi
done < crates/scan/tests/clamav/semantics.tsv
echo "$n cases, $bad not confirmed by $(clamscan --version)"
[ "$bad" -eq 0 ]
