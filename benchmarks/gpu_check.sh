#!/usr/bin/env bash
# GPU check of plm's CUDA backend on one NVIDIA H100 / H200, in under 8 minutes:
#   1. configure and build the CUDA targets (Release, sm_90),
#   2. plm_cuda_tests (every CUDA op, layer, objective and optimizer against the CPU),
#   3. a few steps of every example program that takes --device cuda,
#   4. the bf16 training-step benchmarks (T5 at Ankh3-large widths, ESM-2 35M) next to
#      transformers with eager attention, and with SDPA where the installed release has it,
#   5. a summary: PASS / FAIL / SKIP and seconds per stage, ms/step, MFU, the ratio
#      against the peer, peak GPU memory; the exit status is 1 when a stage failed.
#
#   bash benchmarks/gpu_check.sh [build-dir]          (from the repository root; default build-gpu)
#
# Logs go to $OUT when it is set, else to <build-dir>/gpu_check_logs. The stages
# share a time budget (PLM_GPU_CHECK_SECONDS, default 460 s) and each has a cap of
# its own; a stage the budget no longer allows fails with "no time left".
# The peers need python3 with torch and transformers; without them the benchmarks
# run plm alone and the summary says so. PEAK_TFLOPS overrides the dense bf16 peak
# used for MFU (default from the GPU's name: 989 for SXM, 835 for NVL, 756 for PCIe).
# shellcheck disable=SC2317  # functions called through variables and traps
set -u -o pipefail

START=$(date +%s)
DEADLINE=$((START + ${PLM_GPU_CHECK_SECONDS:-460}))
abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
BUILD=$(abspath "${1:-build-gpu}")
LOGS=$(abspath "${OUT:-$BUILD/gpu_check_logs}")
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$LOGS" "$BUILD" || exit 1
# nvcc is often installed outside PATH.
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/plm_gpu_check.XXXXXX") || exit 1  # fresh output directories of the examples
SAMPLER=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2> /dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- bookkeeping
NAMES=() STATUS=() SECS=() NOTES=() FIGURES=()
record() { NAMES+=("$1") STATUS+=("$2") SECS+=("$3") NOTES+=("${4//|//}"); echo "== $1: $2 (${3} s) $4"; }
logname() { echo "${1//[^A-Za-z0-9._-]/_}"; }  # a stage's name as a file name
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Seconds a stage may run: its cap, cut so that <reserve> seconds stay for the stages
# after it; 0 when under 10 s would be left.
stage_limit() {  # stage_limit <cap> <reserve>
  local left=$((DEADLINE - $(date +%s) - $2))
  ((left > $1)) && left=$1
  ((left < 10)) && left=0
  echo "$left"
}

# run <log name> <cap> <reserve> <command...>: the command under timeout (its whole process
# group, the peer included), stdout and stderr in $LOGS/<log name>.log. Sets RC (124: timed
# out, -1: not started for lack of time), T0 and LOG.
run() {
  local name limit
  name=$(logname "$1")
  limit=$(stage_limit "$2" "$3")
  shift 3
  LOG=$LOGS/$name.log T0=$(now)
  if ((limit == 0)); then
    echo "not run: the time budget was spent" > "$LOG"
    RC=-1
    return
  fi
  printf '$ %s\n(time limit %s s)\n' "$*" "$limit" > "$LOG"
  timeout --kill-after=5 "$limit" "$@" >> "$LOG" 2>&1
  RC=$?
  echo "(exit status $RC)" >> "$LOG"
}

# What a failed RC means, for the summary.
why() {
  case $RC in
    -1) echo "no time left" ;;
    124 | 137) echo "timed out" ;;
    *) echo "exit status $RC" ;;
  esac
}

# Targets this build directory defines (examples need CLI11, benchmarks OpenBLAS).
has_target() { grep -q "/$1\.dir\$" "$BUILD/CMakeFiles/TargetDirectories.txt" 2> /dev/null; }

