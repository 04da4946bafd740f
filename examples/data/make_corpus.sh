#!/usr/bin/env bash
# Build a protein pre-training corpus (gzip FASTA) from Debian's metastudent-data
# package (UniProtKB/Swiss-Prot entries, dataset_201401).
#
# The output is deterministic: the same options give byte-identical files on
# every run and machine (selection uses a fixed integer hash computed in awk,
# sorting runs in the C locale, and gzip is run with -n).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: make_corpus.sh --out FILE.fasta.gz [options]

Extracts protein sequences from the metastudent-data BLAST databases, keeps
sequences within a length range, removes exact duplicate sequences, selects
a deterministic pseudo-random subset and writes it as gzip FASTA with
headers of the form ">ACCESSION" (UniProt accession).

Options:
  --out FILE          output gzip FASTA (required)
  --count N           number of sequences to select; 0 = all (default 0)
  --seed S            selection seed, any string without whitespace (default 1)
  --min-length N      minimum sequence length, inclusive (default 30)
  --max-length N      maximum sequence length, inclusive (default 1000)
  --ontology O        which database to read: CCO, MFO, BPO or all (union of
                      the three, default CCO)
  --data-dir DIR      metastudent-data dataset directory
                      (default /usr/share/metastudent-data/dataset_201401)
  --labels FILE       also write a TSV "ACCESSION<TAB>GO term" for the selected
                      proteins that are annotated directly (CCO/goasp_annot.dat)
                      with exactly one of ten cellular-component terms:
                      GO:0005634 nucleus, GO:0005737 cytoplasm,
                      GO:0005576 extracellular region, GO:0005739 mitochondrion,
                      GO:0005886 plasma membrane, GO:0005783 endoplasmic reticulum,
                      GO:0009507 chloroplast, GO:0005794 Golgi apparatus,
                      GO:0005773 vacuole, GO:0005777 peroxisome.
                      Rows follow the order of the FASTA file.
  --drop-nonstandard  drop sequences containing letters other than the 20
                      standard amino acids (X, B, Z, U, O, ...)
  --line-width N      FASTA line width; 0 = one line per sequence (default 80)
  -h, --help          show this help

Sequences are written in selection order (a seeded pseudo-random order), so
with the same seed and length range a smaller --count gives a prefix of a
larger one. Among identical sequences the smallest accession is kept.

Requires the Debian packages metastudent-data and ncbi-blast+ (blastdbcmd):
  sudo apt-get install metastudent-data ncbi-blast+

Example (the sample shipped in this directory):
  ./make_corpus.sh --count 4000 --seed 1 --min-length 30 --max-length 512 \
      --out swissprot_sample.fasta.gz --labels swissprot_sample_labels.tsv
EOF
}

die() { echo "make_corpus.sh: error: $*" >&2; exit 1; }
log() { echo "make_corpus.sh: $*" >&2; }

out=""
labels=""
count=0
seed=1
min_len=30
max_len=1000
ontology=CCO
data_dir=/usr/share/metastudent-data/dataset_201401
drop_nonstd=0
width=80

need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "option $1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out)         need_arg "$@"; out=$2; shift 2 ;;
    --labels)      need_arg "$@"; labels=$2; shift 2 ;;
    --count)       need_arg "$@"; count=$2; shift 2 ;;
    --seed)        need_arg "$@"; seed=$2; shift 2 ;;
    --min-length)  need_arg "$@"; min_len=$2; shift 2 ;;
    --max-length)  need_arg "$@"; max_len=$2; shift 2 ;;
    --ontology)    need_arg "$@"; ontology=$2; shift 2 ;;
    --data-dir)    need_arg "$@"; data_dir=$2; shift 2 ;;
    --line-width)  need_arg "$@"; width=$2; shift 2 ;;
    --drop-nonstandard) drop_nonstd=1; shift ;;
    -h|--help)     usage; exit 0 ;;
    *)             usage >&2; echo >&2; die "unknown argument: $1" ;;
  esac
done

[[ -n "$out" ]] || { usage >&2; echo >&2; die "--out is required"; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_uint "$count"   || die "--count must be a non-negative integer, got '$count'"
is_uint "$min_len" || die "--min-length must be a non-negative integer, got '$min_len'"
is_uint "$max_len" || die "--max-length must be a non-negative integer, got '$max_len'"
is_uint "$width"   || die "--line-width must be a non-negative integer, got '$width'"
(( min_len <= max_len )) || die "--min-length ($min_len) is greater than --max-length ($max_len)"
[[ "$seed" =~ ^[^[:space:]]+$ ]] || die "--seed must be a non-empty string without whitespace"

case "$ontology" in
  CCO|MFO|BPO) ontologies=("$ontology") ;;
  all)         ontologies=(CCO MFO BPO) ;;
  *)           die "--ontology must be CCO, MFO, BPO or all, got '$ontology'" ;;
esac

install_hint="install it with: sudo apt-get install metastudent-data ncbi-blast+"
command -v blastdbcmd >/dev/null 2>&1 \
  || die "blastdbcmd not found (Debian package ncbi-blast+); $install_hint"
