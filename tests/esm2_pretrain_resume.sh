#!/usr/bin/env bash
# Kills esm2_pretrain with SIGKILL in the middle of a run, resumes it from its
# last checkpoint and checks that every training step's loss and the final
# weights equal those of an uninterrupted run of the same seed, bit for bit:
# once with the default masking and once with two micro-batches per step and
# other masking fractions. Then checks that a resume with other settings is
# refused, naming the setting.
#   esm2_pretrain_resume.sh <esm2_pretrain> <training FASTA(.gz)> <work dir>
# <work dir>/a/model is the model of the first uninterrupted run (esm2_matches_transformers.sh uses it).
set -euo pipefail
exe=$1 fasta=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
# 150 real sequences: the runs cross many pools and epochs.
zcat -f "$fasta" | awk '/^>/{n++} n<=150' > "$work/train.fasta"
args=(--train "$work/train.fasta" --layers 2 --hidden 32 --heads 2 --max-length 64 --min-length 10 --token-budget 512
      --pool 40 --valid-max 16 --steps 240 --warmup 10 --eval-every 80 --checkpoint-every 13 --threads 1 --seed 5)

train_steps() { if [ -f "$1" ]; then grep -c '"split":"train"' "$1" || true; else echo 0; fi; }
# Compare everything but the timings.
strip() { grep '"split"' "$1" | sed -E 's/"tokens_per_s":[^,}]*,?//'; }

# kill_and_resume <uninterrupted dir> <interrupted dir> [extra options...]
kill_and_resume() {
  local a=$work/$1 b=$work/$2
  shift 2
  "$exe" "${args[@]}" "$@" --out "$a" 2> "$a.log" || { echo "FAIL: the uninterrupted run failed"; cat "$a.log"; exit 1; }
  "$exe" "${args[@]}" "$@" --out "$b" 2> "$b.log" &
  local pid=$!
  # Wait until the run is well past a checkpoint, then kill it without warning.
  while kill -0 "$pid" 2> /dev/null; do
    if [ "$(train_steps "$b/metrics.jsonl")" -ge 60 ]; then
      kill -9 "$pid"
      break
    fi
    sleep 0.01
  done
  wait "$pid" && { echo "FAIL: the run finished before it could be killed"; exit 1; } || true
  local killed_at
  killed_at=$(train_steps "$b/metrics.jsonl")
  [ "$killed_at" -lt 240 ] || { echo "FAIL: the run was not interrupted (at step $killed_at)"; exit 1; }
  echo "${*:-default settings}: killed after $killed_at logged steps"
  "$exe" "${args[@]}" "$@" --out "$b" --resume 2> "$b.resumed.log" || { echo "FAIL: the resumed run failed"; cat "$b.resumed.log"; exit 1; }
  grep -q "resumed from" "$b.resumed.log" || { echo "FAIL: did not resume"; cat "$b.resumed.log"; exit 1; }
  # The runs must have crossed epochs for the comparison to cover the wrap-around.
  grep -q '"epoch":2' "$a/metrics.jsonl" || { echo "FAIL: the run stayed in its first epochs"; exit 1; }
  [ "$(train_steps "$a/metrics.jsonl")" = 240 ] || { echo "FAIL: the uninterrupted run logged $(train_steps "$a/metrics.jsonl") steps"; exit 1; }
  if ! diff <(strip "$a/metrics.jsonl") <(strip "$b/metrics.jsonl") > "$b.diff"; then
    echo "FAIL: the resumed run differs from the uninterrupted one:"; head -20 "$b.diff"; exit 1
  fi
  cmp "$a/model/model.safetensors" "$b/model/model.safetensors" || { echo "FAIL: final weights differ"; exit 1; }
  echo "ok: $(strip "$a/metrics.jsonl" | wc -l) metric records and the final weights are identical"
}

kill_and_resume a b
kill_and_resume a_accum b_accum --accum 2 --mask-frac 0.6 --random-frac 0.2

# The model directory holds what transformers loads.
for f in config.json model.safetensors vocab.txt tokenizer_config.json special_tokens_map.json; do
  [ -s "$work/a/model/$f" ] || { echo "FAIL: $work/a/model/$f is missing or empty"; exit 1; }
done
# The final evaluation is logged with the frequency baseline beside it.
tail -n 1 "$work/a/metrics.jsonl" | grep -q '"baseline_acc":' || { echo "FAIL: no baseline in the last evaluation"; exit 1; }

# A resume with one setting changed (the option's value replaced, or the option
# added) is refused, and the error names the setting.
refused() {  # refused <what the error names> <option> [value]
  local what=$1 option=$2 value=${3-} changed=() found=0 i
  for ((i = 0; i < ${#args[@]}; i++)); do
    changed+=("${args[i]}")
    if [ "${args[i]}" = "$option" ]; then changed+=("$value") found=1 i=$((i + 1)); fi
  done
  if [ "$found" = 0 ]; then changed+=("$option"); [ -z "$value" ] || changed+=("$value"); fi
  if "$exe" "${changed[@]}" --out "$work/b" --resume 2> "$work/refused.log"; then
    echo "FAIL: a resume with $option $value was accepted"; exit 1
  fi
  grep -q "was written with $what\|saved with $what" "$work/refused.log" ||
    { echo "FAIL: the refusal of $option $value does not name $what:"; cat "$work/refused.log"; exit 1; }
}
refused "pool = 40" --pool 41
refused "select_probability" --select-prob 0.2
refused "token_budget" --token-budget 600
refused "micro_batches_per_step = 1" --accum 3
refused "model" --no-token-dropout
head -n -2 "$work/train.fasta" > "$work/other.fasta"
refused "train = " --train "$work/other.fasta"
echo "ok: resumes with other settings or another file are refused"
