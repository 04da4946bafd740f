# Shared by run.sh and campaign.sh (sourced, not run): the harness list and
# each harness's libFuzzer flags. Expects $here (this folder).

# The harnesses, in the order they run; each has corpus/<name>/ and may have regressions/<name>/.
all=(fasta fasta_gz_raw fasta_gz safetensors config tokenizer_json vocab_file labelled checkpoint metrics weights_index)

# Inputs are bounded: text formats at 4 KB, binary ones (gzip, safetensors) at 64 KB.
max_len() {
  case $1 in
    fasta_gz_raw|fasta_gz|safetensors|checkpoint) echo 65536 ;;
    *) echo 4096 ;;
  esac
}
# JSON-based formats get the JSON dictionary.
dict() {
  case $1 in
    safetensors|config|tokenizer_json|checkpoint|metrics|weights_index) echo "-dict=$here/json.dict" ;;
  esac
}
