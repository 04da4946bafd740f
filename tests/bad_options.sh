#!/usr/bin/env bash
# Every bad command-line value, and every bad size in a model's config.json, is
# refused with a clear error: a non-zero exit below 128 (no signal, no core
# dump), stderr naming the option (or the config key), and for a bad option
# nothing written, because the check runs while the command line is parsed.
# Needs no trained model: the options fail before any work, and the model
# directory is a test fixture.
#   bad_options.sh <ankh3_pretrain> <ankh3_embed> <ankh3_complete> <nm_finetune> <examples/data> <model dir> <work dir>
set -uo pipefail
pretrain=$1 embed=$2 complete=$3 nm=$4 data=$5 model=$6 work=$7
rm -rf "$work" && mkdir -p "$work"
fasta=$data/swissprot_sample.fasta.gz
failures=0 cases=0

# refused <text stderr must contain> <nothing|any: may the program write?> <program> <args...>
refused() {
  local want=$1 writes=$2
  shift 2
  cases=$((cases + 1))
  rm -rf "$work/out"
  timeout 120 "$@" > "$work/stdout" 2> "$work/stderr" < /dev/null
  local rc=$? why=
  if [ "$rc" -eq 0 ]; then why="accepted (exit 0)"
  elif [ "$rc" -eq 124 ]; then why="accepted: still running after 120 s"
  elif [ "$rc" -ge 128 ]; then why="killed by signal $((rc - 128))"
  elif ! grep -qF -- "$want" "$work/stderr"; then why="the error does not say '$want'"
  elif [ "$writes" = nothing ] && [ -e "$work/out" ]; then why="refused only after writing $work/out"
  fi
  if [ -n "$why" ]; then
    failures=$((failures + 1))
    echo "FAIL: $(basename "$1") ${*:2}: $why (exit $rc)"
    sed 's/^/    /' "$work/stderr" | head -5
  fi
}

# Model directories whose config.json holds a bad value (the fixture's, one field changed).
bad_config() {  # <name> <sed expression>
  mkdir -p "$work/$1"
  sed -E "$2" "$model/config.json" > "$work/$1/config.json"
  cp "$model/model.safetensors" "$work/$1/"
}
mkdir -p "$work/gpt2_backbone" && echo '{"model_type": "gpt2"}' > "$work/gpt2_backbone/config.json"
bad_config huge_d_model 's/"d_model": [0-9]+/"d_model": 4611686018427387904/'
bad_config huge_d_ff 's/"d_ff": [0-9]+/"d_ff": 1000000000000/'
bad_config many_heads 's/"num_heads": [0-9]+/"num_heads": 100000/'
bad_config string_d_ff 's/"d_ff": [0-9]+/"d_ff": "24"/'
bad_config huge_product 's/"d_model": [0-9]+/"d_model": 1048576/; s/"d_ff": [0-9]+/"d_ff": 1048576/'

