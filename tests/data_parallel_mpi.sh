#!/usr/bin/env bash
# Data-parallel training under mpirun (dist::DataParallel over MPI), checked
# against one process:
#   1. ankh3_pretrain on 2 ranks x 1 micro-batch writes the same metrics
#      (every step and held-out evaluation, timings aside) and the same
#      checkpoint, byte for byte, as 1 process
#      accumulating 2 micro-batches; for AdamW and Adafactor, with and
#      without --zero1. esm2_pretrain and nm_finetune likewise (AdamW, ZeRO-1).
#   2. 2 ranks x 2 micro-batches against 1 process x 4: equal losses up to
#      float rounding (the sum is grouped by rank, dist/data_parallel.hpp).
#   3. SIGKILL of rank 1 mid-run: the job exits non-zero, naming rank 1, well
#      within the timeout; --resume on 2 ranks then ends exactly as the
#      uninterrupted run, and so does 1 process accumulating 2 micro-batches.
#   4. A rank that stops answering (SIGSTOP): the other names it after
#      --dist-timeout seconds and the job ends.
#   5. Ranks started with different options are refused before the first step.
#   data_parallel_mpi.sh <ankh3_pretrain> <esm2_pretrain> <nm_finetune> <training FASTA(.gz)> <work dir>
# Exits 77 (skipped) where mpirun is missing or the programs were built without MPI.
set -euo pipefail
pre=$1 esm=$2 nm=$3 fasta=$4 work=$5
command -v mpirun > /dev/null || { echo "skipped: no mpirun (Debian: apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
rm -rf "$work" && mkdir -p "$work"
mpi=(mpirun --oversubscribe --allow-run-as-root --bind-to none -np 2)
export OMPI_MCA_btl_vader_single_copy_mechanism=none  # containers often forbid cross-process memory access
OMPI_COMM_WORLD_SIZE=2 "$pre" --steps 1 --out "$work/probe" > /dev/null 2> "$work/probe.log" || true
if grep -q "built without MPI" "$work/probe.log"; then echo "skipped: built without MPI"; exit 77; fi
rm -rf "$work/probe"

zcat -f "$fasta" | awk '/^>/{n++} n<=300' > "$work/train.fasta"
common=(--train "$work/train.fasta" --max-length 64 --token-budget 1024 --pool 100 --valid-max 16 --threads 1 --seed 7)
pre_args=("${common[@]}" --d-model 32 --d-ff 64 --heads 2 --d-kv 16 --layers 2 --decoder-layers 1 --warmup 4 --eval-every 6
          --checkpoint-every 5)
losses() { grep '"split":"train"' "$1" | grep -o '"loss":[^,}]*'; }
# Every metrics line (training steps and held-out evaluations) but the timings.
records() { grep '"split"' "$1" | sed -E 's/"(tokens_per_s|sync_s)":[^,}]*,?//g'; }
fail() { echo "FAIL: $*"; exit 1; }
same_run() {  # same_run <dir a> <dir b> <what>
  diff <(records "$1/metrics.jsonl") <(records "$2/metrics.jsonl") > /dev/null || fail "$3: the metrics differ"
  cmp -s "$1/checkpoint.safetensors" "$2/checkpoint.safetensors" || fail "$3: the checkpoints differ"
}

# 1. Bit for bit against one process accumulating the ranks' micro-batches.
for opt in adamw adafactor; do
  for zero in "" --zero1; do
    tag=$opt${zero:+-zero1}
    "$pre" "${pre_args[@]}" --steps 12 --optimizer "$opt" --accum 2 $zero --out "$work/one-$tag" 2> "$work/one-$tag.log" ||
      { cat "$work/one-$tag.log"; fail "1 process, $tag"; }
    "${mpi[@]}" "$pre" "${pre_args[@]}" --steps 12 --optimizer "$opt" $zero --out "$work/two-$tag" > /dev/null 2> "$work/two-$tag.log" ||
      { cat "$work/two-$tag.log"; fail "2 ranks, $tag"; }
    same_run "$work/one-$tag" "$work/two-$tag" "ankh3_pretrain $tag"
    cmp -s "$work/one-$tag/model/model.safetensors" "$work/two-$tag/model/model.safetensors" || fail "ankh3_pretrain $tag: the models differ"
  done
done
grep -q "2 ranks (MPI)" "$work/two-adamw.log" || fail "the job does not say it runs on 2 ranks"
grep -q "ZeRO-1" "$work/two-adamw-zero1.log" || fail "--zero1 is not reported"
[ -f "$work/two-adamw/metrics.jsonl" ] && [ "$(grep -c '"split":"valid"' "$work/two-adamw/metrics.jsonl")" = 2 ] ||
  fail "rank 0 did not write one validation line per evaluation"

esm_args=("${common[@]}" --layers 1 --hidden 32 --heads 2 --steps 10 --warmup 2 --eval-every 5 --checkpoint-every 5)
"$esm" "${esm_args[@]}" --accum 2 --out "$work/esm-one" 2> "$work/esm-one.log" || { cat "$work/esm-one.log"; fail "esm2_pretrain, 1 process"; }
"${mpi[@]}" "$esm" "${esm_args[@]}" --zero1 --out "$work/esm-two" > /dev/null 2> "$work/esm-two.log" ||
  { cat "$work/esm-two.log"; fail "esm2_pretrain, 2 ranks"; }
same_run "$work/esm-one" "$work/esm-two" "esm2_pretrain"

nm_args=(--limit 300 --min-class-size 20 --max-length 48 --d-model 16 --heads 2 --d-ff 32 --layers 1 --readout 16 --batch 16
         --epochs 2 --threads 1 --seed 3 --arms nm)
"$nm" "${nm_args[@]}" --accum 2 --out "$work/nm-one" > /dev/null 2> "$work/nm-one.log" || { cat "$work/nm-one.log"; fail "nm_finetune, 1 process"; }
"${mpi[@]}" "$nm" "${nm_args[@]}" --zero1 --out "$work/nm-two" > /dev/null 2> "$work/nm-two.log" ||
  { cat "$work/nm-two.log"; fail "nm_finetune, 2 ranks"; }
diff <(records "$work/nm-one/nm/metrics.jsonl") <(records "$work/nm-two/nm/metrics.jsonl") > /dev/null || fail "nm_finetune: the metrics differ"
cmp -s "$work/nm-one/nm/checkpoint.safetensors" "$work/nm-two/nm/checkpoint.safetensors" || fail "nm_finetune: the checkpoints differ"
cmp -s "$work/nm-one/nm/test.json" "$work/nm-two/nm/test.json" || fail "nm_finetune: the test figures differ"

# 2. Several micro-batches per rank: the same run up to rounding.
"$pre" "${pre_args[@]}" --steps 6 --accum 4 --out "$work/acc4" 2> /dev/null || fail "1 process x 4"
"${mpi[@]}" "$pre" "${pre_args[@]}" --steps 6 --accum 2 --out "$work/acc2x2" > /dev/null 2>&1 || fail "2 ranks x 2"
paste -d' ' <(losses "$work/acc4/metrics.jsonl" | cut -d: -f2) <(losses "$work/acc2x2/metrics.jsonl" | cut -d: -f2) |
  awk '{d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * $1) { print "FAIL: step " NR " loss " $1 " vs " $2; bad = 1 } } END { exit bad }'

# 3. SIGKILL of rank 1, then resume.
rank_pid() {  # rank_pid <rank> <run name>: the pid of that rank of the job writing $work/<run name>
  for p in $(pgrep -f -- "--out $work/$2\$"); do
    if tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo "$p"; return; fi
  done
}
# signal_rank_1 <signal> <run name> <train steps> <job pid>: once the run has logged that many steps (and
# written a checkpoint), sends the signal to its rank 1 and prints that rank's pid.
signal_rank_1() {
  local log=$work/$2/metrics.jsonl
  while kill -0 "$4" 2> /dev/null; do
    if [ -f "$work/$2/checkpoint.safetensors" ] && [ "$(grep -c '"split":"train"' "$log")" -ge "$3" ]; then
      local victim
      victim=$(rank_pid 1 "$2")
      [ -n "$victim" ] && kill "-$1" "$victim" && echo "$victim"
      return
    fi
    sleep 0.05
  done
}
"${mpi[@]}" "$pre" "${pre_args[@]}" --steps 30 --out "$work/full" > /dev/null 2> "$work/full.log" || { cat "$work/full.log"; fail "uninterrupted run"; }
start=$(date +%s)
"${mpi[@]}" "$pre" "${pre_args[@]}" --steps 30 --dist-timeout 60 --out "$work/killed" > /dev/null 2> "$work/killed.log" &
job=$!
victim=$(signal_rank_1 KILL killed 12 "$job")
[ -n "$victim" ] || fail "the run ended before rank 1 could be killed"
if wait "$job"; then fail "the job survived the loss of rank 1"; fi
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -lt 60 ] || fail "the job took ${elapsed} s to stop after rank 1 died"
grep -Eqi "rank 1 .*(exited|killed|signal)|process rank 1" "$work/killed.log" || { cat "$work/killed.log"; fail "the lost rank is not named"; }
cp -r "$work/killed" "$work/killed-single"
"${mpi[@]}" "$pre" "${pre_args[@]}" --steps 30 --resume --out "$work/killed" > /dev/null 2> "$work/resumed.log" ||
  { cat "$work/resumed.log"; fail "--resume on 2 ranks"; }
