#!/usr/bin/env python3
"""Cold-start import cost of each job type: ``python -X importtime`` on a job script's imports.

    python bench/importtime.py [--repo CHECKOUT] [--repeat 3] [SCRIPT ...]

For each ``workflow/scripts/<SCRIPT>.py`` (default: the per-galaxy and
per-chunk jobs) the script's own import statements are run in a fresh
interpreter with ``-X importtime``, ``--repeat`` times; printed: the least
total import time [s] (sum of the top-level cumulative times Python reports)
the CPU time (user + system) of that interpreter, which a loaded machine
inflates far less than the wall time, and the three slowest top-level packages.  ``--repo`` measures another
checkout (PYTHONPATH is set to its ``src``), for before/after on the same load.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import resource
import subprocess
import sys
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
    top = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if m and not m.group(2).startswith(" "):
            top.append((int(m.group(1)) / 1e6, m.group(2)))
    return sum(t for t, _ in top), cpu, sorted(top, reverse=True)[:3]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scripts", nargs="*", default=list(JOBS))
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
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
