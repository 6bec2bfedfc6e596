# Shared by the benchmarks that use Postfix's load tools (sourced, not run).
# mxshield_binary [PATH]: sets $bin to PATH, or to a fresh release build; fails without
# smtp-source/smtp-sink (Debian's postfix package; scripts/test.sh installs it).
mxshield_binary() {
  command -v smtp-source >/dev/null || { echo "smtp-source not found: apt-get install postfix (scripts/test.sh does)"; exit 2; }
  bin=${1:-}
  if [ -z "$bin" ]; then
    cargo build --release --quiet -p mxshield
    bin=target/release/mxshield
  fi
  bin=$(realpath "$bin")
}
