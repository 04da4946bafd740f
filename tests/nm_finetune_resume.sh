#!/usr/bin/env bash
# Runs nm_finetune end to end on a slice of the bundled localisation sample
# (both arms, cluster split, every attention-loss variant), and checks that a
# run killed with SIGKILL and resumed ends exactly as an uninterrupted one.
# Also a split given with the data (a split table, separate files) and the
# validation and test figures of every epoch.
#   nm_finetune_resume.sh <nm_finetune> <work dir> <examples/data>
set -euo pipefail
exe=$1 work=$2 data=$3
rm -rf "$work" && mkdir -p "$work"
args=(--limit 400 --min-class-size 20 --max-length 64 --d-model 32 --heads 2 --d-ff 64 --layers 1 --readout 16
      --batch 16 --patience 5 --threads 1 --seed 3)

"$exe" "${args[@]}" --epochs 4 --out "$work/a" > "$work/a.out" 2> "$work/a.log" || { cat "$work/a.log"; exit 1; }
grep -q '^baseline ' "$work/a.out" && grep -q '^nm ' "$work/a.out" || { echo "FAIL: no result table"; cat "$work/a.out"; exit 1; }
for arm in baseline nm; do
  for f in metrics.jsonl checkpoint.safetensors best.safetensors test.json; do
    [ -s "$work/a/$arm/$f" ] || { echo "FAIL: $arm/$f missing"; exit 1; }
  done
done
# The attention loss is logged and non-zero only in the negative-mining arm.
grep -q '"nm_loss":0.0' "$work/a/baseline/metrics.jsonl" || { echo "FAIL: baseline has an attention loss"; exit 1; }
if grep '"split":"train"' "$work/a/nm/metrics.jsonl" | grep -q '"nm_loss":0.0,'; then echo "FAIL: nm arm without attention loss"; exit 1; fi
# Validation and test figures after every epoch, logged and printed.
for arm in baseline nm; do
  epochs=$(grep -c '"split":"valid"' "$work/a/$arm/metrics.jsonl")
  [ "$epochs" -ge 1 ] && [ "$(grep -c '"split":"test"' "$work/a/$arm/metrics.jsonl")" = "$epochs" ] ||
    { echo "FAIL: $arm: not one test line per epoch"; exit 1; }
done
grep -q "nm epoch 1: valid loss .* | test loss .* acc .* macro-F1" "$work/a.log" || { echo "FAIL: no per-epoch test figures"; exit 1; }
grep -q "proteins longer than --max-length 64 were cut to their first residues" "$work/a.log" || { echo "FAIL: crops not reported"; exit 1; }

# Kill the negative-mining arm after its first epoch's checkpoint, resume.
"$exe" "${args[@]}" --epochs 4 --arms nm --out "$work/b" > /dev/null 2> "$work/b.log" &
pid=$!
while kill -0 "$pid" 2> /dev/null; do
  if [ -f "$work/b/nm/metrics.jsonl" ] && [ "$(grep -c '"split":"train"' "$work/b/nm/metrics.jsonl")" -ge 30 ]; then
    kill -9 "$pid"
    break
  fi
  sleep 0.01
done
wait "$pid" && { echo "FAIL: the run finished before it could be killed"; exit 1; } || true
"$exe" "${args[@]}" --epochs 4 --arms nm --out "$work/b" --resume > "$work/b2.out" 2> "$work/b2.log"
grep -q "resumed from" "$work/b2.log" || { echo "FAIL: did not resume"; cat "$work/b2.log"; exit 1; }
strip() { sed -E 's/"(seq_per_s)":[^,}]*,?//' "$1"; }
diff <(strip "$work/a/nm/metrics.jsonl") <(strip "$work/b/nm/metrics.jsonl") > "$work/diff.txt" \
  || { echo "FAIL: resumed metrics differ:"; head "$work/diff.txt"; exit 1; }
cmp "$work/a/nm/test.json" "$work/b/nm/test.json" || { echo "FAIL: resumed test results differ"; exit 1; }

# A resume with other settings is refused, naming the setting.
if "$exe" "${args[@]}" --epochs 4 --arms nm --lambda 0.5 --out "$work/b" --resume > /dev/null 2> "$work/b3.log"; then
  echo "FAIL: resumed with another --lambda"; exit 1
fi
grep -q "was written with lambda = 0.1, this run has 0.5" "$work/b3.log" || { echo "FAIL: unclear error:"; cat "$work/b3.log"; exit 1; }

# The other attention losses and hard negatives run too.
for extra in "--loss l1" "--loss kl" "--loss entropy-hinge" "--negatives-from hard --freeze"; do
  # shellcheck disable=SC2086
  "$exe" "${args[@]}" --epochs 1 --arms nm $extra --out "$work/v" --overwrite > /dev/null 2> "$work/v.log" \
    || { echo "FAIL: $extra"; tail -5 "$work/v.log"; exit 1; }
done

# A split given with the data: a table (DeepLoc-style names), then the same split as three FASTA files
# (all proteins: --limit would take the first ones of the training file alone).
zcat "$data/swissprot_sample.fasta.gz" | awk '/^>/ { id = substr($1, 2); n++; s = n % 5 == 0 ? "test" : n % 5 == 1 ? "validation" : "train";
  print id "\t" s > "'"$work/split.tsv"'"; f = "'"$work/"'" (s == "validation" ? "valid" : s) ".fasta" } { print > f }'
"$exe" "${args[@]:2}" --epochs 1 --arms baseline --split-table "$work/split.tsv" --out "$work/t" > /dev/null 2> "$work/t.log" ||
  { echo "FAIL: --split-table"; tail -5 "$work/t.log"; exit 1; }
"$exe" "${args[@]:2}" --epochs 1 --arms baseline --train-fasta "$work/train.fasta" --valid-fasta "$work/valid.fasta" \
  --test-fasta "$work/test.fasta" --out "$work/f" > /dev/null 2> "$work/f.log" || { echo "FAIL: separate files"; tail -5 "$work/f.log"; exit 1; }
grep -q "split as given by .*split.tsv" "$work/t.log" && grep -q "split as given by the files" "$work/f.log" ||
  { echo "FAIL: the given split was not used"; cat "$work/t.log" "$work/f.log"; exit 1; }
# Both describe the same split: the same number of proteins in each part.
counts() { grep -o 'split as given by .*' "$1" | sed 's/.*: //'; }
[ "$(counts "$work/t.log")" = "$(counts "$work/f.log")" ] || { echo "FAIL: the two forms of the split differ"; exit 1; }

# Bad input is refused with the file and line.
printf 'P1\tcytoplasm\nP2 nucleus\n' > "$work/bad.tsv"
if "$exe" --labels "$work/bad.tsv" --out "$work/c" 2> "$work/c.log"; then echo "FAIL: malformed labels accepted"; exit 1; fi
grep -q "bad.tsv:2: expected 'ID<TAB>LABEL'" "$work/c.log" || { echo "FAIL: unclear error:"; cat "$work/c.log"; exit 1; }
echo "ok: both arms ran, the resumed run is identical, every loss variant runs, a given split is taken as given"
