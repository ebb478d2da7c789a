#!/usr/bin/env bash
# Time the full default analysis (the SYNTHETIC 18-galaxy mock) from a clean
# results/ and a no-op rerun, in a scratch directory, and print the four
# figures of issue 17:
#   wall time, summed job time (bench/job_times.py, from .snakemake/metadata),
#   in-process compute (bench/inprocess.py: the same job scripts, hence the same
#   package functions on the same inputs, one after the other in one Python
#   process without Snakemake) and the ratio wall / in-process compute.
#
#   bash bench/run_default.sh [cores] [BASELINE_CHECKOUT]
#
# cores: --cores of the timed run (default: all).  BASELINE_CHECKOUT: another
# checkout of this workflow (e.g. a worktree of the commit before a change):
# it is measured first, the same way, right before this one, and the ratios
# this/baseline are printed, so before and after share the machine's load.
# CONFIGFILE=tests/config/test.yaml measures the test config instead (on top
# of each checkout's config.yaml).  SNAKEMAKE and PYTHON name the executables
# (default: snakemake and python on PATH); PYTHONPATH is set to each
# checkout's src/.  KEEP=DIR keeps the run directories (DIR/baseline, DIR/this)
# for a look or for bench/compare_outputs.py.  The machine's load (uptime) is
# printed before and after.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cores="${1:-all}"
baseline="${2:-}"
snakemake="${SNAKEMAKE:-snakemake}"
python="${PYTHON:-python}"
if [ -n "${KEEP:-}" ]; then
    work="$(mkdir -p "$KEEP" && cd "$KEEP" && pwd)"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi

measure() {  # measure CHECKOUT NAME: prints the figures, leaves NAME.figures
    local repo="$1" name="$2" dir="$work/$2" cfg=()
    [ -n "${CONFIGFILE:-}" ] && cfg=(--configfile "$repo/config.yaml" "$(cd "$here" && realpath "$CONFIGFILE")")
    mkdir -p "$dir"
    export PYTHONPATH="$repo/src"
    local t0 t1 t2
    t0=$(date +%s.%N)
    "$snakemake" -s "$repo/Snakefile" --directory "$dir" --cores "$cores" "${cfg[@]}" --skip-script-cleanup \
        -q progress > "$work/$name.full.log" 2>&1 || { tail -30 "$work/$name.full.log"; exit 1; }
    t1=$(date +%s.%N)
    "$snakemake" -s "$repo/Snakefile" --directory "$dir" --cores "$cores" "${cfg[@]}" -q progress \
        > "$work/$name.noop.log" 2>&1
    t2=$(date +%s.%N)
    grep -q "Nothing to be done" "$work/$name.noop.log" || echo "WARNING: the no-op rerun of $name ran jobs"
    local wall noop jobsum inproc
    wall=$(echo "$t1 - $t0" | bc); noop=$(echo "$t2 - $t1" | bc)
    jobsum=$("$python" "$here/bench/job_times.py" "$dir" | tee "$work/$name.jobs.txt" \
        | sed -n 's/.*summed job time \([0-9.]*\) s.*/\1/p')
    inproc=$("$python" "$here/bench/inprocess.py" "$dir" | tee "$work/$name.inprocess.txt" \
        | sed -n 's/^in-process compute: \([0-9.]*\) s/\1/p')
    grep -q "^IDENTICAL" "$work/$name.inprocess.txt" || echo "WARNING: the in-process results of $name differ"
    echo "== $name ($repo, --cores $cores${CONFIGFILE:+, $CONFIGFILE})"
    sed -n '/^  rule /,/jobs, summed/p' "$work/$name.jobs.txt"
    grep -E "^imports|^in-process" "$work/$name.inprocess.txt"
    printf '%s: wall %.1f s   summed job time %.1f s   in-process compute %.1f s   wall / in-process %.2f   no-op rerun %.1f s\n' \
        "$name" "$wall" "$jobsum" "$inproc" "$(echo "$wall / $inproc" | bc -l)" "$noop"
    echo "$wall $jobsum $inproc $noop" > "$work/$name.figures"
}

echo "load before: $(uptime)"
[ -n "$baseline" ] && measure "$(cd "$baseline" && pwd)" baseline
measure "$here" this
echo "load after: $(uptime)"
if [ -n "$baseline" ]; then
    read -r bw bj bi bn < "$work/baseline.figures"
    read -r w j i n < "$work/this.figures"
    printf 'this / baseline: wall %.2f   summed job time %.2f   in-process compute %.2f   no-op rerun %.2f\n' \
        "$(echo "$w / $bw" | bc -l)" "$(echo "$j / $bj" | bc -l)" "$(echo "$i / $bi" | bc -l)" "$(echo "$n / $bn" | bc -l)"
fi
