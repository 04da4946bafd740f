#!/usr/bin/env bash
# esm2_pretrain refuses every bad option value while parsing the command line
# (a non-zero exit below 128, stderr naming the option, nothing written), and
# never replaces an earlier run: without --resume or --overwrite it stops
# before any work and leaves the run's files as they were.
#   esm2_pretrain_options.sh <esm2_pretrain> <training FASTA(.gz)> <work dir>
set -uo pipefail
exe=$1 fasta=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
failures=0 cases=0

# refused <text stderr must contain> <args...>
refused() {
  local want=$1
  shift
  cases=$((cases + 1))
  rm -rf "$work/out"
  timeout 120 "$exe" --out "$work/out" "$@" > "$work/stdout" 2> "$work/stderr" < /dev/null
  local rc=$? why=
  if [ "$rc" -eq 0 ]; then why="accepted (exit 0)"
  elif [ "$rc" -eq 124 ]; then why="accepted: still running after 120 s"
  elif [ "$rc" -ge 128 ]; then why="killed by signal $((rc - 128))"
  elif ! grep -qF -- "$want" "$work/stderr"; then why="the error does not say '$want'"
  elif [ -e "$work/out" ]; then why="refused only after writing $work/out"
  fi
  if [ -n "$why" ]; then
    failures=$((failures + 1))
    echo "FAIL: esm2_pretrain $*: $why (exit $rc)"
    sed 's/^/    /' "$work/stderr" | head -5
  fi
}

refused "--layers: 0 is out of range [1, 1024]" --layers 0
refused "--hidden: 0 is out of range" --hidden 0
refused "--heads: 0 is out of range [1, 4096]" --heads 0
refused "--hidden: 130 must be a multiple of --heads 4" --hidden 130
refused "rotary positions need an even head width" --hidden 12 --heads 4
refused "--ffn: -1 is out of range" --ffn -1
refused "--select-prob: 0 is outside (0, 1]" --select-prob 0
refused "--select-prob: 1.5 is outside (0, 1]" --select-prob 1.5
refused "--mask-frac: -0.1 is outside [0, 1]" --mask-frac -0.1
refused "--random-frac: 2 is outside [0, 1]" --random-frac 2
refused "--mask-frac: 0.95 and --random-frac 0.1 add up to more than 1" --mask-frac 0.95
refused "--lr: must be positive, got 0" --lr 0
refused "--lr: must be positive, got nan" --lr nan
refused "--lr" --lr inf
refused "--warmup: must be >= 0, got -1" --warmup -1
refused "--steps: must be >= 1, got 0" --steps 0
refused "--accum: must be >= 1, got 0" --accum 0
refused "--token-budget: must be >= 1, got 0" --token-budget 0
refused "--token-budget: 100 cannot hold one sequence of --max-length 256" --token-budget 100
refused "--max-length: must be >= 0, got -1" --max-length -1
refused "--min-length: 300 exceeds --max-length 256" --min-length 300
refused "--valid-fraction: 1 is outside [0, 1)" --valid-fraction 1
refused "--valid-fraction: 0 holds nothing out" --valid-fraction 0
refused "--valid-max: must be >= 1, got 0" --valid-max 0
refused "--pool: must be >= 1, got 0" --pool 0
refused "--optimizer: unknown 'sgd' (adamw, adafactor or adafactor-relative)" --optimizer sgd
refused "--schedule: unknown 'step'" --schedule step
refused "--too-long: unknown 'cut'" --too-long cut
refused "--rare: unknown 'drop' (keep, unk or error)" --rare drop
refused "--clip: must be >= 0, got -1" --clip -1
refused "--weight-decay: must be >= 0" --weight-decay -1
refused "--eval-every: must be >= 1, got 0" --eval-every 0
refused "--checkpoint-every: must be >= 1, got 0" --checkpoint-every 0
refused "--seed" --seed -1
refused "--threads: must be >= 0, got -2" --threads -2
refused "--device: unknown 'tpu' (cpu or cuda)" --device tpu
refused "--train" --train "$work/missing.fasta"
echo "$cases bad option values checked, $failures not refused as expected"

# An earlier run is never replaced by accident.
tiny=(--train "$fasta" --layers 1 --hidden 16 --heads 2 --max-length 40 --min-length 20 --token-budget 256 --valid-max 4
      --steps 3 --warmup 1 --threads 1)
run_dir=$work/run
"$exe" "${tiny[@]}" --out "$run_dir" 2> "$work/first.log" || { echo "FAIL: the first run failed"; cat "$work/first.log"; exit 1; }
sums() { (cd "$run_dir" && find . -type f | sort | xargs sha256sum); }
before=$(sums)
expect_refusal() {  # expect_refusal <text> <args...>
  local want=$1
  shift
  cases=$((cases + 1))
  "$exe" "${tiny[@]}" --out "$run_dir" "$@" 2> "$work/again.log"
  local rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ] || ! grep -qF -- "$want" "$work/again.log"; then
    failures=$((failures + 1)); echo "FAIL: a second run with '$*' was not refused with '$want' (exit $rc):"; head -5 "$work/again.log"
  fi
  [ "$(sums)" = "$before" ] || { failures=$((failures + 1)); echo "FAIL: the refused run with '$*' changed $run_dir"; }
}
expect_refusal "holds an earlier run (checkpoint.safetensors, metrics.jsonl, model); add --resume to continue it, --overwrite to replace it"
expect_refusal "--resume and --overwrite exclude each other" --resume --overwrite
expect_refusal "the checkpoint is at step 3, --steps 3 is already reached" --resume
# --overwrite replaces it: a run with another seed writes other weights.
"$exe" "${tiny[@]}" --out "$run_dir" --overwrite --seed 9 2> "$work/overwrite.log" || { echo "FAIL: --overwrite failed"; cat "$work/overwrite.log"; exit 1; }
[ "$(sums)" != "$before" ] || { failures=$((failures + 1)); echo "FAIL: --overwrite left the earlier run in place"; }
[ "$(grep -c '"split":"train"' "$run_dir/metrics.jsonl")" = 3 ] || { failures=$((failures + 1)); echo "FAIL: --overwrite kept earlier metrics"; }

[ "$failures" -eq 0 ] || { echo "$failures of $cases checks failed"; exit 1; }
echo "ok: $cases checks"
