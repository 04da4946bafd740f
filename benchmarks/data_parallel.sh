#!/usr/bin/env bash
# Data-parallel scaling of ankh3_pretrain on real batches: the same global
# batch (two micro-batches per step under --token-budget, from the bundled
# Swiss-Prot families) trained by 1 process x 1 thread accumulating both, and
# by 2 MPI ranks x 1 thread taking one each. Both runs see the same batches
# and end with the same weights (tests/data_parallel_mpi.sh), so the step
# times compare like for like.
#
#   benchmarks/data_parallel.sh <ankh3_pretrain> <steps> <work dir> [model options...]
#   e.g. benchmarks/data_parallel.sh build/examples/ankh3_pretrain/ankh3_pretrain 40 /tmp/dp
#        benchmarks/data_parallel.sh build/examples/ankh3_pretrain/ankh3_pretrain 16 /tmp/dp \
#          --d-model 512 --d-ff 1280 --heads 8 --d-kv 64 --layers 6 --decoder-layers 6
#
# Prints the median step time (min-max) of each, the speed-up, the scaling
# efficiency (speed-up / 2) and the share of the 2-rank step spent in
# collectives (sync_s: reduce-scatter, norm, all-gather, waits for the slower
# rank included): what overlapping communication with the backward could save
# at most. The first 5 steps are warm-up and not counted. Set
# OPENBLAS_CORETYPE where OpenBLAS misdetects the CPU (the program warns).
set -euo pipefail
exe=$1 steps=$2 work=$3
shift 3
rm -rf "$work" && mkdir -p "$work"
common=(--steps "$steps" --eval-every 100000 --checkpoint-every 100000 --threads 1 --seed 11 "$@")
"$exe" "${common[@]}" --accum 2 --out "$work/one" 2> "$work/one.log" || { cat "$work/one.log"; exit 1; }
mpirun --oversubscribe --allow-run-as-root --bind-to core -np 2 "$exe" "${common[@]}" --out "$work/two" > /dev/null 2> "$work/two.log" ||
  { cat "$work/two.log"; exit 1; }
python3 - "$work" <<'EOF'
import json, statistics, sys
work = sys.argv[1]
def steps(path):
    rows = [json.loads(l) for l in open(path) if '"split":"train"' in l][5:]
    return [r["tokens"] / r["tokens_per_s"] for r in rows], [r.get("sync_s", 0.0) for r in rows], rows
t1, _, r1 = steps(f"{work}/one/metrics.jsonl")
t2, s2, r2 = steps(f"{work}/two/metrics.jsonl")
assert [r["loss"] for r in r1] == [r["loss"] for r in r2], "the two runs trained differently"
m1, m2 = statistics.median(t1), statistics.median(t2)
tok = statistics.median(r["tokens"] for r in r1)
print(f"steps counted: {len(t1)}; median tokens per step (input + target, both micro-batches): {tok:.0f}")
print(f"1 rank  x 1 thread, 2 micro-batches: {m1*1e3:8.1f} ms/step (min {min(t1)*1e3:.1f}, max {max(t1)*1e3:.1f})  {tok/m1:8.0f} tok/s")
print(f"2 ranks x 1 thread, 1 micro-batch:   {m2*1e3:8.1f} ms/step (min {min(t2)*1e3:.1f}, max {max(t2)*1e3:.1f})  {tok/m2:8.0f} tok/s")
print(f"speed-up {m1/m2:.3f}x, scaling efficiency {m1/m2/2*100:.1f}%")
print(f"2 ranks: collectives and waits {statistics.median(s2)*1e3:.2f} ms/step = {statistics.median(s2)/m2*100:.1f}% of the step")
EOF
grep -h "M parameters\|optimizer state" "$work/two.log" | sed 's/^/  /'
