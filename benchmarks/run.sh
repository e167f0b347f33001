#!/usr/bin/env bash
# Run the speed benchmarks and print the ratio tables.
#
#   benchmarks/run.sh full    # the measurement in README.md (about 25-40 min on 2 idle cores, see README)
#   benchmarks/run.sh overhead  # the overhead regime: LR, FM and DeepCTR's default DeepFM/DCN sizes plus the
#                               # 400-wide models, MovieLens-100K, batch 256, one thread, 3 AUC seeds (~4-5 min idle)
#   benchmarks/run.sh quick   # plumbing check: tiny data, one round, two models (about 1 min)
#   benchmarks/run.sh full --bench-threads 1 -k dcnv2      # extra arguments go to pytest
#
# Writes $CTRBENCH_BENCH_OUT (default benchmarks/results/<UTC time>-<mode>.json) and, for `full`, replaces the
# results section of benchmarks/README.md. Run it on an otherwise idle machine: the ratios are taken within one
# process, but a busy machine still distorts them (see README, "Reading the numbers").
set -euo pipefail

mode="${1:-full}"
[[ $# -gt 0 ]] && shift
cd "$(dirname "$0")/.."

target=benchmarks
case "$mode" in
  full)
    args=(--bench-memmap-rows 10000000 --bench-auc-seeds 3)
    ;;
  overhead)
    args=(--bench-threads 1 --bench-datasets movielens-100k --bench-batch-sizes 256 --bench-auc-seeds 3
          --bench-models lr,fm,deepfm-256-128,dcn-2x-128-128,dnn,deepfm,dcn,dcnv2)
    target=benchmarks/test_throughput.py
    ;;
  quick)
    args=(--bench-threads 1 --bench-synthetic-rows 20000 --bench-rounds 1 --bench-warmup 1 --bench-datasets synthetic
          --bench-models dnn,dcnv2 --bench-batch-sizes 1024 --bench-memmap-rows 200000)
    ;;
  *)
    echo "usage: $0 [full|overhead|quick] [pytest args...]" >&2
    exit 2
    ;;
esac

out="${CTRBENCH_BENCH_OUT:-benchmarks/results/$(date -u +%Y%m%dT%H%M%SZ)-$mode.json}"
mkdir -p "$(dirname "$out")"

python -m pytest "$target" -p no:cacheprovider --benchmark-json="$out" --benchmark-sort=name \
  --benchmark-columns=median,iqr,min,max,rounds "${args[@]}" "$@"

if [[ "$mode" == full ]]; then
  python benchmarks/report.py "$out" --readme benchmarks/README.md
elif [[ "$mode" == overhead ]]; then
  python benchmarks/report.py "$out" --readme benchmarks/README.md --section overhead
else
  python benchmarks/report.py "$out"
fi
echo "results: $out"
