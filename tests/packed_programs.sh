#!/usr/bin/env bash
# ankh3_pretrain and esm2_pretrain with --packed. With batches that hold the
# same sequences either way (--max-rows binds, the token budget does not),
# packed and padded runs write the same training and held-out losses up to
# float rounding (the products have other shapes, so not bit for bit). A packed
# run resumes only as a packed run, and the other way round.
#   packed_programs.sh <ankh3_pretrain> <esm2_pretrain> <training FASTA(.gz)> <work dir>
set -euo pipefail
t5=$1 esm=$2 fasta=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
zcat -f "$fasta" | awk '/^>/{n++} n<=120' > "$work/train.fasta"
common=(--train "$work/train.fasta" --max-length 64 --min-length 10 --token-budget 100000 --max-rows 4 --pool 40
        --valid-max 8 --warmup 2 --eval-every 4 --checkpoint-every 4 --threads 1 --seed 3)
failures=0

# The "loss" field of every metrics line (training and held-out), one per line.
losses() { grep '"split"' "$1" | sed -E 's/.*[{,]"loss":([^,}]*).*/\1/'; }

# same_losses <name> <padded metrics> <packed metrics>: equal to 1e-4 relative, line by line.
same_losses() {
  local name=$1 worst
  if ! worst=$(paste <(losses "$2") <(losses "$3") | awk '
      NF != 2 { print "missing"; exit }
      { d = $1 - $2; if (d < 0) d = -d; s = $1 < 0 ? -$1 : $1; r = d / (s > 1 ? s : 1); if (r > w) w = r; n++ }
      END { if (n < 10) print "only " n " lines"; else printf "%.3g\n", w }'); then worst="unreadable"; fi
  if ! awk -v w="$worst" 'BEGIN { exit !(w + 0 == w && w <= 1e-4) }'; then
    echo "FAIL: $name: packed and padded losses differ (worst relative difference: $worst)"
    failures=$((failures + 1))
  else
    echo "ok: $name: packed and padded losses agree to $worst over $(losses "$2" | wc -l) lines"
  fi
}

# refused_resume <name> <text> <command...>: must exit non-zero naming the text.
refused_resume() {
  local name=$1 want=$2
  shift 2
  if "$@" > "$work/refused.out" 2> "$work/refused.err"; then
    echo "FAIL: $name: resumed across packed / padded batching"; failures=$((failures + 1))
  elif ! grep -qF -- "$want" "$work/refused.err"; then
    echo "FAIL: $name: the refusal does not say '$want':"; sed 's/^/    /' "$work/refused.err" | tail -3; failures=$((failures + 1))
  else
    echo "ok: $name: refused ($want)"
  fi
}

"$t5" "${common[@]}" --steps 8 --model ankh3-tiny --out "$work/t5_padded" 2> "$work/t5_padded.log"
"$t5" "${common[@]}" --steps 8 --model ankh3-tiny --packed --out "$work/t5_packed" 2> "$work/t5_packed.log"
same_losses ankh3_pretrain "$work/t5_padded/metrics.jsonl" "$work/t5_packed/metrics.jsonl"
refused_resume "ankh3_pretrain padded -> packed" "saved with packed = null" \
  "$t5" "${common[@]}" --model ankh3-tiny --packed --steps 10 --resume --out "$work/t5_padded"
refused_resume "ankh3_pretrain packed -> padded" "saved with packed = true, this stream has none" \
  "$t5" "${common[@]}" --model ankh3-tiny --steps 10 --resume --out "$work/t5_packed"

esm_model=(--layers 2 --hidden 32 --heads 4)
"$esm" "${common[@]}" --steps 8 "${esm_model[@]}" --out "$work/esm_padded" 2> "$work/esm_padded.log"
"$esm" "${common[@]}" --steps 8 "${esm_model[@]}" --packed --out "$work/esm_packed" 2> "$work/esm_packed.log"
same_losses esm2_pretrain "$work/esm_padded/metrics.jsonl" "$work/esm_packed/metrics.jsonl"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "packed_programs: all passed"
