#!/usr/bin/env bash
# Time the full default analysis (the SYNTHETIC 18-galaxy mock) from a clean
# results/ and then a no-op rerun, in a scratch directory.
#   bash bench/run_default.sh [cores]      (default: all cores)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cores="${1:-all}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
t0=$(date +%s.%N)
snakemake -s "$repo/Snakefile" --cores "$cores" -q progress > full.log 2>&1 || { tail -30 full.log; exit 1; }
t1=$(date +%s.%N)
snakemake -s "$repo/Snakefile" --cores "$cores" -q progress > noop.log 2>&1
t2=$(date +%s.%N)
full=$(echo "$t1 - $t0" | bc); noop=$(echo "$t2 - $t1" | bc)
echo "cores=$cores  full default analysis: ${full} s   no-op rerun: ${noop} s   ratio full/no-op: $(echo "scale=1; $full / $noop" | bc)"
grep -q "Nothing to be done" noop.log && echo "no-op rerun did nothing (as it should)"