# ---------------------------------------------------------------- GPU memory sampler
# Every ~0.3 s: "S <peer running 0|1> <MiB used on the GPU>" and, where nvidia-smi can see
# the processes (often not inside a container), "A <peer> <pid> <MiB> <name>" per process.
# The peer is recognised by its command line (the arguments the benchmark appends).
sampler_loop() {
  local peer
  while :; do
    peer=0
    pgrep -f -- '_hf\.py.*--warmup' > /dev/null 2>&1 && peer=1
    echo "S $peer $(timeout 5 nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2> /dev/null | head -n 1)"
    timeout 5 nvidia-smi --query-compute-apps=pid,used_memory,process_name --format=csv,noheader,nounits 2> /dev/null |
      awk -F', *' -v p="$peer" 'NF >= 3 && $2 ~ /^[0-9]+$/ { n = split($3, a, "/"); print "A", p, $1, $2, a[n] }'
    sleep 0.25
  done
}
sampler_start() {  # the first sample, the idle GPU, taken before the program starts
  echo "S 0 $(timeout 5 nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2> /dev/null | head -n 1)" > "$1"
  sampler_loop >> "$1" 2> /dev/null &
  SAMPLER=$!
}
sampler_stop() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2> /dev/null && wait "$SAMPLER" 2> /dev/null
  SAMPLER=""
}

# Peak memory of plm and of the peer from a sampler file: per process where nvidia-smi
# lists processes; else from the GPU's total: plm's rise over the idle GPU before the peer
# starts, the peer's rise over that while it runs (plm keeps its buffers meanwhile).
memory_of() {
  awk '
    $1 == "S" && $3 ~ /^[0-9]+$/ {
      if (!n++) base = $3
      if ($2 == 1) { started = 1; if ($3 > peer_tot) peer_tot = $3 }
      else if (!started) { if ($3 > plm_tot) plm_tot = $3; plm_last = $3 }
    }
    $1 == "A" {
      if (!($3 in role)) role[$3] = ($5 ~ /python/ || $2 == 1) ? "peer" : "plm"
      if (role[$3] == "plm" && $4 > plm_app) plm_app = $4
      if (role[$3] == "peer" && $4 > peer_app) peer_app = $4
    }
    END {
      if (plm_app) plm = plm_app " MiB (process)"; else if (n) plm = (plm_tot - base) " MiB (GPU total rise)"; else plm = "not measured (nvidia-smi gave no figure)"
      if (peer_app) peer = peer_app " MiB (process)"; else if (started) peer = (peer_tot - plm_last) " MiB (GPU total rise)"; else peer = "-"
      print plm "\t" peer
    }' "$1"
}

# ---------------------------------------------------------------- 0. the machine
{
  echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ), budget $((DEADLINE - START)) s, $(nproc) cores"
  git rev-parse HEAD 2> /dev/null && git status --short 2> /dev/null | head -n 40
  command -v nvcc > /dev/null && nvcc --version | tail -n 2
  cmake --version | head -n 1
  timeout 20 nvidia-smi
} > "$LOGS/environment.log" 2>&1
T0=$(now)
if timeout 20 nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$LOGS/nvidia_smi_start.csv" 2>&1; then
  GPU=$(sed -n 2p "$LOGS/nvidia_smi_start.csv" | cut -d, -f1)
  record "gpu" PASS "$(since "$T0")" "$GPU"
else
  GPU="none"
  record "gpu" FAIL "$(since "$T0")" "nvidia-smi failed (log: nvidia_smi_start.csv)"
fi
case $GPU in
  *PCIe*) PEAK=${PEAK_TFLOPS:-756} ;;
  *NVL*) PEAK=${PEAK_TFLOPS:-835} ;;
  *) PEAK=${PEAK_TFLOPS:-989} ;;
esac

# The peers' Python, probed while the build runs: imports, CUDA, and which models take
# attn_implementation="sdpa". T5 gained SDPA only in recent transformers releases
# (huggingface/transformers#47014); older ones are eager-only and the T5 SDPA run is
# skipped there. ESM has had SDPA for longer. Where neither is set, the peer runs
# transformers' default: recent releases pick SDPA themselves, so the eager runs ask
# for eager explicitly.
probe_python() {
  timeout 120 python3 -c 'import torch, transformers' || { echo "PEERS=0"; return; }
  timeout 120 python3 - << 'EOF'
import torch, transformers
from transformers import EsmForMaskedLM, T5ForConditionalGeneration
print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())
print("PEERS=%d" % torch.cuda.is_available())
print("SDPA_T5=%d" % bool(getattr(T5ForConditionalGeneration, "_supports_sdpa", False)))
print("SDPA_ESM=%d" % bool(getattr(EsmForMaskedLM, "_supports_sdpa", False)))
EOF
  timeout 30 python3 -m pip show torch transformers 2> /dev/null | grep -E '^(Name|Version|Location):'
}
probe_python > "$LOGS/python_probe.log" 2>&1 &
PROBE=$!