if [[ ! -d "$data_dir" ]]; then
  if [[ "$data_dir" == /usr/share/metastudent-data/* ]]; then
    die "$data_dir not found: the Debian package metastudent-data is not installed; $install_hint"
  fi
  die "data directory $data_dir not found (from the Debian package metastudent-data; $install_hint)"
fi
for o in "${ontologies[@]}"; do
  [[ -f "$data_dir/$o/goasp.fasta.pin" ]] \
    || die "BLAST database $data_dir/$o/goasp.fasta not found; is metastudent-data complete? $install_hint"
done
annot="$data_dir/CCO/goasp_annot.dat"
if [[ -n "$labels" ]]; then
  [[ -f "$annot" ]] || die "$annot not found (needed for --labels)"
fi

export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/make_corpus.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. Extract "ACCESSION<TAB>SEQUENCE" lines. blastdbcmd prints headers such as
#    ">C6DJ78|GO:0005737,GO:0005737"; the accession is the part before '|'.
for o in "${ontologies[@]}"; do
  blastdbcmd -db "$data_dir/$o/goasp.fasta" -entry all \
    | awk -v db="$o" '
        function flush() {
          if (acc != "") print acc "\t" seq
        }
        /^>/ {
          flush()
          h = substr($0, 2); sub(/[ \t].*/, "", h); split(h, f, "|"); acc = f[1]; seq = ""
          if (acc !~ /^[A-Z0-9]+$/ || length(acc) < 6 || length(acc) > 10) {
            print "make_corpus.sh: error: unexpected header in " db ": " $0 > "/dev/stderr"; exit 1
          }
          next
        }
        { gsub(/[ \t\r]/, ""); seq = seq toupper($0) }
        END { flush() }'
done > "$tmp/all.tsv"
n_raw=$(wc -l < "$tmp/all.tsv")
(( n_raw > 0 )) || die "blastdbcmd printed no sequences"

# Identical (accession, sequence) rows appear once per ontology with --ontology all.
sort -u -t $'\t' -k1,1 -k2,2 "$tmp/all.tsv" > "$tmp/uniq.tsv"
# One accession must map to one sequence.
dup_acc=$(cut -f1 "$tmp/uniq.tsv" | uniq -d | head -n 3 | tr '\n' ' ')
[[ -z "$dup_acc" ]] || die "accessions with differing sequences: $dup_acc"
n_acc=$(wc -l < "$tmp/uniq.tsv")

# 2. Length filter, alphabet check.
awk -F'\t' -v lo="$min_len" -v hi="$max_len" -v std="$drop_nonstd" -v out="$tmp/filt.tsv" '
  {
    L = length($2)
    if (L < lo || L > hi) { nlen++; next }
    if ($2 !~ /^[A-Z]+$/) { nbad++; next }
    if (std && $2 ~ /[^ACDEFGHIKLMNPQRSTVWY]/) { nstd++; next }
    print > out
  }
  END { printf "%d %d %d\n", nlen, nbad, nstd }' "$tmp/uniq.tsv" > "$tmp/filt.counts"
: >> "$tmp/filt.tsv"
read -r n_len n_bad n_std < "$tmp/filt.counts"
(( n_bad == 0 )) || log "warning: dropped $n_bad sequences containing non-letter characters"

# 3. Remove exact duplicate sequences, keeping the smallest accession.
sort -t $'\t' -k2,2 -k1,1 "$tmp/filt.tsv" \
  | awk -F'\t' '$2 != prev { print; prev = $2 }' > "$tmp/dedup.tsv"
n_dedup=$(wc -l < "$tmp/dedup.tsv")
(( n_dedup > 0 )) || die "no sequences left after filtering"

# 4. Deterministic selection: sort by a seeded integer hash of the accession
#    (seeded_hash.awk), ties broken by accession.
awk -F'\t' -v seed="$seed" "$(< "$here/seeded_hash.awk")"'
  { printf "%s\t%s\n", seeded_hash(seed ":" $1), $0 }' "$tmp/dedup.tsv" \
  | sort -t $'\t' -k1,1 -k2,2 \
  | cut -f2- > "$tmp/order.tsv"

if (( count > 0 )); then
  if (( count > n_dedup )); then
    log "warning: --count $count exceeds the $n_dedup available sequences; writing all of them"
  fi
  head -n "$count" "$tmp/order.tsv" > "$tmp/sel.tsv"
else
  cp "$tmp/order.tsv" "$tmp/sel.tsv"
fi
n_sel=$(wc -l < "$tmp/sel.tsv")

# 5. Write gzip FASTA (gzip -n: no name/timestamp, so output is reproducible).
awk -F'\t' -v w="$width" '
  {
    print ">" $1
    if (w == 0) { print $2; next }
    for (i = 1; i <= length($2); i += w) print substr($2, i, w)
  }' "$tmp/sel.tsv" | gzip -n -9 > "$tmp/out.fasta.gz"
mkdir -p "$(dirname "$out")"
mv -f "$tmp/out.fasta.gz" "$out"

log "read $n_raw records ($n_acc distinct accessions) from ${ontologies[*]}"
log "dropped $n_len outside length $min_len..$max_len"
(( drop_nonstd == 0 )) || log "dropped $n_std with non-standard letters"
log "kept $n_dedup distinct sequences; wrote $n_sel to $out"

# 6. Optional localisation labels for the selected proteins.
if [[ -n "$labels" ]]; then
  awk -F'\t' '
    BEGIN {
      n = split("GO:0005634 GO:0005737 GO:0005576 GO:0005739 GO:0005886 " \
                "GO:0005783 GO:0009507 GO:0005794 GO:0005773 GO:0005777", t, " ")
      for (i = 1; i <= n; i++) want[t[i]] = 1
    }
    NR == FNR {                       # CCO/goasp_annot.dat: accession, GO terms
      split("", seen); k = 0; lab = ""
      for (i = 2; i <= NF; i++)
        if (($i in want) && !($i in seen)) { seen[$i] = 1; k++; lab = $i }
      if (k == 1) label[$1] = lab
      next
    }
    ($1 in label) { print $1 "\t" label[$1] }
  ' "$annot" "$tmp/sel.tsv" > "$tmp/labels.tsv"
  mkdir -p "$(dirname "$labels")"
  mv -f "$tmp/labels.tsv" "$labels"
  log "wrote $(wc -l < "$labels") localisation labels to $labels"
fi
