#!/usr/bin/env bash
# ankh3_embed on a Hugging Face directory whose tokenizer puts a separate "▁"
# before every residue (tests/fixtures/tokenizers/embed_model), with no
# --vocab: the program must pick the directory's tokenizer, and its output must
# equal transformers' eval-mode embeddings (checked by a plm_tests case that
# only this test runs).
#   embed_matches_transformers.sh <ankh3_embed> <plm_tests> <tests/fixtures> <work dir>
set -euo pipefail
embed=$1 tests=$2 fixtures=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
head -n 24 "$fixtures/tokenizers/sequences.fasta" > "$work/12.fasta"
"$embed" --model "$fixtures/tokenizers/embed_model" --fasta "$work/12.fasta" --out "$work/emb.safetensors" 2> "$work/log"
grep -q "tokenizer .*embed_model/tokenizer.json (words style)" "$work/log" ||
  { echo "FAIL: ankh3_embed did not use the directory's tokenizer"; cat "$work/log"; exit 1; }
PLM_EMBED_OUTPUT="$work/emb.safetensors" "$tests" --no-skip --test-case='ankh3_embed output*'
