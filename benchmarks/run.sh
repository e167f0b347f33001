#!/usr/bin/env bash
# Run the speed benchmarks and print the ratio tables.
#
#   benchmarks/run.sh full    # the measurement in README.md (about 25-40 min on 2 idle cores, see README)
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

case "$mode" in
  full)
    args=(--bench-memmap-rows 10000000 --bench-auc-seeds 3)
    ;;
  quick)
    args=(--bench-threads 1 --bench-synthetic-rows 20000 --bench-rounds 1 --bench-warmup 1 --bench-datasets synthetic
          --bench-models dnn,dcnv2 --bench-batch-sizes 1024 --bench-memmap-rows 200000)
    ;;
  *)
    echo "usage: $0 [full|quick] [pytest args...]" >&2
    exit 2
    ;;
esac

out="${CTRBENCH_BENCH_OUT:-benchmarks/results/$(date -u +%Y%m%dT%H%M%SZ)-$mode.json}"
mkdir -p "$(dirname "$out")"

python -m pytest benchmarks -p no:cacheprovider --benchmark-json="$out" --benchmark-sort=name \
  --benchmark-columns=median,iqr,min,max,rounds "${args[@]}" "$@"

if [[ "$mode" == full ]]; then
  python benchmarks/report.py "$out" --readme benchmarks/README.md
else
  python benchmarks/report.py "$out"
fi
echo "results: $out"
