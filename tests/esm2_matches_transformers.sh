#!/usr/bin/env bash
# The model directory esm2_pretrain wrote, loaded by transformers
# (EsmForMaskedLM.from_pretrained, AutoTokenizer.from_pretrained), gives the
# ids and logits plm gives (checked by a plm_tests case that only this test
# runs). Skipped (exit 77) where Python has no transformers, torch or safetensors.
#   esm2_matches_transformers.sh <plm_tests> <model dir> <work dir>
set -euo pipefail
tests=$1 model=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
if ! python3 -c "import torch, transformers, safetensors" 2> /dev/null; then
  echo "skipped: python3 cannot import torch, transformers and safetensors"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"
python3 "$here/esm2_transformers_logits.py" "$model" "$work/reference.safetensors"
PLM_ESM2_MODEL="$model" PLM_ESM2_REFERENCE="$work/reference.safetensors" \
  "$tests" --no-skip --test-case="esm2_pretrain's model gives transformers' logits" > "$work/log" 2>&1 ||
  { cat "$work/log"; echo "FAIL: plm's logits differ from transformers'"; exit 1; }
cat "$work/log"
# The case must have run (a renamed case would match nothing and pass).
grep -q "test cases: 1 | 1 passed" "$work/log" || { echo "FAIL: the plm_tests case did not run"; exit 1; }