# --- nm_finetune -------------------------------------------------------------
n() { refused "$1" "${3:-nothing}" "$nm" --out "$work/out" $2; }
n "--heads: 0 is out of range [1, 4096]" "--heads 0"
n "--heads" "--heads -2"
n "--readout: 0 is out of range" "--readout 0"
n "--lr: must be positive, got 0" "--lr 0"
n "--lr: must be positive, got -1" "--lr -1"
n "--lr: must be positive, got nan" "--lr nan"
n "--lr" "--lr inf"
n "--threads: must be >= 0, got -3" "--threads -3"
n "--clip: must be >= 0, got -1" "--clip -1"
n "--d-model: 0 is out of range" "--d-model 0"
n "--d-model: 130 must be a multiple of --heads 4" "--d-model 130"
n "--d-ff: 1000000000000 is out of range [1, 1048576]" "--d-ff 1000000000000"
n "--layers: 0 is out of range [1, 1024]" "--layers 0"
n "--layers" "--layers 5000"
n "--valid-fraction: 0 is outside (0, 1)" "--valid-fraction 0"
n "--valid-fraction: 1 is outside (0, 1)" "--valid-fraction 1"
n "--test-fraction: -0.1 is outside (0, 1)" "--test-fraction -0.1"
n "--valid-fraction: 0.5 and --test-fraction 0.5 leave no proteins for training" "--valid-fraction 0.5 --test-fraction 0.5"
n "--min-class-size: must be >= 0, got -1" "--min-class-size -1"
n "--max-length: must be >= 0, got -1" "--max-length -1"
n "--accum: must be >= 1, got 0" "--accum 0"
n "--dist-timeout: must be positive, got 0" "--dist-timeout 0"
n "--limit: must be >= 0, got -5" "--limit -5"
n "--arms: unknown 'all' (both, baseline or nm)" "--arms all"
n "--loss: unknown 'mse' (squared, l1, kl or entropy-hinge)" "--loss mse"
n "--lambda: must be >= 0, got -0.5" "--lambda -0.5"
n "--margin: must be >= 0" "--margin -1"
n "--negatives: 0 is out of range" "--negatives 0"
n "--train-fasta requires --valid-fasta" "--train-fasta $fasta"
n "requires --train-fasta" "--test-fasta $fasta --valid-fasta $fasta"
n "--split-table: and --train-fasta / --valid-fasta / --test-fasta both give the split" "--split-table $data/swissprot_sample_labels.tsv --train-fasta $fasta --valid-fasta $fasta --test-fasta $fasta"
n "--tokenize: unknown 'chars'" "--tokenize chars"
n "model_type 'gpt2' is not a family plm builds as an encoder" "--backbone $work/gpt2_backbone"
n "--negatives-from: unknown 'random' (label or hard)" "--negatives-from random"
n "--hard-pool: 0 is out of range" "--hard-pool 0"
n "--backbone-lr-mult: must be >= 0" "--backbone-lr-mult -1"
n "--weight-decay: must be >= 0" "--weight-decay -1"
n "--epochs: must be >= 1, got 0" "--epochs 0"
n "--batch: 0 is out of range" "--batch 0"
n "--patience: must be >= 1, got 0" "--patience 0"
n "--seed: must be >= 0, got -1" "--seed -1"
n "--device: unknown 'tpu' (cpu or cuda)" "--device tpu"
n "--gpu: must be >= 0, got -1" "--gpu -1"
n "--gpu-math: unknown 'fp16' (fp32, tf32 or bf16)" "--gpu-math fp16"
n "--vocab: 'ankh2' is neither one of ankh3, ankh nor an existing file or directory" "--vocab ankh2"
n "--fasta: File does not exist" "--fasta $work/none.fasta"
n "--labels: File does not exist" "--labels $work/none.tsv"
n "--clusters: File does not exist" "--clusters $work/none.tsv"
n "--backbone: Directory does not exist" "--backbone $work/none"
n "Could not convert: --heads = 1.5" "--heads 1.5"
# a backbone whose config.json is out of range: the file and the key named, no allocation attempted
n "huge_d_model/config.json: field 'd_model' = 4611686018427387904 is out of range [1, 1048576]" "--backbone $work/huge_d_model" any
n "huge_d_ff/config.json: field 'd_ff' = 1000000000000 is out of range [1, 1048576]" "--backbone $work/huge_d_ff" any
n "string_d_ff/config.json: field 'd_ff' must be an integer, got string" "--backbone $work/string_d_ff" any

