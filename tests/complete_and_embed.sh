#!/usr/bin/env bash
# Runs ankh3_complete with every decoding strategy and ankh3_embed on a model
# trained by the resume test, and checks what they print and write.
#   complete_and_embed.sh <ankh3_complete> <ankh3_embed> <model dir> <FASTA> <work dir>
set -euo pipefail
complete=$1 embed=$2 model=$3 fasta=$4 work=$5
rm -rf "$work" && mkdir -p "$work"
for s in greedy sample top-k top-p beam; do
  "$complete" --model "$model" --fasta "$fasta" --count 3 --strategy "$s" --extra 4 --out "$work/$s.fasta" > "$work/$s.txt"
  grep -q "^3 proteins, mean identity" "$work/$s.txt" || { echo "FAIL: $s"; cat "$work/$s.txt"; exit 1; }
  [ "$(grep -c '^>' "$work/$s.fasta")" -eq 3 ] || { echo "FAIL: $s wrote no 3 completions"; exit 1; }
  # completions are residues only: banned specials never appear
  grep -v '^>' "$work/$s.fasta" > "$work/$s.residues"
  if grep -q '[^A-Z]' "$work/$s.residues"; then echo "FAIL: $s completion holds non-residue text"; exit 1; fi
done
"$complete" --model "$model" --fasta "$fasta" --strategy sample --temperature 0 > "$work/t0.txt" 2>&1 && { echo "FAIL: temperature 0 accepted"; exit 1; }
grep -q -- "--temperature: must be positive, got 0" "$work/t0.txt" || { echo "FAIL: unclear error"; cat "$work/t0.txt"; exit 1; }

zcat -f "$fasta" | awk '/^>/{n++} n<=20' > "$work/20.fasta"
"$embed" --model "$model" --fasta "$work/20.fasta" --out "$work/emb.safetensors" --per-residue 2> "$work/embed.log"
grep -q "20 proteins" "$work/embed.log" || { echo "FAIL: embed"; cat "$work/embed.log"; exit 1; }
# the safetensors header names the mean matrix and one per-residue tensor per protein
# (read into a variable first: grep -q closing a pipe early would fail it under pipefail)
header=$(dd if="$work/emb.safetensors" bs=65536 count=1 2> /dev/null | tr -c '[:print:]' ' ')
grep -q '"mean"' <<< "$header" || { echo "FAIL: no mean tensor"; exit 1; }
[ "$(grep -o '"residues\.[^"]*"' <<< "$header" | wc -l)" -eq 20 ] || { echo "FAIL: per-residue tensors"; exit 1; }
printf '>bad\nMK1L\n' > "$work/bad.fasta"
"$embed" --model "$model" --fasta "$work/bad.fasta" --out "$work/bad.safetensors" 2> "$work/bad.log" && { echo "FAIL: bad FASTA accepted"; exit 1; }
grep -q "bad.fasta:2" "$work/bad.log" || { echo "FAIL: error does not name file:line"; cat "$work/bad.log"; exit 1; }
# --device cuda: runs on a GPU when there is one; otherwise a clear refusal, never a crash
if "$embed" --model "$model" --fasta "$work/20.fasta" --out "$work/emb_cuda.safetensors" --device cuda 2> "$work/cuda.log"; then
  cmp -s <(dd if="$work/emb.safetensors" bs=1 count=8 2> /dev/null) <(dd if="$work/emb_cuda.safetensors" bs=1 count=8 2> /dev/null) ||
    { echo "FAIL: GPU embeddings have another header size"; exit 1; }
else
  grep -Eq "no CUDA device is available|built without the CUDA backend" "$work/cuda.log" || { echo "FAIL: --device cuda"; cat "$work/cuda.log"; exit 1; }
fi
"$embed" --model "$model" --fasta "$work/20.fasta" --out "$work/x.safetensors" --device tpu 2> "$work/tpu.log" && { echo "FAIL: --device tpu accepted"; exit 1; }
grep -q "unknown 'tpu' (cpu or cuda)" "$work/tpu.log" || { echo "FAIL: unclear --device error"; cat "$work/tpu.log"; exit 1; }
echo "ok"
