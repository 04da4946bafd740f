#!/usr/bin/env bash
# Compile time of a small Ankh3 training program (ankh3_step.cpp), header-only
# against PLM_PRECOMPILED (the common aliases instantiated once, in
# plm/precompiled.cpp), with the flags of plm's own Release programs. Prints
# the CPU seconds (user + sys) of each of N compiles and the ratio of medians;
# CPU time is used because wall time depends on what else the machine runs.
#   benchmarks/compile_time/run.sh [N=3] [compiler=c++]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n=${1:-3}
cxx=${2:-c++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++17 -O3 -DNDEBUG -march=native -fopenmp -I"$root/include" -I/usr/include/eigen3)
if [ -e /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h ] || ldconfig -p | grep -q libopenblas; then
  flags+=(-DPLM_USE_BLAS -DEIGEN_USE_BLAS)
fi

cpu_seconds() {  # runs "$@", prints its user + sys CPU seconds
  local t
  t=$( { /usr/bin/env time -f "%U %S" "$@" >/dev/null 2>"$work/err"; } 2>&1 ) || { cat "$work/err" >&2; exit 1; }
  tail -n 1 "$work/err" | awk '{ printf "%.2f", $1 + $2 }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "compiler: $($cxx --version | head -n 1)"
echo "compiling plm/precompiled.cpp once: $(cpu_seconds "$cxx" "${flags[@]}" -c "$root/include/plm/precompiled.cpp" -o "$work/pre.o") s"
plain=() pre=()
for i in $(seq "$n"); do
  plain+=("$(cpu_seconds "$cxx" "${flags[@]}" -c "$here/ankh3_step.cpp" -o "$work/plain.o")")
  pre+=("$(cpu_seconds "$cxx" "${flags[@]}" -DPLM_PRECOMPILED -c "$here/ankh3_step.cpp" -o "$work/pre_step.o")")
done
# Both programs must link and give the same losses.
"$cxx" "${flags[@]}" "$work/plain.o" -o "$work/plain" -lopenblas 2>/dev/null || "$cxx" "${flags[@]}" "$work/plain.o" -o "$work/plain"
"$cxx" "${flags[@]}" "$work/pre_step.o" "$work/pre.o" -o "$work/pre" -lopenblas 2>/dev/null || "$cxx" "${flags[@]}" "$work/pre_step.o" "$work/pre.o" -o "$work/pre"
cmp <("$work/plain") <("$work/pre") || { echo "precompiled and header-only programs disagree" >&2; exit 1; }
mp=$(median "${plain[@]}") mq=$(median "${pre[@]}")
echo "ankh3_step.cpp header-only:     ${plain[*]} s (median $mp)"
echo "ankh3_step.cpp PLM_PRECOMPILED: ${pre[*]} s (median $mq)"
awk -v a="$mp" -v b="$mq" 'BEGIN { printf "ratio header-only / precompiled: %.2fx\n", a / b }'
