#!/usr/bin/env bash
# Nothing a user already has is destroyed, and no lost output goes unreported:
#   - a second run on an existing --out without --resume is refused and leaves
#     the earlier run byte for byte; --overwrite replaces it;
#   - a resume that fails before training keeps every metrics line; a damaged
#     metrics line stops a resume with the file and line named;
#   - outputs that exist are refused without --overwrite; devices, FIFOs and
#     directories are refused and left as they are;
#   - a write that fails half way (RLIMIT_FSIZE: EFBIG, like a full disk) exits
#     non-zero, keeps the previous file and leaves no temporary file;
#   - lost standard output (/dev/full) is an error.
#   no_data_loss.sh <ankh3_pretrain> <nm_finetune> <ankh3_embed> <ankh3_complete> <model dir> <FASTA(.gz)> <work dir>
set -euo pipefail
pretrain=$1 finetune=$2 embed=$3 complete=$4 model=$5 fasta=$6 work=$7
rm -rf "$work" && mkdir -p "$work"
zcat -f "$fasta" | awk '/^>/{n++} n<=60' > "$work/train.fasta"
# Options are given once each: the run's settings without --train and --steps, which the cases set.
base=(--model ankh3-tiny --max-length 48 --min-length 10 --token-budget 512 --pool 30
      --valid-max 8 --warmup 2 --eval-every 3 --checkpoint-every 3 --threads 1 --seed 3)
args=(--train "$work/train.fasta" "${base[@]}")
fail() { echo "FAIL: $*"; exit 1; }
# expect_error <log> <pattern> <command...>: the command must exit non-zero (not by a signal) and say <pattern>.
expect_error() {
  local log=$1 pattern=$2 rc=0
  shift 2
  "$@" > "$log.out" 2> "$log" || rc=$?
  [ "$rc" -ne 0 ] || fail "accepted: $*"
  [ "$rc" -lt 128 ] || fail "killed by a signal ($rc): $*"
  grep -q -- "$pattern" "$log" || { cat "$log"; fail "the error of '$*' does not say '$pattern'"; }
}
snapshot() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# 1. A finished run, then the same command again: refused, nothing touched.
"$pretrain" "${args[@]}" --steps 6 --out "$work/run" 2> "$work/run.log" || { cat "$work/run.log"; fail "first run"; }
before=$(snapshot "$work/run")
expect_error "$work/again.log" "holds an earlier run" "$pretrain" "${args[@]}" --steps 6 --out "$work/run"
grep -q -- "--resume" "$work/again.log" && grep -q -- "--overwrite" "$work/again.log" || fail "the refusal does not say what to do"
[ "$before" = "$(snapshot "$work/run")" ] || fail "a refused run changed the earlier one"
expect_error "$work/both.log" "exclude each other" "$pretrain" "${args[@]}" --steps 6 --out "$work/run" --resume --overwrite

# 2. A resume that fails before training (a malformed training file) keeps every metrics line.
printf '>x\nMKTAYIAK1QRQ\n' > "$work/bad.fasta"
lines=$(wc -l < "$work/run/metrics.jsonl")
cp "$work/run/metrics.jsonl" "$work/metrics.before"
expect_error "$work/missing.log" "bad.fasta:2" "$pretrain" "${base[@]}" --steps 9 --train "$work/bad.fasta" --out "$work/run" --resume
[ "$before" = "$(snapshot "$work/run")" ] || fail "a failed resume changed the run"
# --overwrite that fails during set-up loses nothing either.
expect_error "$work/missing2.log" "bad.fasta:2" "$pretrain" "${base[@]}" --steps 6 --train "$work/bad.fasta" --out "$work/run" --overwrite
[ "$before" = "$(snapshot "$work/run")" ] || fail "an --overwrite that failed during set-up removed the run"

# 3. A damaged line in the middle of metrics.jsonl stops a resume, naming file and line, and keeps the file.
cp -r "$work/run" "$work/damaged"
sed -i '3s/.*/{"step": 3, "lo/' "$work/damaged/metrics.jsonl"
damaged=$(sha256sum < "$work/damaged/metrics.jsonl")
expect_error "$work/damaged.log" "metrics.jsonl:3" "$pretrain" "${args[@]}" --steps 9 --out "$work/damaged" --resume
[ "$damaged" = "$(sha256sum < "$work/damaged/metrics.jsonl")" ] || fail "the damaged log was rewritten"
# A resume continues the intact run and appends.
"$pretrain" "${args[@]}" --steps 9 --out "$work/run" --resume 2> "$work/resume.log" || { cat "$work/resume.log"; fail "resume"; }
[ "$(grep -c '"split":"train"' "$work/run/metrics.jsonl")" -eq 9 ] || fail "the resumed log does not hold 9 training steps"
head -n "$lines" "$work/run/metrics.jsonl" | cmp -s - "$work/metrics.before" || fail "the resume changed the earlier lines"

