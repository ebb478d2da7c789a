"""DAG-build time of the workflow (``snakemake -n``) versus the number of mock galaxies.

No data are generated: the mock's galaxy list is computed from the config at
parse time.  Prints each time and the ratio to the 18-galaxy baseline,
measured in the same process run.

    python bench/scale.py [--sizes 18 100 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run_seconds(n_galaxies: int, workdir: Path) -> float:
    cfg = workdir / f"n{n_galaxies}.yaml"
    cfg.write_text(f"mock:\n  n_galaxies: {n_galaxies}\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg), "-n", "-q", "rules"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[18, 100, 1000])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for n in args.sizes:
            dt = dry_run_seconds(n, Path(tmp))
            base = base or dt
            print(f"snakemake -n with {n:5d} mock galaxies: {dt:6.2f} s   ratio to {args.sizes[0]}: {dt / base:5.2f}")


if __name__ == "__main__":
    main()
