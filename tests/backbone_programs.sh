#!/usr/bin/env bash
# An encoder-only family's directory (ESM-2: esm2_pretrain's model/; ProtBert:
# a BERT fixture with its tokenizer files) as a backbone of the other programs:
# ankh3_embed embeds with the directory's own vocab.txt (<cls> ... <eos> or
# [CLS] ... [SEP], no task prefix) at several layers, in windows, and
# nm_finetune fine-tunes it (both arms, encoder-only: no LM head in its
# checkpoints).
#   backbone_programs.sh <ankh3_embed> <nm_finetune> <model dir> <FASTA(.gz)> <work dir> <residues per pass> [<tokenizer dir>]
set -euo pipefail
embed=$1 nm=$2 model=$3 fasta=$4 work=$5 length=$6 tokenizer=${7:-}
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
if [ -n "$tokenizer" ]; then  # the model's files and the tokenizer's in one directory, as published
  mkdir -p "$work/model" && cp "$model"/config.json "$model"/model.safetensors "$tokenizer"/vocab.txt "$tokenizer"/tokenizer_config.json "$work/model/"
  model=$work/model
fi

{ zcat -f "$fasta" || true; } | awk '/^>/ { n++ } n > 12 { exit } { print }' > "$work/12.fasta"
"$embed" --model "$model" --fasta "$work/12.fasta" --out "$work/e.safetensors" --layers -1,0,1 --per-residue --eos \
  --max-length "$length" --long windows 2> "$work/e.log" || { cat "$work/e.log"; fail "ankh3_embed on $model"; }
grep -q "tokenizer .*vocab.txt" "$work/e.log" || { cat "$work/e.log"; fail "ankh3_embed did not use the directory's vocab.txt"; }
grep -q "embedded in windows of $length residues" "$work/e.log" || fail "no protein was windowed"
# The header names every tensor: 3 layers x (mean, eos, 12 proteins' residues); prefix none.
header=$(head -c 100000 "$work/e.safetensors" | tr -d '\0')
for k in layer-1.mean layer0.eos layer1.residues.; do
  case "$header" in *"\"$k"*) ;; *) fail "no $k in the output";; esac
done
case "$header" in *'"prefix":"none"'*) ;; *) fail "a vocabulary without task tokens got a task prefix";; esac

"$nm" --backbone "$model" --limit 300 --min-class-size 20 --max-length "$length" --readout 16 --batch 16 --epochs 1 --threads 2 \
  --out "$work/nm" > "$work/nm.out" 2> "$work/nm.log" || { tail -5 "$work/nm.log"; fail "nm_finetune --backbone $model"; }
grep -q '^nm ' "$work/nm.out" && grep -q '^baseline ' "$work/nm.out" || fail "no result table"
grep -q "tokenizer .*vocab.txt" "$work/nm.log" || fail "nm_finetune did not use the backbone's tokenizer"
if head -c 100000 "$work/nm/nm/checkpoint.safetensors" | tr -d '\0' | grep -q 'lm_head'; then fail "the fine-tuned model carries an LM head"; fi
echo "ok: $model embedded and fine-tuned"