# 4. --overwrite replaces the run.
"$pretrain" "${args[@]}" --steps 3 --out "$work/run" --overwrite 2> "$work/overwrite.log" || { cat "$work/overwrite.log"; fail "--overwrite"; }
[ "$(grep -c '"split":"train"' "$work/run/metrics.jsonl")" -eq 3 ] || fail "--overwrite kept the old log"

# 5. nm_finetune: the same guard.
nm=(--limit 200 --min-class-size 10 --max-length 32 --d-model 16 --heads 2 --d-ff 32 --layers 1 --readout 8 --epochs 1
    --batch 16 --threads 1 --arms baseline)
"$finetune" "${nm[@]}" --out "$work/nm" > /dev/null 2> "$work/nm.log" || { cat "$work/nm.log"; fail "nm_finetune"; }
before=$(snapshot "$work/nm")
expect_error "$work/nm_again.log" "holds an earlier run" "$finetune" "${nm[@]}" --out "$work/nm"
[ "$before" = "$(snapshot "$work/nm")" ] || fail "a refused nm_finetune run changed the earlier one"

# 6. Outputs: an existing file is refused without --overwrite; devices and FIFOs are refused and stay what they are.
printf '>a\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nMSDNELKQAAEELLRKG\n' > "$work/two.fasta"
"$embed" --model "$model" --fasta "$work/two.fasta" --out "$work/emb.safetensors" 2> "$work/emb.log" || { cat "$work/emb.log"; fail "embed"; }
emb=$(sha256sum < "$work/emb.safetensors")
expect_error "$work/emb_again.log" "already exists" "$embed" --model "$model" --fasta "$work/two.fasta" --out "$work/emb.safetensors"
"$embed" --model "$model" --fasta "$work/two.fasta" --out "$work/emb.safetensors" --overwrite 2> /dev/null || fail "embed --overwrite"
expect_error "$work/full.log" "character device" "$embed" --model "$model" --fasta "$work/two.fasta" --out /dev/full --overwrite
[ -c /dev/full ] || fail "/dev/full is no longer a device"
mkfifo "$work/fifo"
expect_error "$work/fifo.log" "a FIFO" "$complete" --model "$model" --fasta "$work/two.fasta" --out "$work/fifo" --overwrite
[ -p "$work/fifo" ] || fail "the FIFO was replaced"
expect_error "$work/dir.log" "is a directory" "$embed" --model "$model" --fasta "$work/two.fasta" --out "$work/nm" --overwrite
"$complete" --model "$model" --fasta "$work/two.fasta" --out "$work/done.fasta" > /dev/null 2>&1 || fail "complete"
expect_error "$work/done.log" "already exists" "$complete" --model "$model" --fasta "$work/two.fasta" --out "$work/done.fasta"

# 7. A write that fails half way: the previous file stays, no temporary file is left, the exit status says so.
zcat -f "$fasta" | awk '/^>/{n++} n<=40' > "$work/40.fasta"
cp "$work/emb.safetensors" "$work/keep.safetensors"
keep=$(sha256sum < "$work/keep.safetensors")
rc=0
(trap '' XFSZ; ulimit -f 8; exec "$embed" --model "$model" --fasta "$work/40.fasta" --per-residue --out "$work/keep.safetensors" --overwrite) \
  2> "$work/efbig.log" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || { cat "$work/efbig.log"; fail "a failed write exited with $rc"; }
grep -q "write failed: File too large" "$work/efbig.log" || { cat "$work/efbig.log"; fail "the error does not name the failed write"; }
[ "$keep" = "$(sha256sum < "$work/keep.safetensors")" ] || fail "the previous file was damaged"
! ls "$work"/keep.safetensors.tmp.* > /dev/null 2>&1 || fail "a temporary file was left behind"
rc=0
(trap '' XFSZ; ulimit -f 1; exec "$complete" --model "$model" --fasta "$work/40.fasta" --count 40 --out "$work/done.fasta" --overwrite) \
  > /dev/null 2> "$work/efbig2.log" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || { cat "$work/efbig2.log"; fail "a failed completion write exited with $rc"; }
[ "$(grep -c '^>' "$work/done.fasta")" -eq 2 ] || fail "the previous completions were damaged"

# 8. Standard output that cannot be written is an error.
rc=0
"$complete" --model "$model" --fasta "$work/two.fasta" > /dev/full 2> "$work/stdout.log" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || fail "lost standard output exited with $rc"
grep -q "standard output" "$work/stdout.log" || { cat "$work/stdout.log"; fail "unclear stdout error"; }
echo "ok: earlier runs and outputs kept, devices refused, failed writes reported"
