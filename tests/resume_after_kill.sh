#!/usr/bin/env bash
# Kills ankh3_pretrain with SIGKILL in the middle of a run, resumes it from its
# last checkpoint and checks that every training step's losses equal those of
# an uninterrupted run of the same seed, bit for bit.
#   resume_after_kill.sh <ankh3_pretrain> <training FASTA(.gz)> <work dir>
set -euo pipefail
exe=$1 fasta=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
# 150 real sequences: the run crosses several pools and epochs.
zcat -f "$fasta" | awk '/^>/{n++} n<=150' > "$work/train.fasta"
args=(--train "$work/train.fasta" --model ankh3-tiny --max-length 64 --min-length 10 --token-budget 768 --pool 40
      --valid-max 16 --steps 300 --warmup 10 --eval-every 100 --checkpoint-every 13 --threads 1 --seed 5
      --mask-probs 0.1,0.3 --split-min 0.3 --split-max 0.7)

"$exe" "${args[@]}" --out "$work/a" 2> "$work/a.log"

"$exe" "${args[@]}" --out "$work/b" 2> "$work/b.log" &
pid=$!
# Wait until the run is well past a checkpoint, then kill it without warning.
while kill -0 "$pid" 2> /dev/null; do
  if [ -f "$work/b/metrics.jsonl" ] && [ "$(grep -c '"split":"train"' "$work/b/metrics.jsonl")" -ge 60 ]; then
    kill -9 "$pid"
    break
  fi
  sleep 0.01
done
wait "$pid" && { echo "FAIL: the run finished before it could be killed"; exit 1; } || true
killed_at=$(grep -c '"split":"train"' "$work/b/metrics.jsonl")
[ "$killed_at" -lt 300 ] || { echo "FAIL: the run was not interrupted (at step $killed_at)"; exit 1; }
echo "killed after $killed_at logged steps"

"$exe" "${args[@]}" --out "$work/b" --resume 2> "$work/b2.log"
grep -q "resumed from" "$work/b2.log" || { echo "FAIL: did not resume"; cat "$work/b2.log"; exit 1; }

# Compare everything but the timings.
strip() { grep '"split"' "$1" | sed -E 's/"tokens_per_s":[^,}]*,?//'; }
if ! diff <(strip "$work/a/metrics.jsonl") <(strip "$work/b/metrics.jsonl") > "$work/diff.txt"; then
  echo "FAIL: the resumed run differs from the uninterrupted one:"; head -20 "$work/diff.txt"; exit 1
fi
cmp "$work/a/model/model.safetensors" "$work/b/model/model.safetensors" || { echo "FAIL: final weights differ"; exit 1; }
echo "ok: $(strip "$work/a/metrics.jsonl" | wc -l) metric records and the final weights are identical"
