#!/usr/bin/env bash
# A long fuzz campaign (docs/fuzzing.md): each harness runs until it has made
# PLM_FUZZ_RUNS executions (default 10 million) or spent PLM_FUZZ_SECONDS
# (default 3600), whichever comes first, on a corpus that grows in
# <campaign dir>/<harness>/corpus and is kept, so running the script again
# continues where it stopped. Prints per harness the executions, the CPU time,
# exec/s and the result, and fails if any harness found something (the input
# is in <campaign dir>/<harness>/artifacts/).
#
#   tests/fuzz/campaign.sh <build dir> <campaign dir> [harness ...]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 <build dir> <campaign dir> [harness ...]" >&2
  exit 2
fi
build=$1 campaign=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
if [ $# -gt 0 ]; then harnesses=("$@"); else harnesses=("${all[@]}"); fi
jobs=${PLM_FUZZ_JOBS:-2} runs=${PLM_FUZZ_RUNS:-10000000} seconds=${PLM_FUZZ_SECONDS:-3600}
# Allocation stacks are not recorded (malloc_context_size=0): reports keep their
# own stack, and the campaign runs faster. Every sanitizer check stays on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=0}

run_one() {
  local h=$1 dir=$campaign/$1
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -Rn "$here/corpus/$h/." "$dir/corpus/"
  if [ -d "$here/regressions/$h" ]; then cp -R "$here/regressions/$h/." "$dir/corpus/"; fi
  local rc=0
  # shellcheck disable=SC2046
  /usr/bin/time -f "%U %S" -o "$dir/cpu" "$build/tests/fuzz/fuzz_$h" -runs="$runs" -max_total_time="$seconds" \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len="$(max_len "$h")" $(dict "$h") -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" "$dir/corpus" > "$dir/log" 2>&1 || rc=$?
  echo "$rc" > "$dir/rc"
}

running=0
for h in "${harnesses[@]}"; do
  [ -x "$build/tests/fuzz/fuzz_$h" ] || { echo "campaign.sh: no $build/tests/fuzz/fuzz_$h" >&2; exit 2; }
  run_one "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

failed=0
printf '%-16s %12s %10s %8s %8s  %s\n' harness executions cpu_s exec/s corpus result
for h in "${harnesses[@]}"; do
  dir=$campaign/$h
  rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n1)
  cpu=$(awk '{printf "%.0f", $1 + $2}' "$dir/cpu" 2>/dev/null || echo "?")
  rate=$(awk -v e="${execs:-0}" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", e / c; else print "?" }')
  files=$(find "$dir/corpus" -type f | wc -l)
  if [ "$rc" = 0 ]; then result=ok; else result="FAILED (exit $rc; see $dir/log and $dir/artifacts/)"; failed=$((failed + 1)); fi
  printf '%-16s %12s %10s %8s %8s  %s\n' "$h" "${execs:-?}" "$cpu" "$rate" "$files" "$result"
done
[ "$failed" -eq 0 ] || { echo "campaign.sh: $failed harness(es) found something" >&2; exit 1; }
