#!/usr/bin/env bash
# Cluster protein sequences by identity so that train / validation / test
# splits can keep homologues together (no leakage of near-copies into the
# test set). Writes "ACCESSION<TAB>CLUSTER" (the cluster's representative
# accession) for every protein, in the order of the input FASTA.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: make_clusters.sh --fasta FILE[.gz] --out FILE.tsv [options]

Options:
  --fasta FILE      proteins to cluster, plain or gzip FASTA (required)
  --out FILE        output TSV "ACCESSION<TAB>CLUSTER" (required)
  --only FILE       cluster only the accessions in the first column of this
                    TSV (for example a label table); the others are left out
  --identity F      sequence identity threshold, 0.4 to 1.0 (default 0.4)
  --tool T          cd-hit (default) or mmseqs (faster on large sets; allows
                    identities below 0.4)
  --threads N       (default 2)
  -h, --help        show this help

Requires the Debian package cd-hit (or mmseqs2 with --tool mmseqs):
  sudo apt-get install cd-hit

Example (the file shipped in this directory):
  ./make_clusters.sh --fasta swissprot_sample.fasta.gz \
      --only swissprot_sample_labels.tsv --out swissprot_sample_clusters.tsv
EOF
}

die() { echo "make_clusters.sh: error: $*" >&2; exit 1; }
need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "option $1 needs a value (see --help)"; }

fasta="" out="" only="" identity=0.4 tool=cd-hit threads=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fasta)    need_arg "$@"; fasta=$2; shift 2 ;;
    --out)      need_arg "$@"; out=$2; shift 2 ;;
    --only)     need_arg "$@"; only=$2; shift 2 ;;
    --identity) need_arg "$@"; identity=$2; shift 2 ;;
    --tool)     need_arg "$@"; tool=$2; shift 2 ;;
    --threads)  need_arg "$@"; threads=$2; shift 2 ;;
    -h|--help)  usage; exit 0 ;;
    *)          usage >&2; echo >&2; die "unknown argument: $1" ;;
  esac
done
[[ -n "$fasta" && -n "$out" ]] || { usage >&2; echo >&2; die "--fasta and --out are required"; }
[[ -f "$fasta" ]] || die "--fasta: $fasta not found"
[[ -z "$only" || -f "$only" ]] || die "--only: $only not found"
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer, got '$threads'"
awk -v x="$identity" 'BEGIN { exit !(x ~ /^[01](\.[0-9]+)?$/ && x > 0 && x <= 1) }' \
  || die "--identity must be a number in (0, 1], got '$identity'"

export LC_ALL=C
tmp=$(mktemp -d "${TMPDIR:-/tmp}/make_clusters.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One record per line: "ACCESSION<TAB>SEQUENCE", input order kept.
{ if [[ "$fasta" == *.gz ]]; then gzip -dc "$fasta"; else cat "$fasta"; fi; } \
  | awk '/^>/ { if (id != "") print id "\t" s; id = substr($1, 2); s = ""; next } { s = s $0 } END { if (id != "") print id "\t" s }' \
  > "$tmp/all.tsv"
if [[ -n "$only" ]]; then
  awk -F'\t' 'NR == FNR { if ($0 !~ /^#/ && $1 != "") keep[$1] = 1; next } $1 in keep' "$only" "$tmp/all.tsv" > "$tmp/sel.tsv"
else
  cp "$tmp/all.tsv" "$tmp/sel.tsv"
fi
n=$(wc -l < "$tmp/sel.tsv")
(( n > 0 )) || die "no sequences to cluster"
awk -F'\t' '{ print ">" $1; print $2 }' "$tmp/sel.tsv" > "$tmp/in.fa"

case "$tool" in
  cd-hit)
    command -v cd-hit >/dev/null 2>&1 || die "cd-hit not found; install it with: sudo apt-get install cd-hit"
    # cd-hit's word size must shrink with the identity threshold (its user guide).
    word=$(awk -v c="$identity" 'BEGIN { print (c >= 0.7 ? 5 : c >= 0.6 ? 4 : c >= 0.5 ? 3 : 2) }')
    awk -v c="$identity" 'BEGIN { exit !(c >= 0.4) }' || die "cd-hit needs --identity >= 0.4 (use --tool mmseqs below)"
    cd-hit -i "$tmp/in.fa" -o "$tmp/rep" -c "$identity" -n "$word" -M 0 -T "$threads" -d 0 > "$tmp/log" 2>&1 \
      || { tail -n 20 "$tmp/log" >&2; die "cd-hit failed"; }
    # .clstr: ">Cluster k" then members "0	123aa, >ACC... *" (* marks the representative)
    awk '/^>Cluster/ { if (rep != "") for (m in mem) print m "\t" rep; delete mem; rep = ""; next }
         { a = $3; sub(/^>/, "", a); sub(/\.\.\.$/, "", a); mem[a] = 1; if ($NF == "*") rep = a }
         END { if (rep != "") for (m in mem) print m "\t" rep }' "$tmp/rep.clstr" > "$tmp/pairs.tsv"
    ;;
  mmseqs)
    command -v mmseqs >/dev/null 2>&1 || die "mmseqs not found; install it with: sudo apt-get install mmseqs2"
    mmseqs easy-cluster "$tmp/in.fa" "$tmp/res" "$tmp/work" --min-seq-id "$identity" --threads "$threads" > "$tmp/log" 2>&1 \
      || { tail -n 20 "$tmp/log" >&2; die "mmseqs failed"; }
    awk -F'\t' '{ print $2 "\t" $1 }' "$tmp/res_cluster.tsv" > "$tmp/pairs.tsv"
    ;;
  *) die "--tool must be cd-hit or mmseqs, got '$tool'" ;;
esac

# Input order, and every input protein exactly once.
awk -F'\t' 'NR == FNR { c[$1] = $2; next } { if (!($1 in c)) { print "missing " $1 > "/dev/stderr"; exit 1 } print $1 "\t" c[$1] }' \
  "$tmp/pairs.tsv" "$tmp/sel.tsv" > "$tmp/out.tsv" || die "the clustering lost proteins"
mv "$tmp/out.tsv" "$out"
k=$(cut -f2 "$out" | sort -u | wc -l)
echo "make_clusters.sh: $n proteins in $k clusters at identity $identity ($tool) -> $out" >&2
