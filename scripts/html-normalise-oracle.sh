#!/usr/bin/env bash
# The expected outputs of crates/scan/tests/html/*.html, as clamscan (Debian's clamav) writes
# them: for each input, libclamav's own normalised forms (nocomment.html, notags.html and,
# for a page with scripts, javascript, kept with --leave-temps) are copied next to it as
# NAME.nocomment, NAME.notags and NAME.javascript. The test
# (crates/scan/tests/html_normalise.rs) compares the engine's normaliser with them; this script
# regenerates them (GEN=N SEED=S first adds N generated inputs with that seed; JSGEN=N SEED=S
# adds N generated pages with scripts, scripts/js-generate.py; SCRGEN=N SEED=S adds N pages
# with jscript.encode scripts, scripts/screnc-generate.py).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clamscan >/dev/null || { echo "clamscan is needed (apt-get install clamav)" >&2; exit 2; }
dir=crates/scan/tests/html
if [ -n "${GEN:-}" ]; then python3 scripts/html-generate.py "${SEED:-1}" "$GEN" "$dir"; fi
if [ -n "${JSGEN:-}" ]; then python3 scripts/js-generate.py "${SEED:-1}" "$JSGEN" "$dir"; fi
if [ -n "${SCRGEN:-}" ]; then python3 scripts/screnc-generate.py "${SEED:-1}" "$SCRGEN" "$dir"; fi
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
mkdir "$t/db"; echo 'Dummy.Sig:0:*:00112233445566778899' > "$t/db/d.ndb"
for f in "$dir"/*.html; do
  rm -rf "$t/tmp"; mkdir "$t/tmp"
  clamscan --leave-temps --tempdir="$t/tmp" -d "$t/db" "$f" > /dev/null 2>&1 || true
  for k in nocomment notags; do
    p=$(find "$t/tmp" -name "$k.html" | head -1)
    if [ -z "$p" ]; then echo "clamscan did not normalise $f as HTML" >&2; exit 1; fi
    cp "$p" "${f%.html}.$k"
  done
  js=$(find "$t/tmp" -name javascript | head -1)
  if [ -n "$js" ]; then cp "$js" "${f%.html}.javascript"; else rm -f "${f%.html}.javascript"; fi
done
echo "$(ls "$dir"/*.html | wc -l) inputs normalised by $(clamscan --version)"
