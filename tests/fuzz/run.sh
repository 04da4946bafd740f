#!/usr/bin/env bash
# Runs plm's fuzz harnesses (docs/fuzzing.md) for a fixed time each and fails
# if any of them finds a crash, a sanitizer report, an escaping non-plm
# exception, a hang (-timeout) or an allocation over the limits.
#
#   tests/fuzz/run.sh <build dir> <seconds per harness> [harness ...]
#
# Every harness fuzzes a scratch copy of its seeds (tests/fuzz/corpus/<name>)
# and regression inputs (tests/fuzz/regressions/<name>), so the repository is
# never modified. Harnesses run PLM_FUZZ_JOBS at a time (default 2). A crashing
# input is copied to <build dir>/fuzz-artifacts/<name>/; keep it as a
# regression input under tests/fuzz/regressions/<name>/ once understood.
# Extra libFuzzer flags: PLM_FUZZ_FLAGS (e.g. "-max_len=1024").
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <build dir> <seconds per harness> [harness ...]" >&2
  exit 2
fi
build=$1 seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
if [ $# -gt 0 ]; then harnesses=("$@"); else harnesses=("${all[@]}"); fi
jobs=${PLM_FUZZ_JOBS:-2}

for h in "${harnesses[@]}"; do
  [ -x "$build/tests/fuzz/fuzz_$h" ] || { echo "run.sh: no $build/tests/fuzz/fuzz_$h (build with -DPLM_FUZZ=ON, target plm_fuzz)" >&2; exit 2; }
  [ -d "$here/corpus/$h" ] || { echo "run.sh: no seeds in $here/corpus/$h" >&2; exit 2; }
done

# The corpora live in memory where possible: libFuzzer writes every new input as a file, and creating
# thousands of files on a disk file system (ext4 inode allocation) cost more than the parsing itself.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then scratch_base=/dev/shm; else scratch_base=${TMPDIR:-/tmp}; fi
scratch=$(mktemp -d "$scratch_base/plm-fuzz-run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

run_one() {
  local h=$1 dir=$scratch/$1
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -R "$here/corpus/$h/." "$dir/corpus/"
  if [ -d "$here/regressions/$h" ]; then cp -R "$here/regressions/$h/." "$dir/corpus/"; fi
  local rc=0
  # shellcheck disable=SC2046,SC2086
  "$build/tests/fuzz/fuzz_$h" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -max_len="$(max_len "$h")" $(dict "$h") -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
    ${PLM_FUZZ_FLAGS:-} "$dir/corpus" >"$dir/log" 2>&1 &
  local pid=$!
  wait "$pid" || rc=$?
  # The harness's own scratch folder, left behind when the process died.
  rm -rf "/dev/shm/plm-fuzz-$pid" "${TMPDIR:-/tmp}/plm-fuzz-$pid"
  echo "$rc" >"$dir/rc"
}

# Up to $jobs harnesses at a time.
running=0
for h in "${harnesses[@]}"; do
  run_one "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

failed=()
printf '%-16s %12s %10s  %s\n' harness executions exec/s result
for h in "${harnesses[@]}"; do
  dir=$scratch/$h
  rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -n1)
  if [ "$rc" = 0 ]; then
    result=ok
  else
    failed+=("$h")
    result="FAILED (exit $rc)"
    mkdir -p "$build/fuzz-artifacts/$h"
    cp "$dir/log" "$build/fuzz-artifacts/$h/log"
    if compgen -G "$dir/artifacts/*" >/dev/null; then cp "$dir"/artifacts/* "$build/fuzz-artifacts/$h/"; fi
    result="$result, inputs and log in $build/fuzz-artifacts/$h/"
  fi
  printf '%-16s %12s %10s  %s\n' "$h" "${execs:-?}" "${rate:-?}" "$result"
done

for h in "${failed[@]}"; do
  echo
  echo "--- $h: end of the log ---"
  grep -v '^#[0-9]' "$scratch/$h/log" | tail -n 40
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: ${#failed[@]} harness(es) failed: ${failed[*]}" >&2
  exit 1
fi
echo "run.sh: ${#harnesses[@]} harness(es) ran ${seconds} s each without a finding"
