#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one at a time,
# under nice -n 19, growing the committed corpora in fuzz/corpus/<target>.
# Prints one line per target (executions, corpus size) and fails on a
# crash (the input is left in fuzz/artifacts/<target>/).
#   bash fuzz/run.sh 60                 # what tests/run.sh runs
#   bash fuzz/run.sh 600 dhcp tftp      # longer, some targets
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dhcp tftp ipmi http_head api_request callbacks templates)
# The build is kept under the repository's target/ (one build for all).
target_dir=../target/fuzz
nice -n 19 cargo +nightly fuzz build -O --target-dir "$target_dir" >/dev/null
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  set +e
  nice -n 19 cargo +nightly fuzz run -O --target-dir "$target_dir" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(awk -F: '/stat::number_of_executed_units/ { gsub(/ /, "", $2); print $2 }' "$log")
  files=$(find "corpus/$t" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    echo "fuzz $t: CRASH after ${execs:-?} executions (rc $rc); input in fuzz/artifacts/$t/:"
    grep -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -5
    status=1
  else
    echo "fuzz $t: ${execs:-?} executions in ${seconds} s, no crash (corpus: $files inputs)"
  fi
  rm -f "$log"
done
exit "$status"
