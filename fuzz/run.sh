#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each under nice -n 19,
# growing the committed corpora in fuzz/corpus/<target>. One target at a
# time (RB_FUZZ_JOBS=N runs N at once). Prints one line per target
# (executions, corpus size) and fails on a crash (the input is left in
# fuzz/artifacts/<target>/).
#   bash fuzz/run.sh 60                 # what tests/run.sh runs
#   bash fuzz/run.sh 600 dhcp tftp      # longer, some targets
#   RB_FUZZ_NICE=5 RB_FUZZ_JOBS=2 bash fuzz/run.sh 600   # the 10-minute runs, with CPU
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dhcp tftp ipmi http_head api_request callbacks templates)
jobs=${RB_FUZZ_JOBS:-1}
# The build is kept under the repository's target/ (one build for all).
target_dir=../target/fuzz
if ! nice -n "${RB_FUZZ_NICE:-19}" cargo +nightly fuzz build -O --target-dir "$target_dir" >/dev/null; then
  echo "fuzz: BUILD FAILED: the fuzz targets do not compile (errors above)"
  exit 1
fi
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run_one() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  set +e
  nice -n "${RB_FUZZ_NICE:-19}" cargo +nightly fuzz run -O --target-dir "$target_dir" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$logs/$t.log" 2>&1
  echo $? >"$logs/$t.rc"
}

running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
wait || true

status=0
for t in "${targets[@]}"; do
  rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 1)
  execs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$logs/$t.log")
  files=$(find "corpus/$t" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    echo "fuzz $t: CRASH after ${execs:-?} executions (rc $rc); input in fuzz/artifacts/$t/:"
    grep -E "panicked|ERROR: libFuzzer|SUMMARY" "$logs/$t.log" | head -5
    status=1
  else
    echo "fuzz $t: ${execs:-?} executions in ${seconds} s, no crash (corpus: $files inputs)"
  fi
done
exit "$status"