# --- ankh3_pretrain ----------------------------------------------------------
p() { refused "$1" "${3:-nothing}" "$pretrain" --out "$work/out" $2; }
p "--token-budget: must be >= 1, got 0" "--token-budget 0"
p "--lr: must be positive, got 0" "--lr 0"
p "--lr: must be positive, got -1" "--lr -1"
p "--steps: must be >= 1, got 0" "--steps 0"
p "--accum: must be >= 1, got 0" "--accum 0"
p "--dist-timeout: must be positive, got -5" "--dist-timeout -5"
p "--dist-timeout" "--dist-timeout soon"
p "--eval-every: must be >= 1" "--eval-every 0"
p "--checkpoint-every: must be >= 1" "--checkpoint-every 0"
p "--warmup: must be >= 0, got -1" "--warmup -1"
p "--weight-decay: must be >= 0" "--weight-decay -0.1"
p "--clip: must be >= 0, got -1" "--clip -1"
p "--bias-lr: must be >= 0" "--bias-lr -1"
p "--max-rows: must be >= 0" "--max-rows -1"
p "--window: must be >= 0" "--window -1"
p "--threads: must be >= 0, got -3" "--threads -3"
p "--seed: must be >= 0, got -1" "--seed -1"
p "--mask-probs: 1.5 is outside (0, 1)" "--mask-probs 0.1,1.5"
p "--mask-probs: 0 is outside (0, 1)" "--mask-probs 0"
p "--mean-span: must be >= 1, got 0.5" "--mean-span 0.5"
p "--split-min: 0 is outside (0, 1)" "--split-min 0"
p "--split-max: 1 is outside (0, 1)" "--split-max 1"
p "--split-min: 0.7 exceeds --split-max 0.3" "--split-min 0.7 --split-max 0.3"
p "--valid-fraction: 1 is outside [0, 1)" "--valid-fraction 1"
p "--valid-fraction: 0 holds nothing out" "--valid-fraction 0"
p "--valid-max: must be >= 1, got 0" "--valid-max 0"
p "--min-length: must be >= 0" "--min-length -1"
p "--max-length: must be >= 0" "--max-length -1"
p "--min-length: 200 exceeds --max-length 100" "--min-length 200 --max-length 100"
p "--pool: must be >= 1, got 0" "--pool 0"
p "--too-long: unknown 'crop' (skip, crop-random, crop-start or error)" "--too-long crop"
p "--rare: unknown 'drop' (keep, unk or error)" "--rare drop"
p "--optimizer: unknown 'adam' (adamw, adafactor or adafactor-relative)" "--optimizer adam"
p "--schedule: unknown 'step' (constant, linear, cosine or inverse-sqrt)" "--schedule step"
p "--model: unknown 'huge'" "--model huge"
p "--nlu-mix: must be >= 0" "--nlu-mix -1"
p "--s2s-mix: must be >= 0" "--s2s-mix -1"
p "--nlu-mix: 0 with --s2s-mix 0" "--nlu-mix 0 --s2s-mix 0"
p "--nlu-weight: must be >= 0" "--nlu-weight -1"
p "--s2s-weight: must be >= 0" "--s2s-weight -1"
p "--nlu-weight: 0 with --s2s-weight 0" "--nlu-weight 0 --s2s-weight 0"
p "--label-smoothing: 1 is outside [0, 1)" "--label-smoothing 1"
p "--d-model: -1 is out of range [0, 1048576]" "--d-model -1"
p "--d-model: 4611686018427387904 is out of range [0, 1048576]" "--d-model 4611686018427387904"
p "--d-ff: 1000000000000 is out of range [0, 1048576]" "--d-ff 1000000000000"
p "--heads: 5000 is out of range [0, 4096]" "--heads 5000"
p "--d-kv: 2000000 is out of range [0, 1048576]" "--d-kv 2000000"
p "--layers: 2000 is out of range [0, 1024]" "--layers 2000"
p "--decoder-layers: -1 is out of range [0, 1024]" "--decoder-layers -1"
p "T5Config: d_kv * num_heads = 1024 * 4096 = 4194304 exceeds 1048576" "--heads 4096 --d-kv 1024"
p "parameters exceed 2^40" "--d-model 1048576 --d-ff 1048576"
p "--device: unknown 'tpu' (cpu or cuda)" "--device tpu"
p "--gpu-math: unknown 'x'" "--gpu-math x"
p "--vocab: '$work/none.json' is neither one of ankh3, ankh nor an existing file or directory" "--vocab $work/none.json"
p "--train: File does not exist" "--train $work/none.fasta"
p "--valid: File does not exist" "--valid $work/none.fasta"
p "--init: Directory does not exist" "--init $work/none"
p "huge_d_ff/config.json: field 'd_ff' = 1000000000000 is out of range [1, 1048576]" "--init $work/huge_d_ff" any
p "many_heads/config.json: field 'num_heads' = 100000 is out of range [1, 4096]" "--init $work/many_heads" any
p "huge_product/config.json: T5Config:" "--init $work/huge_product" any

