#!/usr/bin/env python3
"""Where the wall time of a finished workflow run went, from Snakemake's job records.

    python bench/job_times.py RUN_DIR [RUN_DIR ...]

Reads ``RUN_DIR/.snakemake/metadata`` (one record per output file; the records of
one job share its ``job_hash`` and count once, from the earliest start to the
latest end) and prints, per rule, the number of jobs, the mean and summed job
duration, then the summed job time of the run and its span (first start to
last end).  With several run directories the totals of each are printed with
their ratio to the first, so a before/after pair reads side by side.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def jobs(run_dir: Path) -> list[tuple[str, float, float]]:
    """(rule, start, end) of every job recorded under ``run_dir/.snakemake/metadata``."""
    seen = {}
    for rec_path in (run_dir / ".snakemake" / "metadata").iterdir():
        rec = json.loads(rec_path.read_text())
        start, end = rec.get("starttime"), rec.get("endtime")
        if start is None or end is None:
            continue
        key = (rec["rule"], rec.get("job_hash", rec_path.name))
        s0, e0 = seen.get(key, (start, end))
        seen[key] = (min(s0, start), max(e0, end))
    return sorted(((rule, start, end) for (rule, _), (start, end) in seen.items()), key=lambda j: j[1])


def summary(run_dir: Path, per_rule: bool = True) -> tuple[float, float, int]:
    """Print the per-rule table; return (summed job time, span, number of jobs)."""
    js = jobs(run_dir)
    by_rule = defaultdict(list)
    for rule, start, end in js:
        by_rule[rule].append(end - start)
    total = sum(sum(v) for v in by_rule.values())
    span = max(e for _, _, e in js) - min(s for _, s, _ in js)
    if per_rule:
        print(f"{run_dir}:")
        print(f"  {'rule':24s} {'jobs':>5s} {'mean [s]':>9s} {'sum [s]':>8s} {'share':>6s}")
        for rule, d in sorted(by_rule.items(), key=lambda kv: -sum(kv[1])):
            print(f"  {rule:24s} {len(d):5d} {sum(d) / len(d):9.2f} {sum(d):8.1f} {sum(d) / total:6.1%}")
    print(f"  {len(js)} jobs, summed job time {total:.1f} s, span first start - last end {span:.1f} s")
    return total, span, len(js)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    first = None
    for d in argv:
        total, span, n = summary(Path(d))
        if first is None:
            first = (total, span, n)
        else:
            print(f"  ratio to {argv[0]}: summed job time {total / first[0]:.2f}, span {span / first[1]:.2f}, "
                  f"jobs {n / first[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
