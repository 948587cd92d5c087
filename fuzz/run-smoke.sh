#!/usr/bin/env bash
# Bounded libFuzzer runs of every target: installs cargo-fuzz (crates.io) when missing,
# regenerates the corpus from vectors/, runs each target for QMIG_FUZZ_SECONDS (default 20)
# with the protocol dictionary, prints executions (and exec/s) per target, and exits
# non-zero if any target crashed (reproducers land in fuzz/artifacts/<target>/).
#   QMIG_FUZZ_TARGETS="main_stream multifd"  run only these
set -uo pipefail
cd "$(dirname "$0")"
secs=${QMIG_FUZZ_SECONDS:-20}
targets=${QMIG_FUZZ_TARGETS:-"main_stream return_path multifd mapped_ram round_trip structured replay"}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "no nightly toolchain (rustup toolchain install nightly): fuzz smoke runs skipped" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked || exit 2
fi
python3 seed.py >/dev/null || exit 2
status=0
for t in $targets; do
  log=$(mktemp)
  mkdir -p "corpus/$t" "artifacts/$t"
  case $t in main_stream|round_trip) max_len=65536 ;; *) max_len=1048576 ;; esac  # seed.py's limits
  cargo +nightly fuzz run -a "$t" "corpus/$t" -- \
    -max_total_time="$secs" -dict=qmig.dict -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  # "#123456	DONE   cov: ... exec/s: 6172 rss: ..." (or the last stat line if it died)
  line=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$line")
  rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$line")
  cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$line")
  if [ $rc -eq 0 ]; then
    echo "fuzz $t: ${execs:-?} executions in ${secs}s (${rate:-?} exec/s, cov ${cov:-?}), no crash"
  else
    echo "fuzz $t: CRASH (rc $rc) after ${execs:-?} executions"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to' "$log" | head -8
    status=1
  fi
  rm -f "$log"
done
exit $status