grep -q "resumed from" "$work/resumed.log" || fail "the resume did not load the checkpoint"
same_run "$work/full" "$work/killed" "killed and resumed"
# The same checkpoint continued by one process accumulating the 2 ranks' micro-batches.
"$pre" "${pre_args[@]}" --steps 30 --accum 2 --resume --out "$work/killed-single" 2> "$work/single.log" ||
  { cat "$work/single.log"; fail "--resume of a 2-rank checkpoint in 1 process"; }
same_run "$work/full" "$work/killed-single" "2 ranks resumed in 1 process"

# 4. A rank that hangs: the other waits --dist-timeout seconds, names it, and the job ends.
"${mpi[@]}" "$pre" "${pre_args[@]}" --steps 200 --dist-timeout 4 --out "$work/hung" > /dev/null 2> "$work/hung.log" &
job=$!
victim=$(signal_rank_1 STOP hung 6 "$job")
[ -n "$victim" ] || fail "the run ended before rank 1 could be stopped"
start=$(date +%s)
( sleep 60; kill -9 "$victim" "$job" ) > /dev/null 2>&1 &  # a last resort if the job itself never ends
guard=$!
if wait "$job"; then fail "the job survived a hung rank"; fi
pkill -P "$guard" 2> /dev/null || true
kill "$guard" 2> /dev/null || true
kill -9 "$victim" 2> /dev/null || true
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -lt 40 ] || fail "the job took ${elapsed} s to give up on a hung rank"
grep -q "rank 0 of 2: .*waited 4 s for rank 1" "$work/hung.log" || { cat "$work/hung.log"; fail "the hung rank is not named"; }
# 5. Ranks started with different options (an MPMD launch) are refused, naming the rank, before any step.
mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1 "$pre" "${pre_args[@]}" --steps 3 --out "$work/mixed" : \
  -np 1 "$pre" "${pre_args[@]}" --accum 2 --steps 3 --out "$work/mixed" > /dev/null 2> "$work/mixed.log" && fail "ranks with different options ran"
grep -q "DataParallel: rank 1 has .* parameters and 2 micro-batches per step, rank 0 .* (were the ranks started with different options?)" "$work/mixed.log" ||
  { cat "$work/mixed.log"; fail "different options on the ranks are not named"; }
[ ! -e "$work/mixed/metrics.jsonl" ] || [ ! -s "$work/mixed/metrics.jsonl" ] || fail "a refused job wrote metrics"
echo "data-parallel checks passed"