# ---------------------------------------------------------------- 1. configure and build
TARGETS=(plm_cuda_tests ankh3_pretrain esm2_pretrain ankh3_embed ankh3_complete nm_finetune t5_train_step esm_train_step)
CMAKE_ARGS=(-S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
            -DPLM_BUILD_TESTS=ON -DPLM_BUILD_EXAMPLES=ON)
# Ninja for a new build directory where it is installed (an existing one keeps its generator).
if [ ! -f "$BUILD/CMakeCache.txt" ] && command -v ninja > /dev/null; then CMAKE_ARGS+=(-G Ninja); fi
CONFIGURE_T0=$(now)
run configure 120 300 cmake "${CMAKE_ARGS[@]}" -DPLM_BUILD_BENCHMARKS=ON
CONFIG_NOTE=""
if ((RC > 0)) && grep -q "benchmarks/CMakeLists.txt" "$LOG"; then
  # The benchmarks need OpenBLAS; without it the tests and examples still build.
  mv "$LOG" "$LOGS/configure_with_benchmarks.log"
  run configure 120 300 cmake "${CMAKE_ARGS[@]}" -DPLM_BUILD_BENCHMARKS=OFF
  CONFIG_NOTE="benchmarks left out (configure_with_benchmarks.log)"
fi
if ((RC == 0)) && [ -z "$CONFIG_NOTE" ]; then
  record "configure" PASS "$(since "$CONFIGURE_T0")" "$(grep -o 'NCCL for the CUDA backend: [A-Z]*' "$LOG" | head -n 1)"
else
  record "configure" FAIL "$(since "$CONFIGURE_T0")" "${CONFIG_NOTE:-$(why)} (configure.log)"
fi

