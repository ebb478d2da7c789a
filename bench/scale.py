"""Scale of the workflow: DAG-build time and wall time against cores.

(a) ``snakemake -n`` versus the number of mock galaxies.  No data are
generated: the mock's galaxy list is computed from the config at parse time.
(b) With ``--cores``, the wall time of the whole analysis from an empty
directory at each core count (the default config, or ``--configfile`` on top
of it, e.g. ``tests/config/test.yaml`` for a quick look).  Each part prints
its times and the ratios to its first entry, all measured in the same run.

    python bench/scale.py [--sizes 18 100 1000] [--cores 1 2 16] [--configfile extra.yaml]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed_snakemake(workdir: Path, *args: str) -> float:
    """Wall time [s] of one ``snakemake`` run in ``workdir``; exits with its stderr on failure."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "-q", "rules", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return dt


def dry_run_seconds(n_galaxies: int, workdir: Path) -> float:
    """``snakemake -n`` for a mock of ``n_galaxies`` (no data generated)."""
    cfg = workdir / f"n{n_galaxies}.yaml"
    cfg.write_text(f"mock:\n  n_galaxies: {n_galaxies}\n")
    return _timed_snakemake(workdir, "-n", "--configfile", str(cfg))


def full_run_seconds(cores: int, workdir: Path, configfile: str | None) -> float:
    """Wall time of the whole analysis from an empty ``workdir``."""
    cfgs = [str(REPO / "config.yaml")] + ([str(Path(configfile).resolve())] if configfile else [])
    return _timed_snakemake(workdir, "--cores", str(cores), "--configfile", *cfgs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[18, 100, 1000],
                    help="mock sample sizes for the dry runs (none: skip)")
    ap.add_argument("--cores", type=int, nargs="*", default=[], help="core counts for timed full runs")
    ap.add_argument("--configfile", default=None, help="extra config for the timed full runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for n in args.sizes:
            dt = dry_run_seconds(n, Path(tmp))
            base = base or dt
            print(f"snakemake -n with {n:5d} mock galaxies: {dt:6.2f} s   ratio to {args.sizes[0]}: {dt / base:5.2f}")
        base = None
        for cores in args.cores:
            dt = full_run_seconds(cores, Path(tmp) / f"cores{cores}", args.configfile)
            base = base or dt
            print(f"full analysis at --cores {cores:2d}: {dt:7.1f} s   speed-up over --cores {args.cores[0]}: "
                  f"{base / dt:5.2f}", flush=True)


if __name__ == "__main__":
    main()
