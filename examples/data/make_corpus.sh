#!/usr/bin/env bash
# Builds a protein corpus (gzip FASTA) from the UniProtKB/Swiss-Prot sequences
# of Debian's metastudent-data package, and optionally localisation labels.
#
#   make_corpus.sh --out corpus.fasta.gz [--count N] [--min-length 30] [--max-length 1000]
#                  [--seed 1] [--labels labels.tsv] [--data-dir DIR]
#
# Needs: apt-get install metastudent-data ncbi-blast+
# Sequences come from the CCO (cellular component) BLAST database, the largest
# of the three (392,822 entries). Headers become ">ACCESSION". Sequences outside
# the length range and exact duplicates are dropped; then N are drawn with a
# seeded shuffle (--count 0 keeps all), so the same options give the same file.
# --labels writes "ACCESSION<TAB>GO term" for the selected proteins annotated
# directly with exactly one of ten subcellular locations.
set -euo pipefail

out="" count=0 min_len=30 max_len=1000 seed=1 labels=""
data_dir=/usr/share/metastudent-data/dataset_201401
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --min-length) min_len=$2; shift 2 ;;
    --max-length) max_len=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --labels) labels=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "make_corpus.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
done
[ -n "$out" ] || { echo "make_corpus.sh: --out is required" >&2; usage 2 >&2; }
db="$data_dir/CCO/goasp.fasta"
if [ ! -f "$db.psq" ]; then
  echo "make_corpus.sh: $db not found; install the data with: apt-get install metastudent-data ncbi-blast+" >&2
  exit 1
fi
command -v blastdbcmd > /dev/null || { echo "make_corpus.sh: blastdbcmd not found; apt-get install ncbi-blast+" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C
# One "ACCESSION<TAB>SEQUENCE" line per protein, in accession order.
blastdbcmd -db "$db" -entry all -line_length 100000 |
  awk -v lo="$min_len" -v hi="$max_len" '
    /^>/ { if (acc != "") emit(); acc = substr($1, 2); sub(/\|.*/, "", acc); seq = ""; next }
    { seq = seq $0 }
    END { if (acc != "") emit() }
    function emit() { n = length(seq); if (n >= lo && n <= hi) print acc "\t" seq }' |
  sort -t $'\t' -k1,1 -u |
  awk -F '\t' '!seen[$2]++' > "$tmp/all.tsv"

# A seeded shuffle: shuf reads its randomness from a stream fixed by the seed.
seeded() { yes "plm-corpus-seed-$seed" | head -c 10000000; }
if [ "$count" -gt 0 ]; then
  shuf -n "$count" --random-source=<(seeded) "$tmp/all.tsv" > "$tmp/pick.tsv"
else
  shuf --random-source=<(seeded) "$tmp/all.tsv" > "$tmp/pick.tsv"
fi
awk -F '\t' '{ print ">" $1; s = $2; while (length(s) > 60) { print substr(s, 1, 60); s = substr(s, 61) } print s }' "$tmp/pick.tsv" |
  gzip -n -9 > "$out"
echo "make_corpus.sh: $(wc -l < "$tmp/pick.tsv") sequences -> $out" >&2

if [ -n "$labels" ]; then
  # nucleus, cytoplasm, extracellular, mitochondrion, plasma membrane, ER, chloroplast, Golgi, vacuole, peroxisome
  terms="GO:0005634 GO:0005737 GO:0005576 GO:0005739 GO:0005886 GO:0005783 GO:0009507 GO:0005794 GO:0005773 GO:0005777"
  cut -f1 "$tmp/pick.tsv" > "$tmp/ids"
  awk -F '\t' -v terms="$terms" '
    FNR == NR { want[$1] = 1; next }
    BEGIN { split(terms, t, " "); for (i in t) loc[t[i]] = 1 }
    ($1 in want) {
      delete got; k = 0
      for (i = 2; i <= NF; i++) if (($i in loc) && !($i in got)) { got[$i] = 1; k++; term = $i }
      if (k == 1) print $1 "\t" term
    }' "$tmp/ids" "$data_dir/CCO/goasp_annot.dat" | sort -u > "$labels"
  echo "make_corpus.sh: $(wc -l < "$labels") localisation labels -> $labels" >&2
fi
