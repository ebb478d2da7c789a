#!/usr/bin/env python3
"""Cold-start import cost of each job type: ``python -X importtime`` on a job script's imports.

    python bench/importtime.py [--repo CHECKOUT] [--repeat 3] [SCRIPT ...]
    python bench/importtime.py --run-dir RUN_DIR [--repeat 3] [SCRIPT ...]

For each ``workflow/scripts/<SCRIPT>.py`` (default: the per-galaxy and
per-chunk jobs) the script's own import statements are run in a fresh
interpreter with ``-X importtime``, ``--repeat`` times; printed: the least
total import time [s] (sum of the top-level cumulative times Python reports)
the CPU time (user + system) of that interpreter, which a loaded machine
inflates far less than the wall time, and the three slowest top-level packages.  ``--repo`` measures another
checkout (PYTHONPATH is set to its ``src``), for before/after on the same load.

The script's import statements miss what a job imports inside its functions (e.g. ``spectral_cube`` when
it reads an ALMA cube, ``astropy.cosmology`` for a kpc scale).  ``--run-dir`` measures whole jobs instead:
the job scripts Snakemake kept in ``RUN_DIR/.snakemake/scripts`` (a run with ``--skip-script-cleanup``)
are run again, ``--repeat`` jobs of each kind (different galaxies), each in a fresh interpreter under
``-X importtime``; printed per kind: the job's median wall time, its median import time (every import,
wherever it happens) and that share, and the slowest imports.  The jobs rewrite their outputs (the same
bytes, deterministic jobs) with new modification times: a later ``snakemake`` in RUN_DIR would rerun what
depends on them (``--touch`` first to avoid that).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOBS = ("mock_galaxy", "align", "extract", "mc_fit", "cii_galaxy", "resolved_galaxy")


def script_imports(path: Path) -> str:
    tree = ast.parse(path.read_text())
    return "\n".join(ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def import_time(code: str, repo: Path) -> tuple[float, float, list[tuple[float, str]]]:
    """(import seconds, interpreter CPU seconds, [(seconds, package)] of the top-level imports) of one cold run."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    cpu0 = _children_cpu()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    cpu = _children_cpu() - cpu0
    total, slowest = _top_level(proc.stderr)
    return total, cpu, slowest


def _top_level(importtime_log: str) -> tuple[float, list[tuple[float, str]]]:
    """Total seconds of the top-level imports in ``-X importtime`` output (an import inside a function is
    top-level too: nothing was being imported when it started) and [(seconds, package)] of the three slowest."""
    top = []
    for line in importtime_log.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if m:
            top.append((int(m.group(1)) / 1e6, m.group(2)))
    return sum(t for t, _ in top), sorted(top, reverse=True)[:3]


def job_imports(script: Path, run_dir: Path) -> tuple[float, float, list[tuple[float, str]]]:
    """(job wall seconds, import seconds, [(seconds, package)] of its three slowest imports) of one saved job."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", str(script)], capture_output=True, text=True,
                          cwd=run_dir, check=True)
    return (time.perf_counter() - t0, *_top_level(proc.stderr))


def run_dir_report(run_dir: Path, names, repeat: int) -> None:
    saved = sorted((run_dir / ".snakemake" / "scripts").glob("*.py"))
    print(f"whole jobs kept in {run_dir}/.snakemake/scripts (up to {repeat} of each, median):")
    for name in names:
        jobs = [p for p in saved if p.name.endswith(f".{name}.py")][:repeat]
        if not jobs:
            print(f"  {name:18s} (no saved job: run snakemake with --skip-script-cleanup)")
            continue
        runs = [job_imports(p, run_dir) for p in jobs]
        wall, imp = (statistics.median(r[k] for r in runs) for k in (0, 1))
        top = min(runs, key=lambda r: r[1])[2]
        print(f"  {name:18s} job {wall:5.2f} s, imports {imp:4.2f} s ({imp / wall:4.0%}; {len(runs)} jobs)   "
              "slowest: " + ", ".join(f"{p} {t:.2f}" for t, p in top))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scripts", nargs="*", default=list(JOBS))
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--run-dir", type=Path, help="measure the whole jobs kept in this run directory")
    a = ap.parse_args()
    if a.run_dir:
        run_dir_report(a.run_dir.resolve(), a.scripts, a.repeat)
        return 0
    repo = a.repo.resolve()
    print(f"cold import of each job script's imports ({repo}; least of {a.repeat}):")
    for name in a.scripts:
        path = repo / "workflow" / "scripts" / f"{name}.py"
        if not path.is_file():
            print(f"  {name:18s} (no such script)")
            continue
        runs = [import_time(script_imports(path), repo) for _ in range(a.repeat)]
        total, _, top = min(runs)
        cpu = min(r[1] for r in runs)
        print(f"  {name:18s} {total:5.2f} s  (CPU {cpu:4.2f} s)   slowest: " + ", ".join(f"{p} {t:.2f}" for t, p in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