BUILT=()
for t in "${TARGETS[@]}"; do has_target "$t" && BUILT+=("$t"); done
bin_of() {  # where a target's program is written
  case $1 in
    plm_cuda_tests) echo "$BUILD/tests/$1" ;;
    t5_train_step | esm_train_step) echo "$BUILD/benchmarks/$1" ;;
    *) echo "$BUILD/examples/$1/$1" ;;
  esac
}
if ((${#BUILT[@]} > 0)); then
  # Programs removed first, so a target that fails to compile leaves no stale program behind
  # (the objects stay: a rebuild only links them). Keep going past a failing target.
  for t in "${BUILT[@]}"; do rm -f "$(bin_of "$t")"; done
  case $(grep -s '^CMAKE_GENERATOR:INTERNAL=' "$BUILD/CMakeCache.txt") in
    *Ninja*) KEEP_GOING=(-k 0) ;;
    *) KEEP_GOING=(-k) ;;
  esac
  run build 360 100 cmake --build "$BUILD" -j"$(nproc)" --target "${BUILT[@]}" -- "${KEEP_GOING[@]}"
  MISSING=()
  for t in "${TARGETS[@]}"; do [ -x "$(bin_of "$t")" ] || MISSING+=("$t"); done
  if ((RC == 0)) && ((${#MISSING[@]} == 0)); then
    record "build" PASS "$(since "$T0")" "${#BUILT[@]} targets, -j$(nproc)"
  else
    record "build" FAIL "$(since "$T0")" "$(why); not built: ${MISSING[*]:-none} (build.log)"
  fi
else
  record "build" FAIL 0 "no target configured"
fi

# ---------------------------------------------------------------- 2. cross-backend tests
BIN=$(bin_of plm_cuda_tests)
if [ -x "$BIN" ]; then
  run plm_cuda_tests 150 60 "$BIN"
  SUMMARY_LINE=$(grep -E '^\[doctest\] (test cases|assertions):' "$LOG" | sed 's/^\[doctest\] //' | tr -s ' ' | paste -sd ';' -)
  if ((RC == 0)); then
    record "plm_cuda_tests" PASS "$(since "$T0")" "$SUMMARY_LINE"
  elif ((RC == 77)); then
    record "plm_cuda_tests" FAIL "$(since "$T0")" "no CUDA device visible (exit 77)"
  else
    record "plm_cuda_tests" FAIL "$(since "$T0")" "$(why); $SUMMARY_LINE (plm_cuda_tests.log)"
  fi
else
  record "plm_cuda_tests" FAIL 0 "not built"
fi

# ---------------------------------------------------------------- 3. example programs on the GPU
# Each runs a few steps into a fresh directory under $WORK; its log must show the GPU
# ("plm: running on ...") and a check function its outputs. Reserve: the two eager benchmarks.
EX_RESERVE=100
# example <stage> <program> <check function> <args...>
example() {
  local stage=$1 prog=$2 check=$3 bin
  shift 3
  bin=$(bin_of "$prog")
  if [ ! -x "$bin" ]; then
    record "$stage" FAIL 0 "not built"
    return
  fi
  run "$stage" 60 "$EX_RESERVE" "$bin" --device cuda "$@"
  if ((RC != 0)); then
    record "$stage" FAIL "$(since "$T0")" "$(why) ($(logname "$stage").log)"
  elif ! grep -q "plm: running on" "$LOG"; then
    record "$stage" FAIL "$(since "$T0")" "did not say it ran on the GPU"
  elif ! "$check"; then
    record "$stage" FAIL "$(since "$T0")" "outputs missing ($check)"
  else
    record "$stage" PASS "$(since "$T0")" "$(grep -m 1 -o 'plm: running on [^(]*' "$LOG" | sed 's/plm: running on //; s/ *$//')"
  fi
}
STEPS=${PLM_GPU_CHECK_STEPS:-20}  # optimizer steps of the pre-training examples
steps_logged() { [ "$(grep -c '"split":"train"' "$1/metrics.jsonl" 2> /dev/null)" = "$STEPS" ] && [ -s "$1/model/model.safetensors" ]; }
check_ankh3() { steps_logged "$WORK/ankh3"; }
check_esm2() { steps_logged "$WORK/esm2"; }
check_embed_t5() { grep -q '20 proteins' "$LOG" && [ -s "$WORK/embed_t5.safetensors" ]; }
check_embed_esm() { grep -q '20 proteins' "$LOG" && [ -s "$WORK/embed_esm.safetensors" ]; }
check_complete() { grep -q '^3 proteins, mean identity' "$LOG" && [ "$(grep -c '^>' "$WORK/complete.fasta")" = 3 ]; }
check_nm() { grep -q '^nm ' "$LOG" && [ -s "$WORK/nm/results.json" ]; }

# Pre-training on the bundled data (the programs' defaults): Ankh3 multi-task and ESM-2 masked LM.
# Ankh3 with packed batches (the padded path runs in plm_cuda_tests and in ESM-2 here).
example "example ankh3_pretrain" ankh3_pretrain check_ankh3 \
  --steps "$STEPS" --eval-every 10 --checkpoint-every 10 --valid-max 32 --packed --out "$WORK/ankh3"
example "example esm2_pretrain" esm2_pretrain check_esm2 \
  --steps "$STEPS" --eval-every 10 --checkpoint-every 10 --valid-max 32 --out "$WORK/esm2"
cp "$WORK/ankh3/metrics.jsonl" "$LOGS/ankh3_pretrain_metrics.jsonl" 2> /dev/null
cp "$WORK/esm2/metrics.jsonl" "$LOGS/esm2_pretrain_metrics.jsonl" 2> /dev/null
# Embeddings and completions from the models those runs wrote (a T5 and an ESM-2 encoder).
zcat -f examples/data/swissprot_sample.fasta.gz | awk '/^>/ { n++ } n <= 20' > "$WORK/20.fasta"
if [ -d "$WORK/ankh3/model" ]; then
  example "example ankh3_embed (T5)" ankh3_embed check_embed_t5 \
    --model "$WORK/ankh3/model" --fasta "$WORK/20.fasta" --out "$WORK/embed_t5.safetensors" --per-residue
  example "example ankh3_complete" ankh3_complete check_complete \
    --model "$WORK/ankh3/model" --fasta "$WORK/20.fasta" --count 3 --strategy beam --beam 4 --out "$WORK/complete.fasta"
else
  record "example ankh3_embed (T5)" FAIL 0 "no model (ankh3_pretrain failed)"
  record "example ankh3_complete" FAIL 0 "no model (ankh3_pretrain failed)"
fi
if [ -d "$WORK/esm2/model" ]; then
  example "example ankh3_embed (ESM-2)" ankh3_embed check_embed_esm \
    --model "$WORK/esm2/model" --fasta "$WORK/20.fasta" --out "$WORK/embed_esm.safetensors"
else
  record "example ankh3_embed (ESM-2)" FAIL 0 "no model (esm2_pretrain failed)"
fi
# Negative-mining fine-tuning, both arms, one epoch on a slice of the bundled localisation sample.
example "example nm_finetune" nm_finetune check_nm \
  --limit 400 --min-class-size 20 --max-length 64 --d-model 32 --heads 2 --d-ff 64 --layers 1 --readout 16 \
  --batch 16 --epochs 1 --out "$WORK/nm"

# ---------------------------------------------------------------- 4. training-step benchmarks
wait "$PROBE" 2> /dev/null
PEERS=0 SDPA_T5=0 SDPA_ESM=0
eval "$(grep -E '^(PEERS|SDPA_T5|SDPA_ESM)=[01]$' "$LOGS/python_probe.log")"
if ((PEERS)); then
  PEER_NOTE=$(grep -m 1 '^torch ' "$LOGS/python_probe.log")
else
  PEER_NOTE="peers skipped: python3 cannot import torch and transformers, or torch sees no GPU (python_probe.log)"
fi
echo "== peers: $PEER_NOTE"

T5_ARGS=(--device cuda --gpu-math bf16 --config ankh3-large-4x2 --src 512 --tgt 512 --adamw --peak-tflops "$PEAK")
ESM_ARGS=(--device cuda --gpu-math bf16 --config esm2-35m --len 512 --adamw)
LINEBUF=()
command -v stdbuf > /dev/null && LINEBUF=(stdbuf -oL)  # the program's lines in order with the peer's

# bench <stage> <program> <attn: eager|sdpa|none> <cap> <reserve> <args...>
bench() {
  local stage=$1 prog=$2 attn=$3 cap=$4 reserve=$5 key bin peer_args mem fig
  shift 5
  key=$(logname "$stage")
  bin=$(bin_of "$prog")
  [ -x "$bin" ] || { record "$stage" FAIL 0 "not built"; return; }
  if [ "$attn" = none ]; then peer_args=(--no-peer); else peer_args=(--peer "python3 benchmarks/${prog}_hf.py --attn $attn"); fi
  sampler_start "$LOGS/$key.memory"
  run "$stage" "$cap" "$reserve" "${LINEBUF[@]}" "$bin" "$@" "${peer_args[@]}"
  sampler_stop
  # Figures: s/step (ms), MFU (printed by t5_train_step; for esm_train_step from GFLOP/s and the peak).
  fig=$(awk -F'|' -v peak="$PEAK" '
    function ms(s) { return sprintf("%.1f", s * 1000) }
    function mfu(row) { return row[6] ~ /%/ ? row[6] : sprintf("%.1f%%", row[5] / (peak * 10)) }
    $2 ~ /^ plm $/ { split($0, p, "|"); plm = ms(p[3]); plm_mfu = mfu(p) }
    $2 ~ /^ HF transformers/ { split($0, h, "|"); hf = ms(h[3]); hf_mfu = mfu(h) }
    /^speed ratio plm \/ HF:/ { ratio = $0; sub(/.*: /, "", ratio) }
    /^peer: attention/ { a = $0; sub(/^peer: attention /, "", a); att = a; sub(/;.*/, "", att)
                         tm = a; if (sub(/.*\(torch.cuda\) /, "", tm)) torch_mem = tm }
    function d(x) { return x == "" ? "-" : x }
    END { gsub(/ /, "", plm_mfu); gsub(/ /, "", hf_mfu)
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s", d(plm), d(plm_mfu), d(hf), d(hf_mfu), d(ratio), d(att), d(torch_mem) }' "$LOG")
  mem=$(memory_of "$LOGS/$key.memory")
  FIGURES+=("$stage"$'\t'"$fig"$'\t'"$mem")
  if ((RC != 0)); then
    record "$stage" FAIL "$(since "$T0")" "$(why) ($key.log)"
  elif ! grep -q '^| plm |' "$LOG"; then
    record "$stage" FAIL "$(since "$T0")" "no plm figure ($key.log)"
  elif [ "$attn" != none ] && ! grep -q '^speed ratio' "$LOG"; then
    record "$stage" FAIL "$(since "$T0")" "the peer failed ($key.log)"
  else
    record "$stage" PASS "$(since "$T0")" "$(grep -m 1 '^config' "$LOG")"
  fi
}

if ((PEERS)); then MODE=eager LABEL="+ HF eager"; else MODE=none LABEL="(no peer)"; fi
bench "t5_train_step bf16 $LABEL" t5_train_step "$MODE" 150 40 "${T5_ARGS[@]}"
bench "esm_train_step bf16 $LABEL" esm_train_step "$MODE" 120 0 "${ESM_ARGS[@]}"
# SDPA peers, where the installed transformers has SDPA for the model.
for m in t5 esm; do
  stage="${m}_train_step bf16 + HF sdpa"
  if [ $m = t5 ]; then sdpa=$SDPA_T5; else sdpa=$SDPA_ESM; fi
  if ((!PEERS)); then
    record "$stage" SKIP 0 "no peer (python3 with torch and transformers on CUDA)"
  elif ((!sdpa)); then
    record "$stage" SKIP 0 "this transformers has no SDPA attention for the model"
  elif [ $m = t5 ]; then
    bench "$stage" t5_train_step sdpa 150 0 "${T5_ARGS[@]}"
  else
    bench "$stage" esm_train_step sdpa 120 0 "${ESM_ARGS[@]}"
  fi
done

# ---------------------------------------------------------------- 5. summary
timeout 10 nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$LOGS/nvidia_smi_end.csv" 2>&1
FAILED=0
for st in "${STATUS[@]}"; do [ "$st" = FAIL ] && FAILED=1; done
{
  echo
  echo "# plm GPU check: $GPU, $(($(date +%s) - START)) s in all"
  echo
  echo "nvidia-smi at the start and at the end:"
  sed 's/^/    /' "$LOGS/nvidia_smi_start.csv"
  sed '1d; s/^/    /' "$LOGS/nvidia_smi_end.csv"
  echo "peers: $PEER_NOTE"
  echo "logs: $LOGS"
  echo
  echo "| stage | result | seconds | notes |"
  echo "|---|---|---:|---|"
  for i in "${!NAMES[@]}"; do
    echo "| ${NAMES[$i]} | ${STATUS[$i]} | ${SECS[$i]} | ${NOTES[$i]} |"
  done
  echo
  echo "Training steps (bf16 GEMMs, AdamW included, shapes in the stage notes above; MFU against"
  echo "$PEAK TFLOP/s dense bf16, for esm_train_step computed here from its GFLOP/s):"
  echo
  echo "| run | plm ms/step | plm MFU | HF ms/step | HF MFU | speed ratio plm / HF | HF attention | plm peak GPU memory | HF peak GPU memory (nvidia-smi) | HF peak (torch.cuda) |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"
  for f in "${FIGURES[@]}"; do
    IFS=$'\t' read -r stage plm plm_mfu hf hf_mfu ratio att tmem pmem hmem <<< "$f"
    echo "| $stage | ${plm:--} | ${plm_mfu:--} | ${hf:--} | ${hf_mfu:--} | ${ratio:--} | ${att:--} | ${pmem:--} | ${hmem:--} | ${tmem:--} |"
  done
  echo
  echo "Peak GPU memory: sampled from nvidia-smi every ~0.3 s, device memory held (CUDA context and"
  echo "allocator caches included): per process where nvidia-smi lists processes, else the rise of the"
  echo "GPU's total (plm: over the idle GPU; the peer: over plm's, which stays allocated while the peer"
  echo "runs). torch.cuda: the peer's own max_memory_allocated / max_memory_reserved."
  command -v pgrep > /dev/null || echo "(no pgrep here: the GPU total rises do not tell plm and the peer apart)"
  echo "Speed ratio plm / HF: the peer's time per step over plm's (above 1: plm is faster)."
  if ((FAILED)); then echo "RESULT: FAIL"; else echo "RESULT: PASS"; fi
} | tee "$LOGS/summary.md"
exit "$FAILED"
