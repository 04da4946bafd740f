#!/usr/bin/env bash
# Build a homology-rich protein sample: whole sequence families (clusters of
# homologues) drawn from Debian's metastudent-data Swiss-Prot entries.
#
# A random sample of Swiss-Prot (make_corpus.sh) has few close homologues per
# protein, so a small model trained for minutes has little to learn beyond
# residue frequencies. Here every protein comes with many relatives: a
# held-out protein's family members are in the training part, as in real
# pre-training corpora, where most proteins have homologues.
#
# The output is deterministic (same options, same bytes): cluster membership
# does not depend on mmseqs' thread count, every ordering is a seeded integer
# hash computed in awk (as in make_corpus.sh) or a C-locale sort, and gzip
# runs with -n.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: make_family_sample.sh --out FILE.fasta.gz [options]

Extracts all sequences with make_corpus.sh (length range, exact duplicates
removed), clusters them with mmseqs easy-linclust (--identity, 80% coverage
of both sequences), keeps the clusters with at least --min-family members,
takes families in a seeded pseudo-random order and up to --per-family
members of each (also seeded) until --count sequences are reached (whole
families only), and writes them in a seeded pseudo-random order as gzip
FASTA with headers ">ACCESSION".

Options:
  --out FILE          output gzip FASTA (required)
  --count N           sequences to write (default 4000)
  --min-family N      smallest family (cluster) size used (default 50)
  --per-family N      members taken from each family (default 50)
  --identity F        mmseqs --min-seq-id (default 0.5)
  --seed S            selection seed, no whitespace (default 1)
  --min-length N      (default 30)
  --max-length N      (default 128)
  --families FILE     also write "ACCESSION<TAB>FAMILY" (the cluster's
                      representative accession), in the order of the FASTA
  --threads N         mmseqs threads (default 1; the clusters do not depend on it)
  --data-dir DIR      metastudent-data dataset directory (passed to make_corpus.sh)
  -h, --help          show this help

Requires the Debian packages metastudent-data, ncbi-blast+ and mmseqs2.

Example (the sample shipped in this directory):
  ./make_family_sample.sh --out swissprot_families.fasta.gz \
      --families swissprot_families_clusters.tsv
EOF
}

die() { echo "make_family_sample.sh: error: $*" >&2; exit 1; }
need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "option $1 needs a value (see --help)"; }

out="" fams_out="" count=4000 min_family=50 per_family=50 identity=0.5 seed=1 min_len=30 max_len=128 threads=1 data_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out)        need_arg "$@"; out=$2; shift 2 ;;
    --families)   need_arg "$@"; fams_out=$2; shift 2 ;;
    --count)      need_arg "$@"; count=$2; shift 2 ;;
    --min-family) need_arg "$@"; min_family=$2; shift 2 ;;
    --per-family) need_arg "$@"; per_family=$2; shift 2 ;;
    --identity)   need_arg "$@"; identity=$2; shift 2 ;;
    --seed)       need_arg "$@"; seed=$2; shift 2 ;;
    --min-length) need_arg "$@"; min_len=$2; shift 2 ;;
    --max-length) need_arg "$@"; max_len=$2; shift 2 ;;
    --threads)    need_arg "$@"; threads=$2; shift 2 ;;
    --data-dir)   need_arg "$@"; data_dir=$2; shift 2 ;;
    -h|--help)    usage; exit 0 ;;
    *)            usage >&2; echo >&2; die "unknown argument: $1" ;;
  esac
done
[[ -n "$out" ]] || { usage >&2; echo >&2; die "--out is required"; }
for v in count min_family per_family min_len max_len threads; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "--${v//_/-} must be a non-negative integer, got '${!v}'"
done
(( count > 0 && per_family > 0 && threads > 0 )) || die "--count, --per-family and --threads must be positive"
[[ "$seed" =~ ^[^[:space:]]+$ ]] || die "--seed must be a non-empty string without whitespace"
awk -v x="$identity" 'BEGIN { exit !(x ~ /^[01](\.[0-9]+)?$/ && x > 0 && x <= 1) }' \
  || die "--identity must be a number in (0, 1], got '$identity'"