# --- ankh3_embed -------------------------------------------------------------
e() { refused "$1" "${3:-nothing}" "$embed" --model "${4:-$model}" --fasta "$fasta" --out "$work/out" $2; }
e "--token-budget: must be >= 1, got 0" "--token-budget 0"
e "--token-budget: must be >= 1, got -5" "--token-budget -5"
e "--prefix: unknown 'cls' (auto, nlu, s2s or none)" "--prefix cls"
e "--max-length: must be >= 0, got -1" "--max-length -1"
e "--threads: must be >= 0, got -3" "--threads -3"
e "--device: unknown 'tpu' (cpu or cuda)" "--device tpu"
e "--gpu: must be >= 0" "--gpu -1"
e "--vocab: 'ankh2' is neither" "--vocab ankh2"
e "--model: Directory does not exist" "" nothing "$work/none"
refused "--fasta: File does not exist" nothing "$embed" --model "$model" --fasta "$work/none.fasta" --out "$work/out"
e "huge_d_model/config.json: field 'd_model' = 4611686018427387904 is out of range" "" any "$work/huge_d_model"
e "huge_d_ff/config.json: field 'd_ff' = 1000000000000 is out of range [1, 1048576]" "" any "$work/huge_d_ff"
e "string_d_ff/config.json: field 'd_ff' must be an integer, got string \"24\"" "" any "$work/string_d_ff"

# --- ankh3_complete ----------------------------------------------------------
c() { refused "$1" "${3:-nothing}" "$complete" --model "${4:-$model}" --fasta "$fasta" --out "$work/out" $2; }
c "--count: must be >= 0, got -1" "--count -1"
c "--fraction: 0 is outside (0, 1)" "--fraction 0"
c "--fraction: 1 is outside (0, 1)" "--fraction 1"
c "--strategy: unknown 'nucleus' (greedy, sample, top-k, top-p or beam)" "--strategy nucleus"
c "--temperature: must be positive, got 0" "--strategy sample --temperature 0"
c "--temperature: must be positive, got -1" "--temperature -1"
c "--top-k: must be >= 0, got -1" "--top-k -1"
c "--top-p: 0 is outside (0, 1]" "--top-p 0"
c "--top-p: 1.5 is outside (0, 1]" "--top-p 1.5"
c "--beam: must be >= 1, got 0" "--beam 0"
c "--length-penalty: must be a finite number, got nan" "--length-penalty nan"
c "--extra: must be >= 0, got -1" "--extra -1"
c "--seed: must be >= 0, got -1" "--seed -1"
c "--threads: must be >= 0, got -3" "--threads -3"
c "--gpu-math: unknown 'fp8'" "--gpu-math fp8"
c "--vocab: 'ankh2' is neither" "--vocab ankh2"
c "--model: Directory does not exist" "" nothing "$work/none"
c "huge_d_ff/config.json: field 'd_ff' = 1000000000000 is out of range [1, 1048576]" "" any "$work/huge_d_ff"

if [ "$failures" -gt 0 ]; then
  echo "$failures of $cases bad values were not refused clearly"
  exit 1
fi
echo "ok: $cases bad values refused, each naming its option or config key"
