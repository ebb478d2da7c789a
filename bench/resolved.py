"""Extra wall time of the resolved analysis (issue 18: radial profiles, Voronoi maps, Fig. 8).

Runs the workflow once with ``resolved.enabled: false`` (the baseline: the
two-region analysis), then again in the same directory with the resolved
analysis switched on, so the second run executes only the resolved jobs;
prints both times and the extra wall and CPU time.  Load from other
processes inflates both: the script prints the 1-minute load average before
each run.

    python bench/resolved.py [--cores 2] [--configfile tests/config/test.yaml] [--workdir DIR]

``--workdir`` runs in that directory (created if missing); when it already
holds a finished baseline run (a ``results/`` folder), only the second run is
timed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(workdir: Path, cores: str, configfiles, extra=()) -> tuple[float, float]:
    """Wall and CPU (user + sys of the children) time [s] of one snakemake run."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", cores, "-q", "rules", *extra]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="2")
    ap.add_argument("--configfile", default=None, help="extra config on top of config.yaml")
    ap.add_argument("--workdir", default=None,
                    help="run directory; one holding a finished baseline run times only the second run")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ismcgm_resolved_"))
    workdir.mkdir(parents=True, exist_ok=True)
    off = workdir / "resolved_off.yaml"
    off.write_text("resolved:\n  enabled: false\n")
    base = [args.configfile] if args.configfile else []
    if not (workdir / "results").is_dir():
        print(f"load {os.getloadavg()[0]:.1f}; baseline (resolved off) in {workdir} ...", flush=True)
        wall, cpu = _run(workdir, args.cores, base + [str(off)])
        print(f"baseline: wall {wall:.1f} s, cpu {cpu:.1f} s")
    print(f"load {os.getloadavg()[0]:.1f}; resolved analysis on top ...", flush=True)
    wall, cpu = _run(workdir, args.cores, base)
    print(f"extra for the resolved analysis: wall {wall:.1f} s, cpu {cpu:.1f} s (--cores {args.cores})")


if __name__ == "__main__":
    main()
