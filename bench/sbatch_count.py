#!/usr/bin/env python3
"""How many SLURM jobs ``profiles/slurm`` submits for the default analysis of N mock galaxies.

    python bench/sbatch_count.py [--sizes 18 1000] [--repo CHECKOUT]

``--repo`` counts for another checkout of this workflow (e.g. the commit
before a change; its own ``profiles/slurm``), so before/after read side by side.

Runs ``snakemake -n --profile profiles/slurm`` (a dry run: nothing is
submitted, no data are generated) for a mock of each size and counts, from
its job listing, the group jobs (one ``sbatch`` each; per group name) and the
jobs outside any group that are not local rules (one ``sbatch`` each).  Local
rules (``localrules:`` in ``workflow/rules/*.smk``) and ``all`` run on the
submitting host.  Beside it: the non-local jobs, i.e. the submissions there
would be without groups.  The interpreter running this must have Snakemake and
snakemake-executor-plugin-slurm (``pip install -e '.[slurm]'``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def local_rules(repo: Path) -> set[str]:
    """Rule names listed under ``localrules:`` in the workflow's rule files."""
    out = {"all"}
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        for block in re.findall(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", smk.read_text(), flags=re.M):
            out.update(re.findall(r"\w+", block))
    return out


def submissions(listing: str, local: set[str]) -> tuple[Counter, Counter]:
    """(group jobs per group name, ungrouped non-local jobs per rule) of a dry-run listing."""
    groups = Counter(re.findall(r"Group job (\S+) \(jobs in lexicogr\. order\)", listing))
    single = Counter(r for r in re.findall(r"^(?:local)?rule (\w+):", listing, flags=re.M) if r not in local)
    return groups, single


def dry_run(n_galaxies: int, workdir: Path, repo: Path) -> str:
    cfg = workdir / f"n{n_galaxies}.yaml"
    cfg.write_text(f"mock:\n  n_galaxies: {n_galaxies}\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
           "--profile", str(repo / "profiles" / "slurm"), "-n", "--configfile", str(repo / "config.yaml"), str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-3000:])
    return proc.stdout + proc.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[18, 1000])
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout of the workflow to count (default: this one)")
    a = ap.parse_args()
    repo = a.repo.resolve()
    local = local_rules(repo)
    print(f"{repo} (profiles/slurm):")
    for n in a.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            listing = dry_run(n, Path(tmp), repo)
            dt = time.perf_counter() - t0
        groups, single = submissions(listing, local)
        rules = re.findall(r"^\s*(?:local)?rule (\w+):", listing, flags=re.M)
        remote = sum(r not in local for r in rules)
        print(f"{n:5d} galaxies: {len(rules)} jobs, {remote} not local -> {sum(groups.values()) + sum(single.values())} sbatch "
              f"submissions ({', '.join(f'{k}: {v} group jobs' for k, v in sorted(groups.items()))}; "
              f"{sum(single.values())} ungrouped: {dict(sorted(single.items()))})  [dry run {dt:.1f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