command -v mmseqs >/dev/null 2>&1 || die "mmseqs not found; install it with: sudo apt-get install mmseqs2"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LC_ALL=C
tmp=$(mktemp -d "${TMPDIR:-/tmp}/make_family_sample.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. Every distinct sequence in the length range, one line each.
corpus_args=(--count 0 --min-length "$min_len" --max-length "$max_len" --line-width 0 --out "$tmp/all.fasta.gz")
[[ -z "$data_dir" ]] || corpus_args+=(--data-dir "$data_dir")
"$here/make_corpus.sh" "${corpus_args[@]}"
gzip -dc "$tmp/all.fasta.gz" > "$tmp/all.fa"
awk '/^>/ { id = substr($1, 2); next } { print id "\t" $0 }' "$tmp/all.fa" > "$tmp/all.tsv"

# 2. Families: linear-time clustering, both sequences covered to 80%.
mmseqs easy-linclust "$tmp/all.fa" "$tmp/res" "$tmp/work" --min-seq-id "$identity" -c 0.8 --cov-mode 0 \
  --threads "$threads" > "$tmp/mmseqs.log" 2>&1 || { tail -n 20 "$tmp/mmseqs.log" >&2; die "mmseqs failed"; }
sort -t $'\t' -k1,1 -k2,2 "$tmp/res_cluster.tsv" > "$tmp/clusters.tsv"   # representative, member

# 3. Seeded selection (seeded_hash.awk on "seed:c:REP" for families and
#    "seed:m:ACC" for members, "seed:o:ACC" for the final order).
hash=$(< "$here/seeded_hash.awk")
awk -F'\t' '{ n[$1]++ } END { for (r in n) print r "\t" n[r] }' "$tmp/clusters.tsv" | sort > "$tmp/sizes.tsv"
awk -F'\t' -v s="$seed" -v m="$min_family" "$hash"' $2 >= m { print seeded_hash(s ":c:" $1) "\t" $1 }' "$tmp/sizes.tsv" \
  | sort | cut -f2 > "$tmp/family_order"
n_fam=$(wc -l < "$tmp/family_order")
(( n_fam > 0 )) || die "no family has $min_family or more members"
awk -F'\t' -v s="$seed" "$hash"' { print $1 "\t" seeded_hash(s ":m:" $2) "\t" $2 }' "$tmp/clusters.tsv" \
  | sort -t $'\t' -k1,1 -k2,2 > "$tmp/members"
# rank of the family, member; whole families until --count is reached.
awk -F'\t' -v per="$per_family" 'NR == FNR { rank[$1] = NR; next } ($1 in rank) && taken[$1]++ < per { print rank[$1] "\t" $3 "\t" $1 }' \
  "$tmp/family_order" "$tmp/members" | sort -t $'\t' -k1,1n -k2,2 \
  | awk -F'\t' -v count="$count" '{ if ($1 != prev) { if (n >= count) full = 1; prev = $1 } if (!full) { print $2 "\t" $3; n++ } }' > "$tmp/sel.tsv"
n_sel=$(wc -l < "$tmp/sel.tsv")
n_used=$(cut -f2 "$tmp/sel.tsv" | sort -u | wc -l)
(( n_sel >= count )) || echo "make_family_sample.sh: warning: only $n_sel sequences in the $n_fam families of >= $min_family members" >&2

# 4. Write in a seeded order (any prefix is a random subset of the families' members).
awk -F'\t' 'NR == FNR { fam[$1] = $2; next } ($1 in fam) { print $1 "\t" fam[$1] "\t" $2 }' "$tmp/sel.tsv" "$tmp/all.tsv" \
  | awk -F'\t' -v s="$seed" "$hash"' { print seeded_hash(s ":o:" $1) "\t" $0 }' | sort -t $'\t' -k1,1 -k2,2 | cut -f2- > "$tmp/out.tsv"
awk -F'\t' '{ print ">" $1; for (i = 1; i <= length($3); i += 80) print substr($3, i, 80) }' "$tmp/out.tsv" \
  | gzip -n -9 > "$tmp/out.fasta.gz"
mkdir -p "$(dirname "$out")"
mv -f "$tmp/out.fasta.gz" "$out"
if [[ -n "$fams_out" ]]; then
  cut -f1,2 "$tmp/out.tsv" > "$tmp/fams.tsv"
  mkdir -p "$(dirname "$fams_out")"
  mv -f "$tmp/fams.tsv" "$fams_out"
fi
echo "make_family_sample.sh: $n_fam families of >= $min_family members at identity $identity;" \
  "wrote $n_sel sequences from $n_used of them to $out" >&2
